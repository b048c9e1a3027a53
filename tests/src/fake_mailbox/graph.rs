//! Microsoft Graph: a mailbox (its folders, messages and delta state), Graph's error bodies and
//! the scripted answers of [`GraphSendAnswer`], the user a token belongs to, and `sendMail`. The
//! reads (delta, message list, message get) are in `graph_read.rs`. What it follows
//! (the marks as in [`crate::fake_mailbox`]):
//!
//! - `POST /v1.0/me/sendMail` (<https://learn.microsoft.com/graph/api/user-sendmail>,
//!   <https://learn.microsoft.com/graph/outlook-send-mime-message>): `Content-Type:
//!   application/json` with `{message, saveToSentItems}`, or `text/plain` with the MIME message
//!   base64-encoded; 202 and no body; the message is saved in Sent Items (MIME always: no
//!   `saveToSentItems` there, *observed* <https://github.com/mguessan/davmail/issues/472>). Malformed
//!   MIME: 400 "Invalid base64 string for MIME content" (documented; the code
//!   `ErrorMimeContentInvalidBase64String` is *not confirmed*). No recipient: 400
//!   `ErrorInvalidRecipients` (*observed*:
//!   <https://github.com/microsoftgraph/msgraph-sdk-java/issues/831>). JSON custom headers must
//!   start with `x-` (message resource, <https://learn.microsoft.com/graph/api/resources/message>;
//!   the refusal's code `InvalidInternetMessageHeader` is *not confirmed*).
//! - `From` another address without Send As: 403 `ErrorSendAsDenied` "The user account which was
//!   used to submit this request does not have the right to send mail on behalf of the specified
//!   sending account., Cannot submit message."
//!   (<https://learn.microsoft.com/graph/outlook-send-mail-from-other-user>, its example 2; wording
//!   in <https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/7446>).
//!   [`FakeSocial::send_as`] grants Send As.
//! - `internetMessageId`: Graph documents nothing about a MIME message's own `Message-ID`; the
//!   stand-in keeps it (*not confirmed*), and generates one for JSON. Exchange is *observed* to drop
//!   some custom MIME headers (<https://github.com/microsoftgraph/msgraph-sdk-dotnet/issues/2209>);
//!   the stand-in keeps them all.
//! - `conversationId`: how Exchange groups a conversation is not documented; here a message joins
//!   the conversation of the message its `In-Reply-To`/`References` names, else starts one.
//! - Errors (<https://learn.microsoft.com/graph/errors>, <https://learn.microsoft.com/graph/throttling>):
//!   `{"error": {code, message, innerError}}`; 401 `InvalidAuthenticationToken` (in
//!   [`crate::fake_oauth`]); the scripted answers of [`GraphSendAnswer`]: 429 with `Retry-After`
//!   (code `ApplicationThrottled` *observed*:
//!   <https://github.com/magodo/terraform-provider-outlook/issues/21>), 503 `serviceNotAvailable`
//!   with `Retry-After`, 400 `ErrorInvalidRecipients`.
//!
//! [`FakeSocial::send_as`]: crate::fake_social::FakeSocial::send_as

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::graph_read::{DeltaQuery, DeltaRound};
use super::mime::{BASE64_ANY_PADDING, Written, encode_words, is_deliverable};
use super::{GraphSendAnswer, MailboxState, iso, now, random_token, sent_record};
use crate::fake_oauth::{Identity, MicrosoftUser, Provider, bearer};
use crate::fake_social::{Script, Shared};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Folder {
    Inbox,
    SentItems,
}

impl Folder {
    /// A well-known folder name (`inbox`, `sentitems`), in any case.
    pub(super) fn named(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "inbox" => Some(Folder::Inbox),
            "sentitems" => Some(Folder::SentItems),
            _ => None,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Folder::Inbox => "inbox",
            Folder::SentItems => "sentitems",
        }
    }

    /// A folder id of Graph's shape.
    pub(super) fn id(self) -> &'static str {
        match self {
            Folder::Inbox => "AQMkADRmYjE2AC4AAAIBDAAAAA==",
            Folder::SentItems => "AQMkADRmYjE2AC4AAAIBCQAAAA==",
        }
    }
}

pub(super) struct GraphMessage {
    pub(super) id: String,
    pub(super) conversation_id: String,
    pub(super) folder: Folder,
    pub(super) written: Written,
    pub(super) received: OffsetDateTime,
    /// Its place in the mailbox's changes, which delta tokens count.
    pub(super) seq: u64,
}

#[derive(Default)]
pub(super) struct GraphBox {
    pub(super) messages: Vec<GraphMessage>,
    pub(super) seq: u64,
    /// `$skiptoken` → the round it continues.
    pub(super) rounds: HashMap<String, DeltaRound>,
    /// `$deltatoken` → the query and the change it had seen.
    pub(super) deltas: HashMap<String, (DeltaQuery, u64)>,
}

impl GraphBox {
    pub(super) fn add(&mut self, mut message: GraphMessage) {
        self.seq += 1;
        message.seq = self.seq;
        self.messages.push(message);
    }

    /// The conversation of the message `written` answers, if the mailbox has that message.
    pub(super) fn conversation_answered(&self, written: &Written) -> Option<String> {
        written.answered_ids().iter().find_map(|id| {
            self.messages
                .iter()
                .find(|message| message.written.message_id() == *id)
                .map(|message| message.conversation_id.clone())
        })
    }
}

/// A Graph id's shape: long, base64url, ending in `=` (a client must not rebuild or trim it).
pub(super) fn graph_id(prefix: &str) -> String {
    format!("{prefix}{}AAA=", random_token())
}

/// A Graph error: `{"error": {code, message, innerError}}`.
pub(super) fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    (
        status,
        Json(json!({"error": {"code": code, "message": message,
            "innerError": {"date": iso(now()).trim_end_matches('Z'), "request-id": request_id,
                "client-request-id": request_id}}})),
    )
        .into_response()
}

/// A Graph refusal not yet written out: small enough to travel in a `Result`.
pub(super) struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(super) fn respond(&self) -> Response {
        graph_error(self.status, self.code, &self.message)
    }
}

fn with_retry_after(mut response: Response, seconds: Option<u64>) -> Response {
    if let Some(value) =
        seconds.and_then(|seconds| HeaderValue::from_str(&seconds.to_string()).ok())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

impl GraphSendAnswer {
    fn respond(&self) -> Response {
        match self {
            GraphSendAnswer::Throttled {
                retry_after_seconds,
            } => with_retry_after(
                graph_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                ),
                Some(*retry_after_seconds),
            ),
            GraphSendAnswer::ServiceUnavailable {
                retry_after_seconds,
            } => with_retry_after(
                graph_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "serviceNotAvailable",
                    "The service is temporarily unavailable. Try again after a delay.",
                ),
                *retry_after_seconds,
            ),
            GraphSendAnswer::InvalidRecipients => graph_error(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidRecipients",
                "At least one recipient isn't valid., Recipient isn't resolved. All recipients must be resolved before a message can be submitted.",
            ),
            GraphSendAnswer::Error {
                status,
                code,
                message,
            } => graph_error(
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
                code,
                message,
            ),
        }
    }
}

pub(super) fn graph_user(script: &Script, headers: &HeaderMap) -> Option<MicrosoftUser> {
    match script
        .oauth
        .token_identity(Provider::Microsoft, bearer(headers))?
    {
        Identity::Microsoft(user) => Some(user.clone()),
        _ => None,
    }
}

/// A Microsoft account's mailbox address: `mail`, else the sign-in name (as the service reads
/// `/me`).
pub(super) fn graph_address(user: &MicrosoftUser) -> String {
    user.mail
        .clone()
        .unwrap_or_else(|| user.user_principal_name.clone())
}

/// `POST /v1.0/me/sendMail`.
pub(super) async fn graph_send(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut script = state.lock().expect("lock");
    let Some(user) = graph_user(&script, &headers) else {
        return crate::fake_oauth::graph_unauthorized(bearer(&headers));
    };
    let mail = &mut script.mailboxes;
    if let Some(answer) = mail.graph_answers.pop_front() {
        return answer.respond();
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let parsed = if content_type.starts_with("application/json") {
        graph_json_message(&body)
    } else if content_type.starts_with("text/plain") {
        graph_mime_message(&body)
    } else {
        Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "Use application/json for a JSON object and text/plain for MIME content.",
        ))
    };
    match parsed {
        Ok((written, save)) => graph_accept(mail, &user, bearer(&headers), written, save),
        Err(refusal) => refusal.respond(),
    }
}

/// A MIME `sendMail` body: the message base64-encoded. Always saved in Sent Items.
fn graph_mime_message(body: &[u8]) -> Result<(Written, bool), Refusal> {
    let text: String = String::from_utf8_lossy(body).split_whitespace().collect();
    let mime = BASE64_ANY_PADDING
        .decode(text.as_bytes())
        .ok()
        .filter(|mime| !mime.is_empty())
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "ErrorMimeContentInvalidBase64String",
                "Invalid base64 string for MIME content.",
            )
        })?;
    Ok((Written::parse(&String::from_utf8_lossy(&mime)), true))
}

/// A JSON `sendMail` body, `{message, saveToSentItems}`, as the message it describes.
fn graph_json_message(body: &[u8]) -> Result<(Written, bool), Refusal> {
    let bad = |message: &str| Refusal::new(StatusCode::BAD_REQUEST, "ErrorInvalidRequest", message);
    let request: Value =
        serde_json::from_slice(body).map_err(|_| bad("The request body is not valid JSON."))?;
    let message = request
        .get("message")
        .filter(|message| message.is_object())
        .ok_or_else(|| bad("The 'message' parameter is required."))?;
    let recipients = |field: &str| -> String {
        message[field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|recipient| {
                let address = recipient["emailAddress"]["address"].as_str()?;
                Some(match recipient["emailAddress"]["name"].as_str() {
                    Some(name) if !name.is_empty() => format!("{name} <{address}>"),
                    _ => address.to_owned(),
                })
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut written = Written::default();
    if let Some(from) = message["from"]["emailAddress"]["address"].as_str() {
        written.set("From", from);
    }
    for (field, name) in [
        ("toRecipients", "To"),
        ("ccRecipients", "Cc"),
        ("bccRecipients", "Bcc"),
    ] {
        let list = recipients(field);
        if !list.is_empty() {
            written.set(name, &list);
        }
    }
    written.set(
        "Subject",
        &encode_words(message["subject"].as_str().unwrap_or_default()),
    );
    for custom in message["internetMessageHeaders"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = custom["name"].as_str().unwrap_or_default();
        if !name.to_ascii_lowercase().starts_with("x-") {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "InvalidInternetMessageHeader",
                format!(
                    "The internet message header name '{name}' should start with 'x-' or 'X-'."
                ),
            ));
        }
        written.set(name, custom["value"].as_str().unwrap_or_default());
    }
    let content = message["body"]["content"].as_str().unwrap_or_default();
    written.encoded_body = content.to_owned();
    written.body = content.to_owned();
    let save = match &request["saveToSentItems"] {
        Value::Bool(save) => *save,
        Value::String(save) => !save.eq_ignore_ascii_case("false"),
        _ => true,
    };
    Ok((written, save))
}

/// The checks and bookkeeping of a send, whatever its format.
fn graph_accept(
    mail: &mut MailboxState,
    user: &MicrosoftUser,
    token: &str,
    mut written: Written,
    save: bool,
) -> Response {
    let address = graph_address(user);
    let recipients = written.recipients();
    if recipients.is_empty() {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRecipients",
            "At least one recipient is not valid., A message can't be sent because it contains no recipients.",
        );
    }
    if let Some(unresolved) = recipients.iter().find(|to| !is_deliverable(&to.address)) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRecipients",
            &format!(
                "At least one recipient isn't valid., Recipient '{}' isn't resolved. All recipients must be resolved before a message can be submitted.",
                unresolved.address
            ),
        );
    }
    let own = [address.as_str(), user.user_principal_name.as_str()];
    match written.from() {
        None => written.set("From", &format!("{} <{address}>", user.display_name)),
        Some(from) if mail.may_send_as(&address, &own, &from.address) => {}
        Some(_) => {
            return graph_error(
                StatusCode::FORBIDDEN,
                "ErrorSendAsDenied",
                "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account., Cannot submit message.",
            );
        }
    }
    if written.header("Message-ID").is_none() {
        let generated = format!(
            "<{}@PH0PR00MB0000.namprd00.prod.outlook.com>",
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .to_ascii_uppercase()
        );
        written.set("Message-ID", &generated);
    }
    let mailbox = mail.graph_box(&address);
    let conversation_id = mailbox
        .conversation_answered(&written)
        .unwrap_or_else(|| graph_id("AAQkADRmYjE2"));
    let id = if save {
        let id = graph_id("AAMkADRmYjE2");
        mailbox.add(GraphMessage {
            id: id.clone(),
            conversation_id: conversation_id.clone(),
            folder: Folder::SentItems,
            written: written.clone(),
            received: now(),
            seq: 0,
        });
        id
    } else {
        String::new()
    };
    mail.sent.push(sent_record(
        Provider::Microsoft,
        &address,
        token,
        &written,
        &id,
        &conversation_id,
    ));
    StatusCode::ACCEPTED.into_response()
}
