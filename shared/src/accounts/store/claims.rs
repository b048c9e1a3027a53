//! Sender claims as stored: who owns an address, the verification attempt that proves it, and
//! the per-user count of verification starts. Plain types and keys; `senders.rs` writes them.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::Error;
use crate::ids::UserId;
use crate::storage::user_key;

/// Sort-key prefix of a user's sender-verification counter for one hour (`#verifications#<hour>`).
pub(super) const VERIFICATIONS_PREFIX: &str = "#verifications#";

/// Sender verifications a user may start per hour: each one makes SES mail an address, and SES
/// holds at most 10,000 identities per region.
pub const VERIFICATIONS_PER_HOUR: u32 = 10;

/// After this long an unverified claim may be taken over by another account: SES's verification
/// link has expired, and the address's real owner must not be locked out by a squatter.
pub const UNVERIFIED_CLAIM_SECONDS: i64 = 24 * 3600;

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
pub(super) struct SenderSlots {
    pub(super) claim: Option<usize>,
    pub(super) verifications: Option<usize>,
}

impl SenderSlots {
    /// The error for a failed sender item, if one failed.
    pub(super) fn error(&self, failed: &crate::storage::FailedConditions) -> Option<Error> {
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
pub(super) fn sender_key(address: &str) -> HashMap<String, AttributeValue> {
    user_key(&format!("sender#{address}"), "account_id", "#owner")
}

pub(super) fn text_of(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(value)) => value.clone(),
        _ => String::new(),
    }
}
