//! One SQS batch, in four steps, so that its messages share their reads (docs/benchmarks.md,
//! "AWS calls per email"):
//!
//! 1. each message's run is read (once per run) and its communication claimed and read in one
//!    conditional update;
//! 2. what the claimed ones need is read for all of them at once: their addresses'
//!    suppressions, and the targets of follow-ups (whose replies stop them);
//! 3. each claimed one is stopped, put off to its run's window, or delivered, and settled;
//! 4. each run that had a communication finished is stamped complete once nothing remains.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use super::CommunicationsWorker;
use super::Redeliver;
use crate::communications::delivery::BatchReads;
use crate::communications::model::CommunicationStatus;
use crate::communications::queue::CommunicationMessage;
use crate::communications::read_once::ReadOnce;
use crate::communications::reason::StopReason;
use crate::communications::store::{Claim, CommunicationItem, RunItem};
use crate::error::{Error, ErrorChain};
use crate::ids::{RunId, UserId};

pub(super) type RunKey = (UserId, RunId);

/// What the messages of one batch share.
#[derive(Default)]
pub(super) struct BatchState {
    runs: ReadOnce<RunKey, Option<Arc<RunItem>>>,
    started: ReadOnce<RunKey, ()>,
    /// Runs whose completion is to be stamped once the batch's communications are settled.
    to_stamp: Mutex<HashSet<RunKey>>,
}

impl BatchState {
    /// Notes that a communication of this run was finished (or found finished).
    pub(super) fn finished_one_of(&self, item: &CommunicationItem) {
        self.to_stamp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((item.user_id.clone(), item.run_id));
    }
}

/// A communication this batch claimed, with its message and run.
pub(super) struct Claimed {
    pub message: CommunicationMessage,
    pub item: CommunicationItem,
    pub run: Arc<RunItem>,
    pub last_receive: bool,
}

/// What becomes of a claimed communication before any delivery.
pub(super) enum Next {
    /// A follow-up that must not go out, with why.
    Stop(StopReason),
    /// Outside its run's send window: scheduled for the next opening.
    Wait(i64),
    /// Delivered now.
    Deliver,
}

impl CommunicationsWorker {
    /// Handles one batch of queue messages (body and SQS's `ApproximateReceiveCount`): for each,
    /// `true` when it is done with (delivered, recorded, or a duplicate), `false` when SQS must
    /// deliver it again. The batch's webhook events are queued together once it is done.
    pub async fn handle_messages(&self, messages: &[(Option<&str>, u32)]) -> Vec<bool> {
        self.runs
            .events()
            .batched(self.handle_messages_holding_events(messages))
            .await
    }

    async fn handle_messages_holding_events(&self, messages: &[(Option<&str>, u32)]) -> Vec<bool> {
        let state = BatchState::default();
        let mut done = vec![false; messages.len()];
        let mut of_run: Vec<Option<RunKey>> = vec![None; messages.len()];

        // 1. Claims, one per communication: a message SQS delivered twice into one batch is
        // done with by the first copy (which comes back itself if it fails).
        let mut seen = HashSet::new();
        let mut to_claim = Vec::new();
        for (position, (body, receives)) in messages.iter().enumerate() {
            let Some(message) =
                body.and_then(|body| serde_json::from_str::<CommunicationMessage>(body).ok())
            else {
                // Never logged whole: a body is not ours to print. It retries into the DLQ.
                tracing::error!(body_bytes = body.map_or(0, str::len), "undecodable message");
                continue;
            };
            let key = (message.user_id.clone(), message.run_id);
            of_run[position] = Some(key.clone());
            if seen.insert((key, message.index)) {
                to_claim.push((position, message, *receives));
            } else {
                done[position] = true;
            }
        }
        let claims = futures::future::join_all(
            to_claim
                .iter()
                .map(|(_, message, receives)| self.claim(message, *receives, &state)),
        )
        .await;
        let mut claimed = Vec::new();
        for ((position, message, _), claim) in to_claim.iter().zip(claims) {
            match claim {
                Ok(Some(one)) => claimed.push((*position, one)),
                Ok(None) => done[*position] = true,
                Err(redeliver) => report(message, redeliver),
            }
        }

        // 2. Reads for all of them.
        let items: Vec<&CommunicationItem> = claimed.iter().map(|(_, one)| &one.item).collect();
        let mut reads = BatchReads::for_items(self.delivery.suppressions(), &items).await;
        let targets = self.follow_up_targets(&items).await;

        // 3. Each one: stopped, put off, or delivered.
        let mut nexts = Vec::with_capacity(claimed.len());
        for (_, one) in &claimed {
            nexts.push(self.next_step(one, &targets, &reads).await);
        }
        reads.expect_sends(
            claimed
                .iter()
                .zip(&nexts)
                .filter(|(_, next)| matches!(next, Ok(Next::Deliver)))
                .map(|((_, one), _)| (&one.item, cap_zone(&one.run))),
        );
        let settled = futures::future::join_all(
            claimed
                .iter()
                .zip(nexts)
                .map(|((_, one), next)| self.carry_out(one, next, &reads, &state)),
        )
        .await;
        for ((position, one), result) in claimed.iter().zip(settled) {
            done[*position] = match result {
                Ok(()) => true,
                Err(redeliver) => {
                    report(&one.message, redeliver);
                    false
                }
            };
        }

        // 4. Completion stamps; a run whose stamp failed has its messages delivered again,
        // and their already finished communications have it stamped then.
        let to_stamp: Vec<RunKey> = state
            .to_stamp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        for (user, run_id) in to_stamp {
            if let Err(error) = self.runs.stamp_if_complete(&user, &run_id).await {
                tracing::error!(%run_id, error = %ErrorChain(&error), "run completion not stamped; its messages come back");
                for (position, run) in of_run.iter().enumerate() {
                    if run.as_ref() == Some(&(user.clone(), run_id)) {
                        done[position] = false;
                    }
                }
            }
        }
        done
    }

    /// Step 1 for one message: its run, then its communication claimed and read at once;
    /// `None` when the message is done with without a delivery.
    async fn claim(
        &self,
        message: &CommunicationMessage,
        receives: u32,
        state: &BatchState,
    ) -> Result<Option<Claimed>, Redeliver> {
        let key = (message.user_id.clone(), message.run_id);
        let run = state
            .runs
            .get_or_read(&key, || async {
                Ok::<_, Error>(
                    self.runs
                        .run(&message.user_id, &message.run_id)
                        .await?
                        .map(Arc::new),
                )
            })
            .await?;
        let last_receive = receives >= super::MAX_RECEIVES;
        let now = self.clock.epoch_seconds();
        let Some(run) = run else {
            return match self.read_communication(message).await? {
                Some(_) => Err(Redeliver::Transient("run not readable yet".into())),
                None => Ok(None),
            };
        };
        if run.cancel_requested {
            if let Some(item) = self.read_communication(message).await? {
                self.cancel(&item, last_receive, now, state).await?;
            }
            return Ok(None);
        }
        let item = match self
            .runs
            .claim_queued(&message.user_id, &message.run_id, message.index, now)
            .await?
        {
            Claim::Claimed(item) => item,
            Claim::Missing => {
                tracing::warn!(run_id = %message.run_id, index = message.index, "message names no communication");
                return Ok(None);
            }
            Claim::NotQueued(mut item) => match item.status {
                status if status.is_final() => {
                    // Delivered before: its run may still want its completion stamp.
                    state.finished_one_of(&item);
                    return Ok(None);
                }
                CommunicationStatus::Sending => {
                    self.resolve_in_flight(&item, last_receive).await?;
                    return Ok(None);
                }
                CommunicationStatus::Scheduled => {
                    // Early ones wait: the release sweep puts them on the queue again.
                    if item.scheduled_for.is_some_and(|at| at > now)
                        || !self.runs.claim_scheduled(&item, now).await?
                    {
                        return Ok(None);
                    }
                    item.status = CommunicationStatus::Sending;
                    item
                }
                // Queued again meanwhile (a retry released it): its own message claims it.
                _ => return Ok(None),
            },
        };
        Ok(Some(Claimed {
            message: message.clone(),
            item,
            run,
            last_receive,
        }))
    }

    async fn read_communication(
        &self,
        message: &CommunicationMessage,
    ) -> Result<Option<CommunicationItem>, Error> {
        self.runs
            .communication(&message.user_id, &message.run_id, message.index)
            .await
    }

    /// A communication of a cancelled run: cancelled unless it is finished, in flight, or
    /// scheduled for later (the run's cancel ends those).
    async fn cancel(
        &self,
        item: &CommunicationItem,
        last_receive: bool,
        now: i64,
        state: &BatchState,
    ) -> Result<(), Redeliver> {
        match item.status {
            status if status.is_final() => state.finished_one_of(item),
            CommunicationStatus::Scheduled if item.scheduled_for.is_some_and(|at| at > now) => {}
            CommunicationStatus::Sending => self.resolve_in_flight(item, last_receive).await?,
            _ => {
                self.runs.cancel_by_user(item).await?;
            }
        }
        Ok(())
    }

    /// Step 3's action for one claimed communication.
    async fn carry_out(
        &self,
        one: &Claimed,
        next: Result<Next, Error>,
        reads: &BatchReads,
        state: &BatchState,
    ) -> Result<(), Redeliver> {
        let (item, run) = (&one.item, &one.run);
        match next {
            Err(error) => {
                // Nothing was sent: the claim is given back and the message comes again.
                self.runs.release(item).await?;
                Err(Redeliver::Dependency(error))
            }
            Ok(Next::Stop(reason)) => {
                self.runs
                    .finish_in_batch(
                        item,
                        CommunicationStatus::Sending,
                        CommunicationStatus::Cancelled,
                        Some(reason.as_str()),
                    )
                    .await?;
                state.finished_one_of(item);
                tracing::info!(run_id = %item.run_id, index = item.index, %reason, "follow-up stopped");
                Ok(())
            }
            Ok(Next::Wait(opening)) => {
                self.settle(
                    &one.message,
                    item,
                    run,
                    super::Settlement::NextDay { until: opening },
                    state,
                )
                .await
            }
            Ok(Next::Deliver) => {
                if run.started_at.is_none() {
                    let key = (item.user_id.clone(), item.run_id);
                    let started = state
                        .started
                        .get_or_read(&key, || self.runs.mark_started(&item.user_id, &item.run_id))
                        .await;
                    // Only the run's `started_at`: the next batch stamps it if this one could not.
                    if let Err(error) = started {
                        tracing::warn!(run_id = %item.run_id, error = %ErrorChain(&error), "run start not stamped");
                    }
                }
                let step_message = run
                    .message_of_step(item.step)
                    .unwrap_or_else(|| run.message.clone());
                let outcome = self
                    .delivery
                    .deliver(item, &step_message, cap_zone(run), reads)
                    .await;
                tracing::info!(run_id = %item.run_id, index = item.index, channel = item.channel.as_str(), outcome = ?outcome, "delivery attempt");
                self.settle(
                    &one.message,
                    item,
                    run,
                    super::settlement(outcome, one.last_receive),
                    state,
                )
                .await
            }
        }
    }
}

/// Whose days a run's sender caps count: its send window's zone (UTC without one).
fn cap_zone(run: &RunItem) -> Option<&str> {
    run.window.as_ref().map(|window| window.timezone.as_str())
}

/// Logs why a message comes back.
fn report(message: &CommunicationMessage, redeliver: Redeliver) {
    let (run_id, index) = (message.run_id, message.index);
    match redeliver {
        Redeliver::Transient(reason) => {
            tracing::warn!(%run_id, index, %reason, "delivery will be retried");
        }
        Redeliver::Dependency(error) => {
            tracing::error!(%run_id, index, error = %ErrorChain(&error), "message failed");
        }
    }
}
