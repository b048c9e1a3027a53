//! Recognising a credential by its value alone, whatever its key (rule 2 of the
//! [module doc](super)): authorization header values, JWTs, PEM private keys, well-known token
//! prefixes, URLs with a password, secret-named query parameters; and the AWS key shapes rule 3
//! pairs up. Also [`MASK`], the one value that stands for a stored secret instead of holding one.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use serde_json::Value;

use super::names::{NameClass, classify_name};

/// What a secret looks like in every response; posting it back keeps the stored value.
pub const MASK: &str = "********";

/// Prefixes of well-known credentials, with the least number of token characters
/// (`[A-Za-z0-9_.-]`) that must follow: GitHub, GitLab, Slack, Stripe, OpenAI-style `sk-`,
/// Google API keys and OAuth access tokens, SendGrid, npm, Shopify, Hugging Face.
pub const KNOWN_TOKEN_PREFIXES: &[(&str, usize)] = &[
    ("ghp_", 30),
    ("gho_", 30),
    ("ghu_", 30),
    ("ghs_", 30),
    ("ghr_", 30),
    ("github_pat_", 30),
    ("glpat-", 20),
    ("xoxb-", 10),
    ("xoxp-", 10),
    ("xoxa-", 10),
    ("xoxr-", 10),
    ("xoxs-", 10),
    ("xapp-", 10),
    ("sk_live_", 10),
    ("sk_test_", 10),
    ("rk_live_", 10),
    ("rk_test_", 10),
    ("whsec_", 10),
    ("sk-", 20),
    ("AIza", 35),
    ("ya29.", 20),
    ("SG.", 40),
    ("npm_", 30),
    ("shpat_", 20),
    ("shpss_", 20),
    ("shpca_", 20),
    ("shppa_", 20),
    ("hf_", 30),
];

/// URLs that are credentials by themselves (the token is part of the path): Slack and Discord
/// incoming webhooks.
pub const SECRET_URL_PREFIXES: &[&str] = &[
    "https://hooks.slack.com/services/",
    "https://hooks.slack.com/workflows/",
    "https://discord.com/api/webhooks/",
    "https://discordapp.com/api/webhooks/",
];

/// Whether a string is a credential by its shape, whatever its key: an HTTP authorization value
/// (`Bearer <token>`, `Basic <base64 of user:password>`, `Token <20+ chars>`, `Bot <20+ chars>`,
/// scheme in any case, optionally after `Authorization:`), a JWT (three or five base64url
/// segments whose header is a JSON object with `alg`), a PEM private key block (`-----BEGIN …
/// PRIVATE KEY-----`, OpenSSH, encrypted, PGP) or a PuTTY key, a token with a
/// [`KNOWN_TOKEN_PREFIXES`] prefix, a URL with a password (`postgres://user:pass@host/db`) or one
/// of [`SECRET_URL_PREFIXES`], or a query / connection string with a secret-named parameter
/// (`?api_key=…`, `Server=…;Password=…`). Tokens, JWTs and URLs are also found inside longer
/// text. Plain e-mails, host names, URLs without a password, UUIDs and dates are not secrets.
pub fn is_secret_value(value: &str) -> bool {
    let text = value.trim();
    if text.is_empty() || text == MASK {
        return false;
    }
    is_auth_header(text)
        || has_private_key_block(text)
        || has_secret_parameter(text)
        || text.split_whitespace().any(|word| {
            let word = word.trim_matches([
                '"', '\'', '`', '(', ')', '<', '>', '[', ']', '{', '}', ',', ';',
            ]);
            is_credential_word(word)
                || is_credential_word(word.trim_end_matches(['.', ':', '!', '?']))
        })
}

/// A single word that is a credential: JWT, known prefix, URL with a password, webhook URL.
fn is_credential_word(word: &str) -> bool {
    !word.is_empty()
        && (has_known_prefix(word)
            || is_jwt(word)
            || is_url_with_password(word)
            || is_secret_url(word))
}

fn strip_prefix_ignoring_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .and_then(|_| text.get(prefix.len()..))
}

fn is_auth_header(text: &str) -> bool {
    let text = strip_prefix_ignoring_case(text, "authorization:").map_or(text, str::trim_start);
    let mut parts = text.split_whitespace();
    let (Some(scheme), Some(credential), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => looks_like_credential(credential, 1),
        "token" | "bot" => looks_like_credential(credential, 20),
        "basic" => is_basic_credential(credential),
        _ => false,
    }
}

/// A token68 credential: `[A-Za-z0-9-._~+/]+=*` with a digit or punctuation, or 16+ characters
/// (so `Bearer token` or `Token expired` are prose, `Bearer abc.def` is a credential).
fn looks_like_credential(credential: &str, min_length: usize) -> bool {
    let body = credential.trim_end_matches('=');
    !body.is_empty()
        && credential.len() >= min_length
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '+' | '/'))
        && (credential.len() >= 16 || credential.chars().any(|c| !c.is_ascii_alphabetic()))
}

/// `Basic` credentials are base64 of `user:password` (so `Basic plan` is prose).
fn is_basic_credential(credential: &str) -> bool {
    STANDARD_NO_PAD
        .decode(credential.trim_end_matches('='))
        .is_ok_and(|bytes| bytes.contains(&b':'))
}

fn has_private_key_block(text: &str) -> bool {
    text.contains("PuTTY-User-Key-File-")
        || text.match_indices("-----BEGIN ").any(|(at, begin)| {
            text.get(at + begin.len()..)
                .and_then(|rest| rest.lines().next())
                .is_some_and(|label| label.contains("PRIVATE KEY"))
        })
}

/// `name=value` pieces of a query string, fragment or connection string, one of which has a
/// secret name (`?access_token=…`, `Password=…;`) or a credential as its value.
fn has_secret_parameter(text: &str) -> bool {
    text.contains('=')
        && text.split(['&', ';', '?', '#', '\n', '\r']).any(|piece| {
            let Some((name, value)) = piece.split_once('=') else {
                return false;
            };
            let (name, value) = (name.trim(), value.trim());
            if value.is_empty() {
                return false;
            }
            let named = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '))
                && match classify_name(name) {
                    NameClass::Secret => true,
                    NameClass::BareKey => looks_opaque(value),
                    NameClass::Readable => false,
                };
            named || is_credential_word(value)
        })
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

fn has_known_prefix(word: &str) -> bool {
    KNOWN_TOKEN_PREFIXES.iter().any(|&(prefix, min_tail)| {
        word.strip_prefix(prefix)
            .is_some_and(|tail| tail.len() >= min_tail && tail.chars().all(is_token_char))
    })
}

fn is_base64url_segment(segment: &str) -> bool {
    segment
        .trim_end_matches('=')
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A JWS (`header.payload.signature`, the signature may be empty for `alg: none`) or a JWE (five
/// segments), recognised by its header: base64url of a JSON object with an `alg` member.
fn is_jwt(word: &str) -> bool {
    if word.len() < 10 || !word.contains('.') {
        return false;
    }
    let segments: Vec<&str> = word.split('.').collect();
    let shaped = match segments.as_slice() {
        [header, payload, _] => !header.is_empty() && !payload.is_empty(),
        [header, _, _, _, _] => !header.is_empty(),
        _ => false,
    };
    shaped
        && segments.iter().all(|segment| is_base64url_segment(segment))
        && segments
            .first()
            .and_then(|header| URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok())
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .is_some_and(|header| {
                header
                    .as_object()
                    .is_some_and(|map| map.contains_key("alg"))
            })
}

/// `scheme://user:password@host…` with a non-empty password (the user may be empty).
fn is_url_with_password(word: &str) -> bool {
    let Some((scheme, rest)) = word.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return false;
    }
    let before_query = rest.split(['?', '#']).next().unwrap_or_default();
    let Some((userinfo, host)) = before_query.rsplit_once('@') else {
        return false;
    };
    let Some((user, password)) = userinfo.split_once(':') else {
        return false;
    };
    !user.contains('/') && !password.is_empty() && !host.is_empty()
}

fn is_secret_url(word: &str) -> bool {
    SECRET_URL_PREFIXES.iter().any(|prefix| {
        word.strip_prefix(*prefix)
            .is_some_and(|tail| tail.len() >= 8)
    })
}

/// An opaque token, as found under a bare `key`: 16+ characters of `[A-Za-z0-9-_.+/=]` with both
/// letters and digits (`X-Api-Key`, `created_at` or a date are not).
pub(super) fn looks_opaque(text: &str) -> bool {
    text.len() >= 16
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '/' | '='))
        && text.chars().any(|c| c.is_ascii_digit())
        && text.chars().any(|c| c.is_ascii_alphabetic())
}

/// `AKIA`/`ASIA` followed by 16 upper-case letters or digits.
pub(super) fn is_aws_access_key_id(text: &str) -> bool {
    text.len() == 20
        && (text.starts_with("AKIA") || text.starts_with("ASIA"))
        && text
            .bytes()
            .skip(4)
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Exactly 40 characters of `[A-Za-z0-9/+=]`, the shape of an AWS secret access key.
pub(super) fn is_aws_secret_key(text: &str) -> bool {
    text.len() == 40
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'+' | b'='))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::secrets::tests::{AWS_SECRET, PEM, jwt};
    use base64::engine::general_purpose::STANDARD;

    #[test]
    fn credentials_are_recognised_by_their_shape() {
        let jwt = jwt();
        let basic = format!("Basic {}", STANDARD.encode("user:pass"));
        let secrets = [
            "Bearer abc.def".to_owned(),
            format!("bearer {jwt}"),
            format!("Authorization: Bearer {jwt}"),
            basic,
            format!("Token {}", "0a".repeat(20)),
            format!("Bot {}", "Ab3.".repeat(6)),
            jwt.clone(),
            format!("use {jwt} for the tests"),
            PEM.to_owned(),
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----".to_owned(),
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIE\n-----END ENCRYPTED PRIVATE KEY-----"
                .to_owned(),
            format!("ghp_{}", "a1".repeat(18)),
            format!("github_pat_{}", "A1_".repeat(12)),
            format!("glpat-{}", "z9".repeat(10)),
            format!("xoxb-{}", "1234-abcd-".repeat(2)),
            format!("sk_live_{}", "51Hp".repeat(4)),
            format!("sk-proj-{}", "x1".repeat(12)),
            format!("AIza{}", "B2".repeat(18)),
            format!("ya29.{}", "a0".repeat(12)),
            "postgres://u:p@h/db".to_owned(),
            "redis://:pw@cache:6379/0".to_owned(),
            format!("https://discord.com/api/webhooks/1/{}", "t".repeat(20)),
            "https://api.example.com/v1?api_key=abc123".to_owned(),
            "https://example.com/callback#access_token=abc123&state=x".to_owned(),
            "Server=db;User Id=sa;Password=p4ss;".to_owned(),
        ];
        for value in &secrets {
            assert!(is_secret_value(value), "{value} should be a secret");
        }
        let plain = [
            "",
            MASK,
            "me@example.com",
            "smtp.example.com",
            "https://example.com/path?x=1&response_type=code",
            "http://user@host/",
            "mailto:me@example.com",
            "550e8400-e29b-41d4-a716-446655440000",
            "2024-01-01T00:00:00Z",
            "Basic plan",
            "Bearer token",
            "Token expired",
            "hello world",
            "a.b.c",
            "v1.2.3",
            "sk-short",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
            AWS_SECRET,
        ];
        for value in plain {
            assert!(!is_secret_value(value), "{value} should stay readable");
        }
    }
}
