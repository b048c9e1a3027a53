//! Targets: request and response shapes, the valid draft they parse into, and the limits.
//! The address and handle newtypes they check are in `addresses`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::FieldError;
use crate::plain_text;

mod addresses;

pub use crate::ids::TargetId;
pub use addresses::{Email, InstagramHandle, TwitterHandle};

/// Most active targets one user may have.
pub const MAX_ACTIVE_TARGETS_PER_USER: u32 = 10_000;
/// Most items in one batch create.
pub const MAX_BATCH_ITEMS: usize = 100;
/// Page size when `limit` is not given.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_NAME_CHARS: usize = 200;
const MAX_NOTES_CHARS: usize = 2_000;

/// A valid target, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetDraft {
    /// 1-200 characters, trimmed.
    pub name: String,
    /// Email, normalised.
    pub email: Option<Email>,
    /// X (Twitter) handle, without `@`.
    pub twitter_username: Option<TwitterHandle>,
    /// Instagram username.
    pub instagram_username: Option<InstagramHandle>,
    /// Up to 2,000 characters.
    pub notes: Option<String>,
    /// IANA time zone name, canonical.
    pub timezone: Option<String>,
    /// Values templates fill in, by field name.
    pub custom_fields: BTreeMap<String, String>,
}

/// Body of `POST /api/user/communication-targets` (and each item of a batch).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Ada Lovelace", "email": "Ada@Example.com", "twitter_username": "@ada"}))]
pub struct CreateTargetRequest {
    /// 1-200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Valid email; stored lower-case; unique among the user's active targets.
    #[serde(default)]
    #[schema(format = Email)]
    pub email: Option<String>,
    /// X handle, `@` optional.
    #[serde(default)]
    #[schema(pattern = "^@?[A-Za-z0-9_]{1,15}$")]
    pub twitter_username: Option<String>,
    /// Instagram username.
    #[serde(default)]
    #[schema(pattern = "^@?[A-Za-z0-9._]{1,30}$")]
    pub instagram_username: Option<String>,
    /// Free text, up to 2,000 characters.
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub notes: Option<String>,
    /// The person's time zone, an IANA name (`Europe/Paris`): sends wait for the run's window in
    /// this zone.
    #[serde(default)]
    #[schema(example = "Europe/Paris")]
    pub timezone: Option<String>,
    /// Values for templates' `{{field}}` placeholders: up to 50, names `[a-z][a-z0-9_]{0,39}`,
    /// values one line of at most 500 characters.
    #[serde(default)]
    pub custom_fields: Option<BTreeMap<String, String>>,
}

/// Body of `PATCH /api/user/communication-targets/{target_id}`: absent fields stay, `null`
/// clears an optional field.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTargetRequest {
    /// New name.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    /// New email, or `null` to remove it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    /// New X handle, or `null`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub twitter_username: Option<Option<String>>,
    /// New Instagram username, or `null`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub instagram_username: Option<Option<String>>,
    /// New notes, or `null`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub notes: Option<Option<String>>,
    /// New time zone, or `null`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub timezone: Option<Option<String>>,
    /// The custom fields, replaced whole; `null` removes them all.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub custom_fields: Option<Option<BTreeMap<String, String>>>,
}

/// Tells a field sent as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

fn field(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

impl CreateTargetRequest {
    /// Validates every field; all problems are reported at once, each field path under `prefix`.
    pub fn parse(self, prefix: &str) -> Result<TargetDraft, Vec<FieldError>> {
        let mut problems = Vec::new();
        let mut check = |name: &str, result: Result<(), &'static str>| {
            if let Err(problem) = result {
                problems.push(FieldError::new(field(prefix, name), problem));
            }
        };
        let name = self.name.trim().to_owned();
        check(
            "name",
            if (1..=MAX_NAME_CHARS).contains(&name.chars().count()) {
                Ok(())
            } else {
                Err("must be 1-200 characters")
            },
        );
        check(
            "name",
            plain_text::check(&name, plain_text::Lines::Single).map_or(Ok(()), Err),
        );
        let email = non_empty(self.email).map(|v| Email::parse(&v));
        let twitter = non_empty(self.twitter_username).map(|v| TwitterHandle::parse(&v));
        let instagram = non_empty(self.instagram_username).map(|v| InstagramHandle::parse(&v));
        let notes = non_empty(self.notes);
        if let Some(Err(problem)) = &email {
            check("email", Err(problem));
        }
        if let Some(Err(problem)) = &twitter {
            check("twitter_username", Err(problem));
        }
        if let Some(Err(problem)) = &instagram {
            check("instagram_username", Err(problem));
        }
        if let Some(problem) = notes
            .as_deref()
            .and_then(|n| plain_text::check(n, plain_text::Lines::Multi))
        {
            check("notes", Err(problem));
        }
        if notes
            .as_ref()
            .is_some_and(|n| n.chars().count() > MAX_NOTES_CHARS)
        {
            check("notes", Err("must be at most 2,000 characters"));
        }
        let timezone = non_empty(self.timezone).map(|zone| super::personal::time_zone(&zone));
        if let Some(None) = &timezone {
            check("timezone", Err("is not an IANA time zone name"));
        }
        let custom_fields = self.custom_fields.unwrap_or_default();
        for (suffix, problem) in super::personal::custom_field_problems(&custom_fields) {
            check(&format!("custom_fields{suffix}"), Err(problem));
        }
        if email.is_none() && twitter.is_none() && instagram.is_none() {
            check(
                "email",
                Err("at least one of email, twitter_username, instagram_username is required"),
            );
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(TargetDraft {
            name,
            email: email.and_then(Result::ok),
            twitter_username: twitter.and_then(Result::ok),
            instagram_username: instagram.and_then(Result::ok),
            notes,
            timezone: timezone.flatten(),
            custom_fields,
        })
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

impl UpdateTargetRequest {
    /// Applies the change to a stored target's fields and validates the result.
    pub fn apply(self, current: &TargetView) -> Result<TargetDraft, Vec<FieldError>> {
        let name_removed = matches!(self.name, Some(None));
        let pick = |change: Option<Option<String>>, stored: &Option<String>| match change {
            Some(value) => value,
            None => stored.clone(),
        };
        let merged = CreateTargetRequest {
            name: pick(self.name, &Some(current.name.clone())).unwrap_or_default(),
            email: pick(self.email, &current.email),
            twitter_username: pick(self.twitter_username, &current.twitter_username),
            instagram_username: pick(self.instagram_username, &current.instagram_username),
            notes: pick(self.notes, &current.notes),
            timezone: pick(self.timezone, &current.timezone),
            custom_fields: match self.custom_fields {
                Some(fields) => fields,
                None => Some(current.custom_fields.clone()),
            },
        };
        match merged.parse("") {
            Ok(draft) => Ok(draft),
            Err(mut problems) => {
                if name_removed {
                    for problem in problems.iter_mut().filter(|p| p.field == "name") {
                        problem.problem = "cannot be removed".into();
                    }
                }
                Err(problems)
            }
        }
    }
}

/// A target as every response shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TargetView {
    /// Server-made UUID (v7: sorts by creation time).
    #[schema(value_type = String)]
    pub id: crate::ids::TargetId,
    /// The person's name.
    pub name: String,
    /// Email, lower-case.
    pub email: Option<String>,
    /// X handle without `@`.
    pub twitter_username: Option<String>,
    /// Instagram username.
    pub instagram_username: Option<String>,
    /// Free-text notes about the person.
    pub notes: Option<String>,
    /// The person's time zone (IANA), when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Values templates fill in, when set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_fields: BTreeMap<String, String>,
    /// False once deleted.
    pub active: bool,
    /// When the person last replied to an outreach message (RFC 3339), found in the sender's
    /// mailbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_replied_at: Option<String>,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
    /// When it last changed (RFC 3339, UTC).
    pub updated_at: String,
}

/// Query of `GET /api/user/communication-targets`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TargetListQuery {
    /// Page size, 1-100 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<crate::paging::PageLimit>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of targets, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetPage {
    /// The targets of this page, newest first.
    pub targets: Vec<TargetView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Body of `POST /api/user/communication-targets/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchCreateRequest {
    /// Up to 100 targets (more: 413, nothing created).
    #[schema(value_type = Vec<CreateTargetRequest>)]
    pub targets: Vec<serde_json::Value>,
}

/// Outcome of one batch item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchItemStatus {
    /// Stored; `id` is the new target.
    Created,
    /// An active target (or an earlier item of the batch) has this email; `existing_id` is it.
    Duplicate,
    /// Not stored; `errors` says why.
    Invalid,
    /// Not stored: a dependency failed after earlier items were stored; send this item again
    /// (the answer carries `Retry-After`).
    Unavailable,
}

/// Result of one batch item, in request order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchItemResult {
    /// Position in the request.
    pub index: usize,
    /// What became of the item: created, duplicate, invalid or unavailable.
    pub status: BatchItemStatus,
    /// The new target's id (created).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The target that already has this email (duplicate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_id: Option<String>,
    /// What is wrong (invalid).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// How many items ended each way.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct BatchCounts {
    /// Items stored as new targets.
    pub created: usize,
    /// Items not stored because an active target (or an earlier item) has their email.
    pub duplicate: usize,
    /// Items not stored because a field is invalid.
    pub invalid: usize,
    /// Not stored because a dependency failed part-way (send them again).
    #[serde(default)]
    pub unavailable: usize,
}

/// Answer of the batch create.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchCreateResponse {
    /// One result per item, in request order.
    pub results: Vec<BatchItemResult>,
    /// How many items ended each way.
    pub counts: BatchCounts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation() {
        let ids: Vec<TargetId> = (0..100).map(|_| TargetId::new()).collect();
        let mut sorted = ids.clone();
        sorted.sort_by_key(ToString::to_string);
        assert_eq!(ids, sorted);
    }
}
