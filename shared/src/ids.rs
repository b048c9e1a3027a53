//! The identities every layer passes around, at the bottom of the crate (they import nothing
//! of ours): the user, an account, a target, a run. Each is parsed once, where it enters
//! (token, path, body, stored item), and travels typed from there.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The one user identity: the verified token's `sub`. It is (de)serialized only in our own
/// stored items and queue messages, where nothing but verified `sub`s is ever written; no
/// request shape has a field of this type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// A user id read back from our own storage or queue, where only verified `sub`s are written.
    pub fn from_verified_sub(sub: String) -> Self {
        Self(sub)
    }

    /// The id as text (the DynamoDB partition key).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client-chosen account id: 1-64 of `[A-Za-z0-9_.-]`, unique per user. Checked wherever it
/// is read (a path, a body, a stored item): a value that is not one never becomes one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

impl TryFrom<String> for AccountId {
    type Error = &'static str;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<AccountId> for String {
    fn from(id: AccountId) -> Self {
        id.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AccountId {
    /// Parses an account id, or says what is wrong with it.
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        if value.is_empty() || value.len() > 64 {
            return Err("must be 1-64 characters");
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err("may contain only letters, digits, '_', '.' and '-'");
        }
        Ok(Self(value.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A server-made target id: a UUID v7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId(Uuid);

impl TargetId {
    /// A new id, later than every id made before it by this process.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The id of a target moved in from another store: a UUID v7 whose time is the record's
    /// creation time and whose other bits come from its old id, so the same record always gets
    /// the same id (a second migration run finds it) and migrated targets keep their order.
    pub fn derived(created_at_millis: u64, old_id: &Uuid) -> Self {
        let mut random = [0u8; 10];
        random.copy_from_slice(&old_id.as_bytes()[6..16]);
        Self(uuid::Builder::from_unix_timestamp_millis(created_at_millis, &random).into_uuid())
    }

    /// Parses an id from a path or a cursor.
    pub fn parse(value: &str) -> Option<Self> {
        Uuid::try_parse(value).ok().map(Self)
    }
}

impl Serialize for TargetId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TargetId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom("not a target id"))
    }
}

impl Default for TargetId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for TargetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// An id the service makes: a UUID v7 (later than every id made before it by this process),
/// stored and sent as its hyphenated text; a path that is not a UUID names nothing (404).
macro_rules! service_made_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new id, later than every id made before it by this process.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Parses an id from a path, a stored item or a queued message.
            pub fn parse(value: &str) -> Option<Self> {
                Uuid::try_parse(value).ok().map(Self)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

service_made_id!(
    /// A run id.
    RunId
);
service_made_id!(
    /// A webhook endpoint's id.
    WebhookId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_parse_only_uuids_and_sort_by_creation() {
        let first = RunId::new();
        let second = RunId::new();
        assert!(first < second);
        assert_eq!(RunId::parse(&first.to_string()), Some(first));
        assert_eq!(RunId::parse("not-a-run"), None);
        let json = serde_json::to_string(&first).unwrap();
        assert_eq!(json, format!("\"{first}\""));
        assert_eq!(serde_json::from_str::<RunId>(&json).unwrap(), first);
        assert!(serde_json::from_str::<RunId>("\"R#1\"").is_err());
    }
}
