//! `AccountStore`: integration accounts in DynamoDB.
//!
//! Table key: `user_id` (partition) + `account_id` (sort). Besides the accounts, each user's
//! partition holds one counter item (sort key [`QUOTA_ITEM`], which no account id can equal since
//! `#` is not allowed in one) that transactions keep equal to the number of accounts.

mod by_provider;
mod claims;
mod connect_sessions;
mod data_keys;
pub mod events;
mod leases;
mod mailboxes;
mod senders;

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
    TransactionFailure, decode_item, encode_item, number, read_item, text, transact_write, user_key,
};

pub use claims::{
    SENDER_TAKEN, SenderClaim, SenderWrite, UNVERIFIED_CLAIM_SECONDS, VERIFICATIONS_PER_HOUR,
};
pub use connect_sessions::{ConnectSessionItem, ConnectSessionStatus};
pub use data_keys::{DataKeyItem, DataKeyPage, ItemKey, ScanPosition, WrappedDataKey};
pub use mailboxes::MailboxCursor;

/// `status_reason` of an account whose OAuth grant is gone: the user must connect it again.
pub const REAUTH_REQUIRED: &str = "reauth_required";

/// Sort key of the per-user account counter.
pub const QUOTA_ITEM: &str = "#quota";

// Slots of an account's transactions, in the order they are pushed.
const ACCOUNT_SLOT: usize = 0;
const COUNTER_SLOT: usize = 1;

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountItem {
    /// Partition key: the owner.
    pub user_id: UserId,
    /// Sort key.
    pub account_id: AccountId,
    /// What kind of account it is (email, social, calendar, crm).
    pub account_type: AccountType,
    /// Who issued its credentials (`x`, `instagram`, `google`, `microsoft`, …); none for an SES
    /// sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The user's name for it.
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
    /// When the account's connection was last checked with its provider (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked_at: Option<String>,
    /// Optimistic-lock version, +1 per write.
    pub version: u64,
}

/// Integration accounts in one DynamoDB table.
#[derive(Clone)]
pub struct AccountStore {
    pub(super) dynamodb: Client,
    pub(super) table: String,
    pub(super) events: crate::webhooks::EventPublisher,
    /// What the store's timestamps and its events' times read (the service's clock).
    pub(super) clock: crate::clock::Clock,
}

impl AccountStore {
    /// A store over `table` that publishes no events.
    pub fn new(dynamodb: Client, table: impl Into<String>) -> Self {
        Self {
            dynamodb,
            table: table.into(),
            events: crate::webhooks::EventPublisher::default(),
            clock: crate::clock::Clock::system(),
        }
    }

    /// The same store, telling time by `clock`.
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The same store, publishing its accounts' state changes with `events` (webhooks).
    pub fn with_events(mut self, events: crate::webhooks::EventPublisher) -> Self {
        self.events = events;
        self
    }

    /// The table name (part of the secrets' encryption context).
    pub fn table(&self) -> &str {
        &self.table
    }

    pub(super) fn key(user: &UserId, account_id: &str) -> HashMap<String, AttributeValue> {
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
            .expression_attribute_values(":user", text(user.as_str()))
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
            .expression_attribute_values(":zero", number("0"))
            .expression_attribute_values(":one", number("1"))
            .expression_attribute_values(":max", number(MAX_ACCOUNTS_PER_USER))
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
            .expression_attribute_values(":expected", number(expected_version))
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
            .expression_attribute_values(":minus_one", number("-1"))
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

    /// An update of one account that applies only while it is still at the version read.
    pub(super) fn update_at_version(
        &self,
        item: &AccountItem,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&item.user_id, item.account_id.as_str())))
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", number(item.version))
    }
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

/// 409 `concurrent_update`: the account changed between the read and the write.
pub(crate) fn concurrent_change() -> Error {
    Error::Conflict {
        code: "concurrent_update",
        message: "The account was changed by another request meanwhile; retry.".into(),
        existing_id: None,
    }
}
