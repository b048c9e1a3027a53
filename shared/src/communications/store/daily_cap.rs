//! A sender's daily cap: one counter item per account and day, taken with one conditional
//! update (for one send, or for a batch's sends at once) so concurrent workers never pass it
//! together.

use super::RunStore;
use super::items::DAILY_SENDS_PREFIX;
use crate::error::Error;
use crate::ids::UserId;
use crate::storage::{conditional, number as n};

impl RunStore {
    /// Counts `sends` sends on an account's day (`day` = `YYYY-MM-DD`, UTC); `false` when fewer
    /// than `sends` of its `cap` are left (nothing is counted then). One conditional update:
    /// concurrent workers never pass the cap together. A send that then fails still counts
    /// (the cap errs on the safe side).
    pub async fn take_daily_sends(
        &self,
        user: &UserId,
        account_id: &str,
        day: &str,
        cap: u32,
        sends: u32,
    ) -> Result<bool, Error> {
        let Some(room) = cap.checked_sub(sends) else {
            return Ok(false);
        };
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(
                user,
                &format!("{DAILY_SENDS_PREFIX}{account_id}#{day}"),
            )))
            .update_expression("ADD sends :sends SET expires_at = :expires")
            .condition_expression("attribute_not_exists(sends) OR sends <= :room")
            .expression_attribute_values(":sends", n(sends))
            .expression_attribute_values(":room", n(room))
            // Removed by the table's TTL a few days after.
            .expression_attribute_values(
                ":expires",
                n(self.clock.epoch_seconds().saturating_add(3 * 86_400)),
            )
            .send()
            .await;
        conditional(result)
    }
}
