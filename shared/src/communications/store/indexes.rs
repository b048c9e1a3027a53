//! Finding communications without a scan: the `scheduled` and `in_flight` indexes (keys only,
//! then 100 items per BatchGetItem) and the pointer from a provider's message id.

use super::RunStore;
use super::items::{CommunicationItem, IN_FLIGHT_INDEX, PROVIDER_MESSAGE_PREFIX, SCHEDULED_INDEX};
use crate::aws::dependency_error;
use crate::error::Error;
use crate::ids::{RunId, UserId};
use crate::storage::{decode_item, read_item, text as s, user_key};

impl RunStore {
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
}
