//! Writing one target: create, import, update, soft delete and the reply stamp, each in one
//! transaction with the target's email guard and the user's counter where they change.

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};

use super::{
    ACTIVE_PREFIX, COUNTER_KEY, DELETED_PREFIX, EMAIL_PREFIX, TargetItem, TargetStore, view_of,
};
use crate::error::Error;
use crate::ids::UserId;
use crate::storage::{
    TransactionFailure, conditional, encode_item, number as n, read_item, text as s, transact_write,
};
use crate::targets::model::{MAX_ACTIVE_TARGETS_PER_USER, TargetDraft, TargetId, TargetView};

// Slots of a new target's transaction: the target, the user's counter, its email guard.
const TARGET_SLOT: usize = 0;
const COUNTER_SLOT: usize = 1;
const EMAIL_GUARD_SLOT: usize = 2;

impl TargetStore {
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
        let now = self.clock.now_rfc3339();
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
        let mut target = view_of(id, draft, created_at, updated_at);
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
        let item = TargetItem {
            user_id: user.clone(),
            sk: format!("{ACTIVE_PREFIX}{id}"),
            target: view_of(id, draft, created_at, updated_at),
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

    /// Replaces an active target's fields with `draft` (404 when not active). A changed email
    /// moves the guard in the same transaction: 409 when another active target has it.
    pub async fn update(
        &self,
        user: &UserId,
        current: TargetItem,
        draft: TargetDraft,
    ) -> Result<TargetView, Error> {
        let id = current.target.id;
        let updated = TargetItem {
            target: TargetView {
                // What the person did is not the user's to edit.
                last_replied_at: current.target.last_replied_at.clone(),
                ..view_of(
                    id,
                    draft,
                    current.target.created_at.clone(),
                    self.clock.now_rfc3339(),
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
        let now = self.clock.now_rfc3339();
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

    /// Records that the person answered (their reply arrived at `at`, RFC 3339): the newest
    /// reply wins, and the version moves so that an edit read before it is refused rather than
    /// dropping it. `false` when the target is gone (deleted meanwhile).
    pub async fn record_reply(
        &self,
        user: &UserId,
        id: &TargetId,
        at: &str,
    ) -> Result<bool, Error> {
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

    pub(super) fn guard_put(
        &self,
        user: &UserId,
        email: &str,
        target_id: &TargetId,
    ) -> Result<TransactWriteItem, Error> {
        let put = Put::builder()
            .table_name(&self.table)
            .item("user_id", s(user.as_str()))
            .item("sk", s(format!("{EMAIL_PREFIX}{email}")))
            .item("target_id", s(target_id.to_string()))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .map_err(Error::internal)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn guard_delete(
        &self,
        user: &UserId,
        email: &str,
        target_id: &TargetId,
    ) -> Result<TransactWriteItem, Error> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(user, &format!("{EMAIL_PREFIX}{email}"))))
            .condition_expression("target_id = :id")
            .expression_attribute_values(":id", s(target_id.to_string()))
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
}
