//! The worker's batch handler: delivers each queued communication at most once.
//!
//! Per message: read the communication; a finished one is a duplicate delivery and is
//! acknowledged; a queued one is claimed (`queued` -> `sending`, conditional) before anything is
//! sent, then delivered and finished (`sent` / `failed` / `cancelled`) together with its run's
//! counters. A transient failure gives the claim back and reports the message so SQS retries it;
//! on its last receive it is recorded as failed instead. A communication left in `sending` (its
//! worker died mid-delivery) is resolved as failed with `delivery_outcome_unknown` once stale:
//! it may have been delivered, so it is never sent again.

use super::delivery::{Delivery, Outcome};
use super::model::CommunicationStatus;
use super::queue::{CommunicationMessage, CommunicationQueue, SEND_BATCH_SIZE};
use super::store::{CommunicationItem, RunStore};
use crate::clock::epoch_seconds;
use crate::clock::{Clock, DAY_SECONDS, utc_day};
use crate::error::{Error, ErrorChain};

/// Receives of one message before SQS moves it to the dead-letter queue; must equal the
/// queue's `maxReceiveCount` in template.yaml (a test checks).
pub const MAX_RECEIVES: u32 = 5;
/// Seconds after which a communication still `sending` is taken to have lost its worker
/// (well above the worker's 30 s timeout).
pub const STUCK_SENDING_SECONDS: i64 = 300;
/// Days back the release sweep looks for scheduled communications (one missed sweep, or a
/// week-long outage, still releases them).
pub const RELEASE_LOOKBACK_DAYS: i64 = 14;

/// Why a message must come back.
#[derive(Debug)]
enum Redeliver {
    Transient(String),
    Dependency(Error),
}

impl From<Error> for Redeliver {
    fn from(error: Error) -> Self {
        Self::Dependency(error)
    }
}

/// Delivers communications from queue messages.
#[derive(Clone)]
pub struct CommunicationsWorker {
    runs: RunStore,
    delivery: Delivery,
    queue: CommunicationQueue,
    clock: Clock,
}

impl CommunicationsWorker {
    /// A worker over the runs store, a delivery, its own queue (for communications that wait
    /// for a platform's rate limit or their day) and a clock (the delivery's).
    pub fn new(
        runs: RunStore,
        delivery: Delivery,
        queue: CommunicationQueue,
        clock: Clock,
    ) -> Self {
        Self {
            runs,
            delivery,
            queue,
            clock,
        }
    }

    /// Handles one queue message: `true` when it is done with (delivered, recorded, or a
    /// duplicate), `false` when SQS must deliver it again. `receives` is SQS's
    /// `ApproximateReceiveCount`.
    pub async fn handle_message(&self, body: Option<&str>, receives: u32) -> bool {
        let Some(message) =
            body.and_then(|body| serde_json::from_str::<CommunicationMessage>(body).ok())
        else {
            // Never logged whole: a body is not ours to print. It retries into the DLQ.
            tracing::error!(body_bytes = body.map_or(0, str::len), "undecodable message");
            return false;
        };
        match self.process(&message, receives).await {
            Ok(()) => true,
            Err(Redeliver::Transient(reason)) => {
                tracing::warn!(run_id = %message.run_id, index = message.index, %reason, receives, "delivery will be retried");
                false
            }
            Err(Redeliver::Dependency(error)) => {
                tracing::error!(run_id = %message.run_id, index = message.index, error = %ErrorChain(&error), "message failed");
                false
            }
        }
    }

    /// Puts every scheduled communication whose time has come back on the queue (run every
    /// few minutes by the schedule in template.yaml); returns how many. A communication on the
    /// queue twice is claimed once.
    pub async fn release_scheduled(&self) -> Result<usize, Error> {
        let now = self.clock.epoch_seconds();
        let mut due = Vec::new();
        for days_back in (0..=RELEASE_LOOKBACK_DAYS).rev() {
            for (user_id, run_id, index) in self
                .runs
                .scheduled_on(&utc_day(now - days_back * DAY_SECONDS))
                .await?
            {
                let item = self.runs.communication(&user_id, &run_id, index).await?;
                if item.is_some_and(|item| {
                    item.status == CommunicationStatus::Scheduled
                        && item.scheduled_for.is_some_and(|at| at <= now)
                }) {
                    due.push(CommunicationMessage {
                        user_id,
                        run_id,
                        index,
                    });
                }
            }
        }
        for batch in due.chunks(SEND_BATCH_SIZE) {
            let mut rest = batch;
            while !rest.is_empty() {
                let accepted = self.queue.send_batch(rest).await?;
                if accepted == 0 {
                    return Err(Error::unavailable(
                        "SQS refused the released communications",
                    ));
                }
                rest = &rest[accepted..];
            }
        }
        if !due.is_empty() {
            tracing::info!(released = due.len(), "scheduled communications released");
        }
        Ok(due.len())
    }

    async fn process(
        &self,
        message: &CommunicationMessage,
        receives: u32,
    ) -> Result<(), Redeliver> {
        let Some(item) = self
            .runs
            .communication(&message.user_id, &message.run_id, message.index)
            .await?
        else {
            tracing::warn!(run_id = %message.run_id, index = message.index, "message names no communication");
            return Ok(());
        };
        let last_receive = receives >= MAX_RECEIVES;
        let now = self.clock.epoch_seconds();
        match item.status {
            status if status.is_final() => return Ok(()),
            // Early: the release sweep puts it on the queue again when its day comes.
            CommunicationStatus::Scheduled if item.scheduled_for.is_some_and(|at| at > now) => {
                return Ok(());
            }
            CommunicationStatus::Sending => {
                return self.resolve_in_flight(&item, last_receive).await;
            }
            _ => {}
        }
        let Some(run) = self.runs.run(&item.user_id, &item.run_id).await? else {
            return Err(Redeliver::Transient("run not readable yet".into()));
        };
        if run.cancel_requested {
            self.runs
                .finish(
                    &item,
                    item.status,
                    CommunicationStatus::Cancelled,
                    Some("cancelled_by_user"),
                )
                .await?;
            return Ok(());
        }
        if !self.runs.claim(&item, now).await? {
            // Another delivery of this message claimed it, or it was cancelled meanwhile.
            return Ok(());
        }
        if run.started_at.is_none() {
            self.runs.mark_started(&item.user_id, &item.run_id).await?;
        }
        let outcome = self.delivery.deliver(&item, &run.message).await;
        tracing::info!(run_id = %item.run_id, index = item.index, channel = item.channel.as_str(), outcome = ?outcome, "delivery attempt");
        self.settle(message, &item, settlement(outcome, last_receive))
            .await
    }

    /// A communication another attempt left in `sending`: that worker may still be delivering
    /// it, so it is retried later; once stale (or on the last receive) it may have been
    /// delivered, so it is recorded as failed with `delivery_outcome_unknown`, never sent again.
    async fn resolve_in_flight(
        &self,
        item: &CommunicationItem,
        last_receive: bool,
    ) -> Result<(), Redeliver> {
        let stale = item
            .sending_since
            .is_none_or(|since| epoch_seconds() - since > STUCK_SENDING_SECONDS);
        if !(stale || last_receive) {
            return Err(Redeliver::Transient("another attempt is in flight".into()));
        }
        self.runs
            .finish(
                item,
                CommunicationStatus::Sending,
                CommunicationStatus::Failed,
                Some(DELIVERY_OUTCOME_UNKNOWN),
            )
            .await?;
        Ok(())
    }

    /// Carries out what a delivery attempt settled on.
    async fn settle(
        &self,
        message: &CommunicationMessage,
        item: &CommunicationItem,
        settlement: Settlement,
    ) -> Result<(), Redeliver> {
        match settlement {
            Settlement::Sent {
                provider_message_id,
            } => {
                self.runs
                    .finish_sent(item, provider_message_id.as_deref())
                    .await?;
            }
            Settlement::Failed(reason) => {
                self.runs
                    .finish(
                        item,
                        CommunicationStatus::Sending,
                        CommunicationStatus::Failed,
                        Some(&reason),
                    )
                    .await?;
            }
            Settlement::NextDay { until } => {
                self.runs.schedule(item, until).await?;
                tracing::info!(run_id = %item.run_id, index = item.index, until, "scheduled for the sender's next day");
            }
            Settlement::Retry(reason) => {
                self.runs.release(item).await?;
                return Err(Redeliver::Transient(reason));
            }
            Settlement::WaitForPlatform { reason, seconds } => {
                self.runs.release(item).await?;
                self.queue.send_delayed(message, seconds).await?;
                tracing::info!(run_id = %item.run_id, index = item.index, %reason, seconds, "waiting for the platform's rate limit");
            }
        }
        Ok(())
    }
}

/// Reason of a communication that may or may not have been delivered.
pub const DELIVERY_OUTCOME_UNKNOWN: &str = "delivery_outcome_unknown";

/// What becomes of a claimed communication after one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// `sent`, with the provider's message id when it has one.
    Sent {
        /// The provider's id of the message.
        provider_message_id: Option<String>,
    },
    /// `failed`, with this reason; never retried.
    Failed(String),
    /// `scheduled` until the sender's next day.
    NextDay {
        /// Epoch second it may go out.
        until: i64,
    },
    /// Back to `queued`, and SQS delivers the message again.
    Retry(String),
    /// Back to `queued`, on the queue again after the platform's window (not a failed receive).
    WaitForPlatform {
        /// Why.
        reason: String,
        /// Seconds until the platform's window resets.
        seconds: u64,
    },
}

/// Decides what an attempt's outcome means for its communication: an outcome that may have
/// delivered is never retried, and a retryable one on the queue's last receive is failed
/// rather than left to the dead-letter queue.
pub fn settlement(outcome: Outcome, last_receive: bool) -> Settlement {
    match outcome {
        Outcome::Sent {
            provider_message_id,
        } => Settlement::Sent {
            provider_message_id,
        },
        Outcome::Deferred { until } => Settlement::NextDay { until },
        Outcome::Failed(reason) => Settlement::Failed(reason),
        Outcome::Unknown(_) => Settlement::Failed(DELIVERY_OUTCOME_UNKNOWN.to_owned()),
        Outcome::Retry(_) if last_receive => Settlement::Failed("retries_exhausted".to_owned()),
        Outcome::Retry(reason) => Settlement::Retry(reason),
        Outcome::RateLimited { reason, seconds } => Settlement::WaitForPlatform { reason, seconds },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_that_may_have_delivered_is_never_retried() {
        assert_eq!(
            settlement(Outcome::Unknown("ses_no_answer".into()), false),
            Settlement::Failed(DELIVERY_OUTCOME_UNKNOWN.into())
        );
        assert_eq!(
            settlement(Outcome::Retry("ses_throttled".into()), false),
            Settlement::Retry("ses_throttled".into())
        );
        assert_eq!(
            settlement(Outcome::Retry("ses_throttled".into()), true),
            Settlement::Failed("retries_exhausted".into())
        );
        // Waiting for a platform's window or the next day is not a failure, even at the end.
        assert_eq!(
            settlement(Outcome::Deferred { until: 86_400 }, true),
            Settlement::NextDay { until: 86_400 }
        );
        assert!(matches!(
            settlement(
                Outcome::RateLimited {
                    reason: "rate_limited".into(),
                    seconds: 60
                },
                true
            ),
            Settlement::WaitForPlatform { seconds: 60, .. }
        ));
    }
}
