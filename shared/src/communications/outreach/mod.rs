//! The orchestrator's use cases: initiate communications (idempotently); reading and cancelling
//! runs ([`runs`]) and the recipients' opt-outs ([`opt_outs`]) are the same service's, a file
//! each; what a run holds is decided by the pure [`plan`]; a request and its template values are
//! checked by [`validation`].

mod opt_outs;
pub mod plan;
pub mod preview;
mod runs;
mod validation;

use super::idempotency::{Claim, IdempotencyKey, IdempotencyStore, body_hash};
use super::model::{
    Channel, CommunicationStatus, InitiateRequest, InitiateResponse, RecipientSnapshot,
    SkippedSummary,
};
use super::queue::{CommunicationMessage, CommunicationQueue, SEND_BATCH_SIZE};
use super::store::{CommunicationItem, RunItem, RunStore};
use super::suppression::SuppressionStore;
use super::unsubscribe::UnsubscribeTokens;
use crate::accounts::AccountStore;
use crate::error::{Error, FieldError};
use crate::ids::{AccountId, RunId, UserId};
use crate::json_input::from_json_value;
use crate::targets::{TargetId, TargetStore};

pub use plan::{Plan, PlannedCommunication, channel_of, choose_senders, plan};
pub(super) use validation::Sequence;
use validation::{Validated, check_template_values, validate};

/// Initiates, reads and cancels outreach runs.
#[derive(Clone)]
pub struct Outreach {
    pub(super) suppressions: SuppressionStore,
    pub(super) unsubscribe: UnsubscribeTokens,
    pub(super) runs: RunStore,
    pub(super) idempotency: IdempotencyStore,
    pub(super) targets: TargetStore,
    pub(super) accounts: AccountStore,
    pub(super) queue: CommunicationQueue,
    pub(super) clock: crate::clock::Clock,
}

impl Outreach {
    /// The service over its stores and queue.
    pub fn new(
        runs: RunStore,
        idempotency: IdempotencyStore,
        targets: TargetStore,
        accounts: AccountStore,
        queue: CommunicationQueue,
        suppressions: SuppressionStore,
        unsubscribe: UnsubscribeTokens,
    ) -> Self {
        Self {
            suppressions,
            unsubscribe,
            runs,
            idempotency,
            targets,
            accounts,
            queue,
            clock: crate::clock::Clock::system(),
        }
    }

    /// The same service telling time by `clock` (tests move it), its run store too.
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.runs = self.runs.with_clock(clock.clone());
        self.suppressions = self.suppressions.with_clock(clock.clone());
        self.idempotency = self.idempotency.with_clock(clock.clone());
        self.targets = self.targets.with_clock(clock.clone());
        self.clock = clock;
        self
    }

    /// The service from the orchestrator's settings and one SDK configuration (once per cold
    /// start): runs and idempotency records share the runs table, suppressions the targets
    /// table.
    pub fn from_config(
        source: &crate::config::ConfigSource<'_>,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, crate::config::ConfigError> {
        use crate::config::vars;
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        let runs_table = source.required(vars::RUNS_TABLE)?;
        let targets_table = source.required(vars::TARGETS_TABLE)?;
        Ok(Self::new(
            RunStore::new(dynamodb.clone(), runs_table.clone())
                .with_events(crate::webhooks::EventPublisher::from_source(source, sdk)),
            IdempotencyStore::new(dynamodb.clone(), runs_table),
            TargetStore::new(dynamodb.clone(), targets_table.clone()),
            AccountStore::new(dynamodb.clone(), source.required(vars::ACCOUNTS_TABLE)?),
            CommunicationQueue::new(
                aws_sdk_sqs::Client::new(sdk),
                source.required(vars::COMMUNICATIONS_QUEUE_URL)?,
            ),
            SuppressionStore::new(dynamodb, targets_table),
            UnsubscribeTokens::from_source(source, sdk),
        ))
    }

    /// Creates a run with one communication per (target, channel) and puts them on the queue.
    /// With an idempotency key, the same key and body answer the same run and enqueue nothing
    /// twice, another body is a 409, and a retry after a 503 finishes the interrupted run.
    pub async fn initiate_communications(
        &self,
        user: &UserId,
        idempotency_key: Option<&IdempotencyKey>,
        body: serde_json::Value,
    ) -> Result<InitiateResponse, Error> {
        let hash = body_hash(&body);
        let request: InitiateRequest = from_json_value(body)?;
        let Validated {
            target_ids,
            channels,
            senders,
            sequence,
        } = validate(&request)?;
        let Some(key) = idempotency_key.map(IdempotencyKey::as_str) else {
            let run_id = RunId::new();
            return self
                .start_run(
                    user, &run_id, false, &sequence, target_ids, channels, senders,
                )
                .await;
        };
        let (run_id, resumed) = match self.idempotency.claim(user, key, &hash).await? {
            Claim::Replay(response) => return Ok(response),
            Claim::Proceed { run_id, resumed } => (run_id, resumed),
        };
        let result = self
            .start_run(
                user, &run_id, resumed, &sequence, target_ids, channels, senders,
            )
            .await;
        match &result {
            Ok(response) => self.idempotency.complete(user, key, response).await?,
            Err(error) if error.status().is_client_error() => {
                self.idempotency.forget(user, key).await?
            }
            Err(_) => {
                if let Err(release) = self.idempotency.release(user, key).await {
                    tracing::warn!(error = %crate::error::ErrorChain(&release), "could not release an idempotency key");
                }
            }
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_run(
        &self,
        user: &UserId,
        run_id: &RunId,
        resumed: bool,
        sequence: &Sequence,
        target_ids: Option<Vec<(usize, TargetId)>>,
        channels: Option<Vec<Channel>>,
        senders: Option<Vec<(usize, AccountId)>>,
    ) -> Result<InitiateResponse, Error> {
        if resumed && let Some(run) = self.runs.run(user, run_id).await? {
            self.enqueue_pending(user, &run).await?;
            return Ok(InitiateResponse {
                run_id: run.run_id.to_string(),
                queued: run.counts.total as usize,
                skipped_total: run.skipped_total.max(run.skipped.len() as u32),
                skipped: run.skipped,
                skipped_counts: run.skipped_counts,
            });
        }
        // No run exists yet, so this attempt starts one and counts against the quota, also when
        // it resumes a key whose first attempt failed (whether that one was counted is unknown:
        // counting again errs on the safe side, never letting a run through uncounted).
        if let Some(retry_after) = self.runs.take_run_quota(user).await? {
            return Err(Error::QuotaExceeded {
                code: "run_quota_exceeded",
                message: format!(
                    "A user may start at most {} runs per minute.",
                    super::store::RUNS_PER_MINUTE
                ),
                retry_after,
            });
        }
        if resumed {
            // An earlier attempt stopped before storing the run: nothing of it was enqueued.
            self.runs
                .delete_unstarted_communications(user, run_id)
                .await?;
        }
        let plan = self.plan(user, target_ids, channels, senders).await?;
        check_template_values(sequence, &plan)?;
        let now = self.clock.now_rfc3339();
        let created = self.clock.epoch_seconds();
        let items: Vec<CommunicationItem> = plan
            .communications
            .iter()
            .enumerate()
            .map(|(index, planned)| {
                let (target, channel, account_id) =
                    (&planned.target, &planned.channel, &planned.account_id);
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                CommunicationItem {
                    user_id: user.clone(),
                    sk: CommunicationItem::sort_key(run_id, index),
                    run_id: *run_id,
                    index,
                    step: 1,
                    references: Vec::new(),
                    target_id: target.id,
                    channel: *channel,
                    account_id: account_id.clone(),
                    recipient: RecipientSnapshot::from(target),
                    status: CommunicationStatus::Queued,
                    reason: None,
                    attempts: 0,
                    sending_since: None,
                    scheduled_for: None,
                    scheduled_day: None,
                    in_flight_day: Some(super::store::in_flight_key(created, index)),
                    provider_message_id: None,
                    thread_id: None,
                    internet_message_id: None,
                    replied_at: None,
                    feedback: Vec::new(),
                    updated_at: now.clone(),
                }
            })
            .collect();
        // Communications first, the run last: a run item always has all of its communications.
        self.runs.put_new_communications(&items).await?;
        let total = u32::try_from(items.len()).unwrap_or(u32::MAX);
        let skipped = SkippedSummary::of(plan.skipped);
        let mut run = RunItem::new(
            user,
            run_id,
            total,
            skipped.clone(),
            sequence.first.clone(),
            now,
        );
        run.follow_ups = sequence.follow_ups.clone();
        run.window = sequence.window.clone();
        if !self.runs.create_run(&run).await? {
            return Err(Error::internal("a new run id already existed"));
        }
        self.enqueue_pending(user, &run).await?;
        Ok(InitiateResponse::new(
            run_id.to_string(),
            items.len(),
            skipped,
        ))
    }

    /// Puts the run's still-queued communications at or past its watermark on the queue,
    /// advancing the watermark after each accepted batch.
    async fn enqueue_pending(&self, user: &UserId, run: &RunItem) -> Result<(), Error> {
        let pending: Vec<CommunicationMessage> = self
            .runs
            .communications(user, &run.run_id)
            .await?
            .into_iter()
            .filter(|item| {
                item.index >= run.enqueued_through && item.status == CommunicationStatus::Queued
            })
            .map(|item| CommunicationMessage {
                user_id: item.user_id,
                run_id: item.run_id,
                index: item.index,
            })
            .collect();
        for chunk in pending.chunks(SEND_BATCH_SIZE) {
            let accepted = self.queue.send_batch(chunk).await?;
            if let Some(last) = accepted.checked_sub(1).and_then(|i| chunk.get(i)) {
                self.runs
                    .advance_enqueued(user, &run.run_id, last.index + 1)
                    .await?;
            }
            if accepted < chunk.len() {
                return Err(Error::unavailable("SQS refused some messages of a batch"));
            }
        }
        Ok(())
    }

    async fn plan(
        &self,
        user: &UserId,
        target_ids: Option<Vec<(usize, TargetId)>>,
        channels: Option<Vec<Channel>>,
        senders: Option<Vec<(usize, AccountId)>>,
    ) -> Result<Plan, Error> {
        let targets = match &target_ids {
            Some(requested) => {
                let ids: Vec<TargetId> = requested.iter().map(|(_, id)| *id).collect();
                let found = self.targets.active_by_ids(user, &ids).await?;
                let unknown: Vec<FieldError> = requested
                    .iter()
                    .zip(&found)
                    .filter(|(_, target)| target.is_none())
                    .map(|((i, _), _)| {
                        FieldError::new(
                            format!("target_ids[{i}]"),
                            "is not an active target of yours",
                        )
                    })
                    .collect();
                if !unknown.is_empty() {
                    return Err(Error::Unprocessable {
                        code: "unknown_targets",
                        message: "Some target ids name no active target.".into(),
                        details: unknown,
                    });
                }
                found.into_iter().flatten().collect()
            }
            None => self.targets.all_active(user).await?,
        };
        // Only the run's own addresses are looked up, 100 per call, not the user's whole list.
        let addresses: Vec<String> = targets
            .iter()
            .filter_map(|target| target.email.clone())
            .collect();
        let suppressed = self.suppressions.of_addresses(user, &addresses).await?;
        let mut accounts = self.accounts.list(user).await?;
        if let Some(senders) = senders {
            accounts = choose_senders(accounts, &senders)?;
        }
        plan(targets, &accounts, &suppressed, channels)
    }
}
