//! What a token refresh yields, or why it failed, and the deployment's OAuth clients: the
//! vocabulary every platform's module and the refresh itself share.

use serde::Deserialize;

/// One OAuth client of this deployment.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OAuthClient {
    /// Client id.
    pub client_id: String,
    /// Client secret (confidential clients); absent for public clients.
    #[serde(default)]
    pub client_secret: Option<String>,
}

/// The deployment's OAuth clients, kept in Secrets Manager (`OAUTH_CLIENTS_SECRET_ARN`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OAuthClients {
    /// X's OAuth 2.0 client.
    #[serde(default)]
    pub x: Option<OAuthClient>,
    /// The Instagram app's client (Instagram API with Instagram Login).
    #[serde(default)]
    pub instagram: Option<OAuthClient>,
    /// Google's OAuth client (a web application).
    #[serde(default)]
    pub google: Option<OAuthClient>,
    /// Microsoft's app registration (a confidential web client).
    #[serde(default)]
    pub microsoft: Option<OAuthClient>,
}

impl OAuthClients {
    /// This deployment's client at `provider`, if one is configured.
    pub fn of(&self, provider: super::Provider) -> Option<&OAuthClient> {
        match provider {
            super::Provider::X => self.x.as_ref(),
            super::Provider::Instagram => self.instagram.as_ref(),
            super::Provider::Google => self.google.as_ref(),
            super::Provider::Microsoft => self.microsoft.as_ref(),
        }
    }
}

/// Code of a refusal because the deployment's OAuth client is refused by the provider (wrong
/// client id or secret, an app the provider disabled): no account is at fault.
pub const PROVIDER_MISCONFIGURED: &str = "provider_misconfigured";

/// The longest access-token lifetime believed from a provider (a year): a larger `expires_in`
/// is clamped, so no answer can overflow the time arithmetic.
pub const MAX_TOKEN_LIFETIME_SECONDS: i64 = 365 * 24 * 3600;

/// New tokens from a token endpoint (a refresh or a code exchange).
#[derive(Debug, Clone)]
pub struct RefreshedTokens {
    /// The new access token.
    pub access_token: String,
    /// The new refresh token, when the provider rotates it.
    pub refresh_token: Option<String>,
    /// Seconds the access token lives, clamped to 0..=[`MAX_TOKEN_LIFETIME_SECONDS`].
    pub expires_in: Option<i64>,
}

/// Why tokens could not be refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshFailure {
    /// The grant is gone (`invalid_grant`, a revoked or reused refresh token): the user must
    /// connect the account again.
    ReauthRequired,
    /// Nothing to refresh with (no refresh token, no OAuth client configured).
    NotRefreshable,
    /// The provider refused this deployment's OAuth client, or answered in a way that is not
    /// the account's fault: the account stays as it is; the operator must fix the deployment.
    Misconfigured(&'static str),
    /// The provider or the network failed; a later attempt may work.
    Transient(&'static str),
}
