//! `Idempotency-Key` records for initiate, as a small state machine in DynamoDB.
//!
//! A request claims its key with a conditional write (`in_progress`, a hash of the body, the run
//! id it will create and a lock deadline). A finished request stores its answer (`completed`)
//! and later requests with the key and body get that answer back; another body is a 409. A
//! request that failed with a dependency error releases the lock but keeps the run id, so a
//! retry finishes the same run. A client error forgets the key, so the client can fix the body.

use aws_lc_rs::digest::{SHA256, digest};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::model::InitiateResponse;
use crate::aws::dependency_error;
use crate::error::Error;
use crate::ids::{RunId, UserId};
use crate::storage::{conditional, number as n, read_item, text as s, user_key};

const KEY_PREFIX: &str = "I#";
/// How long a key is remembered (also the table's TTL attribute `expires_at`).
pub const KEY_LIFETIME_SECONDS: i64 = 24 * 3600;
/// How long a request holds its key before another request may take it over.
pub const LOCK_SECONDS: i64 = 60;
const MAX_KEY_LEN: usize = 255;

/// Where a key's request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KeyState {
    /// A request holds the key (until `locked_until`) and may be creating its run.
    InProgress,
    /// The run was started; the stored answer is replayed.
    Completed,
}

impl KeyState {
    fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
        }
    }
}

/// An idempotency record as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdempotencyRecord {
    user_id: UserId,
    sk: String,
    body_hash: String,
    state: KeyState,
    run_id: RunId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response: Option<String>,
    locked_until: i64,
    expires_at: i64,
}

/// What a request may do with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Go ahead and create (or finish) this run.
    Proceed {
        /// The run id to use.
        run_id: RunId,
        /// Whether an earlier attempt with this key was interrupted.
        resumed: bool,
    },
    /// An earlier request with this key and body finished: answer the same.
    Replay(InitiateResponse),
}

/// An `Idempotency-Key`: 1-255 visible ASCII characters, checked when it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Checks a header value.
    pub fn parse(value: &str) -> Result<Self, Error> {
        if value.is_empty()
            || value.len() > MAX_KEY_LEN
            || !value.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Error::BadHeader {
                field: "Idempotency-Key",
                problem: "must be 1-255 visible ASCII characters",
            });
        }
        Ok(Self(value.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Hash of a request body in canonical form (object keys sorted), so key order and whitespace
/// do not make two equal bodies differ.
pub fn body_hash(body: &serde_json::Value) -> String {
    let canonical = serde_json::to_vec(body).unwrap_or_default();
    digest(&SHA256, &canonical)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Idempotency records, kept in the runs table.
#[derive(Clone)]
pub struct IdempotencyStore {
    dynamodb: Client,
    table: String,
    /// What the locks' times read (the outreach service's clock).
    clock: crate::clock::Clock,
}

impl IdempotencyStore {
    /// A store over the runs table.
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

    fn key(user: &UserId, key: &str) -> std::collections::HashMap<String, AttributeValue> {
        user_key(user.as_str(), "sk", &format!("{KEY_PREFIX}{key}"))
    }

    async fn read(&self, user: &UserId, key: &str) -> Result<Option<IdempotencyRecord>, Error> {
        let item = read_item(&self.dynamodb, &self.table, Self::key(user, key)).await?;
        item.map(crate::storage::decode_item).transpose()
    }

    /// Claims `key` for a request with this body hash.
    pub async fn claim(&self, user: &UserId, key: &str, hash: &str) -> Result<Claim, Error> {
        for _ in 0..3 {
            let now = self.clock.epoch_seconds();
            match self.read(user, key).await? {
                Some(record) if record.expires_at > now => {
                    if record.body_hash != hash {
                        return Err(Error::Conflict {
                            code: "idempotency_key_reused",
                            message: "This Idempotency-Key was used with another body.".into(),
                            existing_id: Some(record.run_id.to_string()),
                        });
                    }
                    if record.state == KeyState::Completed {
                        let response = record
                            .response
                            .as_deref()
                            .ok_or_else(|| Error::internal("completed key without a response"))?;
                        return serde_json::from_str(response)
                            .map(Claim::Replay)
                            .map_err(Error::internal);
                    }
                    if record.locked_until > now {
                        return Err(in_progress(record.locked_until, now));
                    }
                    if self.take_over(user, key, record.locked_until).await? {
                        return Ok(Claim::Proceed {
                            run_id: record.run_id,
                            resumed: true,
                        });
                    }
                }
                _ => {
                    let run_id = RunId::new();
                    if self.create(user, key, hash, &run_id, now).await? {
                        return Ok(Claim::Proceed {
                            run_id,
                            resumed: false,
                        });
                    }
                }
            }
        }
        Err(in_progress(
            self.clock.epoch_seconds().saturating_add(LOCK_SECONDS),
            self.clock.epoch_seconds(),
        ))
    }

    async fn create(
        &self,
        user: &UserId,
        key: &str,
        hash: &str,
        run_id: &RunId,
        now: i64,
    ) -> Result<bool, Error> {
        let record = IdempotencyRecord {
            user_id: user.clone(),
            sk: format!("{KEY_PREFIX}{key}"),
            body_hash: hash.to_owned(),
            state: KeyState::InProgress,
            run_id: *run_id,
            response: None,
            locked_until: now.saturating_add(LOCK_SECONDS),
            expires_at: now + KEY_LIFETIME_SECONDS,
        };
        let item = crate::storage::encode_item(&record)?;
        let result = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk) OR expires_at < :now")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        conditional(result)
    }

    async fn take_over(&self, user: &UserId, key: &str, seen_lock: i64) -> Result<bool, Error> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(user, key)))
            .update_expression("SET locked_until = :lock")
            .condition_expression("locked_until = :seen AND #state = :in_progress")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(
                ":lock",
                n(self.clock.epoch_seconds().saturating_add(LOCK_SECONDS)),
            )
            .expression_attribute_values(":seen", n(seen_lock))
            .expression_attribute_values(":in_progress", s(KeyState::InProgress.as_str()))
            .send()
            .await;
        conditional(result)
    }

    /// Stores the answer of a finished request.
    pub async fn complete(
        &self,
        user: &UserId,
        key: &str,
        response: &InitiateResponse,
    ) -> Result<(), Error> {
        let response = serde_json::to_string(response).map_err(Error::internal)?;
        self.dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(user, key)))
            .update_expression(
                "SET #state = :completed, #response = :response, locked_until = :zero",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#response", "response")
            .expression_attribute_values(":completed", s(KeyState::Completed.as_str()))
            .expression_attribute_values(":response", s(response))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await
            .map_err(dependency_error)?;
        Ok(())
    }

    /// Lets a retry resume at once after a dependency failure (the run id is kept).
    pub async fn release(&self, user: &UserId, key: &str) -> Result<(), Error> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(user, key)))
            .update_expression("SET locked_until = :zero")
            .condition_expression("#state = :in_progress")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":in_progress", s(KeyState::InProgress.as_str()))
            .send()
            .await;
        conditional(result).map(|_| ())
    }

    /// Forgets a key whose request was refused, so a corrected request may use it.
    pub async fn forget(&self, user: &UserId, key: &str) -> Result<(), Error> {
        let result = self
            .dynamodb
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(user, key)))
            .condition_expression("#state = :in_progress")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":in_progress", s(KeyState::InProgress.as_str()))
            .send()
            .await;
        conditional(result).map(|_| ())
    }
}

/// 409 with `Retry-After`: the seconds until the holder's lock lapses (a holder that failed
/// without releasing it, e.g. with DynamoDB down, is taken over then).
fn in_progress(locked_until: i64, now: i64) -> Error {
    Error::Busy {
        code: "idempotency_key_in_progress",
        message: "A request with this Idempotency-Key is still being processed; retry shortly."
            .into(),
        retry_after: u32::try_from(locked_until.saturating_sub(now).clamp(1, LOCK_SECONDS))
            .unwrap_or(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry_after(error: Error) -> u32 {
        match error {
            Error::Busy { retry_after, .. } => retry_after,
            other => panic!("not a 409: {other:?}"),
        }
    }

    #[test]
    fn a_stored_lock_of_any_value_gives_a_sane_retry_after_never_a_crash() {
        let now = 1_800_000_000;
        assert_eq!(retry_after(in_progress(now + 30, now)), 30);
        assert_eq!(retry_after(in_progress(now - 5, now)), 1, "a lapsed lock");
        assert_eq!(retry_after(in_progress(i64::MAX, now)), 60);
        assert_eq!(retry_after(in_progress(i64::MIN, now)), 1);
        assert_eq!(retry_after(in_progress(0, i64::MIN)), 60);
    }
}
