//! Moving in from the old stack: PipeWise's Supabase (PostgreSQL) tables `user_accounts` and
//! `communication_targets`, with account configuration encrypted by a Fernet key, copied into
//! this service's DynamoDB tables through the same domain code as the API.
//!
//! - Accounts go through [`AccountService::upsert_at`]: validation, the secret rule, a fresh KMS
//!   envelope per account, sender ownership for email accounts. Fernet ciphertext may be the
//!   whole `configuration` (a JSON string) or any string inside it; every string that is a Fernet
//!   token is decrypted with the key, and a token that does not verify fails that account
//!   (never copied as if it were plaintext). Plaintext exists only in memory.
//! - Targets go through [`TargetStore::import`]: the API's validation, email guards and counters;
//!   inactive ones stay inactive, timestamps are kept, and each gets a UUID v7 derived from its
//!   creation time and old id ([`TargetId::derived`]), so order is kept and a rerun finds it.
//! - Safe to run twice and to stop half-way: every row is written at most once, and a row that is
//!   already there (an account with the same content, a target with its derived id) is counted as
//!   `unchanged`. An account that exists with other content is never overwritten.

use std::collections::{BTreeMap, HashMap, HashSet};

use fernet::Fernet;
use pipewise::accounts::model::UpsertAccountRequest;
use pipewise::accounts::{AccountId, AccountService};
use pipewise::auth::UserId;
use pipewise::error::Error;
use pipewise::targets::TargetStore;
use pipewise::targets::model::{CreateTargetRequest, TargetId};
use serde_json::{Map, Value, json};
use tokio_postgres::Client;

/// Why a migration could not run at all (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// `PIPEWISE_FERNET_KEY` is not a Fernet key (32 bytes, URL-safe base64).
    #[error("PIPEWISE_FERNET_KEY is not a Fernet key (32 bytes of URL-safe base64)")]
    InvalidKey,
    /// The key verifies none of the encrypted values: almost surely the wrong key.
    #[error(
        "PIPEWISE_FERNET_KEY decrypts none of the {0} encrypted values: it is not the old stack's key; nothing was written"
    )]
    WrongKey(usize),
    /// The old database could not be read.
    #[error("the old database could not be read: {0}")]
    Database(String),
    /// The user map file could not be read.
    #[error("USER_MAP: {0}")]
    UserMap(String),
}

/// What to do.
#[derive(Debug, Clone, Default)]
pub struct MigrationSettings {
    /// Write nothing; report what would happen.
    pub dry_run: bool,
    /// Old user id → new user id; when given, unmapped users are skipped.
    pub user_map: Option<HashMap<String, String>>,
    /// Stop after this many rows (both tables together); the next run continues.
    pub max_rows: Option<usize>,
}

/// Reads `old_id,new_sub` lines (a header line `old_id,new_sub` is allowed).
pub fn parse_user_map(text: &str) -> Result<HashMap<String, String>, MigrationError> {
    let mut map = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (number == 0 && line.starts_with("old_id")) {
            continue;
        }
        let (old, new) = line
            .split_once(',')
            .map(|(old, new)| (old.trim(), new.trim()))
            .filter(|(old, new)| !old.is_empty() && !new.is_empty())
            .ok_or_else(|| {
                MigrationError::UserMap(format!("line {} is not old_id,new_sub", number + 1))
            })?;
        map.insert(old.to_owned(), new.to_owned());
    }
    Ok(map)
}

/// The outcome of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableReport {
    /// Rows written now (or that would be, in a dry run).
    pub migrated: usize,
    /// Rows already there, unchanged.
    pub unchanged: usize,
    /// Rows left out on purpose, by reason.
    pub skipped: BTreeMap<String, usize>,
    /// Rows that could not be migrated, by reason.
    pub failed: BTreeMap<String, usize>,
    /// Each skipped or failed row: (old id, reason). Never a value.
    pub problems: Vec<(String, String)>,
}

impl TableReport {
    fn skip(&mut self, old_id: String, reason: &str) {
        *self.skipped.entry(reason.to_owned()).or_default() += 1;
        self.problems.push((old_id, format!("skipped: {reason}")));
    }

    fn fail(&mut self, old_id: String, reason: String) {
        let kind = reason.split(':').next().unwrap_or(&reason).to_owned();
        *self.failed.entry(kind).or_default() += 1;
        self.problems.push((old_id, format!("failed: {reason}")));
    }

    /// How many rows failed.
    pub fn failures(&self) -> usize {
        self.failed.values().sum()
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// `user_accounts`.
    pub accounts: TableReport,
    /// `communication_targets`.
    pub targets: TableReport,
    /// Whether the run stopped at `max_rows` before the end.
    pub stopped_early: bool,
}

/// One row of `user_accounts`, as read.
#[derive(Debug, Clone)]
pub struct OldAccount {
    /// Old user id (Supabase Auth).
    pub user_id: String,
    /// Account id.
    pub account_id: String,
    /// calendar, crm, email or social.
    pub account_type: String,
    /// The `configuration` column (JSON; Fernet inside or around it).
    pub configuration: Value,
    /// Connected flag.
    pub connected: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

/// One row of `communication_targets`, as read.
#[derive(Debug, Clone)]
pub struct OldTarget {
    /// Old id.
    pub id: uuid::Uuid,
    /// Old user id.
    pub user_id: String,
    /// Name, email and handles, as the create route takes them (validated by the same code).
    pub fields: CreateTargetRequest,
    /// False when soft-deleted.
    pub active: bool,
    /// Creation time, ms since the epoch (orders the new ids).
    pub created_at_millis: u64,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

const RFC3339: &str = r#"'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"#;

/// Reads both old tables, in a stable order (accounts by user and id, targets oldest first).
pub async fn read_old_tables(
    client: &Client,
) -> Result<(Vec<OldAccount>, Vec<OldTarget>), MigrationError> {
    let database = |error: tokio_postgres::Error| MigrationError::Database(error.to_string());
    let accounts = client
        .query(
            &format!(
                "SELECT user_id, account_id, account_type, configuration::text, coalesce(connected, true), \
                 to_char(created_at, {RFC3339}), to_char(coalesce(updated_at, created_at), {RFC3339}) \
                 FROM user_accounts ORDER BY user_id, account_id"
            ),
            &[],
        )
        .await
        .map_err(database)?
        .into_iter()
        .map(|row| {
            let configuration: Option<String> = row.get(3);
            OldAccount {
                user_id: row.get(0),
                account_id: row.get(1),
                account_type: row.get(2),
                configuration: configuration
                    .and_then(|text| serde_json::from_str(&text).ok())
                    .unwrap_or(Value::Null),
                connected: row.get(4),
                created_at: row.get(5),
                updated_at: row.get(6),
            }
        })
        .collect();
    let targets = client
        .query(
            &format!(
                "SELECT id::text, user_id, name, email, twitter_username, instagram_username, notes, \
                 coalesce(active, true), (extract(epoch from created_at) * 1000)::bigint, \
                 to_char(created_at, {RFC3339}), to_char(coalesce(updated_at, created_at), {RFC3339}) \
                 FROM communication_targets ORDER BY created_at, id"
            ),
            &[],
        )
        .await
        .map_err(database)?
        .into_iter()
        .map(|row| {
            let id: String = row.get(0);
            let millis: i64 = row.get(8);
            OldTarget {
                id: uuid::Uuid::try_parse(&id).unwrap_or_default(),
                user_id: row.get(1),
                fields: CreateTargetRequest {
                    name: row.get::<_, Option<String>>(2).unwrap_or_default(),
                    email: row.get(3),
                    twitter_username: row.get(4),
                    instagram_username: row.get(5),
                    notes: row.get(6),
                },
                active: row.get(7),
                created_at_millis: u64::try_from(millis).unwrap_or_default(),
                created_at: row.get(9),
                updated_at: row.get(10),
            }
        })
        .collect();
    Ok((accounts, targets))
}

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

/// Why a configuration could not be decrypted.
#[derive(Debug, PartialEq, Eq)]
enum Undecryptable {
    /// A Fernet token did not verify under the key (at this dotted path).
    Token(String),
    /// The decrypted column is not a JSON object.
    NotAnObject,
}

/// The plaintext configuration: a whole-column token is decrypted and parsed; nested tokens
/// are replaced by their plaintext (parsed as JSON when it is an object or a list).
fn decrypt_configuration(
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

/// A refusal of the domain code, as a report reason: the stable code and the fields, never a
/// value.
fn reason_of(error: &Error) -> String {
    let fields: Vec<String> = error
        .details()
        .into_iter()
        .map(|detail| detail.field)
        .collect();
    if fields.is_empty() {
        error.code().to_owned()
    } else {
        format!("{}: {}", error.code(), fields.join(", "))
    }
}

/// Where the rows go.
pub struct Destination {
    /// The accounts service (store, cipher, SES), configured like the accounts function.
    pub accounts: AccountService,
    /// The targets store, configured like the targets function.
    pub targets: TargetStore,
}

/// Copies both tables. Checks the Fernet key against every encrypted value first: when it
/// verifies none, nothing is written. `progress` is called after each row with (done, total).
pub async fn migrate(
    accounts: Vec<OldAccount>,
    targets: Vec<OldTarget>,
    fernet_key: &str,
    destination: &Destination,
    settings: &MigrationSettings,
    progress: impl Fn(usize, usize),
) -> Result<MigrationReport, MigrationError> {
    let key = Fernet::new(fernet_key.trim()).ok_or(MigrationError::InvalidKey)?;
    let mut tokens = Vec::new();
    for account in &accounts {
        fernet_tokens(&account.configuration, &mut tokens);
    }
    if !tokens.is_empty() && !tokens.iter().any(|token| key.decrypt(token).is_ok()) {
        return Err(MigrationError::WrongKey(tokens.len()));
    }
    let total = accounts.len() + targets.len();
    let mut done = 0;
    let mut report = MigrationReport::default();
    let new_user = |old: &str| -> Option<UserId> {
        match &settings.user_map {
            Some(map) => map.get(old).cloned().map(UserId::from_verified_sub),
            None => Some(UserId::from_verified_sub(old.to_owned())),
        }
    };
    for account in accounts {
        if settings.max_rows.is_some_and(|max| done >= max) {
            report.stopped_early = true;
            return Ok(report);
        }
        let old_id = format!("{}/{}", account.user_id, account.account_id);
        match new_user(&account.user_id) {
            None => report.accounts.skip(old_id, "unmapped_user"),
            Some(user) => {
                migrate_account(
                    &key,
                    account,
                    &user,
                    destination,
                    settings,
                    &mut report.accounts,
                    old_id,
                )
                .await
            }
        }
        done += 1;
        progress(done, total);
    }
    // Emails already taken in this run, per user: lets a dry run report duplicates too.
    let mut dry_run_emails: HashSet<(String, String)> = HashSet::new();
    for target in targets {
        if settings.max_rows.is_some_and(|max| done >= max) {
            report.stopped_early = true;
            return Ok(report);
        }
        let old_id = target.id.to_string();
        match new_user(&target.user_id) {
            None => report.targets.skip(old_id, "unmapped_user"),
            Some(user) => {
                migrate_target(
                    target,
                    &user,
                    destination,
                    settings,
                    &mut report.targets,
                    old_id,
                    &mut dry_run_emails,
                )
                .await
            }
        }
        done += 1;
        progress(done, total);
    }
    Ok(report)
}

async fn migrate_account(
    key: &Fernet,
    account: OldAccount,
    user: &UserId,
    destination: &Destination,
    settings: &MigrationSettings,
    report: &mut TableReport,
    old_id: String,
) {
    let configuration = match decrypt_configuration(key, account.configuration) {
        Ok(configuration) => configuration,
        Err(Undecryptable::Token(path)) => {
            return report.fail(
                old_id,
                format!("undecryptable: {path} does not verify under the key"),
            );
        }
        Err(Undecryptable::NotAnObject) => {
            return report.fail(
                old_id,
                "undecryptable: configuration is not a JSON object".into(),
            );
        }
    };
    let request = json!({
        "account_id": account.account_id,
        "account_type": account.account_type,
        "configuration": configuration,
        "connected": account.connected,
        "status_reason": (!account.connected).then_some("disconnected in the old stack"),
    });
    let request: UpsertAccountRequest = match serde_json::from_value(request) {
        Ok(request) => request,
        Err(_) => return report.fail(old_id, "invalid: not an account".into()),
    };
    let existing = match AccountId::parse(&request.account_id) {
        Ok(id) => destination.accounts.store().get(user, &id).await,
        Err(_) => return report.fail(old_id, "validation_failed: account_id".into()),
    };
    match existing {
        Ok(Some(item)) => {
            let same = item.account_type.as_str() == request.account_type
                && item.connected == account.connected
                && destination
                    .accounts
                    .decrypted_configuration(&item)
                    .await
                    .is_ok_and(|stored| {
                        Value::Object(stored) == Value::Object(configuration.clone())
                    });
            if same {
                report.unchanged += 1;
            } else if item.status_reason.as_deref() == Some("sender_pending_verification")
                && item.account_type.as_str() == request.account_type
            {
                // Sender verification turned it off; everything else is what we wrote.
                report.unchanged += 1;
            } else {
                report.skip(old_id, "exists_with_other_content");
            }
            return;
        }
        Ok(None) => {}
        Err(error) => return report.fail(old_id, reason_of(&error)),
    }
    if settings.dry_run {
        return match request.parse() {
            Ok(_) => report.migrated += 1,
            Err(error) => report.fail(old_id, reason_of(&error)),
        };
    }
    match destination
        .accounts
        .upsert_at(
            user,
            request,
            Some((account.created_at, account.updated_at)),
        )
        .await
    {
        Ok(_) => report.migrated += 1,
        Err(error) => report.fail(old_id, reason_of(&error)),
    }
}

async fn migrate_target(
    target: OldTarget,
    user: &UserId,
    destination: &Destination,
    settings: &MigrationSettings,
    report: &mut TableReport,
    old_id: String,
    dry_run_emails: &mut HashSet<(String, String)>,
) {
    let draft = match target.fields.parse("") {
        Ok(draft) => draft,
        Err(problems) => {
            let fields: Vec<String> = problems.into_iter().map(|p| p.field).collect();
            return report.fail(old_id, format!("validation_failed: {}", fields.join(", ")));
        }
    };
    let id = TargetId::derived(target.created_at_millis, &target.id);
    if settings.dry_run {
        if target.active
            && let Some(email) = &draft.email
        {
            let key = (user.as_str().to_owned(), email.as_str().to_owned());
            let held = destination.targets.email_holder(user, email.as_str()).await;
            let taken_elsewhere = matches!(&held, Ok(Some(holder)) if *holder != id.to_string());
            if taken_elsewhere || !dry_run_emails.insert(key) {
                return report.fail(
                    old_id,
                    "duplicate_email: another active target has this email".into(),
                );
            }
        }
        report.migrated += 1;
        return;
    }
    match destination
        .targets
        .import(
            user,
            id,
            draft,
            target.created_at,
            target.updated_at,
            target.active,
        )
        .await
    {
        Ok(true) => report.migrated += 1,
        Ok(false) => report.unchanged += 1,
        Err(Error::Conflict { code, .. }) => {
            report.fail(
                old_id,
                format!("{code}: another active target has this email"),
            );
        }
        Err(error) => report.fail(old_id, reason_of(&error)),
    }
}
