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

mod daily_cap;
mod feedback;
mod indexes;
mod items;
mod replies;
mod runs;
mod transitions;

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update, WriteRequest};

use super::model::{CommunicationStatus, RunCountChange};

use crate::aws::dependency_error;
use crate::error::Error;
use crate::ids::{RunId, UserId};
use crate::storage::{TransactionFailure, number as n, transact_write, user_key};
use crate::webhooks::{EventPublisher, EventType, WebhookEvent};

use items::{COMMUNICATION_SLOT, RUN_PREFIX};
pub use items::{
    CommunicationItem, IN_FLIGHT_INDEX, IN_FLIGHT_SHARDS, RUNS_PER_MINUTE, RunItem,
    SCHEDULED_INDEX, in_flight_key,
};
pub use replies::ReplyKey;
pub use transitions::Claim;

/// Runs and communications in one DynamoDB table.
///
/// Each conditional write that moves a communication or a run to a state webhooks report
/// (sent, failed, bounced, complained, replied, a run completed) publishes its event once it
/// commits: the condition that makes the transition happen once makes the event once.
#[derive(Clone)]
pub struct RunStore {
    pub(super) dynamodb: Client,
    pub(super) table: String,
    pub(super) events: EventPublisher,
    /// What the store's own timestamps and expiries read (the worker's clock, in tests an
    /// adjustable one).
    pub(super) clock: crate::clock::Clock,
}

impl RunStore {
    /// A store over `table` that publishes no events.
    pub fn new(dynamodb: Client, table: impl Into<String>) -> Self {
        Self {
            dynamodb,
            table: table.into(),
            events: EventPublisher::default(),
            clock: crate::clock::Clock::system(),
        }
    }

    /// The same store, telling time by `clock`.
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The same store, publishing its transitions' events with `events`.
    pub fn with_events(mut self, events: EventPublisher) -> Self {
        self.events = events;
        self
    }

    /// Where this store's events go (for transitions other stores make, e.g. an unsubscribe).
    pub fn events(&self) -> &EventPublisher {
        &self.events
    }

    /// Publishes a communication's event (ids and statuses only).
    pub(super) async fn publish_communication(
        &self,
        item: &CommunicationItem,
        event_type: EventType,
        status: CommunicationStatus,
        reason: Option<&str>,
    ) {
        let communication_id = item.communication_id();
        let data = serde_json::json!({
            "communication_id": communication_id,
            "run_id": item.run_id.to_string(),
            "target_id": item.target_id,
            "channel": item.channel.as_str(),
            "account_id": item.account_id,
            "step": item.step,
            "status": status.as_str(),
            "reason": reason,
        });
        self.events
            .publish(WebhookEvent::new(
                &item.user_id,
                event_type,
                &communication_id,
                data,
                &self.clock,
            ))
            .await;
    }

    pub(super) fn key(user: &UserId, sk: &str) -> HashMap<String, AttributeValue> {
        user_key(user.as_str(), "sk", sk)
    }

    pub(super) fn run_key(user: &UserId, run_id: &RunId) -> HashMap<String, AttributeValue> {
        Self::key(user, &format!("{RUN_PREFIX}{run_id}"))
    }

    pub(super) async fn batch_write(&self, mut requests: Vec<WriteRequest>) -> Result<(), Error> {
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

    /// An update of a run's counters (`ADD name delta, ...`); one that lowers `remaining`
    /// needs it above zero, so a communication is never counted twice.
    pub(super) fn run_counters(
        &self,
        user: &UserId,
        run_id: &RunId,
        change: RunCountChange,
    ) -> Result<Update, Error> {
        let counters = change.terms();
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::run_key(user, run_id)));
        // A communication that ends takes one of the run's remaining: never below zero.
        update = if change.remaining != 0 {
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

    /// An update of one run item (the caller adds the expression and its condition).
    pub(super) fn update_run(
        &self,
        user: &UserId,
        run_id: &RunId,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::run_key(user, run_id)))
    }

    /// An update of one communication that applies only while it is in `status` (`#status`
    /// and `:from` are set; the caller adds the rest).
    pub(super) fn update_communication_in(
        &self,
        item: &CommunicationItem,
        status: CommunicationStatus,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&item.user_id, &item.sk)))
            .condition_expression("#status = :from")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":from", crate::storage::text(status.as_str()))
    }

    /// A communication's update and its run's, in one transaction; `false` when the
    /// communication's condition failed.
    pub(super) async fn transact_communication(
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
}
