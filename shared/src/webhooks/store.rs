//! The webhooks table: per user (partition `user_id`), the endpoints (`W#<id>`), their count
//! (`#count`, so the limit of 10 holds under concurrent creates) and the record of each
//! delivery attempt (`D#<webhook id>#<millis>#<event id>#<attempt>`, newest last, kept 30 days
//! by DynamoDB's TTL). Every update of an endpoint is conditioned on it still existing: a
//! delivery finishing after a delete never brings it back.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValue, TransactWriteItem, Update,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::event::EventType;
use crate::aws::dependency_error;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::ids::{UserId, WebhookId};
use crate::storage::{
    TransactionFailure, conditional, decode_item, encode_item, number, read_item, text,
    transact_write, user_key,
};

/// Endpoints a user may have.
pub const MAX_WEBHOOKS_PER_USER: u32 = 10;

/// Days a delivery attempt's record is kept.
pub const DELIVERY_RECORD_DAYS: i64 = 30;

const ENDPOINT_PREFIX: &str = "W#";
const DELIVERY_PREFIX: &str = "D#";
const COUNT_KEY: &str = "#count";
const ENDPOINT_SLOT: usize = 0;

/// One endpoint as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointItem {
    /// The user who made the endpoint (partition key).
    pub user_id: UserId,
    /// `W#<webhook id>`.
    pub sk: String,
    /// The endpoint's id (a UUID).
    pub webhook_id: WebhookId,
    /// Where events are posted.
    pub url: String,
    /// The types it gets; empty: every type.
    #[serde(default)]
    pub events: Vec<EventType>,
    /// The user's note.
    pub description: Option<String>,
    /// The signing secret, sealed (the accounts' envelope).
    pub secret: Envelope,
    /// RFC 3339.
    pub created_at: String,
    /// Epoch second of the first failed attempt since the last success.
    pub failing_since: Option<i64>,
    /// When it was disabled for failing too long (RFC 3339).
    pub disabled_at: Option<String>,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
}

impl EndpointItem {
    /// The sort key of endpoint `webhook_id`.
    pub fn sort_key(webhook_id: &WebhookId) -> String {
        format!("{ENDPOINT_PREFIX}{webhook_id}")
    }

    /// Whether events of `event_type` go to it (a test event always does).
    pub fn subscribes_to(&self, event_type: EventType) -> bool {
        event_type == EventType::WebhookTest
            || self.events.is_empty()
            || self.events.contains(&event_type)
    }
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The endpoint answered 2xx within 10 seconds.
    Succeeded,
    /// It did not; another attempt is scheduled (`next_attempt_at`).
    Retrying,
    /// It did not, and no attempt is left (or the endpoint was disabled).
    Failed,
}

/// One delivery attempt, as stored and as `GET /webhooks/{id}/deliveries` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryRecord {
    /// The event's id (`webhook-id`).
    pub event_id: String,
    /// The event's type.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub event_type: EventType,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The endpoint's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// How it ended.
    pub outcome: DeliveryOutcome,
    /// Why it failed: `http_status`, `timeout`, `connection_failed`, `blocked_address`,
    /// `endpoint_disabled`.
    pub error: Option<String>,
    /// When (RFC 3339).
    pub attempted_at: String,
    /// When the next attempt goes (RFC 3339), for `retrying`.
    pub next_attempt_at: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct StoredDelivery {
    user_id: UserId,
    sk: String,
    webhook_id: WebhookId,
    expires_at: i64,
    #[serde(flatten)]
    record: DeliveryRecord,
}

/// What a failed attempt did to its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMark {
    /// Still enabled.
    Failing,
    /// Disabled now, by this failure.
    Disabled,
    /// Gone (deleted meanwhile).
    Gone,
}

/// Endpoints and delivery records in the webhooks table.
#[derive(Clone)]
pub struct WebhookStore {
    dynamodb: Client,
    table: String,
}

impl WebhookStore {
    /// A store over `table`.
    pub fn new(dynamodb: Client, table: impl Into<String>) -> Self {
        Self {
            dynamodb,
            table: table.into(),
        }
    }

    /// The table's name (part of the secrets' encryption context).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates an endpoint and counts it in one transaction: 422 `webhook_limit_reached` past
    /// [`MAX_WEBHOOKS_PER_USER`].
    pub async fn insert(&self, item: &EndpointItem) -> Result<(), Error> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(encode_item(item)?))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .map_err(Error::internal)?;
        let count = Update::builder()
            .table_name(&self.table)
            .set_key(Some(user_key(item.user_id.as_str(), "sk", COUNT_KEY)))
            .update_expression("SET endpoint_count = if_not_exists(endpoint_count, :zero) + :one")
            .condition_expression("attribute_not_exists(endpoint_count) OR endpoint_count < :max")
            .expression_attribute_values(":zero", number(0))
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":max", number(MAX_WEBHOOKS_PER_USER))
            .build()
            .map_err(Error::internal)?;
        let items = vec![
            TransactWriteItem::builder().put(put).build(),
            TransactWriteItem::builder().update(count).build(),
        ];
        match transact_write(&self.dynamodb, items).await {
            Ok(()) => Ok(()),
            Err(TransactionFailure::ConditionFailed(failed)) if failed.at(ENDPOINT_SLOT) => Err(
                Error::internal("a new webhook id collided with an existing one"),
            ),
            Err(TransactionFailure::ConditionFailed(_)) => Err(Error::LimitExceeded {
                code: "webhook_limit_reached",
                message: format!("A user can have at most {MAX_WEBHOOKS_PER_USER} webhooks."),
            }),
            Err(failure) => Err(failure.into()),
        }
    }

    /// One endpoint, read consistently.
    pub async fn get(
        &self,
        user: &UserId,
        webhook_id: &WebhookId,
    ) -> Result<Option<EndpointItem>, Error> {
        let key = user_key(user.as_str(), "sk", &EndpointItem::sort_key(webhook_id));
        read_item(&self.dynamodb, &self.table, key)
            .await?
            .map(decode_item)
            .transpose()
    }

    /// Every endpoint of a user, oldest first.
    pub async fn list(&self, user: &UserId) -> Result<Vec<EndpointItem>, Error> {
        let output = self
            .dynamodb
            .query()
            .table_name(&self.table)
            .key_condition_expression("user_id = :user AND begins_with(sk, :prefix)")
            .expression_attribute_values(":user", text(user.as_str()))
            .expression_attribute_values(":prefix", text(ENDPOINT_PREFIX))
            .consistent_read(true)
            .send()
            .await
            .map_err(dependency_error)?;
        let mut endpoints: Vec<EndpointItem> = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(decode_item)
            .collect::<Result<_, _>>()?;
        endpoints.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(endpoints)
    }

    /// Deletes an endpoint and uncounts it in one transaction; `false` when there is none.
    pub async fn delete(&self, user: &UserId, webhook_id: &WebhookId) -> Result<bool, Error> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(user_key(
                user.as_str(),
                "sk",
                &EndpointItem::sort_key(webhook_id),
            )))
            .condition_expression("attribute_exists(sk)")
            .build()
            .map_err(Error::internal)?;
        let count = Update::builder()
            .table_name(&self.table)
            .set_key(Some(user_key(user.as_str(), "sk", COUNT_KEY)))
            .update_expression("SET endpoint_count = endpoint_count - :one")
            .condition_expression("endpoint_count > :zero")
            .expression_attribute_values(":zero", number(0))
            .expression_attribute_values(":one", number(1))
            .build()
            .map_err(Error::internal)?;
        let items = vec![
            TransactWriteItem::builder().delete(delete).build(),
            TransactWriteItem::builder().update(count).build(),
        ];
        match transact_write(&self.dynamodb, items).await {
            Ok(()) => Ok(true),
            Err(TransactionFailure::ConditionFailed(failed)) if failed.at(ENDPOINT_SLOT) => {
                Ok(false)
            }
            Err(TransactionFailure::ConditionFailed(_)) => {
                Err(Error::internal("a webhook existed without being counted"))
            }
            Err(failure) => Err(failure.into()),
        }
    }

    /// After a success: the endpoint is healthy again (not failing, not disabled). No write
    /// when it already was.
    pub async fn mark_succeeded(&self, item: &EndpointItem) -> Result<(), Error> {
        if item.failing_since.is_none() && item.disabled_at.is_none() {
            return Ok(());
        }
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(user_key(item.user_id.as_str(), "sk", &item.sk)))
            .update_expression("REMOVE failing_since, disabled_at, disabled_reason")
            .condition_expression("attribute_exists(sk)")
            .send()
            .await;
        conditional(result).map(|_| ())
    }

    /// After a failure: records since when it fails, and disables it once that is
    /// `disable_after_seconds` ago (once: the update that disables is conditioned on it not
    /// being disabled yet).
    pub async fn mark_failed(
        &self,
        item: &EndpointItem,
        now: i64,
        disable_after_seconds: i64,
    ) -> Result<FailureMark, Error> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(user_key(item.user_id.as_str(), "sk", &item.sk)))
            .update_expression("SET failing_since = if_not_exists(failing_since, :now)")
            .condition_expression("attribute_exists(sk)")
            .expression_attribute_values(":now", number(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(error) if crate::storage::is_conditional_check_failed(&error) => {
                return Ok(FailureMark::Gone);
            }
            Err(error) => return Err(dependency_error(error)),
        };
        let stored: EndpointItem = decode_item(output.attributes.unwrap_or_default())?;
        let since = stored.failing_since.unwrap_or(now);
        if stored.disabled_at.is_some() || now.saturating_sub(since) < disable_after_seconds {
            return Ok(FailureMark::Failing);
        }
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(user_key(item.user_id.as_str(), "sk", &item.sk)))
            .update_expression("SET disabled_at = :at, disabled_reason = :reason")
            .condition_expression("attribute_exists(sk) AND attribute_not_exists(disabled_at)")
            .expression_attribute_values(":at", text(crate::clock::rfc3339(now)))
            .expression_attribute_values(
                ":reason",
                text("every delivery failed for 5 days; a successful test enables it again"),
            )
            .send()
            .await;
        Ok(if conditional(result)? {
            FailureMark::Disabled
        } else {
            FailureMark::Failing
        })
    }

    /// Keeps the record of one attempt (for 30 days).
    pub async fn record_attempt(
        &self,
        user: &UserId,
        webhook_id: &WebhookId,
        attempted_at_millis: i64,
        record: DeliveryRecord,
    ) -> Result<(), Error> {
        let stored = StoredDelivery {
            user_id: user.clone(),
            sk: format!(
                "{DELIVERY_PREFIX}{webhook_id}#{attempted_at_millis:013}#{}#{:02}",
                record.event_id, record.attempt
            ),
            webhook_id: *webhook_id,
            expires_at: attempted_at_millis / 1000 + DELIVERY_RECORD_DAYS * 86_400,
            record,
        };
        self.dynamodb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode_item(&stored)?))
            .send()
            .await
            .map_err(dependency_error)?;
        Ok(())
    }

    /// The endpoint's latest attempts, newest first.
    pub async fn deliveries(
        &self,
        user: &UserId,
        webhook_id: &WebhookId,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, Error> {
        let output = self
            .dynamodb
            .query()
            .table_name(&self.table)
            .key_condition_expression("user_id = :user AND begins_with(sk, :prefix)")
            .expression_attribute_values(":user", text(user.as_str()))
            .expression_attribute_values(":prefix", text(format!("{DELIVERY_PREFIX}{webhook_id}#")))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(dependency_error)?;
        output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item: HashMap<String, AttributeValue>| {
                decode_item::<StoredDelivery>(item).map(|stored| stored.record)
            })
            .collect()
    }
}
