//! The old stack's Fernet ciphertext: found by its shape wherever it is in a configuration (the
//! whole column, or any string inside it) and decrypted with the old key. Pure: no I/O.

use fernet::Fernet;
use serde_json::{Map, Value};

use super::MigrationError;

/// Whether a string has the shape of a Fernet token (version byte 0x80, at least 57 bytes,
/// URL-safe base64), whatever key made it.
fn looks_like_fernet(text: &str) -> bool {
    use base64::Engine;
    if !text.starts_with("gAAAAA") || text.len() < 76 {
        return false;
    }
    base64::engine::general_purpose::URL_SAFE
        .decode(text)
        .is_ok_and(|bytes| bytes.len() >= 57 && bytes[0] == 0x80)
}

/// Every Fernet-shaped string in a configuration (the whole value, or nested strings).
fn fernet_tokens(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(text) if looks_like_fernet(text) => found.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| fernet_tokens(item, found)),
        Value::Object(map) => map.values().for_each(|item| fernet_tokens(item, found)),
        _ => {}
    }
}

/// `Err` when there is ciphertext and the key verifies none of it: almost surely the wrong key,
/// and the run must stop before anything is written.
pub(super) fn check_key<'a>(
    key: &Fernet,
    configurations: impl IntoIterator<Item = &'a Value>,
) -> Result<(), MigrationError> {
    let mut tokens = Vec::new();
    for configuration in configurations {
        fernet_tokens(configuration, &mut tokens);
    }
    if !tokens.is_empty() && !tokens.iter().any(|token| key.decrypt(token).is_ok()) {
        return Err(MigrationError::WrongKey(tokens.len()));
    }
    Ok(())
}

/// Why a configuration could not be decrypted.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Undecryptable {
    /// A Fernet token did not verify under the key (at this dotted path).
    Token(String),
    /// The decrypted column is not a JSON object.
    NotAnObject,
}

/// The plaintext configuration: a whole-column token is decrypted and parsed; nested tokens
/// are replaced by their plaintext (parsed as JSON when it is an object or a list).
pub(super) fn decrypt_configuration(
    key: &Fernet,
    configuration: Value,
) -> Result<Map<String, Value>, Undecryptable> {
    let value = match configuration {
        Value::String(token) if looks_like_fernet(&token) => {
            let plaintext = key
                .decrypt(&token)
                .map_err(|_| Undecryptable::Token("configuration".into()))?;
            serde_json::from_slice(&plaintext).map_err(|_| Undecryptable::NotAnObject)?
        }
        Value::Null => Value::Object(Map::new()),
        other => other,
    };
    let mut value = decrypt_nested(key, value, "configuration")?;
    match value.take() {
        Value::Object(map) => Ok(map),
        _ => Err(Undecryptable::NotAnObject),
    }
}

fn decrypt_nested(key: &Fernet, value: Value, path: &str) -> Result<Value, Undecryptable> {
    Ok(match value {
        Value::String(token) if looks_like_fernet(&token) => {
            let plaintext = key
                .decrypt(&token)
                .map_err(|_| Undecryptable::Token(path.to_owned()))?;
            let text =
                String::from_utf8(plaintext).map_err(|_| Undecryptable::Token(path.to_owned()))?;
            match serde_json::from_str::<Value>(&text) {
                Ok(structured @ (Value::Object(_) | Value::Array(_))) => structured,
                _ => Value::String(text),
            }
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(name, item)| {
                    let nested = format!("{path}.{name}");
                    decrypt_nested(key, item, &nested).map(|item| (name, item))
                })
                .collect::<Result<_, _>>()?,
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(index, item)| decrypt_nested(key, item, &format!("{path}.{index}")))
                .collect::<Result<_, _>>()?,
        ),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key() -> Fernet {
        Fernet::new(&Fernet::generate_key()).unwrap()
    }

    #[test]
    fn fernet_tokens_are_known_by_their_shape_only() {
        let token = key().encrypt(b"secret");
        assert!(looks_like_fernet(&token));
        assert!(!looks_like_fernet("gAAAAA-too-short"));
        assert!(!looks_like_fernet(
            "sk_live_abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123"
        ));
        let mut found = Vec::new();
        fernet_tokens(
            &json!({"a": token, "b": ["plain", token], "c": {"d": token}, "e": 1}),
            &mut found,
        );
        assert_eq!(found.len(), 3);
    }

    #[test]
    fn a_whole_column_token_is_decrypted_and_parsed() {
        let key = key();
        let token = key.encrypt(br#"{"api_key":"sk_live_1","region":"eu"}"#);
        assert_eq!(
            decrypt_configuration(&key, Value::String(token)),
            Ok(json!({"api_key": "sk_live_1", "region": "eu"})
                .as_object()
                .unwrap()
                .clone())
        );
        let list = key.encrypt(b"[1, 2]");
        assert_eq!(
            decrypt_configuration(&key, Value::String(list)),
            Err(Undecryptable::NotAnObject)
        );
    }

    #[test]
    fn nested_tokens_are_replaced_by_their_plaintext() {
        let key = key();
        let configuration = json!({
            "password": key.encrypt(b"hunter2"),
            "oauth": key.encrypt(br#"{"refresh_token": "r1"}"#),
            "inboxes": [{"pin": key.encrypt(b"1234")}],
            "host": "imap.example.com",
        });
        let plain = decrypt_configuration(&key, configuration).unwrap();
        assert_eq!(
            Value::Object(plain),
            json!({"password": "hunter2", "oauth": {"refresh_token": "r1"},
                "inboxes": [{"pin": "1234"}], "host": "imap.example.com"})
        );
        assert_eq!(decrypt_configuration(&key, Value::Null), Ok(Map::new()));
    }

    #[test]
    fn a_token_under_another_key_fails_at_its_path() {
        let (key, other) = (key(), self::key());
        let configuration = json!({"inboxes": [{"pin": other.encrypt(b"1234")}]});
        assert_eq!(
            decrypt_configuration(&key, configuration),
            Err(Undecryptable::Token("configuration.inboxes.0.pin".into()))
        );
        assert_eq!(
            decrypt_configuration(&key, Value::String(other.encrypt(b"{}"))),
            Err(Undecryptable::Token("configuration".into()))
        );
    }

    #[test]
    fn the_key_must_open_at_least_one_token() {
        let (key, other) = (key(), self::key());
        let ours = json!({"password": key.encrypt(b"x")});
        let theirs = json!({"password": other.encrypt(b"y")});
        assert!(check_key(&key, [&ours, &theirs]).is_ok());
        assert!(matches!(
            check_key(&key, [&theirs, &theirs]),
            Err(MigrationError::WrongKey(2))
        ));
        // Nothing encrypted: any key will do.
        assert!(check_key(&key, [&json!({"region": "eu"})]).is_ok());
    }
}
