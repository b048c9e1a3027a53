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
//!
//! The accounts table is read and written only through [`AccountStore`] (its scan of data keys,
//! its conditional write of a re-wrapped one), which alone knows the table's schema. By job:
//! `scan` walks the table and drives a run, `rewrap` is the KMS side (the target key,
//! `ReEncrypt`), `item` takes one item from its read to its conditional write, `report` counts.

mod item;
mod report;
mod rewrap;
mod scan;

use pipewise::accounts::AccountStore;

pub use report::{FailedAccount, RotationCounts, RotationError, RotationReport};

/// One rotation of the accounts table to a target KMS key.
#[derive(Clone)]
pub struct KeyRotation {
    /// The accounts table, named as the functions name it (`ACCOUNTS_TABLE`): the name is part
    /// of every envelope's encryption context.
    pub accounts: AccountStore,
    /// KMS client.
    pub kms: aws_sdk_kms::Client,
    /// The key to re-wrap under: key id, key ARN, alias name or alias ARN.
    pub target_key: String,
    /// Only count what would be re-wrapped: no `ReEncrypt`, no write.
    pub dry_run: bool,
    /// Stop after re-wrapping this many items, for runs in bounded batches (e.g. to stay under a
    /// KMS request quota); the next run carries on where this one stopped.
    pub max_items: Option<usize>,
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
            accounts: AccountStore::new(dynamodb, table),
            kms,
            target_key: target_key.into(),
            dry_run: false,
            max_items: None,
        }
    }

    /// DynamoDB's approximate item count of the table (refreshed about every six hours), for a
    /// progress bar; `None` when it cannot be read.
    pub async fn estimated_items(&self) -> Option<u64> {
        self.accounts.estimated_item_count().await
    }
}
