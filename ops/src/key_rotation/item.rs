//! One item, from its read to its conditional write through
//! [`AccountStore::store_rewrapped_key`], re-read and retried when a concurrent write gets in
//! between.
//!
//! [`AccountStore::store_rewrapped_key`]: pipewise::accounts::AccountStore::store_rewrapped_key

use aws_sdk_kms::error::DisplayErrorContext;
use pipewise::accounts::store::DataKeyItem;
use pipewise::envelope::EncryptionContext;

use super::KeyRotation;
use super::report::ItemOutcome;

/// Writes of one item that may lose to concurrent user updates before the item counts as failed
/// (a rerun picks it up again).
const ATTEMPTS_PER_ITEM: usize = 5;

/// One attempt at an item: done, or lost to a concurrent write.
enum Attempt {
    Done(ItemOutcome),
    Conflict,
}

impl KeyRotation {
    /// Re-wraps one item, re-reading and retrying when a concurrent write gets in between.
    /// Returns the outcome and how many writes lost to a concurrent update.
    pub(super) async fn rotate_item(
        &self,
        target_key_arn: &str,
        mut item: DataKeyItem,
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
    async fn try_item(&self, target_key_arn: &str, item: &DataKeyItem) -> Attempt {
        let wrapped = match &item.data_key {
            Ok(Some(wrapped)) => wrapped,
            Ok(None) => return Attempt::Done(ItemOutcome::WithoutSecrets),
            Err(problem) => return Attempt::Done(ItemOutcome::Failed((*problem).to_owned())),
        };
        if wrapped.kms_key_id == target_key_arn {
            return Attempt::Done(ItemOutcome::AlreadyOnTarget);
        }
        if self.dry_run {
            return Attempt::Done(ItemOutcome::Rewrapped);
        }
        let Some(key) = &item.key else {
            return Attempt::Done(ItemOutcome::Failed("the item has no string key".to_owned()));
        };
        let version = match item.version {
            Ok(version) => version,
            Err(problem) => return Attempt::Done(ItemOutcome::Failed(problem.to_owned())),
        };
        let context = EncryptionContext {
            table: self.accounts.table(),
            user_id: &key.user_id,
            account_id: &key.account_id,
        };
        let rewrapped = match self.rewrap(wrapped, target_key_arn, context).await {
            Ok(rewrapped) => rewrapped,
            Err(reason) => return Attempt::Done(ItemOutcome::Failed(reason)),
        };
        match self
            .accounts
            .store_rewrapped_key(key, version, &wrapped.kms_key_id, rewrapped)
            .await
        {
            Ok(true) => Attempt::Done(ItemOutcome::Rewrapped),
            Ok(false) => Attempt::Conflict,
            Err(error) => Attempt::Done(ItemOutcome::Failed(format!(
                "DynamoDB UpdateItem failed: {}",
                DisplayErrorContext(&error)
            ))),
        }
    }

    /// The item as it is now (consistent read); `None` once it is deleted.
    async fn reread(&self, item: &DataKeyItem) -> Result<Option<DataKeyItem>, String> {
        let Some(key) = &item.key else {
            return Err("the item has no string key".to_owned());
        };
        self.accounts
            .read_data_key(key)
            .await
            .map_err(|error| format!("DynamoDB GetItem failed: {}", DisplayErrorContext(&error)))
    }
}
