//! The orchestrator's use cases: initiate communications (idempotently), read runs, cancel.

use std::collections::{BTreeMap, HashSet};

use super::idempotency::{Claim, IdempotencyStore, body_hash};
use super::model::{
    Channel, CommunicationStatus, InitiateRequest, InitiateResponse, MAX_COMMUNICATIONS_PER_RUN,
    RecipientSnapshot, RunView, Skipped, SkippedSummary,
};
use super::queue::{CommunicationMessage, CommunicationQueue, SEND_BATCH_SIZE};
use super::store::{CommunicationItem, RunItem, RunStore};
use super::suppression::{SuppressionList, SuppressionReason, SuppressionStore};
use super::unsubscribe::{UnsubscribeTokens, Unsubscription};
use crate::accounts::AccountStore;
use crate::accounts::model::AccountType;
use crate::accounts::store::AccountItem;
use crate::api::from_json_value;
use crate::auth::UserId;
use crate::error::{Error, FieldError};
use crate::targets::model::TargetView;
use crate::targets::{TargetId, TargetStore};

/// The channel an account can send on, if any.
pub fn channel_of(account: &AccountItem) -> Option<Channel> {
    match (account.account_type, account.provider.as_deref()) {
        (AccountType::Email, _) => Some(Channel::Email),
        (AccountType::Social, Some("twitter" | "x")) => Some(Channel::Twitter),
        (AccountType::Social, Some("instagram")) => Some(Channel::Instagram),
        _ => None,
    }
}

/// Initiates, reads and cancels outreach runs.
#[derive(Clone)]
pub struct Outreach {
    suppressions: SuppressionStore,
    unsubscribe: UnsubscribeTokens,
    runs: RunStore,
    idempotency: IdempotencyStore,
    targets: TargetStore,
    accounts: AccountStore,
    queue: CommunicationQueue,
}

struct Plan {
    communications: Vec<(TargetView, Channel, String)>,
    skipped: Vec<Skipped>,
}

impl Outreach {
    /// The service over its stores and queue.
    pub fn new(
        runs: RunStore,
        targets: TargetStore,
        accounts: AccountStore,
        queue: CommunicationQueue,
        suppressions: SuppressionStore,
        unsubscribe: UnsubscribeTokens,
    ) -> Self {
        let idempotency = IdempotencyStore::new(runs.client().clone(), runs.table());
        Self {
            suppressions,
            unsubscribe,
            runs,
            idempotency,
            targets,
            accounts,
            queue,
        }
    }

    /// Creates a run with one communication per (target, channel) and puts them on the queue.
    /// With an idempotency key, the same key and body answer the same run and enqueue nothing
    /// twice, another body is a 409, and a retry after a 503 finishes the interrupted run.
    pub async fn initiate_communications(
        &self,
        user: &UserId,
        idempotency_key: Option<&str>,
        body: serde_json::Value,
    ) -> Result<InitiateResponse, Error> {
        let hash = body_hash(&body);
        let request: InitiateRequest = from_json_value(body)?;
        let (target_ids, channels) = validate(&request)?;
        let Some(key) = idempotency_key else {
            let run_id = uuid::Uuid::now_v7().to_string();
            return self
                .start_run(user, &run_id, false, &request, target_ids, channels)
                .await;
        };
        let (run_id, resumed) = match self.idempotency.claim(user, key, &hash).await? {
            Claim::Replay(response) => return Ok(response),
            Claim::Proceed { run_id, resumed } => (run_id, resumed),
        };
        let result = self
            .start_run(user, &run_id, resumed, &request, target_ids, channels)
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

    async fn start_run(
        &self,
        user: &UserId,
        run_id: &str,
        resumed: bool,
        request: &InitiateRequest,
        target_ids: Option<Vec<(usize, TargetId)>>,
        channels: Option<Vec<Channel>>,
    ) -> Result<InitiateResponse, Error> {
        if resumed && let Some(run) = self.runs.run(user, run_id).await? {
            self.enqueue_pending(user, &run).await?;
            return Ok(InitiateResponse {
                run_id: run.run_id,
                queued: run.total as usize,
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
        let plan = self.plan(user, target_ids, channels).await?;
        let now = crate::now_rfc3339();
        let items: Vec<CommunicationItem> = plan
            .communications
            .iter()
            .enumerate()
            .map(|(index, (target, channel, account_id))| {
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                CommunicationItem {
                    user_id: user.as_str().to_owned(),
                    sk: CommunicationItem::sort_key(run_id, index),
                    run_id: run_id.to_owned(),
                    index,
                    target_id: target.id.clone(),
                    channel: *channel,
                    account_id: account_id.clone(),
                    recipient: RecipientSnapshot::from(target),
                    status: CommunicationStatus::Queued,
                    reason: None,
                    attempts: 0,
                    sending_since: None,
                    scheduled_for: None,
                    scheduled_day: None,
                    provider_message_id: None,
                    feedback: Vec::new(),
                    updated_at: now.clone(),
                }
            })
            .collect();
        // Communications first, the run last: a run item always has all of its communications.
        self.runs.put_new_communications(&items).await?;
        let total = u32::try_from(items.len()).unwrap_or(u32::MAX);
        let skipped = SkippedSummary::of(plan.skipped);
        let run = RunItem::new(
            user,
            run_id,
            total,
            skipped.clone(),
            request.message.clone(),
        );
        if !self.runs.create_run(&run).await? {
            return Err(Error::internal("a new run id already existed"));
        }
        self.enqueue_pending(user, &run).await?;
        Ok(InitiateResponse::new(
            run_id.to_owned(),
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
        let suppressed = self.suppressions.all(user).await?;
        // The first connected account of each channel (by account id) sends on it.
        let mut senders: BTreeMap<Channel, String> = BTreeMap::new();
        for account in self.accounts.list(user).await? {
            if account.connected
                && let Some(channel) = channel_of(&account)
            {
                senders.entry(channel).or_insert(account.account_id);
            }
        }
        let explicit = channels.is_some();
        let channels = channels.unwrap_or_else(|| Channel::ALL.to_vec());
        let mut plan = Plan {
            communications: Vec::new(),
            skipped: Vec::new(),
        };
        for target in targets {
            for &channel in &channels {
                let skip = |reason: &str| Skipped {
                    target_id: target.id.clone(),
                    channel,
                    reason: reason.to_owned(),
                };
                let suppression = (channel == Channel::Email)
                    .then(|| {
                        target
                            .email
                            .as_ref()
                            .and_then(|email| suppressed.get(email))
                    })
                    .flatten();
                if let Some(suppression) = suppression {
                    plan.skipped.push(skip(suppression.reason.as_str()));
                } else if channel.address(&target).is_none() {
                    // By default a target is reached on the channels it has; asked-for channels
                    // it lacks are reported.
                    if explicit {
                        plan.skipped.push(skip("target_has_no_address"));
                    }
                } else if let Some(account_id) = senders.get(&channel) {
                    plan.communications
                        .push((target.clone(), channel, account_id.clone()));
                } else {
                    plan.skipped.push(skip("no_connected_account"));
                }
            }
        }
        if plan.communications.is_empty() {
            return Err(Error::Unprocessable {
                code: "nothing_deliverable",
                message: format!(
                    "No target can be reached on the requested channels with the connected accounts ({} pairs left out; the first {} are listed).",
                    plan.skipped.len(),
                    plan.skipped.len().min(super::model::MAX_SKIPPED_LISTED)
                ),
                details: plan
                    .skipped
                    .iter()
                    .take(super::model::MAX_SKIPPED_LISTED)
                    .map(|s| {
                        FieldError::new(
                            format!("{}.{}", s.target_id, s.channel.as_str()),
                            s.reason.clone(),
                        )
                    })
                    .collect(),
            });
        }
        if plan.communications.len() > MAX_COMMUNICATIONS_PER_RUN {
            return Err(Error::LimitExceeded {
                code: "run_too_large",
                message: format!(
                    "A run holds at most {MAX_COMMUNICATIONS_PER_RUN} communications; this one would hold {}.",
                    plan.communications.len()
                ),
            });
        }
        Ok(plan)
    }

    /// What an unsubscribe token names; `None` for a token that is not ours or was altered.
    pub async fn unsubscription(&self, token: &str) -> Result<Option<Unsubscription>, Error> {
        self.unsubscribe.verify(token).await
    }

    /// Unsubscribes the address a token names (idempotent); `Ok(false)` for a bad token.
    pub async fn unsubscribe(&self, token: &str) -> Result<bool, Error> {
        let Some(unsubscription) = self.unsubscribe.verify(token).await? else {
            return Ok(false);
        };
        let user = UserId::from_verified_sub(unsubscription.user_id);
        self.suppressions
            .suppress(
                &user,
                &unsubscription.address,
                SuppressionReason::Unsubscribed,
            )
            .await?;
        tracing::info!(user_id = %user, target_id = %unsubscription.target_id, "a recipient unsubscribed");
        Ok(true)
    }

    /// The user's suppressed addresses, by address.
    pub async fn suppressions(&self, user: &UserId) -> Result<SuppressionList, Error> {
        let mut suppressions: Vec<_> = self.suppressions.all(user).await?.into_values().collect();
        suppressions.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(SuppressionList { suppressions })
    }

    /// Lifts an unsubscribe at the user's request (never a bounce or a complaint).
    pub async fn lift_suppression(&self, user: &UserId, address: &str) -> Result<(), Error> {
        self.suppressions.lift(user, address).await
    }

    /// A run with each communication's outcome; 404 for unknown or another user's run.
    pub async fn run(&self, user: &UserId, run_id: &str) -> Result<RunView, Error> {
        let run = self.runs.run(user, run_id).await?.ok_or(Error::NotFound)?;
        let communications = self.runs.communications(user, run_id).await?;
        Ok(run.view(Some(
            communications.iter().map(CommunicationItem::view).collect(),
        )))
    }

    /// The user's recent runs, newest first.
    pub async fn recent_runs(&self, user: &UserId, limit: u32) -> Result<Vec<RunView>, Error> {
        Ok(self
            .runs
            .recent_runs(user, limit)
            .await?
            .iter()
            .map(|run| run.view(None))
            .collect())
    }

    /// Cancels the run's communications that are still queued; those being or already sent are
    /// left as they are. The worker also refuses to start any communication of a cancelled run.
    pub async fn cancel(&self, user: &UserId, run_id: &str) -> Result<RunView, Error> {
        if !self.runs.request_cancel(user, run_id).await? {
            return Err(Error::NotFound);
        }
        for item in self.runs.communications(user, run_id).await? {
            if item.status == CommunicationStatus::Queued {
                self.runs
                    .finish(
                        &item,
                        CommunicationStatus::Queued,
                        CommunicationStatus::Cancelled,
                        Some("cancelled_by_user"),
                    )
                    .await?;
            }
        }
        self.run(user, run_id).await
    }
}

/// Target ids, each with its position in the request (duplicates dropped), and channels.
type Validated = (Option<Vec<(usize, TargetId)>>, Option<Vec<Channel>>);

fn validate(request: &InitiateRequest) -> Result<Validated, Error> {
    let mut problems = request.message.validate();
    let target_ids = request.target_ids.as_ref().map(|ids| {
        if ids.is_empty() {
            problems.push(FieldError::new(
                "target_ids",
                "must not be empty (leave it out for every active target)",
            ));
        }
        if ids.len() > MAX_COMMUNICATIONS_PER_RUN {
            problems.push(FieldError::new("target_ids", "must hold at most 1,000 ids"));
        }
        let mut seen = HashSet::new();
        ids.iter()
            .enumerate()
            .filter_map(|(i, id)| match TargetId::parse(id) {
                Some(id) => seen.insert(id).then_some((i, id)),
                None => {
                    problems.push(FieldError::new(
                        format!("target_ids[{i}]"),
                        "is not a target id",
                    ));
                    None
                }
            })
            .collect::<Vec<_>>()
    });
    let channels = request.channels.as_ref().map(|channels| {
        if channels.is_empty() {
            problems.push(FieldError::new(
                "channels",
                "must not be empty (leave it out for every channel)",
            ));
        }
        let mut unique: Vec<Channel> = Vec::new();
        for channel in channels {
            if !unique.contains(channel) {
                unique.push(*channel);
            }
        }
        unique
    });
    if problems.is_empty() {
        Ok((target_ids, channels))
    } else {
        Err(Error::Validation(problems))
    }
}
