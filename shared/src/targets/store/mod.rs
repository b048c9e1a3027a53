//! `TargetStore`: communication targets in DynamoDB.
//!
//! One partition per user (`user_id`), sort key `sk`:
//! - `T#<uuid v7>`: an active target; a descending query is "newest first".
//! - `D#<uuid v7>`: a deleted target (`active = false`), kept for history and outreach records.
//! - `E#<email>`: the guard that makes an active target's email unique; holds its `target_id`.
//! - `#count`: the number of active targets (`active_count`), bounded by the per-user limit.
//!
//! Every change of a target moves its guard and counter in the same transaction. Reads and
//! paging are in `reads`, single-target writes in `writes`, many new targets at once in `bulk`.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::model::{TargetDraft, TargetView};
use crate::ids::UserId;
use crate::storage::user_key;

mod bulk;
mod reads;
mod writes;

pub use bulk::{Inserted, transaction_chunks};

const ACTIVE_PREFIX: &str = "T#";
const DELETED_PREFIX: &str = "D#";
const EMAIL_PREFIX: &str = "E#";
const COUNTER_KEY: &str = "#count";

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
    /// What the targets' timestamps read.
    clock: crate::clock::Clock,
}

impl TargetStore {
    /// A store over `table`.
    pub fn new(dynamodb: Client, table: impl Into<String>) -> Self {
        Self {
            dynamodb,
            table: table.into(),
            clock: crate::clock::Clock::system(),
        }
    }

    /// The same store, telling time by `clock`.
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    fn key(user: &UserId, sk: &str) -> HashMap<String, AttributeValue> {
        user_key(user.as_str(), "sk", sk)
    }
}

fn view_of(
    id: crate::ids::TargetId,
    draft: TargetDraft,
    created_at: String,
    updated_at: String,
) -> TargetView {
    TargetView {
        id,
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
