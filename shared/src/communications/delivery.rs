//! Delivery of one communication: email through SES v2, direct messages through X's and
//! Instagram's HTTP APIs, each with the user's account. Every failure is classified: retry
//! (nothing was delivered and trying again may work), permanent (recorded, never retried) or
//! unknown (the provider may have delivered it, so it is never sent again).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use serde_json::{Map, Value, json};

use super::model::{Channel, DEFAULT_SUBJECT, MessageTemplate, render, single_line};
use super::store::CommunicationItem;
use crate::accounts::AccountService;
use crate::accounts::store::AccountItem;
use crate::config::ConfigSource;

/// What became of a delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted it.
    Sent,
    /// It cannot succeed (no account, revoked token, rejected sender or recipient).
    Failed(String),
    /// Nothing was delivered; a later attempt may work (throttling, outage, network).
    Retry(String),
    /// The provider may or may not have delivered it (e.g. a timeout after sending).
    Unknown(String),
}

/// Base URLs of the social platforms' APIs (overridable for tests, which serve them locally).
#[derive(Debug, Clone)]
pub struct SocialApis {
    /// X API v2 base, default `https://api.x.com`.
    pub x: String,
    /// Instagram Graph API base, default `https://graph.instagram.com/v21.0`.
    pub instagram: String,
}

impl SocialApis {
    /// Reads `X_API_BASE_URL` and `INSTAGRAM_API_BASE_URL`, with the platforms' own defaults.
    pub fn from_source(source: &ConfigSource<'_>) -> Self {
        Self {
            x: source
                .optional("X_API_BASE_URL")
                .unwrap_or_else(|| "https://api.x.com".into()),
            instagram: source
                .optional("INSTAGRAM_API_BASE_URL")
                .unwrap_or_else(|| "https://graph.instagram.com/v21.0".into()),
        }
    }
}

/// Delivers communications with the users' accounts.
#[derive(Clone)]
pub struct Delivery {
    accounts: AccountService,
    ses: aws_sdk_sesv2::Client,
    apis: SocialApis,
    // Built on the first social message only: loading the trust roots is not free and most
    // invocations send email.
    http: Arc<OnceLock<Option<reqwest::Client>>>,
}

impl Delivery {
    /// Delivery through these accounts, SES client and social APIs.
    pub fn new(accounts: AccountService, ses: aws_sdk_sesv2::Client, apis: SocialApis) -> Self {
        Self {
            accounts,
            ses,
            apis,
            http: Arc::new(OnceLock::new()),
        }
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
                let configuration = match self.accounts.decrypted_configuration(&account).await {
                    Ok(configuration) => configuration,
                    Err(error) if error.status().is_server_error() => {
                        return Outcome::Retry("secrets_unavailable".into());
                    }
                    Err(_) => return Outcome::Failed("account_secrets_unreadable".into()),
                };
                let Some(client) = self.http_client() else {
                    return Outcome::Retry("http_client_unavailable".into());
                };
                match item.channel {
                    Channel::Twitter => self.send_x_dm(&client, item, &configuration, &body).await,
                    _ => {
                        self.send_instagram_dm(&client, item, &configuration, &body)
                            .await
                    }
                }
            }
        }
    }

    async fn account(&self, item: &CommunicationItem) -> Result<AccountItem, Outcome> {
        let user = crate::auth::UserId::from_verified_sub(item.user_id.clone());
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
        let text = |data: &str| Content::builder().data(data).charset("UTF-8").build();
        let (Ok(subject), Ok(body)) = (text(subject), text(body)) else {
            return Outcome::Failed("message_unrenderable".into());
        };
        let content = EmailContent::builder()
            .simple(
                Message::builder()
                    .subject(subject)
                    .body(Body::builder().text(body).build())
                    .build(),
            )
            .build();
        let result = self
            .ses
            .send_email()
            .from_email_address(from)
            .destination(Destination::builder().to_addresses(to).build())
            .content(content)
            .send()
            .await;
        match result {
            Ok(_) => Outcome::Sent,
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
        configuration: &Map<String, Value>,
        text: &str,
    ) -> Outcome {
        let Some(token) = configuration.get("access_token").and_then(Value::as_str) else {
            return Outcome::Failed("account_missing_credentials".into());
        };
        let Some(username) = item.recipient.twitter_username.as_deref() else {
            return Outcome::Failed("target_has_no_address".into());
        };
        let lookup = client
            .get(format!("{}/2/users/by/username/{username}", self.apis.x))
            .bearer_auth(token)
            .send()
            .await;
        let user_id = match read_json(lookup, false).await {
            Ok(body) => match body.pointer("/data/id").and_then(Value::as_str) {
                Some(id) => id.to_owned(),
                None => return Outcome::Failed("recipient_not_found".into()),
            },
            Err(outcome) => return outcome,
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
            Ok(_) => Outcome::Sent,
            Err(outcome) => outcome,
        }
    }

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
        let lookup = client
            .get(format!("{}/{ig_user_id}", self.apis.instagram))
            .query(&[(
                "fields",
                format!("business_discovery.username({username}){{id}}"),
            )])
            .bearer_auth(token)
            .send()
            .await;
        let recipient = match read_json(lookup, false).await {
            Ok(body) => match body
                .pointer("/business_discovery/id")
                .and_then(Value::as_str)
            {
                Some(id) => id.to_owned(),
                None => return Outcome::Failed("recipient_not_found".into()),
            },
            Err(outcome) => return outcome,
        };
        let sent = client
            .post(format!("{}/{ig_user_id}/messages", self.apis.instagram))
            .bearer_auth(token)
            .json(&json!({"recipient": {"id": recipient}, "message": {"text": text}}))
            .send()
            .await;
        match read_json(sent, true).await {
            Ok(_) => Outcome::Sent,
            Err(outcome) => outcome,
        }
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
    Err(match status.as_u16() {
        401 => Outcome::Failed("token_revoked".into()),
        403 => Outcome::Failed("not_permitted".into()),
        404 => Outcome::Failed("recipient_not_found".into()),
        429 => Outcome::Retry("rate_limited".into()),
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
                "MessageRejected" if message.contains("not verified") => {
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
