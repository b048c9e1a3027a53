//! Gmail: a mailbox (its messages and history ids), Gmail's error bodies and the scripted
//! answers of [`GmailSendAnswer`], the mailbox a token opens, and `messages.send`. The reads
//! (history, message list, message get) are in `gmail_read.rs`. What it follows (the marks as in
//! [`crate::fake_mailbox`]):
//!
//! - `POST /gmail/v1/users/me/messages/send`
//!   (<https://developers.google.com/workspace/gmail/api/reference/rest/v1/users.messages/send>,
//!   <https://developers.google.com/workspace/gmail/api/guides/sending>): `{raw, threadId?}`, the
//!   RFC 2822 message base64url-encoded; the answer is the message `{id, threadId, labelIds:
//!   ["SENT"]}` and the message joins the mailbox with label `SENT`. A new thread's id is its
//!   first message's id (*observed*).
//! - Threads (<https://developers.google.com/workspace/gmail/api/guides/threads>): a message joins
//!   the requested `threadId` only when "The References and In-Reply-To headers must be set in
//!   compliance with the RFC 2822 standard" and "The Subject headers must match"; otherwise it
//!   starts a new thread. Without `threadId`, a sent or received message joins the thread of the
//!   message its `In-Reply-To`/`References` names when the subjects match (`Re:`/`Fwd:` aside):
//!   Gmail's conversation grouping, *not documented* for the API. An unknown `threadId` starts a
//!   new thread (*not confirmed*; Gmail may answer 404).
//! - `From`: Gmail documents nothing for an address that is neither the user's nor a send-as
//!   alias (<https://developers.google.com/workspace/gmail/api/reference/rest/v1/users.settings.sendAs>);
//!   it is *observed* to rewrite it silently to the primary address
//!   (<https://github.com/googleapis/google-api-php-client/issues/2393>,
//!   <https://github.com/taylorwilsdon/google_workspace_mcp/pull/1075>). Being undocumented, the
//!   stand-in refuses it, 400 `INVALID_ARGUMENT` "Invalid From header", so a wrong `From` fails a
//!   test; [`FakeSocial::gmail_rewrites_foreign_from`] plays the observed rewrite instead, and
//!   [`FakeSocial::send_as`] adds an alias. A missing `From` becomes the user's address
//!   (*observed*: <https://github.com/taylorwilsdon/google_workspace_mcp/pull/249>).
//! - Refusals of a send (*observed* messages): no `raw`, 400 "'raw' RFC822 payload message string
//!   or uploading message via /upload/* URL required"
//!   (<https://github.com/jentic/jentic-public-apis/pull/479>); `raw` not base64url, 400 "Invalid
//!   value at 'message.raw' (TYPE_BYTES), Base64 decoding failed for ..."
//!   (<https://github.com/google/googleapis.dart/issues/109>,
//!   <https://github.com/FlowCrypt/flowcrypt-android/issues/859>; older clients saw "Invalid value
//!   for ByteString": <https://github.com/xDinomode/Go-Gmail-Api-Example/issues/1>); no recipient,
//!   400 "Recipient address required" (<https://github.com/Byron/google-apis-rs/issues/351>); an
//!   address without a dotted domain in `To`, 400 "Invalid To header"
//!   (<https://github.com/FlowCrypt/flowcrypt-browser/issues/1370>).
//! - `Message-ID`: kept as written, generated when missing (*not documented*; replies name it).
//! - Errors (<https://developers.google.com/workspace/gmail/api/guides/handle-errors>): `{"error":
//!   {code, message, errors: [{message, domain, reason}], status}}`; the scripted answers of
//!   [`GmailSendAnswer`] are that page's 403 `userRateLimitExceeded` / `rateLimitExceeded`, 429
//!   "User-rate limit exceeded" "(Mail sending)" with the time to retry in the message (wording
//!   *observed*: <https://github.com/taers232c/GAMADV-XTD3/issues/337>) and 500 `backendError`.
//!
//! [`FakeSocial::gmail_rewrites_foreign_from`]: crate::fake_social::FakeSocial::gmail_rewrites_foreign_from
//! [`FakeSocial::send_as`]: crate::fake_social::FakeSocial::send_as

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc2822;

use super::mime::{Written, addresses, is_deliverable, topic};
use super::{
    GmailSendAnswer, MailboxState, Params, iso_millis, now, param, sent_record, unix_millis,
};
use crate::fake_oauth::{Identity, Provider, bearer};
use crate::fake_social::{Script, Shared};

/// The first history id of a new Gmail mailbox (Gmail's are large numbers; any will do).
const FIRST_HISTORY_ID: u64 = 4_000;
/// Gmail's `maxResults`: its default and its maximum, for history and message lists.
pub(super) const GMAIL_PAGE: (usize, usize) = (100, 500);

/// Gmail's `raw`: base64url, with or without padding (clients send both).
const BASE64URL_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub(super) struct GmailMessage {
    pub(super) id: String,
    pub(super) thread_id: String,
    pub(super) labels: Vec<&'static str>,
    pub(super) written: Written,
    pub(super) internal_ms: i64,
    /// The history record that added it.
    pub(super) history_id: u64,
}

pub(super) struct GmailBox {
    pub(super) messages: Vec<GmailMessage>,
    /// The current history id: the last record's.
    pub(super) history_id: u64,
    /// Ids below this one are forgotten: a start there is Gmail's 404.
    pub(super) oldest_kept: u64,
}

impl Default for GmailBox {
    fn default() -> Self {
        Self {
            messages: Vec::new(),
            history_id: FIRST_HISTORY_ID,
            oldest_kept: 0,
        }
    }
}

impl GmailBox {
    /// The message `written` answers, when its thread may take `written` (same topic).
    pub(super) fn answered(&self, written: &Written) -> Option<&GmailMessage> {
        let subject = topic(&written.subject());
        written.answered_ids().iter().find_map(|id| {
            self.messages
                .iter()
                .find(|message| message.written.message_id() == *id)
                .filter(|message| topic(&message.written.subject()) == subject)
        })
    }

    /// Adds a message in a new history record, whose id becomes the current one.
    pub(super) fn add(&mut self, mut message: GmailMessage) {
        // Gaps, as Gmail's ids have: a client counting on `id + 1` is caught.
        self.history_id += 1 + 2 * (self.messages.len() as u64 % 3);
        message.history_id = self.history_id;
        self.messages.push(message);
    }

    pub(super) fn find(&self, id: &str) -> Option<&GmailMessage> {
        self.messages.iter().find(|message| message.id == id)
    }
}

/// A Gmail error in the "Resolve errors" page's shape.
fn gmail_error(
    status: StatusCode,
    domain: &str,
    reason: &str,
    message: &str,
    rpc_status: Option<&str>,
) -> Response {
    let mut error = json!({"code": status.as_u16(), "message": message,
        "errors": [{"message": message, "domain": domain, "reason": reason}]});
    if let Some(rpc_status) = rpc_status {
        error["status"] = rpc_status.into();
    }
    (status, Json(json!({ "error": error }))).into_response()
}

pub(super) fn gmail_invalid(message: &str) -> Response {
    gmail_error(
        StatusCode::BAD_REQUEST,
        "global",
        "invalidArgument",
        message,
        Some("INVALID_ARGUMENT"),
    )
}

pub(super) fn gmail_not_found() -> Response {
    gmail_error(
        StatusCode::NOT_FOUND,
        "global",
        "notFound",
        "Requested entity was not found.",
        Some("NOT_FOUND"),
    )
}

impl GmailSendAnswer {
    fn respond(&self) -> Response {
        match self {
            GmailSendAnswer::MailSendingLimit {
                retry_after_seconds,
            } => {
                let retry_at = now() + time::Duration::seconds(*retry_after_seconds as i64);
                gmail_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "usageLimits",
                    "rateLimitExceeded",
                    &format!(
                        "User-rate limit exceeded.  Retry after {} (Mail sending)",
                        iso_millis(retry_at)
                    ),
                    Some("RESOURCE_EXHAUSTED"),
                )
            }
            GmailSendAnswer::UserRateLimitExceeded => gmail_error(
                StatusCode::FORBIDDEN,
                "usageLimits",
                "userRateLimitExceeded",
                "User Rate Limit Exceeded",
                None,
            ),
            GmailSendAnswer::RateLimitExceeded => gmail_error(
                StatusCode::FORBIDDEN,
                "usageLimits",
                "rateLimitExceeded",
                "Rate Limit Exceeded",
                None,
            ),
            GmailSendAnswer::BackendError => gmail_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "global",
                "backendError",
                "Backend Error",
                None,
            ),
            GmailSendAnswer::InvalidArgument(message) => gmail_invalid(message),
            GmailSendAnswer::Unauthenticated => crate::fake_oauth::gmail_unauthorized(),
        }
    }
}

/// The Gmail mailbox a request's token opens (Bearer header or `access_token` parameter).
pub(super) fn gmail_mailbox(
    script: &Script,
    headers: &HeaderMap,
    query: &Params,
) -> Option<String> {
    let token = match bearer(headers) {
        "" => param(query, "access_token").unwrap_or_default(),
        token => token,
    };
    match script.oauth.token_identity(Provider::Google, token)? {
        Identity::Google(user) => Some(user.email.clone()),
        _ => None,
    }
}

/// `POST /gmail/v1/users/me/messages/send`.
pub(super) async fn gmail_send(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<Params>,
    body: Bytes,
) -> Response {
    let mut script = state.lock().expect("lock");
    let Some(address) = gmail_mailbox(&script, &headers, &query) else {
        return crate::fake_oauth::gmail_unauthorized();
    };
    let token = match bearer(&headers) {
        "" => param(&query, "access_token").unwrap_or_default(),
        token => token,
    };
    gmail_accept(&mut script.mailboxes, &address, token, &body)
}

fn gmail_accept(mail: &mut MailboxState, address: &str, token: &str, body: &[u8]) -> Response {
    if let Some(answer) = mail.gmail_answers.pop_front() {
        return answer.respond();
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return gmail_invalid("Invalid JSON payload received.");
    };
    let raw = request["raw"].as_str().unwrap_or_default();
    if raw.is_empty() {
        return gmail_invalid(
            "'raw' RFC822 payload message string or uploading message via /upload/* URL required",
        );
    }
    let Ok(bytes) = BASE64URL_ANY_PADDING.decode(raw) else {
        let shown: String = raw.chars().take(40).collect();
        return gmail_error(
            StatusCode::BAD_REQUEST,
            "global",
            "invalid",
            &format!(
                "Invalid value at 'message.raw' (TYPE_BYTES), Base64 decoding failed for \"{shown}\""
            ),
            Some("INVALID_ARGUMENT"),
        );
    };
    let mut written = Written::parse(&String::from_utf8_lossy(&bytes));
    if written
        .header("To")
        .is_some_and(|to| addresses(to).iter().any(|to| !is_deliverable(&to.address)))
    {
        return gmail_invalid("Invalid To header");
    }
    if written.recipients().is_empty() {
        return gmail_invalid("Recipient address required");
    }
    match written.from() {
        None => written.set("From", address),
        Some(from) if mail.may_send_as(address, &[address], &from.address) => {}
        Some(_) if mail.gmail_rewrites_foreign_from => written.set("From", address),
        Some(_) => return gmail_invalid("Invalid From header"),
    }
    if written.header("Message-ID").is_none() {
        let generated = format!("<CA{}@mail.gmail.com>", uuid::Uuid::new_v4().simple());
        written.set("Message-ID", &generated);
    }
    if written.header("Date").is_none() {
        written.set("Date", &now().format(&Rfc2822).unwrap_or_default());
    }
    let id = mail.next_gmail_id();
    let mailbox = mail.gmail_box(address);
    let answered_thread = mailbox
        .answered(&written)
        .map(|message| message.thread_id.clone());
    // The documented rule: the requested thread only for a proper reply in it.
    let thread_id = match (request["threadId"].as_str(), answered_thread) {
        (Some(requested), Some(answered)) if requested == answered => answered,
        (None, Some(answered)) => answered,
        _ => id.clone(),
    };
    mailbox.add(GmailMessage {
        id: id.clone(),
        thread_id: thread_id.clone(),
        labels: vec!["SENT"],
        written: written.clone(),
        internal_ms: unix_millis(now()),
        history_id: 0,
    });
    mail.sent.push(sent_record(
        Provider::Google,
        address,
        token,
        &written,
        &id,
        &thread_id,
    ));
    (
        StatusCode::OK,
        Json(json!({"id": id, "threadId": thread_id, "labelIds": ["SENT"]})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_mailbox::test_client::Mailbox;
    use crate::fake_social::FakeSocial;

    #[tokio::test]
    async fn fake_mailbox_gmail_send_refuses_and_threads_as_gmail_does() {
        let fake = FakeSocial::start().await;
        let gmail = Mailbox::of(&fake, Provider::Google).await;
        let mime = |from: &str, subject: &str, id: &str, extra: &str| {
            format!(
                "From: {from}\r\nTo: bob@client.example\r\nSubject: {subject}\r\nMessage-ID: {id}\r\n{extra}\r\nhi\r\n"
            )
        };

        let stranger = Mailbox {
            token: "ya29.not-issued".into(),
            ..Mailbox::of(&fake, Provider::Google).await
        };
        let (status, refused) = stranger
            .gmail_send(&mime("ada@example.com", "s", "<a@x.example>", ""), None)
            .await;
        assert_eq!(
            (status, refused["error"]["status"].as_str()),
            (401, Some("UNAUTHENTICATED"))
        );

        let (status, refused) = gmail
            .post_json(
                "/gmail/v1/users/me/messages/send",
                &json!({"raw": "a+b/c=="}),
            )
            .await;
        assert_eq!(status, 400);
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Base64 decoding failed"),
            "{refused}"
        );
        let (status, refused) = gmail
            .post_json("/gmail/v1/users/me/messages/send", &json!({}))
            .await;
        assert_eq!(status, 400, "{refused}");
        let (status, refused) = gmail
            .gmail_send("From: ada@example.com\r\nSubject: nobody\r\n\r\nhi", None)
            .await;
        assert_eq!(
            (status, refused["error"]["message"].as_str()),
            (400, Some("Recipient address required"))
        );

        let foreign = mime("Boss <boss@example.com>", "s", "<f@x.example>", "");
        let (status, refused) = gmail.gmail_send(&foreign, None).await;
        assert_eq!(status, 400);
        assert_eq!(refused["error"]["message"], "Invalid From header");
        assert_eq!(refused["error"]["status"], "INVALID_ARGUMENT");
        fake.send_as("ada@example.com", "boss@example.com");
        assert_eq!(
            gmail.gmail_send(&foreign, None).await.0,
            200,
            "an alias may send"
        );
        fake.gmail_rewrites_foreign_from(true);
        let (status, _) = gmail
            .gmail_send(&mime("other@example.com", "s", "<o@x.example>", ""), None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            fake.sent_mail().last().unwrap().from,
            "ada@example.com",
            "rewritten"
        );

        fake.gmail_send_answers(&[
            GmailSendAnswer::MailSendingLimit {
                retry_after_seconds: 900,
            },
            GmailSendAnswer::UserRateLimitExceeded,
            GmailSendAnswer::BackendError,
        ]);
        let plain = mime("ada@example.com", "Plan", "<p1@x.example>", "");
        let (status, limited) = gmail.gmail_send(&plain, None).await;
        assert_eq!(status, 429);
        assert_eq!(limited["error"]["errors"][0]["reason"], "rateLimitExceeded");
        assert!(
            limited["error"]["message"]
                .as_str()
                .unwrap()
                .ends_with("(Mail sending)")
        );
        let (status, limited) = gmail.gmail_send(&plain, None).await;
        assert_eq!(
            (status, limited["error"]["errors"][0]["reason"].as_str()),
            (403, Some("userRateLimitExceeded"))
        );
        let (status, failed) = gmail.gmail_send(&plain, None).await;
        assert_eq!(
            (status, failed["error"]["errors"][0]["reason"].as_str()),
            (500, Some("backendError"))
        );
        let sent_before = fake.sent_mail().len();

        // The documented threading rule: the requested thread takes a proper reply only.
        let (status, first) = gmail.gmail_send(&plain, None).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(
            fake.sent_mail().len(),
            sent_before + 1,
            "refused sends are not recorded"
        );
        let thread = first["threadId"].as_str().unwrap();
        let follow_up = mime(
            "ada@example.com",
            "Re: Plan",
            "<p2@x.example>",
            "In-Reply-To: <p1@x.example>\r\nReferences: <p1@x.example>\r\n",
        );
        let (_, second) = gmail.gmail_send(&follow_up, Some(thread)).await;
        assert_eq!(second["threadId"], thread);
        let unrelated = mime("ada@example.com", "Re: Plan", "<p3@x.example>", "");
        let (_, third) = gmail.gmail_send(&unrelated, Some(thread)).await;
        assert_ne!(third["threadId"], thread, "no References: a new thread");
        let other_subject = mime(
            "ada@example.com",
            "Invoice",
            "<p4@x.example>",
            "In-Reply-To: <p1@x.example>\r\n",
        );
        let (_, fourth) = gmail.gmail_send(&other_subject, Some(thread)).await;
        assert_ne!(fourth["threadId"], thread, "another subject: a new thread");
    }
}
