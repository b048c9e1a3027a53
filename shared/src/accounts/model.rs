//! Integration accounts: request and response shapes, and the parsing that makes a draft valid.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::secrets::depth;
use crate::error::{Error, FieldError};

/// Largest serialised configuration, in bytes.
pub const MAX_CONFIGURATION_BYTES: usize = 16 * 1024;
/// Deepest configuration nesting (the configuration object itself is level 1).
pub const MAX_CONFIGURATION_DEPTH: usize = 4;
/// Most accounts one user may have.
pub const MAX_ACCOUNTS_PER_USER: u32 = 200;
const MAX_LABEL_CHARS: usize = 200;
const MAX_STATUS_REASON_CHARS: usize = 500;

pub use crate::ids::AccountId;

/// What kind of integration an account is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountType {
    /// A calendar (Google, Outlook, ...).
    Calendar,
    /// A CRM (HubSpot, Salesforce, ...).
    Crm,
    /// An email sender.
    Email,
    /// A social network (X, Instagram, ...).
    Social,
}

impl AccountType {
    const ALL: [(&'static str, AccountType); 4] = [
        ("calendar", Self::Calendar),
        ("crm", Self::Crm),
        ("email", Self::Email),
        ("social", Self::Social),
    ];

    /// Parses the wire name.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, kind)| *kind)
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, kind)| *kind == self)
            .map(|(name, _)| *name)
            .unwrap_or_default()
    }
}

/// Body of `POST /api/user/integrations/accounts`. Unknown fields are ignored so a client can post
/// back an account it read.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"account_id": "gmail-work", "account_type": "email", "provider": "google",
    "configuration": {"from_address": "me@example.com", "access_token": "ya29..."}}))]
pub struct UpsertAccountRequest {
    /// Client-chosen id, 1-64 of `[A-Za-z0-9_.-]`.
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    pub account_id: String,
    /// `calendar`, `crm`, `email` or `social`.
    #[schema(value_type = AccountType)]
    pub account_type: String,
    /// Provider, e.g. `google`, `hubspot`, `twitter`.
    #[serde(default)]
    pub provider: Option<String>,
    /// Label telling two accounts of one provider apart.
    #[serde(default)]
    pub label: Option<String>,
    /// Provider settings (≤ 16 KB, ≤ 4 levels); credential-named keys are secrets.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub configuration: Option<Map<String, Value>>,
    /// Whether the account works (default true).
    #[serde(default)]
    pub connected: Option<bool>,
    /// Why the account is not connected (required when `connected` is false).
    #[serde(default)]
    pub status_reason: Option<String>,
    /// When the access token expires (RFC 3339), for accounts whose tokens this service
    /// refreshes (X, Instagram); the platforms answer it as `expires_in` when the token is made.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Paths (dotted: `oauth.code`, `inboxes.0.pin`) of further configuration values the client
    /// wants sealed as secrets, beyond those the secret rule finds itself. A response's
    /// `secret_fields` may be posted back as it is.
    #[serde(default)]
    pub secret_fields: Option<Vec<String>>,
}

/// Most explicit secret paths one request may name.
pub const MAX_EXPLICIT_SECRET_PATHS: usize = 100;

/// A validated account to store.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountDraft {
    /// The client's id for the account: 1-64 of `[A-Za-z0-9_.-]`, unique per user.
    pub account_id: AccountId,
    /// What the account is for: `calendar`, `crm`, `email` or `social`.
    pub account_type: AccountType,
    /// Who provides it (e.g. `google`, `x`, `instagram`); for a social account it names the platform.
    pub provider: Option<String>,
    /// The user's name for it, to tell two accounts of one provider apart.
    pub label: Option<String>,
    /// Configuration, secrets still in it.
    pub configuration: Map<String, Value>,
    /// Whether it can be used now; when not, `status_reason` says why.
    pub connected: bool,
    /// Why it is not connected (e.g. `reauth_required`, `sender_pending_verification`).
    pub status_reason: Option<String>,
    /// Paths the client named as secrets.
    pub explicit_secrets: Vec<super::secrets::SecretPath>,
    /// When the access token expires (RFC 3339, normalised).
    pub expires_at: Option<String>,
}

/// The configuration field that names an email account's sender.
pub const FROM_ADDRESS: &str = "from_address";

impl UpsertAccountRequest {
    /// Validates every field at once: all problems come back in one 422.
    pub fn parse(self) -> Result<AccountDraft, Error> {
        let mut problems = Vec::new();
        let account_id = AccountId::parse(&self.account_id)
            .map_err(|problem| problems.push(FieldError::new("account_id", problem)))
            .ok();
        let account_type = AccountType::parse(&self.account_type);
        if account_type.is_none() {
            problems.push(FieldError::new(
                "account_type",
                "must be one of calendar, crm, email, social",
            ));
        }
        let provider = self
            .provider
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty());
        if let Some(provider) = &provider
            && (provider.len() > 64
                || !provider
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)))
        {
            problems.push(FieldError::new(
                "provider",
                "must be 1-64 of letters, digits, '_', '.' and '-'",
            ));
        }
        let label = trimmed(self.label);
        if label
            .as_ref()
            .is_some_and(|l| l.chars().count() > MAX_LABEL_CHARS)
        {
            problems.push(FieldError::new("label", "must be at most 200 characters"));
        }
        if let Some(problem) = label
            .as_deref()
            .and_then(|l| crate::plain_text::check(l, crate::plain_text::Lines::Single))
        {
            problems.push(FieldError::new("label", problem));
        }
        let configuration = self.configuration.unwrap_or_default();
        let size = serde_json::to_vec(&configuration)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_CONFIGURATION_BYTES {
            problems.push(FieldError::new(
                "configuration",
                "must be at most 16 KB as JSON",
            ));
        }
        if depth(&Value::Object(configuration.clone())) > MAX_CONFIGURATION_DEPTH {
            problems.push(FieldError::new(
                "configuration",
                "must be nested at most 4 levels",
            ));
        }
        let explicit_secrets =
            explicit_secret_paths(self.secret_fields.unwrap_or_default(), &mut problems);
        let expires_at = match self.expires_at.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => match time::OffsetDateTime::parse(
                text,
                &time::format_description::well_known::Rfc3339,
            ) {
                // Checked: an offset can move a time past year 9999 (`9999-12-31T23:59:59-23:59`),
                // where an unchecked conversion panics and RFC 3339 cannot write it.
                Ok(at) => match at.checked_to_offset(time::UtcOffset::UTC).and_then(|utc| {
                    utc.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                }) {
                    Some(normalised) => Some(normalised),
                    None => {
                        problems.push(FieldError::new(
                            "expires_at",
                            "must be an RFC 3339 time between the years 0000 and 9999 in UTC",
                        ));
                        None
                    }
                },
                Err(_) => {
                    problems.push(FieldError::new("expires_at", "must be an RFC 3339 time"));
                    None
                }
            },
        };
        let connected = self.connected.unwrap_or(true);
        let status_reason = if connected {
            None
        } else {
            trimmed(self.status_reason)
        };
        if !connected && status_reason.is_none() {
            problems.push(FieldError::new(
                "status_reason",
                "is required when connected is false",
            ));
        }
        if status_reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_STATUS_REASON_CHARS)
        {
            problems.push(FieldError::new(
                "status_reason",
                "must be at most 500 characters",
            ));
        }
        match (account_id, account_type) {
            (Some(account_id), Some(account_type)) if problems.is_empty() => Ok(AccountDraft {
                account_id,
                account_type,
                provider,
                label,
                configuration,
                connected,
                status_reason,
                explicit_secrets,
                expires_at,
            }),
            _ => Err(Error::Validation(problems)),
        }
    }
}

/// Parses the client's extra secret paths. A path naming nothing (or `null`) in this
/// configuration is ignored: there is nothing to seal, and a client posting back a `secret_fields`
/// it read with an edited configuration must not be refused for it.
fn explicit_secret_paths(
    dotted: Vec<String>,
    problems: &mut Vec<FieldError>,
) -> Vec<super::secrets::SecretPath> {
    if dotted.len() > MAX_EXPLICIT_SECRET_PATHS {
        problems.push(FieldError::new(
            "secret_fields",
            "may name at most 100 paths",
        ));
        return Vec::new();
    }
    let mut paths = Vec::new();
    for (index, text) in dotted.iter().enumerate() {
        match super::secrets::parse_path(text) {
            // The sender is public and claimed by its value: sealed, it could never be released.
            Some(path) if path.len() == 1 && path[0] == FROM_ADDRESS => {
                problems.push(FieldError::new(
                    format!("secret_fields.{index}"),
                    "`from_address` is the account's public sender and cannot be a secret",
                ));
            }
            Some(path) => paths.push(path),
            None => problems.push(FieldError::new(
                format!("secret_fields.{index}"),
                "must be a dotted path such as `oauth.code` or `inboxes.0.pin`",
            )),
        }
    }
    paths
}

fn trimmed(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// An account as every response shows it: secrets masked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccountView {
    /// The client's id for the account: 1-64 of `[A-Za-z0-9_.-]`, unique per user.
    pub account_id: String,
    /// What the account is for: `calendar`, `crm`, `email` or `social`.
    pub account_type: AccountType,
    /// Who provides it (e.g. `google`, `x`, `instagram`); for a social account it names the platform.
    pub provider: Option<String>,
    /// The user's name for it, to tell two accounts of one provider apart.
    pub label: Option<String>,
    /// Configuration with each secret as `"********"`.
    #[schema(value_type = Object)]
    pub configuration: Map<String, Value>,
    /// Dotted paths of the masked secrets (`api_key`, `oauth.refresh_token`).
    pub secret_fields: Vec<String>,
    /// Whether the account works.
    pub connected: bool,
    /// Why it does not, when `connected` is false.
    pub status_reason: Option<String>,
    /// When the access token expires (RFC 3339), for accounts whose tokens are refreshed.
    pub expires_at: Option<String>,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
    /// When it last changed (RFC 3339, UTC).
    pub updated_at: String,
    /// When its provider last confirmed who it is (a connect or a connection test; RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_checked_at: Option<String>,
}

/// Answer of `GET /api/user/integrations/accounts`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountList {
    /// The accounts, by `account_id`.
    pub accounts: Vec<AccountView>,
    /// How many.
    pub total: usize,
}

/// Query of `GET /api/user/integrations/accounts`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccountListQuery {
    /// Only accounts of this type.
    pub account_type: Option<AccountType>,
}

/// Answer of `GET .../accounts/{account_id}/secrets`: the decrypted configuration.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountSecrets {
    /// The client's id for the account: 1-64 of `[A-Za-z0-9_.-]`, unique per user.
    pub account_id: String,
    /// What the account is for: `calendar`, `crm`, `email` or `social`.
    pub account_type: AccountType,
    /// Who provides it (e.g. `google`, `x`, `instagram`); for a social account it names the platform.
    pub provider: Option<String>,
    /// The configuration with its secrets in clear.
    #[schema(value_type = Object)]
    pub configuration: Map<String, Value>,
}
