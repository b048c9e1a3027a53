//! Starting a connect session (the provider's consent page for the browser) and reading where
//! a session stands.

use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{SESSION_SECONDS, rfc3339, sha256_hex};
use crate::accounts::model::AccountId;
use crate::accounts::provider::Provider;
use crate::accounts::service::AccountService;
use crate::accounts::store::{ConnectSessionItem, ConnectSessionStatus};
use crate::error::Error;
use crate::ids::UserId;

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

/// A URL-safe random token; a random source that fails is an internal error, never a panic.
fn random_token(bytes: usize) -> Result<String, Error> {
    let mut buffer = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buffer)
        .map_err(|_| Error::internal("the system's random source failed"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buffer))
}

impl AccountService {
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
        let expires_at_epoch = self.clock.epoch_seconds().saturating_add(SESSION_SECONDS);
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
        let expired = session.expires_at_epoch <= self.clock.epoch_seconds();
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
}
