//! Sender ownership: a user may send email only from an address it has proven it controls, and
//! an address belongs to one user at a time.
//!
//! - Proof is SES's own, and per claim: a claim (written with the account, before SES is asked
//!   anything) records a new verification attempt; SES then gets a new address identity tagged
//!   with that attempt, and mails the address a link. Only that identity, verified, connects the
//!   account. An identity that already existed proves nothing: one an earlier attempt of ours
//!   left is deleted and created again (SES mails the owner again); one we did not create (the
//!   operator's no-reply@) is never touched and never connects anyone.
//! - Until then the account is `connected: false`, `status_reason:
//!   "sender_pending_verification"`, and reads re-check it (a bounded number per request).
//! - Only *address* identities count. A domain identity in the operator's SES account would let
//!   every user claim every address of that domain, so it never makes an address a user's.
//! - One owner at a time: the claim is an item in DynamoDB. An address another account holds
//!   gets the same answer as a pending verification (nothing reveals which addresses other
//!   customers send from) and never connects; a claim never verified within a day (SES's link
//!   expired) may be taken over. Releasing (delete, or a new address) deletes the identity first,
//!   then the claim.
//! - At most [`super::store::VERIFICATIONS_PER_HOUR`] verification starts per user and hour (429).
//! - Delivery re-reads the claim before each send: a communication from an address its account
//!   no longer owns fails with `sender_not_owned` and nothing is sent.

pub mod mailbox;
pub mod ownership;

use aws_sdk_sesv2::error::ProvideErrorMetadata;
use serde_json::{Map, Value};

use super::model::AccountType;
use super::store::AccountItem;
use crate::aws::dependency_error;
use crate::error::{Error, FieldError};
use crate::targets::model::Email;

pub mod limits;

pub use limits::{DEFAULT_DAILY_SEND_LIMIT, MAX_DAILY_SEND_LIMIT, daily_send_limit, is_freemail};

/// `status_reason` of an email account whose sender SES has not verified yet.
pub const PENDING_VERIFICATION: &str = "sender_pending_verification";

pub use super::model::FROM_ADDRESS;

/// The configuration field that caps an email account's sends per UTC day.
pub const DAILY_SEND_LIMIT: &str = "daily_send_limit";

/// The SES sender an account sends from: an email account's `from_address`, normalised.
/// `Ok(None)` for accounts of other types, email accounts without one, and mailboxes connected
/// at their provider (Google, Microsoft): signing in there proved the address, and their mail
/// goes through the provider, never SES.
pub fn sender_of(
    account_type: AccountType,
    provider: Option<&str>,
    configuration: &Map<String, Value>,
) -> Result<Option<Email>, FieldError> {
    let mailbox = provider
        .and_then(crate::platforms::Provider::parse)
        .is_some_and(crate::platforms::Provider::is_mailbox);
    if account_type != AccountType::Email || mailbox {
        return Ok(None);
    }
    match configuration.get(FROM_ADDRESS) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(address)) => Email::parse(address)
            .map(Some)
            .map_err(|problem| FieldError::new(format!("configuration.{FROM_ADDRESS}"), problem)),
        Some(_) => Err(FieldError::new(
            format!("configuration.{FROM_ADDRESS}"),
            "must be an email address",
        )),
    }
}

/// The SES tag that names the verification attempt (a claim's) that created an identity.
pub const ATTEMPT_TAG: &str = "pipewise:sender-claim-attempt";

/// What SES says of an address identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderStatus {
    /// SES has no such address identity.
    Unknown,
    /// SES has it.
    Known {
        /// SES may send from it.
        verified: bool,
        /// The claim attempt that created it ([`ATTEMPT_TAG`]); `None` for an identity this
        /// service did not create (the operator's own, or one made by hand).
        attempt: Option<String>,
    },
}

impl SenderStatus {
    /// Whether this is the identity `attempt` created, verified: the only proof that the
    /// claim holding `attempt` controls the address.
    pub fn proves(&self, attempt: &str) -> bool {
        matches!(self, Self::Known { verified: true, attempt: Some(tagged) } if tagged == attempt)
    }
}

/// SES calls about sender identities (not sending: see `communications::delivery`).
#[derive(Clone, Debug)]
pub struct SenderVerification {
    ses: aws_sdk_sesv2::Client,
}

impl SenderVerification {
    /// Over an SES v2 client.
    pub fn new(ses: aws_sdk_sesv2::Client) -> Self {
        Self { ses }
    }

    /// Where SES stands on `address` as an address identity, and which attempt made it.
    pub async fn status(&self, address: &Email) -> Result<SenderStatus, Error> {
        match self
            .ses
            .get_email_identity()
            .email_identity(address.as_str())
            .send()
            .await
        {
            Ok(identity) => {
                // AWS reports `VerifiedForSendingStatus`; moto reports only `VerificationStatus`.
                let verified = identity.verified_for_sending_status
                    || identity.verification_status
                        == Some(aws_sdk_sesv2::types::VerificationStatus::Success);
                let attempt = identity
                    .tags()
                    .iter()
                    .find(|tag| tag.key() == ATTEMPT_TAG)
                    .map(|tag| tag.value().to_owned());
                Ok(SenderStatus::Known { verified, attempt })
            }
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.code() == Some("NotFoundException")) =>
            {
                Ok(SenderStatus::Unknown)
            }
            Err(error) => Err(dependency_error(error)),
        }
    }

    /// Starts SES verification of `address` for the claim attempt `attempt` (SES mails the
    /// address a link): a new identity tagged with the attempt. An identity an earlier attempt
    /// of ours left (tagged, any attempt) is deleted first, so SES mails the owner again and
    /// the old verification proves nothing; an identity this service did not create is never
    /// touched, and `Ok(false)` says no verification was started.
    pub async fn start(
        &self,
        address: &Email,
        current: &SenderStatus,
        attempt: &str,
    ) -> Result<bool, Error> {
        match current {
            SenderStatus::Known { attempt: None, .. } => return Ok(false),
            SenderStatus::Known {
                attempt: Some(_), ..
            } => self.forget(address).await?,
            SenderStatus::Unknown => {}
        }
        let tag = aws_sdk_sesv2::types::Tag::builder()
            .key(ATTEMPT_TAG)
            .value(attempt)
            .build()
            .map_err(Error::internal)?;
        match self
            .ses
            .create_email_identity()
            .email_identity(address.as_str())
            .tags(tag)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            // Someone created it between our read and now: not this attempt's.
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.code() == Some("AlreadyExistsException")) =>
            {
                Ok(false)
            }
            Err(error) => Err(dependency_error(error)),
        }
    }

    /// Removes an address identity (gone already counts as removed).
    pub async fn forget(&self, address: &Email) -> Result<(), Error> {
        match self
            .ses
            .delete_email_identity()
            .email_identity(address.as_str())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.code() == Some("NotFoundException")) =>
            {
                Ok(())
            }
            Err(error) => Err(dependency_error(error)),
        }
    }
}

/// How many pending senders one list re-checks with SES.
pub const PENDING_CHECKS_PER_LIST: usize = 3;

/// Whether an account waits for SES to verify its sender.
pub fn is_pending_sender(item: &AccountItem) -> bool {
    !item.connected && item.status_reason.as_deref() == Some(PENDING_VERIFICATION)
}

/// Keeps an account disconnected until its sender is proven; a client that marks the account
/// disconnected keeps its own reason.
pub fn mark_pending(connected: &mut bool, status_reason: &mut Option<String>) {
    if *connected {
        *connected = false;
        *status_reason = Some(PENDING_VERIFICATION.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn only_email_accounts_have_a_sender_and_it_must_be_an_address() {
        let with = config(json!({"from_address": " Sales@Example.com "}));
        assert_eq!(
            sender_of(AccountType::Email, None, &with)
                .ok()
                .flatten()
                .map(|e| e.as_str().to_owned()),
            Some("sales@example.com".to_owned())
        );
        assert_eq!(sender_of(AccountType::Crm, None, &with), Ok(None));
        assert_eq!(
            sender_of(AccountType::Email, None, &config(json!({}))),
            Ok(None)
        );
        for bad in [json!({"from_address": "nope"}), json!({"from_address": 7})] {
            let field = sender_of(AccountType::Email, None, &config(bad))
                .err()
                .map(|e| e.field);
            assert_eq!(field.as_deref(), Some("configuration.from_address"));
        }
    }
}
