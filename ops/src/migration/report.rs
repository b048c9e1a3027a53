//! What a migration reports: per table, rows migrated, unchanged, skipped and failed (by reason),
//! and each skipped or failed row by its old id with a stable reason, never a value.

use std::collections::BTreeMap;

use pipewise::error::Error;

/// The outcome of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableReport {
    /// Rows written now (or that would be, in a dry run).
    pub migrated: usize,
    /// Rows already there, unchanged.
    pub unchanged: usize,
    /// Rows left out on purpose, by reason.
    pub skipped: BTreeMap<String, usize>,
    /// Rows that could not be migrated, by reason.
    pub failed: BTreeMap<String, usize>,
    /// Each skipped or failed row: (old id, reason). Never a value.
    pub problems: Vec<(String, String)>,
}

/// What became of a row that did not fail (a failure is its reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Row {
    /// Written now (or it would be, in a dry run).
    Migrated,
    /// Already there as it would be written.
    Unchanged,
    /// Left out on purpose, for this reason.
    Skipped(&'static str),
}

impl TableReport {
    /// Counts one row: what became of it, or why it failed.
    pub(super) fn record(&mut self, old_id: String, outcome: Result<Row, String>) {
        match outcome {
            Ok(Row::Migrated) => self.migrated += 1,
            Ok(Row::Unchanged) => self.unchanged += 1,
            Ok(Row::Skipped(reason)) => self.skip(old_id, reason),
            Err(reason) => self.fail(old_id, reason),
        }
    }

    pub(super) fn skip(&mut self, old_id: String, reason: &str) {
        *self.skipped.entry(reason.to_owned()).or_default() += 1;
        self.problems.push((old_id, format!("skipped: {reason}")));
    }

    fn fail(&mut self, old_id: String, reason: String) {
        let kind = reason.split(':').next().unwrap_or(&reason).to_owned();
        *self.failed.entry(kind).or_default() += 1;
        self.problems.push((old_id, format!("failed: {reason}")));
    }

    /// How many rows failed.
    pub fn failures(&self) -> usize {
        self.failed.values().sum()
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// `user_accounts`.
    pub accounts: TableReport,
    /// `communication_targets`.
    pub targets: TableReport,
    /// Whether the run stopped at `max_rows` before the end.
    pub stopped_early: bool,
}

/// A refusal of the domain code, as a report reason: the stable code and the fields, never a
/// value.
pub(super) fn reason_of(error: &Error) -> String {
    let fields: Vec<String> = error
        .details()
        .into_iter()
        .map(|detail| detail.field)
        .collect();
    if fields.is_empty() {
        error.code().to_owned()
    } else {
        format!("{}: {}", error.code(), fields.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use pipewise::error::FieldError;

    use super::*;

    #[test]
    fn rows_are_counted_and_problems_listed_by_old_id() {
        let mut table = TableReport::default();
        table.record("a".into(), Ok(Row::Migrated));
        table.record("b".into(), Ok(Row::Unchanged));
        table.record("c".into(), Ok(Row::Skipped("unmapped_user")));
        table.record("d".into(), Err("validation_failed: email".into()));
        table.record("e".into(), Err("validation_failed: name, notes".into()));
        table.record("f".into(), Err("service_unavailable".into()));
        assert_eq!((table.migrated, table.unchanged), (1, 1));
        assert_eq!(table.skipped, BTreeMap::from([("unmapped_user".into(), 1)]));
        // Failures are counted by their code, the part before the fields.
        assert_eq!(
            table.failed,
            BTreeMap::from([
                ("service_unavailable".into(), 1),
                ("validation_failed".into(), 2)
            ])
        );
        assert_eq!(table.failures(), 3);
        assert_eq!(
            table.problems,
            [
                ("c".into(), "skipped: unmapped_user".into()),
                ("d".into(), "failed: validation_failed: email".into()),
                ("e".into(), "failed: validation_failed: name, notes".into()),
                ("f".into(), "failed: service_unavailable".into()),
            ]
        );
    }

    #[test]
    fn a_refusal_names_its_code_and_fields_never_a_value() {
        let invalid = Error::Validation(vec![
            FieldError::new("configuration.password", "must not hold sk_live_secret"),
            FieldError::new("name", "too long"),
        ]);
        assert_eq!(
            reason_of(&invalid),
            "validation_failed: configuration.password, name"
        );
        assert_eq!(reason_of(&Error::NotFound), "not_found");
    }
}
