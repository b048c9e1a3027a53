//! Typed configuration, read once per cold start.
//!
//! Every setting is an environment variable declared in `template.yaml`. Readers take a
//! [`ConfigSource`] rather than the process environment so that the local runner and the tests can
//! feed them the template's own variables (which proves the template declares every one).

use std::collections::HashMap;

/// A missing or invalid setting; the process should not start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("configuration variable {0} is not set")]
    Missing(&'static str),
    /// A variable is set to something unusable.
    #[error("configuration variable {name} is invalid: {problem}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong with it (never its value: it may be a secret).
        problem: String,
    },
}

type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Where settings come from: the process environment in Lambda, a map in the local runner and tests.
pub struct ConfigSource<'a> {
    lookup: Lookup<'a>,
}

impl<'a> ConfigSource<'a> {
    /// Settings from the process environment.
    pub fn env() -> Self {
        Self {
            lookup: Box::new(|name| std::env::var(name).ok()),
        }
    }

    /// Settings from a map of variable names to values.
    pub fn from_map(map: &'a HashMap<String, String>) -> Self {
        Self {
            lookup: Box::new(|name| map.get(name).cloned()),
        }
    }

    /// A variable that may be absent; an empty value counts as absent.
    pub fn optional(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|value| !value.trim().is_empty())
    }

    /// A variable that must be present and non-empty.
    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }
}

/// DynamoDB table names and other resource ids one function needs, by their variable names.
pub mod vars {
    /// Table of integration accounts.
    pub const ACCOUNTS_TABLE: &str = "ACCOUNTS_TABLE";
    /// KMS key (id, ARN or alias) that wraps the data keys of account secrets.
    pub const SECRETS_KMS_KEY_ID: &str = "SECRETS_KMS_KEY_ID";
    /// Table of communication targets.
    pub const TARGETS_TABLE: &str = "TARGETS_TABLE";
    /// Table of outreach runs, communications and idempotency keys.
    pub const RUNS_TABLE: &str = "RUNS_TABLE";
    /// URL of the SQS queue the orchestrator feeds and the worker drains.
    pub const COMMUNICATIONS_QUEUE_URL: &str = "COMMUNICATIONS_QUEUE_URL";
    /// Comma-separated browser origins allowed by CORS.
    pub const CORS_ALLOWED_ORIGINS: &str = "CORS_ALLOWED_ORIGINS";
    /// The primary issuer (`iss`).
    pub const JWT_ISSUER: &str = "JWT_ISSUER";
    /// Allowed audiences (OIDC) or app client ids (Cognito), comma-separated.
    pub const JWT_AUDIENCE: &str = "JWT_AUDIENCE";
    /// JWKS document (JSON) with the RS256/ES256 public keys tokens are signed with.
    pub const JWT_JWKS: &str = "JWT_JWKS";
    /// `cognito_access` (Cognito access tokens: `token_use` and `client_id`) or `oidc_access`
    /// (the default: `aud`).
    pub const JWT_TOKEN_USE: &str = "JWT_TOKEN_USE";
    /// URL of the issuer's JWKS (instead of discovery).
    pub const JWT_JWKS_URL: &str = "JWT_JWKS_URL";
    /// URL of the issuer's OpenID discovery document (default: `{JWT_ISSUER}/.well-known/openid-configuration`).
    pub const JWT_DISCOVERY_URL: &str = "JWT_DISCOVERY_URL";
    /// JSON array of further issuers (`issuer`, `token_use`, `audiences`, `user_prefix`,
    /// `jwks_url`?, `discovery_url`?).
    pub const JWT_EXTRA_ISSUERS: &str = "JWT_EXTRA_ISSUERS";
    /// Shortest time between two fetches of an issuer's keys, in seconds (default 30).
    pub const JWT_KEYS_REFETCH_SECONDS: &str = "JWT_KEYS_REFETCH_SECONDS";
    /// The scope `/secrets` needs (default `integrations:secrets:read`).
    pub const SECRETS_SCOPE: &str = "SECRETS_SCOPE";
    /// Base URL of the X API (default `https://api.x.com`).
    pub const X_API_BASE_URL: &str = "X_API_BASE_URL";
    /// Base URL of the Instagram Graph API (default `https://graph.instagram.com/v21.0`).
    pub const INSTAGRAM_API_BASE_URL: &str = "INSTAGRAM_API_BASE_URL";
    /// X's authorization page (default `https://x.com/i/oauth2/authorize`).
    pub const X_AUTHORIZE_URL: &str = "X_AUTHORIZE_URL";
    /// Google's authorization page (default `https://accounts.google.com/o/oauth2/v2/auth`).
    pub const GOOGLE_AUTHORIZE_URL: &str = "GOOGLE_AUTHORIZE_URL";
    /// Google's token endpoint (default `https://oauth2.googleapis.com/token`).
    pub const GOOGLE_TOKEN_URL: &str = "GOOGLE_TOKEN_URL";
    /// Base URL of the Gmail API (default `https://gmail.googleapis.com`).
    pub const GMAIL_API_BASE_URL: &str = "GMAIL_API_BASE_URL";
    /// Microsoft identity platform's base (default
    /// `https://login.microsoftonline.com/common/oauth2/v2.0`; `/authorize` and `/token` under it).
    pub const MICROSOFT_LOGIN_BASE_URL: &str = "MICROSOFT_LOGIN_BASE_URL";
    /// Base URL of Microsoft Graph (default `https://graph.microsoft.com`).
    pub const MICROSOFT_GRAPH_BASE_URL: &str = "MICROSOFT_GRAPH_BASE_URL";
    /// Instagram's authorization page (default `https://www.instagram.com/oauth/authorize`).
    pub const INSTAGRAM_AUTHORIZE_URL: &str = "INSTAGRAM_AUTHORIZE_URL";
    /// Base of Instagram's code exchange (default `https://api.instagram.com`).
    pub const INSTAGRAM_OAUTH_BASE_URL: &str = "INSTAGRAM_OAUTH_BASE_URL";
    /// ARN of the Secrets Manager secret with the deployment's OAuth clients
    /// (`{"x": {"client_id": ..., "client_secret": ...}}`).
    pub const OAUTH_CLIENTS_SECRET_ARN: &str = "OAUTH_CLIENTS_SECRET_ARN";
    /// ARN of the Secrets Manager secret that keys the unsubscribe links' MAC.
    pub const UNSUBSCRIBE_SECRET_ARN: &str = "UNSUBSCRIBE_SECRET_ARN";
    /// Public base URL of the API (no `/api/user`), for links in emails.
    pub const PUBLIC_API_BASE_URL: &str = "PUBLIC_API_BASE_URL";
    /// Shared HS256 secret, for local development only.
    pub const JWT_HS256_SECRET: &str = "JWT_HS256_SECRET";
    /// SES configuration set outreach email is sent through (its event destination feeds
    /// delivery, bounce and complaint events back); unset: no feedback.
    pub const SES_CONFIGURATION_SET: &str = "SES_CONFIGURATION_SET";
    /// Table of the users' webhook endpoints and their delivery attempts.
    pub const WEBHOOKS_TABLE: &str = "WEBHOOKS_TABLE";
    /// URL of the SQS queue events are put on and the webhook deliverer drains; unset: no
    /// events are emitted.
    pub const WEBHOOK_QUEUE_URL: &str = "WEBHOOK_QUEUE_URL";
    /// Seconds between a failed delivery and each retry, comma-separated (default
    /// `5,300,1800,7200,18000,36000,36000`: over 24 hours).
    pub const WEBHOOK_RETRY_DELAYS: &str = "WEBHOOK_RETRY_DELAYS";
    /// `true` admits loopback webhook URLs (`http://127.0.0.1:<port>`): local development only.
    pub const WEBHOOK_ALLOW_LOOPBACK: &str = "WEBHOOK_ALLOW_LOOPBACK";
}
