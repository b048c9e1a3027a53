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
    /// Expected `iss` claim (optional).
    pub const JWT_ISSUER: &str = "JWT_ISSUER";
    /// Expected `aud` claim (optional).
    pub const JWT_AUDIENCE: &str = "JWT_AUDIENCE";
    /// JWKS document (JSON) with the RS256/ES256 public keys tokens are signed with.
    pub const JWT_JWKS: &str = "JWT_JWKS";
    /// Shared HS256 secret, for local development only.
    pub const JWT_HS256_SECRET: &str = "JWT_HS256_SECRET";
}
