//! A communication's state changes, each conditional on the state it leaves and, when it ends,
//! in one transaction with its run's counters: claim, schedule, release, finish (SES's feedback
//! on a sent one is in `feedback.rs`).

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::super::model::{Accepted, CommunicationStatus, RunCountChange};
use super::RunStore;
use super::items::{
    COMMUNICATION_SLOT, CommunicationItem, PROVIDER_MESSAGE_DAYS, PROVIDER_MESSAGE_PREFIX,
    in_flight_key,
};
use super::replies::ReplyKey;
use crate::aws::dependency_error;
use crate::error::Error;
use crate::ids::{RunId, UserId};
use crate::storage::{
    TransactionFailure, conditional, decode_item, encode_item, number as n, text as s,
    transact_write, user_key,
};
use crate::webhooks::EventType;

/// What a claim of a queued communication found.
#[derive(Debug)]
pub enum Claim {
    /// Claimed (now `sending`): the item as the claim left it.
    Claimed(CommunicationItem),
    /// Not queued: the item as it stands (finished, scheduled, or another attempt's).
    NotQueued(CommunicationItem),
    /// No such communication.
    Missing,
}

impl RunStore {
    /// Claims a queued communication for delivery (`queued` -> `sending`) and reads it in the
    /// same call: one `UpdateItem` that returns the claimed item, or, when it was not queued,
    /// the item as it stands (what the worker decides by).
    pub async fn claim_queued(
        &self,
        user: &UserId,
        run_id: &RunId,
        index: u32,
        now: i64,
    ) -> Result<Claim, Error> {
        // The claim carries a token of its own: when the SDK retries a claim whose first
        // attempt was applied but whose answer was lost, the retry fails its condition, and the
        // item DynamoDB returns with that failure shows whether the claim is ours.
        let token = uuid::Uuid::new_v4().to_string();
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(user, &CommunicationItem::sort_key(run_id, index))))
            .condition_expression("#status = :from")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":from", s(CommunicationStatus::Queued.as_str()))
            .update_expression(
                "SET #status = :sending, sending_since = :since, updated_at = :at, claim_token = :token ADD attempts :one",
            )
            .expression_attribute_values(":sending", s(CommunicationStatus::Sending.as_str()))
            .expression_attribute_values(":since", n(now))
            .expression_attribute_values(":at", s(self.clock.now_rfc3339()))
            .expression_attribute_values(":token", s(&token))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => match output.attributes {
                Some(attributes) => Ok(Claim::Claimed(decode_item(attributes)?)),
                None => Err(Error::internal("a claim returned no item")),
            },
            Err(error) if crate::storage::is_conditional_check_failed(&error) => {
                let current = error.into_service_error();
                let current = match current {
                    UpdateItemError::ConditionalCheckFailedException(failed) => failed.item,
                    _ => None,
                };
                let Some(current) = current else {
                    return Ok(Claim::Missing);
                };
                let ours = current.get("status") == Some(&s(CommunicationStatus::Sending.as_str()))
                    && current.get("claim_token") == Some(&s(&token));
                let item: CommunicationItem = decode_item(current)?;
                Ok(if ours {
                    Claim::Claimed(item)
                } else {
                    Claim::NotQueued(item)
                })
            }
            Err(error) => Err(dependency_error(error)),
        }
    }

    /// Claims a scheduled communication whose time has come (`scheduled` -> `sending`), in one
    /// transaction with its run's `scheduled` count; `false` when it is not scheduled any more
    /// (a duplicate message, cancelled) or its time has not come.
    pub async fn claim_scheduled(&self, item: &CommunicationItem, now: i64) -> Result<bool, Error> {
        let claim = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(&item.user_id, &item.sk)))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", s(CommunicationStatus::Sending.as_str()))
            .expression_attribute_values(":since", n(now))
            .expression_attribute_values(":at", s(self.clock.now_rfc3339()))
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
        let run = self.run_counters(
            &item.user_id,
            &item.run_id,
            RunCountChange {
                scheduled: -1,
                ..RunCountChange::default()
            },
        )?;
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
            .expression_attribute_values(":at", s(self.clock.now_rfc3339()))
            .build()
            .map_err(Error::internal)?;
        let run = self.run_counters(
            &item.user_id,
            &item.run_id,
            RunCountChange {
                scheduled: 1,
                ..RunCountChange::default()
            },
        )?;
        self.transact_communication(schedule, run).await
    }

    /// Gives a claimed communication back to the queue after a transient failure
    /// (`sending` -> `queued`).
    pub async fn release(&self, item: &CommunicationItem) -> Result<(), Error> {
        let result = self
            .update_communication_in(item, CommunicationStatus::Sending)
            .update_expression("SET #status = :queued, updated_at = :at REMOVE sending_since")
            .expression_attribute_values(":queued", s(CommunicationStatus::Queued.as_str()))
            .expression_attribute_values(":at", s(self.clock.now_rfc3339()))
            .send()
            .await;
        conditional(result).map(|_| ())
    }

    /// Cancels a communication that has not gone out (from the state it was read in) because
    /// its run was cancelled: `cancelled` with reason `cancelled_by_user`, counted on the run;
    /// `false` when it moved meanwhile.
    pub async fn cancel_by_user(&self, item: &CommunicationItem) -> Result<bool, Error> {
        self.finish(
            item,
            item.status,
            CommunicationStatus::Cancelled,
            Some(crate::communications::reason::StopReason::CancelledByUser.as_str()),
        )
        .await
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
        let finished = self
            .finish_with(item, from, to, reason, &Accepted::default(), None)
            .await?;
        if finished {
            self.stamp_if_complete(&item.user_id, &item.run_id).await?;
        }
        Ok(finished)
    }

    /// Like [`RunStore::finish`], leaving the run's completion stamp to the caller: the worker
    /// stamps each run once per batch ([`RunStore::stamp_if_complete`]), after all of the
    /// batch's communications of that run are finished.
    pub async fn finish_in_batch(
        &self,
        item: &CommunicationItem,
        from: CommunicationStatus,
        to: CommunicationStatus,
        reason: Option<&str>,
    ) -> Result<bool, Error> {
        self.finish_with(item, from, to, reason, &Accepted::default(), None)
            .await
    }

    /// Ends a communication the provider accepted (`sending` -> `sent`), keeping the provider's
    /// message id on it and a pointer from that id back to it (for the provider's feedback),
    /// in the same transaction. The run's completion stamp is the caller's, as for
    /// [`RunStore::finish_in_batch`].
    pub async fn finish_sent(
        &self,
        item: &CommunicationItem,
        accepted: &Accepted,
        follow_up: Option<&CommunicationItem>,
    ) -> Result<bool, Error> {
        self.finish_with(
            item,
            CommunicationStatus::Sending,
            CommunicationStatus::Sent,
            None,
            accepted,
            follow_up,
        )
        .await
    }

    async fn finish_with(
        &self,
        item: &CommunicationItem,
        from: CommunicationStatus,
        to: CommunicationStatus,
        reason: Option<&str>,
        accepted: &Accepted,
        follow_up: Option<&CommunicationItem>,
    ) -> Result<bool, Error> {
        let provider_message_id = accepted.provider_message_id.as_deref();
        let counter = match to {
            CommunicationStatus::Sent => RunCountChange {
                sent: 1,
                ..RunCountChange::default()
            },
            CommunicationStatus::Failed => RunCountChange {
                failed: 1,
                ..RunCountChange::default()
            },
            CommunicationStatus::Cancelled => RunCountChange {
                cancelled: 1,
                ..RunCountChange::default()
            },
            _ => return Err(Error::internal("finish needs a final state")),
        };
        let now = self.clock.now_rfc3339();
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
        if let Some(thread_id) = &accepted.thread_id {
            set.push("thread_id = :thread_id");
            communication = communication.expression_attribute_values(":thread_id", s(thread_id));
        }
        if let Some(internet_id) = &accepted.internet_message_id {
            set.push("internet_message_id = :internet_id");
            communication =
                communication.expression_attribute_values(":internet_id", s(internet_id));
        }
        let mut counters = counter;
        counters.remaining = -1;
        if from == CommunicationStatus::Scheduled {
            remove.extend(["scheduled_day", "scheduled_for"]);
            counters.scheduled = -1;
        }
        // The next step joins the run, scheduled, in the same transaction as this one is sent:
        // a sequence never loses a step nor makes one twice.
        if follow_up.is_some() {
            counters.total += 1;
            counters.remaining += 1;
            counters.scheduled += 1;
        }
        communication = communication.update_expression(format!(
            "SET {} REMOVE {}",
            set.join(", "),
            remove.join(", ")
        ));
        let run = self.run_counters(&item.user_id, &item.run_id, counters)?;
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
                n(self.clock.epoch_seconds() + PROVIDER_MESSAGE_DAYS * 86_400),
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
        if let Some(next) = follow_up {
            items.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(encode_item(next)?))
                            .condition_expression("attribute_not_exists(sk)")
                            .build()
                            .map_err(Error::internal)?,
                    )
                    .build(),
            );
        }
        // What a reply in the sender's mailbox will name: its thread and our Message-ID.
        for reply_key in ReplyKey::of(item, accepted) {
            items.push(self.reply_pointer(item, &reply_key)?);
        }
        match transact_write(&self.dynamodb, items).await {
            Ok(()) => {}
            Err(TransactionFailure::ConditionFailed(failed)) if failed.at(COMMUNICATION_SLOT) => {
                return Ok(false);
            }
            Err(failure) => return Err(failure.into()),
        }
        let event = match to {
            CommunicationStatus::Sent => Some(EventType::CommunicationSent),
            CommunicationStatus::Failed => Some(EventType::CommunicationFailed),
            _ => None,
        };
        if let Some(event) = event {
            self.publish_communication(item, event, to, reason).await;
        }
        Ok(true)
    }

    /// Stamps a queued communication put back on the queue by the sweeper, so the next sweep
    /// waits a whole period again before it does so; `false` when it is not queued any more.
    pub async fn stamp_requeued(&self, item: &CommunicationItem) -> Result<bool, Error> {
        let result = self
            .update_communication_in(item, CommunicationStatus::Queued)
            .update_expression("SET updated_at = :at")
            .expression_attribute_values(":at", s(self.clock.now_rfc3339()))
            .send()
            .await;
        conditional(result)
    }
}
