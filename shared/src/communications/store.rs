//! `RunStore`: outreach runs and their communications in DynamoDB.
//!
//! One partition per user (`user_id`), sort key `sk`:
//! - `R#<run_id>`: the run, with its counters (`remaining`, `sent`, `failed`, `cancelled`) and
//!   the enqueue watermark `enqueued_through`.
//! - `C#<run_id>#<index>`: one communication (target x channel), with its state.
//! - `I#<key>`: an idempotency record (see `idempotency`).
//!
//! A communication's final state and its run's counters change in one transaction, so the
//! counters always equal the states and the run's status (derived from them) is never stale.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, Put, PutRequest, TransactWriteItem, Update, WriteRequest,
};
use serde::{Deserialize, Serialize};

use super::model::{
    Channel, CommunicationStatus, CommunicationView, MessageTemplate, RecipientSnapshot, RunCounts,
    RunStatus, RunView, Skipped, SkippedSummary,
};
use crate::aws::dependency_error;
use crate::error::Error;
use crate::ids::{RunId, UserId};
use crate::storage::{
    TransactionFailure, conditional, decode_item, encode_item, number as n, read_item, text as s,
    transact_write, user_key,
};

const RUN_PREFIX: &str = "R#";
const QUOTA_PREFIX: &str = "#runs-per-minute#";
/// Runs one user may start per minute; the next gets 429 with `Retry-After`.
pub const RUNS_PER_MINUTE: u32 = 10;
const COMMUNICATION_PREFIX: &str = "C#";
const DAILY_SENDS_PREFIX: &str = "#sends-per-day#";
/// Partition of the pointer from a provider's message id to its communication. User ids never
/// start with `#` (the authenticator refuses such a `sub`), so it cannot meet a user's partition.
const PROVIDER_MESSAGE_PREFIX: &str = "#provider-message#";
/// Days a provider message id stays resolvable (feedback comes within days; complaints can
/// trail by weeks).
const PROVIDER_MESSAGE_DAYS: i64 = 90;
/// Slot of the communication's own update in its state-change transactions (the run's counters
/// and pointers come after it).
const COMMUNICATION_SLOT: usize = 0;
/// The runs table's index of communications not yet settled, by `in_flight_day`
/// (template.yaml): the sweeper reads it to find the ones a lost message or a dead worker left.
pub const IN_FLIGHT_INDEX: &str = "in_flight";
/// Partitions per day of the in-flight index, so one day's writes spread over several.
pub const IN_FLIGHT_SHARDS: u32 = 4;

/// The in-flight index key of a communication created at `epoch` with `index`.
pub fn in_flight_key(epoch: i64, index: u32) -> String {
    format!(
        "{}#{}",
        crate::clock::utc_day(epoch),
        index % IN_FLIGHT_SHARDS
    )
}

/// The runs table's index of scheduled communications, by `scheduled_day` (template.yaml).
pub const SCHEDULED_INDEX: &str = "scheduled";

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunItem {
    /// Owner.
    pub user_id: UserId,
    /// `R#<run_id>`.
    pub sk: String,
    /// Id (UUID v7).
    pub run_id: RunId,
    /// Number of communications.
    pub total: u32,
    /// Not yet finished.
    pub remaining: u32,
    /// Sent.
    pub sent: u32,
    /// Failed.
    pub failed: u32,
    /// Cancelled.
    pub cancelled: u32,
    /// Of the remaining: waiting for a later day (sender's daily cap).
    #[serde(default)]
    pub scheduled: u32,
    /// Of the sent: delivered (SES feedback).
    #[serde(default)]
    pub delivered: u32,
    /// Of the sent: bounced permanently (SES feedback).
    #[serde(default)]
    pub bounced: u32,
    /// Of the sent: complained about (SES feedback).
    #[serde(default)]
    pub complained: u32,
    /// Communications with an index below this are on the queue.
    pub enqueued_through: u32,
    /// Whether cancelling was asked for.
    #[serde(default)]
    pub cancel_requested: bool,
    /// Pairs left out (the first [`MAX_SKIPPED_LISTED`](super::model::MAX_SKIPPED_LISTED)).
    pub skipped: Vec<Skipped>,
    /// How many pairs were left out in all (absent on runs stored before it was counted).
    #[serde(default)]
    pub skipped_total: u32,
    /// Pairs left out, by reason.
    #[serde(default)]
    pub skipped_counts: std::collections::BTreeMap<String, u32>,
    /// The message.
    pub message: MessageTemplate,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339 of the first delivery attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339 of the last communication's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
}

impl RunItem {
    /// A new run with nothing sent yet.
    pub fn new(
        user: &UserId,
        run_id: &RunId,
        total: u32,
        skipped: SkippedSummary,
        message: MessageTemplate,
    ) -> Self {
        Self {
            user_id: user.clone(),
            sk: format!("{RUN_PREFIX}{run_id}"),
            run_id: *run_id,
            total,
            remaining: total,
            sent: 0,
            failed: 0,
            cancelled: 0,
            scheduled: 0,
            delivered: 0,
            bounced: 0,
            complained: 0,
            enqueued_through: 0,
            cancel_requested: false,
            skipped: skipped.listed,
            skipped_total: skipped.total,
            skipped_counts: skipped.by_reason,
            message,
            created_at: crate::now_rfc3339(),
            started_at: None,
            completed_at: None,
        }
    }

    /// The run's status, derived from its counters.
    pub fn status(&self) -> RunStatus {
        if self.remaining == 0 {
            if self.failed == 0 {
                RunStatus::Completed
            } else {
                RunStatus::CompletedWithErrors
            }
        } else if self.started_at.is_some() || self.remaining < self.total {
            RunStatus::Running
        } else {
            RunStatus::Queued
        }
    }

    /// The API view, with the communications when given.
    pub fn view(&self, communications: Option<Vec<CommunicationView>>) -> RunView {
        RunView {
            run_id: self.run_id.to_string(),
            status: self.status(),
            cancel_requested: self.cancel_requested,
            counts: RunCounts {
                total: self.total,
                pending: self.remaining,
                sent: self.sent,
                failed: self.failed,
                cancelled: self.cancelled,
                scheduled: self.scheduled,
                delivered: self.delivered,
                bounced: self.bounced,
                complained: self.complained,
            },
            skipped: self.skipped.clone(),
            skipped_total: self.skipped_total.max(self.skipped.len() as u32),
            skipped_counts: self.skipped_counts.clone(),
            created_at: self.created_at.clone(),
            completed_at: self.completed_at.clone(),
            communications,
        }
    }
}

/// A communication as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunicationItem {
    /// Owner.
    pub user_id: UserId,
    /// `C#<run_id>#<index>`.
    pub sk: String,
    /// The run.
    pub run_id: RunId,
    /// Position in the run (enqueue order).
    pub index: u32,
    /// The target.
    pub target_id: String,
    /// The channel.
    pub channel: Channel,
    /// The account that sends it.
    pub account_id: String,
    /// The target's fields when the run was made.
    pub recipient: RecipientSnapshot,
    /// State.
    pub status: CommunicationStatus,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Delivery attempts started.
    #[serde(default)]
    pub attempts: u32,
    /// When the current attempt started (epoch seconds), while `sending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_since: Option<i64>,
    /// While `scheduled`: the epoch second from which it may be sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<i64>,
    /// While `scheduled`: the UTC day of `scheduled_for`, the key of the `scheduled` index
    /// the release sweep reads (removed when claimed, so the index holds only waiting ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_day: Option<String>,
    /// While not settled (queued, sending): the key of the `in_flight` index the sweeper reads
    /// ([`in_flight_key`]); removed when it ends or waits for a later day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight_day: Option<String>,
    /// The provider's id of the sent message (SES `MessageId`), which its feedback names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    /// Feedback events already counted (`Delivery`, `Bounce`, `Complaint`, `Reject`): a
    /// duplicate notification finds its type here and changes nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feedback: Vec<String>,
    /// RFC 3339.
    pub updated_at: String,
}

impl CommunicationItem {
    /// The sort key of a run's communication.
    pub fn sort_key(run_id: &RunId, index: u32) -> String {
        format!("{COMMUNICATION_PREFIX}{run_id}#{index:04}")
    }

    /// `(run_id, index)` of a communication's sort key.
    pub fn parse_sort_key(sort_key: &str) -> Option<(RunId, u32)> {
        let (run_id, index) = sort_key
            .strip_prefix(COMMUNICATION_PREFIX)?
            .rsplit_once('#')?;
        Some((RunId::parse(run_id)?, index.parse().ok()?))
    }

    /// Public id: run id and index.
    pub fn communication_id(&self) -> String {
        format!("{}-{:04}", self.run_id, self.index)
    }

    /// The API view.
    pub fn view(&self) -> CommunicationView {
        CommunicationView {
            communication_id: self.communication_id(),
            target_id: self.target_id.clone(),
            channel: self.channel,
            status: self.status,
            reason: self.reason.clone(),
            scheduled_for: self
                .scheduled_for
                .filter(|_| self.status == CommunicationStatus::Scheduled)
                .and_then(|at| time::OffsetDateTime::from_unix_timestamp(at).ok())
                .and_then(|at| {
                    at.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                }),
            updated_at: self.updated_at.clone(),
        }
    }
}

/// Runs and communications in one DynamoDB table.
#[derive(Clone)]
pub struct RunStore {
    dynamodb: Client,
    table: String,
}

pub use crate::clock::epoch_seconds;

impl RunStore {
    /// A store over `table`.
    pub fn new(dynamodb: Client, table: impl Into<String>) -> Self {
        Self {
            dynamodb,
            table: table.into(),
        }
    }

    /// Counts a new run against the user's per-minute quota ([`RUNS_PER_MINUTE`]); the
    /// seconds until the next minute when it is spent. One conditional update, so concurrent
    /// requests can never pass the quota together.
    pub async fn take_run_quota(&self, user: &UserId) -> Result<Option<u32>, Error> {
        let now = epoch_seconds();
        let window = now / 60;
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(user, &format!("{QUOTA_PREFIX}{window}"))))
            .update_expression("ADD runs :one SET expires_at = :expires")
            .condition_expression("attribute_not_exists(runs) OR runs < :max")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(RUNS_PER_MINUTE))
            // Removed by the table's TTL once the minute is long past.
            .expression_attribute_values(":expires", n(now + 3600))
            .send()
            .await;
        if conditional(result)? {
            Ok(None)
        } else {
            Ok(Some(u32::try_from(60 - now % 60).unwrap_or(60)))
        }
    }

    fn key(user: &UserId, sk: &str) -> HashMap<String, AttributeValue> {
        user_key(user.as_str(), "sk", sk)
    }

    fn run_key(user: &UserId, run_id: &RunId) -> HashMap<String, AttributeValue> {
        Self::key(user, &format!("{RUN_PREFIX}{run_id}"))
    }

    /// One run.
    pub async fn run(&self, user: &UserId, run_id: &RunId) -> Result<Option<RunItem>, Error> {
        let item = read_item(&self.dynamodb, &self.table, Self::run_key(user, run_id)).await?;
        item.map(decode_item).transpose()
    }

    /// The user's most recent runs, newest first.
    pub async fn recent_runs(&self, user: &UserId, limit: u32) -> Result<Vec<RunItem>, Error> {
        let output = self
            .dynamodb
            .query()
            .table_name(&self.table)
            .key_condition_expression("user_id = :user AND begins_with(sk, :run)")
            .expression_attribute_values(":user", s(user.as_str()))
            .expression_attribute_values(":run", s(RUN_PREFIX))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(dependency_error)?;
        output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(decode_item)
            .collect()
    }

    /// Every communication of a run, by index.
    pub async fn communications(
        &self,
        user: &UserId,
        run_id: &RunId,
    ) -> Result<Vec<CommunicationItem>, Error> {
        let mut pages = self
            .dynamodb
            .query()
            .table_name(&self.table)
            .key_condition_expression("user_id = :user AND begins_with(sk, :prefix)")
            .expression_attribute_values(":user", s(user.as_str()))
            .expression_attribute_values(":prefix", s(format!("{COMMUNICATION_PREFIX}{run_id}#")))
            .consistent_read(true)
            .into_paginator()
            .send();
        let mut items = Vec::new();
        while let Some(page) = pages.next().await {
            for item in page.map_err(dependency_error)?.items.unwrap_or_default() {
                items.push(decode_item(item)?);
            }
        }
        Ok(items)
    }

    /// One communication.
    pub async fn communication(
        &self,
        user: &UserId,
        run_id: &RunId,
        index: u32,
    ) -> Result<Option<CommunicationItem>, Error> {
        let item = read_item(
            &self.dynamodb,
            &self.table,
            Self::key(user, &CommunicationItem::sort_key(run_id, index)),
        )
        .await?;
        item.map(decode_item).transpose()
    }

    async fn batch_write(&self, mut requests: Vec<WriteRequest>) -> Result<(), Error> {
        while !requests.is_empty() {
            let rest = requests.split_off(requests.len().min(25));
            let mut pending = Some(std::mem::replace(&mut requests, rest));
            // BatchWriteItem may leave items unprocessed under load: send those again.
            for attempt in 0.. {
                let Some(batch) = pending.take().filter(|batch| !batch.is_empty()) else {
                    break;
                };
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(25 * attempt)).await;
                }
                let output = self
                    .dynamodb
                    .batch_write_item()
                    .request_items(&self.table, batch)
                    .send()
                    .await
                    .map_err(dependency_error)?;
                pending = output
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.table));
                if attempt >= 8 && pending.as_ref().is_some_and(|left| !left.is_empty()) {
                    return Err(Error::unavailable("DynamoDB left batch items unprocessed"));
                }
            }
        }
        Ok(())
    }

    /// Writes new communications (none of them is on the queue yet, so plain puts are safe).
    pub async fn put_new_communications(&self, items: &[CommunicationItem]) -> Result<(), Error> {
        let requests = items
            .iter()
            .map(|item| {
                let put = PutRequest::builder()
                    .set_item(Some(encode_item(item)?))
                    .build()
                    .map_err(Error::internal)?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, Error>>()?;
        self.batch_write(requests).await
    }

    /// Removes the communications an interrupted first attempt wrote for a run whose run item
    /// was never stored (so none of them was ever enqueued).
    pub async fn delete_unstarted_communications(
        &self,
        user: &UserId,
        run_id: &RunId,
    ) -> Result<(), Error> {
        let stale = self.communications(user, run_id).await?;
        let requests = stale
            .iter()
            .map(|item| {
                let delete = DeleteRequest::builder()
                    .set_key(Some(Self::key(&item.user_id, &item.sk)))
                    .build()
                    .map_err(Error::internal)?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<Vec<_>, Error>>()?;
        self.batch_write(requests).await
    }

    /// Stores a new run; `false` when a run with this id already exists.
    pub async fn create_run(&self, run: &RunItem) -> Result<bool, Error> {
        let result = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode_item(run)?))
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await;
        conditional(result)
    }

    /// Records that every communication with an index below `through` is on the queue.
    pub async fn advance_enqueued(
        &self,
        user: &UserId,
        run_id: &RunId,
        through: u32,
    ) -> Result<(), Error> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::run_key(user, run_id)))
            .update_expression("SET enqueued_through = :through")
            .condition_expression("enqueued_through < :through")
            .expression_attribute_values(":through", n(through))
            .send()
            .await;
        conditional(result).map(|_| ())
    }

    /// Claims a waiting communication for delivery (`queued` -> `sending`, or `scheduled` ->
    /// `sending` once `now` reached its time); `false` when it is not waiting any more (a
    /// duplicate message, cancelled) or its time has not come.
    pub async fn claim(&self, item: &CommunicationItem, now: i64) -> Result<bool, Error> {
        if item.status != CommunicationStatus::Scheduled {
            // The claim carries a token of its own: when the SDK retries a claim whose first
            // attempt was applied but whose answer was lost, the retry fails its condition, and
            // the item DynamoDB returns with that failure shows whether the claim is ours.
            let token = uuid::Uuid::new_v4().to_string();
            let result = self
                .dynamodb
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(&item.user_id, &item.sk)))
                .update_expression(
                    "SET #status = :sending, sending_since = :since, updated_at = :at, claim_token = :token ADD attempts :one",
                )
                .condition_expression("#status = :queued")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":sending", s(CommunicationStatus::Sending.as_str()))
                .expression_attribute_values(":queued", s(CommunicationStatus::Queued.as_str()))
                .expression_attribute_values(":since", n(epoch_seconds()))
                .expression_attribute_values(":at", s(crate::now_rfc3339()))
                .expression_attribute_values(":token", s(&token))
                .expression_attribute_values(":one", n(1))
                .return_values_on_condition_check_failure(
                    aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            return match result {
                Ok(_) => Ok(true),
                Err(error) if crate::storage::is_conditional_check_failed(&error) => {
                    let current = error
                        .as_service_error()
                        .and_then(|service| match service {
                            aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(failed) => failed.item(),
                            _ => None,
                        });
                    Ok(current.is_some_and(|current| {
                        current.get("status") == Some(&s(CommunicationStatus::Sending.as_str()))
                            && current.get("claim_token") == Some(&s(&token))
                    }))
                }
                Err(error) => Err(dependency_error(error)),
            };
        }
        let claim = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(&item.user_id, &item.sk)))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", s(CommunicationStatus::Sending.as_str()))
            .expression_attribute_values(":since", n(epoch_seconds()))
            .expression_attribute_values(":at", s(crate::now_rfc3339()))
            .expression_attribute_values(":one", n(1));
        // A scheduled one leaves the run's `scheduled` count and the release index together,
        // and is in flight again.
        let claim = claim
            .update_expression(
                "SET #status = :sending, sending_since = :since, updated_at = :at, \
                 in_flight_day = :in_flight ADD attempts :one REMOVE scheduled_day, scheduled_for",
            )
            .expression_attribute_values(":in_flight", s(in_flight_key(now, item.index)))
            .condition_expression("#status = :scheduled AND scheduled_for <= :now")
            .expression_attribute_values(":scheduled", s(CommunicationStatus::Scheduled.as_str()))
            .expression_attribute_values(":now", n(now))
            .build()
            .map_err(Error::internal)?;
        let run = self.run_counters(&item.user_id, &item.run_id, &[("scheduled", -1)])?;
        self.transact_communication(claim, run).await
    }

    /// Puts a claimed communication off until `until` (`sending` -> `scheduled`): its sender's
    /// daily cap is spent. The release sweep finds it by `scheduled_day`.
    pub async fn schedule(&self, item: &CommunicationItem, until: i64) -> Result<bool, Error> {
        let schedule = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(&item.user_id, &item.sk)))
            .update_expression(
                "SET #status = :scheduled, scheduled_for = :until, scheduled_day = :day, \
                 updated_at = :at REMOVE sending_since, in_flight_day",
            )
            .condition_expression("#status = :sending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":scheduled", s(CommunicationStatus::Scheduled.as_str()))
            .expression_attribute_values(":sending", s(CommunicationStatus::Sending.as_str()))
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":day", s(crate::clock::utc_day(until)))
            .expression_attribute_values(":at", s(crate::now_rfc3339()))
            .build()
            .map_err(Error::internal)?;
        let run = self.run_counters(&item.user_id, &item.run_id, &[("scheduled", 1)])?;
        self.transact_communication(schedule, run).await
    }

    /// Counts one send on an account's day (`day` = `YYYY-MM-DD`, UTC); `false` when `cap`
    /// sends were counted already. One conditional update: concurrent workers never pass the
    /// cap together. A send that then fails still counts (the cap errs on the safe side).
    pub async fn take_daily_send(
        &self,
        user: &UserId,
        account_id: &str,
        day: &str,
        cap: u32,
    ) -> Result<bool, Error> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(
                user,
                &format!("{DAILY_SENDS_PREFIX}{account_id}#{day}"),
            )))
            .update_expression("ADD sends :one SET expires_at = :expires")
            .condition_expression("attribute_not_exists(sends) OR sends < :cap")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":cap", n(cap))
            // Removed by the table's TTL a few days after.
            .expression_attribute_values(":expires", n(epoch_seconds() + 3 * 86_400))
            .send()
            .await;
        conditional(result)
    }

    /// Communications by key, read consistently in batches of 100 (BatchGetItem's limit);
    /// ones that do not exist are left out.
    pub async fn communications_by_key(
        &self,
        keys: &[(UserId, RunId, u32)],
    ) -> Result<Vec<CommunicationItem>, Error> {
        let keys = keys
            .iter()
            .map(|(user, run_id, index)| {
                Self::key(user, &CommunicationItem::sort_key(run_id, *index))
            })
            .collect();
        crate::storage::batch_get(&self.dynamodb, &self.table, keys)
            .await?
            .into_iter()
            .map(decode_item)
            .collect()
    }

    /// Keys `(user, run_id, index)` of the communications not yet settled under one key of the
    /// in-flight index ([`in_flight_key`]).
    pub async fn in_flight_on(&self, key: &str) -> Result<Vec<(UserId, RunId, u32)>, Error> {
        self.index_keys(IN_FLIGHT_INDEX, "in_flight_day", key).await
    }

    /// Stamps a queued communication put back on the queue by the sweeper, so the next sweep
    /// waits a whole period again before it does so; `false` when it is not queued any more.
    pub async fn stamp_requeued(&self, item: &CommunicationItem) -> Result<bool, Error> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&item.user_id, &item.sk)))
            .update_expression("SET updated_at = :at")
            .condition_expression("#status = :queued")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":queued", s(CommunicationStatus::Queued.as_str()))
            .expression_attribute_values(":at", s(crate::now_rfc3339()))
            .send()
            .await;
        conditional(result)
    }

    /// Keys `(user, run_id, index)` of the communications scheduled for `day`.
    pub async fn scheduled_on(&self, day: &str) -> Result<Vec<(UserId, RunId, u32)>, Error> {
        self.index_keys(SCHEDULED_INDEX, "scheduled_day", day).await
    }

    /// The communication keys under one partition of a keys-only index.
    async fn index_keys(
        &self,
        index: &str,
        attribute: &str,
        value: &str,
    ) -> Result<Vec<(UserId, RunId, u32)>, Error> {
        let mut pages = self
            .dynamodb
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#key = :value")
            .expression_attribute_names("#key", attribute)
            .expression_attribute_values(":value", s(value))
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            for item in page.map_err(dependency_error)?.items.unwrap_or_default() {
                let user = item.get("user_id").and_then(|v| v.as_s().ok());
                let parsed = item
                    .get("sk")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|sk| CommunicationItem::parse_sort_key(sk));
                if let (Some(user), Some((run_id, index))) = (user, parsed) {
                    keys.push((UserId::from_verified_sub(user.clone()), run_id, index));
                }
            }
        }
        Ok(keys)
    }

    /// The communication a provider's message id was recorded for at send time.
    pub async fn communication_by_provider_message(
        &self,
        message_id: &str,
    ) -> Result<Option<CommunicationItem>, Error> {
        let pointer = read_item(
            &self.dynamodb,
            &self.table,
            user_key(
                &format!("{PROVIDER_MESSAGE_PREFIX}{message_id}"),
                "sk",
                PROVIDER_MESSAGE_PREFIX,
            ),
        )
        .await?;
        let Some(pointer) = pointer else {
            return Ok(None);
        };
        let field = |name: &str| pointer.get(name).and_then(|v| v.as_s().ok()).cloned();
        let (Some(owner), Some(sk)) = (field("owner"), field("communication")) else {
            return Ok(None);
        };
        let Some((run_id, index)) = CommunicationItem::parse_sort_key(&sk) else {
            return Ok(None);
        };
        self.communication(&UserId::from_verified_sub(owner), &run_id, index)
            .await
    }

    /// Applies one feedback event to a sent communication and its run's counters, in one
    /// transaction: `status` as it was read (so two events never race), the event's `kind`
    /// not counted yet. `false` when either changed meanwhile (read again and decide again).
    pub async fn apply_feedback(
        &self,
        item: &CommunicationItem,
        kind: &str,
        to: CommunicationStatus,
        reason: Option<&str>,
        counters: &[(&str, i64)],
    ) -> Result<bool, Error> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(&item.user_id, &item.sk)))
            .condition_expression("#status = :read AND NOT contains(feedback, :kind)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":read", s(item.status.as_str()))
            .expression_attribute_values(":kind", s(kind))
            .expression_attribute_values(":kinds", AttributeValue::L(vec![s(kind)]))
            .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":at", s(crate::now_rfc3339()));
        update = match reason {
            Some(reason) => update
                .update_expression(
                    "SET #status = :to, reason = :reason, updated_at = :at, \
                     feedback = list_append(if_not_exists(feedback, :none), :kinds)",
                )
                .expression_attribute_values(":reason", s(reason)),
            None => update.update_expression(
                "SET #status = :to, updated_at = :at, \
                 feedback = list_append(if_not_exists(feedback, :none), :kinds)",
            ),
        };
        let update = update.build().map_err(Error::internal)?;
        let run = self.run_counters(&item.user_id, &item.run_id, counters)?;
        self.transact_communication(update, run).await
    }

    /// An update of a run's counters (`ADD name delta, ...`); one that lowers `remaining`
    /// needs it above zero, so a communication is never counted twice.
    fn run_counters(
        &self,
        user: &UserId,
        run_id: &RunId,
        counters: &[(&str, i64)],
    ) -> Result<Update, Error> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::run_key(user, run_id)));
        update = if counters.iter().any(|(name, _)| *name == "remaining") {
            update
                .condition_expression("remaining > :zero")
                .expression_attribute_values(":zero", n(0))
        } else {
            update.condition_expression("attribute_exists(sk)")
        };
        let mut terms = Vec::new();
        for (position, (name, delta)) in counters.iter().enumerate() {
            terms.push(format!("#c{position} :c{position}"));
            update = update
                .expression_attribute_names(format!("#c{position}"), *name)
                .expression_attribute_values(format!(":c{position}"), n(*delta));
        }
        update
            .update_expression(format!("ADD {}", terms.join(", ")))
            .build()
            .map_err(Error::internal)
    }

    /// A communication's update and its run's, in one transaction; `false` when the
    /// communication's condition failed.
    async fn transact_communication(
        &self,
        communication: Update,
        run: Update,
    ) -> Result<bool, Error> {
        let items = vec![
            TransactWriteItem::builder().update(communication).build(),
            TransactWriteItem::builder().update(run).build(),
        ];
        match transact_write(&self.dynamodb, items).await {
            Ok(()) => Ok(true),
            Err(TransactionFailure::ConditionFailed(failed)) if failed.at(COMMUNICATION_SLOT) => {
                Ok(false)
            }
            Err(failure) => Err(failure.into()),
        }
    }

    /// Gives a claimed communication back to the queue after a transient failure
    /// (`sending` -> `queued`).
    pub async fn release(&self, item: &CommunicationItem) -> Result<(), Error> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&item.user_id, &item.sk)))
            .update_expression("SET #status = :queued, updated_at = :at REMOVE sending_since")
            .condition_expression("#status = :sending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", s(CommunicationStatus::Sending.as_str()))
            .expression_attribute_values(":queued", s(CommunicationStatus::Queued.as_str()))
            .expression_attribute_values(":at", s(crate::now_rfc3339()))
            .send()
            .await;
        conditional(result).map(|_| ())
    }

    /// Ends a communication (`from` -> `to`, a final state) and counts it on its run, in one
    /// transaction; `false` when it was not in `from` any more. The last one stamps the run's
    /// `completed_at`.
    pub async fn finish(
        &self,
        item: &CommunicationItem,
        from: CommunicationStatus,
        to: CommunicationStatus,
        reason: Option<&str>,
    ) -> Result<bool, Error> {
        self.finish_with(item, from, to, reason, None).await
    }

    /// Ends a communication the provider accepted (`sending` -> `sent`), keeping the provider's
    /// message id on it and a pointer from that id back to it (for the provider's feedback),
    /// in the same transaction.
    pub async fn finish_sent(
        &self,
        item: &CommunicationItem,
        provider_message_id: Option<&str>,
    ) -> Result<bool, Error> {
        self.finish_with(
            item,
            CommunicationStatus::Sending,
            CommunicationStatus::Sent,
            None,
            provider_message_id,
        )
        .await
    }

    async fn finish_with(
        &self,
        item: &CommunicationItem,
        from: CommunicationStatus,
        to: CommunicationStatus,
        reason: Option<&str>,
        provider_message_id: Option<&str>,
    ) -> Result<bool, Error> {
        let counter = match to {
            CommunicationStatus::Sent => "sent",
            CommunicationStatus::Failed => "failed",
            CommunicationStatus::Cancelled => "cancelled",
            _ => return Err(Error::internal("finish needs a final state")),
        };
        let now = crate::now_rfc3339();
        let mut set = vec!["#status = :to", "updated_at = :at"];
        let mut remove = vec!["sending_since", "in_flight_day"];
        let mut communication = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(&item.user_id, &item.sk)))
            .condition_expression("#status = :from")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":from", s(from.as_str()))
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":at", s(&now));
        if let Some(reason) = reason {
            set.push("reason = :reason");
            communication = communication.expression_attribute_values(":reason", s(reason));
        }
        if let Some(message_id) = provider_message_id {
            set.push("provider_message_id = :message_id");
            communication = communication.expression_attribute_values(":message_id", s(message_id));
        }
        let mut counters = vec![(counter, 1), ("remaining", -1)];
        if from == CommunicationStatus::Scheduled {
            remove.extend(["scheduled_day", "scheduled_for"]);
            counters.push(("scheduled", -1));
        }
        communication = communication.update_expression(format!(
            "SET {} REMOVE {}",
            set.join(", "),
            remove.join(", ")
        ));
        let run = self.run_counters(&item.user_id, &item.run_id, &counters)?;
        let mut items = vec![
            TransactWriteItem::builder()
                .update(communication.build().map_err(Error::internal)?)
                .build(),
            TransactWriteItem::builder().update(run).build(),
        ];
        if let Some(message_id) = provider_message_id {
            let mut pointer = user_key(
                &format!("{PROVIDER_MESSAGE_PREFIX}{message_id}"),
                "sk",
                PROVIDER_MESSAGE_PREFIX,
            );
            pointer.insert("owner".into(), s(item.user_id.as_str()));
            pointer.insert("communication".into(), s(&item.sk));
            pointer.insert(
                "expires_at".into(),
                n(epoch_seconds() + PROVIDER_MESSAGE_DAYS * 86_400),
            );
            items.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(pointer))
                            .build()
                            .map_err(Error::internal)?,
                    )
                    .build(),
            );
        }
        match transact_write(&self.dynamodb, items).await {
            Ok(()) => {}
            Err(TransactionFailure::ConditionFailed(failed)) if failed.at(COMMUNICATION_SLOT) => {
                return Ok(false);
            }
            Err(failure) => return Err(failure.into()),
        }
        self.stamp_completion(&item.user_id, &item.run_id, &now)
            .await?;
        Ok(true)
    }

    /// Sets `completed_at` once the run has nothing remaining (a no-op before).
    async fn stamp_completion(
        &self,
        user: &UserId,
        run_id: &RunId,
        now: &str,
    ) -> Result<(), Error> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::run_key(user, run_id)))
            .update_expression("SET completed_at = :now")
            .condition_expression("remaining = :zero AND attribute_not_exists(completed_at)")
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        conditional(result).map(|_| ())
    }

    /// Records the first delivery attempt of a run (once).
    pub async fn mark_started(&self, user: &UserId, run_id: &RunId) -> Result<(), Error> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::run_key(user, run_id)))
            .update_expression("SET started_at = if_not_exists(started_at, :now)")
            .condition_expression("attribute_exists(sk)")
            .expression_attribute_values(":now", s(crate::now_rfc3339()))
            .send()
            .await;
        conditional(result).map(|_| ())
    }

    /// Marks a run as cancelled; `false` when there is no such run.
    pub async fn request_cancel(&self, user: &UserId, run_id: &RunId) -> Result<bool, Error> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::run_key(user, run_id)))
            .update_expression("SET cancel_requested = :yes")
            .condition_expression("attribute_exists(sk)")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await;
        conditional(result)
    }
}
