//! Which configuration values are secrets, and how a configuration is split into a public part
//! (stored readable, secrets masked) and its secrets (stored only inside a KMS envelope).
//!
//! **The rule — when in doubt, seal it.** A value in an account configuration, at any depth of
//! objects and arrays, is a secret when any of these holds:
//!
//! 1. **Its key names a credential.** The key is cut into lower-case words at camelCase and
//!    acronym boundaries, digits, `-`, `_`, `.` and spaces (`XApiKey` → `x api key`), glued words
//!    are cut on the vocabulary (`apikey` → `api key`), and then: a word containing a
//!    [`SECRET_STEMS`] stem seals the key wherever it stands (`aws_secret_access_key`,
//!    `smtpPassword`); otherwise the key is secret when it ends with a credential noun
//!    ([`SECRET_NOUNS`], [`SECRET_PHRASES`], a qualified [`KEY_NOUNS`], a [`WEAK_SECRET_NOUNS`]),
//!    ignoring [`IGNORED_TRAILING_WORDS`] (`api_key_prod`). A noun followed by a describing word
//!    of [`READABLE_TAILS`] stays readable (`token_url`, `access_key_id`), as do counts
//!    ([`TOKEN_COUNT_QUALIFIERS`]: `max_tokens`) and public keys ([`PUBLIC_KEY_QUALIFIERS`]).
//!    A bare `key`/`keys` is sealed when its value looks like an opaque token.
//! 2. **Its value is a credential by its shape** ([`is_secret_value`]): an HTTP `Bearer`/`Basic`/
//!    `Token`/`Bot` header value, a JWT, a PEM private key, a well-known token prefix
//!    ([`KNOWN_TOKEN_PREFIXES`]), a URL with a password or a secret webhook URL, a query or
//!    connection string with a secret-named parameter — whatever its key.
//! 3. **Its siblings say so**: a 40-character AWS secret key next to an `AKIA…`/`ASIA…` access key
//!    id, or the `value` of a `{"name": "X-Api-Key", "value": …}` pair ([`PAIR_LABEL_KEYS`]).
//! 4. **The client named its path** ([`split_with`], paths parsed by [`parse_path`]).
//!
//! A secret is sealed whole (a list under `api_keys` or an object under `credentials` is one
//! secret) and shown as [`MASK`]. `null` and booleans carry no credential and stay readable, and
//! so, deliberately, do `public_key`, `signature` (usually an e-mail signature; signing secrets
//! and keys are caught by name), ids (`client_id`, `access_key_id`) and descriptions of a
//! credential (`token_url`, `token_type`). The string [`MASK`] posted anywhere means "keep the
//! secret stored at this place".
//!
//! The rule's parts live beside this file: `vocabulary.rs` (the word lists), `names.rs` (a key's
//! name), `shapes.rs` (a value's shape and [`MASK`]); this file splits and reveals with them. The
//! module imports nothing from the rest of the crate.

mod names;
mod shapes;
mod vocabulary;

pub use names::{is_secret_field, normalise_key};
pub use shapes::{KNOWN_TOKEN_PREFIXES, MASK, SECRET_URL_PREFIXES, is_secret_value};
pub use vocabulary::{
    AUTH_QUALIFIERS, GLUE_WORDS, IGNORED_TRAILING_WORDS, KEY_NOUNS, NOT_SECRET_WORDS,
    PAIR_LABEL_KEYS, PAIR_VALUE_KEYS, PUBLIC_KEY_QUALIFIERS, READABLE_TAILS, SECRET_NOUNS,
    SECRET_PHRASES, SECRET_STEMS, TOKEN_COUNT_QUALIFIERS, WEAK_SECRET_NOUNS,
};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use names::{NameClass, classify_name, joined_words};
use shapes::{is_aws_access_key_id, is_aws_secret_key, looks_opaque};

/// Location of a secret inside a configuration: object keys and array indices from the root.
pub type SecretPath = Vec<String>;

/// Dotted form of a path, as listed in `secret_fields` (`oauth.refresh_token`, `inboxes.0.password`).
pub fn display_path(path: &SecretPath) -> String {
    path.join(".")
}

/// Parses a dotted path (`oauth.refresh_token`, `inboxes.0.password`) into a [`SecretPath`];
/// `None` when it is empty or has an empty segment (`a..b`, `.a`, `a.`). Keys containing a `.`
/// cannot be named this way.
pub fn parse_path(dotted: &str) -> Option<SecretPath> {
    dotted
        .split('.')
        .map(|segment| (!segment.is_empty()).then(|| segment.to_owned()))
        .collect()
}

/// The value at a path of a configuration, if there is one (object keys, array indices); for
/// validating client-named secret paths before [`split_with`].
pub fn value_at<'a>(configuration: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter().try_fold(
        configuration.get(first)?,
        |current, segment| match current {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment
                .parse::<usize>()
                .ok()
                .and_then(|index| items.get(index)),
            _ => None,
        },
    )
}

/// A secret in a submitted configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum SubmittedSecret {
    /// The client sent the mask back: keep what is stored.
    Keep,
    /// A new value.
    New(Value),
}

/// One decrypted secret, as serialised inside the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSecret {
    /// Where it sits in the configuration.
    pub path: SecretPath,
    /// Its value (any JSON).
    pub value: Value,
}

/// A configuration with its secrets replaced by [`MASK`], and the secrets taken out.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitConfiguration {
    /// The configuration as stored readable and returned to clients.
    pub masked: Map<String, Value>,
    /// Every secret with its path, deterministic: objects visited in key order, arrays by index.
    pub secrets: Vec<(SecretPath, SubmittedSecret)>,
}

/// Splits a configuration by the rule of the module doc, with no client-named paths:
/// `split_with(configuration, &[])`.
pub fn split(configuration: Map<String, Value>) -> SplitConfiguration {
    split_with(configuration, &[])
}

/// Splits a configuration; the values at `explicit` paths (named by the client) are secrets too,
/// whatever their key or shape. A path that does not exist is ignored here: the caller validates
/// explicit paths (for instance with [`value_at`]).
///
/// A secret is taken out whole (string, number, list or object) and replaced by [`MASK`]. `null`
/// and booleans are never secrets, even under a secret name or an explicit path. A string equal
/// to [`MASK`] anywhere — under a secret name, at an explicit path, or elsewhere, where it can
/// only be a shape-detected secret sent back — is [`SubmittedSecret::Keep`] at its path; the
/// caller refuses a kept path where nothing is stored.
pub fn split_with(
    mut configuration: Map<String, Value>,
    explicit: &[SecretPath],
) -> SplitConfiguration {
    let mut splitter = Splitter {
        explicit,
        path: Vec::new(),
        secrets: Vec::new(),
    };
    splitter.object(&mut configuration);
    SplitConfiguration {
        masked: configuration,
        secrets: splitter.secrets,
    }
}

/// What the members of one object say about each other (rule 3 of the module doc).
struct Siblings {
    /// A member is an AWS access key id: 40-character siblings are its secret key.
    aws_access_key_id: bool,
    /// A `name`/`key`/`header` member holds a secret key name: the `value` member is secret.
    labelled_secret: bool,
}

impl Siblings {
    fn of(object: &Map<String, Value>) -> Self {
        Self {
            aws_access_key_id: object
                .values()
                .any(|value| value.as_str().is_some_and(is_aws_access_key_id)),
            labelled_secret: object.iter().any(|(key, value)| {
                PAIR_LABEL_KEYS.contains(&joined_words(key).as_str())
                    && value.as_str().is_some_and(is_secret_field)
            }),
        }
    }

    fn seal(&self, key: &str, value: &Value) -> bool {
        (self.aws_access_key_id && value.as_str().is_some_and(is_aws_secret_key))
            || (self.labelled_secret && PAIR_VALUE_KEYS.contains(&joined_words(key).as_str()))
    }
}

enum Action {
    Leave,
    Keep,
    Seal,
    Descend,
}

struct Splitter<'a> {
    explicit: &'a [SecretPath],
    path: SecretPath,
    secrets: Vec<(SecretPath, SubmittedSecret)>,
}

impl Splitter<'_> {
    fn is_explicit(&self) -> bool {
        self.explicit.contains(&self.path)
    }

    fn object(&mut self, object: &mut Map<String, Value>) {
        let siblings = Siblings::of(object);
        for (key, value) in object.iter_mut() {
            self.path.push(key.clone());
            let by_name = match classify_name(key) {
                NameClass::Secret => true,
                NameClass::BareKey => value.as_str().is_some_and(looks_opaque),
                NameClass::Readable => false,
            };
            let sealed = by_name || siblings.seal(key, value) || self.is_explicit();
            self.value(value, sealed);
            self.path.pop();
        }
    }

    fn value(&mut self, value: &mut Value, sealed: bool) {
        let action = match &*value {
            Value::Null | Value::Bool(_) => Action::Leave,
            Value::String(text) if text.as_str() == MASK => Action::Keep,
            _ if sealed => Action::Seal,
            Value::String(text) if is_secret_value(text) => Action::Seal,
            Value::Object(_) | Value::Array(_) => Action::Descend,
            Value::Number(_) | Value::String(_) => Action::Leave,
        };
        match action {
            Action::Leave => {}
            Action::Keep => self
                .secrets
                .push((self.path.clone(), SubmittedSecret::Keep)),
            Action::Seal => {
                let taken = std::mem::replace(value, Value::String(MASK.to_owned()));
                self.secrets
                    .push((self.path.clone(), SubmittedSecret::New(taken)));
            }
            Action::Descend => match value {
                Value::Object(object) => self.object(object),
                Value::Array(items) => {
                    for (index, item) in items.iter_mut().enumerate() {
                        self.path.push(index.to_string());
                        let sealed = self.is_explicit();
                        self.value(item, sealed);
                        self.path.pop();
                    }
                }
                _ => {}
            },
        }
    }
}

/// Puts decrypted secrets back into a masked configuration (where the masks stand).
pub fn reveal(masked: Map<String, Value>, secrets: Vec<StoredSecret>) -> Map<String, Value> {
    let mut root = Value::Object(masked);
    for secret in secrets {
        if let Some(slot) = slot_at(&mut root, &secret.path) {
            *slot = secret.value;
        }
    }
    match root {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn slot_at<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter()
        .try_fold(value, |current, segment| match current {
            Value::Object(map) => map.get_mut(segment),
            Value::Array(items) => segment
                .parse::<usize>()
                .ok()
                .and_then(|index| items.get_mut(index)),
            _ => None,
        })
}

/// Nesting depth of a JSON value: a scalar is 0, `{}` is 1, `{"a": {}}` is 2.
pub fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    // The fixtures marked `pub(super)` are shared with the tests of `names.rs` and `shapes.rs`.

    /// AWS's documented example pair.
    const AWS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    pub(super) const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    pub(super) const PEM: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\n-----END OPENSSH PRIVATE KEY-----\n";

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            // Every test input is an object literal.
            _ => Map::new(),
        }
    }

    fn one(key: &str, value: Value) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert(key.to_owned(), value);
        map
    }

    fn paths(split: &SplitConfiguration) -> Vec<String> {
        split
            .secrets
            .iter()
            .map(|(path, _)| display_path(path))
            .collect()
    }

    fn new_values(split: SplitConfiguration) -> (Map<String, Value>, Vec<StoredSecret>) {
        let stored = split
            .secrets
            .into_iter()
            .filter_map(|(path, submitted)| match submitted {
                SubmittedSecret::New(value) => Some(StoredSecret { path, value }),
                SubmittedSecret::Keep => None,
            })
            .collect();
        (split.masked, stored)
    }

    pub(super) fn jwt() -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"42","name":"Ada"}"#);
        let signature = URL_SAFE_NO_PAD.encode(b"not a real signature");
        format!("{header}.{payload}.{signature}")
    }

    pub(super) const SECRET_KEYS: &[&str] = &[
        // From the issue.
        "accessToken",
        "clientSecret",
        "privateKey",
        "aws_secret_access_key",
        "Authorization",
        "api_keys",
        "pwd",
        // The old list still holds.
        "api_key",
        "Access-Token",
        "smtp_password",
        "client_secret",
        "bot_token",
        "token",
        "secret",
        "passwd",
        "credentials",
        // More spellings.
        "X-Api-Key",
        "X-API-KEY",
        "APIKey",
        "XApiKey",
        "apiKeys",
        "apikey",
        "apikeys",
        "refresh-token",
        "smtpPassword",
        "Cookie",
        "Set-Cookie",
        "sessionToken",
        "webhookSigningSecret",
        "X-Auth-Token",
        "Proxy-Authorization",
        "OAuthToken",
        "IDToken",
        "accesstoken",
        "githubtoken",
        "mailgunApiKey",
        "secretAccessKey",
        "client_secret_v2",
        "api_key_prod",
        "private_key_pem",
        "auth_header",
        "auth",
        "basic_auth",
        "pass",
        "db_pass",
        "pin",
        "pin_code",
        "session_id",
        "sessionId",
        "sessionid",
        "passphrase",
        "ssh_key",
        "signing_key",
        "license key",
        "access.key",
        "recovery_codes",
        "password_hash",
        "authorization_code",
        "jwt",
        "credentials_json",
        "tokens",
        "bearer",
    ];

    pub(super) const READABLE_KEYS: &[&str] = &[
        "username",
        "host",
        "max_tokens",
        "maxTokens",
        "max_output_tokens",
        "total_tokens",
        "token_url_hint",
        "calendar_id",
        "token_type",
        "token_endpoint",
        "token_url",
        "tokenUrl",
        "token_uri",
        "token_count",
        "token_limit",
        "token_ttl",
        "token_expiry",
        "token_expires_at",
        "expires_at",
        "access_key_id",
        "AccessKeyId",
        "key_id",
        "from_address",
        "public_key",
        "publicKey",
        "tokenizer",
        "client_id",
        "auth_type",
        "smtp_auth",
        "authorization_url",
        "cookie_name",
        "session_timeout",
        "signature",
        "secretary_email",
        "oauth",
        "region",
        "ig_user_id",
        "api_key_name",
        "private_key_path",
        "sort_key",
        "site_key",
        "compass",
        "monkey",
        "author",
        "pass_through",
        "kms_key_arn",
        "max_keys",
        "key",
        "keys",
    ];

    #[test]
    fn every_secret_spelling_is_sealed_by_split_and_readable_ones_are_not() {
        for key in SECRET_KEYS {
            let split = split(one(key, json!("v-1")));
            assert_eq!(paths(&split), [*key], "{key}");
            assert_eq!(split.masked.get(*key), Some(&json!(MASK)), "{key}");
        }
        let readable: Map<String, Value> = READABLE_KEYS
            .iter()
            .map(|key| ((*key).to_owned(), json!("plain value")))
            .collect();
        let split = split(readable.clone());
        assert!(split.secrets.is_empty(), "{:?}", paths(&split));
        assert_eq!(split.masked, readable);
    }

    #[test]
    fn every_spelling_from_the_issue_is_sealed() {
        let config = object(json!({
            "accessToken": "at-1",
            "api_keys": ["k-1", "k-2"],
            "aws_secret_access_key": "s-1",
            "clientSecret": "cs-1",
            "headers": {"Authorization": "Bearer abc.def", "Accept": "application/json"},
            "privateKey": "pk-1",
            "pwd": "hunter2",
            "username": "ada"
        }));
        let split = split(config);
        assert_eq!(
            paths(&split),
            [
                "accessToken",
                "api_keys",
                "aws_secret_access_key",
                "clientSecret",
                "headers.Authorization",
                "privateKey",
                "pwd"
            ]
        );
        assert_eq!(
            Value::Object(split.masked.clone()),
            json!({
                "accessToken": MASK,
                "api_keys": MASK,
                "aws_secret_access_key": MASK,
                "clientSecret": MASK,
                "headers": {"Authorization": MASK, "Accept": "application/json"},
                "privateKey": MASK,
                "pwd": MASK,
                "username": "ada"
            })
        );
        // A list under a secret name is one secret, whole.
        assert_eq!(
            split.secrets.get(1),
            Some(&(
                vec!["api_keys".to_owned()],
                SubmittedSecret::New(json!(["k-1", "k-2"]))
            ))
        );
    }

    #[test]
    fn nested_secret_names_are_sealed() {
        let split = split(object(json!({
            "oauth": {"accessToken": "a-1", "token_url": "https://oauth2.example.com/token"},
            "client": {"id": "c-1", "secret": "s-1"},
            "smtp": {"host": "smtp.example.com", "auth": {"user": "ada", "pass": "p-1"}}
        })));
        assert_eq!(
            paths(&split),
            ["client.secret", "oauth.accessToken", "smtp.auth"]
        );
    }

    #[test]
    fn values_secret_by_shape_are_sealed_whatever_the_key() {
        let slack = format!("https://hooks.slack.com/services/T0/B0/{}", "x1".repeat(12));
        let config = object(json!({
            "cert_blob": PEM,
            "db_url": "postgres://u:p@h/db",
            "endpoint": "https://api.example.com/v1?api_key=abc123",
            "github": format!("ghp_{}", "a1".repeat(18)),
            "headers": {"X-Custom": "Bearer abc.def"},
            "hooks": ["https://example.com/ok", slack],
            "note": jwt(),
            "readable": "https://api.example.com/v1?page=2"
        }));
        let split = split(config.clone());
        assert_eq!(
            paths(&split),
            [
                "cert_blob",
                "db_url",
                "endpoint",
                "github",
                "headers.X-Custom",
                "hooks.1",
                "note"
            ]
        );
        assert_eq!(
            split.masked.get("hooks"),
            Some(&json!(["https://example.com/ok", MASK]))
        );
        let (masked, stored) = new_values(split);
        assert_eq!(reveal(masked, stored), config);
    }

    #[test]
    fn an_aws_secret_key_next_to_an_access_key_id_is_sealed() {
        let split = split(object(json!({
            "a": AWS_KEY_ID,
            "b": AWS_SECRET,
            "nested": {"b": AWS_SECRET},
            "region": "eu-west-1"
        })));
        assert_eq!(paths(&split), ["b"]);
        assert_eq!(split.masked.get("a"), Some(&json!(AWS_KEY_ID)));
        assert!(super::split(one("b", json!(AWS_SECRET))).secrets.is_empty());
    }

    #[test]
    fn name_value_pairs_and_bare_keys() {
        let split = split(object(json!({
            "headers": [
                {"name": "X-Api-Key", "value": "abc"},
                {"name": "Accept", "value": "application/json"}
            ],
            "key": "a1b2c3d4e5f6a7b8c9d0",
            "lookup": {"key": "X-Api-Key"},
            "params": [{"key": "access_token", "value": "t-1"}]
        })));
        assert_eq!(paths(&split), ["headers.0.value", "key", "params.0.value"]);
    }

    #[test]
    fn split_with_honours_explicit_paths() {
        let config = object(json!({
            "extra": {"nested": {"deep": 1}},
            "flag": true,
            "inboxes": [{"address": "a@x.io", "code": "c-1"}],
            "oauth": {"handle": "h", "refresh": "r-1"},
            "region": "eu",
            "tags": ["public", "private-ish"]
        }));
        assert!(split(config.clone()).secrets.is_empty());
        let explicit: Vec<SecretPath> = [
            "oauth.refresh",
            "inboxes.0.code",
            "extra",
            "flag",
            "tags.1",
            "missing.path",
            "inboxes.7",
        ]
        .into_iter()
        .filter_map(parse_path)
        .collect();
        assert_eq!(explicit.len(), 7);
        let split = split_with(config.clone(), &explicit);
        assert_eq!(
            paths(&split),
            ["extra", "inboxes.0.code", "oauth.refresh", "tags.1"]
        );
        assert_eq!(split.masked.get("extra"), Some(&json!(MASK)));
        assert_eq!(split.masked.get("flag"), Some(&json!(true)));
        assert_eq!(
            split.masked.get("oauth"),
            Some(&json!({"handle": "h", "refresh": MASK}))
        );
        let (masked, stored) = new_values(split);
        assert_eq!(reveal(masked, stored), config);
    }

    #[test]
    fn paths_parse_from_their_dotted_form() {
        assert_eq!(
            parse_path("oauth.refresh_token"),
            Some(vec!["oauth".to_owned(), "refresh_token".to_owned()])
        );
        assert_eq!(
            parse_path("inboxes.0.password").map(|path| display_path(&path)),
            Some("inboxes.0.password".to_owned())
        );
        for bad in ["", ".", "a..b", ".a", "a."] {
            assert_eq!(parse_path(bad), None, "{bad:?}");
        }
        let config = object(json!({"inboxes": [{"password": "p"}]}));
        let found =
            parse_path("inboxes.0.password").and_then(|path| value_at(&config, &path).cloned());
        assert_eq!(found, Some(json!("p")));
        let missing =
            parse_path("inboxes.1.password").and_then(|path| value_at(&config, &path).cloned());
        assert_eq!(missing, None);
        assert_eq!(value_at(&config, &[]), None);
    }

    #[test]
    fn split_masks_secrets_at_any_depth_and_reveal_restores_them() {
        let config = object(json!({
            "host": "smtp.example.com",
            "api_key": "k-1",
            "oauth": {"refresh_token": "r-1", "scopes": ["a"]},
            "inboxes": [{"address": "a@x.io", "password": "p-1"}],
            "token": null
        }));
        let split = split(config.clone());
        assert_eq!(
            Value::Object(split.masked.clone()),
            json!({
                "host": "smtp.example.com",
                "api_key": MASK,
                "oauth": {"refresh_token": MASK, "scopes": ["a"]},
                "inboxes": [{"address": "a@x.io", "password": MASK}],
                "token": null
            })
        );
        // Object keys come in sorted order (serde_json maps are ordered by key).
        assert_eq!(
            paths(&split),
            ["api_key", "inboxes.0.password", "oauth.refresh_token"]
        );
        let (masked, stored) = new_values(split);
        assert_eq!(stored.len(), 3, "no mask was submitted");
        assert_eq!(reveal(masked, stored), config);
    }

    #[test]
    fn a_posted_mask_means_keep() {
        let split = split(object(json!({"api_key": MASK, "password": "new"})));
        assert_eq!(split.secrets[0].1, SubmittedSecret::Keep);
        assert_eq!(split.secrets[1].1, SubmittedSecret::New(json!("new")));
    }

    #[test]
    fn the_mask_anywhere_means_keep() {
        let config = object(json!({
            "api_key": MASK,
            "list": ["a", MASK],
            "nested": {"note": MASK},
            "password": "new",
            "region": MASK
        }));
        let keep = |path: &[&str]| {
            (
                path.iter()
                    .map(|segment| (*segment).to_owned())
                    .collect::<SecretPath>(),
                SubmittedSecret::Keep,
            )
        };
        let expected = [
            keep(&["api_key"]),
            keep(&["list", "1"]),
            keep(&["nested", "note"]),
            (
                vec!["password".to_owned()],
                SubmittedSecret::New(json!("new")),
            ),
            keep(&["region"]),
        ];
        let split = split(config.clone());
        assert_eq!(split.secrets, expected);
        assert_eq!(split.masked, {
            let mut masked = config.clone();
            masked.insert("password".to_owned(), json!(MASK));
            masked
        });
        // Naming the place explicitly changes nothing: the mask is still "keep".
        let explicit = [vec!["nested".to_owned(), "note".to_owned()]];
        assert_eq!(split_with(config, &explicit).secrets, expected);
    }

    #[test]
    fn null_and_booleans_stay_readable_numbers_are_sealed() {
        let config = object(json!({
            "api_key": 0,
            "auth": false,
            "password_required": true,
            "token": null
        }));
        let split = split(config.clone());
        assert_eq!(paths(&split), ["api_key"]);
        let (masked, stored) = new_values(split);
        assert_eq!(reveal(masked, stored), config);
    }

    #[test]
    fn reveal_restores_everything_split_took_out() {
        let config = object(json!({
            "api_keys": ["k-1", "k-2"],
            "aws": {"id": AWS_KEY_ID, "b": AWS_SECRET},
            "custom": {"field": "c-1"},
            "host": "smtp.example.com",
            "note": format!("use {} for the tests", jwt()),
            "oauth": {"accessToken": "a-1", "token_url": "https://oauth2.example.com/token", "scopes": ["mail"]},
            "smtpPassword": "p-1"
        }));
        let split = split_with(
            config.clone(),
            &[vec!["custom".to_owned(), "field".to_owned()]],
        );
        assert_eq!(
            paths(&split),
            [
                "api_keys",
                "aws.b",
                "custom.field",
                "note",
                "oauth.accessToken",
                "smtpPassword"
            ]
        );
        let text = serde_json::to_string(&split.masked).unwrap_or_default();
        for leaked in ["k-1", "k-2", AWS_SECRET, "c-1", "a-1", "p-1", "eyJ"] {
            assert!(!text.contains(leaked), "{leaked} is readable in {text}");
        }
        assert!(text.contains("https://oauth2.example.com/token"));
        let (masked, stored) = new_values(split);
        assert_eq!(reveal(masked, stored), config);
    }

    #[test]
    fn depth_counts_nesting() {
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!({"a": {"b": {"c": {"d": 1}}}})), 4);
        assert_eq!(depth(&json!({"a": [{"b": 1}]})), 3);
    }
}
