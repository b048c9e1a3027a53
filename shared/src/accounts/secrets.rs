//! Which configuration fields are secrets, and how a configuration is split into a public part
//! (stored readable, secrets masked) and its secrets (stored only inside a KMS envelope).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a secret looks like in every response; posting it back keeps the stored value.
pub const MASK: &str = "********";

/// Configuration keys that are secrets, compared after lower-casing and turning `-` into `_`.
pub const SECRET_FIELD_NAMES: &[&str] = &[
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "bearer_token",
    "auth_token",
    "session_token",
    "api_key",
    "apikey",
    "api_secret",
    "secret",
    "secret_key",
    "client_secret",
    "consumer_secret",
    "access_token_secret",
    "webhook_secret",
    "signing_secret",
    "password",
    "passwd",
    "passphrase",
    "private_key",
    "credentials",
];

/// Suffixes that also make a key a secret (`smtp_password`, `bot_token`, `stripe_api_key`, ...).
pub const SECRET_FIELD_SUFFIXES: &[&str] = &[
    "_token",
    "_secret",
    "_password",
    "_api_key",
    "_apikey",
    "_private_key",
    "_secret_key",
];

/// Whether a configuration key names a credential.
pub fn is_secret_field(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    SECRET_FIELD_NAMES.contains(&key.as_str())
        || SECRET_FIELD_SUFFIXES
            .iter()
            .any(|suffix| key.ends_with(suffix))
}

/// Location of a secret inside a configuration: object keys and array indices from the root.
pub type SecretPath = Vec<String>;

/// Dotted form of a path, as listed in `secret_fields` (`oauth.refresh_token`, `inboxes.0.password`).
pub fn display_path(path: &SecretPath) -> String {
    path.join(".")
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
    /// Every secret with its path, objects visited in key order.
    pub secrets: Vec<(SecretPath, SubmittedSecret)>,
}

/// Splits a configuration; a secret-named key with a `null` value is not a secret.
pub fn split(mut configuration: Map<String, Value>) -> SplitConfiguration {
    let mut secrets = Vec::new();
    let mut path = Vec::new();
    split_object(&mut configuration, &mut path, &mut secrets);
    SplitConfiguration {
        masked: configuration,
        secrets,
    }
}

fn split_object(
    object: &mut Map<String, Value>,
    path: &mut SecretPath,
    secrets: &mut Vec<(SecretPath, SubmittedSecret)>,
) {
    for (key, value) in object.iter_mut() {
        path.push(key.clone());
        if is_secret_field(key) && !value.is_null() {
            let submitted = if value.as_str() == Some(MASK) {
                SubmittedSecret::Keep
            } else {
                SubmittedSecret::New(std::mem::replace(value, Value::String(MASK.into())))
            };
            *value = Value::String(MASK.into());
            secrets.push((path.clone(), submitted));
        } else {
            split_value(value, path, secrets);
        }
        path.pop();
    }
}

fn split_value(
    value: &mut Value,
    path: &mut SecretPath,
    secrets: &mut Vec<(SecretPath, SubmittedSecret)>,
) {
    match value {
        Value::Object(object) => split_object(object, path, secrets),
        Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                path.push(index.to_string());
                split_value(item, path, secrets);
                path.pop();
            }
        }
        _ => {}
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
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            // Every test input is an object literal.
            _ => Map::new(),
        }
    }

    #[test]
    fn secret_names_follow_the_documented_list() {
        for key in [
            "api_key",
            "Access-Token",
            "smtp_password",
            "client_secret",
            "bot_token",
        ] {
            assert!(is_secret_field(key), "{key}");
        }
        for key in [
            "username",
            "host",
            "max_tokens",
            "token_url_hint",
            "calendar_id",
        ] {
            assert!(!is_secret_field(key), "{key}");
        }
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
        let paths: Vec<String> = split.secrets.iter().map(|(p, _)| display_path(p)).collect();
        // Object keys come in sorted order (serde_json maps are ordered by key).
        assert_eq!(
            paths,
            ["api_key", "inboxes.0.password", "oauth.refresh_token"]
        );
        let stored = split
            .secrets
            .into_iter()
            .filter_map(|(path, submitted)| match submitted {
                SubmittedSecret::New(value) => Some(StoredSecret { path, value }),
                SubmittedSecret::Keep => None,
            })
            .collect::<Vec<_>>();
        assert_eq!(stored.len(), 3, "no mask was submitted");
        assert_eq!(reveal(split.masked, stored), config);
    }

    #[test]
    fn a_posted_mask_means_keep() {
        let split = split(object(json!({"api_key": MASK, "password": "new"})));
        assert_eq!(split.secrets[0].1, SubmittedSecret::Keep);
        assert_eq!(split.secrets[1].1, SubmittedSecret::New(json!("new")));
    }

    #[test]
    fn depth_counts_nesting() {
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!({"a": {"b": {"c": {"d": 1}}}})), 4);
        assert_eq!(depth(&json!({"a": [{"b": 1}]})), 3);
    }
}
