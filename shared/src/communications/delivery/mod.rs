//! Delivery of one communication: email through SES v2, direct messages through X's and
//! Instagram's HTTP APIs, each with the user's account. Every failure is classified: retry
//! (nothing was delivered and trying again may work), permanent (recorded, never retried) or
//! unknown (the provider may have delivered it, so it is never sent again).

use serde_json::Value;

use super::model::{Channel, DEFAULT_SUBJECT, MessageTemplate, render, single_line};
use super::reason::{DeliveryFailure, FailureReason};
use super::store::CommunicationItem;
use crate::accounts::AccountService;
use crate::accounts::store::AccountItem;
use crate::platforms::Provider;
use crate::platforms::direct::{DirectMessenger, DirectRefusal, DirectSender};

/// What became of a delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted it.
    Sent(Accepted),
    /// Nothing was sent: the sender's daily cap is spent; it may go out from `until` (epoch
    /// seconds, the next UTC day).
    Deferred {
        /// Epoch second from which it may be sent.
        until: i64,
    },
    /// It cannot succeed (no account, revoked token, rejected sender or recipient).
    Failed(DeliveryFailure),
    /// Nothing was delivered; a later attempt may work (throttling, outage, network).
    Retry(DeliveryFailure),
    /// Nothing was delivered: the platform's rate limit is spent until `seconds` from now.
    RateLimited {
        /// Which limit was met (the reason logged while it waits).
        reason: FailureReason,
        /// Seconds until the platform's window resets.
        seconds: u64,
    },
    /// The provider may or may not have delivered it (e.g. a timeout after sending).
    Unknown(DeliveryFailure),
}

pub use super::model::Accepted;
pub use crate::platforms::PlatformApis;

mod batch_reads;
mod email;
mod mailbox;

pub use batch_reads::BatchReads;
pub use email::{OutreachEmail, outreach_mime, ses_sending_client};

/// Reason of an Instagram message that cannot be sent: the person has not messaged the
/// business in the last 24 hours (or never).
pub const INSTAGRAM_WINDOW_CLOSED: &str = FailureReason::InstagramWindowClosed.as_str();

/// How long after a person's last message a business may answer on Instagram.
pub const INSTAGRAM_WINDOW_SECONDS: i64 = crate::platforms::instagram::WINDOW_SECONDS;

/// The per-sender daily cap: one counter per account and UTC day in the runs table.
#[derive(Clone)]
pub struct DailySendCap {
    runs: super::store::RunStore,
    clock: crate::clock::Clock,
}

impl DailySendCap {
    /// Counters in the runs table; days as `clock` tells them.
    pub fn new(runs: super::store::RunStore, clock: crate::clock::Clock) -> Self {
        Self { runs, clock }
    }

    /// Takes one of today's `limit` sends of `account`, today being `zone`'s (UTC's without
    /// one); when they are spent, the start of its next day there. The first take of a batch
    /// for a sender takes the slots of all of the batch's emails of that sender at once
    /// (`slots`); when fewer are left, each send takes its own, so the cap fills exactly.
    pub(crate) async fn take(
        &self,
        account: &AccountItem,
        limit: u32,
        zone: Option<&str>,
        slots: &batch_reads::DailySlots,
    ) -> Result<Option<i64>, crate::error::Error> {
        let now = self.clock.epoch_seconds();
        let (day, next_day) = zone
            .and_then(|zone| super::window::day_in(zone, now))
            .unwrap_or_else(|| {
                (
                    crate::clock::utc_day(now),
                    crate::clock::next_utc_midnight(now),
                )
            });
        let (user, id) = (&account.user_id, &account.account_id);
        let pool = slots.pool(user, id, zone, &day);
        let mut pool = pool.lock().await;
        if pool.prepaid > 0 {
            pool.prepaid -= 1;
            return Ok(None);
        }
        let wanted = slots.wanted(user, id, zone).min(limit);
        if !pool.bulk_tried && wanted > 1 {
            pool.bulk_tried = true;
            if self
                .runs
                .take_daily_sends(user, id.as_str(), &day, limit, wanted)
                .await?
            {
                pool.prepaid = wanted - 1;
                return Ok(None);
            }
        }
        let taken = self
            .runs
            .take_daily_sends(user, id.as_str(), &day, limit, 1)
            .await?;
        Ok((!taken).then_some(next_day))
    }
}

/// Delivers communications with the users' accounts.
#[derive(Clone)]
pub struct Delivery {
    accounts: AccountService,
    ses: aws_sdk_sesv2::Client,
    unsubscribe: super::unsubscribe::UnsubscribeTokens,
    suppressions: super::suppression::SuppressionStore,
    /// Direct messages through X's and Instagram's APIs.
    direct: DirectMessenger,
    /// Where the mailboxes' APIs are (Gmail, Graph).
    apis: PlatformApis,
    daily_cap: DailySendCap,
    /// SES configuration set whose event destination reports delivery, bounces and
    /// complaints (`SES_CONFIGURATION_SET`); without one, SES sends no feedback.
    configuration_set: Option<String>,
}

impl Delivery {
    /// Delivery through these accounts, SES client and social APIs.
    pub fn new(
        accounts: AccountService,
        ses: aws_sdk_sesv2::Client,
        apis: PlatformApis,
        unsubscribe: super::unsubscribe::UnsubscribeTokens,
        suppressions: super::suppression::SuppressionStore,
        daily_cap: DailySendCap,
    ) -> Self {
        Self {
            accounts,
            ses,
            unsubscribe,
            suppressions,
            direct: DirectMessenger::new(&apis, daily_cap.clock.clone()),
            apis,
            daily_cap,
            configuration_set: None,
        }
    }

    /// The suppression list the emails are checked against.
    pub fn suppressions(&self) -> &super::suppression::SuppressionStore {
        &self.suppressions
    }

    /// Emails go out through this SES configuration set (and its event destination).
    pub fn with_configuration_set(mut self, name: Option<String>) -> Self {
        self.configuration_set = name.filter(|name| !name.is_empty());
        self
    }

    /// Delivers one claimed communication; a sender's daily cap counts the days of `cap_zone`
    /// (the run's send window's zone), UTC days without one. What the batch's deliveries share
    /// is read once, in `reads`.
    pub async fn deliver(
        &self,
        item: &CommunicationItem,
        message: &MessageTemplate,
        cap_zone: Option<&str>,
        reads: &BatchReads,
    ) -> Outcome {
        let account = match self.account(item, reads).await {
            Ok(account) => account,
            Err(outcome) => return outcome,
        };
        let body = render(&message.body, &item.recipient);
        match item.channel {
            Channel::Email => {
                let subject = single_line(&render(
                    message.subject.as_deref().unwrap_or(DEFAULT_SUBJECT),
                    &item.recipient,
                ));
                let letter = email::Letter {
                    subject: &subject,
                    body: &body,
                };
                self.send_email(item, account, letter, cap_zone, reads)
                    .await
            }
            Channel::Twitter | Channel::Instagram => {
                let Some(client) = self.http_client() else {
                    return Outcome::Retry(FailureReason::HttpClientUnavailable.into());
                };
                self.send_direct_message(&client, item, account, &body, reads)
                    .await
            }
        }
    }

    /// A direct message with the account's tokens, refreshed first when they expire soon; when
    /// the platform refuses the token (401), refreshed once more and tried once more.
    async fn send_direct_message(
        &self,
        client: &reqwest::Client,
        item: &CommunicationItem,
        account: AccountItem,
        text: &str,
        reads: &BatchReads,
    ) -> Outcome {
        // Email never comes here; a new channel must say how it sends.
        let Some(provider) = Provider::of_direct_channel(item.channel) else {
            return Outcome::Failed(FailureReason::ChannelNotSocial.into());
        };
        let Some(username) = item.channel.recipient_address(&item.recipient) else {
            return Outcome::Failed(FailureReason::TargetHasNoAddress.into());
        };
        let (mut account, mut configuration) = match self.configuration(account, reads).await {
            Ok(fresh) => fresh,
            Err(failure) => return token_outcome(failure),
        };
        for attempt in 0..2 {
            let sender = DirectSender {
                user_id: &account.user_id,
                account_id: &account.account_id,
                configuration: &configuration,
            };
            let sent = self
                .direct
                .send(provider, client, sender, username, text)
                .await;
            match sent {
                Some(Err(DirectRefusal::TokenRevoked)) if attempt == 0 => {}
                Some(sent) => return direct_outcome(sent),
                None => return Outcome::Failed(FailureReason::ChannelNotSocial.into()),
            }
            match self.accounts.fresh_configuration(account, true).await {
                Ok((fresh, fresh_configuration)) => {
                    account = fresh;
                    configuration = fresh_configuration;
                }
                Err(failure) => return token_outcome(failure),
            }
        }
        Outcome::Failed(FailureReason::TokenRevoked.into())
    }

    async fn account(
        &self,
        item: &CommunicationItem,
        reads: &BatchReads,
    ) -> Result<AccountItem, Outcome> {
        let key = (item.user_id.clone(), item.account_id.clone());
        let read = reads
            .accounts
            .get_or_read(&key, || {
                self.accounts.store().get(&item.user_id, &item.account_id)
            })
            .await;
        match read {
            Ok(Some(account)) if account.connected => Ok(account),
            Ok(Some(_)) => Err(Outcome::Failed(FailureReason::AccountNotConnected.into())),
            Ok(None) => Err(Outcome::Failed(FailureReason::AccountNotFound.into())),
            Err(_) => Err(Outcome::Retry(FailureReason::AccountsUnavailable.into())),
        }
    }

    /// The account's configuration with working tokens (refreshed first when they expire
    /// soon), decrypted once per batch: the batch's other sends of this account reuse it.
    async fn configuration(
        &self,
        account: AccountItem,
        reads: &BatchReads,
    ) -> Result<(AccountItem, serde_json::Map<String, Value>), crate::accounts::refresh::TokenFailure>
    {
        let key = (account.user_id.clone(), account.account_id.clone());
        reads
            .configurations
            .get_or_read(&key, || self.accounts.fresh_configuration(account, false))
            .await
    }

    /// The process's one HTTPS client, built on the first social message only: loading the
    /// trust roots is not free and most invocations send email.
    fn http_client(&self) -> Option<reqwest::Client> {
        crate::https::shared_client()
    }
}

/// What a token failure means for the communication.
fn token_outcome(failure: crate::accounts::refresh::TokenFailure) -> Outcome {
    use crate::accounts::refresh::TokenFailure;
    use crate::platforms::oauth::RefreshFailure;
    match failure {
        TokenFailure::Refresh(RefreshFailure::ReauthRequired) => {
            Outcome::Failed(FailureReason::ReauthRequired.into())
        }
        TokenFailure::Refresh(RefreshFailure::NotRefreshable) => {
            Outcome::Failed(FailureReason::TokenExpired.into())
        }
        TokenFailure::Refresh(RefreshFailure::Transient(_)) => {
            Outcome::Retry(FailureReason::TokenRefreshFailed.into())
        }
        // The deployment's OAuth client is refused: the account is fine, the operator is
        // alarmed; the message waits (and lands in the DLQ if it is not fixed in time).
        TokenFailure::Refresh(RefreshFailure::Misconfigured(_)) => {
            Outcome::Retry(FailureReason::ProviderMisconfigured.into())
        }
        TokenFailure::Storage(_) => Outcome::Retry(FailureReason::AccountsUnavailable.into()),
    }
}

/// What a platform's answer to a direct message means for the communication: a refusal of the
/// sending call that may have gone out is `Unknown`, never sent again.
fn direct_outcome(sent: Result<(), DirectRefusal>) -> Outcome {
    let refusal = match sent {
        Ok(()) => return Outcome::Sent(Accepted::default()),
        Err(refusal) => refusal,
    };
    match refusal {
        DirectRefusal::MissingCredentials => {
            Outcome::Failed(FailureReason::AccountMissingCredentials.into())
        }
        DirectRefusal::NoSuchRecipient => Outcome::Failed(FailureReason::RecipientNotFound.into()),
        DirectRefusal::WindowClosed => Outcome::Failed(FailureReason::InstagramWindowClosed.into()),
        DirectRefusal::TokenRevoked => Outcome::Failed(FailureReason::TokenRevoked.into()),
        DirectRefusal::NotPermitted => Outcome::Failed(FailureReason::NotPermitted.into()),
        DirectRefusal::RateLimited { seconds } => Outcome::RateLimited {
            reason: FailureReason::RateLimited,
            seconds,
        },
        DirectRefusal::Unreachable => Outcome::Retry(FailureReason::PlatformUnreachable.into()),
        DirectRefusal::TimedOut { maybe_sent: true } => {
            Outcome::Unknown(FailureReason::PlatformTimeout.into())
        }
        DirectRefusal::TimedOut { maybe_sent: false } => {
            Outcome::Retry(FailureReason::PlatformTimeout.into())
        }
        // The sending call reached the platform and failed inside it: the message may have
        // gone out, so it is never sent again.
        DirectRefusal::Status {
            code,
            maybe_sent: true,
        } => Outcome::Unknown(DeliveryFailure::PlatformStatus(code)),
        DirectRefusal::Status { code, .. } if (500..=599).contains(&code) => {
            Outcome::Retry(DeliveryFailure::PlatformStatus(code))
        }
        DirectRefusal::Status { code, .. } => {
            Outcome::Failed(DeliveryFailure::PlatformStatus(code))
        }
    }
}
