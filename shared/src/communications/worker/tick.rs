//! The worker's schedule tick: releases scheduled communications whose time has come, then
//! sweeps what a lost message or a dead worker left in flight, inside the tick's time budget.

use super::{CommunicationsWorker, DELIVERY_OUTCOME_UNKNOWN, STUCK_SENDING_SECONDS};
use crate::clock::{DAY_SECONDS, utc_day};
use crate::communications::model::CommunicationStatus;
use crate::communications::queue::{CommunicationMessage, SEND_BATCH_SIZE};
use crate::communications::store::{CommunicationItem, IN_FLIGHT_SHARDS, in_flight_key};
use crate::error::Error;

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

impl CommunicationsWorker {
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
            for shard in 0..IN_FLIGHT_SHARDS {
                let key = in_flight_key(day_start, shard);
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
}
