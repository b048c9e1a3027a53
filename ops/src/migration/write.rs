//! Writing a mapped row, only through the domain code the API uses: an account through
//! [`AccountService`] (its store read for what is there, `upsert_at` to write), a target through
//! [`TargetStore::import`]. A row already there is `unchanged`; an account there with other
//! content is never overwritten. In a dry run nothing is written and the outcome is predicted.
//!
//! [`AccountService`]: pipewise::accounts::AccountService
//! [`TargetStore::import`]: pipewise::targets::TargetStore::import

use std::collections::HashSet;

use pipewise::auth::UserId;
use pipewise::error::Error;
use serde_json::Value;

use super::mapping::{MappedAccount, MappedTarget};
use super::report::{Row, reason_of};
use super::{Destination, MigrationSettings};

/// Writes an account unless it is there already (or, in a dry run, says whether it would).
pub(super) async fn account(
    mapped: MappedAccount,
    user: &UserId,
    destination: &Destination,
    settings: &MigrationSettings,
) -> Result<Row, String> {
    let accounts = &destination.accounts;
    let existing = accounts
        .store()
        .get(user, &mapped.account_id)
        .await
        .map_err(|error| reason_of(&error))?;
    if let Some(item) = existing {
        let same = item.account_type.as_str() == mapped.request.account_type
            && item.connected == mapped.connected
            && accounts
                .decrypted_configuration(&item)
                .await
                .is_ok_and(|stored| {
                    Value::Object(stored) == Value::Object(mapped.configuration.clone())
                });
        return if same {
            Ok(Row::Unchanged)
        } else if item.status_reason.as_deref() == Some("sender_pending_verification")
            && item.account_type.as_str() == mapped.request.account_type
        {
            // Sender verification turned it off; everything else is what we wrote.
            Ok(Row::Unchanged)
        } else {
            Ok(Row::Skipped("exists_with_other_content"))
        };
    }
    if settings.dry_run {
        return match mapped.request.parse() {
            Ok(_) => Ok(Row::Migrated),
            Err(error) => Err(reason_of(&error)),
        };
    }
    match accounts
        .upsert_at(user, mapped.request, Some(mapped.timestamps))
        .await
    {
        Ok(_) => Ok(Row::Migrated),
        Err(error) => Err(reason_of(&error)),
    }
}

/// Imports a target under its derived id (or, in a dry run, says whether it would go in:
/// `dry_run_emails` holds the emails this run has taken so far, per user, so that duplicates are
/// reported as a real run would report them).
pub(super) async fn target(
    mapped: MappedTarget,
    user: &UserId,
    destination: &Destination,
    settings: &MigrationSettings,
    dry_run_emails: &mut HashSet<(String, String)>,
) -> Result<Row, String> {
    if settings.dry_run {
        if mapped.active
            && let Some(email) = &mapped.draft.email
        {
            let key = (user.as_str().to_owned(), email.as_str().to_owned());
            let held = destination.targets.email_holder(user, email.as_str()).await;
            let taken_elsewhere =
                matches!(&held, Ok(Some(holder)) if *holder != mapped.id.to_string());
            if taken_elsewhere || !dry_run_emails.insert(key) {
                return Err("duplicate_email: another active target has this email".into());
            }
        }
        return Ok(Row::Migrated);
    }
    match destination
        .targets
        .import(
            user,
            mapped.id,
            mapped.draft,
            mapped.created_at,
            mapped.updated_at,
            mapped.active,
        )
        .await
    {
        Ok(true) => Ok(Row::Migrated),
        Ok(false) => Ok(Row::Unchanged),
        Err(Error::Conflict { code, .. }) => {
            Err(format!("{code}: another active target has this email"))
        }
        Err(error) => Err(reason_of(&error)),
    }
}
