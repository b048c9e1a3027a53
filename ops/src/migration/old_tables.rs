//! Reading the old stack's PostgreSQL tables `user_accounts` and `communication_targets`, row by
//! row as they are (nothing decrypted, nothing validated yet).

use pipewise::targets::model::CreateTargetRequest;
use serde_json::Value;
use tokio_postgres::Client;

use super::MigrationError;

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
                    // The old tables have neither.
                    timezone: None,
                    custom_fields: None,
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
