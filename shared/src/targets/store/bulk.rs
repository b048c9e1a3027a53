//! Many new targets at once (the CSV import): stored emails looked up in bulk (`BatchGetItem`,
//! 100 keys a call), then the rest written in transactions as large as DynamoDB allows, each
//! with its targets, their email guards and one counter change for all of them. A transaction
//! that a concurrent writer or the per-user limit cancels is redone target by target, so each
//! gets its precise answer; nothing is written twice.

use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};

use super::{ACTIVE_PREFIX, COUNTER_KEY, EMAIL_PREFIX, TargetItem, TargetStore, view_of};
use crate::error::Error;
use crate::ids::UserId;
use crate::storage::{TransactionFailure, batch_get_by, encode_item, number as n, transact_write};
use crate::targets::model::{MAX_ACTIVE_TARGETS_PER_USER, TargetDraft, TargetId};

/// Most actions in one `TransactWriteItems` (DynamoDB's limit).
const MAX_TRANSACTION_ACTIONS: usize = 100;

/// What became of one target of [`TargetStore::insert_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Stored, with its new id.
    Created(String),
    /// An active target already has its email: that target's id.
    Duplicate(Option<String>),
    /// The user's limit of active targets is reached.
    OverLimit,
}

/// Splits targets into transactions: each holds as many as fit in [`MAX_TRANSACTION_ACTIONS`]
/// with one action for the counter (a target takes one, two with an email guard). Returns the
/// index ranges.
pub fn transaction_chunks(with_email: &[bool]) -> Vec<std::ops::Range<usize>> {
    let mut chunks = Vec::new();
    let (mut start, mut actions) = (0, 1);
    for (index, email) in with_email.iter().enumerate() {
        let needed = if *email { 2 } else { 1 };
        if actions + needed > MAX_TRANSACTION_ACTIONS {
            chunks.push(start..index);
            (start, actions) = (index, 1);
        }
        actions += needed;
    }
    if start < with_email.len() {
        chunks.push(start..with_email.len());
    }
    chunks
}

impl TargetStore {
    /// Stores `drafts` as new active targets, in order, answering each. Emails are unique among
    /// the drafts already (the caller's job). A dependency failure stops the work: targets
    /// stored by then keep their answers, and the error says what happened to the rest.
    pub async fn insert_many(
        &self,
        user: &UserId,
        drafts: Vec<TargetDraft>,
        on_progress: &mut (dyn FnMut(usize, Inserted) + Send),
    ) -> Result<(), Error> {
        // Emails an active target already holds: those rows are duplicates, not writes.
        let keys = drafts
            .iter()
            .filter_map(|draft| draft.email.as_ref())
            .map(|email| {
                let key = Self::key(user, &format!("{EMAIL_PREFIX}{}", email.as_str()));
                (email.as_str().to_owned(), key)
            })
            .collect();
        let held: std::collections::HashMap<String, Option<String>> =
            batch_get_by(&self.dynamodb, &self.table, keys)
                .await?
                .into_iter()
                .map(|(email, mut item)| {
                    let holder = item
                        .remove("target_id")
                        .and_then(|value| value.as_s().ok().cloned());
                    (email, holder)
                })
                .collect();
        let mut fresh = Vec::new();
        for (index, draft) in drafts.into_iter().enumerate() {
            match draft
                .email
                .as_ref()
                .and_then(|email| held.get(email.as_str()))
            {
                Some(holder) => on_progress(index, Inserted::Duplicate(holder.clone())),
                None => fresh.push((index, draft)),
            }
        }
        let with_email: Vec<bool> = fresh.iter().map(|(_, d)| d.email.is_some()).collect();
        let mut fresh = fresh.into_iter();
        for range in transaction_chunks(&with_email) {
            let chunk: Vec<(usize, TargetDraft)> = fresh.by_ref().take(range.len()).collect();
            self.insert_chunk(user, chunk, on_progress).await?;
        }
        Ok(())
    }

    async fn insert_chunk(
        &self,
        user: &UserId,
        chunk: Vec<(usize, TargetDraft)>,
        on_progress: &mut (dyn FnMut(usize, Inserted) + Send),
    ) -> Result<(), Error> {
        let now = self.clock.now_rfc3339();
        let items: Vec<(usize, TargetItem)> = chunk
            .iter()
            .map(|(index, draft)| {
                let id = TargetId::new();
                let item = TargetItem {
                    user_id: user.clone(),
                    sk: format!("{ACTIVE_PREFIX}{id}"),
                    target: view_of(id, draft.clone(), now.clone(), now.clone()),
                    version: 1,
                };
                (*index, item)
            })
            .collect();
        let mut actions = vec![self.counter_raise(user, items.len())?];
        for (_, item) in &items {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(encode_item(item)?))
                .condition_expression("attribute_not_exists(sk)")
                .build()
                .map_err(Error::internal)?;
            actions.push(TransactWriteItem::builder().put(put).build());
            if let Some(email) = &item.target.email {
                actions.push(self.guard_put(user, email, &item.target.id)?);
            }
        }
        match transact_write(&self.dynamodb, actions).await {
            Ok(()) => {
                for (index, item) in items {
                    on_progress(index, Inserted::Created(item.target.id.to_string()));
                }
                Ok(())
            }
            // A guard a concurrent request took, or the limit: one at a time, each answered.
            Err(TransactionFailure::ConditionFailed(_)) => {
                for (index, draft) in chunk {
                    let answer = match self.create(user, draft).await {
                        Ok(target) => Inserted::Created(target.id.to_string()),
                        Err(Error::Conflict { existing_id, .. }) => {
                            Inserted::Duplicate(existing_id)
                        }
                        Err(Error::LimitExceeded { .. }) => Inserted::OverLimit,
                        Err(other) => return Err(other),
                    };
                    on_progress(index, answer);
                }
                Ok(())
            }
            Err(failure) => Err(failure.into()),
        }
    }

    /// Raises the user's counter by `count`, only while it stays within the limit.
    fn counter_raise(&self, user: &UserId, count: usize) -> Result<TransactWriteItem, Error> {
        let count = u32::try_from(count).map_err(Error::internal)?;
        let room = MAX_ACTIVE_TARGETS_PER_USER.saturating_sub(count);
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(user, COUNTER_KEY)))
            .update_expression("SET active_count = if_not_exists(active_count, :zero) + :delta")
            .condition_expression("attribute_not_exists(active_count) OR active_count <= :room")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":delta", n(count))
            .expression_attribute_values(":room", n(room))
            .build()
            .map_err(Error::internal)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_hold_as_many_targets_as_fit_with_the_counter() {
        // 49 with email: 98 actions + the counter.
        let all_email = vec![true; 100];
        let chunks = transaction_chunks(&all_email);
        assert_eq!(chunks, [0..49, 49..98, 98..100]);
        let no_email = vec![false; 100];
        assert_eq!(transaction_chunks(&no_email), [0..99, 99..100]);
        assert!(transaction_chunks(&[]).is_empty());
        for chunk in transaction_chunks(&[true, false, true, true, false]) {
            assert!(chunk.len() <= 99);
        }
    }
}
