//! A mailbox sends from the address its provider reports, never from typed text. An account
//! connected through a connect session took its `from_address` from the provider then
//! (`last_checked_at` is set); one saved with raw tokens (a migration, the raw-token `POST`) is
//! confirmed with the provider before its first send, with the token that send would use. A
//! token of another mailbox marks the account `mailbox_address_mismatch` and sends nothing.

use serde_json::Value;

use super::FROM_ADDRESS;
use crate::accounts::service::AccountService;
use crate::accounts::store::{AccountItem, concurrent_change};
use crate::error::Error;
use crate::platforms::Provider;
use crate::platforms::connect::IdentityFailure;

/// The `status_reason` of a mailbox whose token belongs to another address than its
/// `from_address`.
pub const MAILBOX_ADDRESS_MISMATCH: &str = "mailbox_address_mismatch";

/// What asking the provider about a mailbox found.
#[derive(Debug)]
pub enum MailboxCheck {
    /// The provider reports the account's address: it may send, as this (current) item.
    Confirmed(Box<AccountItem>),
    /// The token belongs to another address: the account is marked and sends nothing.
    Mismatch,
    /// The provider refused the token (the account, unchanged, for a refresh).
    TokenRefused(Box<AccountItem>),
}

impl AccountService {
    /// Confirms that `access_token` is the mailbox `from` names, once per account: an account
    /// the provider already confirmed (a connect, a test, an earlier send) is returned as it is.
    /// Records the outcome on the account (`last_checked_at`, and `connected` false with
    /// [`MAILBOX_ADDRESS_MISMATCH`] when it is not). An unreachable provider is an error, so the
    /// send is tried again later.
    pub async fn confirm_mailbox(
        &self,
        item: AccountItem,
        provider: Provider,
        access_token: &str,
        from: &str,
    ) -> Result<MailboxCheck, Error> {
        if item.last_checked_at.is_some() {
            return Ok(MailboxCheck::Confirmed(Box::new(item)));
        }
        let identity = match self.tokens.identify(provider, access_token).await {
            Ok(identity) => identity,
            Err(IdentityFailure::TokenRefused) => {
                return Ok(MailboxCheck::TokenRefused(Box::new(item)));
            }
            Err(IdentityFailure::Unavailable) => {
                return Err(Error::unavailable(
                    "the mailbox's provider could not be asked",
                ));
            }
        };
        let reported = identity.fields.get(FROM_ADDRESS).and_then(Value::as_str);
        let matches = reported.is_some_and(|address| address.eq_ignore_ascii_case(from));
        let reason = (!matches).then_some(MAILBOX_ADDRESS_MISMATCH);
        let checked_at = self.clock.now_rfc3339();
        if self
            .store
            .record_check(&item, matches, reason, &checked_at)
            .await?
        {
            if !matches {
                tracing::warn!(user_id = %item.user_id, account_id = %item.account_id, "a mailbox's token belongs to another address; nothing is sent from it");
                return Ok(MailboxCheck::Mismatch);
            }
            let mut item = item;
            item.connected = true;
            item.status_reason = None;
            item.last_checked_at = Some(checked_at);
            item.version += 1;
            return Ok(MailboxCheck::Confirmed(Box::new(item)));
        }
        // Another send of the same account recorded its check first: its finding stands.
        let current = self
            .store
            .get(&item.user_id, &item.account_id)
            .await?
            .ok_or(Error::NotFound)?;
        match (&current.last_checked_at, current.connected) {
            (Some(_), true) => Ok(MailboxCheck::Confirmed(Box::new(current))),
            (Some(_), false)
                if current.status_reason.as_deref() == Some(MAILBOX_ADDRESS_MISMATCH) =>
            {
                Ok(MailboxCheck::Mismatch)
            }
            _ => Err(concurrent_change()),
        }
    }
}
