//! Reading targets: one by id, pages of the active ones (with their opaque cursors), all of
//! them, many by id, and the holder of an email.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{ACTIVE_PREFIX, EMAIL_PREFIX, TargetItem, TargetStore};
use crate::aws::dependency_error;
use crate::error::Error;
use crate::ids::UserId;
use crate::storage::{decode_item, read_item, text as s};
use crate::targets::model::{TargetId, TargetPage, TargetView};

const CURSOR_VERSION: &str = "v1:";

impl TargetStore {
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
        let keys = ids
            .iter()
            .map(|id| (*id, Self::key(user, &format!("{ACTIVE_PREFIX}{id}"))))
            .collect();
        let mut found: HashMap<TargetId, TargetView> = HashMap::new();
        for (id, item) in crate::storage::batch_get_by(&self.dynamodb, &self.table, keys).await? {
            found.insert(id, decode_item::<TargetItem>(item)?.target);
        }
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }
}

fn encode_cursor(id: &TargetId) -> String {
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
        assert_eq!(decode_cursor(&encode_cursor(&id)).ok(), Some(id));
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
