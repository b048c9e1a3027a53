//! `TargetStore`: communication targets in DynamoDB.
//!
//! One partition per user (`user_id`), sort key `sk`:
//! - `T#<uuid v7>`: an active target; a descending query is "newest first".
//! - `D#<uuid v7>`: a deleted target (`active = false`), kept for history and outreach records.
//! - `E#<email>`: the guard that makes an active target's email unique; holds its `target_id`.
//! - `#count`: the number of active targets (`active_count`), bounded by the per-user limit.
//!
//! Every change of a target moves its guard and counter in the same transaction.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, KeysAndAttributes, Put, TransactWriteItem, Update,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::model::{MAX_ACTIVE_TARGETS_PER_USER, TargetDraft, TargetId, TargetPage, TargetView};
use crate::aws::dependency_error;
use crate::error::Error;
use crate::ids::UserId;

// Slots of a new target's transaction: the target, the user's counter, its email guard.
const TARGET_SLOT: usize = 0;
const COUNTER_SLOT: usize = 1;
const EMAIL_GUARD_SLOT: usize = 2;
use crate::storage::{
    TransactionFailure, conditional, decode_item, encode_item, number as n, read_item, text as s,
    transact_write, user_key,
};

mod bulk;

pub use bulk::{Inserted, transaction_chunks};

const ACTIVE_PREFIX: &str = "T#";
const DELETED_PREFIX: &str = "D#";
const EMAIL_PREFIX: &str = "E#";
const COUNTER_KEY: &str = "#count";
const CURSOR_VERSION: &str = "v1:";

/// A target as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetItem {
    /// Partition key: the owner.
    pub user_id: UserId,
    /// Sort key: `T#id` while active, `D#id` once deleted.
    pub sk: String,
    /// The target's fields.
    #[serde(flatten)]
    pub target: TargetView,
    /// Optimistic-lock version, +1 per write.
    pub version: u64,
}

/// Communication targets in one DynamoDB table.
#[derive(Clone)]
pub struct TargetStore {
    dynamodb: Client,
    table: String,
}

impl TargetStore {
    /// A store over `table`.
    pub fn new(dynamodb: Client, table: impl Into<String>) -> Self {
        Self {
            dynamodb,
            table: table.into(),
        }
    }

    fn key(user: &UserId, sk: &str) -> HashMap<String, AttributeValue> {
        user_key(user.as_str(), "sk", sk)
    }

    fn guard_put(
        &self,
        user: &UserId,
        email: &str,
        target_id: &str,
    ) -> Result<TransactWriteItem, Error> {
        let put = Put::builder()
            .table_name(&self.table)
            .item("user_id", s(user.as_str()))
            .item("sk", s(format!("{EMAIL_PREFIX}{email}")))
            .item("target_id", s(target_id))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .map_err(Error::internal)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn guard_delete(
        &self,
        user: &UserId,
        email: &str,
        target_id: &str,
    ) -> Result<TransactWriteItem, Error> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(user, &format!("{EMAIL_PREFIX}{email}"))))
            .condition_expression("target_id = :id")
            .expression_attribute_values(":id", s(target_id))
            .build()
            .map_err(Error::internal)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    fn counter_change(&self, user: &UserId, delta: i32) -> Result<TransactWriteItem, Error> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(user, COUNTER_KEY)))
            .update_expression("SET active_count = if_not_exists(active_count, :zero) + :delta")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":delta", n(delta));
        if delta > 0 {
            update = update
                .condition_expression("attribute_not_exists(active_count) OR active_count < :max")
                .expression_attribute_values(":max", n(MAX_ACTIVE_TARGETS_PER_USER));
        }
        Ok(TransactWriteItem::builder()
            .update(update.build().map_err(Error::internal)?)
            .build())
    }

    /// The id of the active target holding `email`, if any.
    pub async fn email_holder(&self, user: &UserId, email: &str) -> Result<Option<String>, Error> {
        let item = read_item(
            &self.dynamodb,
            &self.table,
            Self::key(user, &format!("{EMAIL_PREFIX}{email}")),
        )
        .await?;
        Ok(item
            .and_then(|mut item| item.remove("target_id"))
            .and_then(|value| value.as_s().ok().cloned()))
    }

    async fn duplicate(&self, user: &UserId, email: &str) -> Error {
        match self.email_holder(user, email).await {
            Ok(existing_id) => Error::Conflict {
                code: "duplicate_email",
                message: "An active target already has this email.".into(),
                existing_id,
            },
            Err(error) => error,
        }
    }

    /// Stores a new active target: target, email guard and counter in one transaction. 409
    /// (`duplicate_email`, with the holder's id) when an active target has the email; 422
    /// (`target_limit_reached`) at the per-user limit.
    pub async fn create(&self, user: &UserId, draft: TargetDraft) -> Result<TargetView, Error> {
        let now = crate::now_rfc3339();
        self.insert_active(user, TargetId::new(), draft, now.clone(), now)
            .await
    }

    /// Stores a target moved in from another store under its given id and timestamps: active
    /// ones exactly as [`TargetStore::create`] does (guard, counter, 409, 422), inactive ones as
    /// deleted records. `Ok(false)` when a target with this id already exists (active or not):
    /// importing twice changes nothing.
    pub async fn import(
        &self,
        user: &UserId,
        id: TargetId,
        draft: TargetDraft,
        created_at: String,
        updated_at: String,
        active: bool,
    ) -> Result<bool, Error> {
        for prefix in [ACTIVE_PREFIX, DELETED_PREFIX] {
            let key = Self::key(user, &format!("{prefix}{id}"));
            if read_item(&self.dynamodb, &self.table, key).await?.is_some() {
                return Ok(false);
            }
        }
        if active {
            return self
                .insert_active(user, id, draft, created_at, updated_at)
                .await
                .map(|_| true);
        }
        let id = id.to_string();
        let mut target = view_of(&id, draft, created_at, updated_at);
        target.active = false;
        let item = TargetItem {
            user_id: user.clone(),
            sk: format!("{DELETED_PREFIX}{id}"),
            target,
            version: 1,
        };
        let result = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode_item(&item)?))
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await;
        conditional(result)
    }

    async fn insert_active(
        &self,
        user: &UserId,
        id: TargetId,
        draft: TargetDraft,
        created_at: String,
        updated_at: String,
    ) -> Result<TargetView, Error> {
        let id = id.to_string();
        let item = TargetItem {
            user_id: user.clone(),
            sk: format!("{ACTIVE_PREFIX}{id}"),
            target: view_of(&id, draft, created_at, updated_at),
            version: 1,
        };
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(encode_item(&item)?))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .map_err(Error::internal)?;
        let mut items = vec![
            TransactWriteItem::builder().put(put).build(),
            self.counter_change(user, 1)?,
        ];
        if let Some(email) = &item.target.email {
            items.push(self.guard_put(user, email, &id)?);
        }
        match transact_write(&self.dynamodb, items).await {
            Ok(()) => Ok(item.target),
            Err(TransactionFailure::ConditionFailed(failed)) => {
                if failed.at(EMAIL_GUARD_SLOT)
                    && let Some(email) = &item.target.email
                {
                    Err(self.duplicate(user, email).await)
                } else if failed.at(COUNTER_SLOT) {
                    Err(Error::LimitExceeded {
                        code: "target_limit_reached",
                        message: format!(
                            "A user can have at most {MAX_ACTIVE_TARGETS_PER_USER} active targets."
                        ),
                    })
                } else {
                    Err(Error::internal("a new target id already existed"))
                }
            }
            Err(failure) => Err(failure.into()),
        }
    }

    /// One active target as stored.
    pub async fn get(&self, user: &UserId, id: TargetId) -> Result<Option<TargetItem>, Error> {
        let item = read_item(
            &self.dynamodb,
            &self.table,
            Self::key(user, &format!("{ACTIVE_PREFIX}{id}")),
        )
        .await?;
        item.map(decode_item).transpose()
    }

    /// Replaces an active target's fields with `draft` (404 when not active). A changed email
    /// moves the guard in the same transaction: 409 when another active target has it.
    pub async fn update(
        &self,
        user: &UserId,
        current: TargetItem,
        draft: TargetDraft,
    ) -> Result<TargetView, Error> {
        let id = current.target.id.clone();
        let updated = TargetItem {
            target: TargetView {
                // What the person did is not the user's to edit.
                last_replied_at: current.target.last_replied_at.clone(),
                ..view_of(
                    &id,
                    draft,
                    current.target.created_at.clone(),
                    crate::now_rfc3339(),
                )
            },
            version: current.version + 1,
            ..current.clone()
        };
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(encode_item(&updated)?))
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", n(current.version))
            .build()
            .map_err(Error::internal)?;
        let mut items = vec![TransactWriteItem::builder().put(put).build()];
        let (old_email, new_email) = (&current.target.email, &updated.target.email);
        let mut new_guard_at = None;
        if old_email != new_email {
            if let Some(old) = old_email {
                items.push(self.guard_delete(user, old, &id)?);
            }
            if let Some(new) = new_email {
                new_guard_at = Some(items.len());
                items.push(self.guard_put(user, new, &id)?);
            }
        }
        match transact_write(&self.dynamodb, items).await {
            Ok(()) => Ok(updated.target),
            Err(TransactionFailure::ConditionFailed(failed)) => match (new_guard_at, new_email) {
                (Some(at), Some(email)) if failed.at(at) && !failed.at(TARGET_SLOT) => {
                    Err(self.duplicate(user, email).await)
                }
                _ => Err(Error::Conflict {
                    code: "concurrent_update",
                    message: "The target was changed by another request meanwhile; retry.".into(),
                    existing_id: None,
                }),
            },
            Err(failure) => Err(failure.into()),
        }
    }

    /// Soft-deletes an active target: it becomes `D#id` with `active = false`, its email guard is
    /// released and the counter decremented, all in one transaction. 404 when not active.
    pub async fn delete(&self, user: &UserId, id: TargetId) -> Result<(), Error> {
        let current = self.get(user, id).await?.ok_or(Error::NotFound)?;
        let now = crate::now_rfc3339();
        let mut deleted = current.clone();
        deleted.sk = format!("{DELETED_PREFIX}{id}");
        deleted.target.active = false;
        deleted.target.updated_at = now;
        deleted.version += 1;
        let remove = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(user, &current.sk)))
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", n(current.version))
            .build()
            .map_err(Error::internal)?;
        let keep = Put::builder()
            .table_name(&self.table)
            .set_item(Some(encode_item(&deleted)?))
            .build()
            .map_err(Error::internal)?;
        let mut items = vec![
            TransactWriteItem::builder().delete(remove).build(),
            TransactWriteItem::builder().put(keep).build(),
            self.counter_change(user, -1)?,
        ];
        if let Some(email) = &current.target.email {
            items.push(self.guard_delete(user, email, &current.target.id)?);
        }
        match transact_write(&self.dynamodb, items).await {
            Ok(()) => Ok(()),
            // Deleted or changed meanwhile: another request won; this one names nothing now.
            Err(TransactionFailure::ConditionFailed(_)) => Err(Error::NotFound),
            Err(failure) => Err(failure.into()),
        }
    }

    /// The query of a user's active targets, newest first (UUID v7 keys, descending).
    fn active_newest_first(
        &self,
        user: &UserId,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.dynamodb
            .query()
            .table_name(&self.table)
            .key_condition_expression("user_id = :user AND begins_with(sk, :active)")
            .expression_attribute_values(":user", s(user.as_str()))
            .expression_attribute_values(":active", s(ACTIVE_PREFIX))
            .scan_index_forward(false)
    }

    /// A page of active targets, newest first. The cursor holds only a position inside the
    /// caller's own partition, so it cannot reach another user's data.
    pub async fn page(
        &self,
        user: &UserId,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<TargetPage, Error> {
        let mut query = self
            .active_newest_first(user)
            .consistent_read(true)
            // One more than asked tells whether a next page exists.
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX));
        if let Some(cursor) = cursor {
            let after = decode_cursor(cursor)?;
            query = query
                .set_exclusive_start_key(Some(Self::key(user, &format!("{ACTIVE_PREFIX}{after}"))));
        }
        let output = query.send().await.map_err(dependency_error)?;
        let more = output.last_evaluated_key.is_some();
        let mut targets: Vec<TargetView> = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| decode_item::<TargetItem>(item).map(|item| item.target))
            .collect::<Result<_, _>>()?;
        let next_cursor =
            if targets.len() > limit as usize || (more && targets.len() == limit as usize) {
                targets.truncate(limit as usize);
                targets.last().map(|last| encode_cursor(&last.id))
            } else {
                None
            };
        Ok(TargetPage {
            targets,
            next_cursor,
        })
    }

    /// Every active target of a user, newest first.
    pub async fn all_active(&self, user: &UserId) -> Result<Vec<TargetView>, Error> {
        let mut pages = self.active_newest_first(user).into_paginator().send();
        let mut targets = Vec::new();
        while let Some(page) = pages.next().await {
            for item in page.map_err(dependency_error)?.items.unwrap_or_default() {
                targets.push(decode_item::<TargetItem>(item)?.target);
            }
        }
        Ok(targets)
    }

    /// The active targets among `ids`, in the order asked; `None` for ids that are unknown,
    /// deleted or another user's.
    pub async fn active_by_ids(
        &self,
        user: &UserId,
        ids: &[TargetId],
    ) -> Result<Vec<Option<TargetView>>, Error> {
        let mut found: HashMap<String, TargetView> = HashMap::new();
        for chunk in ids.chunks(100) {
            let mut keys: Vec<_> = chunk
                .iter()
                .map(|id| Self::key(user, &format!("{ACTIVE_PREFIX}{id}")))
                .collect();
            keys.dedup();
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .build()
                    .map_err(Error::internal)?,
            );
            // BatchGetItem may leave keys unprocessed under load: ask again for those.
            while let Some(pending) = request.take() {
                let output = self
                    .dynamodb
                    .batch_get_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(dependency_error)?;
                for item in output
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let item: TargetItem = decode_item(item)?;
                    found.insert(item.target.id.clone(), item.target);
                }
                request = output
                    .unprocessed_keys
                    .and_then(|mut unprocessed| unprocessed.remove(&self.table))
                    .filter(|pending| !pending.keys().is_empty());
            }
        }
        Ok(ids
            .iter()
            .map(|id| found.get(&id.to_string()).cloned())
            .collect())
    }
}

impl TargetStore {
    /// Records that the person answered (their reply arrived at `at`, RFC 3339): the newest
    /// reply wins, and the version moves so that an edit read before it is refused rather than
    /// dropping it. `false` when the target is gone (deleted meanwhile).
    pub async fn record_reply(&self, user: &UserId, id: &str, at: &str) -> Result<bool, Error> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(user, &format!("{ACTIVE_PREFIX}{id}"))))
            .condition_expression(
                "attribute_exists(sk) AND (attribute_not_exists(last_replied_at) OR last_replied_at < :at)",
            )
            .update_expression("SET last_replied_at = :at, version = version + :one")
            .expression_attribute_values(":at", AttributeValue::S(at.to_owned()))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        crate::storage::conditional(result)
    }
}

fn view_of(id: &str, draft: TargetDraft, created_at: String, updated_at: String) -> TargetView {
    TargetView {
        id: id.to_owned(),
        name: draft.name,
        email: draft.email.map(|e| e.as_str().to_owned()),
        twitter_username: draft.twitter_username.map(|h| h.as_str().to_owned()),
        instagram_username: draft.instagram_username.map(|h| h.as_str().to_owned()),
        notes: draft.notes,
        timezone: draft.timezone,
        custom_fields: draft.custom_fields,
        active: true,
        last_replied_at: None,
        created_at,
        updated_at,
    }
}

fn encode_cursor(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_VERSION}{id}"))
}

fn decode_cursor(cursor: &str) -> Result<TargetId, Error> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(CURSOR_VERSION).and_then(TargetId::parse))
        .ok_or_else(|| Error::invalid("cursor", "is not a cursor this API returned"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_forgeries_are_refused() {
        let id = TargetId::new();
        assert_eq!(
            decode_cursor(&encode_cursor(&id.to_string())).ok(),
            Some(id)
        );
        for forged in [
            "",
            "abc",
            "djE6bm90LWEtdXVpZA",
            &URL_SAFE_NO_PAD.encode(format!("v1:{id}#bob")),
        ] {
            assert!(decode_cursor(forged).is_err(), "{forged}");
        }
    }
}
