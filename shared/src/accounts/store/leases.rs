//! The token-refresh lease on an account item: take it (bumping the version), give it back,
//! store refreshed tokens under it, or mark the grant dead; every write conditioned on holding
//! it.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::Error;
use crate::storage::{conditional, number, text};

use super::{AccountItem, AccountStore, REAUTH_REQUIRED, SealedConfiguration};

impl AccountStore {
    /// Takes the token-refresh lease of an account still at its version: `false` when another
    /// caller holds an unexpired lease or the account changed. Taking it bumps the version, so
    /// a write based on an earlier read (a user's edit) fails and re-reads, keeping the lease.
    /// Returns the account as the lease left it.
    pub async fn take_refresh_lease(
        &self,
        item: &AccountItem,
        until: i64,
        lease_id: &str,
        now: i64,
    ) -> Result<Option<AccountItem>, Error> {
        let next = item.version.saturating_add(1);
        let result = self
            .update_at_version(item)
            .update_expression(
                "SET refresh_lease_until = :until, refresh_lease_id = :lease, version = :next",
            )
            .condition_expression(
                "version = :expected AND (attribute_not_exists(refresh_lease_until) OR refresh_lease_until < :now)",
            )
            .expression_attribute_values(":until", number(until))
            .expression_attribute_values(":lease", text(lease_id))
            .expression_attribute_values(":next", number(next))
            .expression_attribute_values(":now", number(now))
            .send()
            .await;
        if !conditional(result)? {
            return Ok(None);
        }
        let mut leased = item.clone();
        leased.refresh_lease_until = Some(until);
        leased.refresh_lease_id = Some(lease_id.to_owned());
        leased.version = next;
        Ok(Some(leased))
    }

    /// An update that applies only while `lease_id` holds the account's refresh lease.
    fn update_under_lease(
        &self,
        item: &AccountItem,
        lease_id: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&item.user_id, item.account_id.as_str())))
            .condition_expression("refresh_lease_id = :lease")
            .expression_attribute_values(":lease", text(lease_id))
    }

    /// Gives a lease back without changing the account's fields (the version moves, so a
    /// write based on a read that still showed the lease cannot put it back).
    pub async fn release_refresh_lease(
        &self,
        item: &AccountItem,
        lease_id: &str,
    ) -> Result<(), Error> {
        let result = self
            .update_under_lease(item, lease_id)
            .update_expression(
                "SET version = version + :one REMOVE refresh_lease_until, refresh_lease_id",
            )
            .expression_attribute_values(":one", number("1"))
            .send()
            .await;
        conditional(result).map(|_| ())
    }

    /// Stores refreshed tokens: only the token-bearing fields (the sealed secrets, their
    /// masked configuration and paths, the expiry), and only while `lease_id` holds the lease
    /// and the account is still at `current`'s version (a user's edit meanwhile makes the caller
    /// merge the tokens into the edited account and try again). Drops the lease. `false` when
    /// the condition failed.
    pub async fn store_refreshed_tokens(
        &self,
        current: &AccountItem,
        lease_id: &str,
        sealed: &SealedConfiguration,
        expires_at: Option<&str>,
    ) -> Result<bool, Error> {
        let mut update = self
            .update_under_lease(current, lease_id)
            .condition_expression("refresh_lease_id = :lease AND version = :expected")
            .expression_attribute_values(":expected", number(current.version))
            .expression_attribute_values(":configuration", text(sealed.masked.clone()))
            .expression_attribute_values(
                ":paths",
                serde_dynamo::to_attribute_value(&sealed.secret_paths).map_err(Error::internal)?,
            )
            .expression_attribute_values(":next", number(current.version.saturating_add(1)))
            .expression_attribute_values(":now", text(self.clock.now_rfc3339()));
        let mut set = vec![
            "configuration = :configuration",
            "secret_paths = :paths",
            "version = :next",
            "updated_at = :now",
        ];
        let mut remove = vec!["refresh_lease_until", "refresh_lease_id"];
        match &sealed.envelope {
            Some(envelope) => {
                set.push("secrets = :secrets");
                update = update.expression_attribute_values(
                    ":secrets",
                    serde_dynamo::to_attribute_value(envelope).map_err(Error::internal)?,
                );
            }
            None => remove.push("secrets"),
        }
        match expires_at {
            Some(at) => {
                set.push("expires_at = :expires_at");
                update = update.expression_attribute_values(":expires_at", text(at));
            }
            None => remove.push("expires_at"),
        }
        let result = update
            .update_expression(format!(
                "SET {} REMOVE {}",
                set.join(", "),
                remove.join(", ")
            ))
            .send()
            .await;
        conditional(result)
    }

    /// Marks an account whose grant is gone: disconnected, `status_reason` `reauth_required`,
    /// lease released; only while `lease_id` holds the lease.
    pub async fn mark_reauth_required(
        &self,
        item: &AccountItem,
        lease_id: &str,
    ) -> Result<bool, Error> {
        let result = self
            .update_under_lease(item, lease_id)
            .update_expression("SET connected = :false, status_reason = :reason, version = version + :one, updated_at = :now REMOVE refresh_lease_until, refresh_lease_id")
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":reason", text(REAUTH_REQUIRED))
            .expression_attribute_values(":one", number("1"))
            .expression_attribute_values(":now", text(self.clock.now_rfc3339()))
            .send()
            .await;
        let marked = conditional(result)?;
        if marked {
            self.announce(
                item,
                Some((item.connected, item.status_reason.as_deref())),
                (false, Some(REAUTH_REQUIRED)),
                item.version + 1,
            )
            .await;
        }
        Ok(marked)
    }
}

impl AccountStore {
    /// Records a connection test's result (connected or why not, and when), while the account
    /// is still at the version the test read; `false` when it changed meanwhile.
    pub async fn record_check(
        &self,
        item: &AccountItem,
        connected: bool,
        status_reason: Option<&str>,
        checked_at: &str,
    ) -> Result<bool, Error> {
        let update = self
            .update_at_version(item)
            .expression_attribute_values(":connected", AttributeValue::Bool(connected))
            .expression_attribute_values(":checked", text(checked_at))
            .expression_attribute_values(":next", number(item.version + 1));
        let update = match status_reason {
            Some(reason) => update
                .update_expression("SET connected = :connected, status_reason = :reason, last_checked_at = :checked, version = :next")
                .expression_attribute_values(":reason", text(reason)),
            None => update.update_expression(
                "SET connected = :connected, last_checked_at = :checked, version = :next REMOVE status_reason",
            ),
        };
        let recorded = conditional(update.send().await)?;
        if recorded {
            self.announce(
                item,
                Some((item.connected, item.status_reason.as_deref())),
                (connected, status_reason),
                item.version + 1,
            )
            .await;
        }
        Ok(recorded)
    }
}
