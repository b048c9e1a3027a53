//! SES's feedback on a sent communication (bounced, complained): the status and the run's
//! counters changed in one transaction, conditional on the status as it was read and on the
//! event's kind not being counted yet.

use aws_sdk_dynamodb::types::{AttributeValue, Update};

use super::super::model::{CommunicationStatus, RunCountChange};
use super::RunStore;
use super::items::CommunicationItem;
use crate::error::Error;
use crate::storage::text as s;
use crate::webhooks::EventType;

impl RunStore {
    /// Applies one feedback event to a sent communication and its run's counters, in one
    /// transaction: `status` as it was read (so two events never race), the event's `kind`
    /// not counted yet. `false` when either changed meanwhile (read again and decide again).
    pub async fn apply_feedback(
        &self,
        item: &CommunicationItem,
        kind: &str,
        to: CommunicationStatus,
        reason: Option<&str>,
        counters: RunCountChange,
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
            .expression_attribute_values(":at", s(self.clock.now_rfc3339()));
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
        let applied = self.transact_communication(update, run).await?;
        let event = match to {
            CommunicationStatus::Bounced => Some(EventType::CommunicationBounced),
            CommunicationStatus::Complained => Some(EventType::CommunicationComplained),
            _ => None,
        };
        if applied && let Some(event) = event {
            self.publish_communication(item, event, to, reason).await;
        }
        Ok(applied)
    }
}
