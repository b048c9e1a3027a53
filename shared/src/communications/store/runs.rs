//! A run's life in the store: the per-minute quota, creating a run after its communications,
//! the enqueue watermark, reads (one run, recent runs, a run's communications), completion and
//! cancel.

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};

use super::RunStore;
use super::items::{
    COMMUNICATION_PREFIX, CommunicationItem, QUOTA_PREFIX, RUN_PREFIX, RUNS_PER_MINUTE, RunItem,
};
use crate::aws::dependency_error;
use crate::error::Error;
use crate::ids::{RunId, UserId};
use crate::storage::{conditional, decode_item, encode_item, number as n, read_item, text as s};

impl RunStore {
    /// Counts a new run against the user's per-minute quota ([`RUNS_PER_MINUTE`]); the
    /// seconds until the next minute when it is spent. One conditional update, so concurrent
    /// requests can never pass the quota together.
    pub async fn take_run_quota(&self, user: &UserId) -> Result<Option<u32>, Error> {
        let now = self.clock.epoch_seconds();
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
            .update_run(user, run_id)
            .update_expression("SET enqueued_through = :through")
            .condition_expression("enqueued_through < :through")
            .expression_attribute_values(":through", n(through))
            .send()
            .await;
        conditional(result).map(|_| ())
    }

    /// Sets `completed_at` once the run has nothing remaining (a no-op before).
    pub async fn stamp_if_complete(&self, user: &UserId, run_id: &RunId) -> Result<(), Error> {
        let now = self.clock.now_rfc3339();
        let result = self
            .update_run(user, run_id)
            .update_expression("SET completed_at = :now")
            .condition_expression("remaining = :zero AND attribute_not_exists(completed_at)")
            .expression_attribute_values(":now", s(&now))
            .expression_attribute_values(":zero", n(0))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(error) if crate::storage::is_conditional_check_failed(&error) => return Ok(()),
            Err(error) => return Err(crate::aws::dependency_error(error)),
        };
        // The one write that stamps `completed_at` tells the run completed, once.
        if let Some(attributes) = output.attributes {
            let run: RunItem = crate::storage::decode_item(attributes)?;
            let view = run.view(None);
            let data = serde_json::json!({
                "run_id": run_id.to_string(),
                "status": view.status,
                "counts": view.counts,
            });
            self.events
                .publish(crate::webhooks::WebhookEvent::new(
                    user,
                    crate::webhooks::EventType::RunCompleted,
                    &run_id.to_string(),
                    data,
                    &self.clock,
                ))
                .await;
        }
        Ok(())
    }

    /// Records the first delivery attempt of a run (once).
    pub async fn mark_started(&self, user: &UserId, run_id: &RunId) -> Result<(), Error> {
        let result = self
            .update_run(user, run_id)
            .update_expression("SET started_at = if_not_exists(started_at, :now)")
            .condition_expression("attribute_exists(sk)")
            .expression_attribute_values(":now", s(self.clock.now_rfc3339()))
            .send()
            .await;
        conditional(result).map(|_| ())
    }

    /// Marks a run as cancelled; `false` when there is no such run.
    pub async fn request_cancel(&self, user: &UserId, run_id: &RunId) -> Result<bool, Error> {
        let result = self
            .update_run(user, run_id)
            .update_expression("SET cancel_requested = :yes")
            .condition_expression("attribute_exists(sk)")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await;
        conditional(result)
    }
}
