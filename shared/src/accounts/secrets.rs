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

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a secret looks like in every response; posting it back keeps the stored value.
pub const MASK: &str = "********";

/// Stems that seal a key wherever they appear in it, even inside a glued word and whatever
/// follows: `aws_secret_access_key`, `clientSecret`, `smtppassword`, `password_hash`,
/// `credentials_json`, `secret_name`. These words hardly ever describe anything but a credential,
/// so no describing word after them unseals the key.
pub const SECRET_STEMS: &[&str] = &[
    "secret",
    "password",
    "passwd",
    "passphrase",
    "credential",
    "creds",
];

/// Ordinary words that contain a [`SECRET_STEMS`] stem but name no credential.
pub const NOT_SECRET_WORDS: &[&str] = &["secretary", "secretaries", "secretariat"];

/// Credential nouns: a key ending with one is secret (`token`, `tokens`, `accessToken`,
/// `bot_token`, `headers.Authorization`, `Set-Cookie`, `jwt`). After the noun, only a word of
/// [`READABLE_TAILS`] at the end makes the key a description of the credential rather than the
/// credential (`token_url`, `token_type`, `cookie_name`); any other word keeps it sealed
/// (`authorization_code`, `token_cache`).
pub const SECRET_NOUNS: &[&str] = &[
    "token",
    "tokens",
    "authorization",
    "cookie",
    "cookies",
    "jwt",
    "passcode",
    "passcodes",
    "passkey",
    "passkeys",
];

/// `key`/`keys` after any qualifier is a credential (`api_key`, `privateKey`, `X-Api-Key`,
/// `access_key`, `signing_key`, `license_key`, `ssh_key`, `api_keys`), unless the qualifier is in
/// [`PUBLIC_KEY_QUALIFIERS`] (or, for `keys`, a [`TOKEN_COUNT_QUALIFIERS`] word: `max_keys`); the
/// same [`READABLE_TAILS`] rule applies after it (`access_key_id`, `kms_key_arn`, `api_key_name`
/// stay readable). A bare `key`/`keys` is ambiguous (S3 object keys,
/// name/value pairs): it is sealed only when its value is an opaque token (16+ characters of
/// letters and digits without spaces).
pub const KEY_NOUNS: &[&str] = &["key", "keys"];

/// Qualifiers that make a `key` public or structural, not a credential: `public_key`,
/// `publishable_key`, a reCAPTCHA `site_key`, database `sort_key` / `partition_key`, ...
pub const PUBLIC_KEY_QUALIFIERS: &[&str] = &[
    "public",
    "publishable",
    "site",
    "partition",
    "sort",
    "range",
    "hash",
    "object",
    "bucket",
    "cache",
    "idempotency",
    "dedup",
    "deduplication",
    "group",
    "lookup",
    "index",
    "field",
    "column",
    "attribute",
    "property",
    "map",
    "translation",
    "locale",
    "label",
    "cursor",
    "pagination",
    "search",
    "foreign",
    "composite",
    "row",
    "message",
    "event",
    "entry",
    "item",
    "record",
    "shortcut",
    "hot",
];

/// Short or everyday words that are a credential only when they end the key, or stand right
/// before `code`/`codes`: `pwd`, `db_pass`, nodemailer's `auth.pass`, `pin`, `pin_code`, `bearer`,
/// `otp`, `totp`, a whole `session`; `auth` only as the first word or after [`AUTH_QUALIFIERS`]
/// (`auth`, `auth_code`, `basic_auth`, but not `smtp_auth`). `pass_through`, `session_timeout`,
/// `auth_type` stay readable.
pub const WEAK_SECRET_NOUNS: &[&str] = &[
    "pwd", "pass", "pin", "auth", "bearer", "otp", "totp", "session",
];

/// Words before `auth` that make it a credential (`basic_auth`, `proxy_auth`, `api_auth`).
pub const AUTH_QUALIFIERS: &[&str] =
    &["basic", "http", "https", "proxy", "bearer", "digest", "api"];

/// Two-word credential nouns, with the [`SECRET_NOUNS`] tail rule: a session id is a bearer
/// credential (`session_id`, `sessionId`, `sessionid`); 2FA recovery and backup codes are too.
pub const SECRET_PHRASES: &[[&str; 2]] = &[
    ["session", "id"],
    ["recovery", "code"],
    ["recovery", "codes"],
    ["backup", "code"],
    ["backup", "codes"],
];

/// Words right before `token`/`tokens` (or `keys`) that make it a count, not a credential:
/// `max_tokens`, `maxOutputTokens`, `prompt_tokens`, `total_tokens`, `max_keys`.
pub const TOKEN_COUNT_QUALIFIERS: &[&str] = &[
    "max",
    "maximum",
    "min",
    "minimum",
    "num",
    "number",
    "total",
    "prompt",
    "completion",
    "input",
    "output",
    "used",
    "remaining",
    "context",
    "reasoning",
    "cached",
    "reserved",
    "budget",
    "thinking",
    "response",
    "generated",
    "per",
];

/// Words that, ending a key after a credential noun, describe the credential instead of holding
/// it: where to get it (`token_url`, `token_endpoint`, `authorization_uri`), what it is
/// (`token_type`, `key_id`, `access_key_id`, `api_key_name`), when it expires (`token_expires_at`,
/// `token_ttl`, `token_expiry`), how much (`token_count`, `token_limit`), or a hint (`token_hint`).
pub const READABLE_TAILS: &[&str] = &[
    "url",
    "urls",
    "uri",
    "uris",
    "endpoint",
    "endpoints",
    "host",
    "hostname",
    "domain",
    "path",
    "file",
    "filename",
    "dir",
    "location",
    "type",
    "types",
    "kind",
    "format",
    "scheme",
    "method",
    "mode",
    "style",
    "id",
    "ids",
    "identifier",
    "arn",
    "arns",
    "alias",
    "policy",
    "spec",
    "name",
    "names",
    "label",
    "hint",
    "hints",
    "prefix",
    "suffix",
    "param",
    "parameter",
    "field",
    "count",
    "limit",
    "limits",
    "length",
    "len",
    "size",
    "used",
    "remaining",
    "at",
    "on",
    "date",
    "time",
    "timestamp",
    "expires",
    "expiry",
    "expiration",
    "ttl",
    "lifetime",
    "age",
    "seconds",
    "secs",
    "ms",
    "minutes",
    "hours",
    "days",
    "interval",
    "timeout",
    "scope",
    "scopes",
    "audience",
    "issuer",
    "algorithm",
    "alg",
    "version",
    "enabled",
    "required",
    "samesite",
    "secure",
    "httponly",
    "user",
    "username",
    "email",
    "status",
    "provider",
    "source",
    "fingerprint",
];

/// Trailing words that say how or where a credential is kept, not what it is; they are dropped
/// before the nouns are matched, so `api_key_prod`, `token_value`, `private_key_pem`,
/// `auth_header`, `password_old` are still credentials.
pub const IGNORED_TRAILING_WORDS: &[&str] = &[
    "value",
    "values",
    "val",
    "string",
    "str",
    "raw",
    "plain",
    "plaintext",
    "text",
    "base",
    "hex",
    "pem",
    "der",
    "json",
    "data",
    "blob",
    "bytes",
    "content",
    "contents",
    "encoded",
    "enc",
    "encrypted",
    "header",
    "headers",
    "literal",
    "old",
    "new",
    "prev",
    "previous",
    "current",
    "curr",
    "next",
    "backup",
    "primary",
    "secondary",
    "alt",
    "alternate",
    "fallback",
    "override",
    "live",
    "test",
    "prod",
    "production",
    "dev",
    "development",
    "staging",
    "stage",
    "sandbox",
    "local",
    "default",
    "temp",
    "tmp",
];

/// Extra words, besides every list above, used only to cut glued lower-case keys into words
/// (`accesstoken` → `access token`, `sessionid` → `session id`, `mailgunapikey` →
/// `mailgun api key`). A glued word is cut when it spells two or more vocabulary words, or when
/// its longest suffix spells two or more vocabulary words of three letters or more; a word ending
/// in `token`/`tokens` is always cut there (`githubtoken`).
pub const GLUE_WORDS: &[&str] = &[
    "api",
    "access",
    "oauth",
    "client",
    "private",
    "refresh",
    "app",
    "bot",
    "consumer",
    "webhook",
    "signing",
    "master",
    "db",
    "smtp",
    "imap",
    "admin",
    "root",
    "service",
    "account",
    "encryption",
    "license",
    "ssh",
    "hmac",
    "shared",
    "storage",
    "subscription",
    "integration",
    "server",
    "personal",
    "mail",
    "login",
    "code",
    "codes",
    "recovery",
];

/// Keys (compared after [`normalise_key`], joined with `_`) whose string value names the
/// sibling `value` in a name/value pair: `{"name": "X-Api-Key", "value": "…"}` seals the value
/// when the name is a secret key name.
pub const PAIR_LABEL_KEYS: &[&str] = &[
    "name",
    "key",
    "header",
    "header_name",
    "field",
    "param",
    "parameter",
];

/// Keys holding the value of a name/value pair (see [`PAIR_LABEL_KEYS`]).
pub const PAIR_VALUE_KEYS: &[&str] = &["value", "values", "val"];

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

/// Every vocabulary list, for cutting glued words.
const DICTIONARY: &[&[&str]] = &[
    SECRET_STEMS,
    SECRET_NOUNS,
    KEY_NOUNS,
    PUBLIC_KEY_QUALIFIERS,
    WEAK_SECRET_NOUNS,
    AUTH_QUALIFIERS,
    TOKEN_COUNT_QUALIFIERS,
    READABLE_TAILS,
    IGNORED_TRAILING_WORDS,
    GLUE_WORDS,
];

/// Shortest piece a glued word is cut into.
const MIN_GLUED_PIECE: usize = 2;

/// Longest piece a glued word is cut into (the longest vocabulary word is shorter).
const MAX_GLUED_PIECE: usize = 16;

/// Longer words are not cut (bounds the work per key).
const MAX_GLUED_WORD: usize = 48;

/// Cuts a key into lower-case words: at `-`, `_`, `.`, spaces and any other non-alphanumeric
/// character, where a lower-case letter meets an upper-case one (`accessToken`), before the last
/// capital of an acronym (`APIKey` → `api`, `key`; `XApiKey` → `x`, `api`, `key`), and where
/// letters meet digits (`oauth2Token` → `oauth`, `2`, `token`). Digit-only words are ignored by
/// the secret rule.
pub fn normalise_key(key: &str) -> Vec<String> {
    let chars: Vec<char> = key.chars().collect();
    let mut words = Vec::new();
    let mut current = String::new();
    for (index, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            flush_word(&mut words, &mut current);
            continue;
        }
        if let Some(&previous) = index.checked_sub(1).and_then(|i| chars.get(i))
            && previous.is_alphanumeric()
        {
            let next = chars.get(index + 1).copied();
            let boundary = (previous.is_lowercase() && c.is_uppercase())
                || previous.is_numeric() != c.is_numeric()
                || (previous.is_uppercase()
                    && c.is_uppercase()
                    && next.is_some_and(char::is_lowercase));
            if boundary {
                flush_word(&mut words, &mut current);
            }
        }
        current.extend(c.to_lowercase());
    }
    flush_word(&mut words, &mut current);
    words
}

fn flush_word(words: &mut Vec<String>, current: &mut String) {
    if !current.is_empty() {
        words.push(std::mem::take(current));
    }
}

fn in_dictionary(word: &str) -> bool {
    DICTIONARY.iter().any(|list| list.contains(&word))
        || SECRET_PHRASES.iter().any(|phrase| phrase.contains(&word))
}

/// For every start offset of `word`, the fewest dictionary words spelling the rest of it.
fn fewest_words(word: &str) -> Vec<Option<Vec<&str>>> {
    let length = word.len();
    let mut best: Vec<Option<Vec<&str>>> = vec![None; length + 1];
    if let Some(end) = best.last_mut() {
        *end = Some(Vec::new());
    }
    for start in (0..length).rev() {
        let mut chosen: Option<Vec<&str>> = None;
        let last_end = length.min(start + MAX_GLUED_PIECE);
        for end in (start + MIN_GLUED_PIECE..=last_end).rev() {
            let Some(piece) = word.get(start..end) else {
                continue;
            };
            if !in_dictionary(piece) {
                continue;
            }
            let Some(Some(rest)) = best.get(end) else {
                continue;
            };
            if chosen
                .as_ref()
                .is_none_or(|current| rest.len() + 1 < current.len())
            {
                chosen = Some(std::iter::once(piece).chain(rest.iter().copied()).collect());
            }
        }
        if let Some(slot) = best.get_mut(start) {
            *slot = chosen;
        }
    }
    best
}

/// Cuts a glued lower-case word on the vocabulary (see [`GLUE_WORDS`]).
fn expand_glued(word: String) -> Vec<String> {
    cut_glued(&word).unwrap_or_else(|| vec![word])
}

fn cut_glued(word: &str) -> Option<Vec<String>> {
    if word.len() < 2 * MIN_GLUED_PIECE
        || word.len() > MAX_GLUED_WORD
        || !word.bytes().all(|b| b.is_ascii_lowercase())
        || in_dictionary(word)
    {
        return None;
    }
    let best = fewest_words(word);
    // The whole word or, failing that, its longest suffix spelt with two or more words; after an
    // unknown head only with 3+ letter words (so `monkey` is not `m on key`).
    let spelt = best
        .iter()
        .enumerate()
        .find_map(|(start, words)| match words {
            Some(words)
                if words.len() >= 2
                    && (start == 0 || words.iter().all(|piece| piece.len() > MIN_GLUED_PIECE)) =>
            {
                Some((start, words))
            }
            _ => None,
        });
    if let Some((start, words)) = spelt {
        let head = word
            .get(..start)
            .filter(|head| !head.is_empty())
            .map(str::to_owned);
        return Some(
            head.into_iter()
                .chain(words.iter().map(|piece| (*piece).to_owned()))
                .collect(),
        );
    }
    ["tokens", "token"].into_iter().find_map(|noun| {
        word.strip_suffix(noun)
            .filter(|head| !head.is_empty())
            .map(|head| vec![head.to_owned(), noun.to_owned()])
    })
}

/// The words the vocabulary is matched against: [`normalise_key`], digits dropped, glued words cut.
fn vocabulary_words(key: &str) -> Vec<String> {
    normalise_key(key)
        .into_iter()
        .filter(|word| !word.chars().all(char::is_numeric))
        .flat_map(expand_glued)
        .collect()
}

fn has_secret_stem(word: &str) -> bool {
    !NOT_SECRET_WORDS.contains(&word) && SECRET_STEMS.iter().any(|stem| word.contains(*stem))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameClass {
    /// The key names a credential.
    Secret,
    /// A bare `key`/`keys`: secret when the value looks like an opaque token.
    BareKey,
    /// Not a credential by name.
    Readable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strength {
    /// Secret unless a readable tail follows.
    Strong,
    /// Secret only at the end, or before `code`/`codes`.
    Weak,
}

/// Whether the last word of `head` ends a credential noun, and how strongly.
fn occurrence(head: &[&str]) -> Option<Strength> {
    let (&noun, earlier) = head.split_last()?;
    let before = earlier.last().copied();
    if KEY_NOUNS.contains(&noun) {
        return before
            .filter(|qualifier| {
                let counted = noun == "keys" && TOKEN_COUNT_QUALIFIERS.contains(qualifier);
                !counted && !PUBLIC_KEY_QUALIFIERS.contains(qualifier)
            })
            .map(|_| Strength::Strong);
    }
    if SECRET_NOUNS.contains(&noun) {
        let counted = matches!(noun, "token" | "tokens")
            && before.is_some_and(|qualifier| TOKEN_COUNT_QUALIFIERS.contains(&qualifier));
        return (!counted).then_some(Strength::Strong);
    }
    if let Some(before) = before
        && SECRET_PHRASES
            .iter()
            .any(|[first, second]| *first == before && *second == noun)
    {
        return Some(Strength::Strong);
    }
    if WEAK_SECRET_NOUNS.contains(&noun) {
        let qualified =
            noun != "auth" || before.is_none_or(|qualifier| AUTH_QUALIFIERS.contains(&qualifier));
        return qualified.then_some(Strength::Weak);
    }
    None
}

fn classify_name(key: &str) -> NameClass {
    let owned = vocabulary_words(key);
    if owned.iter().any(|word| has_secret_stem(word)) {
        return NameClass::Secret;
    }
    let mut words: Vec<&str> = owned.iter().map(String::as_str).collect();
    while words.len() > 1
        && words
            .last()
            .is_some_and(|last| IGNORED_TRAILING_WORDS.contains(last))
    {
        words.pop();
    }
    if let [only] = words.as_slice()
        && KEY_NOUNS.contains(only)
    {
        return NameClass::BareKey;
    }
    for end in (0..words.len()).rev() {
        let Some((head, rest)) = words.split_at_checked(end + 1) else {
            continue;
        };
        match occurrence(head) {
            Some(Strength::Strong) => {
                let describes = rest
                    .last()
                    .is_some_and(|last| READABLE_TAILS.contains(last));
                return if describes {
                    NameClass::Readable
                } else {
                    NameClass::Secret
                };
            }
            Some(Strength::Weak) if matches!(rest, [] | ["code" | "codes"]) => {
                return NameClass::Secret;
            }
            _ => {}
        }
    }
    NameClass::Readable
}

/// Whether a configuration key names a credential (rule 1 of the module doc). A bare `key` is
/// not a secret by its name alone; [`split`] seals it when its value looks like an opaque token.
pub fn is_secret_field(key: &str) -> bool {
    classify_name(key) == NameClass::Secret
}

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
fn looks_opaque(text: &str) -> bool {
    text.len() >= 16
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '/' | '='))
        && text.chars().any(|c| c.is_ascii_digit())
        && text.chars().any(|c| c.is_ascii_alphabetic())
}

/// `AKIA`/`ASIA` followed by 16 upper-case letters or digits.
fn is_aws_access_key_id(text: &str) -> bool {
    text.len() == 20
        && (text.starts_with("AKIA") || text.starts_with("ASIA"))
        && text
            .bytes()
            .skip(4)
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Exactly 40 characters of `[A-Za-z0-9/+=]`, the shape of an AWS secret access key.
fn is_aws_secret_key(text: &str) -> bool {
    text.len() == 40
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'+' | b'='))
}

fn joined_words(key: &str) -> String {
    normalise_key(key).join("_")
}

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
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use serde_json::json;

    /// AWS's documented example pair.
    const AWS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const PEM: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\n-----END OPENSSH PRIVATE KEY-----\n";

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

    fn jwt() -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"42","name":"Ada"}"#);
        let signature = URL_SAFE_NO_PAD.encode(b"not a real signature");
        format!("{header}.{payload}.{signature}")
    }

    const SECRET_KEYS: &[&str] = &[
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

    const READABLE_KEYS: &[&str] = &[
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
    fn secret_names_follow_the_documented_vocabulary() {
        for key in SECRET_KEYS {
            assert!(is_secret_field(key), "{key} should be secret");
        }
        for key in READABLE_KEYS {
            assert!(!is_secret_field(key), "{key} should stay readable");
        }
    }

    #[test]
    fn keys_are_cut_into_words() {
        let cases: &[(&str, &[&str])] = &[
            ("XApiKey", &["x", "api", "key"]),
            ("APIKey", &["api", "key"]),
            ("accessToken", &["access", "token"]),
            (
                "aws_secret-access.key id",
                &["aws", "secret", "access", "key", "id"],
            ),
            ("oauth2Token", &["oauth", "2", "token"]),
            ("IDToken", &["id", "token"]),
            ("max_tokens", &["max", "tokens"]),
        ];
        for (key, words) in cases {
            assert_eq!(normalise_key(key), *words, "{key}");
        }
        assert_eq!(vocabulary_words("mailgunapikey"), ["mailgun", "api", "key"]);
        assert_eq!(vocabulary_words("maxtokens"), ["max", "tokens"]);
        assert_eq!(vocabulary_words("tokenizer"), ["tokenizer"]);
    }

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
