//! `AccountStore`: integration accounts in DynamoDB.
//!
//! Table key: `user_id` (partition) + `account_id` (sort). Besides the accounts, each user's
//! partition holds one counter item (sort key [`QUOTA_ITEM`], which no account id can equal since
//! `#` is not allowed in one) that transactions keep equal to the number of accounts.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update,
};
use serde::{Deserialize, Serialize};

use super::model::{AccountId, AccountType, MAX_ACCOUNTS_PER_USER};
use super::secrets::SecretPath;
use crate::aws::dependency_error;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::ids::UserId;
use crate::storage::{
    TransactionFailure, conditional, decode_item, encode_item, read_item, transact_write, user_key,
};

/// `status_reason` of an account whose OAuth grant is gone: the user must connect it again.
pub const REAUTH_REQUIRED: &str = "reauth_required";

/// Sort key of the per-user account counter.
pub const QUOTA_ITEM: &str = "#quota";

/// Sort-key prefix of a user's sender-verification counter for one hour (`#verifications#<hour>`).
const VERIFICATIONS_PREFIX: &str = "#verifications#";

/// Sender verifications a user may start per hour: each one makes SES mail an address, and SES
/// holds at most 10,000 identities per region.
pub const VERIFICATIONS_PER_HOUR: u32 = 10;

/// After this long an unverified claim may be taken over by another account: SES's verification
/// link has expired, and the address's real owner must not be locked out by a squatter.
pub const UNVERIFIED_CLAIM_SECONDS: i64 = 24 * 3600;

// Slots of an account's transactions, in the order they are pushed.
const ACCOUNT_SLOT: usize = 0;
const COUNTER_SLOT: usize = 1;

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountItem {
    /// Partition key: the owner.
    pub user_id: UserId,
    /// Sort key.
    pub account_id: String,
    /// Type.
    pub account_type: AccountType,
    /// Provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The configuration as JSON, each secret replaced by the mask.
    pub configuration: String,
    /// Where the secrets are; their values are only in `secrets`.
    #[serde(default)]
    pub secret_paths: Vec<SecretPath>,
    /// The sealed secrets, when there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Envelope>,
    /// Connected flag.
    pub connected: bool,
    /// Reason when not connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// When the access token expires (RFC 3339), for accounts whose tokens are refreshed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The sender address this account claimed (normalised), so the claim is released from
    /// what was claimed, never re-derived from a configuration that may have changed shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_address: Option<String>,
    /// A token refresh in progress holds the account until then (epoch seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_lease_until: Option<i64>,
    /// Whose refresh holds it: only that refresh may store the new tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_lease_id: Option<String>,
    /// Optimistic-lock version, +1 per write.
    pub version: u64,
}

/// Integration accounts in one DynamoDB table.
#[derive(Clone)]
pub struct AccountStore {
    dynamodb: Client,
    table: String,
}

impl AccountStore {
    /// A store over `table`.
    pub fn new(dynamodb: Client, table: impl Into<String>) -> Self {
        Self {
            dynamodb,
            table: table.into(),
        }
    }

    /// The table name (part of the secrets' encryption context).
    pub fn table(&self) -> &str {
        &self.table
    }

    fn key(user: &UserId, account_id: &str) -> HashMap<String, AttributeValue> {
        user_key(user.as_str(), "account_id", account_id)
    }

    /// One account, read consistently.
    pub async fn get(
        &self,
        user: &UserId,
        account_id: &AccountId,
    ) -> Result<Option<AccountItem>, Error> {
        let item = read_item(
            &self.dynamodb,
            &self.table,
            Self::key(user, account_id.as_str()),
        )
        .await?;
        item.map(decode_item).transpose()
    }

    /// Every account of a user, by account id (at most [`MAX_ACCOUNTS_PER_USER`], over several
    /// pages when configurations are large). No KMS call: secrets stay sealed.
    pub async fn list(&self, user: &UserId) -> Result<Vec<AccountItem>, Error> {
        let mut pages = self
            .dynamodb
            .query()
            .table_name(&self.table)
            .key_condition_expression("user_id = :user")
            .expression_attribute_values(":user", AttributeValue::S(user.as_str().to_owned()))
            .into_paginator()
            .send();
        let mut accounts = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(dependency_error)?;
            for item in page.items.unwrap_or_default() {
                // Counters share the partition; no account id starts with '#'.
                let is_counter = matches!(item.get("account_id"), Some(AttributeValue::S(id)) if id.starts_with('#'));
                if !is_counter {
                    accounts.push(decode_item(item)?);
                }
            }
        }
        Ok(accounts)
    }

    /// Creates an account and counts it, in one transaction with the claim of its sender (if
    /// any): fails with 409 if it appeared meanwhile, [`SENDER_TAKEN`] if another account took
    /// the sender meanwhile, 429 past the hourly verification starts and 422 when the user
    /// already has the maximum.
    pub async fn insert(
        &self,
        item: &AccountItem,
        sender: Option<&SenderWrite>,
    ) -> Result<(), Error> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(encode_item(item)?))
            .condition_expression("attribute_not_exists(account_id)")
            .build()
            .map_err(Error::internal)?;
        let count = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(&item.user_id, QUOTA_ITEM)))
            .update_expression("SET account_count = if_not_exists(account_count, :zero) + :one")
            .condition_expression("attribute_not_exists(account_count) OR account_count < :max")
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(
                ":max",
                AttributeValue::N(MAX_ACCOUNTS_PER_USER.to_string()),
            )
            .build()
            .map_err(Error::internal)?;
        let mut items = vec![
            TransactWriteItem::builder().put(put).build(),
            TransactWriteItem::builder().update(count).build(),
        ];
        let sender_slots = self.push_sender(&mut items, sender)?;
        match transact_write(&self.dynamodb, items).await {
            Ok(()) => Ok(()),
            Err(TransactionFailure::ConditionFailed(failed)) if failed.at(ACCOUNT_SLOT) => {
                Err(concurrent_change())
            }
            Err(TransactionFailure::ConditionFailed(failed))
                if let Some(error) = sender_slots.error(&failed) =>
            {
                Err(error)
            }
            Err(TransactionFailure::ConditionFailed(failed)) if failed.at(COUNTER_SLOT) => {
                Err(Error::LimitExceeded {
                    code: "account_limit_reached",
                    message: format!("A user can have at most {MAX_ACCOUNTS_PER_USER} accounts."),
                })
            }
            Err(TransactionFailure::ConditionFailed(_)) => Err(concurrent_change()),
            Err(failure) => Err(failure.into()),
        }
    }

    /// Replaces an account if it is still at `expected_version` (409 otherwise), in one
    /// transaction with the claim of its sender and the release of a sender it no longer uses.
    pub async fn replace(
        &self,
        item: &AccountItem,
        expected_version: u64,
        sender: Option<&SenderWrite>,
        released: Option<&SenderClaim>,
    ) -> Result<(), Error> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(encode_item(item)?))
            .condition_expression("version = :expected")
            .expression_attribute_values(
                ":expected",
                AttributeValue::N(expected_version.to_string()),
            )
            .build()
            .map_err(Error::internal)?;
        let mut items = vec![TransactWriteItem::builder().put(put).build()];
        let sender_slots = self.push_sender(&mut items, sender)?;
        if let Some(claim) = released {
            items.push(self.release_sender(claim)?);
        }
        match transact_write(&self.dynamodb, items).await {
            Ok(()) => Ok(()),
            Err(TransactionFailure::ConditionFailed(failed)) if failed.at(ACCOUNT_SLOT) => {
                Err(concurrent_change())
            }
            Err(TransactionFailure::ConditionFailed(failed))
                if let Some(error) = sender_slots.error(&failed) =>
            {
                Err(error)
            }
            Err(TransactionFailure::ConditionFailed(_)) => Err(concurrent_change()),
            Err(failure) => Err(failure.into()),
        }
    }

    /// Adds what a sender write needs to a transaction; returns where it put them.
    fn push_sender(
        &self,
        items: &mut Vec<TransactWriteItem>,
        sender: Option<&SenderWrite>,
    ) -> Result<SenderSlots, Error> {
        let mut slots = SenderSlots::default();
        match sender {
            None => {}
            Some(SenderWrite::Hold(claim)) => {
                slots.claim = Some(items.len());
                items.push(self.hold_sender(claim)?);
            }
            Some(SenderWrite::Start(claim)) => {
                slots.claim = Some(items.len());
                items.push(self.claim_sender(claim)?);
                slots.verifications = Some(items.len());
                items.push(self.count_verification(&claim.user_id, claim.started_at)?);
            }
        }
        Ok(slots)
    }

    /// Who owns a sender address, read consistently.
    pub async fn sender_owner(&self, address: &str) -> Result<Option<SenderClaim>, Error> {
        let item = read_item(&self.dynamodb, &self.table, sender_key(address)).await?;
        Ok(item.map(|item| SenderClaim {
            address: address.to_owned(),
            user_id: UserId::from_verified_sub(text_of(&item, "owner_user_id")),
            account_id: text_of(&item, "owner_account_id"),
            created_identity: matches!(
                item.get("created_identity"),
                Some(AttributeValue::Bool(true))
            ),
            attempt: match item.get("attempt") {
                Some(AttributeValue::S(attempt)) => Some(attempt.clone()),
                _ => None,
            },
            verified: matches!(item.get("verified"), Some(AttributeValue::Bool(true))),
            started_at: match item.get("started_at") {
                Some(AttributeValue::N(at)) => at.parse().unwrap_or(0),
                _ => 0,
            },
        }))
    }

    /// Marks an account connected once SES has verified the attempt its claim started, and the
    /// claim verified, in one transaction; `false` when the account changed or the claim is no
    /// longer this attempt's.
    pub async fn mark_sender_verified(
        &self,
        item: &AccountItem,
        claim: &SenderClaim,
    ) -> Result<bool, Error> {
        let account = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(&item.user_id, &item.account_id)))
            .condition_expression("version = :expected")
            .update_expression(
                "SET connected = :true, version = :next, updated_at = :now REMOVE status_reason",
            )
            .expression_attribute_values(":expected", AttributeValue::N(item.version.to_string()))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":next", AttributeValue::N((item.version + 1).to_string()))
            .expression_attribute_values(":now", AttributeValue::S(crate::now_rfc3339()))
            .build()
            .map_err(Error::internal)?;
        let attempt = claim
            .attempt
            .as_deref()
            .ok_or_else(|| Error::internal("only a started attempt can be verified"))?;
        let verified = Update::builder()
            .table_name(&self.table)
            .set_key(Some(sender_key(&claim.address)))
            .update_expression("SET verified = :true")
            .condition_expression(
                "owner_user_id = :user AND owner_account_id = :account AND attempt = :attempt",
            )
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(
                ":user",
                AttributeValue::S(item.user_id.as_str().to_owned()),
            )
            .expression_attribute_values(":account", AttributeValue::S(item.account_id.clone()))
            .expression_attribute_values(":attempt", AttributeValue::S(attempt.to_owned()))
            .build()
            .map_err(Error::internal)?;
        let items = vec![
            TransactWriteItem::builder().update(account).build(),
            TransactWriteItem::builder().update(verified).build(),
        ];
        match transact_write(&self.dynamodb, items).await {
            Ok(()) => Ok(true),
            Err(TransactionFailure::ConditionFailed(_)) => Ok(false),
            Err(failure) => Err(failure.into()),
        }
    }

    /// An update of one account that applies only while it is still at the version read.
    fn update_at_version(
        &self,
        item: &AccountItem,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&item.user_id, &item.account_id)))
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", AttributeValue::N(item.version.to_string()))
    }

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
            .expression_attribute_values(":until", AttributeValue::N(until.to_string()))
            .expression_attribute_values(":lease", AttributeValue::S(lease_id.to_owned()))
            .expression_attribute_values(":next", AttributeValue::N(next.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
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
            .set_key(Some(Self::key(&item.user_id, &item.account_id)))
            .condition_expression("refresh_lease_id = :lease")
            .expression_attribute_values(":lease", AttributeValue::S(lease_id.to_owned()))
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
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
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
            .expression_attribute_values(
                ":expected",
                AttributeValue::N(current.version.to_string()),
            )
            .expression_attribute_values(":configuration", AttributeValue::S(sealed.masked.clone()))
            .expression_attribute_values(
                ":paths",
                serde_dynamo::to_attribute_value(&sealed.secret_paths).map_err(Error::internal)?,
            )
            .expression_attribute_values(
                ":next",
                AttributeValue::N(current.version.saturating_add(1).to_string()),
            )
            .expression_attribute_values(":now", AttributeValue::S(crate::now_rfc3339()));
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
                update = update
                    .expression_attribute_values(":expires_at", AttributeValue::S(at.to_owned()));
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
            .expression_attribute_values(":reason", AttributeValue::S(REAUTH_REQUIRED.into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":now", AttributeValue::S(crate::now_rfc3339()))
            .send()
            .await;
        conditional(result)
    }

    /// Every account whose tokens have an expiry (the ones a provider refreshes), over the
    /// whole table, page by page: the scheduled keeper's work list.
    pub async fn with_expiring_tokens(&self) -> Result<Vec<AccountItem>, Error> {
        let mut accounts = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .dynamodb
                .scan()
                .table_name(&self.table)
                .filter_expression("attribute_exists(expires_at)")
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(dependency_error)?;
            for item in page.items.unwrap_or_default() {
                accounts.push(decode_item(item)?);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(accounts);
            }
        }
    }

    /// Claims a sender for an account with a new verification attempt: holds when nobody owns
    /// it, this account already does, or another account's claim was never verified and its
    /// link has expired. The claim is unverified until SES verifies this attempt.
    fn claim_sender(&self, claim: &SenderClaim) -> Result<TransactWriteItem, Error> {
        let attempt = claim
            .attempt
            .as_deref()
            .ok_or_else(|| Error::internal("a new claim needs its attempt"))?;
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(sender_key(&claim.address)))
            .update_expression("SET owner_user_id = :user, owner_account_id = :account, attempt = :attempt, verified = :false, started_at = :now REMOVE created_identity")
            .condition_expression("attribute_not_exists(owner_user_id) OR (owner_user_id = :user AND owner_account_id = :account) OR (verified = :false AND started_at < :stale)")
            .expression_attribute_values(":user", AttributeValue::S(claim.user_id.as_str().to_owned()))
            .expression_attribute_values(":account", AttributeValue::S(claim.account_id.clone()))
            .expression_attribute_values(":attempt", AttributeValue::S(attempt.to_owned()))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":now", AttributeValue::N(claim.started_at.to_string()))
            .expression_attribute_values(
                ":stale",
                AttributeValue::N(claim.started_at.saturating_sub(UNVERIFIED_CLAIM_SECONDS).to_string()),
            )
            .build()
            .map_err(Error::internal)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Holds a sender this account already owns, unchanged: fails when it no longer does.
    fn hold_sender(&self, claim: &SenderClaim) -> Result<TransactWriteItem, Error> {
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(sender_key(&claim.address)))
            .condition_expression("owner_user_id = :user AND owner_account_id = :account")
            .expression_attribute_values(
                ":user",
                AttributeValue::S(claim.user_id.as_str().to_owned()),
            )
            .expression_attribute_values(":account", AttributeValue::S(claim.account_id.clone()))
            .build()
            .map_err(Error::internal)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// Counts a verification start against the user's hourly allowance (the item expires with
    /// the table's TTL attribute a day later).
    fn count_verification(&self, user: &UserId, now: i64) -> Result<TransactWriteItem, Error> {
        let hour = now.div_euclid(3600);
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(
                user,
                &format!("{VERIFICATIONS_PREFIX}{hour}"),
            )))
            .update_expression("ADD starts :one SET expires_at_epoch = :expires")
            .condition_expression("attribute_not_exists(starts) OR starts < :max")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(
                ":max",
                AttributeValue::N(VERIFICATIONS_PER_HOUR.to_string()),
            )
            .expression_attribute_values(
                ":expires",
                AttributeValue::N(hour.saturating_add(25).saturating_mul(3600).to_string()),
            )
            .build()
            .map_err(Error::internal)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Releases a sender this account owns (nothing when the claim is already gone).
    fn release_sender(&self, claim: &SenderClaim) -> Result<TransactWriteItem, Error> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(sender_key(&claim.address)))
            .condition_expression("attribute_not_exists(owner_user_id) OR (owner_user_id = :user AND owner_account_id = :account)")
            .expression_attribute_values(":user", AttributeValue::S(claim.user_id.as_str().to_owned()))
            .expression_attribute_values(":account", AttributeValue::S(claim.account_id.clone()))
            .build()
            .map_err(Error::internal)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Deletes an account (item and ciphertext), uncounts it and releases its sender, in one
    /// transaction; 404 when there is none.
    pub async fn delete(
        &self,
        user: &UserId,
        account_id: &AccountId,
        released: Option<&SenderClaim>,
    ) -> Result<(), Error> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(user, account_id.as_str())))
            .condition_expression("attribute_exists(account_id)")
            .build()
            .map_err(Error::internal)?;
        let count = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(user, QUOTA_ITEM)))
            .update_expression("ADD account_count :minus_one")
            .expression_attribute_values(":minus_one", AttributeValue::N("-1".into()))
            .build()
            .map_err(Error::internal)?;
        let mut items = vec![
            TransactWriteItem::builder().delete(delete).build(),
            TransactWriteItem::builder().update(count).build(),
        ];
        if let Some(claim) = released {
            items.push(self.release_sender(claim)?);
        }
        match transact_write(&self.dynamodb, items).await {
            Ok(()) => Ok(()),
            Err(TransactionFailure::ConditionFailed(failed)) if failed.at(ACCOUNT_SLOT) => {
                Err(Error::NotFound)
            }
            Err(TransactionFailure::ConditionFailed(_)) => Err(concurrent_change()),
            Err(failure) => Err(failure.into()),
        }
    }
}

/// What the key rotation (`pipewise-rotate-keys`) reads and writes: every item's wrapped data
/// key, and the conditional write of a re-wrapped one. The data key itself never leaves KMS.
impl AccountStore {
    /// One page of a consistent scan of the whole table, from `from` (`None`: the start), each
    /// item read as far as the rotation needs it. Every item is listed, the ones without an
    /// envelope (accounts without secrets, counters, sender claims) too, so that a run counts
    /// what it read. `next` is `None` after the last page.
    pub async fn data_keys_page(&self, from: Option<ScanPosition>) -> Result<DataKeyPage, Error> {
        let page = self
            .dynamodb
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .set_exclusive_start_key(from.map(|position| position.0))
            .send()
            .await
            .map_err(dependency_error)?;
        Ok(DataKeyPage {
            items: page
                .items
                .unwrap_or_default()
                .iter()
                .map(data_key_item)
                .collect(),
            next: page.last_evaluated_key.map(ScanPosition),
        })
    }

    /// One item as it is now (consistent read), read like [`Self::data_keys_page`] reads it;
    /// `None` once it is deleted.
    pub async fn read_data_key(&self, key: &ItemKey) -> Result<Option<DataKeyItem>, Error> {
        let item = read_item(&self.dynamodb, &self.table, key.attributes()).await?;
        Ok(item.as_ref().map(data_key_item))
    }

    /// Stores a re-wrapped data key (the envelope's `wrapped_key` and `kms_key_id`; its nonce
    /// and ciphertext stay as they are) and bumps the version, if the item still has the version
    /// and key it was read with; `false` when a concurrent write got in between. The bump makes
    /// a user write based on an earlier read fail with 409 instead of putting back an envelope
    /// under the old key.
    pub async fn store_rewrapped_key(
        &self,
        key: &ItemKey,
        seen_version: u64,
        seen_kms_key_id: &str,
        rewrapped: WrappedDataKey,
    ) -> Result<bool, Error> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.attributes()))
            .update_expression(
                "SET secrets.wrapped_key = :wrapped_key, secrets.kms_key_id = :kms_key_id, \
                 version = :next_version",
            )
            .condition_expression(
                "version = :seen_version AND secrets.kms_key_id = :seen_kms_key_id",
            )
            .expression_attribute_values(
                ":wrapped_key",
                AttributeValue::B(Blob::new(rewrapped.wrapped_key)),
            )
            .expression_attribute_values(":kms_key_id", AttributeValue::S(rewrapped.kms_key_id))
            .expression_attribute_values(
                ":next_version",
                AttributeValue::N(seen_version.saturating_add(1).to_string()),
            )
            .expression_attribute_values(
                ":seen_version",
                AttributeValue::N(seen_version.to_string()),
            )
            .expression_attribute_values(
                ":seen_kms_key_id",
                AttributeValue::S(seen_kms_key_id.to_owned()),
            )
            .send()
            .await;
        conditional(result)
    }

    /// DynamoDB's approximate item count of the table (refreshed about every six hours), for a
    /// progress bar; `None` when it cannot be read.
    pub async fn estimated_item_count(&self) -> Option<u64> {
        let output = self
            .dynamodb
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .ok()?;
        output
            .table()
            .and_then(|table| table.item_count())
            .and_then(|count| u64::try_from(count).ok())
    }
}

/// The key of any item of the accounts table, as text: an account's owner and id, or the keys
/// of a counter or a sender claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ItemKey {
    /// Partition key: the owner (or a sender claim's `sender#<address>`).
    pub user_id: String,
    /// Sort key: the account id (or a counter's or claim's `#...`).
    pub account_id: String,
}

impl ItemKey {
    fn attributes(&self) -> HashMap<String, AttributeValue> {
        user_key(&self.user_id, "account_id", &self.account_id)
    }
}

/// A data key as an envelope stores it: wrapped by a KMS key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedDataKey {
    /// The ARN of the KMS key that wrapped it.
    pub kms_key_id: String,
    /// The data key, encrypted by KMS.
    pub wrapped_key: Vec<u8>,
}

/// One item of the accounts table as the key rotation reads it: never a secret, never the
/// masked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyItem {
    /// The item's key; `None` for an item without string keys (which the table's key schema
    /// rules out).
    pub key: Option<ItemKey>,
    /// The optimistic-lock version, or why it cannot be read.
    pub version: Result<u64, &'static str>,
    /// The wrapped data key of the item's `secrets` envelope: `None` for items without secrets,
    /// or why the envelope cannot be read.
    pub data_key: Result<Option<WrappedDataKey>, &'static str>,
}

/// One page of [`AccountStore::data_keys_page`].
#[derive(Debug, Clone)]
pub struct DataKeyPage {
    /// The page's items, in the scan's order.
    pub items: Vec<DataKeyItem>,
    /// Where the next page starts; `None` after the last.
    pub next: Option<ScanPosition>,
}

/// Where a scan of the accounts table goes on (opaque).
#[derive(Debug, Clone)]
pub struct ScanPosition(HashMap<String, AttributeValue>);

/// Reads the parts of an item the key rotation needs.
fn data_key_item(item: &HashMap<String, AttributeValue>) -> DataKeyItem {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value.clone()),
        _ => None,
    };
    DataKeyItem {
        key: text("user_id")
            .zip(text("account_id"))
            .map(|(user_id, account_id)| ItemKey {
                user_id,
                account_id,
            }),
        version: match item.get("version") {
            Some(AttributeValue::N(number)) => number
                .parse()
                .map_err(|_| "the item's version is not a whole number"),
            _ => Err("the item has no version"),
        },
        data_key: wrapped_data_key(item.get("secrets")),
    }
}

/// The wrapped data key of a `secrets` envelope; `None` when there is none.
fn wrapped_data_key(
    secrets: Option<&AttributeValue>,
) -> Result<Option<WrappedDataKey>, &'static str> {
    let envelope = match secrets {
        None | Some(AttributeValue::Null(_)) => return Ok(None),
        Some(AttributeValue::M(envelope)) => envelope,
        Some(_) => return Err("the item's secrets are not an envelope map"),
    };
    let Some(AttributeValue::S(kms_key_id)) = envelope.get("kms_key_id") else {
        return Err("the envelope names no KMS key");
    };
    let Some(AttributeValue::B(wrapped_key)) = envelope.get("wrapped_key") else {
        return Err("the envelope has no wrapped data key");
    };
    Ok(Some(WrappedDataKey {
        kms_key_id: kms_key_id.clone(),
        wrapped_key: wrapped_key.clone().into_inner(),
    }))
}

/// An account's configuration as stored: masked JSON, where its secrets are, and the envelope
/// sealing them.
#[derive(Debug, Clone)]
pub struct SealedConfiguration {
    /// The configuration as JSON, each secret replaced by the mask.
    pub masked: String,
    /// Where the secrets are.
    pub secret_paths: Vec<SecretPath>,
    /// The sealed secrets (none when there are none).
    pub envelope: Option<Envelope>,
}

/// The owner of a sender address: one account of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderClaim {
    /// The address, normalised.
    pub address: String,
    /// The owning user.
    pub user_id: UserId,
    /// The owning account.
    pub account_id: String,
    /// Claims made before verification attempts were recorded: whether this service created
    /// the SES identity (and so removes it on release).
    pub created_identity: bool,
    /// The verification this claim started: the SES identity is tagged with it, and only that
    /// identity's success proves the claim. `None` on claims made before attempts existed.
    pub attempt: Option<String>,
    /// SES verified this claim's attempt.
    pub verified: bool,
    /// When the attempt started (epoch seconds; 0 when unknown).
    pub started_at: i64,
}

impl SenderClaim {
    /// Whether `account` (of `user`) holds this claim.
    pub fn is_held_by(&self, user: &UserId, account_id: &str) -> bool {
        self.user_id == *user && self.account_id == account_id
    }
}

/// What an account write does with its sender claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderWrite {
    /// The account keeps a claim it holds (the write fails if it no longer does).
    Hold(SenderClaim),
    /// The account claims the sender with a new verification attempt, counted against the
    /// user's hourly verification starts.
    Start(SenderClaim),
}

impl SenderWrite {
    /// The claim written or held.
    pub fn claim(&self) -> &SenderClaim {
        match self {
            Self::Hold(claim) | Self::Start(claim) => claim,
        }
    }
}

/// Where a transaction put its sender items.
#[derive(Debug, Default, Clone, Copy)]
struct SenderSlots {
    claim: Option<usize>,
    verifications: Option<usize>,
}

impl SenderSlots {
    /// The error for a failed sender item, if one failed.
    fn error(&self, failed: &crate::storage::FailedConditions) -> Option<Error> {
        if self.verifications.is_some_and(|slot| failed.at(slot)) {
            return Some(Error::QuotaExceeded {
                code: "sender_verifications_exceeded",
                message: format!(
                    "At most {VERIFICATIONS_PER_HOUR} sender verifications can be started per hour."
                ),
                retry_after: 3600,
            });
        }
        self.claim
            .is_some_and(|slot| failed.at(slot))
            .then_some(Error::Conflict {
                code: SENDER_TAKEN,
                message: "The sender was claimed by another request meanwhile; retry.".into(),
                existing_id: None,
            })
    }
}

/// Internal conflict code: another account took the sender between the read and the write. The
/// service answers it as a pending verification (never revealing another customer's sender).
pub const SENDER_TAKEN: &str = "sender_taken";

/// Sender claims live in the accounts table under their own partition (`sender#<address>`),
/// which no user's partition can reach: their sort key `#owner` is no valid account id.
fn sender_key(address: &str) -> HashMap<String, AttributeValue> {
    user_key(&format!("sender#{address}"), "account_id", "#owner")
}

fn text_of(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(value)) => value.clone(),
        _ => String::new(),
    }
}

fn concurrent_change() -> Error {
    Error::Conflict {
        code: "concurrent_update",
        message: "The account was changed by another request meanwhile; retry.".into(),
        existing_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &str) -> AttributeValue {
        AttributeValue::S(value.to_owned())
    }

    fn account_item(secrets: Option<AttributeValue>) -> HashMap<String, AttributeValue> {
        let mut item = HashMap::from([
            ("user_id".to_owned(), text("alice")),
            ("account_id".to_owned(), text("crm-1")),
            (
                "configuration".to_owned(),
                text(r#"{"api_key":"********"}"#),
            ),
            ("version".to_owned(), AttributeValue::N("3".to_owned())),
        ]);
        if let Some(secrets) = secrets {
            item.insert("secrets".to_owned(), secrets);
        }
        item
    }

    /// The item a seal stores, through the same encoding as every account write.
    fn sealed_item() -> HashMap<String, AttributeValue> {
        let envelope = Envelope {
            v: 1,
            kms_key_id: "arn:aws:kms:eu-west-1:1:key/old".to_owned(),
            wrapped_key: vec![1, 2, 3],
            nonce: vec![4; 12],
            ciphertext: vec![5; 20],
        };
        account_item(Some(serde_dynamo::to_attribute_value(&envelope).unwrap()))
    }

    #[test]
    fn an_envelopes_data_key_is_read_with_the_items_key_and_version() {
        let read = data_key_item(&sealed_item());
        assert_eq!(
            read.key,
            Some(ItemKey {
                user_id: "alice".to_owned(),
                account_id: "crm-1".to_owned(),
            })
        );
        assert_eq!(read.version, Ok(3));
        assert_eq!(
            read.data_key,
            Ok(Some(WrappedDataKey {
                kms_key_id: "arn:aws:kms:eu-west-1:1:key/old".to_owned(),
                wrapped_key: vec![1, 2, 3],
            }))
        );
    }

    #[test]
    fn items_without_an_envelope_have_no_data_key() {
        assert_eq!(data_key_item(&account_item(None)).data_key, Ok(None));
        let null = account_item(Some(AttributeValue::Null(true)));
        assert_eq!(data_key_item(&null).data_key, Ok(None));
        // A user's counter: no version, no secrets.
        let counter = HashMap::from([
            ("user_id".to_owned(), text("alice")),
            ("account_id".to_owned(), text(QUOTA_ITEM)),
            (
                "account_count".to_owned(),
                AttributeValue::N("1".to_owned()),
            ),
        ]);
        let read = data_key_item(&counter);
        assert_eq!(read.data_key, Ok(None));
        assert_eq!(read.version, Err("the item has no version"));
    }

    #[test]
    fn a_broken_envelope_says_what_is_wrong_and_nothing_it_holds() {
        let not_a_map = account_item(Some(text("sealed")));
        assert_eq!(
            data_key_item(&not_a_map).data_key,
            Err("the item's secrets are not an envelope map")
        );
        let mut no_key = sealed_item();
        if let Some(AttributeValue::M(envelope)) = no_key.get_mut("secrets") {
            envelope.remove("kms_key_id");
        }
        assert_eq!(
            data_key_item(&no_key).data_key,
            Err("the envelope names no KMS key")
        );
        let mut no_wrapped = sealed_item();
        if let Some(AttributeValue::M(envelope)) = no_wrapped.get_mut("secrets") {
            envelope.insert("wrapped_key".to_owned(), text("not bytes"));
        }
        assert_eq!(
            data_key_item(&no_wrapped).data_key,
            Err("the envelope has no wrapped data key")
        );
        let mut odd_version = sealed_item();
        odd_version.insert("version".to_owned(), AttributeValue::N("1.5".to_owned()));
        assert_eq!(
            data_key_item(&odd_version).version,
            Err("the item's version is not a whole number")
        );
    }
}
