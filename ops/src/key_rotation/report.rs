//! What a run counts, reports and stops on: the counts after every item (the progress), the
//! failed items with their reasons (never a value), and the errors that end a run.

use pipewise::accounts::store::ItemKey;

/// Failures in a row after which a run stops: a missing permission or an unusable key fails every
/// item alike, and listing a whole table of identical failures helps nobody.
const MAX_FAILURES_IN_A_ROW: usize = 25;

/// What a run has done so far; reported after every item and in the final report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotationCounts {
    /// Items read from the table.
    pub scanned: usize,
    /// Items whose data key was re-wrapped under the target key (in a dry run: would be).
    pub rewrapped: usize,
    /// Items whose data key was already wrapped under the target key.
    pub already_on_target: usize,
    /// Items without secrets: accounts without any, the per-user counters, sender claims.
    pub skipped_without_secrets: usize,
    /// Items deleted by their user while the rotation was at them.
    pub deleted_meanwhile: usize,
    /// Writes that lost to a concurrent update and were retried on the re-read item.
    pub retried_after_conflict: usize,
    /// Items that could not be re-wrapped (listed in [`RotationReport::failed`]).
    pub failed: usize,
}

/// An item the rotation could not re-wrap: its key and why, never any value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedAccount {
    /// Partition key.
    pub user_id: String,
    /// Sort key.
    pub account_id: String,
    /// What failed.
    pub reason: String,
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// ARN of the key everything was re-wrapped under.
    pub target_key_arn: String,
    /// Whether this was a dry run (nothing was changed).
    pub dry_run: bool,
    /// Whether the run stopped at [`KeyRotation::max_items`] before reading the whole table.
    ///
    /// [`KeyRotation::max_items`]: super::KeyRotation::max_items
    pub stopped_early: bool,
    /// The counts.
    pub counts: RotationCounts,
    /// The items that failed, with their reasons.
    pub failed: Vec<FailedAccount>,
}

impl RotationReport {
    /// The report of a run that has read nothing yet.
    pub(super) fn new(target_key_arn: String, dry_run: bool) -> Self {
        Self {
            target_key_arn,
            dry_run,
            stopped_early: false,
            counts: RotationCounts::default(),
            failed: Vec::new(),
        }
    }
}

/// Why a run could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The target key does not exist, is not enabled, or cannot be described.
    #[error("target key {key} is unusable: {reason}")]
    TargetKey {
        /// The key as given.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Reading the table failed.
    #[error("scanning table {table} failed: {reason}")]
    Scan {
        /// The table.
        table: String,
        /// What failed.
        reason: String,
    },
    /// Many items in a row failed, so the rest would most likely fail too.
    #[error("stopped after {failures} items in a row failed; the last failure: {last_reason}")]
    TooManyFailures {
        /// How many failed in a row.
        failures: usize,
        /// The last reason.
        last_reason: String,
    },
}

/// What became of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ItemOutcome {
    Rewrapped,
    AlreadyOnTarget,
    WithoutSecrets,
    DeletedMeanwhile,
    Failed(String),
}

/// A run's report as it grows, with its failures in a row.
pub(super) struct Tally {
    pub(super) report: RotationReport,
    failures_in_a_row: usize,
}

impl Tally {
    pub(super) fn new(report: RotationReport) -> Self {
        Self {
            report,
            failures_in_a_row: 0,
        }
    }

    /// Counts one item read (`key` is `None` for an item without string keys) and what became
    /// of it. A re-wrapped item or one already on target ends a run of failures; items without
    /// secrets and deleted ones neither end nor extend it.
    pub(super) fn record(&mut self, key: Option<&ItemKey>, outcome: ItemOutcome, conflicts: usize) {
        let counts = &mut self.report.counts;
        counts.scanned += 1;
        counts.retried_after_conflict += conflicts;
        match outcome {
            ItemOutcome::Rewrapped => {
                counts.rewrapped += 1;
                self.failures_in_a_row = 0;
            }
            ItemOutcome::AlreadyOnTarget => {
                counts.already_on_target += 1;
                self.failures_in_a_row = 0;
            }
            ItemOutcome::WithoutSecrets => counts.skipped_without_secrets += 1,
            ItemOutcome::DeletedMeanwhile => counts.deleted_meanwhile += 1,
            ItemOutcome::Failed(reason) => {
                counts.failed += 1;
                self.failures_in_a_row += 1;
                let part = |text: Option<&String>| text.map_or("?", String::as_str).to_owned();
                self.report.failed.push(FailedAccount {
                    user_id: part(key.map(|key| &key.user_id)),
                    account_id: part(key.map(|key| &key.account_id)),
                    reason,
                });
            }
        }
    }

    /// `Err` once [`MAX_FAILURES_IN_A_ROW`] items in a row have failed.
    pub(super) fn keep_going(&self) -> Result<(), RotationError> {
        if self.failures_in_a_row < MAX_FAILURES_IN_A_ROW {
            return Ok(());
        }
        Err(RotationError::TooManyFailures {
            failures: self.failures_in_a_row,
            last_reason: self
                .report
                .failed
                .last()
                .map(|failed| failed.reason.clone())
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally() -> Tally {
        Tally::new(RotationReport::new("arn:new".to_owned(), false))
    }

    fn key(n: usize) -> ItemKey {
        ItemKey {
            user_id: "alice".to_owned(),
            account_id: format!("crm-{n}"),
        }
    }

    fn failed(reason: &str) -> ItemOutcome {
        ItemOutcome::Failed(reason.to_owned())
    }

    #[test]
    fn every_outcome_is_counted_once_with_its_conflicts() {
        let mut tally = tally();
        tally.record(Some(&key(0)), ItemOutcome::Rewrapped, 2);
        tally.record(Some(&key(1)), ItemOutcome::AlreadyOnTarget, 0);
        tally.record(Some(&key(2)), ItemOutcome::WithoutSecrets, 0);
        tally.record(Some(&key(3)), ItemOutcome::DeletedMeanwhile, 1);
        tally.record(Some(&key(4)), failed("KMS ReEncrypt failed"), 0);
        assert_eq!(
            tally.report.counts,
            RotationCounts {
                scanned: 5,
                rewrapped: 1,
                already_on_target: 1,
                skipped_without_secrets: 1,
                deleted_meanwhile: 1,
                retried_after_conflict: 3,
                failed: 1,
            }
        );
        assert_eq!(
            tally.report.failed,
            [FailedAccount {
                user_id: "alice".to_owned(),
                account_id: "crm-4".to_owned(),
                reason: "KMS ReEncrypt failed".to_owned(),
            }]
        );
    }

    #[test]
    fn a_failed_item_without_keys_is_listed_with_question_marks() {
        let mut tally = tally();
        tally.record(None, failed("the item has no string key"), 0);
        assert_eq!(tally.report.failed[0].user_id, "?");
        assert_eq!(tally.report.failed[0].account_id, "?");
    }

    #[test]
    fn the_run_stops_after_failures_in_a_row_and_only_successes_end_a_streak() {
        let mut tally = tally();
        for n in 0..MAX_FAILURES_IN_A_ROW - 1 {
            tally.record(Some(&key(n)), failed("denied"), 0);
            // Items without secrets or deleted meanwhile do not break the streak.
            tally.record(Some(&key(n)), ItemOutcome::WithoutSecrets, 0);
            tally.record(Some(&key(n)), ItemOutcome::DeletedMeanwhile, 0);
            assert!(tally.keep_going().is_ok());
        }
        tally.record(Some(&key(99)), failed("denied at last"), 0);
        match tally.keep_going() {
            Err(RotationError::TooManyFailures {
                failures,
                last_reason,
            }) => {
                assert_eq!(failures, MAX_FAILURES_IN_A_ROW);
                assert_eq!(last_reason, "denied at last");
            }
            other => panic!("expected a stop, got {other:?}"),
        }

        for success in [ItemOutcome::Rewrapped, ItemOutcome::AlreadyOnTarget] {
            let mut tally = self::tally();
            for n in 0..MAX_FAILURES_IN_A_ROW - 1 {
                tally.record(Some(&key(n)), failed("denied"), 0);
            }
            tally.record(Some(&key(98)), success, 0);
            tally.record(Some(&key(99)), failed("denied"), 0);
            assert!(tally.keep_going().is_ok());
        }
    }
}
