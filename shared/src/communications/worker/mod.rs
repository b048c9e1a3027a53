//! The worker's batch handler: delivers each queued communication at most once.
//!
//! Per message: read the communication; a finished one is a duplicate delivery and is
//! acknowledged; a queued one is claimed (`queued` -> `sending`, conditional) before anything is
//! sent, then delivered and finished (`sent` / `failed` / `cancelled`) together with its run's
//! counters. A transient failure gives the claim back and reports the message so SQS retries it;
//! on its last receive it is recorded as failed instead. A communication left in `sending` (its
//! worker died mid-delivery) is resolved as failed with `delivery_outcome_unknown` once stale:
//! it may have been delivered, so it is never sent again.

mod batch;
mod follow_ups;
mod tick;

use super::delivery::{Accepted, Delivery, Outcome};
use super::model::CommunicationStatus;
use super::queue::{CommunicationMessage, CommunicationQueue};
use super::reason::{DeliveryFailure, FailureReason};
use super::store::{CommunicationItem, RunItem, RunStore};
use crate::clock::Clock;
use crate::error::Error;

pub use follow_ups::FollowUpStops;
pub use tick::{
    RELEASE_LOOKBACK_DAYS, RELEASE_STEP, STALE_QUEUED_SECONDS, TICK_BUDGET, TickReport,
};

/// Receives of one message before SQS moves it to the dead-letter queue; must equal the
/// queue's `maxReceiveCount` in template.yaml (a test checks).
pub const MAX_RECEIVES: u32 = 5;
/// Seconds after which a communication still `sending` is taken to have lost its worker
/// (well above the worker's 30 s timeout).
pub const STUCK_SENDING_SECONDS: i64 = 300;

/// Why a message must come back.
#[derive(Debug)]
pub(super) enum Redeliver {
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
    tick_budget: std::time::Duration,
    replies: Option<super::replies::ReplyPoller>,
    stops: Option<FollowUpStops>,
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
            tick_budget: TICK_BUDGET,
            replies: None,
            stops: None,
        }
    }

    /// The same worker, checking each follow-up against these stops right before it goes out.
    pub fn with_follow_up_stops(mut self, stops: FollowUpStops) -> Self {
        self.stops = Some(stops);
        self
    }

    /// The same worker, reading the connected mailboxes for replies on its mailbox schedule.
    pub fn with_replies(mut self, replies: super::replies::ReplyPoller) -> Self {
        self.replies = Some(replies);
        self
    }

    /// Reads the connected mailboxes for replies (the worker's mailbox schedule).
    pub async fn poll_replies(&self) -> Result<super::replies::PollReport, Error> {
        match &self.replies {
            Some(replies) => replies.poll().await,
            None => Ok(super::replies::PollReport::default()),
        }
    }

    /// The same worker with another time budget per tick (tests: a budget that cannot run out,
    /// or one that is spent at once).
    pub fn with_tick_budget(mut self, budget: std::time::Duration) -> Self {
        self.tick_budget = budget;
        self
    }

    /// Handles one queue message, as a batch of one (see
    /// [`CommunicationsWorker::handle_messages`]).
    pub async fn handle_message(&self, body: Option<&str>, receives: u32) -> bool {
        self.handle_messages(&[(body, receives)])
            .await
            .first()
            .copied()
            .unwrap_or(false)
    }

    /// A communication another attempt left in `sending`: that worker may still be delivering
    /// it, so it is retried later; once stale (or on the last receive) it may have been
    /// delivered, so it is recorded as failed with `delivery_outcome_unknown`, never sent again.
    async fn resolve_in_flight(
        &self,
        item: &CommunicationItem,
        last_receive: bool,
    ) -> Result<(), Redeliver> {
        let now = self.clock.epoch_seconds();
        let stale = item
            .sending_since
            .is_none_or(|since| now.saturating_sub(since) > STUCK_SENDING_SECONDS);
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
        run: &RunItem,
        settlement: Settlement,
        state: &batch::BatchState,
    ) -> Result<(), Redeliver> {
        match settlement {
            Settlement::Sent(accepted) => {
                let next = run.follow_up_after(item.step).map(|follow_up| {
                    let at = self
                        .clock
                        .epoch_seconds()
                        .saturating_add(follow_up.wait_seconds);
                    item.follow_up(&accepted, at, self.clock.now_rfc3339())
                });
                let finished = self
                    .runs
                    .finish_sent(item, &accepted, next.as_ref())
                    .await?;
                state.finished_one_of(item);
                if finished {
                    crate::metrics::record(crate::metrics::BusinessMetric::Sent {
                        channel: item.channel.as_str(),
                    });
                }
            }
            Settlement::Failed(reason) => {
                let reason = reason.to_string();
                let finished = self
                    .runs
                    .finish_in_batch(
                        item,
                        CommunicationStatus::Sending,
                        CommunicationStatus::Failed,
                        Some(&reason),
                    )
                    .await?;
                state.finished_one_of(item);
                if finished {
                    crate::metrics::record(crate::metrics::BusinessMetric::Failed {
                        channel: item.channel.as_str(),
                        reason: &reason,
                    });
                }
            }
            Settlement::NextDay { until } => {
                self.runs.schedule(item, until).await?;
                tracing::info!(run_id = %item.run_id, index = item.index, until, "scheduled for later (the sender's next day or the run's window)");
            }
            Settlement::Retry(reason) => {
                self.runs.release(item).await?;
                return Err(Redeliver::Transient(reason.to_string()));
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
pub const DELIVERY_OUTCOME_UNKNOWN: &str = FailureReason::DeliveryOutcomeUnknown.as_str();

/// What becomes of a claimed communication after one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// `sent`, with what the provider said of the message (its ids, for feedback and replies).
    Sent(Accepted),
    /// `failed`, with this reason; never retried.
    Failed(DeliveryFailure),
    /// `scheduled` until the sender's next day.
    NextDay {
        /// Epoch second it may go out.
        until: i64,
    },
    /// Back to `queued`, and SQS delivers the message again.
    Retry(DeliveryFailure),
    /// Back to `queued`, on the queue again after the platform's window (not a failed receive).
    WaitForPlatform {
        /// Why.
        reason: FailureReason,
        /// Seconds until the platform's window resets.
        seconds: u64,
    },
}

/// Decides what an attempt's outcome means for its communication: an outcome that may have
/// delivered is never retried, and a retryable one on the queue's last receive is failed
/// rather than left to the dead-letter queue.
pub fn settlement(outcome: Outcome, last_receive: bool) -> Settlement {
    match outcome {
        Outcome::Sent(accepted) => Settlement::Sent(accepted),
        Outcome::Deferred { until } => Settlement::NextDay { until },
        Outcome::Failed(reason) => Settlement::Failed(reason),
        Outcome::Unknown(_) => Settlement::Failed(FailureReason::DeliveryOutcomeUnknown.into()),
        Outcome::Retry(_) if last_receive => {
            Settlement::Failed(FailureReason::RetriesExhausted.into())
        }
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
            settlement(Outcome::Unknown(FailureReason::SesNoAnswer.into()), false),
            Settlement::Failed(FailureReason::DeliveryOutcomeUnknown.into())
        );
        assert_eq!(
            settlement(Outcome::Retry(FailureReason::SesThrottled.into()), false),
            Settlement::Retry(FailureReason::SesThrottled.into())
        );
        assert_eq!(
            settlement(Outcome::Retry(FailureReason::SesThrottled.into()), true),
            Settlement::Failed(FailureReason::RetriesExhausted.into())
        );
        // Waiting for a platform's window or the next day is not a failure, even at the end.
        assert_eq!(
            settlement(Outcome::Deferred { until: 86_400 }, true),
            Settlement::NextDay { until: 86_400 }
        );
        assert!(matches!(
            settlement(
                Outcome::RateLimited {
                    reason: FailureReason::RateLimited,
                    seconds: 60
                },
                true
            ),
            Settlement::WaitForPlatform { seconds: 60, .. }
        ));
    }
}
