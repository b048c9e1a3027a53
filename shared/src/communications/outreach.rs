//! The orchestrator's use cases: initiate communications (idempotently), read runs, cancel.

use std::collections::{BTreeMap, HashSet};

use super::idempotency::{Claim, IdempotencyKey, IdempotencyStore, body_hash};
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
use crate::accounts::provider::Provider;
use crate::accounts::store::AccountItem;
use crate::error::{Error, FieldError};
use crate::ids::{RunId, UserId};
use crate::json_input::from_json_value;
use crate::targets::model::TargetView;
use crate::targets::{TargetId, TargetStore};

/// The channel an account can send on, if any.
pub fn channel_of(account: &AccountItem) -> Option<Channel> {
    match account.account_type {
        AccountType::Email => Some(Channel::Email),
        _ => Provider::of(account).map(Provider::channel),
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

/// One communication a run will hold.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCommunication {
    /// The target, as read.
    pub target: TargetView,
    /// The channel.
    pub channel: Channel,
    /// The account that sends it.
    pub account_id: String,
}

/// What a run will hold, and what it leaves out.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The communications, in target then channel order.
    pub communications: Vec<PlannedCommunication>,
    /// The pairs left out, with their reasons.
    pub skipped: Vec<Skipped>,
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
        }
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
            RunStore::new(dynamodb.clone(), runs_table.clone()),
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
        let (target_ids, channels) = validate(&request)?;
        let Some(key) = idempotency_key.map(IdempotencyKey::as_str) else {
            let run_id = RunId::new();
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
        run_id: &RunId,
        resumed: bool,
        request: &InitiateRequest,
        target_ids: Option<Vec<(usize, TargetId)>>,
        channels: Option<Vec<Channel>>,
    ) -> Result<InitiateResponse, Error> {
        if resumed && let Some(run) = self.runs.run(user, run_id).await? {
            self.enqueue_pending(user, &run).await?;
            return Ok(InitiateResponse {
                run_id: run.run_id.to_string(),
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
        let created = crate::clock::epoch_seconds();
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
                    in_flight_day: Some(super::store::in_flight_key(created, index)),
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
        let accounts = self.accounts.list(user).await?;
        plan(targets, &accounts, &suppressed, channels)
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
        let user = unsubscription.user_id;
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

    /// Lifts a bounce at the user's request; an unsubscribe or a complaint is the
    /// recipient's (409 `suppression_owned_by_recipient`).
    pub async fn lift_suppression(&self, user: &UserId, address: &str) -> Result<(), Error> {
        self.suppressions.lift_by_sender(user, address).await
    }

    /// Whether the address a token names is unsubscribed now; `None` for a bad token.
    pub async fn unsubscribed(&self, token: &str) -> Result<Option<bool>, Error> {
        let Some(unsubscription) = self.unsubscribe.verify(token).await? else {
            return Ok(None);
        };
        let suppression = self
            .suppressions
            .of_address(&unsubscription.user_id, &unsubscription.address)
            .await?;
        Ok(Some(suppression.is_some_and(|s| {
            s.reason == SuppressionReason::Unsubscribed
        })))
    }

    /// The recipient undoes its unsubscribe from the same signed page (idempotent; a bounce
    /// or a complaint stays); `Ok(false)` for a bad token.
    pub async fn resubscribe(&self, token: &str) -> Result<bool, Error> {
        let Some(unsubscription) = self.unsubscribe.verify(token).await? else {
            return Ok(false);
        };
        if self
            .suppressions
            .lift_unsubscribe(&unsubscription.user_id, &unsubscription.address)
            .await?
        {
            tracing::info!(user_id = %unsubscription.user_id, target_id = %unsubscription.target_id, "a recipient undid an unsubscribe");
        }
        Ok(true)
    }

    /// A run with each communication's outcome; 404 for unknown or another user's run.
    pub async fn run(&self, user: &UserId, run_id: &RunId) -> Result<RunView, Error> {
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

    /// Cancels the run's communications that still wait (queued or scheduled); those being or already sent are
    /// left as they are. The worker also refuses to start any communication of a cancelled run.
    pub async fn cancel(&self, user: &UserId, run_id: &RunId) -> Result<RunView, Error> {
        if !self.runs.request_cancel(user, run_id).await? {
            return Err(Error::NotFound);
        }
        for item in self.runs.communications(user, run_id).await? {
            // Waiting ones end now: queued, and scheduled for a later day.
            if item.status.is_waiting() {
                self.runs
                    .finish(
                        &item,
                        item.status,
                        CommunicationStatus::Cancelled,
                        Some("cancelled_by_user"),
                    )
                    .await?;
            }
        }
        self.run(user, run_id).await
    }
}

/// Decides a run from what was read: one communication per (target, channel) the target has
/// an address on and the user a connected account for (the first by account id sends), unless
/// the address is suppressed; every other pair asked for is skipped with its reason. No I/O.
pub fn plan(
    targets: Vec<TargetView>,
    accounts: &[AccountItem],
    suppressed: &std::collections::HashMap<String, super::suppression::Suppression>,
    channels: Option<Vec<Channel>>,
) -> Result<Plan, Error> {
    let mut senders: BTreeMap<Channel, String> = BTreeMap::new();
    for account in accounts {
        if account.connected
            && let Some(channel) = channel_of(account)
        {
            senders
                .entry(channel)
                .and_modify(|current| {
                    if account.account_id < *current {
                        current.clone_from(&account.account_id);
                    }
                })
                .or_insert_with(|| account.account_id.clone());
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
                // By default a target is reached on the channels it has; asked-for channels it
                // lacks are reported.
                if explicit {
                    plan.skipped.push(skip("target_has_no_address"));
                }
            } else if let Some(account_id) = senders.get(&channel) {
                plan.communications.push(PlannedCommunication {
                    target: target.clone(),
                    channel,
                    account_id: account_id.clone(),
                });
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::communications::suppression::Suppression;

    fn target(id: &str, email: Option<&str>, twitter: Option<&str>) -> TargetView {
        TargetView {
            id: id.into(),
            name: id.into(),
            email: email.map(str::to_owned),
            twitter_username: twitter.map(str::to_owned),
            instagram_username: None,
            notes: None,
            active: true,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    fn account(
        id: &str,
        account_type: AccountType,
        provider: Option<&str>,
        connected: bool,
    ) -> AccountItem {
        AccountItem {
            user_id: UserId::from_verified_sub("alice".into()),
            account_id: id.into(),
            account_type,
            provider: provider.map(str::to_owned),
            label: None,
            configuration: "{}".into(),
            secret_paths: Vec::new(),
            secrets: None,
            connected,
            status_reason: None,
            created_at: String::new(),
            updated_at: String::new(),
            expires_at: None,
            sender_address: None,
            refresh_lease_until: None,
            refresh_lease_id: None,
            version: 1,
        }
    }

    fn pairs(plan: &Plan) -> Vec<(String, Channel, String)> {
        plan.communications
            .iter()
            .map(|c| (c.target.id.clone(), c.channel, c.account_id.clone()))
            .collect()
    }

    #[test]
    fn each_target_is_reached_on_the_channels_it_has_by_the_first_connected_account() {
        let accounts = [
            account("mail-b", AccountType::Email, None, true),
            account("mail-a", AccountType::Email, None, true),
            account("x", AccountType::Social, Some("twitter"), false),
        ];
        let targets = vec![
            target("t1", Some("ada@example.com"), Some("ada")),
            target("t2", None, Some("grace")),
        ];
        let plan = plan(targets, &accounts, &HashMap::new(), None).unwrap();
        assert_eq!(
            pairs(&plan),
            [("t1".into(), Channel::Email, "mail-a".into())]
        );
        let reasons: Vec<(&str, &str)> = plan
            .skipped
            .iter()
            .map(|s| (s.target_id.as_str(), s.reason.as_str()))
            .collect();
        // The disconnected X account sends nothing; Instagram is not asked for by default.
        assert_eq!(
            reasons,
            [
                ("t1", "no_connected_account"),
                ("t2", "no_connected_account")
            ]
        );
    }

    #[test]
    fn suppressed_addresses_and_missing_addresses_are_skipped_with_their_reason() {
        let accounts = [account("mail", AccountType::Email, None, true)];
        let suppressed = HashMap::from([(
            "ada@example.com".to_owned(),
            Suppression {
                address: "ada@example.com".into(),
                reason: crate::communications::suppression::SuppressionReason::Complained,
                suppressed_at: String::new(),
            },
        )]);
        let targets = vec![
            target("t1", Some("ada@example.com"), None),
            target("t2", Some("grace@example.com"), None),
            target("t3", None, Some("x_only")),
        ];
        let plan = plan(targets, &accounts, &suppressed, Some(vec![Channel::Email])).unwrap();
        assert_eq!(pairs(&plan), [("t2".into(), Channel::Email, "mail".into())]);
        let reasons: Vec<&str> = plan.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(reasons, ["complained", "target_has_no_address"]);
        let nothing = super::plan(
            vec![target("t1", Some("ada@example.com"), None)],
            &accounts,
            &suppressed,
            None,
        );
        assert!(matches!(
            nothing,
            Err(Error::Unprocessable {
                code: "nothing_deliverable",
                ..
            })
        ));
    }
}
