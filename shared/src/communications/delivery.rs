//! Delivery of one communication: email through SES v2, direct messages through X's and
//! Instagram's HTTP APIs, each with the user's account. Every failure is classified: retry
//! (nothing was delivered and trying again may work), permanent (recorded, never retried) or
//! unknown (the provider may have delivered it, so it is never sent again).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
use serde_json::{Map, Value, json};

use super::model::{Channel, DEFAULT_SUBJECT, MessageTemplate, render, single_line};
use super::store::CommunicationItem;
use crate::accounts::AccountService;
use crate::accounts::store::AccountItem;

/// What became of a delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted it (with its message id, which its feedback names, when it
    /// sends feedback).
    Sent {
        /// SES's `MessageId`; `None` for direct messages.
        provider_message_id: Option<String>,
    },
    /// Nothing was sent: the sender's daily cap is spent; it may go out from `until` (epoch
    /// seconds, the next UTC day).
    Deferred {
        /// Epoch second from which it may be sent.
        until: i64,
    },
    /// It cannot succeed (no account, revoked token, rejected sender or recipient).
    Failed(String),
    /// Nothing was delivered; a later attempt may work (throttling, outage, network).
    Retry(String),
    /// Nothing was delivered: the platform's rate limit is spent until `seconds` from now.
    RateLimited {
        /// Why.
        reason: String,
        /// Seconds until the platform's window resets.
        seconds: u64,
    },
    /// The provider may or may not have delivered it (e.g. a timeout after sending).
    Unknown(String),
}

pub use crate::platforms::SocialApis;

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

    /// Takes one of today's `limit` sends of `account`; when they are spent, the start of the
    /// next UTC day.
    pub async fn take(
        &self,
        account: &AccountItem,
        limit: u32,
    ) -> Result<Option<i64>, crate::error::Error> {
        let now = self.clock.epoch_seconds();
        let day = crate::clock::utc_day(now);
        let taken = self
            .runs
            .take_daily_send(&account.user_id, &account.account_id, &day, limit)
            .await?;
        Ok((!taken).then(|| crate::clock::next_utc_midnight(now)))
    }
}

/// X user ids by (user, account, lower-case username).
type XUserIds = std::collections::HashMap<(String, String, String), String>;

/// Delivers communications with the users' accounts.
#[derive(Clone)]
pub struct Delivery {
    accounts: AccountService,
    ses: aws_sdk_sesv2::Client,
    unsubscribe: super::unsubscribe::UnsubscribeTokens,
    suppressions: super::suppression::SuppressionStore,
    apis: SocialApis,
    daily_cap: DailySendCap,
    /// SES configuration set whose event destination reports delivery, bounces and
    /// complaints (`SES_CONFIGURATION_SET`); without one, SES sends no feedback.
    configuration_set: Option<String>,
    // Built on the first social message only: loading the trust roots is not free and most
    // invocations send email.
    http: Arc<OnceLock<Option<reqwest::Client>>>,
    /// X user ids by (user, account, username): one lookup per recipient per warm instance.
    x_user_ids: Arc<std::sync::Mutex<XUserIds>>,
}

impl Delivery {
    /// Delivery through these accounts, SES client and social APIs.
    pub fn new(
        accounts: AccountService,
        ses: aws_sdk_sesv2::Client,
        apis: SocialApis,
        unsubscribe: super::unsubscribe::UnsubscribeTokens,
        suppressions: super::suppression::SuppressionStore,
        daily_cap: DailySendCap,
    ) -> Self {
        Self {
            accounts,
            ses,
            unsubscribe,
            suppressions,
            apis,
            daily_cap,
            configuration_set: None,
            http: Arc::new(OnceLock::new()),
            x_user_ids: Arc::default(),
        }
    }

    /// Emails go out through this SES configuration set (and its event destination).
    pub fn with_configuration_set(mut self, name: Option<String>) -> Self {
        self.configuration_set = name.filter(|name| !name.is_empty());
        self
    }

    /// Delivers one claimed communication.
    pub async fn deliver(&self, item: &CommunicationItem, message: &MessageTemplate) -> Outcome {
        let account = match self.account(item).await {
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
                self.send_email(item, &account, &subject, &body).await
            }
            Channel::Twitter | Channel::Instagram => {
                let Some(client) = self.http_client() else {
                    return Outcome::Retry("http_client_unavailable".into());
                };
                self.send_direct_message(&client, item, account, &body)
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
    ) -> Outcome {
        let (mut account, mut configuration) =
            match self.accounts.fresh_configuration(account, false).await {
                Ok(fresh) => fresh,
                Err(failure) => return token_outcome(failure),
            };
        for attempt in 0..2 {
            let outcome = match item.channel {
                Channel::Twitter => {
                    self.send_x_dm(client, item, &account, &configuration, text)
                        .await
                }
                Channel::Instagram => {
                    self.send_instagram_dm(client, item, &configuration, text)
                        .await
                }
                // Email never comes here; a new channel must say how it sends.
                Channel::Email => return Outcome::Failed("channel_not_social".into()),
            };
            if attempt > 0 || outcome != Outcome::Failed("token_revoked".into()) {
                return outcome;
            }
            match self.accounts.fresh_configuration(account, true).await {
                Ok((fresh, fresh_configuration)) => {
                    account = fresh;
                    configuration = fresh_configuration;
                }
                Err(failure) => return token_outcome(failure),
            }
        }
        Outcome::Failed("token_revoked".into())
    }

    async fn account(&self, item: &CommunicationItem) -> Result<AccountItem, Outcome> {
        let user = crate::ids::UserId::from_verified_sub(item.user_id.clone());
        let id = crate::accounts::AccountId::parse(&item.account_id)
            .map_err(|_| Outcome::Failed("account_not_found".into()))?;
        match self.accounts.store().get(&user, &id).await {
            Ok(Some(account)) if account.connected => Ok(account),
            Ok(Some(_)) => Err(Outcome::Failed("account_not_connected".into())),
            Ok(None) => Err(Outcome::Failed("account_not_found".into())),
            Err(_) => Err(Outcome::Retry("accounts_unavailable".into())),
        }
    }

    async fn send_email(
        &self,
        item: &CommunicationItem,
        account: &AccountItem,
        subject: &str,
        body: &str,
    ) -> Outcome {
        let public: Map<String, Value> =
            serde_json::from_str(&account.configuration).unwrap_or_default();
        let from = match crate::accounts::sender::sender_of(account.account_type, &public) {
            Ok(Some(address)) => address,
            _ => return Outcome::Failed("account_has_no_from_address".into()),
        };
        // Re-checked before every send: the account must still own its sender.
        match self.accounts.store().sender_owner(from.as_str()).await {
            Ok(Some(owner))
                if owner.user_id == account.user_id && owner.account_id == account.account_id => {}
            Ok(_) => return Outcome::Failed("sender_not_owned".into()),
            Err(_) => return Outcome::Retry("accounts_unavailable".into()),
        }
        let from = from.as_str();
        let Some(to) = item.recipient.email.as_deref() else {
            return Outcome::Failed("target_has_no_address".into());
        };
        // An unsubscribe that arrived after the run was queued still stops this email.
        let user = crate::ids::UserId::from_verified_sub(item.user_id.clone());
        match self.suppressions.is_suppressed(&user, to).await {
            Ok(false) => {}
            Ok(true) => return Outcome::Failed("suppressed".into()),
            Err(_) => return Outcome::Retry("suppressions_unavailable".into()),
        }
        let Some(token) = self
            .unsubscribe
            .token(&super::unsubscribe::Unsubscription {
                user_id: item.user_id.clone(),
                target_id: item.target_id.clone(),
                address: to.to_lowercase(),
            })
            .await
        else {
            // Never send outreach email without its unsubscribe link.
            return Outcome::Retry("unsubscribe_key_unavailable".into());
        };
        // Last, right before sending: a communication that does not go out takes no slot.
        let limit = crate::accounts::sender::daily_send_limit(&public)
            .unwrap_or(crate::accounts::sender::DEFAULT_DAILY_SEND_LIMIT);
        match self.daily_cap.take(account, limit).await {
            Ok(None) => {}
            Ok(Some(until)) => return Outcome::Deferred { until },
            Err(_) => return Outcome::Retry("sending_limits_unavailable".into()),
        }
        let mime = outreach_mime(from, to, subject, body, &self.unsubscribe.url(&token));
        let Ok(raw) = RawMessage::builder()
            .data(Blob::new(mime.into_bytes()))
            .build()
        else {
            return Outcome::Failed("message_unrenderable".into());
        };
        let content = EmailContent::builder().raw(raw).build();
        let result = self
            .ses
            .send_email()
            .from_email_address(from)
            .destination(Destination::builder().to_addresses(to).build())
            .content(content)
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await;
        match result {
            Ok(output) => Outcome::Sent {
                provider_message_id: output.message_id,
            },
            Err(error) => classify_ses(&error),
        }
    }

    fn http_client(&self) -> Option<reqwest::Client> {
        self.http.get_or_init(crate::https::https_client).clone()
    }

    async fn send_x_dm(
        &self,
        client: &reqwest::Client,
        item: &CommunicationItem,
        account: &AccountItem,
        configuration: &Map<String, Value>,
        text: &str,
    ) -> Outcome {
        let Some(token) = configuration.get("access_token").and_then(Value::as_str) else {
            return Outcome::Failed("account_missing_credentials".into());
        };
        let Some(username) = item.recipient.twitter_username.as_deref() else {
            return Outcome::Failed("target_has_no_address".into());
        };
        let cache_key = (
            account.user_id.clone(),
            account.account_id.clone(),
            username.to_ascii_lowercase(),
        );
        let cached = self
            .x_user_ids
            .lock()
            .ok()
            .and_then(|ids| ids.get(&cache_key).cloned());
        let user_id = match cached {
            Some(id) => id,
            None => {
                let lookup = client
                    .get(format!("{}/2/users/by/username/{username}", self.apis.x))
                    .bearer_auth(token)
                    .send()
                    .await;
                let id = match read_json(lookup, false).await {
                    Ok(body) => match body.pointer("/data/id").and_then(Value::as_str) {
                        Some(id) => id.to_owned(),
                        None => return Outcome::Failed("recipient_not_found".into()),
                    },
                    Err(outcome) => return outcome,
                };
                if let Ok(mut ids) = self.x_user_ids.lock() {
                    ids.insert(cache_key, id.clone());
                }
                id
            }
        };
        let sent = client
            .post(format!(
                "{}/2/dm_conversations/with/{user_id}/messages",
                self.apis.x
            ))
            .bearer_auth(token)
            .json(&json!({"text": text}))
            .send()
            .await;
        match read_json(sent, true).await {
            Ok(_) => Outcome::Sent {
                provider_message_id: None,
            },
            Err(outcome) => outcome,
        }
    }

    /// Instagram does not allow cold messages: a business may message a person only inside the
    /// 24-hour window the person opened by messaging it, and only by the Instagram-scoped id of
    /// that conversation. So the conversation with the target's username is looked up, its last
    /// message from the person must be under 24 hours old, and the message goes to that id.
    async fn send_instagram_dm(
        &self,
        client: &reqwest::Client,
        item: &CommunicationItem,
        configuration: &Map<String, Value>,
        text: &str,
    ) -> Outcome {
        let (Some(token), Some(ig_user_id)) = (
            configuration.get("access_token").and_then(Value::as_str),
            configuration.get("ig_user_id").and_then(Value::as_str),
        ) else {
            return Outcome::Failed("account_missing_credentials".into());
        };
        let Some(username) = item.recipient.instagram_username.as_deref() else {
            return Outcome::Failed("target_has_no_address".into());
        };
        let mut next = Some(format!(
            "{}/{ig_user_id}/conversations?platform=instagram&fields=participants,messages{{from,created_time}}",
            self.apis.instagram
        ));
        let mut recipient = None;
        for _ in 0..INSTAGRAM_CONVERSATION_PAGES {
            let Some(url) = next.take() else { break };
            let page = client.get(&url).bearer_auth(token).send().await;
            let body = match read_json(page, false).await {
                Ok(body) => body,
                Err(outcome) => return outcome,
            };
            if let Some(found) = open_conversation(&body, ig_user_id, username) {
                recipient = Some(found);
                break;
            }
            next = body
                .pointer("/paging/next")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        let Some(recipient) = recipient else {
            return Outcome::Failed(INSTAGRAM_WINDOW_CLOSED.into());
        };
        let sent = client
            .post(format!("{}/{ig_user_id}/messages", self.apis.instagram))
            .bearer_auth(token)
            .json(&json!({"recipient": {"id": recipient}, "message": {"text": text}}))
            .send()
            .await;
        match read_json(sent, true).await {
            Ok(_) => Outcome::Sent {
                provider_message_id: None,
            },
            Err(outcome) => outcome,
        }
    }
}

/// Reason of an Instagram message that cannot be sent: the person has not messaged the
/// business in the last 24 hours (or never).
pub const INSTAGRAM_WINDOW_CLOSED: &str = "instagram_window_closed";
/// How long after a person's last message a business may answer on Instagram.
pub const INSTAGRAM_WINDOW_SECONDS: i64 = 24 * 3600;
const INSTAGRAM_CONVERSATION_PAGES: usize = 5;

/// In one page of conversations: the Instagram-scoped id of `username` when that person's last
/// message to the business is inside the messaging window.
fn open_conversation(page: &Value, business_id: &str, username: &str) -> Option<String> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    page["data"].as_array()?.iter().find_map(|conversation| {
        let person = conversation["participants"]["data"]
            .as_array()?
            .iter()
            .find(|p| {
                p["id"].as_str() != Some(business_id)
                    && p["username"]
                        .as_str()
                        .is_some_and(|name| name.eq_ignore_ascii_case(username))
            })?;
        let person_id = person["id"].as_str()?;
        let last_from_person = conversation["messages"]["data"]
            .as_array()?
            .iter()
            .filter(|message| message["from"]["id"].as_str() == Some(person_id))
            .filter_map(|message| message["created_time"].as_str().and_then(graph_time))
            .max()?;
        (now - last_from_person < INSTAGRAM_WINDOW_SECONDS).then(|| person_id.to_owned())
    })
}

/// A Graph API time (`2026-11-26T01:00:00+0000`, or RFC 3339) as Unix seconds.
fn graph_time(text: &str) -> Option<i64> {
    let graph = time::format_description::parse_borrowed::<2>(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory][offset_minute]",
    )
    .ok()?;
    time::OffsetDateTime::parse(text, &graph)
        .or_else(|_| {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        })
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

/// What a token failure means for the communication.
fn token_outcome(failure: crate::accounts::service::TokenFailure) -> Outcome {
    use crate::accounts::service::TokenFailure;
    use crate::accounts::tokens::RefreshFailure;
    match failure {
        TokenFailure::Refresh(RefreshFailure::ReauthRequired) => {
            Outcome::Failed(crate::accounts::store::REAUTH_REQUIRED.into())
        }
        TokenFailure::Refresh(RefreshFailure::NotRefreshable) => {
            Outcome::Failed("token_expired".into())
        }
        TokenFailure::Refresh(RefreshFailure::Transient(_)) => {
            Outcome::Retry("token_refresh_failed".into())
        }
        TokenFailure::Storage(_) => Outcome::Retry("accounts_unavailable".into()),
    }
}

/// Reads a platform answer. `delivering` marks the call that sends: a timeout there may have
/// delivered the message, so it is `Unknown` rather than `Retry`.
async fn read_json(
    response: Result<reqwest::Response, reqwest::Error>,
    delivering: bool,
) -> Result<Value, Outcome> {
    let response = match response {
        Ok(response) => response,
        Err(error) if error.is_connect() => {
            return Err(Outcome::Retry("platform_unreachable".into()));
        }
        Err(_) if delivering => return Err(Outcome::Unknown("platform_timeout".into())),
        Err(_) => return Err(Outcome::Retry("platform_timeout".into())),
    };
    let status = response.status();
    if status.is_success() {
        return Ok(response.json().await.unwrap_or(Value::Null));
    }
    // X says when its window resets (`x-rate-limit-reset`, Unix seconds); otherwise a minute.
    let reset_seconds = response
        .headers()
        .get("x-rate-limit-reset")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i64>().ok())
        .map_or(60, |reset| {
            (reset - time::OffsetDateTime::now_utc().unix_timestamp()).clamp(1, 900) as u64
        });
    Err(match status.as_u16() {
        401 => Outcome::Failed("token_revoked".into()),
        403 => Outcome::Failed("not_permitted".into()),
        404 => Outcome::Failed("recipient_not_found".into()),
        429 => Outcome::RateLimited {
            reason: "rate_limited".into(),
            seconds: reset_seconds,
        },
        500..=599 => Outcome::Retry(format!("platform_error_{}", status.as_u16())),
        _ => Outcome::Failed(format!("platform_refused_{}", status.as_u16())),
    })
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
                    Outcome::Failed("sender_not_verified".into())
                }
                "MessageRejected" => Outcome::Failed("message_rejected".into()),
                "MailFromDomainNotVerifiedException" => {
                    Outcome::Failed("sender_not_verified".into())
                }
                "BadRequestException" => Outcome::Failed("invalid_recipient_or_sender".into()),
                "AccountSuspendedException" => Outcome::Failed("sending_account_suspended".into()),
                "SendingPausedException" => Outcome::Failed("sending_paused".into()),
                "NotFoundException" => Outcome::Failed("sending_identity_not_found".into()),
                "TooManyRequestsException" | "LimitExceededException" => {
                    Outcome::Retry("ses_throttled".into())
                }
                _ if service.raw().status().is_server_error() => {
                    Outcome::Retry("ses_unavailable".into())
                }
                _ => Outcome::Failed("ses_refused".into()),
            }
        }
        // Only a refused connection proves the request never left; any other dispatch failure
        // (reset, timeout, closed mid-answer) may follow a send SES carried out.
        SdkError::DispatchFailure(dispatch)
            if dispatch
                .as_connector_error()
                .is_some_and(|cause| connection_refused(cause)) =>
        {
            Outcome::Retry("ses_unreachable".into())
        }
        SdkError::ConstructionFailure(_) => Outcome::Failed("message_unrenderable".into()),
        // The request went out and no clear answer came back.
        _ => Outcome::Unknown("ses_no_answer".into()),
    }
}

/// An outreach email as MIME: plain text (base64, UTF-8), the subject as an RFC 2047 word, a
/// visible unsubscribe link at the end of the body, and the one-click unsubscribe headers of
/// RFC 8058 that Gmail and Yahoo require of bulk senders.
pub fn outreach_mime(
    from: &str,
    to: &str,
    subject: &str,
    body: &str,
    unsubscribe_url: &str,
) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let text = format!("{body}\r\n\r\n--\r\nTo stop receiving these emails: {unsubscribe_url}\r\n");
    let encoded = STANDARD.encode(text.as_bytes());
    let mut lines = String::new();
    for chunk in encoded.as_bytes().chunks(76) {
        lines.push_str(&String::from_utf8_lossy(chunk));
        lines.push_str("\r\n");
    }
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: =?UTF-8?B?{subject}?=\r\nMIME-Version: 1.0\r\n\
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
