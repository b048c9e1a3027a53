//! Sender claims in the accounts table: read the owner, claim with a new attempt (counted per
//! user and hour), hold, mark verified with the account, release. The account's own writes
//! (`mod.rs`) carry these items in their transactions.

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, TransactWriteItem, Update};

use crate::error::Error;
use crate::ids::UserId;
use crate::storage::{TransactionFailure, number, read_item, text, transact_write};

use super::AccountItem;
use super::AccountStore;
use super::claims::{
    SenderClaim, SenderSlots, SenderWrite, UNVERIFIED_CLAIM_SECONDS, VERIFICATIONS_PER_HOUR,
    VERIFICATIONS_PREFIX, sender_key, text_of,
};

impl AccountStore {
    /// Adds what a sender write needs to a transaction; returns where it put them.
    pub(super) fn push_sender(
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
            .set_key(Some(Self::key(&item.user_id, item.account_id.as_str())))
            .condition_expression("version = :expected")
            .update_expression(
                "SET connected = :true, version = :next, updated_at = :now REMOVE status_reason",
            )
            .expression_attribute_values(":expected", number(item.version))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":next", number(item.version + 1))
            .expression_attribute_values(":now", text(self.clock.now_rfc3339()))
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
            .expression_attribute_values(":user", text(item.user_id.as_str()))
            .expression_attribute_values(":account", text(item.account_id.to_string()))
            .expression_attribute_values(":attempt", text(attempt))
            .build()
            .map_err(Error::internal)?;
        let items = vec![
            TransactWriteItem::builder().update(account).build(),
            TransactWriteItem::builder().update(verified).build(),
        ];
        match transact_write(&self.dynamodb, items).await {
            Ok(()) => {
                self.announce(
                    item,
                    Some((item.connected, item.status_reason.as_deref())),
                    (true, None),
                    item.version + 1,
                )
                .await;
                Ok(true)
            }
            Err(TransactionFailure::ConditionFailed(_)) => Ok(false),
            Err(failure) => Err(failure.into()),
        }
    }

    /// Claims a sender for an account with a new verification attempt: holds when nobody owns
    /// it, this account already does, or another account's claim was never verified and its
    /// link has expired. The claim is unverified until SES verifies this attempt.
    pub(super) fn claim_sender(&self, claim: &SenderClaim) -> Result<TransactWriteItem, Error> {
        let attempt = claim
            .attempt
            .as_deref()
            .ok_or_else(|| Error::internal("a new claim needs its attempt"))?;
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(sender_key(&claim.address)))
            .update_expression("SET owner_user_id = :user, owner_account_id = :account, attempt = :attempt, verified = :false, started_at = :now REMOVE created_identity")
            .condition_expression("attribute_not_exists(owner_user_id) OR (owner_user_id = :user AND owner_account_id = :account) OR (verified = :false AND started_at < :stale)")
            .expression_attribute_values(":user", text(claim.user_id.as_str()))
            .expression_attribute_values(":account", text(claim.account_id.clone()))
            .expression_attribute_values(":attempt", text(attempt))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":now", number(claim.started_at))
            .expression_attribute_values(
                ":stale",
                number(claim.started_at.saturating_sub(UNVERIFIED_CLAIM_SECONDS)),
            )
            .build()
            .map_err(Error::internal)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Holds a sender this account already owns, unchanged: fails when it no longer does.
    pub(super) fn hold_sender(&self, claim: &SenderClaim) -> Result<TransactWriteItem, Error> {
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(sender_key(&claim.address)))
            .condition_expression("owner_user_id = :user AND owner_account_id = :account")
            .expression_attribute_values(":user", text(claim.user_id.as_str()))
            .expression_attribute_values(":account", text(claim.account_id.clone()))
            .build()
            .map_err(Error::internal)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// Counts a verification start against the user's hourly allowance (the item expires with
    /// the table's TTL attribute a day later).
    pub(super) fn count_verification(
        &self,
        user: &UserId,
        now: i64,
    ) -> Result<TransactWriteItem, Error> {
        let hour = now.div_euclid(3600);
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(
                user,
                &format!("{VERIFICATIONS_PREFIX}{hour}"),
            )))
            .update_expression("ADD starts :one SET expires_at_epoch = :expires")
            .condition_expression("attribute_not_exists(starts) OR starts < :max")
            .expression_attribute_values(":one", number("1"))
            .expression_attribute_values(":max", number(VERIFICATIONS_PER_HOUR))
            .expression_attribute_values(
                ":expires",
                number(hour.saturating_add(25).saturating_mul(3600)),
            )
            .build()
            .map_err(Error::internal)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Releases a sender this account owns (nothing when the claim is already gone).
    pub(super) fn release_sender(&self, claim: &SenderClaim) -> Result<TransactWriteItem, Error> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(sender_key(&claim.address)))
            .condition_expression("attribute_not_exists(owner_user_id) OR (owner_user_id = :user AND owner_account_id = :account)")
            .expression_attribute_values(":user", text(claim.user_id.as_str()))
            .expression_attribute_values(":account", text(claim.account_id.clone()))
            .build()
            .map_err(Error::internal)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }
}
