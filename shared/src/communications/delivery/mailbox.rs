//! Email through the sender's own mailbox: Gmail's `messages.send` or Graph's `sendMail`, with
//! the same MIME as SES mail (unsubscribe headers and link) and our own `Message-ID`, which the
//! recipient's reply names. The mailbox's tokens are refreshed before use under the account's
//! lease (Microsoft's rotated refresh token is sealed in the same write); a 401 (to the address
//! check or the send) refreshes once per send and tries once more. What each answer means: docs/providers.md, "Gmail" and "Microsoft".

use serde_json::{Map, Value};

use super::email::{Letter, OutreachEmail};
use super::{Accepted, BatchReads, Delivery, Outcome, outreach_mime, token_outcome};
use crate::accounts::sender::mailbox::MailboxCheck;
use crate::accounts::store::AccountItem;
use crate::communications::reason::{DeliveryFailure, FailureReason};
use crate::communications::store::CommunicationItem;
use crate::platforms::Provider;

/// How long to wait on a 429 without a `Retry-After`.
const DEFAULT_WAIT_SECONDS: u64 = 60;

impl Delivery {
    pub(super) async fn send_through_mailbox(
        &self,
        item: &CommunicationItem,
        account: AccountItem,
        provider: Provider,
        letter: Letter<'_>,
        cap_zone: Option<&str>,
        reads: &BatchReads,
    ) -> Outcome {
        let Some(http) = crate::https::shared_client() else {
            return Outcome::Retry(FailureReason::HttpClientUnavailable.into());
        };
        let public: Map<String, Value> =
            serde_json::from_str(&account.configuration).unwrap_or_default();
        // The mailbox's own address, as its provider reported it when it was connected.
        let Some(from) = public
            .get(crate::accounts::sender::FROM_ADDRESS)
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            return Outcome::Failed(FailureReason::AccountHasNoFromAddress.into());
        };
        let limit = crate::accounts::sender::daily_send_limit(Some(provider), &public)
            .unwrap_or(crate::accounts::sender::DEFAULT_DAILY_SEND_LIMIT);
        // Tokens before the cap: a refresh that fails must not spend one of today's sends.
        let (mut account, mut configuration) = match self.configuration(account, reads).await {
            Ok(fresh) => fresh,
            Err(failure) => return token_outcome(failure),
        };
        // A mailbox saved with typed values proves its address with the token it sends with
        // (a refused token is refreshed once, as a refused send would be).
        let mut refreshed = false;
        loop {
            let token = configuration
                .get("access_token")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match self
                .accounts
                .confirm_mailbox(account, provider, token, &from)
                .await
            {
                Ok(MailboxCheck::Confirmed(confirmed)) => {
                    account = *confirmed;
                    break;
                }
                Ok(MailboxCheck::Mismatch) => {
                    return Outcome::Failed(FailureReason::MailboxAddressMismatch.into());
                }
                Ok(MailboxCheck::TokenRefused(unconfirmed)) if !refreshed => {
                    refreshed = true;
                    (account, configuration) =
                        match self.accounts.fresh_configuration(*unconfirmed, true).await {
                            Ok(fresh) => fresh,
                            Err(failure) => return token_outcome(failure),
                        };
                }
                Ok(MailboxCheck::TokenRefused(_)) => {
                    return Outcome::Failed(FailureReason::TokenRevoked.into());
                }
                Err(_) => return Outcome::Retry(FailureReason::PlatformUnreachable.into()),
            }
        }
        let email = match self
            .prepare_email(item, &account, limit, cap_zone, reads)
            .await
        {
            Ok(email) => email,
            Err(outcome) => return outcome,
        };
        let domain = from.rsplit_once('@').map_or("pipewise.invalid", |(_, d)| d);
        let message_id = format!(
            "<pw.{}.{}@{domain}>",
            item.communication_id(),
            uuid::Uuid::new_v4().simple()
        );
        let mime = outreach_mime(&OutreachEmail {
            from: &from,
            to: &email.to,
            subject: letter.subject,
            body: letter.body,
            unsubscribe_url: &email.unsubscribe_url,
            message_id: Some(&message_id),
            references: &item.references,
        });
        loop {
            let token = configuration
                .get("access_token")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let Some(request) = provider.mailbox_send_request(
                &http,
                &self.apis,
                token,
                &mime,
                item.thread_id.as_deref(),
            ) else {
                return Outcome::Failed(FailureReason::NotPermitted.into());
            };
            let outcome = match read_mailbox_answer(provider, request.send().await).await {
                Ok(answer) => {
                    let (message, thread) = match provider.sent_ids(&answer) {
                        Some((message, thread)) => (Some(message), Some(thread)),
                        None => (None, None),
                    };
                    return Outcome::Sent(Accepted {
                        provider_message_id: message.map(str::to_owned),
                        thread_id: thread.map(str::to_owned),
                        internet_message_id: Some(message_id),
                    });
                }
                Err(outcome) => outcome,
            };
            // One forced refresh per send, whichever step was refused first: a token refused
            // right after a refresh is revoked, not stale.
            if refreshed || outcome != Outcome::Failed(FailureReason::TokenRevoked.into()) {
                return outcome;
            }
            refreshed = true;
            match self.accounts.fresh_configuration(account, true).await {
                Ok((fresh, fresh_configuration)) => {
                    account = fresh;
                    configuration = fresh_configuration;
                }
                Err(failure) => return token_outcome(failure),
            }
        }
    }
}

/// Reads the answer of a mailbox's send call. The call is the sending one: a transport failure
/// after the request left, or a 5xx, may have sent the message, so it is `Unknown` and never
/// repeated; only a refused connection is retried.
async fn read_mailbox_answer(
    provider: Provider,
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<Value, Outcome> {
    let response = match response {
        Ok(response) => response,
        Err(error) if error.is_connect() => {
            return Err(Outcome::Retry(FailureReason::PlatformUnreachable.into()));
        }
        Err(_) => return Err(Outcome::Unknown(FailureReason::PlatformTimeout.into())),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(|seconds| seconds.clamp(1, 900));
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        return Ok(answer);
    }
    let rate_limited = || Outcome::RateLimited {
        reason: FailureReason::RateLimited,
        seconds: retry_after.unwrap_or(DEFAULT_WAIT_SECONDS),
    };
    Err(match status {
        401 => Outcome::Failed(FailureReason::TokenRevoked.into()),
        429 => rate_limited(),
        403 if provider.is_rate_limit_refusal(&answer) => rate_limited(),
        403 => Outcome::Failed(FailureReason::NotPermitted.into()),
        400 => Outcome::Failed(FailureReason::MessageRejected.into()),
        500..=599 => Outcome::Unknown(DeliveryFailure::PlatformStatus(status)),
        _ => Outcome::Failed(DeliveryFailure::PlatformStatus(status)),
    })
}
