//! Connecting an account by signing in at its provider (hosted OAuth), and checking a
//! connection: use cases of the accounts service.
//!
//! A session binds a single-use `state` to the user, the provider, the account and a PKCE
//! verifier, for 10 minutes. The browser goes to the provider's consent page and comes back to
//! the public callback with a code; the callback takes the session (a conditional write, so a
//! state works once), exchanges the code server to server, asks the provider who signed in,
//! seals the tokens and writes the account through the one write path of accounts. Tokens never
//! reach a URL, a response or a log line. docs/security.md, "Connecting accounts".

pub mod settings;

pub use settings::{CALLBACK_PATH, ConnectSettings};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::model::{AccountId, UpsertAccountRequest};
use super::provider::Provider;
use super::refresh::TokenFailure;
use super::service::{AccountService, SaveOptions, parse_configuration};
use super::store::{
    AccountItem, ConnectSessionItem, ConnectSessionStatus, REAUTH_REQUIRED, concurrent_change,
};
use crate::clock::epoch_seconds;
use crate::envelope::EncryptionContext;
use crate::error::Error;
use crate::ids::UserId;
use crate::platforms::connect::{IdentityFailure, ProviderIdentity};
use crate::platforms::oauth::RefreshFailure;

/// How long a connect session (and so its authorize URL) can be used.
pub const SESSION_SECONDS: i64 = 10 * 60;

/// The provider's `error` values passed on to the frontend (RFC 6749 section 4.1.2.1); any
/// other value becomes `provider_error`, so nothing the provider sent is echoed.
const PROVIDER_ERRORS: &[&str] = &[
    "access_denied",
    "invalid_request",
    "unauthorized_client",
    "unsupported_response_type",
    "invalid_scope",
    "server_error",
    "temporarily_unavailable",
];

/// Body of `POST /api/user/integrations/connect-sessions`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectSessionRequest {
    /// `x`, `instagram`, `google` or `microsoft`.
    pub provider: String,
    /// The account to connect or reconnect; without it, derived from who signs in
    /// (e.g. `x-ada`, `google-ada-example-com`).
    #[serde(default)]
    pub account_id: Option<String>,
    /// A label for a new account.
    #[serde(default)]
    pub label: Option<String>,
    /// Where the browser is sent afterwards: on one of the frontend's allowed origins.
    pub return_url: String,
}

/// Answer of `POST /api/user/integrations/connect-sessions` (201).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectSessionCreated {
    /// The session's id, for polling its status.
    pub session_id: String,
    /// The provider.
    pub provider: String,
    /// The provider's consent page, to open in the browser.
    pub authorize_url: String,
    /// When the session stops working (RFC 3339; 10 minutes).
    pub expires_at: String,
}

/// Answer of `GET /api/user/integrations/connect-sessions/{session_id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectSessionView {
    /// `pending`, `connected`, `failed` or `expired`.
    pub status: &'static str,
    /// The connected account, once `connected`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Why it failed, once `failed` (`access_denied`, `exchange_failed`,
    /// `account_identity_mismatch`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Query of the OAuth callback, as the provider sends the browser back.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
pub struct CallbackQuery {
    /// The authorization code.
    #[serde(default)]
    pub code: Option<String>,
    /// The session's state.
    #[serde(default)]
    pub state: Option<String>,
    /// The provider's error (e.g. `access_denied`).
    #[serde(default)]
    pub error: Option<String>,
}

/// Where the callback sends the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// 303 to the session's return URL, with `connect=success|error` and more.
    Redirect(String),
    /// The state is unknown, used or expired: a 400 page, no redirect, nothing stored.
    InvalidState,
}

/// Answer of `POST /api/user/integrations/accounts/{account_id}/test`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectionTest {
    /// The account.
    pub account_id: String,
    /// Whether it works.
    pub connected: bool,
    /// Why not, when it does not (`reauth_required`, `sender_pending_verification`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// When it was checked (RFC 3339).
    pub checked_at: String,
    /// Who the provider says the account is (`{id, name}`; for SES senders `{from_address,
    /// verified}`); `null` when the provider could not say.
    #[schema(value_type = Option<Object>)]
    pub identity: Option<Value>,
}

/// A URL-safe random token; a random source that fails is an internal error, never a panic.
fn random_token(bytes: usize) -> Result<String, Error> {
    let mut buffer = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buffer)
        .map_err(|_| Error::internal("the system's random source failed"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buffer))
}

fn sha256_hex(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn rfc3339(epoch: i64) -> Result<String, Error> {
    time::OffsetDateTime::from_unix_timestamp(epoch)
        .map_err(Error::internal)?
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(Error::internal)
}

/// The account id a connect derives from who signed in: `{provider}-{name}`, lower case, every
/// character but `[a-z0-9_]` a `-` (`google-ada-example-com`), at most 64.
pub fn derived_account_id(provider: Provider, name: &str) -> String {
    let slug: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut id = format!("{}-{slug}", provider.name());
    id.truncate(64);
    id
}

/// `return_url` with the outcome's parameters added.
fn with_outcome(return_url: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(return_url) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(pairs);
            url.into()
        }
        Err(_) => return_url.to_owned(),
    }
}

impl AccountService {
    fn session_context<'a>(&'a self, owner: &'a str, partition: &'a str) -> EncryptionContext<'a> {
        EncryptionContext {
            table: self.store.table(),
            user_id: owner,
            account_id: partition,
        }
    }

    /// Starts connecting an account at a provider: a session for 10 minutes, and the
    /// provider's consent page for the browser.
    pub async fn start_connect(
        &self,
        user: &UserId,
        request: ConnectSessionRequest,
    ) -> Result<ConnectSessionCreated, Error> {
        let mut problems = Vec::new();
        let provider = Provider::parse(&request.provider).filter(|provider| {
            // Its old name is accepted on stored accounts, not for new connections.
            provider.name() == request.provider
        });
        if provider.is_none() {
            problems.push(crate::error::FieldError::new(
                "provider",
                "must be one of x, instagram, google, microsoft",
            ));
        }
        if let Some(id) = &request.account_id
            && AccountId::try_from(id.clone()).is_err()
        {
            problems.push(crate::error::FieldError::new(
                "account_id",
                "must be 1-64 of A-Z a-z 0-9 _ . -",
            ));
        }
        if let Some(label) = &request.label
            && (label.chars().count() > 200 || label.chars().any(char::is_control))
        {
            problems.push(crate::error::FieldError::new(
                "label",
                "must be at most 200 characters, without control characters",
            ));
        }
        if !self.connect.allows(&request.return_url) {
            problems.push(crate::error::FieldError::new(
                "return_url",
                "must be an http(s) URL on one of the frontend's allowed origins",
            ));
        }
        let Some(provider) = provider.filter(|_| problems.is_empty()) else {
            return Err(Error::Validation(problems));
        };
        let client = self.tokens.client_of(provider).await?;
        let session_id = random_token(16)?;
        let secret = random_token(32)?;
        let verifier = random_token(48)?;
        let state = format!("{session_id}.{secret}");
        let partition = ConnectSessionItem::partition(&session_id);
        let sealed = self
            .cipher
            .seal(
                self.session_context(user.as_str(), &partition),
                verifier.as_bytes(),
            )
            .await?;
        let expires_at_epoch = epoch_seconds().saturating_add(SESSION_SECONDS);
        let expires_at = rfc3339(expires_at_epoch)?;
        let session = ConnectSessionItem {
            user_id: partition.clone(),
            account_id: "#session".into(),
            session_id: session_id.clone(),
            owner_user_id: user.as_str().to_owned(),
            provider: provider.name().to_owned(),
            requested_account_id: request.account_id,
            label: request.label,
            return_url: request.return_url,
            state_hash: sha256_hex(&secret),
            verifier: sealed,
            status: ConnectSessionStatus::Pending,
            result_account_id: None,
            error: None,
            expires_at_epoch,
            session_expires_at: expires_at.clone(),
        };
        self.store.put_connect_session(&session).await?;
        tracing::info!(user_id = %user, provider = provider.name(), "connect session started");
        Ok(ConnectSessionCreated {
            authorize_url: self.tokens.authorize_url(
                provider,
                &client,
                &self.connect.callback_url,
                &state,
                &verifier,
            ),
            session_id,
            provider: provider.name().to_owned(),
            expires_at,
        })
    }

    /// Where a session of the user stands; 404 for another user's or an unknown one.
    pub async fn connect_status(
        &self,
        user: &UserId,
        session_id: &str,
    ) -> Result<ConnectSessionView, Error> {
        let session = match self.store.connect_session(session_id).await? {
            Some(session) if session.owner_user_id == user.as_str() => session,
            _ => return Err(Error::NotFound),
        };
        let expired = session.expires_at_epoch <= epoch_seconds();
        let status = match session.status {
            ConnectSessionStatus::Connected => "connected",
            ConnectSessionStatus::Failed => "failed",
            ConnectSessionStatus::Pending if expired => "expired",
            // A callback that stopped half-way never finishes: the session just expires.
            ConnectSessionStatus::Exchanging if expired => "expired",
            ConnectSessionStatus::Pending | ConnectSessionStatus::Exchanging => "pending",
        };
        Ok(ConnectSessionView {
            status,
            account_id: session.result_account_id,
            error: session.error,
        })
    }

    /// The OAuth callback: takes the session its state names (once), and connects the account
    /// or says why not. Only the state ties this request to a user.
    pub async fn complete_connect(&self, query: CallbackQuery) -> Result<CallbackOutcome, Error> {
        let Some((session_id, secret)) = query
            .state
            .as_deref()
            .and_then(|state| state.split_once('.'))
            .filter(|(id, secret)| {
                (1..=64).contains(&id.len())
                    && (1..=128).contains(&secret.len())
                    && id
                        .chars()
                        .chain(secret.chars())
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
        else {
            return Ok(CallbackOutcome::InvalidState);
        };
        let Some(session) = self.store.connect_session(session_id).await? else {
            return Ok(CallbackOutcome::InvalidState);
        };
        if !self
            .store
            .take_connect_session(session_id, &sha256_hex(secret), epoch_seconds())
            .await?
        {
            return Ok(CallbackOutcome::InvalidState);
        }
        let outcome = self.connect_taken(&session, &query).await;
        let finished = match &outcome {
            Ok(account_id) => Ok(account_id.as_str()),
            Err(code) => Err(code.as_str()),
        };
        // Bookkeeping for popups that poll: the outcome itself is settled (the account is
        // written, or nothing is), so a failure here still sends the browser on; the session
        // then reads `pending` until it expires.
        if let Err(error) = self
            .store
            .finish_connect_session(session_id, finished)
            .await
        {
            tracing::error!(error = %crate::error::ErrorChain(&error), "a connect session's outcome could not be recorded");
        }
        let owner = &session.owner_user_id;
        let url = match &outcome {
            Ok(account_id) => {
                tracing::info!(user_id = %owner, account_id = %account_id, provider = %session.provider, "account connected at its provider");
                with_outcome(
                    &session.return_url,
                    &[("connect", "success"), ("account_id", account_id)],
                )
            }
            Err(code) => {
                tracing::warn!(user_id = %owner, provider = %session.provider, error_code = %code, "connecting an account failed");
                with_outcome(
                    &session.return_url,
                    &[("connect", "error"), ("error", code)],
                )
            }
        };
        Ok(CallbackOutcome::Redirect(url))
    }

    /// Everything after the session was taken; `Err` is the error code for the frontend.
    async fn connect_taken(
        &self,
        session: &ConnectSessionItem,
        query: &CallbackQuery,
    ) -> Result<String, String> {
        if let Some(error) = &query.error {
            let known = PROVIDER_ERRORS
                .iter()
                .find(|known| **known == error.as_str());
            return Err(known.copied().unwrap_or("provider_error").to_owned());
        }
        let exchange_failed = || "exchange_failed".to_owned();
        let unavailable = |error: Error| {
            tracing::error!(error = %crate::error::ErrorChain(&error), "a connect could not be completed");
            "temporarily_unavailable".to_owned()
        };
        let code = query.code.as_deref().ok_or_else(exchange_failed)?;
        let provider = Provider::parse(&session.provider).ok_or_else(exchange_failed)?;
        let verifier = self
            .cipher
            .open(
                self.session_context(&session.owner_user_id, &session.user_id),
                &session.verifier,
            )
            .await
            .map_err(unavailable)?;
        let verifier = std::str::from_utf8(&verifier).map_err(|_| exchange_failed())?;
        let client = self
            .tokens
            .client_of(provider)
            .await
            .map_err(|_| exchange_failed())?;
        let tokens = self
            .tokens
            .exchange_code(provider, &client, code, &self.connect.callback_url, verifier)
            .await
            .map_err(|failure| {
                tracing::warn!(provider = provider.name(), failure = ?failure, "the provider refused the code exchange");
                exchange_failed()
            })?;
        let identity = self
            .tokens
            .identify(provider, &tokens.access_token)
            .await
            .map_err(|_| exchange_failed())?;
        let user = UserId::from_verified_sub(session.owner_user_id.clone());
        let account_id = session
            .requested_account_id
            .clone()
            .unwrap_or_else(|| derived_account_id(provider, &identity.name));
        let account_id = AccountId::try_from(account_id).map_err(|_| exchange_failed())?;
        let existing = self
            .store
            .get(&user, &account_id)
            .await
            .map_err(unavailable)?;
        let mut configuration = match &existing {
            Some(old) => {
                if Provider::of(old) != Some(provider)
                    || stored_identity(old, provider).as_deref() != Some(identity.id.as_str())
                {
                    return Err("account_identity_mismatch".to_owned());
                }
                // Kept as stored: masked secrets stay sealed as they are.
                parse_configuration(&old.configuration).map_err(unavailable)?
            }
            None => Map::new(),
        };
        configuration.extend(identity.fields.clone());
        configuration.insert("access_token".into(), json!(tokens.access_token));
        match &tokens.refresh_token {
            Some(refresh_token) => {
                configuration.insert("refresh_token".into(), json!(refresh_token));
            }
            // A grant without a refresh token must not keep the old grant's.
            None => {
                configuration.remove("refresh_token");
            }
        }
        let now = epoch_seconds();
        let expires_at = tokens
            .expires_in
            .and_then(|seconds| now.checked_add(seconds))
            .map(rfc3339)
            .transpose()
            .map_err(unavailable)?;
        let request = UpsertAccountRequest {
            account_id: account_id.to_string(),
            account_type: if provider.is_mailbox() {
                "email"
            } else {
                "social"
            }
            .to_owned(),
            provider: Some(provider.name().to_owned()),
            label: session
                .label
                .clone()
                .or_else(|| existing.as_ref().and_then(|old| old.label.clone())),
            configuration: Some(configuration),
            connected: Some(true),
            status_reason: None,
            expires_at,
            secret_fields: None,
        };
        let options = SaveOptions {
            expected_version: Some(existing.as_ref().map(|old| old.version)),
            new_grant: true,
            checked_at: Some(rfc3339(now).map_err(unavailable)?),
            ..SaveOptions::default()
        };
        match self.save(&user, request, options).await {
            Ok(_) => Ok(account_id.to_string()),
            Err(Error::LimitExceeded { code, .. } | Error::Conflict { code, .. }) => {
                Err(code.to_owned())
            }
            Err(Error::Validation(_)) => Err("exchange_failed".to_owned()),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Checks an account with its provider: who the (fresh) token belongs to, or for an SES
    /// sender whether SES has verified it; stores and answers the result.
    pub async fn test_connection(
        &self,
        user: &UserId,
        account_id: &AccountId,
    ) -> Result<ConnectionTest, Error> {
        let item = self
            .store
            .get(user, account_id)
            .await?
            .ok_or(Error::NotFound)?;
        let checked_at = crate::now_rfc3339();
        let Some(provider) = Provider::of(&item) else {
            return self.test_sender(item, checked_at).await;
        };
        let (item, identity, connected, reason) = match self.fresh_configuration(item, false).await
        {
            Ok((item, configuration)) => {
                let token = configuration
                    .get("access_token")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match self.tokens.identify(provider, token).await {
                    Ok(identity) => {
                        let matches = stored_identity(&item, provider).as_deref()
                            == Some(identity.id.as_str());
                        let reason = (!matches).then(|| "account_identity_mismatch".to_owned());
                        (item, Some(identity.to_json()), matches, reason)
                    }
                    Err(IdentityFailure::TokenRefused) => {
                        (item, None, false, Some(REAUTH_REQUIRED.to_owned()))
                    }
                    Err(IdentityFailure::Unavailable) => {
                        return Err(Error::unavailable("the provider could not be asked"));
                    }
                }
            }
            Err(TokenFailure::Refresh(RefreshFailure::ReauthRequired)) => {
                let item = self
                    .store
                    .get(user, account_id)
                    .await?
                    .ok_or(Error::NotFound)?;
                (item, None, false, Some(REAUTH_REQUIRED.to_owned()))
            }
            Err(TokenFailure::Refresh(RefreshFailure::Misconfigured(_))) => {
                return Err(Error::ProviderMisconfigured);
            }
            Err(TokenFailure::Refresh(_)) => {
                return Err(Error::unavailable("the provider's token endpoint failed"));
            }
            Err(TokenFailure::Storage(error)) => return Err(error),
        };
        if !self
            .store
            .record_check(&item, connected, reason.as_deref(), &checked_at)
            .await?
        {
            return Err(concurrent_change());
        }
        Ok(ConnectionTest {
            account_id: account_id.to_string(),
            connected,
            status_reason: reason,
            checked_at,
            identity,
        })
    }

    /// A connection test of an account without a provider: an SES sender's verification.
    async fn test_sender(
        &self,
        item: AccountItem,
        checked_at: String,
    ) -> Result<ConnectionTest, Error> {
        let Some(claim) = self.owned_sender(&item).await? else {
            return Err(Error::Unprocessable {
                code: "account_not_testable",
                message: "Only accounts connected at a provider (X, Instagram, Google, Microsoft) and email senders can be tested.".into(),
                details: Vec::new(),
            });
        };
        let item = self.refresh_pending_sender(item).await?;
        let verified = item.connected;
        if !self
            .store
            .record_check(
                &item,
                item.connected,
                item.status_reason.as_deref(),
                &checked_at,
            )
            .await?
        {
            return Err(concurrent_change());
        }
        Ok(ConnectionTest {
            account_id: item.account_id.to_string(),
            connected: item.connected,
            status_reason: item.status_reason.clone(),
            checked_at,
            identity: Some(json!({"from_address": claim.address, "verified": verified})),
        })
    }
}

/// The provider's id of the user a stored account belongs to.
fn stored_identity(item: &AccountItem, provider: Provider) -> Option<String> {
    let configuration = parse_configuration(&item.configuration).ok()?;
    configuration
        .get(ProviderIdentity::id_field(provider))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_derived_account_id_is_a_valid_one() {
        assert_eq!(derived_account_id(Provider::X, "ada"), "x-ada");
        assert_eq!(
            derived_account_id(Provider::Google, "Ada@Example.com"),
            "google-ada-example-com"
        );
        let long = derived_account_id(Provider::Microsoft, &"a".repeat(200));
        assert!(AccountId::try_from(long).is_ok());
    }

    #[test]
    fn the_outcome_is_added_to_the_return_url() {
        assert_eq!(
            with_outcome(
                "https://app.example/connect?x=1",
                &[("connect", "error"), ("error", "access_denied")]
            ),
            "https://app.example/connect?x=1&connect=error&error=access_denied"
        );
    }
}
