//! Email through SES v2: the sender re-checked, suppression re-checked, the sender's daily cap,
//! the RFC 8058 MIME, and SES's answers classified (retry, permanent, unknown).

use std::time::Duration;

use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
use serde_json::{Map, Value};

use super::{Accepted, BatchReads, Delivery, Outcome};
use crate::accounts::store::AccountItem;
use crate::communications::reason::FailureReason;
use crate::communications::store::CommunicationItem;

/// An email's rendered subject (one line) and text.
#[derive(Clone, Copy)]
pub(super) struct Letter<'a> {
    pub subject: &'a str,
    pub body: &'a str,
}

/// What every outreach email needs once its checks passed, whichever way it goes out.
pub(super) struct OutgoingEmail {
    /// The recipient.
    pub to: String,
    /// The one-click unsubscribe URL of this recipient.
    pub unsubscribe_url: String,
}

impl Delivery {
    /// An email: through the sender's own mailbox when the account is one (Gmail, Microsoft
    /// 365), through SES from a proven sender otherwise.
    pub(super) async fn send_email(
        &self,
        item: &CommunicationItem,
        account: AccountItem,
        letter: Letter<'_>,
        cap_zone: Option<&str>,
        reads: &BatchReads,
    ) -> Outcome {
        match crate::platforms::Provider::of(&account).filter(|provider| provider.is_mailbox()) {
            Some(provider) => {
                self.send_through_mailbox(item, account, provider, letter, cap_zone, reads)
                    .await
            }
            None => {
                self.send_through_ses(item, &account, letter, cap_zone, reads)
                    .await
            }
        }
    }

    /// The checks every outreach email passes, in order: a recipient address, not suppressed
    /// (an unsubscribe after the run was queued still stops it), its unsubscribe link, and
    /// last, right before sending, one of the sender's `daily_limit` sends today (a
    /// communication that does not go out takes no slot).
    pub(super) async fn prepare_email(
        &self,
        item: &CommunicationItem,
        account: &AccountItem,
        daily_limit: u32,
        cap_zone: Option<&str>,
        reads: &BatchReads,
    ) -> Result<OutgoingEmail, Outcome> {
        let Some(to) = item.recipient.email.as_deref() else {
            return Err(Outcome::Failed(FailureReason::TargetHasNoAddress.into()));
        };
        let suppressed = match reads.suppression_of(&item.user_id, to) {
            Some(found) => Ok(found.is_some()),
            None => self.suppressions.is_suppressed(&item.user_id, to).await,
        };
        match suppressed {
            Ok(false) => {}
            Ok(true) => return Err(Outcome::Failed(FailureReason::Suppressed.into())),
            Err(_) => {
                return Err(Outcome::Retry(
                    FailureReason::SuppressionsUnavailable.into(),
                ));
            }
        }
        let Some(token) = self
            .unsubscribe
            .token(&crate::communications::unsubscribe::Unsubscription {
                user_id: item.user_id.clone(),
                target_id: item.target_id.to_string(),
                address: to.to_lowercase(),
            })
            .await
        else {
            // Never send outreach email without its unsubscribe link.
            return Err(Outcome::Retry(
                FailureReason::UnsubscribeKeyUnavailable.into(),
            ));
        };
        match self
            .daily_cap
            .take(account, daily_limit, cap_zone, &reads.slots)
            .await
        {
            Ok(None) => {}
            Ok(Some(until)) => return Err(Outcome::Deferred { until }),
            Err(_) => {
                return Err(Outcome::Retry(
                    FailureReason::SendingLimitsUnavailable.into(),
                ));
            }
        }
        Ok(OutgoingEmail {
            to: to.to_owned(),
            unsubscribe_url: self.unsubscribe.url(&token),
        })
    }

    async fn send_through_ses(
        &self,
        item: &CommunicationItem,
        account: &AccountItem,
        letter: Letter<'_>,
        cap_zone: Option<&str>,
        reads: &BatchReads,
    ) -> Outcome {
        let public: Map<String, Value> =
            serde_json::from_str(&account.configuration).unwrap_or_default();
        let from = match crate::accounts::sender::sender_of(
            account.account_type,
            account.provider.as_deref(),
            &public,
        ) {
            Ok(Some(address)) => address,
            _ => return Outcome::Failed(FailureReason::AccountHasNoFromAddress.into()),
        };
        // Re-checked before every send: the account must still own its sender.
        let owner = reads
            .sender_owners
            .get_or_read(&from.as_str().to_owned(), || {
                self.accounts.store().sender_owner(from.as_str())
            })
            .await;
        match owner {
            // Held and proven: verified for this claim's attempt, or a claim from before attempts
            // were recorded (those connected only once SES had verified the address).
            Ok(Some(owner))
                if owner.is_held_by(&account.user_id, account.account_id.as_str())
                    && (owner.verified || owner.attempt.is_none()) => {}
            Ok(_) => return Outcome::Failed(FailureReason::SenderNotOwned.into()),
            Err(_) => return Outcome::Retry(FailureReason::AccountsUnavailable.into()),
        }
        let from = from.as_str();
        let limit = crate::accounts::sender::daily_send_limit(None, &public)
            .unwrap_or(crate::accounts::sender::DEFAULT_DAILY_SEND_LIMIT);
        let email = match self
            .prepare_email(item, account, limit, cap_zone, reads)
            .await
        {
            Ok(email) => email,
            Err(outcome) => return outcome,
        };
        let mime = outreach_mime(&OutreachEmail {
            from,
            to: &email.to,
            subject: letter.subject,
            body: letter.body,
            unsubscribe_url: &email.unsubscribe_url,
            message_id: None,
            references: &item.references,
        });
        let Ok(raw) = RawMessage::builder()
            .data(Blob::new(mime.into_bytes()))
            .build()
        else {
            return Outcome::Failed(FailureReason::MessageUnrenderable.into());
        };
        let content = EmailContent::builder().raw(raw).build();
        let result = self
            .ses
            .send_email()
            .from_email_address(from)
            .destination(Destination::builder().to_addresses(&email.to).build())
            .content(content)
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await;
        match result {
            Ok(output) => Outcome::Sent(Accepted {
                provider_message_id: output.message_id,
                ..Accepted::default()
            }),
            Err(error) => classify_ses(&error),
        }
    }
}

fn classify_ses<E: ProvideErrorMetadata>(
    error: &SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> Outcome {
    match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            let message = service
                .err()
                .message()
                .unwrap_or_default()
                .to_ascii_lowercase();
            match code {
                "MessageRejected"
                    if message.contains("not verified")
                        || message.contains("did not have authority") =>
                {
                    Outcome::Failed(FailureReason::SenderNotVerified.into())
                }
                "MessageRejected" => Outcome::Failed(FailureReason::MessageRejected.into()),
                "MailFromDomainNotVerifiedException" => {
                    Outcome::Failed(FailureReason::SenderNotVerified.into())
                }
                "BadRequestException" => {
                    Outcome::Failed(FailureReason::InvalidRecipientOrSender.into())
                }
                "AccountSuspendedException" => {
                    Outcome::Failed(FailureReason::SendingAccountSuspended.into())
                }
                "SendingPausedException" => Outcome::Failed(FailureReason::SendingPaused.into()),
                "NotFoundException" => {
                    Outcome::Failed(FailureReason::SendingIdentityNotFound.into())
                }
                "TooManyRequestsException" | "LimitExceededException" => {
                    Outcome::Retry(FailureReason::SesThrottled.into())
                }
                _ if service.raw().status().is_server_error() => {
                    Outcome::Retry(FailureReason::SesUnavailable.into())
                }
                _ => Outcome::Failed(FailureReason::SesRefused.into()),
            }
        }
        // Only a refused connection proves the request never left; any other dispatch failure
        // (reset, timeout, closed mid-answer) may follow a send SES carried out.
        SdkError::DispatchFailure(dispatch)
            if dispatch
                .as_connector_error()
                .is_some_and(|cause| connection_refused(cause)) =>
        {
            Outcome::Retry(FailureReason::SesUnreachable.into())
        }
        SdkError::ConstructionFailure(_) => {
            Outcome::Failed(FailureReason::MessageUnrenderable.into())
        }
        // The request went out and no clear answer came back.
        _ => Outcome::Unknown(FailureReason::SesNoAnswer.into()),
    }
}

/// One outreach email's parts.
pub struct OutreachEmail<'a> {
    /// The sender's address.
    pub from: &'a str,
    /// The recipient's address.
    pub to: &'a str,
    /// The subject, one line.
    pub subject: &'a str,
    /// The text.
    pub body: &'a str,
    /// The recipient's one-click unsubscribe URL.
    pub unsubscribe_url: &'a str,
    /// Our `Message-ID` (`<id@domain>`), which replies name; SES assigns its own when `None`.
    pub message_id: Option<&'a str>,
    /// A follow-up's earlier `Message-ID`s, oldest first: `In-Reply-To` names the last,
    /// `References` all (RFC 5322 §3.6.4), so mail clients thread it under them.
    pub references: &'a [String],
}

/// An outreach email as MIME: plain text (base64, UTF-8), the subject as an RFC 2047 word, a
/// visible unsubscribe link at the end of the body, and the one-click unsubscribe headers of
/// RFC 8058 that Gmail and Yahoo require of bulk senders.
pub fn outreach_mime(email: &OutreachEmail<'_>) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let OutreachEmail {
        from,
        to,
        subject,
        body,
        unsubscribe_url,
        message_id,
        references,
    } = email;
    let text = format!("{body}\r\n\r\n--\r\nTo stop receiving these emails: {unsubscribe_url}\r\n");
    let encoded = STANDARD.encode(text.as_bytes());
    let mut lines = String::new();
    for chunk in encoded.as_bytes().chunks(76) {
        lines.push_str(&String::from_utf8_lossy(chunk));
        lines.push_str("\r\n");
    }
    let mut message_id = message_id
        .map(|id| format!("Message-ID: {id}\r\n"))
        .unwrap_or_default();
    // Our own ids only (`<pw.…@…>`, written here): nothing from outside reaches a header.
    if let Some(last) = references.last() {
        message_id.push_str(&format!(
            "In-Reply-To: {last}\r\nReferences: {}\r\n",
            references.join(" ")
        ));
    }
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: =?UTF-8?B?{subject}?=\r\n{message_id}MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\
         List-Unsubscribe: <{unsubscribe_url}>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n{lines}",
        subject = STANDARD.encode(subject.as_bytes()),
    )
}

/// Whether a failure was a refused TCP connection (the request cannot have been sent).
fn connection_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = current.source();
    }
    false
}

/// How long one `SendEmail` may take before its outcome counts as unknown.
const SES_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The SES client that sends outreach email. `SendEmail` is not idempotent, so the SDK's
/// automatic retries are off: an attempt that may have reached SES is never repeated by the SDK
/// (the worker records it as `delivery_outcome_unknown`); one that surely did not is retried by
/// SQS redelivery, after the worker's own backoff.
pub fn ses_sending_client(sdk: &aws_config::SdkConfig) -> aws_sdk_sesv2::Client {
    let config = aws_sdk_sesv2::config::Builder::from(sdk)
        .retry_config(aws_sdk_sesv2::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_sesv2::config::timeout::TimeoutConfig::builder()
                .operation_timeout(SES_SEND_TIMEOUT)
                .build(),
        )
        .build();
    aws_sdk_sesv2::Client::from_conf(config)
}
