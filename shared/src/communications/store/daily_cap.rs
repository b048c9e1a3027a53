//! A sender's daily cap: one counter item per account and UTC day, taken with one conditional
//! update so concurrent workers never pass it together.

use super::RunStore;
use super::items::DAILY_SENDS_PREFIX;
use crate::error::Error;
use crate::ids::UserId;
use crate::storage::{conditional, number as n};

impl RunStore {
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
            .expression_attribute_values(":expires", n(self.clock.epoch_seconds() + 3 * 86_400))
            .send()
            .await;
        conditional(result)
    }
}
