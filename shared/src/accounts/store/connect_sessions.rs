//! Connect sessions as stored: one item each in the accounts table, under its own partition
//! (`connect-session#<id>`, sort key `#session`) that no user's partition can reach. The state's
//! secret is kept only as its SHA-256, the PKCE verifier only sealed; the item expires with the
//! table's TTL attribute (`expires_at_epoch`), and every read checks the expiry itself (TTL
//! deletes late). A conditional write moves it from `pending` to `exchanging` once: the callback
//! that wins it is the only one that may use the code.

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::AccountStore;
use crate::aws::dependency_error;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::storage::{conditional, decode_item, encode_item, number, read_item, text, user_key};

/// Sort key of a connect session's item.
const SESSION_ITEM: &str = "#session";

/// Where a connect session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectSessionStatus {
    /// Waiting for the browser to come back from the provider.
    Pending,
    /// A callback took the session and is exchanging its code.
    Exchanging,
    /// The account is connected.
    Connected,
    /// The provider or the exchange refused; `error` says why.
    Failed,
}

/// A connect session as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectSessionItem {
    /// Partition key: `connect-session#<session_id>`.
    pub user_id: String,
    /// Sort key: `#session`.
    pub account_id: String,
    /// The session's id (shown to the frontend).
    pub session_id: String,
    /// The user who started it: the only one it connects an account for.
    pub owner_user_id: String,
    /// The provider's name (`x`, `instagram`, `google`, `microsoft`).
    pub provider: String,
    /// The account to connect or reconnect; derived from the identity when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_account_id: Option<String>,
    /// The label for a new account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Where the browser goes afterwards (an allowed frontend origin).
    pub return_url: String,
    /// SHA-256 (hex) of the state's secret half; the secret itself is never stored.
    pub state_hash: String,
    /// The PKCE verifier, sealed in an envelope bound to this session.
    pub verifier: Envelope,
    /// Where the session stands.
    pub status: ConnectSessionStatus,
    /// The connected account's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_account_id: Option<String>,
    /// Why it failed (a stable code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it expires (epoch seconds; the table's TTL attribute).
    pub expires_at_epoch: i64,
    /// When it expires (RFC 3339), as answered. Not named `expires_at`: the token keeper reads
    /// items of a provider with that attribute as accounts.
    pub session_expires_at: String,
}

impl ConnectSessionItem {
    /// The partition key of session `session_id`.
    pub fn partition(session_id: &str) -> String {
        format!("connect-session#{session_id}")
    }

    fn key(session_id: &str) -> std::collections::HashMap<String, AttributeValue> {
        user_key(&Self::partition(session_id), "account_id", SESSION_ITEM)
    }
}

impl AccountStore {
    /// Stores a new session (never over an existing one).
    pub async fn put_connect_session(&self, session: &ConnectSessionItem) -> Result<(), Error> {
        let written = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode_item(session)?))
            .condition_expression("attribute_not_exists(user_id)")
            .send()
            .await;
        match conditional(written)? {
            true => Ok(()),
            false => Err(Error::internal("a connect session id was drawn twice")),
        }
    }

    /// One session, read consistently.
    pub async fn connect_session(
        &self,
        session_id: &str,
    ) -> Result<Option<ConnectSessionItem>, Error> {
        read_item(
            &self.dynamodb,
            &self.table,
            ConnectSessionItem::key(session_id),
        )
        .await?
        .map(decode_item)
        .transpose()
    }

    /// Takes a pending, unexpired session whose state hashes to `state_hash` for its callback;
    /// `false` when it is used, expired or the state is not its own.
    pub async fn take_connect_session(
        &self,
        session_id: &str,
        state_hash: &str,
        now: i64,
    ) -> Result<bool, Error> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(ConnectSessionItem::key(session_id)))
            .update_expression("SET #status = :exchanging")
            .condition_expression(
                "#status = :pending AND state_hash = :hash AND expires_at_epoch > :now",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":exchanging", text("exchanging"))
            .expression_attribute_values(":pending", text("pending"))
            .expression_attribute_values(":hash", text(state_hash))
            .expression_attribute_values(":now", number(now))
            .send()
            .await;
        conditional(result)
    }

    /// Records how a taken session ended: the account connected, or the error.
    pub async fn finish_connect_session(
        &self,
        session_id: &str,
        outcome: Result<&str, &str>,
    ) -> Result<(), Error> {
        let (status, field, value) = match outcome {
            Ok(account_id) => ("connected", "result_account_id", account_id),
            Err(code) => ("failed", "error", code),
        };
        self.dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(ConnectSessionItem::key(session_id)))
            .update_expression("SET #status = :status, #field = :value")
            .condition_expression("#status = :exchanging")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#field", field)
            .expression_attribute_values(":status", text(status))
            .expression_attribute_values(":value", text(value))
            .expression_attribute_values(":exchanging", text("exchanging"))
            .send()
            .await
            .map_err(dependency_error)?;
        Ok(())
    }
}
