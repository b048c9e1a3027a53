//! The webhook queue: producers put events on it and go on (a slow receiver never slows a
//! send); the deliverer fans each event out to the user's endpoints as one attempt message per
//! endpoint, and puts a failed attempt back, delayed, for its retry.

use std::future::Future;
use std::sync::{Arc, Mutex};

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::{Deserialize, Serialize};

use super::event::WebhookEvent;
use crate::aws::dependency_error;
use crate::config::{ConfigSource, vars};
use crate::error::Error;
use crate::ids::WebhookId;

/// SQS's longest delay: a longer wait is made of several.
pub const MAX_DELAY_SECONDS: i64 = 900;

/// A message on the webhook queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WebhookMessage {
    /// Something happened: every subscribed endpoint of the user gets an attempt.
    Event {
        /// The event.
        event: WebhookEvent,
    },
    /// One attempt to post `event` to one endpoint.
    Attempt {
        /// The endpoint.
        webhook_id: WebhookId,
        /// The event (its id and body are the same on every attempt).
        event: WebhookEvent,
        /// 1 for the first.
        attempt: u32,
        /// Epoch second before which it must not go (a retry's wait, when longer than SQS
        /// delays: the message is put back until then).
        not_before: i64,
    },
}

tokio::task_local! {
    /// Events held by [`EventPublisher::batched`] while its work runs.
    static HELD_EVENTS: Arc<Mutex<Vec<WebhookEvent>>>;
}

/// Puts events on the webhook queue. Built once per cold start; without a queue configured
/// it emits nothing.
#[derive(Clone, Default)]
pub struct EventPublisher {
    queue: Option<(aws_sdk_sqs::Client, String)>,
}

impl std::fmt::Debug for EventPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventPublisher")
            .field("enabled", &self.queue.is_some())
            .finish()
    }
}

impl EventPublisher {
    /// A publisher onto `queue_url`.
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            queue: Some((sqs, queue_url.into())),
        }
    }

    /// From `WEBHOOK_QUEUE_URL` (unset: a publisher that emits nothing).
    pub fn from_source(source: &ConfigSource<'_>, sdk: &aws_config::SdkConfig) -> Self {
        match source.optional(vars::WEBHOOK_QUEUE_URL) {
            Some(url) if !url.is_empty() => Self::new(aws_sdk_sqs::Client::new(sdk), url),
            _ => Self::default(),
        }
    }

    /// Puts an event on the queue. Never fails the caller, whose transition is already
    /// committed: a queue that refuses it (after the SDK's retries) is logged and counted
    /// (`WebhookEventDropped`, alarmed on). Inside [`Self::batched`] it is held and queued
    /// with the others at the end.
    pub async fn publish(&self, event: WebhookEvent) {
        if self.queue.is_none() {
            return;
        }
        let mut event = Some(event);
        // Outside `batched` (no scope) the event stays here and goes out now.
        let _ = HELD_EVENTS.try_with(|held| {
            if let Ok(mut held) = held.lock() {
                held.extend(event.take());
            }
        });
        if let Some(event) = event {
            self.publish_all(vec![event]).await;
        }
    }

    /// Runs `work` holding the events it publishes, then queues them together, ten per
    /// `SendMessageBatch` (a worker batch's sends cost one SQS call, not one each). Held events
    /// are queued once `work` is done, whatever it answered: each stands for a committed write.
    pub async fn batched<F: Future>(&self, work: F) -> F::Output {
        let held = Arc::new(Mutex::new(Vec::new()));
        let output = HELD_EVENTS.scope(held.clone(), work).await;
        let events = held
            .lock()
            .map(|mut held| std::mem::take(&mut *held))
            .unwrap_or_default();
        self.publish_all(events).await;
        output
    }

    /// Queues events, ten per `SendMessageBatch`; each one SQS refuses is logged and counted
    /// as dropped, like [`Self::publish`]'s.
    async fn publish_all(&self, events: Vec<WebhookEvent>) {
        let messages: Vec<WebhookMessage> = events
            .into_iter()
            .map(|event| WebhookMessage::Event { event })
            .collect();
        for chunk in messages.chunks(10) {
            let refused = self.send_batch(chunk).await.unwrap_or_else(|error| {
                tracing::error!(error = %crate::error::ErrorChain(&error), "events could not be queued for webhooks");
                (0..chunk.len()).collect()
            });
            for message in refused.iter().filter_map(|&position| chunk.get(position)) {
                if let WebhookMessage::Event { event } = message {
                    tracing::error!(
                        event_id = event.id,
                        event_type = event.event_type.as_str(),
                        "an event could not be queued for webhooks"
                    );
                }
                crate::metrics::record(crate::metrics::BusinessMetric::WebhookEventDropped);
            }
        }
    }

    /// Sends one message, delayed by `delay_seconds` (clamped to SQS's 0-900).
    pub async fn send(&self, message: &WebhookMessage, delay_seconds: i64) -> Result<(), Error> {
        let Some((sqs, url)) = &self.queue else {
            return Ok(());
        };
        let body = serde_json::to_string(message).map_err(Error::internal)?;
        sqs.send_message()
            .queue_url(url)
            .message_body(body)
            .delay_seconds(clamp_delay(delay_seconds))
            .send()
            .await
            .map_err(dependency_error)?;
        Ok(())
    }

    /// Sends messages without delay, ten per `SendMessageBatch`; fails if any entry failed.
    pub async fn send_all(&self, messages: &[WebhookMessage]) -> Result<(), Error> {
        for chunk in messages.chunks(10) {
            if !self.send_batch(chunk).await?.is_empty() {
                return Err(Error::unavailable("SQS refused part of a batch"));
            }
        }
        Ok(())
    }

    /// One `SendMessageBatch` of up to ten messages without delay: the positions SQS refused.
    async fn send_batch(&self, messages: &[WebhookMessage]) -> Result<Vec<usize>, Error> {
        let Some((sqs, url)) = &self.queue else {
            return Ok(Vec::new());
        };
        let entries = messages
            .iter()
            .enumerate()
            .map(|(position, message)| {
                SendMessageBatchRequestEntry::builder()
                    .id(position.to_string())
                    .message_body(serde_json::to_string(message).map_err(Error::internal)?)
                    .build()
                    .map_err(Error::internal)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let output = sqs
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(dependency_error)?;
        Ok(output
            .failed
            .iter()
            .filter_map(|failed| failed.id.parse().ok())
            .collect())
    }
}

/// `seconds` as an SQS delay (0-900).
pub fn clamp_delay(seconds: i64) -> i32 {
    i32::try_from(seconds.clamp(0, MAX_DELAY_SECONDS)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UserId;
    use crate::webhooks::event::EventType;

    #[test]
    fn messages_round_trip_and_delays_stay_within_sqs_limits() {
        let event = WebhookEvent::new(
            &UserId::from_verified_sub("u".into()),
            EventType::WebhookTest,
            "x",
            serde_json::json!({}),
            &crate::clock::Clock::system(),
        );
        let message = WebhookMessage::Attempt {
            webhook_id: WebhookId::new(),
            event,
            attempt: 2,
            not_before: 5,
        };
        let text = serde_json::to_string(&message).unwrap();
        assert!(text.contains(r#""kind":"attempt""#));
        assert_eq!(
            serde_json::from_str::<WebhookMessage>(&text).unwrap(),
            message
        );
        assert_eq!(clamp_delay(-3), 0);
        assert_eq!(clamp_delay(36_000), 900);
        assert_eq!(clamp_delay(300), 300);
    }
}
