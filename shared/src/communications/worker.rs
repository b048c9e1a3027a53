//! The worker's batch handler: delivers each queued communication at most once.
//!
//! Per message: read the communication; a finished one is a duplicate delivery and is
//! acknowledged; a queued one is claimed (`queued` -> `sending`, conditional) before anything is
//! sent, then delivered and finished (`sent` / `failed` / `cancelled`) together with its run's
//! counters. A transient failure gives the claim back and reports the message so SQS retries it;
//! on its last receive it is recorded as failed instead. A communication left in `sending` (its
//! worker died mid-delivery) is resolved as failed with `delivery_outcome_unknown` once stale:
//! it may have been delivered, so it is never sent again.

use super::delivery::{Accepted, Delivery, Outcome};
use super::model::CommunicationStatus;
use super::queue::{CommunicationMessage, CommunicationQueue, SEND_BATCH_SIZE};
use super::reason::{DeliveryFailure, FailureReason};
use super::store::{CommunicationItem, RunItem, RunStore};
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

/// Seconds after which a communication still `queued` is taken to have lost its message (the
/// queue's visibility timeout is 3 minutes and a message is tried 5 times; an hour covers a
/// backlog without sending duplicates every tick).
pub const STALE_QUEUED_SECONDS: i64 = 3600;
/// The part of the worker's 30 s timeout one tick may use.
pub const TICK_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);
/// Communications read per BatchGetItem (its limit).
const READ_BATCH: usize = 100;
/// BatchGetItem reads the release runs at once (each followed by its SendMessageBatch calls):
/// a step of the release tick.
const RELEASE_CONCURRENCY: usize = 4;
/// Communications one step of the release tick reads; the first step is always taken.
pub const RELEASE_STEP: usize = READ_BATCH * RELEASE_CONCURRENCY;

/// What one tick of the worker's schedule did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TickReport {
    /// Scheduled communications put back on the queue.
    pub released: usize,
    /// Queued communications whose message was lost, put back on the queue.
    pub requeued: usize,
    /// Communications left `sending` by a dead worker, settled as `delivery_outcome_unknown`.
    pub settled_unknown: usize,
    /// The tick's time ran out before the sweep finished (the next tick goes on).
    pub out_of_time: bool,
}

/// What the sweep found an in-flight communication to be.
enum Stale {
    /// Left `sending` by a dead worker: now failed with `delivery_outcome_unknown`.
    Settled,
    /// Queued with its message lost: to be put back on the queue.
    Requeue(CommunicationMessage),
    /// Still within its time (or settled meanwhile by someone else).
    Fresh,
}

/// Seconds from an RFC 3339 time to `now`; `None` when it cannot be read.
fn seconds_since(at: &str, now: i64) -> Option<i64> {
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|at| now.saturating_sub(at.unix_timestamp()))
}

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
    tick_budget: std::time::Duration,
    replies: Option<super::replies::ReplyPoller>,
    stops: Option<FollowUpStops>,
}

/// What stops a follow-up before it goes out: the person replied (any channel, any run) since
/// the sequence started, or their address is suppressed (unsubscribed, bounced, complained).
#[derive(Clone)]
pub struct FollowUpStops {
    targets: crate::targets::TargetStore,
    suppressions: super::suppression::SuppressionStore,
}

impl FollowUpStops {
    /// The checks over the targets and their suppression list.
    pub fn new(
        targets: crate::targets::TargetStore,
        suppressions: super::suppression::SuppressionStore,
    ) -> Self {
        Self {
            targets,
            suppressions,
        }
    }

    /// Why `item` (a follow-up of `run`) must not go out, if it must not.
    async fn reason(
        &self,
        item: &CommunicationItem,
        run: &RunItem,
    ) -> Result<Option<String>, Error> {
        let target = match crate::targets::TargetId::parse(&item.target_id) {
            Some(id) => self.targets.get(&item.user_id, id).await?,
            None => None,
        };
        let Some(target) = target else {
            return Ok(Some(STOP_TARGET_DELETED.into()));
        };
        // RFC 3339 in UTC with the same precision sorts as time does.
        if target
            .target
            .last_replied_at
            .as_deref()
            .is_some_and(|replied| replied >= run.created_at.as_str())
        {
            return Ok(Some(STOP_REPLIED.into()));
        }
        if item.channel == super::model::Channel::Email
            && let Some(address) = item.recipient.email.as_deref()
            && let Some(suppression) = self.suppressions.of_address(&item.user_id, address).await?
        {
            return Ok(Some(suppression.reason.as_str().to_owned()));
        }
        Ok(None)
    }
}

/// A follow-up's reason when its person replied after the sequence started.
pub const STOP_REPLIED: &str = "replied";
/// A follow-up's reason when its target was deleted.
pub const STOP_TARGET_DELETED: &str = "target_deleted";

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

    /// One run of the worker's schedule (every minute in template.yaml): releases what is
    /// due, then sweeps what was left in flight, inside [`TICK_BUDGET`]; what it does not reach
    /// it finds on the next tick (everything it looks for stays in its index until settled).
    pub async fn tick(&self) -> Result<TickReport, Error> {
        let deadline = std::time::Instant::now() + self.tick_budget;
        let (released, out_of_time) = self.release_until(deadline).await?;
        let mut report = if out_of_time {
            TickReport {
                out_of_time,
                ..TickReport::default()
            }
        } else {
            self.sweep_in_flight_until(deadline).await?
        };
        report.released = released;
        tracing::info!(?report, "worker tick");
        Ok(report)
    }

    /// Puts every scheduled communication whose time has come back on the queue; returns how
    /// many. A communication on the queue twice is claimed once.
    pub async fn release_scheduled(&self) -> Result<usize, Error> {
        let (released, _) = self
            .release_until(std::time::Instant::now() + self.tick_budget)
            .await?;
        Ok(released)
    }

    /// Reads each day's scheduled keys and releases them a step at a time: a step reads
    /// [`RELEASE_CONCURRENCY`] batches of 100 communications at once (BatchGetItem) and enqueues
    /// the due ones of each as soon as it is read, until `deadline`. Whether the deadline cut
    /// it short; the first step is always taken, so every tick makes progress.
    async fn release_until(&self, deadline: std::time::Instant) -> Result<(usize, bool), Error> {
        let now = self.clock.epoch_seconds();
        let mut released = 0;
        let mut first = true;
        for days_back in (0..=RELEASE_LOOKBACK_DAYS).rev() {
            let day = utc_day(now.saturating_sub(days_back.saturating_mul(DAY_SECONDS)));
            let keys = self.runs.scheduled_on(&day).await?;
            for step in keys.chunks(RELEASE_STEP) {
                if !first && std::time::Instant::now() >= deadline {
                    tracing::warn!(
                        released,
                        "release tick out of time; the rest waits for the next tick"
                    );
                    return Ok((released, true));
                }
                first = false;
                let batches = step
                    .chunks(READ_BATCH)
                    .map(|batch| self.release_batch(batch, now));
                for count in futures::future::try_join_all(batches).await? {
                    released += count;
                }
            }
        }
        if released > 0 {
            tracing::info!(released, "scheduled communications released");
        }
        Ok((released, false))
    }

    /// Reads one batch of scheduled communications and enqueues the ones due at `now`; how
    /// many. One still `scheduled` stays so until a worker claims it, so a batch released by
    /// two overlapping ticks is sent once.
    async fn release_batch(
        &self,
        keys: &[(crate::ids::UserId, crate::ids::RunId, u32)],
        now: i64,
    ) -> Result<usize, Error> {
        let due: Vec<CommunicationMessage> = self
            .runs
            .communications_by_key(keys)
            .await?
            .into_iter()
            .filter(|item| {
                item.status == CommunicationStatus::Scheduled
                    && item.scheduled_for.is_some_and(|at| at <= now)
            })
            .map(|item| CommunicationMessage {
                user_id: item.user_id,
                run_id: item.run_id,
                index: item.index,
            })
            .collect();
        self.enqueue_all(&due).await?;
        Ok(due.len())
    }

    /// Settles what a lost message or a dead worker left behind, from the in-flight index: a
    /// communication `sending` for longer than [`STUCK_SENDING_SECONDS`] may have gone out, so
    /// it fails with `delivery_outcome_unknown` (never sent again) and its run is counted; one
    /// `queued` for longer than [`STALE_QUEUED_SECONDS`] lost its message, so it is put back on
    /// the queue (its claim keeps it at most once).
    pub async fn sweep_in_flight(&self) -> Result<TickReport, Error> {
        self.sweep_in_flight_until(std::time::Instant::now() + self.tick_budget)
            .await
    }

    async fn sweep_in_flight_until(
        &self,
        deadline: std::time::Instant,
    ) -> Result<TickReport, Error> {
        let now = self.clock.epoch_seconds();
        let mut report = TickReport::default();
        for days_back in 0..=RELEASE_LOOKBACK_DAYS {
            let day_start = now.saturating_sub(days_back.saturating_mul(DAY_SECONDS));
            for shard in 0..super::store::IN_FLIGHT_SHARDS {
                let key = super::store::in_flight_key(day_start, shard);
                let keys = self.runs.in_flight_on(&key).await?;
                for chunk in keys.chunks(READ_BATCH) {
                    if std::time::Instant::now() >= deadline {
                        report.out_of_time = true;
                        return Ok(report);
                    }
                    let mut requeue = Vec::new();
                    for item in self.runs.communications_by_key(chunk).await? {
                        match self.settle_stale(item, now).await? {
                            Stale::Settled => report.settled_unknown += 1,
                            Stale::Requeue(message) => requeue.push(message),
                            Stale::Fresh => {}
                        }
                    }
                    self.enqueue_all(&requeue).await?;
                    report.requeued += requeue.len();
                }
            }
        }
        Ok(report)
    }

    /// What the sweep does with one in-flight communication.
    async fn settle_stale(&self, item: CommunicationItem, now: i64) -> Result<Stale, Error> {
        let stuck_sending = item.status == CommunicationStatus::Sending
            && item
                .sending_since
                .is_none_or(|since| now.saturating_sub(since) > STUCK_SENDING_SECONDS);
        if stuck_sending {
            let settled = self
                .runs
                .finish(
                    &item,
                    CommunicationStatus::Sending,
                    CommunicationStatus::Failed,
                    Some(DELIVERY_OUTCOME_UNKNOWN),
                )
                .await?;
            return Ok(if settled {
                Stale::Settled
            } else {
                Stale::Fresh
            });
        }
        let lost_message = item.status == CommunicationStatus::Queued
            && seconds_since(&item.updated_at, now).is_none_or(|age| age > STALE_QUEUED_SECONDS);
        if lost_message && self.runs.stamp_requeued(&item).await? {
            return Ok(Stale::Requeue(CommunicationMessage {
                user_id: item.user_id,
                run_id: item.run_id,
                index: item.index,
            }));
        }
        Ok(Stale::Fresh)
    }

    /// Enqueues messages ten at a time (SQS's batch limit), resending what SQS did not take.
    /// Enqueues `messages`, ten per SendMessageBatch, the batches at once; an entry SQS did
    /// not take is sent again, and a batch it takes none of fails the whole call.
    async fn enqueue_all(&self, messages: &[CommunicationMessage]) -> Result<(), Error> {
        let batches = messages.chunks(SEND_BATCH_SIZE).map(|batch| async move {
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
            Ok(())
        });
        futures::future::try_join_all(batches).await?;
        Ok(())
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
            self.runs.cancel_by_user(&item).await?;
            return Ok(());
        }
        // A follow-up: checked again right before it goes out, whatever was true when it was
        // scheduled.
        if item.step > 1
            && let Some(stops) = &self.stops
            && let Some(reason) = stops.reason(&item, &run).await?
        {
            self.runs
                .finish(
                    &item,
                    item.status,
                    CommunicationStatus::Cancelled,
                    Some(&reason),
                )
                .await?;
            tracing::info!(run_id = %item.run_id, index = item.index, %reason, "follow-up stopped");
            return Ok(());
        }
        if !self.runs.claim(&item, now).await? {
            // Another delivery of this message claimed it, or it was cancelled meanwhile.
            return Ok(());
        }
        // Outside the run's send window (in the target's zone when it has one): it waits,
        // scheduled, for the next opening; claimed first so two deliveries never both decide.
        if let Some(window) = &run.window
            && let Some(opening) = window.next_opening(item.recipient.timezone.as_deref(), now)
        {
            return self
                .settle(message, &item, &run, Settlement::NextDay { until: opening })
                .await;
        }
        if run.started_at.is_none() {
            self.runs.mark_started(&item.user_id, &item.run_id).await?;
        }
        let step_message = run
            .message_of_step(item.step)
            .unwrap_or_else(|| run.message.clone());
        let cap_zone = run.window.as_ref().map(|window| window.timezone.as_str());
        let outcome = self.delivery.deliver(&item, &step_message, cap_zone).await;
        tracing::info!(run_id = %item.run_id, index = item.index, channel = item.channel.as_str(), outcome = ?outcome, "delivery attempt");
        self.settle(message, &item, &run, settlement(outcome, last_receive))
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
    ) -> Result<(), Redeliver> {
        match settlement {
            Settlement::Sent(accepted) => {
                let next = run.follow_up_after(item.step).map(|follow_up| {
                    let at = self
                        .clock
                        .epoch_seconds()
                        .saturating_add(follow_up.wait_seconds);
                    item.follow_up(&accepted, at)
                });
                if self
                    .runs
                    .finish_sent(item, &accepted, next.as_ref())
                    .await?
                {
                    crate::metrics::record(crate::metrics::BusinessMetric::Sent {
                        channel: item.channel.as_str(),
                    });
                }
            }
            Settlement::Failed(reason) => {
                let reason = reason.to_string();
                if self
                    .runs
                    .finish(
                        item,
                        CommunicationStatus::Sending,
                        CommunicationStatus::Failed,
                        Some(&reason),
                    )
                    .await?
                {
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
