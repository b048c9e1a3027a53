//! Re-wrapping every stored data key under another KMS key (`make rotate-keys TO=<key>`).
//!
//! Each account's secrets are sealed under their own data key, stored wrapped by the secrets key
//! (see [`pipewise::envelope`]). Rotating to another key only changes that wrapping: KMS
//! `ReEncrypt` unwraps and re-wraps the data key inside KMS, with the item's own encryption
//! context `{table, user_id, account_id}` on both sides, so neither the data key nor any secret
//! reaches this process, a disk or a log. The envelope's nonce and ciphertext stay as they are.
//!
//! The order for an operator:
//! 1. deploy the stack with `SECRETS_KMS_KEY_ID` naming the new key, so that every new seal uses
//!    it (the functions keep sealing under whatever key they are configured with);
//! 2. run the rotation until a run re-wraps nothing;
//! 3. disable the old key (schedule its deletion only once nothing has needed it for a while).
//!
//! Concurrent user writes are never overwritten: every write of an account bumps its `version`
//! (the optimistic lock of `AccountStore`), and the rotation writes only if the item still has
//! the version and key it read, bumping the version itself. A user write that read the item
//! before the rotation then fails with 409 and the client retries on the rotated item, instead of
//! putting back an envelope wrapped under the old key. A rotation write that loses re-reads the
//! item and tries again. `version` is not part of the API's views, so the bump is invisible.
//!
//! Idempotent and resumable: items already under the target key are left alone, so an
//! interrupted run (or one bounded by [`KeyRotation::max_items`]) is finished by running again.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use pipewise::envelope::EncryptionContext;
use pipewise::storage::{is_conditional_check_failed, user_key};

/// Writes of one item that may lose to concurrent user updates before the item counts as failed
/// (a rerun picks it up again).
const ATTEMPTS_PER_ITEM: usize = 5;

/// Failures in a row after which a run stops: a missing permission or an unusable key fails every
/// item alike, and listing a whole table of identical failures helps nobody.
const MAX_FAILURES_IN_A_ROW: usize = 25;

/// Sort key attribute of the accounts table.
const SORT_KEY: &str = "account_id";

/// One rotation of the accounts table to a target KMS key.
#[derive(Clone)]
pub struct KeyRotation {
    /// DynamoDB client.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// KMS client.
    pub kms: aws_sdk_kms::Client,
    /// The accounts table, named as the functions name it (`ACCOUNTS_TABLE`): the name is part
    /// of every envelope's encryption context.
    pub table: String,
    /// The key to re-wrap under: key id, key ARN, alias name or alias ARN.
    pub target_key: String,
    /// Only count what would be re-wrapped: no `ReEncrypt`, no write.
    pub dry_run: bool,
    /// Stop after re-wrapping this many items, for runs in bounded batches (e.g. to stay under a
    /// KMS request quota); the next run carries on where this one stopped.
    pub max_items: Option<usize>,
}

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
    pub stopped_early: bool,
    /// The counts.
    pub counts: RotationCounts,
    /// The items that failed, with their reasons.
    pub failed: Vec<FailedAccount>,
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

/// The parts of a stored envelope the rotation changes.
struct WrappedKey {
    kms_key_id: String,
    wrapped_key: Vec<u8>,
}

/// What became of one item.
enum ItemOutcome {
    Rewrapped,
    AlreadyOnTarget,
    WithoutSecrets,
    DeletedMeanwhile,
    Failed(String),
}

/// One attempt at an item: done, or lost to a concurrent write.
enum Attempt {
    Done(ItemOutcome),
    Conflict,
}

impl KeyRotation {
    /// A full (not dry, unbounded) rotation of `table` to `target_key`.
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
        table: impl Into<String>,
        target_key: impl Into<String>,
    ) -> Self {
        Self {
            dynamodb,
            kms,
            table: table.into(),
            target_key: target_key.into(),
            dry_run: false,
            max_items: None,
        }
    }

    /// DynamoDB's approximate item count of the table (refreshed about every six hours), for a
    /// progress bar; `None` when it cannot be read.
    pub async fn estimated_items(&self) -> Option<u64> {
        let output = self
            .dynamodb
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .ok()?;
        output
            .table()
            .and_then(|table| table.item_count())
            .and_then(|count| u64::try_from(count).ok())
    }

    /// Re-wraps every data key not yet under the target key, one item at a time, calling
    /// `progress` after each item. Per-item failures are reported, not returned; the error is for
    /// a run that cannot start (target key) or cannot go on (scan, failures in a row).
    pub async fn run(
        &self,
        progress: impl Fn(&RotationCounts),
    ) -> Result<RotationReport, RotationError> {
        let target_key_arn = self.resolve_target().await?;
        let mut report = RotationReport {
            target_key_arn,
            dry_run: self.dry_run,
            stopped_early: false,
            counts: RotationCounts::default(),
            failed: Vec::new(),
        };
        let mut failures_in_a_row = 0;
        let mut pages = self
            .dynamodb
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .into_paginator()
            .send();
        'pages: while let Some(page) = pages.next().await {
            let page = page.map_err(|error| RotationError::Scan {
                table: self.table.clone(),
                reason: DisplayErrorContext(&error).to_string(),
            })?;
            for item in page.items.unwrap_or_default() {
                if self
                    .max_items
                    .is_some_and(|max| report.counts.rewrapped >= max)
                {
                    report.stopped_early = true;
                    break 'pages;
                }
                report.counts.scanned += 1;
                let user_id = text_of(&item, "user_id").unwrap_or("?").to_owned();
                let account_id = text_of(&item, SORT_KEY).unwrap_or("?").to_owned();
                let (outcome, conflicts) = self.rotate_item(&report.target_key_arn, item).await;
                report.counts.retried_after_conflict += conflicts;
                match outcome {
                    ItemOutcome::Rewrapped => {
                        report.counts.rewrapped += 1;
                        failures_in_a_row = 0;
                    }
                    ItemOutcome::AlreadyOnTarget => {
                        report.counts.already_on_target += 1;
                        failures_in_a_row = 0;
                    }
                    ItemOutcome::WithoutSecrets => report.counts.skipped_without_secrets += 1,
                    ItemOutcome::DeletedMeanwhile => report.counts.deleted_meanwhile += 1,
                    ItemOutcome::Failed(reason) => {
                        report.counts.failed += 1;
                        failures_in_a_row += 1;
                        report.failed.push(FailedAccount {
                            user_id,
                            account_id,
                            reason,
                        });
                    }
                }
                progress(&report.counts);
                if failures_in_a_row >= MAX_FAILURES_IN_A_ROW {
                    return Err(RotationError::TooManyFailures {
                        failures: failures_in_a_row,
                        last_reason: report
                            .failed
                            .last()
                            .map(|failed| failed.reason.clone())
                            .unwrap_or_default(),
                    });
                }
            }
        }
        Ok(report)
    }

    /// The target key's ARN (what stored envelopes record), once it is known to be enabled.
    async fn resolve_target(&self) -> Result<String, RotationError> {
        let unusable = |reason: String| RotationError::TargetKey {
            key: self.target_key.clone(),
            reason,
        };
        let output = self
            .kms
            .describe_key()
            .key_id(&self.target_key)
            .send()
            .await
            .map_err(|error| unusable(DisplayErrorContext(&error).to_string()))?;
        let metadata = output
            .key_metadata()
            .ok_or_else(|| unusable("DescribeKey returned no key metadata".to_owned()))?;
        if !metadata.enabled() {
            return Err(unusable("the key is not enabled".to_owned()));
        }
        metadata
            .arn()
            .map(str::to_owned)
            .ok_or_else(|| unusable("DescribeKey returned no ARN".to_owned()))
    }

    /// Re-wraps one item, re-reading and retrying when a concurrent write gets in between.
    /// Returns the outcome and how many writes lost to a concurrent update.
    async fn rotate_item(
        &self,
        target_key_arn: &str,
        mut item: HashMap<String, AttributeValue>,
    ) -> (ItemOutcome, usize) {
        let mut conflicts = 0;
        loop {
            if let Attempt::Done(outcome) = self.try_item(target_key_arn, &item).await {
                return (outcome, conflicts);
            }
            conflicts += 1;
            if conflicts >= ATTEMPTS_PER_ITEM {
                let reason = format!(
                    "changed by other writers during {conflicts} attempts; a rerun retries it"
                );
                return (ItemOutcome::Failed(reason), conflicts);
            }
            item = match self.reread(&item).await {
                Ok(Some(fresh)) => fresh,
                Ok(None) => return (ItemOutcome::DeletedMeanwhile, conflicts),
                Err(reason) => return (ItemOutcome::Failed(reason), conflicts),
            };
        }
    }

    /// One attempt: skip, or `ReEncrypt` then a write conditional on the item being unchanged.
    async fn try_item(
        &self,
        target_key_arn: &str,
        item: &HashMap<String, AttributeValue>,
    ) -> Attempt {
        let wrapped = match wrapped_key_of(item) {
            Ok(Some(wrapped)) => wrapped,
            Ok(None) => return Attempt::Done(ItemOutcome::WithoutSecrets),
            Err(problem) => return Attempt::Done(ItemOutcome::Failed(problem.to_owned())),
        };
        if wrapped.kms_key_id == target_key_arn {
            return Attempt::Done(ItemOutcome::AlreadyOnTarget);
        }
        if self.dry_run {
            return Attempt::Done(ItemOutcome::Rewrapped);
        }
        let (Some(user_id), Some(account_id)) = (text_of(item, "user_id"), text_of(item, SORT_KEY))
        else {
            return Attempt::Done(ItemOutcome::Failed("the item has no string key".to_owned()));
        };
        let version = match version_of(item) {
            Ok(version) => version,
            Err(problem) => return Attempt::Done(ItemOutcome::Failed(problem.to_owned())),
        };
        let context = EncryptionContext {
            table: &self.table,
            user_id,
            account_id,
        };
        let rewrapped = match self.rewrap(&wrapped, target_key_arn, context).await {
            Ok(rewrapped) => rewrapped,
            Err(reason) => return Attempt::Done(ItemOutcome::Failed(reason)),
        };
        match self
            .write_rewrapped(context, version, &wrapped.kms_key_id, rewrapped)
            .await
        {
            Ok(true) => Attempt::Done(ItemOutcome::Rewrapped),
            Ok(false) => Attempt::Conflict,
            Err(reason) => Attempt::Done(ItemOutcome::Failed(reason)),
        }
    }

    /// KMS `ReEncrypt` of a wrapped data key: unwrapped and re-wrapped inside KMS, under the same
    /// encryption context, so the data key never reaches this process.
    async fn rewrap(
        &self,
        wrapped: &WrappedKey,
        target_key_arn: &str,
        context: EncryptionContext<'_>,
    ) -> Result<WrappedKey, String> {
        let output = self
            .kms
            .re_encrypt()
            .ciphertext_blob(Blob::new(wrapped.wrapped_key.clone()))
            .source_key_id(&wrapped.kms_key_id)
            .set_source_encryption_context(Some(context.kms_context()))
            .destination_key_id(target_key_arn)
            .set_destination_encryption_context(Some(context.kms_context()))
            .send()
            .await
            .map_err(|error| format!("KMS ReEncrypt failed: {}", DisplayErrorContext(&error)))?;
        let wrapped_key = output
            .ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| "ReEncrypt returned no ciphertext".to_owned())?;
        Ok(WrappedKey {
            kms_key_id: output.key_id.unwrap_or_else(|| target_key_arn.to_owned()),
            wrapped_key,
        })
    }

    /// Stores a re-wrapped data key if the item still has the version and key it was read with;
    /// `Ok(false)` when a concurrent write got in between.
    async fn write_rewrapped(
        &self,
        context: EncryptionContext<'_>,
        seen_version: u64,
        seen_kms_key_id: &str,
        rewrapped: WrappedKey,
    ) -> Result<bool, String> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(user_key(
                context.user_id,
                SORT_KEY,
                context.account_id,
            )))
            .update_expression(
                "SET secrets.wrapped_key = :wrapped_key, secrets.kms_key_id = :kms_key_id, \
                 version = :next_version",
            )
            .condition_expression(
                "version = :seen_version AND secrets.kms_key_id = :seen_kms_key_id",
            )
            .expression_attribute_values(
                ":wrapped_key",
                AttributeValue::B(Blob::new(rewrapped.wrapped_key)),
            )
            .expression_attribute_values(":kms_key_id", AttributeValue::S(rewrapped.kms_key_id))
            .expression_attribute_values(
                ":next_version",
                AttributeValue::N(seen_version.saturating_add(1).to_string()),
            )
            .expression_attribute_values(
                ":seen_version",
                AttributeValue::N(seen_version.to_string()),
            )
            .expression_attribute_values(
                ":seen_kms_key_id",
                AttributeValue::S(seen_kms_key_id.to_owned()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if is_conditional_check_failed(&error) => Ok(false),
            Err(error) => Err(format!(
                "DynamoDB UpdateItem failed: {}",
                DisplayErrorContext(&error)
            )),
        }
    }

    /// The item as it is now (consistent read); `None` once it is deleted.
    async fn reread(
        &self,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<Option<HashMap<String, AttributeValue>>, String> {
        let (Some(user_id), Some(account_id)) = (text_of(item, "user_id"), text_of(item, SORT_KEY))
        else {
            return Err("the item has no string key".to_owned());
        };
        let output = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .set_key(Some(user_key(user_id, SORT_KEY, account_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| format!("DynamoDB GetItem failed: {}", DisplayErrorContext(&error)))?;
        Ok(output.item)
    }
}

/// A string attribute of an item.
fn text_of<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(text)) => Some(text),
        _ => None,
    }
}

/// The optimistic-lock version of an account item.
fn version_of(item: &HashMap<String, AttributeValue>) -> Result<u64, &'static str> {
    match item.get("version") {
        Some(AttributeValue::N(number)) => number
            .parse()
            .map_err(|_| "the item's version is not a whole number"),
        _ => Err("the item has no version"),
    }
}

/// The wrapped data key of an item's `secrets` envelope; `None` for items without secrets.
fn wrapped_key_of(
    item: &HashMap<String, AttributeValue>,
) -> Result<Option<WrappedKey>, &'static str> {
    let envelope = match item.get("secrets") {
        None | Some(AttributeValue::Null(_)) => return Ok(None),
        Some(AttributeValue::M(envelope)) => envelope,
        Some(_) => return Err("the item's secrets are not an envelope map"),
    };
    let Some(AttributeValue::S(kms_key_id)) = envelope.get("kms_key_id") else {
        return Err("the envelope names no KMS key");
    };
    let Some(AttributeValue::B(wrapped_key)) = envelope.get("wrapped_key") else {
        return Err("the envelope has no wrapped data key");
    };
    Ok(Some(WrappedKey {
        kms_key_id: kms_key_id.clone(),
        wrapped_key: wrapped_key.clone().into_inner(),
    }))
}
