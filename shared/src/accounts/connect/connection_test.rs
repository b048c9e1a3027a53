//! Checking a connection: who an account's token belongs to at its provider, or whether SES has
//! verified a sender; the result stored and answered.

use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::stored_identity;
use crate::accounts::model::AccountId;
use crate::accounts::provider::Provider;
use crate::accounts::refresh::TokenFailure;
use crate::accounts::service::AccountService;
use crate::accounts::store::{AccountItem, REAUTH_REQUIRED, concurrent_change};
use crate::error::Error;
use crate::ids::UserId;
use crate::platforms::connect::IdentityFailure;
use crate::platforms::oauth::RefreshFailure;

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

impl AccountService {
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
        let checked_at = self.clock.now_rfc3339();
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
