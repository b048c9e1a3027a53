//! Sender ownership, as use cases of the accounts service: what a save does with an email
//! account's sender (claim with a new verification attempt, hold, or answer pending), the
//! re-check of pending senders on reads, and the release before a claim is deleted. The rules
//! are in [`super`]'s module doc and docs/security.md, "Sender ownership".

use super::super::model::AccountDraft;
use super::super::service::{AccountService, parse_configuration};
use super::super::store::{AccountItem, SenderClaim, SenderWrite, UNVERIFIED_CLAIM_SECONDS};
use super::{
    SenderStatus, daily_send_limit, is_freemail, is_pending_sender, mark_pending, sender_of,
};
use crate::error::Error;
use crate::ids::UserId;
use crate::platforms::Provider;
use crate::targets::model::Email;

impl AccountService {
    /// An email account waiting for SES to verify its sender is re-checked on a read, and
    /// marked connected once SES has verified the attempt its own claim started.
    pub(crate) async fn refresh_pending_sender(
        &self,
        item: AccountItem,
    ) -> Result<AccountItem, Error> {
        if !is_pending_sender(&item) {
            return Ok(item);
        }
        let Some(claim) = self.owned_sender(&item).await? else {
            return Ok(item);
        };
        self.confirm_sender(item, &claim).await
    }

    /// Connects an account whose unverified claim SES has now verified (this claim's attempt,
    /// nothing else); the account as it then stands.
    pub(crate) async fn confirm_sender(
        &self,
        item: AccountItem,
        claim: &SenderClaim,
    ) -> Result<AccountItem, Error> {
        let (Some(attempt), false) = (claim.attempt.as_deref(), claim.verified) else {
            return Ok(item);
        };
        let address = Email::parse(&claim.address).map_err(Error::internal)?;
        if !self.senders.status(&address).await?.proves(attempt)
            || !self.store.mark_sender_verified(&item, claim).await?
        {
            return Ok(item);
        }
        let user = item.user_id.clone();
        let id = item.account_id.clone();
        self.store.get(&user, &id).await?.ok_or(Error::NotFound)
    }

    /// For an email account, what the save does with its sender, and whether the account is
    /// connected meanwhile:
    /// - a claim this account holds and SES verified for it (or one from before verification
    ///   attempts were recorded, on a connected account) is kept;
    /// - a claim it holds whose attempt is still pending in SES is kept, the account pending;
    /// - an address nobody holds, a claim of its own whose identity is gone, or a claim nobody
    ///   verified within a day starts a new verification attempt (counted per user and hour);
    /// - an address another account holds: pending, nothing claimed, SES never asked (the
    ///   same answer as a pending verification, so no one learns who sends from what).
    pub(crate) async fn plan_sender(
        &self,
        user: &UserId,
        draft: &mut AccountDraft,
        existing: Option<&AccountItem>,
    ) -> Result<Option<SenderWrite>, Error> {
        let address = sender_of(
            draft.account_type,
            draft.provider.as_deref(),
            &draft.configuration,
        )
        .map_err(|problem| Error::Validation(vec![problem]))?;
        let mailbox = Provider::of_account(draft.account_type, draft.provider.as_deref())
            .filter(|provider| provider.is_mailbox());
        if address.is_some() || mailbox.is_some() {
            daily_send_limit(mailbox, &draft.configuration)
                .map_err(|problem| Error::Validation(vec![problem]))?;
        }
        let Some(address) = address else {
            return Ok(None);
        };
        // Mail "from" a free-mail address that its provider's servers did not send fails the
        // provider's DMARC policy: such an address sends through its own mailbox only.
        if let Some((_, domain)) = address.as_str().rsplit_once('@')
            && is_freemail(domain)
        {
            return Err(Error::Unprocessable {
                code: "freemail_sender_needs_mailbox",
                message: "This address's provider rejects mail sent from other servers; connect the mailbox itself (Google or Microsoft) to send from it.".into(),
                details: vec![crate::error::FieldError::new(
                    format!("configuration.{}", super::FROM_ADDRESS),
                    "is a free-mail address: connect its mailbox instead",
                )],
            });
        }
        let account_id = draft.account_id.as_str();
        let now = self.clock.epoch_seconds();
        let current = self.store.sender_owner(address.as_str()).await?;
        let link_expired =
            |claim: &SenderClaim| now.saturating_sub(claim.started_at) > UNVERIFIED_CLAIM_SECONDS;
        let write = match current {
            Some(claim) if claim.is_held_by(user, account_id) => {
                let legacy_connected = claim.attempt.is_none()
                    && existing.is_some_and(|old| old.connected && old.status_reason.is_none());
                if claim.verified || legacy_connected {
                    SenderWrite::Hold(claim)
                } else if let Some(attempt) = claim.attempt.as_deref()
                    && !link_expired(&claim)
                    && matches!(
                        self.senders.status(&address).await?,
                        SenderStatus::Known { attempt: Some(tagged), .. } if tagged == attempt
                    )
                {
                    mark_pending(&mut draft.connected, &mut draft.status_reason);
                    SenderWrite::Hold(claim)
                } else {
                    mark_pending(&mut draft.connected, &mut draft.status_reason);
                    SenderWrite::Start(new_claim(&address, user, account_id, now))
                }
            }
            Some(claim) if claim.attempt.is_none() || claim.verified || !link_expired(&claim) => {
                mark_pending(&mut draft.connected, &mut draft.status_reason);
                return Ok(None);
            }
            _ => {
                mark_pending(&mut draft.connected, &mut draft.status_reason);
                SenderWrite::Start(new_claim(&address, user, account_id, now))
            }
        };
        Ok(Some(write))
    }

    /// The claim a stored account holds on its sender, if it holds one.
    pub(crate) async fn owned_sender(
        &self,
        item: &AccountItem,
    ) -> Result<Option<SenderClaim>, Error> {
        let address = match &item.sender_address {
            Some(address) => address.clone(),
            // Accounts stored before the claimed address was kept on the item.
            None => {
                let configuration = parse_configuration(&item.configuration)?;
                let Ok(Some(address)) =
                    sender_of(item.account_type, item.provider.as_deref(), &configuration)
                else {
                    return Ok(None);
                };
                address.as_str().to_owned()
            }
        };
        Ok(self
            .store
            .sender_owner(&address)
            .await?
            .filter(|owner| owner.is_held_by(&item.user_id, item.account_id.as_str())))
    }

    /// Before a claim is released: deletes the SES identity it created (its attempt's, or a
    /// claim from before attempts that created one), so the next claimant must prove control
    /// again. An identity this service did not create is left alone.
    pub(crate) async fn forget_identity(&self, released: &SenderClaim) -> Result<(), Error> {
        let address = Email::parse(&released.address).map_err(Error::internal)?;
        let ours = match released.attempt.as_deref() {
            Some(attempt) => matches!(
                self.senders.status(&address).await?,
                SenderStatus::Known { attempt: Some(tagged), .. } if tagged == attempt
            ),
            None => released.created_identity,
        };
        if ours {
            self.senders.forget(&address).await?;
        }
        Ok(())
    }
}

/// A claim with a new verification attempt.
fn new_claim(address: &Email, user: &UserId, account_id: &str, now: i64) -> SenderClaim {
    SenderClaim {
        address: address.as_str().to_owned(),
        user_id: user.clone(),
        account_id: account_id.to_owned(),
        created_identity: false,
        attempt: Some(uuid::Uuid::new_v4().to_string()),
        verified: false,
        started_at: now,
    }
}
