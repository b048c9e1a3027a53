//! The credential vocabulary: the documented word lists a key name is matched against (rule 1
//! of the [module doc](super)), and the extra words used to cut glued keys. A credential spelling
//! the rule misses is added to these lists, not special-cased in the code.

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

/// Keys (compared after [`normalise_key`](super::normalise_key), joined with `_`) whose string
/// value names the sibling `value` in a name/value pair: `{"name": "X-Api-Key", "value": "…"}`
/// seals the value when the name is a secret key name.
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
