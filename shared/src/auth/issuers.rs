//! Which issuers' tokens are accepted, and by which rules: read once per cold start.
//!
//! The primary issuer comes from `JWT_ISSUER` and friends (the template sets them, from its own
//! Cognito user pool or from an external issuer); `JWT_EXTRA_ISSUERS` may add more (a migration
//! runs two for a while). Each issuer has its token kind, its allowed clients or audiences, and
//! where its keys come from.

use std::collections::HashSet;

use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::config::{ConfigError, ConfigSource, vars};

/// Default shortest time between two fetches of one issuer's keys: a burst of tokens with
/// unknown `kid`s (an attack, or a client with a stale token) costs at most one fetch per
/// interval (`JWT_KEYS_REFETCH_SECONDS` changes it).
pub const REFETCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// The scope that lets an agent read decrypted account secrets, unless `SECRETS_SCOPE` says
/// otherwise (with Cognito it is a resource-server scope, `pipewise-user-api/secrets.read`).
pub const DEFAULT_SECRETS_SCOPE: &str = "integrations:secrets:read";

/// What kind of token an issuer's bearer tokens are, and so how their audience is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Amazon Cognito access tokens: `token_use` must be `access` and `client_id` an allowed
    /// app client (they carry no `aud`); Cognito ID tokens are refused.
    CognitoAccess,
    /// OIDC / OAuth access tokens (Auth0, Okta, Supabase Auth, ...): `aud` must contain an
    /// allowed audience.
    OidcAccess,
}

/// Where an issuer's verification keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A JWKS fixed in the configuration (locked-down deployments; never re-fetched).
    Static(JwkSet),
    /// A JWKS URL.
    JwksUrl(String),
    /// An OpenID discovery document whose `jwks_uri` names the JWKS.
    Discovery(String),
}

/// The rules for one issuer's tokens.
#[derive(Debug, Clone)]
pub struct IssuerRules {
    /// The exact `iss`.
    pub issuer: String,
    /// Token kind.
    pub kind: TokenKind,
    /// Allowed app clients (Cognito) or audiences (OIDC); never empty.
    pub audiences: Vec<String>,
    /// Where the keys come from.
    pub keys: KeySource,
    /// Put before `sub` to form the user id: empty for the primary issuer, a distinct
    /// `name:` for every other one, so two issuers never name the same stored user.
    pub user_prefix: String,
}

/// Every accepted issuer, the development secret, and the secrets scope.
#[derive(Clone)]
pub struct AuthConfig {
    /// Accepted issuers; the first is the primary one.
    pub issuers: Vec<IssuerRules>,
    /// Shared HS256 secret for the primary issuer; local development only.
    pub hs256_secret: Option<Zeroizing<Vec<u8>>>,
    /// The scope `/secrets` needs.
    pub secrets_scope: String,
    /// Shortest time between two fetches of one issuer's keys.
    pub keys_refetch_interval: std::time::Duration,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("issuers", &self.issuers)
            .field("hs256", &self.hs256_secret.is_some())
            .field("secrets_scope", &self.secrets_scope)
            .field("keys_refetch_interval", &self.keys_refetch_interval)
            .finish()
    }
}

/// One entry of `JWT_EXTRA_ISSUERS` (a JSON array).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtraIssuer {
    issuer: String,
    token_use: TokenKind,
    audiences: Vec<String>,
    #[serde(default)]
    jwks_url: Option<String>,
    #[serde(default)]
    discovery_url: Option<String>,
    user_prefix: String,
}

fn invalid(name: &'static str, problem: &str) -> ConfigError {
    ConfigError::Invalid {
        name,
        problem: problem.to_owned(),
    }
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Keys of an issuer: a static JWKS, else a JWKS URL, else the discovery document (by default
/// `{issuer}/.well-known/openid-configuration`).
fn key_source(
    issuer: &str,
    jwks: Option<JwkSet>,
    jwks_url: Option<String>,
    discovery_url: Option<String>,
) -> KeySource {
    match (jwks, jwks_url, discovery_url) {
        (Some(set), _, _) => KeySource::Static(set),
        (None, Some(url), _) => KeySource::JwksUrl(url),
        (None, None, Some(url)) => KeySource::Discovery(url),
        (None, None, None) => KeySource::Discovery(format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        )),
    }
}

impl AuthConfig {
    /// Reads `JWT_ISSUER`, `JWT_AUDIENCE` (comma-separated), `JWT_TOKEN_USE` (`cognito_access`
    /// or `oidc_access`, the default), `JWT_JWKS` / `JWT_JWKS_URL` / `JWT_DISCOVERY_URL`,
    /// `JWT_EXTRA_ISSUERS`, `JWT_HS256_SECRET` and `SECRETS_SCOPE`.
    pub fn from_source(source: &ConfigSource<'_>) -> Result<Self, ConfigError> {
        let issuer = source.required(vars::JWT_ISSUER)?;
        let audiences = list(&source.required(vars::JWT_AUDIENCE)?);
        if audiences.is_empty() {
            return Err(ConfigError::Missing(vars::JWT_AUDIENCE));
        }
        let kind = match source.optional(vars::JWT_TOKEN_USE).as_deref() {
            None | Some("oidc_access") => TokenKind::OidcAccess,
            Some("cognito_access") => TokenKind::CognitoAccess,
            Some(_) => {
                return Err(invalid(
                    vars::JWT_TOKEN_USE,
                    "must be cognito_access or oidc_access",
                ));
            }
        };
        let jwks = source
            .optional(vars::JWT_JWKS)
            .map(|text| {
                serde_json::from_str::<JwkSet>(&text)
                    .map_err(|_| invalid(vars::JWT_JWKS, "not a JWKS JSON document"))
            })
            .transpose()?;
        let hs256_secret = source
            .optional(vars::JWT_HS256_SECRET)
            .map(|secret| Zeroizing::new(secret.into_bytes()));
        if hs256_secret
            .as_ref()
            .is_some_and(|secret| secret.len() < 32)
        {
            return Err(invalid(vars::JWT_HS256_SECRET, "must be at least 32 bytes"));
        }
        // With only a development secret there are no public keys to fetch.
        let keys = if hs256_secret.is_some() && jwks.is_none() {
            KeySource::Static(JwkSet { keys: Vec::new() })
        } else {
            key_source(
                &issuer,
                jwks,
                source.optional(vars::JWT_JWKS_URL),
                source.optional(vars::JWT_DISCOVERY_URL),
            )
        };
        let mut issuers = vec![IssuerRules {
            issuer,
            kind,
            audiences,
            keys,
            user_prefix: String::new(),
        }];
        if let Some(text) = source.optional(vars::JWT_EXTRA_ISSUERS) {
            let extras: Vec<ExtraIssuer> = serde_json::from_str(&text).map_err(|_| {
                invalid(
                    vars::JWT_EXTRA_ISSUERS,
                    "must be a JSON array of {issuer, token_use, audiences, user_prefix, jwks_url?, discovery_url?}",
                )
            })?;
            for extra in extras {
                issuers.push(IssuerRules {
                    keys: key_source(&extra.issuer, None, extra.jwks_url, extra.discovery_url),
                    issuer: extra.issuer,
                    kind: extra.token_use,
                    audiences: extra.audiences,
                    user_prefix: extra.user_prefix,
                });
            }
        }
        check_issuers(&issuers)?;
        let keys_refetch_interval = match source.optional(vars::JWT_KEYS_REFETCH_SECONDS) {
            None => REFETCH_INTERVAL,
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|seconds| (1..=3600).contains(seconds))
                .map(std::time::Duration::from_secs)
                .ok_or_else(|| invalid(vars::JWT_KEYS_REFETCH_SECONDS, "must be 1-3600 seconds"))?,
        };
        Ok(Self {
            keys_refetch_interval,
            issuers,
            hs256_secret,
            secrets_scope: source
                .optional(vars::SECRETS_SCOPE)
                .unwrap_or_else(|| DEFAULT_SECRETS_SCOPE.to_owned()),
        })
    }
}

/// Issuers are distinct, each has an audience, and every one but the primary has its own
/// `name:` prefix, so no two issuers can map a `sub` to the same user id.
fn check_issuers(issuers: &[IssuerRules]) -> Result<(), ConfigError> {
    let mut seen_issuers = HashSet::new();
    let mut seen_prefixes = HashSet::new();
    for (index, rules) in issuers.iter().enumerate() {
        if !seen_issuers.insert(rules.issuer.as_str()) {
            return Err(invalid(
                vars::JWT_EXTRA_ISSUERS,
                "an issuer is listed twice",
            ));
        }
        if rules.audiences.is_empty() {
            return Err(invalid(
                vars::JWT_EXTRA_ISSUERS,
                "every issuer needs an audience or client",
            ));
        }
        if index > 0 {
            let prefix = &rules.user_prefix;
            let well_formed = prefix.len() >= 2
                && prefix.ends_with(':')
                && prefix[..prefix.len() - 1]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !well_formed || !seen_prefixes.insert(prefix.as_str()) {
                return Err(invalid(
                    vars::JWT_EXTRA_ISSUERS,
                    "every extra issuer needs its own user_prefix such as `supabase:`",
                ));
            }
        }
    }
    Ok(())
}
