//! Completing a connect at the OAuth callback: the code exchanged, who signed in asked, the
//! account saved, and the browser sent back with the outcome.

use serde::Deserialize;
use serde_json::{Map, json};
use utoipa::IntoParams;

use super::{rfc3339, sha256_hex, stored_identity};
use crate::accounts::model::{AccountId, UpsertAccountRequest};
use crate::accounts::provider::Provider;
use crate::accounts::service::{AccountService, SaveOptions, parse_configuration};
use crate::accounts::store::ConnectSessionItem;
use crate::error::Error;
use crate::ids::UserId;

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
            .take_connect_session(session_id, &sha256_hex(secret), self.clock.epoch_seconds())
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
        let now = self.clock.epoch_seconds();
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
