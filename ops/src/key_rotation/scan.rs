//! A run: the accounts table scanned page by page through [`AccountStore`], one item at a time,
//! until the end, [`KeyRotation::max_items`] or too many failures in a row.
//!
//! [`AccountStore`]: pipewise::accounts::AccountStore

use aws_sdk_kms::error::DisplayErrorContext;

use super::KeyRotation;
use super::report::{RotationCounts, RotationError, RotationReport, Tally};

impl KeyRotation {
    /// Re-wraps every data key not yet under the target key, one item at a time, calling
    /// `progress` after each item. Per-item failures are reported, not returned; the error is for
    /// a run that cannot start (target key) or cannot go on (scan, failures in a row).
    pub async fn run(
        &self,
        progress: impl Fn(&RotationCounts),
    ) -> Result<RotationReport, RotationError> {
        let target_key_arn = self.resolve_target().await?;
        let mut tally = Tally::new(RotationReport::new(target_key_arn, self.dry_run));
        let mut position = None;
        loop {
            let page = self
                .accounts
                .data_keys_page(position)
                .await
                .map_err(|error| RotationError::Scan {
                    table: self.accounts.table().to_owned(),
                    reason: DisplayErrorContext(&error).to_string(),
                })?;
            for item in page.items {
                if self
                    .max_items
                    .is_some_and(|max| tally.report.counts.rewrapped >= max)
                {
                    tally.report.stopped_early = true;
                    return Ok(tally.report);
                }
                let key = item.key.clone();
                let target = &tally.report.target_key_arn;
                let (outcome, conflicts) = self.rotate_item(target, item).await;
                tally.record(key.as_ref(), outcome, conflicts);
                progress(&tally.report.counts);
                tally.keep_going()?;
            }
            position = page.next;
            if position.is_none() {
                return Ok(tally.report);
            }
        }
    }
}
