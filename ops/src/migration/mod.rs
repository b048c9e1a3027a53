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
//!
//! By job: `old_tables` reads the old PostgreSQL tables; `decrypt` finds and decrypts the old
//! ciphertext and `mapping` turns old rows into this service's requests (both pure); `write`
//! hands them to the accounts service and the targets store (nothing here writes a table itself);
//! `report` counts. [`migrate`] runs them in order, row by row.
//!
//! [`TargetId::derived`]: pipewise::targets::model::TargetId::derived

mod decrypt;
mod mapping;
mod old_tables;
mod report;
mod write;

use std::collections::{HashMap, HashSet};

use fernet::Fernet;
use pipewise::accounts::AccountService;
use pipewise::targets::TargetStore;

pub use mapping::parse_user_map;
pub use old_tables::{OldAccount, OldTarget, read_old_tables};
pub use report::{MigrationReport, TableReport};

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
    decrypt::check_key(&key, accounts.iter().map(|account| &account.configuration))?;
    let total = accounts.len() + targets.len();
    let mut done = 0;
    let mut report = MigrationReport::default();
    for account in accounts {
        if settings.max_rows.is_some_and(|max| done >= max) {
            report.stopped_early = true;
            return Ok(report);
        }
        let old_id = format!("{}/{}", account.user_id, account.account_id);
        match mapping::new_user(settings, &account.user_id) {
            None => report.accounts.skip(old_id, "unmapped_user"),
            Some(user) => {
                let outcome = match mapping::account_request(&key, account) {
                    Ok(mapped) => write::account(mapped, &user, destination, settings).await,
                    Err(reason) => Err(reason),
                };
                report.accounts.record(old_id, outcome);
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
        match mapping::new_user(settings, &target.user_id) {
            None => report.targets.skip(old_id, "unmapped_user"),
            Some(user) => {
                let outcome = match mapping::target_draft(target) {
                    Ok(mapped) => {
                        write::target(mapped, &user, destination, settings, &mut dry_run_emails)
                            .await
                    }
                    Err(reason) => Err(reason),
                };
                report.targets.record(old_id, outcome);
            }
        }
        done += 1;
        progress(done, total);
    }
    Ok(report)
}
