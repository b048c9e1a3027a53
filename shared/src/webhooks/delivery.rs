//! The deliverer (`webhook-delivery`, fed by the webhook queue): fans an event out to the
//! user's subscribed endpoints, then posts each attempt, signed, and settles it: a 2xx within
//! 10 seconds succeeds; anything else is recorded and retried on `WEBHOOK_RETRY_DELAYS`, then
//! recorded failed. An endpoint failing for 5 days is disabled. Redirects are never followed,
//! and the client connects only to addresses the URL policy admits (checked at connection
//! time, so a name that rebinds to a private address reaches nothing).

use std::sync::Arc;
use std::time::Duration;

use super::address::{BlockedAddress, CheckedResolver, HostResolver, SystemResolver, UrlPolicy};
use super::event::{EventType, WebhookEvent};
use super::queue::{EventPublisher, WebhookMessage};
use super::secrets::EndpointSecrets;
use super::store::{DeliveryOutcome, DeliveryRecord, EndpointItem, FailureMark, WebhookStore};
use crate::clock::Clock;
use crate::config::{ConfigError, ConfigSource, vars};
use crate::error::Error;
use crate::ids::WebhookId;

/// The retry schedule of the contract, in seconds after each failed attempt (over 24 hours).
pub const DEFAULT_RETRY_DELAYS: [i64; 7] = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];

/// An endpoint that has failed every attempt for this long is disabled.
pub const DISABLE_AFTER_SECONDS: i64 = 5 * 86_400;

/// How long an endpoint has to answer.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The retry schedule from `WEBHOOK_RETRY_DELAYS` (default [`DEFAULT_RETRY_DELAYS`]).
pub fn retry_delays(source: &ConfigSource<'_>) -> Result<Vec<i64>, ConfigError> {
    let Some(text) = source.optional(vars::WEBHOOK_RETRY_DELAYS) else {
        return Ok(DEFAULT_RETRY_DELAYS.to_vec());
    };
    text.split(',')
        .map(|part| part.trim().parse::<i64>().ok().filter(|delay| *delay >= 0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ConfigError::Invalid {
            name: vars::WEBHOOK_RETRY_DELAYS,
            problem: "must be non-negative whole seconds, comma-separated".into(),
        })
}

/// Posts events to endpoints.
#[derive(Clone)]
pub struct WebhookDeliverer {
    store: WebhookStore,
    secrets: EndpointSecrets,
    queue: EventPublisher,
    client: reqwest::Client,
    policy: UrlPolicy,
    resolver: Arc<dyn HostResolver>,
    delays: Vec<i64>,
    clock: Clock,
}

/// What one post came to.
struct Posted {
    status_code: Option<u16>,
    error: Option<&'static str>,
}

impl WebhookDeliverer {
    /// A deliverer; its HTTP client (built here, once per cold start) resolves through the
    /// policy's checks.
    pub fn new(
        store: WebhookStore,
        secrets: EndpointSecrets,
        queue: EventPublisher,
        policy: UrlPolicy,
        delays: Vec<i64>,
        clock: Clock,
    ) -> Result<Self, ConfigError> {
        let resolver: Arc<dyn HostResolver> = Arc::new(SystemResolver);
        let client = delivery_client(policy, resolver.clone()).ok_or(ConfigError::Invalid {
            name: vars::WEBHOOK_QUEUE_URL,
            problem: "the HTTPS client for webhooks could not be built".into(),
        })?;
        Ok(Self {
            store,
            secrets,
            queue,
            client,
            policy,
            resolver,
            delays,
            clock,
        })
    }

    /// The deliverer of the functions' settings (`WEBHOOKS_TABLE`, `SECRETS_KMS_KEY_ID`,
    /// `WEBHOOK_QUEUE_URL`, `WEBHOOK_RETRY_DELAYS`, `WEBHOOK_ALLOW_LOOPBACK`).
    pub fn from_config(
        source: &ConfigSource<'_>,
        sdk: &aws_config::SdkConfig,
        clock: Clock,
    ) -> Result<Self, ConfigError> {
        let (store, secrets) = super::store_and_secrets(source, sdk)?;
        Self::new(
            store,
            secrets,
            EventPublisher::from_source(source, sdk),
            UrlPolicy::from_source(source),
            retry_delays(source)?,
            clock,
        )
    }

    /// Handles one queue message: `true` when done with it, `false` when SQS must deliver it
    /// again (a dependency failed before the attempt was settled). A message that is not
    /// ours is logged and dropped.
    pub async fn handle_message(&self, body: Option<&str>) -> bool {
        let Some(message) = body.and_then(|body| serde_json::from_str::<WebhookMessage>(body).ok())
        else {
            tracing::error!("a webhook queue message that is not one of ours was dropped");
            return true;
        };
        let result = match message {
            WebhookMessage::Event { event } => self.fan_out(event).await,
            WebhookMessage::Attempt {
                webhook_id,
                event,
                attempt,
                not_before,
            } => self.attempt(&webhook_id, event, attempt, not_before).await,
        };
        match result {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(error = %crate::error::ErrorChain(&error), "webhook message left for another receive");
                false
            }
        }
    }

    async fn fan_out(&self, event: WebhookEvent) -> Result<(), Error> {
        if event.event_type == EventType::WebhookTest {
            return Ok(());
        }
        let attempts: Vec<WebhookMessage> = self
            .store
            .list(&event.user_id)
            .await?
            .into_iter()
            .filter(|endpoint| endpoint.disabled_at.is_none())
            .filter(|endpoint| endpoint.subscribes_to(event.event_type))
            .map(|endpoint| WebhookMessage::Attempt {
                webhook_id: endpoint.webhook_id,
                event: event.clone(),
                attempt: 1,
                not_before: 0,
            })
            .collect();
        self.queue.send_all(&attempts).await
    }

    async fn attempt(
        &self,
        webhook_id: &WebhookId,
        event: WebhookEvent,
        attempt: u32,
        not_before: i64,
    ) -> Result<(), Error> {
        let now = self.clock.epoch_seconds();
        if not_before > now {
            let message = WebhookMessage::Attempt {
                webhook_id: *webhook_id,
                event,
                attempt,
                not_before,
            };
            return self.queue.send(&message, not_before - now).await;
        }
        // Deleted: its deliveries stop. Disabled: only a test goes (and may enable it again).
        let Some(endpoint) = self.store.get(&event.user_id, webhook_id).await? else {
            return Ok(());
        };
        if endpoint.disabled_at.is_some() && event.event_type != EventType::WebhookTest {
            return Ok(());
        }
        let posted = self.post(&endpoint, &event).await?;
        let attempted_at_millis = now.saturating_mul(1000);
        let mut record = DeliveryRecord {
            event_id: event.id.clone(),
            event_type: event.event_type,
            attempt,
            status_code: posted.status_code,
            outcome: DeliveryOutcome::Succeeded,
            error: posted.error.map(str::to_owned),
            attempted_at: crate::clock::rfc3339(now),
            next_attempt_at: None,
        };
        if posted.error.is_none() {
            self.store.mark_succeeded(&endpoint).await?;
            return self
                .store
                .record_attempt(&event.user_id, webhook_id, attempted_at_millis, record)
                .await;
        }
        let mark = self
            .store
            .mark_failed(&endpoint, now, DISABLE_AFTER_SECONDS)
            .await?;
        let next_at = match mark {
            FailureMark::Failing => usize::try_from(attempt)
                .ok()
                .and_then(|attempt| self.delays.get(attempt.checked_sub(1)?))
                .map(|delay| now.saturating_add(*delay)),
            FailureMark::Disabled | FailureMark::Gone => None,
        };
        record.outcome = if next_at.is_some() {
            DeliveryOutcome::Retrying
        } else {
            DeliveryOutcome::Failed
        };
        record.next_attempt_at = next_at.map(crate::clock::rfc3339);
        self.store
            .record_attempt(&event.user_id, webhook_id, attempted_at_millis, record)
            .await?;
        match next_at {
            Some(at) => {
                let retry = WebhookMessage::Attempt {
                    webhook_id: *webhook_id,
                    event,
                    attempt: attempt.saturating_add(1),
                    not_before: at,
                };
                self.queue.send(&retry, at - now).await
            }
            None => {
                tracing::warn!(user_id = %event.user_id, %webhook_id, event_id = %event.id, attempt, disabled = (mark == FailureMark::Disabled), "a webhook event was given up on");
                crate::metrics::record(crate::metrics::BusinessMetric::WebhookFailed);
                Ok(())
            }
        }
    }

    /// Posts the event once. `Err` only when the secret could not be opened (a dependency):
    /// every answer or failure of the endpoint is an outcome.
    async fn post(&self, endpoint: &EndpointItem, event: &WebhookEvent) -> Result<Posted, Error> {
        let blocked = Posted {
            status_code: None,
            error: Some("blocked_address"),
        };
        let Ok(url) = self.policy.parse(&endpoint.url) else {
            return Ok(blocked);
        };
        if self
            .policy
            .check(&url, self.resolver.as_ref())
            .await
            .is_err()
        {
            return Ok(blocked);
        }
        let secret = self.secrets.open(endpoint).await?;
        // The signature's time is the wall clock's, never a moved one: receivers compare it
        // with theirs (Standard Webhooks' 5-minute tolerance).
        let timestamp = crate::clock::Clock::system().epoch_seconds();
        let body = event.body();
        let signature = secret.sign(&event.id, timestamp, &body);
        let answer = self
            .client
            .post(url)
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::USER_AGENT, "PipeWise-Webhooks/1")
            .body(body)
            .send()
            .await;
        Ok(match answer {
            Ok(response) => {
                let status = response.status();
                Posted {
                    status_code: Some(status.as_u16()),
                    error: (!status.is_success()).then_some("http_status"),
                }
            }
            Err(error) if error.is_timeout() => Posted {
                status_code: None,
                error: Some("timeout"),
            },
            Err(error) if caused_by_blocked_address(&error) => blocked,
            Err(_) => Posted {
                status_code: None,
                error: Some("connection_failed"),
            },
        })
    }
}

fn caused_by_blocked_address(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if current.is::<BlockedAddress>() {
            return true;
        }
        cause = current.source();
    }
    false
}

/// The client deliveries go through: the bundled Mozilla roots, no redirects, no proxy, a
/// 10-second deadline, and names resolved through the policy's checks.
fn delivery_client(policy: UrlPolicy, resolver: Arc<dyn HostResolver>) -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .use_preconfigured_tls(crate::https::tls_config()?)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(CheckedResolver::new(policy, resolver)))
        .connect_timeout(Duration::from_secs(5))
        .timeout(DELIVERY_TIMEOUT)
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn the_retry_schedule_defaults_to_the_contract_and_refuses_nonsense() {
        let empty = HashMap::new();
        let delays = retry_delays(&ConfigSource::from_map(&empty)).unwrap();
        assert_eq!(delays, DEFAULT_RETRY_DELAYS);
        assert!(
            delays.iter().sum::<i64>() >= 86_400,
            "retries span at least 24 hours"
        );
        let set = HashMap::from([(vars::WEBHOOK_RETRY_DELAYS.to_owned(), "0, 1,2".to_owned())]);
        assert_eq!(
            retry_delays(&ConfigSource::from_map(&set)).unwrap(),
            [0, 1, 2]
        );
        for bad in ["5,-1", "five", "5,,6"] {
            let set = HashMap::from([(vars::WEBHOOK_RETRY_DELAYS.to_owned(), bad.to_owned())]);
            assert!(
                retry_delays(&ConfigSource::from_map(&set)).is_err(),
                "{bad}"
            );
        }
    }
}
