//! `AccountStore`: integration accounts in DynamoDB.
//!
//! Table key: `user_id` (partition) + `account_id` (sort). Besides the accounts, each user's
//! partition holds one counter item (sort key [`QUOTA_ITEM`], which no account id can equal since
//! `#` is not allowed in one) that transactions keep equal to the number of accounts.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
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
                let is_quota = matches!(item.get("account_id"), Some(AttributeValue::S(id)) if id == QUOTA_ITEM);
                if !is_quota {
                    accounts.push(decode_item(item)?);
                }
            }
        }
        Ok(accounts)
    }

    /// Creates an account and counts it, in one transaction with the claim of its sender (if
    /// any): fails with 409 if it appeared meanwhile or another account owns the sender, and with
    /// 422 when the user already has the maximum.
    pub async fn insert(
        &self,
        item: &AccountItem,
        sender: Option<&SenderClaim>,
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
        if let Some(claim) = sender {
            items.push(self.claim_sender(claim)?);
        }
        match transact_write(&self.dynamodb, items).await {
            Ok(()) => Ok(()),
            Err(TransactionFailure::ConditionFailed(failed)) if failed[0] => {
                Err(concurrent_change())
            }
            Err(TransactionFailure::ConditionFailed(failed)) if failed.get(2) == Some(&true) => {
                Err(sender_claimed())
            }
            Err(TransactionFailure::ConditionFailed(_)) => Err(Error::LimitExceeded {
                code: "account_limit_reached",
                message: format!("A user can have at most {MAX_ACCOUNTS_PER_USER} accounts."),
            }),
            Err(failure) => Err(failure.into()),
        }
    }

    /// Replaces an account if it is still at `expected_version` (409 otherwise), in one
    /// transaction with the claim of its sender and the release of a sender it no longer uses.
    pub async fn replace(
        &self,
        item: &AccountItem,
        expected_version: u64,
        sender: Option<&SenderClaim>,
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
        if let Some(claim) = sender {
            items.push(self.claim_sender(claim)?);
        }
        if let Some(claim) = released {
            items.push(self.release_sender(claim)?);
        }
        match transact_write(&self.dynamodb, items).await {
            Ok(()) => Ok(()),
            Err(TransactionFailure::ConditionFailed(failed)) if failed[0] => {
                Err(concurrent_change())
            }
            Err(TransactionFailure::ConditionFailed(failed))
                if sender.is_some() && failed.get(1) == Some(&true) =>
            {
                Err(sender_claimed())
            }
            Err(TransactionFailure::ConditionFailed(_)) => Err(concurrent_change()),
            Err(failure) => Err(failure.into()),
        }
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
        }))
    }

    /// Marks an account whose sender SES has since verified as connected, if it is unchanged.
    pub async fn mark_sender_verified(&self, item: &AccountItem) -> Result<bool, Error> {
        let result = self
            .update_at_version(item)
            .update_expression(
                "SET connected = :true, version = :next, updated_at = :now REMOVE status_reason",
            )
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":next", AttributeValue::N((item.version + 1).to_string()))
            .expression_attribute_values(":now", AttributeValue::S(crate::now_rfc3339()))
            .send()
            .await;
        conditional(result)
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
    /// caller holds an unexpired lease or the account changed.
    pub async fn take_refresh_lease(&self, item: &AccountItem, until: i64) -> Result<bool, Error> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&item.user_id, &item.account_id)))
            .update_expression("SET refresh_lease_until = :until")
            .condition_expression(
                "version = :expected AND (attribute_not_exists(refresh_lease_until) OR refresh_lease_until < :now)",
            )
            .expression_attribute_values(":until", AttributeValue::N(until.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(crate::communications::store::epoch_seconds().to_string()))
            .expression_attribute_values(":expected", AttributeValue::N(item.version.to_string()))
            .send()
            .await;
        conditional(result)
    }

    /// Gives a lease back without changing the account.
    pub async fn release_refresh_lease(&self, item: &AccountItem) -> Result<(), Error> {
        let result = self
            .update_at_version(item)
            .update_expression("REMOVE refresh_lease_until")
            .send()
            .await;
        conditional(result).map(|_| ())
    }

    /// Marks an account whose grant is gone: disconnected, `status_reason` `reauth_required`,
    /// lease released; only if it is still at its version.
    pub async fn mark_reauth_required(&self, item: &AccountItem) -> Result<bool, Error> {
        let result = self
            .update_at_version(item)
            .update_expression("SET connected = :false, status_reason = :reason, version = :next, updated_at = :now REMOVE refresh_lease_until")
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":reason", AttributeValue::S(REAUTH_REQUIRED.into()))
            .expression_attribute_values(":next", AttributeValue::N((item.version + 1).to_string()))
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

    /// Claims a sender for an account: holds when nobody owns it or this account already does.
    fn claim_sender(&self, claim: &SenderClaim) -> Result<TransactWriteItem, Error> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(sender_key(&claim.address)))
            .update_expression("SET owner_user_id = :user, owner_account_id = :account, created_identity = if_not_exists(created_identity, :created)")
            .condition_expression("attribute_not_exists(owner_user_id) OR (owner_user_id = :user AND owner_account_id = :account)")
            .expression_attribute_values(":user", AttributeValue::S(claim.user_id.as_str().to_owned()))
            .expression_attribute_values(":account", AttributeValue::S(claim.account_id.clone()))
            .expression_attribute_values(":created", AttributeValue::Bool(claim.created_identity))
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
            Err(TransactionFailure::ConditionFailed(failed)) if failed[0] => Err(Error::NotFound),
            Err(TransactionFailure::ConditionFailed(_)) => Err(concurrent_change()),
            Err(failure) => Err(failure.into()),
        }
    }
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
    /// Whether this service created the SES identity (and so removes it on release).
    pub created_identity: bool,
}

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

fn sender_claimed() -> Error {
    Error::Conflict {
        code: "sender_claimed",
        message: "Another account already sends from this address.".into(),
        existing_id: None,
    }
}

fn concurrent_change() -> Error {
    Error::Conflict {
        code: "concurrent_update",
        message: "The account was changed by another request meanwhile; retry.".into(),
        existing_id: None,
    }
}
