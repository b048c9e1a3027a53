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
use super::store::RunStore;
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
                let stale = item
                    .sending_since
                    .is_none_or(|since| epoch_seconds() - since > STUCK_SENDING_SECONDS);
                if stale || last_receive {
                    self.runs
                        .finish(
                            &item,
                            CommunicationStatus::Sending,
                            CommunicationStatus::Failed,
                            Some("delivery_outcome_unknown"),
                        )
                        .await?;
                    return Ok(());
                }
                return Err(Redeliver::Transient("another attempt is in flight".into()));
            }
            _ => {}
        }
        let user = crate::ids::UserId::from_verified_sub(item.user_id.clone());
        let Some(run) = self.runs.run(&user, &item.run_id).await? else {
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
        let (to, reason) = match outcome {
            Outcome::Sent {
                provider_message_id,
            } => {
                self.runs
                    .finish_sent(&item, provider_message_id.as_deref())
                    .await?;
                return Ok(());
            }
            // The sender's cap for today is spent: the communication waits for its next day.
            Outcome::Deferred { until } => {
                self.runs.schedule(&item, until).await?;
                tracing::info!(run_id = %item.run_id, index = item.index, until, "scheduled for the sender's next day");
                return Ok(());
            }
            Outcome::Failed(reason) => (CommunicationStatus::Failed, Some(reason)),
            Outcome::Unknown(_) => (
                CommunicationStatus::Failed,
                Some("delivery_outcome_unknown".to_owned()),
            ),
            Outcome::Retry(_) if last_receive => (
                CommunicationStatus::Failed,
                Some("retries_exhausted".to_owned()),
            ),
            Outcome::Retry(reason) => {
                self.runs.release(&item).await?;
                return Err(Redeliver::Transient(reason));
            }
            // Waiting for the platform is not a failed attempt: the communication goes back to
            // the queue, visible when the platform's window resets, and this receive is done.
            Outcome::RateLimited { reason, seconds } => {
                self.runs.release(&item).await?;
                self.queue.send_delayed(message, seconds).await?;
                tracing::info!(run_id = %item.run_id, index = item.index, %reason, seconds, "waiting for the platform's rate limit");
                return Ok(());
            }
        };
        self.runs
            .finish(&item, CommunicationStatus::Sending, to, reason.as_deref())
            .await?;
        Ok(())
    }
}
