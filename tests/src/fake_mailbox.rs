//! The signed-in user's mailbox at Gmail and at Microsoft Graph, played by the platform stand-in
//! ([`FakeSocial`]) on its one base URL (the service's `GMAIL_API_BASE_URL` and
//! `MICROSOFT_GRAPH_BASE_URL`). A mailbox is the identity an access token belongs to: a token
//! that [`crate::fake_oauth`]'s code flow or a refresh issued (any other token gets the
//! provider's 401). Tests deliver messages into an inbox ([`FakeSocial::deliver`], or
//! `POST /_stand-in/inbound` for `make dev`), script the send calls' failures, expire Gmail's
//! history and Graph's delta tokens, force small pages, and read back every mail sent.
//!
//! What each endpoint follows, and where it is written (read through stored copies of the pages;
//! *observed* marks third-party reports rather than the provider's docs; *not confirmed* marks a
//! choice of the stand-in where neither was found):
//!
//! **Gmail**
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
//! - `GET /gmail/v1/users/me/history`
//!   (<https://developers.google.com/workspace/gmail/api/reference/rest/v1/users.history/list>):
//!   records after `startHistoryId`, oldest first, each `{id, messages, messagesAdded}`; "History
//!   IDs increase chronologically but are not contiguous with random gaps" (here gaps of 1, 3 or
//!   5); `labelId`, `historyTypes`; `maxResults` "defaults to 100. The maximum allowed value for
//!   this field is 500"; `nextPageToken`; `historyId` is the mailbox's current one; "Supplying an
//!   invalid or out of date startHistoryId typically returns an HTTP 404" (body *observed*:
//!   "Requested entity was not found.",
//!   <https://github.com/LogicLabs-OU/OpenArchiver/issues/443>); `history` is left out when empty
//!   (*observed*: <https://github.com/googleworkspace/python-samples/issues/200>); a missing or
//!   non-numeric start is 400 "Missing/invalid parameter: startHistoryId" (*observed*:
//!   <https://github.com/googleapis/google-api-nodejs-client/issues/978>).
//! - `GET /gmail/v1/users/me/profile` (in [`crate::fake_oauth`]): `historyId` is the current one.
//! - `GET /gmail/v1/users/me/messages/{id}`
//!   (<https://developers.google.com/workspace/gmail/api/reference/rest/v1/users.messages/get>):
//!   `format` (`full` by default, `metadata`, `minimal`, `raw`) and `metadataHeaders` ("only
//!   include headers specified", matched here regardless of case, *not confirmed*); header values
//!   are shown with RFC 2047 words decoded (*not confirmed*); 404 for an unknown id.
//! - `GET /gmail/v1/users/me/messages`
//!   (<https://developers.google.com/workspace/gmail/api/reference/rest/v1/users.messages/list>,
//!   <https://developers.google.com/workspace/gmail/api/guides/filtering>,
//!   <https://support.google.com/mail/answer/7190>): `labelIds` (all must match), `maxResults`
//!   (100 by default, 500 at most), `pageToken`, `{messages: [{id, threadId}], nextPageToken,
//!   resultSizeEstimate}`; `q` supports `newer_than:`/`older_than:` with `d`, `m` (30 days here)
//!   and `y` (365 days), `after:`/`before:` with a date ("interpreted as midnight on that date in
//!   the PST timezone", UTC−8 here) or epoch seconds, `in:inbox`, `in:sent` and `label:`; any
//!   other term is refused (400, the stand-in's own limit). Newest first (*not confirmed*).
//! - Errors (<https://developers.google.com/workspace/gmail/api/guides/handle-errors>): `{"error":
//!   {code, message, errors: [{message, domain, reason}], status}}`; the scripted answers of
//!   [`GmailSendAnswer`] are that page's 403 `userRateLimitExceeded` / `rateLimitExceeded`, 429
//!   "User-rate limit exceeded" "(Mail sending)" with the time to retry in the message (wording
//!   *observed*: <https://github.com/taers232c/GAMADV-XTD3/issues/337>) and 500 `backendError`.
//!
//! **Microsoft Graph**
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
//! - `GET /v1.0/me/mailFolders/inbox/messages/delta`
//!   (<https://learn.microsoft.com/graph/api/message-delta>,
//!   <https://learn.microsoft.com/graph/delta-query-messages>,
//!   <https://learn.microsoft.com/graph/delta-query-overview>): pages with `@odata.nextLink` until
//!   one with `@odata.deltaLink`, never both; the options (`$select`, `$filter` on
//!   `receivedDateTime`) are carried in the links; `Prefer: odata.maxpagesize=N`
//!   (`Preference-Applied` echoes it), 10 by default (*observed* in a client's docs:
//!   <https://docs.rs/io-msgraph/0.9.2/src/io_msgraph/v1/rest/users/messages/delta.rs.html>); a
//!   delta link returns what was added since. An expired or unknown token is 410 Gone (Microsoft
//!   staff answers: <https://learn.microsoft.com/en-us/answers/questions/649481>,
//!   <https://learn.microsoft.com/en-us/answers/questions/1142247>) with code `SyncStateNotFound`
//!   and the message Microsoft gives for directory objects
//!   (<https://devblogs.microsoft.com/microsoft365dev/duration-of-change-tracking-tokens-for-identity-and-education-resources/>):
//!   the body for mail is *not confirmed*.
//! - `GET /v1.0/me/messages/{id}` (<https://learn.microsoft.com/graph/api/message-get>):
//!   `internetMessageHeaders` only when `$select`ed (message resource); a Sent Items copy has none
//!   (*observed*: <https://github.com/microsoftgraph/microsoft-graph-docs/issues/12726>,
//!   <https://github.com/OfficeDev/office-js/issues/5413>); unknown id: 404 `ErrorItemNotFound`
//!   "The specified object was not found in the store." (*observed*:
//!   <https://github.com/microsoft/MHA/issues/77>).
//! - `GET /v1.0/me/mailFolders/inbox/messages`
//!   (<https://learn.microsoft.com/graph/api/mailfolder-list-messages>): 10 a page by default,
//!   `$top` up to 1000, `@odata.nextLink`; `$filter=receivedDateTime ge|gt|le|lt <ISO 8601>`
//!   (joined by `and`); newest first unless `$orderby=receivedDateTime asc` (*not confirmed*); any
//!   other filter: 400 `ErrorInvalidUrlQueryFilter` (*not confirmed*).
//! - Errors (<https://learn.microsoft.com/graph/errors>, <https://learn.microsoft.com/graph/throttling>):
//!   `{"error": {code, message, innerError}}`; 401 `InvalidAuthenticationToken` (in
//!   [`crate::fake_oauth`]); the scripted answers of [`GraphSendAnswer`]: 429 with `Retry-After`
//!   (code `ApplicationThrottled` *observed*:
//!   <https://github.com/magodo/terraform-provider-outlook/issues/21>), 503 `serviceNotAvailable`
//!   with `Retry-After`, 400 `ErrorInvalidRecipients`.

use std::collections::{HashMap, HashSet, VecDeque};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};

use crate::fake_oauth::{Identity, MicrosoftUser, Provider, bearer};
use crate::fake_social::{FakeSocial, Script, Shared};

/// A query, as name-value pairs (names repeat: `metadataHeaders`, `labelIds`).
type Params = Vec<(String, String)>;

/// The first history id of a new Gmail mailbox (Gmail's are large numbers; any will do).
const FIRST_HISTORY_ID: u64 = 4_000;
/// Gmail's `maxResults`: its default and its maximum, for history and message lists.
const GMAIL_PAGE: (usize, usize) = (100, 500);
/// Graph's page sizes: a delta or list page's default, and `$top`'s maximum.
const GRAPH_PAGE: (usize, usize) = (10, 1000);

/// Gmail's `raw`: base64url, with or without padding (clients send both).
const BASE64URL_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// Graph's MIME body: standard base64, with or without padding.
const BASE64_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

// ---------------------------------------------------------------------------------------------
// What tests hand in and read back.
// ---------------------------------------------------------------------------------------------

/// A message someone sends to a mailbox: [`FakeSocial::deliver`] puts it in the inbox, threaded
/// as its provider would (an `In-Reply-To`/`References` naming a sent `Message-ID`, with the same
/// subject apart from `Re:`, joins that Gmail thread or Graph conversation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inbound {
    /// The mailbox's address: the Google `email`, or the Microsoft `mail` (else
    /// `userPrincipalName`) of someone signed in or about to sign in.
    pub mailbox: String,
    /// The `From` header, e.g. `Grace <grace@client.example>`.
    pub from: String,
    /// The subject, plain text (written as an RFC 2047 word when not ASCII).
    pub subject: String,
    /// The `In-Reply-To` header: the `Message-ID` answered, angle brackets included.
    pub in_reply_to: Option<String>,
    /// The `References` header.
    pub references: Option<String>,
    /// Further headers, e.g. `("Auto-Submitted", "auto-replied")`; a `Message-ID` here replaces
    /// the generated one.
    pub headers: Vec<(String, String)>,
    /// The plain-text body.
    pub body: String,
    /// The provider, when the address is a mailbox at both (else found from who signed in).
    pub provider: Option<Provider>,
    /// How long ago it arrived (0: now), for a resync's time window.
    pub age_seconds: u64,
}

/// A mail a mailbox sent through the stand-in (Gmail `messages.send` or Graph `sendMail`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMail {
    /// [`Provider::Google`] or [`Provider::Microsoft`].
    pub provider: Provider,
    /// The sending mailbox's address.
    pub mailbox: String,
    /// The access token it came with.
    pub token: String,
    /// `From`, RFC 2047 words decoded (as sent, or the mailbox's address when it had none).
    pub from: String,
    /// `To`, decoded.
    pub to: String,
    /// `Subject`, decoded.
    pub subject: String,
    /// `Message-ID` (as sent, or the one the provider gave it).
    pub message_id: String,
    /// The `In-Reply-To` header, when the message had one.
    pub in_reply_to: Option<String>,
    /// The `References` header, when the message had one.
    pub references: Option<String>,
    /// The `List-Unsubscribe` header, when the message had one.
    pub list_unsubscribe: Option<String>,
    /// The `List-Unsubscribe-Post` header, when the message had one.
    pub list_unsubscribe_post: Option<String>,
    /// Every header, unfolded, values as written.
    pub headers: Vec<(String, String)>,
    /// The text body, its transfer encoding undone.
    pub body: String,
    /// Gmail's message id; Graph's Sent Items copy's id ("" when not saved).
    pub provider_message_id: String,
    /// Gmail's `threadId`; Graph's `conversationId`.
    pub thread_id: String,
}

impl SentMail {
    /// A header's value as written, by any spelling of its name.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
}

/// A message delivered into an inbox ([`FakeSocial::deliver`] or `POST /_stand-in/inbound`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredMail {
    /// [`Provider::Google`] or [`Provider::Microsoft`].
    pub provider: Provider,
    /// The receiving mailbox's address.
    pub mailbox: String,
    /// The `From` header, as written.
    pub from: String,
    /// The `Subject` header, as written.
    pub subject: String,
    /// The provider's id of the new message.
    pub id: String,
    /// Gmail's `threadId`; Graph's `conversationId`.
    pub thread_id: String,
    /// Its `Message-ID`.
    pub message_id: String,
}

/// A scripted answer of Gmail's send call ([`FakeSocial::gmail_send_answers`]), in the bodies of
/// Gmail's "Resolve errors" page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GmailSendAnswer {
    /// 429 `rateLimitExceeded`: the user's mail sending limit, "User-rate limit exceeded.  Retry
    /// after {time} (Mail sending)", the time this many seconds from now.
    MailSendingLimit {
        /// Seconds until the retry time in the message.
        retry_after_seconds: u64,
    },
    /// 403 `userRateLimitExceeded` "User Rate Limit Exceeded".
    UserRateLimitExceeded,
    /// 403 `rateLimitExceeded` "Rate Limit Exceeded" (the project's limit).
    RateLimitExceeded,
    /// 500 `backendError` "Backend Error".
    BackendError,
    /// 400 `invalidArgument` with this message.
    InvalidArgument(String),
}

/// A scripted answer of Graph's `sendMail` ([`FakeSocial::graph_send_answers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphSendAnswer {
    /// 429 `ApplicationThrottled` with `Retry-After`.
    Throttled {
        /// The `Retry-After` seconds.
        retry_after_seconds: u64,
    },
    /// 503 `serviceNotAvailable`, with `Retry-After` when given.
    ServiceUnavailable {
        /// The `Retry-After` seconds, if any.
        retry_after_seconds: Option<u64>,
    },
    /// 400 `ErrorInvalidRecipients`.
    InvalidRecipients,
    /// Any other refusal, in Graph's error shape.
    Error {
        /// The HTTP status.
        status: u16,
        /// `error.code`.
        code: String,
        /// `error.message`.
        message: String,
    },
}

// ---------------------------------------------------------------------------------------------
// The stand-in's state, kept in its one script.
// ---------------------------------------------------------------------------------------------

/// Every mailbox, what was sent and delivered, and what the tests scripted.
#[derive(Default)]
pub(crate) struct MailboxState {
    gmail: HashMap<String, GmailBox>,
    graph: HashMap<String, GraphBox>,
    sent: Vec<SentMail>,
    delivered: Vec<DeliveredMail>,
    gmail_answers: VecDeque<GmailSendAnswer>,
    graph_answers: VecDeque<GraphSendAnswer>,
    /// A page size smaller than the providers' own, so a test sees paging.
    page_size: Option<usize>,
    /// Addresses a mailbox may send as besides its own, by mailbox.
    send_as: HashMap<String, HashSet<String>>,
    gmail_rewrites_foreign_from: bool,
    /// Gmail message ids are drawn from here.
    gmail_ids: u64,
}

impl MailboxState {
    fn gmail_box(&mut self, address: &str) -> &mut GmailBox {
        self.gmail.entry(key(address)).or_default()
    }

    fn graph_box(&mut self, address: &str) -> &mut GraphBox {
        self.graph.entry(key(address)).or_default()
    }

    /// Gmail's profile figures for `address`: messages, threads, current history id.
    pub(crate) fn gmail_profile(&mut self, address: &str) -> (usize, usize, u64) {
        let mailbox = self.gmail_box(address);
        let threads: HashSet<&str> = mailbox
            .messages
            .iter()
            .map(|message| message.thread_id.as_str())
            .collect();
        (mailbox.messages.len(), threads.len(), mailbox.history_id)
    }

    fn may_send_as(&self, mailbox: &str, own: &[&str], from: &str) -> bool {
        own.iter().any(|address| address.eq_ignore_ascii_case(from))
            || self
                .send_as
                .get(&key(mailbox))
                .is_some_and(|aliases| aliases.contains(&key(from)))
    }

    fn next_gmail_id(&mut self) -> String {
        self.gmail_ids += 1;
        // Increasing, 16 hex digits, like Gmail's.
        format!(
            "{:016x}",
            0x18f3_a000_0000_0000_u64 + self.gmail_ids * 0x1_04d3
        )
    }

    fn page_limit(&self, requested: Option<&str>, (default, max): (usize, usize)) -> usize {
        let size = requested
            .and_then(|value| value.trim().parse::<usize>().ok())
            .filter(|size| *size > 0)
            .unwrap_or(default)
            .min(max);
        self.page_size.map_or(size, |forced| size.min(forced))
    }
}

/// A mailbox is found by its address in any case.
fn key(address: &str) -> String {
    address.trim().to_ascii_lowercase()
}

// ---------------------------------------------------------------------------------------------
// The message as written (RFC 5322, MIME), read and written the way both providers need.
// ---------------------------------------------------------------------------------------------

/// A message's headers, unfolded, in order, values as written; its body as sent and as text.
#[derive(Debug, Clone, Default)]
struct Written {
    headers: Vec<(String, String)>,
    encoded_body: String,
    body: String,
}

impl Written {
    fn parse(raw: &str) -> Self {
        let raw = raw.replace("\r\n", "\n");
        let (head, body) = match raw.find("\n\n") {
            Some(end) => (&raw[..end], &raw[end + 2..]),
            None => (raw.as_str(), ""),
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                // A folded line continues the header above it (RFC 5322 §2.2.3).
                if let Some((_, value)) = headers.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let text = body_text(&headers, body);
        Self {
            headers,
            encoded_body: body.to_owned(),
            body: text,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// A header's value with RFC 2047 words decoded.
    fn text(&self, name: &str) -> Option<String> {
        self.header(name).map(decode_words)
    }

    fn set(&mut self, name: &str, value: &str) {
        match self
            .headers
            .iter_mut()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
        {
            Some((_, existing)) => *existing = value.to_owned(),
            None => self.headers.push((name.to_owned(), value.to_owned())),
        }
    }

    fn subject(&self) -> String {
        self.text("Subject").unwrap_or_default()
    }

    fn message_id(&self) -> String {
        self.header("Message-ID").unwrap_or_default().to_owned()
    }

    /// The message ids it answers, the most recent first (`In-Reply-To`, then `References`
    /// from its end).
    fn answered_ids(&self) -> Vec<String> {
        let mut ids = message_ids(self.header("In-Reply-To").unwrap_or_default());
        ids.extend(
            message_ids(self.header("References").unwrap_or_default())
                .into_iter()
                .rev(),
        );
        ids
    }

    fn recipients(&self) -> Vec<Address> {
        ["To", "Cc", "Bcc"]
            .iter()
            .filter_map(|name| self.header(name))
            .flat_map(addresses)
            .collect()
    }

    fn from(&self) -> Option<Address> {
        self.header("From")
            .and_then(|from| addresses(from).into_iter().next())
    }

    /// The message again, as the provider keeps it (headers possibly changed).
    fn render(&self) -> String {
        let mut raw = String::new();
        for (name, value) in &self.headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        raw.push_str("\r\n");
        raw.push_str(&self.encoded_body.replace('\n', "\r\n"));
        raw
    }

    fn snippet(&self) -> String {
        self.body
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(200)
            .collect()
    }

    fn mime_type(&self) -> String {
        self.header("Content-Type")
            .and_then(|value| value.split(';').next())
            .map(|value| value.trim().to_ascii_lowercase())
            .unwrap_or_else(|| "text/plain".to_owned())
    }
}

fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(header, _)| header.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// The text of a body: the first `text/plain` part of a multipart one, its transfer encoding
/// (base64, quoted-printable) undone.
fn body_text(headers: &[(String, String)], body: &str) -> String {
    let content_type = header_in(headers, "Content-Type").unwrap_or("text/plain");
    if content_type.to_ascii_lowercase().starts_with("multipart/") {
        let Some(boundary) = content_parameter(content_type, "boundary") else {
            return body.to_owned();
        };
        let delimiter = format!("--{boundary}");
        for part in body.split(delimiter.as_str()).skip(1) {
            if part.starts_with("--") {
                break;
            }
            let part = Written::parse(part.trim_start_matches('\n'));
            let kind = part.mime_type();
            if kind == "text/plain" || kind.starts_with("multipart/") {
                return part.body.trim_end_matches('\n').to_owned();
            }
        }
        return String::new();
    }
    let encoding = header_in(headers, "Content-Transfer-Encoding")
        .unwrap_or("7bit")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "base64" => BASE64_ANY_PADDING
            .decode(body.split_whitespace().collect::<String>())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|_| body.to_owned()),
        "quoted-printable" => quoted_printable(body, false),
        _ => body.to_owned(),
    }
}

/// A parameter of a structured header value (`boundary` of `Content-Type`).
fn content_parameter(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|parameter| {
        let (key, value) = parameter.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// Quoted-printable (RFC 2045 §6.7), or RFC 2047's `Q` when `underscore_is_space`.
fn quoted_printable(text: &str, underscore_is_space: bool) -> String {
    let input = text.as_bytes();
    let mut bytes = Vec::with_capacity(input.len());
    let mut at = 0;
    while at < input.len() {
        match input[at] {
            b'=' if input.get(at + 1) == Some(&b'\n') => at += 2,
            b'=' => match input
                .get(at + 1..at + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                Some(byte) => {
                    bytes.push(byte);
                    at += 3;
                }
                None => {
                    bytes.push(b'=');
                    at += 1;
                }
            },
            b'_' if underscore_is_space => {
                bytes.push(b' ');
                at += 1;
            }
            byte => {
                bytes.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A header value with its RFC 2047 encoded words (`=?UTF-8?B?...?=`) decoded; the space
/// between two adjacent words goes (RFC 2047 §6.2).
fn decode_words(value: &str) -> String {
    let mut decoded = String::new();
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, candidate) = rest.split_at(start);
        match encoded_word(candidate) {
            Some((text, length)) => {
                if !(after_word && before.trim().is_empty()) {
                    decoded.push_str(before);
                }
                decoded.push_str(&text);
                rest = &candidate[length..];
                after_word = true;
            }
            None => {
                decoded.push_str(before);
                decoded.push_str("=?");
                rest = &candidate[2..];
                after_word = false;
            }
        }
    }
    decoded.push_str(rest);
    decoded
}

/// One encoded word at the start of `text` (which starts with `=?`): its text and length.
fn encoded_word(text: &str) -> Option<(String, usize)> {
    let mut pieces = text[2..].splitn(3, '?');
    let charset = pieces.next()?;
    let encoding = pieces.next()?;
    let rest = pieces.next()?;
    let end = rest.find("?=")?;
    let payload = &rest[..end];
    if payload.contains(char::is_whitespace) {
        return None;
    }
    let text = match encoding {
        "B" | "b" => {
            String::from_utf8_lossy(&BASE64_ANY_PADDING.decode(payload).ok()?).into_owned()
        }
        "Q" | "q" => quoted_printable(payload, true),
        _ => return None,
    };
    Some((text, 2 + charset.len() + 1 + encoding.len() + 1 + end + 2))
}

/// A subject as a header value: itself when ASCII, else one UTF-8 `B` word.
fn encode_words(text: &str) -> String {
    if text.is_ascii() {
        text.to_owned()
    } else {
        format!("=?UTF-8?B?{}?=", STANDARD.encode(text.as_bytes()))
    }
}

/// A mailbox in an address header: `Name <address>` or a bare address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Address {
    name: String,
    address: String,
}

impl Address {
    /// Graph's `recipient`: `{"emailAddress": {name, address}}`, the address as the name when
    /// there is none.
    fn graph(&self) -> Value {
        let name = if self.name.is_empty() {
            &self.address
        } else {
            &self.name
        };
        json!({"emailAddress": {"name": name, "address": self.address}})
    }
}

/// The mailboxes of an address list (commas inside quotes or angle brackets do not split).
fn addresses(value: &str) -> Vec<Address> {
    let mut list = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut angled) = (false, false);
    for character in value.chars() {
        match character {
            '"' => quoted = !quoted,
            '<' if !quoted => angled = true,
            '>' if !quoted => angled = false,
            ',' if !quoted && !angled => {
                list.extend(address(&current));
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(character);
    }
    list.extend(address(&current));
    list
}

fn address(text: &str) -> Option<Address> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(match (text.rfind('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => Address {
            name: decode_words(text[..open].trim().trim_matches('"').trim()),
            address: text[open + 1..close].trim().to_owned(),
        },
        _ => Address {
            name: String::new(),
            address: text.to_owned(),
        },
    })
}

/// Whether Gmail takes `text` for an address: something before the `@`, a dotted domain after.
fn is_deliverable(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !text.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// The `<...>` message ids in an `In-Reply-To` or `References` value.
fn message_ids(value: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        ids.push(rest[open..open + close + 1].to_owned());
        rest = &rest[open + close + 1..];
    }
    ids
}

/// The subject without its reply and forward prefixes, for comparing a reply with what it answers.
fn topic(subject: &str) -> String {
    let mut rest = subject.trim();
    'strip: loop {
        for prefix in ["re:", "fwd:", "fw:", "aw:", "wg:", "sv:"] {
            if rest.len() >= prefix.len() && rest[..prefix.len()].eq_ignore_ascii_case(prefix) {
                rest = rest[prefix.len()..].trim_start();
                continue 'strip;
            }
        }
        break;
    }
    rest.to_lowercase()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// `2025-07-01T10:00:00Z`, Graph's form of a time.
fn iso(at: OffsetDateTime) -> String {
    at.replace_nanosecond(0)
        .unwrap_or(at)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// `2025-07-01T10:00:00.123Z`, the retry time in Gmail's 429.
fn iso_millis(at: OffsetDateTime) -> String {
    let seconds = iso(at);
    format!("{}.{:03}Z", seconds.trim_end_matches('Z'), at.millisecond())
}

fn unix_millis(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn params_named<'a>(params: &'a Params, name: &'a str) -> impl Iterator<Item = &'a str> {
    params
        .iter()
        .filter(move |(key, _)| key == name || *key == format!("{name}[]"))
        .map(|(_, value)| value.as_str())
}

/// The stand-in's own address as the client reached it, for Graph's absolute links.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
}

/// What every send records, whichever provider took it.
fn sent_record(
    provider: Provider,
    mailbox: &str,
    token: &str,
    written: &Written,
    provider_message_id: &str,
    thread_id: &str,
) -> SentMail {
    SentMail {
        provider,
        mailbox: mailbox.to_owned(),
        token: token.to_owned(),
        from: written.text("From").unwrap_or_default(),
        to: written.text("To").unwrap_or_default(),
        subject: written.subject(),
        message_id: written.message_id(),
        in_reply_to: written.header("In-Reply-To").map(str::to_owned),
        references: written.header("References").map(str::to_owned),
        list_unsubscribe: written.header("List-Unsubscribe").map(str::to_owned),
        list_unsubscribe_post: written.header("List-Unsubscribe-Post").map(str::to_owned),
        headers: written.headers.clone(),
        body: written.body.clone(),
        provider_message_id: provider_message_id.to_owned(),
        thread_id: thread_id.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Gmail.
// ---------------------------------------------------------------------------------------------

struct GmailMessage {
    id: String,
    thread_id: String,
    labels: Vec<&'static str>,
    written: Written,
    internal_ms: i64,
    /// The history record that added it.
    history_id: u64,
}

struct GmailBox {
    messages: Vec<GmailMessage>,
    /// The current history id: the last record's.
    history_id: u64,
    /// Ids below this one are forgotten: a start there is Gmail's 404.
    oldest_kept: u64,
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
    fn answered(&self, written: &Written) -> Option<&GmailMessage> {
        let subject = topic(&written.subject());
        written.answered_ids().iter().find_map(|id| {
            self.messages
                .iter()
                .find(|message| message.written.message_id() == *id)
                .filter(|message| topic(&message.written.subject()) == subject)
        })
    }

    /// Adds a message in a new history record, whose id becomes the current one.
    fn add(&mut self, mut message: GmailMessage) {
        // Gaps, as Gmail's ids have: a client counting on `id + 1` is caught.
        self.history_id += 1 + 2 * (self.messages.len() as u64 % 3);
        message.history_id = self.history_id;
        self.messages.push(message);
    }

    fn find(&self, id: &str) -> Option<&GmailMessage> {
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

fn gmail_invalid(message: &str) -> Response {
    gmail_error(
        StatusCode::BAD_REQUEST,
        "global",
        "invalidArgument",
        message,
        Some("INVALID_ARGUMENT"),
    )
}

fn gmail_not_found() -> Response {
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
        }
    }
}

/// The Gmail mailbox a request's token opens (Bearer header or `access_token` parameter).
fn gmail_mailbox(script: &Script, headers: &HeaderMap, query: &Params) -> Option<String> {
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
async fn gmail_send(
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

/// `GET /gmail/v1/users/me/history`.
async fn gmail_history(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> Response {
    let mut script = state.lock().expect("lock");
    let Some(address) = gmail_mailbox(&script, &headers, &query) else {
        return crate::fake_oauth::gmail_unauthorized();
    };
    let mail = &mut script.mailboxes;
    let Some(start) = param(&query, "startHistoryId").and_then(|start| start.parse::<u64>().ok())
    else {
        return gmail_invalid("Missing/invalid parameter: startHistoryId");
    };
    let after = match param(&query, "pageToken") {
        Some(token) => match token.parse::<u64>() {
            Ok(after) => after,
            Err(_) => return gmail_invalid("Invalid pageToken"),
        },
        None => start,
    };
    let limit = mail.page_limit(param(&query, "maxResults"), GMAIL_PAGE);
    let label = param(&query, "labelId");
    let types: Vec<&str> = params_named(&query, "historyTypes").collect();
    let mailbox = mail.gmail_box(&address);
    if start < mailbox.oldest_kept {
        return gmail_not_found();
    }
    let added_wanted = types.is_empty() || types.contains(&"messageAdded");
    let mut records = mailbox.messages.iter().filter(|message| {
        added_wanted
            && message.history_id > after
            && label.is_none_or(|label| message.labels.contains(&label))
    });
    let page: Vec<&GmailMessage> = records.by_ref().take(limit).collect();
    let more = records.next().is_some();
    let mut body = json!({"historyId": mailbox.history_id.to_string()});
    if !page.is_empty() {
        body["history"] = page
            .iter()
            .map(|message| {
                json!({"id": message.history_id.to_string(),
                    "messages": [{"id": message.id, "threadId": message.thread_id}],
                    "messagesAdded": [{"message": {"id": message.id,
                        "threadId": message.thread_id, "labelIds": message.labels}}]})
            })
            .collect();
    }
    if let (true, Some(last)) = (more, page.last()) {
        body["nextPageToken"] = last.history_id.to_string().into();
    }
    (StatusCode::OK, Json(body)).into_response()
}

/// One term of Gmail's search query the stand-in understands.
enum SearchTerm {
    /// Received at or after this time (unix milliseconds).
    Since(i64),
    /// Received before this time.
    Before(i64),
    /// Carries this label.
    Label(String),
}

/// Gmail's `q`, the terms the resync needs; anything else is refused rather than ignored.
fn search_terms(query: &str, now_ms: i64) -> Result<Vec<SearchTerm>, String> {
    const DAY_MS: i64 = 86_400_000;
    let relative = |value: &str| -> Option<i64> {
        let unit_at = value.len().checked_sub(1)?;
        if !value.is_char_boundary(unit_at) {
            return None;
        }
        let (count, unit) = value.split_at(unit_at);
        let count: i64 = count.parse().ok()?;
        let unit = match unit {
            "d" => DAY_MS,
            "m" => 30 * DAY_MS,
            "y" => 365 * DAY_MS,
            _ => return None,
        };
        Some(now_ms - count * unit)
    };
    let moment = |value: &str| -> Option<i64> {
        if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
            return value.parse::<i64>().ok().map(|seconds| seconds * 1000);
        }
        let parts: Vec<&str> = value.split(['/', '-']).collect();
        let [year, month, day] = parts.as_slice() else {
            return None;
        };
        let date = time::Date::from_calendar_date(
            year.parse().ok()?,
            time::Month::try_from(month.parse::<u8>().ok()?).ok()?,
            day.parse().ok()?,
        )
        .ok()?;
        // "Interpreted as midnight on that date in the PST timezone": UTC−8.
        let midnight = date.midnight().assume_utc() + time::Duration::hours(8);
        Some(unix_millis(midnight))
    };
    query
        .split_whitespace()
        .map(|term| {
            let parsed = match term.split_once(':') {
                Some(("newer_than", value)) => relative(value).map(SearchTerm::Since),
                Some(("older_than", value)) => relative(value).map(SearchTerm::Before),
                Some(("after", value)) => moment(value).map(SearchTerm::Since),
                Some(("before", value)) => moment(value).map(SearchTerm::Before),
                Some(("in", "inbox")) => Some(SearchTerm::Label("INBOX".into())),
                Some(("in", "sent")) => Some(SearchTerm::Label("SENT".into())),
                Some(("label", value)) => Some(SearchTerm::Label(value.to_owned())),
                _ => None,
            };
            parsed.ok_or_else(|| term.to_owned())
        })
        .collect()
}

/// `GET /gmail/v1/users/me/messages`.
async fn gmail_list(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> Response {
    let mut script = state.lock().expect("lock");
    let Some(address) = gmail_mailbox(&script, &headers, &query) else {
        return crate::fake_oauth::gmail_unauthorized();
    };
    let mail = &mut script.mailboxes;
    let terms = match search_terms(param(&query, "q").unwrap_or_default(), unix_millis(now())) {
        Ok(terms) => terms,
        Err(term) => {
            return gmail_invalid(&format!(
                "The platform stand-in does not support the search term {term:?}"
            ));
        }
    };
    let offset = match param(&query, "pageToken").map(str::parse::<usize>) {
        None => 0,
        Some(Ok(offset)) => offset,
        Some(Err(_)) => return gmail_invalid("Invalid pageToken"),
    };
    let limit = mail.page_limit(param(&query, "maxResults"), GMAIL_PAGE);
    let labels: Vec<&str> = params_named(&query, "labelIds").collect();
    let mailbox = mail.gmail_box(&address);
    let mut matching: Vec<&GmailMessage> = mailbox
        .messages
        .iter()
        .filter(|message| labels.iter().all(|label| message.labels.contains(label)))
        .filter(|message| {
            terms.iter().all(|term| match term {
                SearchTerm::Since(at) => message.internal_ms >= *at,
                SearchTerm::Before(at) => message.internal_ms < *at,
                SearchTerm::Label(label) => message.labels.contains(&label.as_str()),
            })
        })
        .collect();
    matching.sort_by_key(|message| std::cmp::Reverse((message.internal_ms, message.history_id)));
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|message| json!({"id": message.id, "threadId": message.thread_id}))
        .collect();
    let mut body = json!({"resultSizeEstimate": matching.len()});
    if offset + page.len() < matching.len() {
        body["nextPageToken"] = (offset + page.len()).to_string().into();
    }
    if !page.is_empty() {
        body["messages"] = page.into();
    }
    (StatusCode::OK, Json(body)).into_response()
}

/// `GET /gmail/v1/users/me/messages/{id}`.
async fn gmail_get(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> Response {
    let mut script = state.lock().expect("lock");
    let Some(address) = gmail_mailbox(&script, &headers, &query) else {
        return crate::fake_oauth::gmail_unauthorized();
    };
    let mailbox = script.mailboxes.gmail_box(&address);
    let Some(message) = mailbox.find(&id) else {
        return gmail_not_found();
    };
    let written = &message.written;
    let raw = written.render();
    let mut body = json!({"id": message.id, "threadId": message.thread_id,
        "labelIds": message.labels, "snippet": written.snippet(),
        "sizeEstimate": raw.len(), "historyId": message.history_id.to_string(),
        "internalDate": message.internal_ms.to_string()});
    let format = param(&query, "format")
        .unwrap_or("full")
        .to_ascii_lowercase();
    let wanted: Vec<&str> = params_named(&query, "metadataHeaders").collect();
    let headers: Vec<Value> = written
        .headers
        .iter()
        .filter(|(name, _)| {
            format != "metadata"
                || wanted.is_empty()
                || wanted
                    .iter()
                    .any(|wanted| wanted.eq_ignore_ascii_case(name))
        })
        .map(|(name, value)| json!({"name": name, "value": decode_words(value)}))
        .collect();
    match format.as_str() {
        "minimal" => {}
        "raw" => body["raw"] = URL_SAFE.encode(raw.as_bytes()).into(),
        "metadata" => {
            body["payload"] = json!({"partId": "", "mimeType": written.mime_type(),
                "filename": "", "headers": headers});
        }
        _ => {
            body["payload"] = json!({"partId": "", "mimeType": written.mime_type(),
                "filename": "", "headers": headers,
                "body": {"size": written.body.len(),
                    "data": URL_SAFE.encode(written.body.as_bytes())}});
        }
    }
    (StatusCode::OK, Json(body)).into_response()
}

// ---------------------------------------------------------------------------------------------
// Microsoft Graph.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Folder {
    Inbox,
    SentItems,
}

impl Folder {
    /// A well-known folder name (`inbox`, `sentitems`), in any case.
    fn named(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "inbox" => Some(Folder::Inbox),
            "sentitems" => Some(Folder::SentItems),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Folder::Inbox => "inbox",
            Folder::SentItems => "sentitems",
        }
    }

    /// A folder id of Graph's shape.
    fn id(self) -> &'static str {
        match self {
            Folder::Inbox => "AQMkADRmYjE2AC4AAAIBDAAAAA==",
            Folder::SentItems => "AQMkADRmYjE2AC4AAAIBCQAAAA==",
        }
    }
}

struct GraphMessage {
    id: String,
    conversation_id: String,
    folder: Folder,
    written: Written,
    received: OffsetDateTime,
    /// Its place in the mailbox's changes, which delta tokens count.
    seq: u64,
}

/// What a delta query asks: carried by its links from page to page and round to round.
#[derive(Debug, Clone)]
struct DeltaQuery {
    folder: Folder,
    select: Option<String>,
    filter: Vec<TimeBound>,
}

/// Where a round of a delta query is: its changes after `since` up to `until`, from `offset`.
#[derive(Debug, Clone)]
struct DeltaRound {
    query: DeltaQuery,
    since: u64,
    until: u64,
    offset: usize,
}

#[derive(Default)]
struct GraphBox {
    messages: Vec<GraphMessage>,
    seq: u64,
    /// `$skiptoken` → the round it continues.
    rounds: HashMap<String, DeltaRound>,
    /// `$deltatoken` → the query and the change it had seen.
    deltas: HashMap<String, (DeltaQuery, u64)>,
}

impl GraphBox {
    fn add(&mut self, mut message: GraphMessage) {
        self.seq += 1;
        message.seq = self.seq;
        self.messages.push(message);
    }

    /// The conversation of the message `written` answers, if the mailbox has that message.
    fn conversation_answered(&self, written: &Written) -> Option<String> {
        written.answered_ids().iter().find_map(|id| {
            self.messages
                .iter()
                .find(|message| message.written.message_id() == *id)
                .map(|message| message.conversation_id.clone())
        })
    }
}

/// A Graph id's shape: long, base64url, ending in `=` (a client must not rebuild or trim it).
fn graph_id(prefix: &str) -> String {
    format!("{prefix}{}AAA=", random_token())
}

/// A Graph error: `{"error": {code, message, innerError}}`.
fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
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
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn respond(&self) -> Response {
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

fn graph_user(script: &Script, headers: &HeaderMap) -> Option<MicrosoftUser> {
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
fn graph_address(user: &MicrosoftUser) -> String {
    user.mail
        .clone()
        .unwrap_or_else(|| user.user_principal_name.clone())
}

/// `POST /v1.0/me/sendMail`.
async fn graph_send(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
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

/// A message as Graph shows it: everything, or the `$select`ed properties (and `id`).
fn graph_message_json(message: &GraphMessage, select: Option<&str>) -> Value {
    let written = &message.written;
    let from = written.from().unwrap_or_default().graph();
    let to: Vec<Value> = addresses(written.header("To").unwrap_or_default())
        .iter()
        .map(Address::graph)
        .collect();
    let received = iso(message.received);
    let mut full = json!({
        "@odata.etag": format!("W/\"CQAAABYAAAD{:08}\"", message.seq),
        "id": message.id, "createdDateTime": received, "lastModifiedDateTime": received,
        "receivedDateTime": received, "sentDateTime": received, "hasAttachments": false,
        "internetMessageId": written.message_id(), "subject": written.subject(),
        "bodyPreview": written.snippet(), "importance": "normal",
        "parentFolderId": message.folder.id(), "conversationId": message.conversation_id,
        "isRead": message.folder == Folder::SentItems, "isDraft": false,
        "body": {"contentType": "text", "content": written.body},
        "sender": from, "from": from, "toRecipients": to, "ccRecipients": [],
        "bccRecipients": [], "replyTo": [],
    });
    let Some(select) = select else {
        return full;
    };
    let Value::Object(properties) = &mut full else {
        return Value::Null;
    };
    let mut chosen = Map::new();
    for name in ["@odata.etag", "id"] {
        if let Some(value) = properties.remove(name) {
            chosen.insert(name.to_owned(), value);
        }
    }
    for name in select.split(',').map(str::trim) {
        if name.eq_ignore_ascii_case("internetMessageHeaders") {
            // A Sent Items copy carries none (observed).
            if message.folder == Folder::Inbox {
                let headers: Vec<Value> = written
                    .headers
                    .iter()
                    .map(|(name, value)| json!({"name": name, "value": value}))
                    .collect();
                chosen.insert("internetMessageHeaders".to_owned(), headers.into());
            }
            continue;
        }
        if let Some(key) = properties
            .keys()
            .find(|key| key.eq_ignore_ascii_case(name))
            .cloned()
            && let Some(value) = properties.remove(&key)
        {
            chosen.insert(key, value);
        }
    }
    Value::Object(chosen)
}

/// `receivedDateTime` against a time (`$filter=receivedDateTime ge 2025-07-01T00:00:00Z`).
#[derive(Debug, Clone, Copy)]
struct TimeBound {
    comparison: std::cmp::Ordering,
    inclusive: bool,
    at: OffsetDateTime,
}

impl TimeBound {
    fn admits(&self, received: OffsetDateTime) -> bool {
        let order = received.cmp(&self.at);
        order == self.comparison || (self.inclusive && order == std::cmp::Ordering::Equal)
    }
}

/// Graph's `$filter` on `receivedDateTime`, clauses joined by `and`; anything else is refused.
fn time_filter(filter: Option<&str>) -> Result<Vec<TimeBound>, Refusal> {
    let refuse = || {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidUrlQueryFilter",
            "The query filter contains one or more invalid nodes.",
        )
    };
    let Some(filter) = filter.filter(|filter| !filter.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    let words: Vec<&str> = filter.split_whitespace().collect();
    let clauses: Vec<&[&str]> = words.chunks(4).collect();
    let mut bounds = Vec::new();
    for (index, clause) in clauses.iter().enumerate() {
        // `field op value`, then `and` before every clause but the last.
        let last = index + 1 == clauses.len();
        let (field, operator, value) = match (*clause, last) {
            ([field, operator, value], true) => (field, operator, value),
            ([field, operator, value, joiner], false) if joiner.eq_ignore_ascii_case("and") => {
                (field, operator, value)
            }
            _ => return Err(refuse()),
        };
        if !field.eq_ignore_ascii_case("receivedDateTime") {
            return Err(refuse());
        }
        let value = value.trim_matches('\'');
        let at = OffsetDateTime::parse(value, &Rfc3339)
            .or_else(|_| OffsetDateTime::parse(&format!("{value}T00:00:00Z"), &Rfc3339))
            .map_err(|_| refuse())?;
        let (comparison, inclusive) = match operator.to_ascii_lowercase().as_str() {
            "ge" => (std::cmp::Ordering::Greater, true),
            "gt" => (std::cmp::Ordering::Greater, false),
            "le" => (std::cmp::Ordering::Less, true),
            "lt" => (std::cmp::Ordering::Less, false),
            _ => return Err(refuse()),
        };
        bounds.push(TimeBound {
            comparison,
            inclusive,
            at,
        });
    }
    Ok(bounds)
}

fn graph_item_not_found() -> Response {
    graph_error(
        StatusCode::NOT_FOUND,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

/// `odata.maxpagesize` in a `Prefer` header.
fn preferred_page_size(headers: &HeaderMap) -> Option<usize> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|preference| {
            let (name, value) = preference.split_once('=')?;
            (name.trim() == "odata.maxpagesize")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
}

/// `GET /v1.0/me/mailFolders/{folder}/messages/delta`.
async fn graph_delta(
    State(state): State<Shared>,
    Path(folder): Path<String>,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> Response {
    let mut script = state.lock().expect("lock");
    let Some(user) = graph_user(&script, &headers) else {
        return crate::fake_oauth::graph_unauthorized(bearer(&headers));
    };
    let mail = &mut script.mailboxes;
    let preferred = preferred_page_size(&headers);
    let limit = mail.page_limit(
        preferred.map(|size| size.to_string()).as_deref(),
        GRAPH_PAGE,
    );
    let Some(folder) = Folder::named(&folder) else {
        return graph_item_not_found();
    };
    let mailbox = mail.graph_box(&graph_address(&user));
    let round = if let Some(skip) = param(&query, "$skiptoken") {
        mailbox.rounds.get(skip).cloned()
    } else if let Some(delta) = param(&query, "$deltatoken") {
        mailbox.deltas.get(delta).map(|(query, seen)| DeltaRound {
            query: query.clone(),
            since: *seen,
            until: mailbox.seq,
            offset: 0,
        })
    } else {
        let filter = match time_filter(param(&query, "$filter")) {
            Ok(filter) => filter,
            Err(refusal) => return refusal.respond(),
        };
        Some(DeltaRound {
            query: DeltaQuery {
                folder,
                select: param(&query, "$select").map(str::to_owned),
                filter,
            },
            since: 0,
            until: mailbox.seq,
            offset: 0,
        })
    };
    let Some(round) = round else {
        return graph_error(
            StatusCode::GONE,
            "SyncStateNotFound",
            "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
        );
    };
    let changes: Vec<&GraphMessage> = mailbox
        .messages
        .iter()
        .filter(|message| {
            message.folder == round.query.folder
                && message.seq > round.since
                && message.seq <= round.until
                && round
                    .query
                    .filter
                    .iter()
                    .all(|bound| bound.admits(message.received))
        })
        .collect();
    let page: Vec<Value> = changes
        .iter()
        .skip(round.offset)
        .take(limit)
        .map(|message| graph_message_json(message, round.query.select.as_deref()))
        .collect();
    let link = format!(
        "{}/v1.0/me/mailFolders/{}/messages/delta",
        base_url(&headers),
        round.query.folder.name()
    );
    let mut body = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(message)",
        "value": page,
    });
    let next_offset = round.offset + page.len();
    if next_offset < changes.len() {
        let token = random_token();
        mailbox.rounds.insert(
            token.clone(),
            DeltaRound {
                offset: next_offset,
                ..round
            },
        );
        body["@odata.nextLink"] = format!("{link}?$skiptoken={token}").into();
    } else {
        let token = random_token();
        mailbox
            .deltas
            .insert(token.clone(), (round.query, round.until));
        body["@odata.deltaLink"] = format!("{link}?$deltatoken={token}").into();
    }
    let mut response = (StatusCode::OK, Json(body)).into_response();
    if let Some(value) =
        preferred.and_then(|size| HeaderValue::from_str(&format!("odata.maxpagesize={size}")).ok())
    {
        response.headers_mut().insert("preference-applied", value);
    }
    response
}

/// `GET /v1.0/me/mailFolders/{folder}/messages`.
async fn graph_list(
    State(state): State<Shared>,
    Path(folder): Path<String>,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> Response {
    let mut script = state.lock().expect("lock");
    let Some(user) = graph_user(&script, &headers) else {
        return crate::fake_oauth::graph_unauthorized(bearer(&headers));
    };
    let mail = &mut script.mailboxes;
    let Some(folder) = Folder::named(&folder) else {
        return graph_item_not_found();
    };
    let filter = match time_filter(param(&query, "$filter")) {
        Ok(filter) => filter,
        Err(refusal) => return refusal.respond(),
    };
    let top = mail.page_limit(param(&query, "$top"), GRAPH_PAGE);
    let skip: usize = param(&query, "$skip")
        .and_then(|skip| skip.parse().ok())
        .unwrap_or(0);
    let ascending =
        param(&query, "$orderby").is_some_and(|order| order.to_ascii_lowercase().ends_with(" asc"));
    let select = param(&query, "$select");
    let mailbox = mail.graph_box(&graph_address(&user));
    let mut matching: Vec<&GraphMessage> = mailbox
        .messages
        .iter()
        .filter(|message| {
            message.folder == folder && filter.iter().all(|bound| bound.admits(message.received))
        })
        .collect();
    matching.sort_by_key(|message| (message.received, message.seq));
    if !ascending {
        matching.reverse();
    }
    let page: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(top)
        .map(|message| graph_message_json(message, select))
        .collect();
    let mut body = json!({
        "@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#users('{}')/mailFolders('{}')/messages", user.id, folder.name()),
        "value": page,
    });
    if skip + page.len() < matching.len() {
        let mut next: Vec<(&str, String)> = ["$filter", "$select", "$orderby"]
            .iter()
            .filter_map(|name| param(&query, name).map(|value| (*name, value.to_owned())))
            .collect();
        next.push(("$top", top.to_string()));
        next.push(("$skip", (skip + page.len()).to_string()));
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(next)
            .finish();
        body["@odata.nextLink"] = format!(
            "{}/v1.0/me/mailFolders/{}/messages?{encoded}",
            base_url(&headers),
            folder.name()
        )
        .into();
    }
    (StatusCode::OK, Json(body)).into_response()
}

/// `GET /v1.0/me/messages/{id}`.
async fn graph_get(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> Response {
    let mut script = state.lock().expect("lock");
    let Some(user) = graph_user(&script, &headers) else {
        return crate::fake_oauth::graph_unauthorized(bearer(&headers));
    };
    let mailbox = script.mailboxes.graph_box(&graph_address(&user));
    match mailbox.messages.iter().find(|message| message.id == id) {
        Some(message) => (
            StatusCode::OK,
            Json(graph_message_json(message, param(&query, "$select"))),
        )
            .into_response(),
        None => graph_item_not_found(),
    }
}

// ---------------------------------------------------------------------------------------------
// Inbound mail, either provider.
// ---------------------------------------------------------------------------------------------

/// The provider and address of the mailbox `inbound` is for: a mailbox already used, or someone
/// known to the sign-in (granted, or signing in next). A Microsoft account reached by its sign-in
/// name is keyed by its `mail`, as the service keys it.
fn mailbox_of(script: &Script, inbound: &Inbound) -> Result<(Provider, String), String> {
    fn note(found: &mut Vec<(Provider, String)>, provider: Provider, address: &str) {
        if !found.iter().any(|(known, _)| *known == provider) {
            found.push((provider, address.to_owned()));
        }
    }
    let wanted = key(&inbound.mailbox);
    let mut found = Vec::new();
    for identity in script.oauth.known_identities() {
        match identity {
            Identity::Google(user) if key(&user.email) == wanted => {
                note(&mut found, Provider::Google, &user.email);
            }
            Identity::Microsoft(user)
                if key(&graph_address(&user)) == wanted
                    || key(&user.user_principal_name) == wanted =>
            {
                note(&mut found, Provider::Microsoft, &graph_address(&user));
            }
            _ => {}
        }
    }
    if script.mailboxes.gmail.contains_key(&wanted) {
        note(&mut found, Provider::Google, &inbound.mailbox);
    }
    if script.mailboxes.graph.contains_key(&wanted) {
        note(&mut found, Provider::Microsoft, &inbound.mailbox);
    }
    match (inbound.provider, found.as_slice()) {
        (Some(provider @ (Provider::Google | Provider::Microsoft)), _) => Ok(found
            .iter()
            .find(|(known, _)| *known == provider)
            .cloned()
            .unwrap_or((provider, inbound.mailbox.clone()))),
        (Some(other), _) => Err(format!("{} has no mailbox", other.name())),
        (None, [only]) => Ok(only.clone()),
        (None, []) => Err(format!(
            "no mailbox {}: nobody with that address signs in at Google or Microsoft",
            inbound.mailbox
        )),
        (None, _) => Err(format!(
            "{} is a mailbox at both Google and Microsoft: name the provider",
            inbound.mailbox
        )),
    }
}

/// Puts `inbound` in its mailbox's inbox.
fn deliver(script: &mut Script, inbound: &Inbound) -> Result<DeliveredMail, String> {
    let (provider, address) = mailbox_of(script, inbound)?;
    let received = now() - time::Duration::seconds(inbound.age_seconds as i64);
    let written = inbound_message(inbound, received);
    let mail = &mut script.mailboxes;
    let (id, thread_id) = match provider {
        Provider::Google => {
            let id = mail.next_gmail_id();
            let mailbox = mail.gmail_box(&address);
            let thread_id = mailbox
                .answered(&written)
                .map_or_else(|| id.clone(), |message| message.thread_id.clone());
            mailbox.add(GmailMessage {
                id: id.clone(),
                thread_id: thread_id.clone(),
                labels: vec!["INBOX", "UNREAD"],
                written: written.clone(),
                internal_ms: unix_millis(received),
                history_id: 0,
            });
            (id, thread_id)
        }
        _ => {
            let mailbox = mail.graph_box(&address);
            let id = graph_id("AAMkADRmYjE2");
            let conversation_id = mailbox
                .conversation_answered(&written)
                .unwrap_or_else(|| graph_id("AAQkADRmYjE2"));
            mailbox.add(GraphMessage {
                id: id.clone(),
                conversation_id: conversation_id.clone(),
                folder: Folder::Inbox,
                written: written.clone(),
                received,
                seq: 0,
            });
            (id, conversation_id)
        }
    };
    let delivered = DeliveredMail {
        provider,
        mailbox: address,
        from: inbound.from.clone(),
        subject: inbound.subject.clone(),
        id,
        thread_id,
        message_id: written.message_id(),
    };
    mail.delivered.push(delivered.clone());
    Ok(delivered)
}

/// The message as its sender's server would have written it.
fn inbound_message(inbound: &Inbound, received: OffsetDateTime) -> Written {
    let domain = address(&inbound.from)
        .and_then(|from| {
            from.address
                .split_once('@')
                .map(|(_, domain)| domain.to_owned())
        })
        .unwrap_or_else(|| "mail.example".to_owned());
    let mut written = Written::default();
    written.set("From", &inbound.from);
    written.set("To", &inbound.mailbox);
    written.set("Subject", &encode_words(&inbound.subject));
    written.set("Date", &received.format(&Rfc2822).unwrap_or_default());
    written.set(
        "Message-ID",
        &format!("<{}@{domain}>", uuid::Uuid::new_v4().simple()),
    );
    if let Some(in_reply_to) = &inbound.in_reply_to {
        written.set("In-Reply-To", in_reply_to);
    }
    if let Some(references) = &inbound.references {
        written.set("References", references);
    }
    for (name, value) in &inbound.headers {
        written.set(name, value);
    }
    written.set("MIME-Version", "1.0");
    if written.header("Content-Type").is_none() {
        written.set("Content-Type", "text/plain; charset=UTF-8");
    }
    written.encoded_body = inbound.body.clone();
    written.body = inbound.body.clone();
    written
}

// ---------------------------------------------------------------------------------------------
// Test controls.
// ---------------------------------------------------------------------------------------------

impl FakeSocial {
    /// Delivers `inbound` into its mailbox's inbox (Gmail label `INBOX`, Graph folder Inbox) and
    /// returns the provider's id of the new message. The mailbox is found from who signed in (or
    /// signs in next) with that address, unless [`Inbound::provider`] names it.
    ///
    /// # Panics
    /// When no provider has a mailbox with that address, or both do and none is named.
    pub fn deliver(&self, inbound: Inbound) -> String {
        let mut script = self.state.lock().expect("lock");
        match deliver(&mut script, &inbound) {
            Ok(delivered) => delivered.id,
            Err(problem) => panic!("cannot deliver: {problem}"),
        }
    }

    /// Every mail sent through either provider's send call, in order.
    pub fn sent_mail(&self) -> Vec<SentMail> {
        self.state.lock().expect("lock").mailboxes.sent.clone()
    }

    /// Every message delivered into an inbox (by a test or `POST /_stand-in/inbound`), in order.
    pub fn delivered_mail(&self) -> Vec<DeliveredMail> {
        self.state.lock().expect("lock").mailboxes.delivered.clone()
    }

    /// The next Gmail sends get these answers, one each, before anything is checked; after the
    /// script, sends are handled normally.
    pub fn gmail_send_answers(&self, answers: &[GmailSendAnswer]) {
        self.state.lock().expect("lock").mailboxes.gmail_answers =
            answers.iter().cloned().collect();
    }

    /// The next Graph `sendMail` calls get these answers, one each, before anything is checked;
    /// after the script, sends are handled normally.
    pub fn graph_send_answers(&self, answers: &[GraphSendAnswer]) {
        self.state.lock().expect("lock").mailboxes.graph_answers =
            answers.iter().cloned().collect();
    }

    /// Gmail no longer keeps the history of `address` before its current history id: a history
    /// list from any earlier id is 404 (Gmail keeps "typically ... at least a week").
    pub fn expire_gmail_history(&self, address: &str) {
        let mut script = self.state.lock().expect("lock");
        let mailbox = script.mailboxes.gmail_box(address);
        mailbox.oldest_kept = mailbox.history_id;
    }

    /// Every delta and next link Graph gave for the mailbox of `address` is forgotten: following
    /// one is 410 Gone, and the client must start over.
    pub fn expire_graph_delta(&self, address: &str) {
        let mut script = self.state.lock().expect("lock");
        let mailbox = script.mailboxes.graph_box(address);
        mailbox.rounds.clear();
        mailbox.deltas.clear();
    }

    /// Pages of every mailbox listing (Gmail history and messages, Graph delta and messages) hold
    /// at most `size` items, whatever the client asks, so a test sees paging; `None` restores the
    /// providers' own sizes.
    pub fn mailbox_page_size(&self, size: Option<usize>) {
        self.state.lock().expect("lock").mailboxes.page_size = size.map(|size| size.max(1));
    }

    /// The mailbox of `mailbox` may send as `alias` too: a Gmail send-as alias, a Microsoft
    /// Send As permission.
    pub fn send_as(&self, mailbox: &str, alias: &str) {
        self.state
            .lock()
            .expect("lock")
            .mailboxes
            .send_as
            .entry(key(mailbox))
            .or_default()
            .insert(key(alias));
    }

    /// Gmail rewrites a `From` it does not allow to the user's address (the observed behaviour)
    /// instead of the stand-in's default refusal (400 "Invalid From header").
    pub fn gmail_rewrites_foreign_from(&self, rewrite: bool) {
        self.state
            .lock()
            .expect("lock")
            .mailboxes
            .gmail_rewrites_foreign_from = rewrite;
    }

    /// The current history id of the Gmail mailbox of `address`.
    pub fn gmail_history_id(&self, address: &str) -> u64 {
        self.state
            .lock()
            .expect("lock")
            .mailboxes
            .gmail_box(address)
            .history_id
    }
}

// ---------------------------------------------------------------------------------------------
// The control route for `make dev`.
// ---------------------------------------------------------------------------------------------

/// `POST /_stand-in/inbound`'s body: [`Inbound`]'s fields, `headers` as `[["name", "value"]]`,
/// `provider` as `google` or `microsoft`.
#[derive(Debug, Deserialize)]
struct InboundRequest {
    mailbox: String,
    from: String,
    subject: String,
    #[serde(default)]
    in_reply_to: Option<String>,
    #[serde(default)]
    references: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: String,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    age_seconds: u64,
}

/// `POST /_stand-in/inbound`: a developer delivers a reply with curl; 201 with its ids.
async fn inbound_route(
    State(state): State<Shared>,
    Json(request): Json<InboundRequest>,
) -> Response {
    let provider = match request
        .provider
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => None,
        Some("google" | "gmail") => Some(Provider::Google),
        Some("microsoft" | "graph" | "outlook") => Some(Provider::Microsoft),
        Some(other) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("unknown provider {other:?}: google or microsoft")})),
            )
                .into_response();
        }
    };
    let inbound = Inbound {
        mailbox: request.mailbox,
        from: request.from,
        subject: request.subject,
        in_reply_to: request.in_reply_to,
        references: request.references,
        headers: request.headers,
        body: request.body,
        provider,
        age_seconds: request.age_seconds,
    };
    let mut script = state.lock().expect("lock");
    match deliver(&mut script, &inbound) {
        Ok(delivered) => (
            StatusCode::CREATED,
            Json(
                json!({"provider": delivered.provider.name(), "id": delivered.id,
                "threadId": delivered.thread_id, "messageId": delivered.message_id}),
            ),
        )
            .into_response(),
        Err(problem) => {
            (StatusCode::BAD_REQUEST, Json(json!({ "error": problem }))).into_response()
        }
    }
}

/// The mailbox routes, on the stand-in's router.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/gmail/v1/users/me/messages/send", post(gmail_send))
        .route("/gmail/v1/users/me/messages", get(gmail_list))
        .route("/gmail/v1/users/me/messages/{id}", get(gmail_get))
        .route("/gmail/v1/users/me/history", get(gmail_history))
        .route("/v1.0/me/sendMail", post(graph_send))
        .route("/v1.0/me/messages/{id}", get(graph_get))
        .route("/v1.0/me/mailFolders/{folder}/messages", get(graph_list))
        .route(
            "/v1.0/me/mailFolders/{folder}/messages/delta",
            get(graph_delta),
        )
        .route("/_stand-in/inbound", post(inbound_route))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_oauth::GoogleUser;
    use crate::fake_oauth::tests::{client, mailbox_token};

    /// A message as the service writes one (`outreach_mime`): encoded subject, base64 body,
    /// one-click unsubscribe headers.
    fn outreach_mime(from: &str, to: &str, subject: &str, message_id: &str, body: &str) -> String {
        format!(
            "From: {from}\r\nTo: {to}\r\nSubject: =?UTF-8?B?{}?=\r\nMessage-ID: {message_id}\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\
             Content-Transfer-Encoding: base64\r\nList-Unsubscribe: <https://pipewise.example/u/1>\r\n\
             List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n{}\r\n",
            STANDARD.encode(subject),
            STANDARD.encode(body)
        )
    }

    /// A mailbox as the service reaches it: the stand-in's base URL and a code-flow token.
    struct Mailbox {
        http: reqwest::Client,
        base: String,
        token: String,
    }

    impl Mailbox {
        async fn of(fake: &FakeSocial, provider: Provider) -> Self {
            Self {
                http: client(),
                base: fake.base_url.clone(),
                token: mailbox_token(fake, provider).await,
            }
        }

        async fn read(response: reqwest::Response) -> (u16, HeaderMap, Value) {
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let text = response.text().await.expect("a body");
            (
                status,
                headers,
                serde_json::from_str(&text).unwrap_or(Value::Null),
            )
        }

        async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
            let response = self
                .http
                .get(format!("{}{path}", self.base))
                .query(query)
                .bearer_auth(&self.token)
                .send()
                .await
                .expect("the stand-in answers");
            let (status, _, body) = Self::read(response).await;
            (status, body)
        }

        /// Follows a Graph link as given, with `Prefer: odata.maxpagesize` when asked.
        async fn follow(&self, link: &str, page: Option<usize>) -> (u16, HeaderMap, Value) {
            let mut request = self.http.get(link).bearer_auth(&self.token);
            if let Some(page) = page {
                request = request.header("Prefer", format!("odata.maxpagesize={page}"));
            }
            Self::read(request.send().await.expect("the stand-in answers")).await
        }

        async fn gmail_send(&self, mime: &str, thread_id: Option<&str>) -> (u16, Value) {
            let mut body = json!({"raw": URL_SAFE_NO_PAD.encode(mime.as_bytes())});
            if let Some(thread_id) = thread_id {
                body["threadId"] = thread_id.into();
            }
            self.post_json("/gmail/v1/users/me/messages/send", &body)
                .await
        }

        async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
            let response = self
                .http
                .post(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .json(body)
                .send()
                .await
                .expect("the stand-in answers");
            let (status, _, body) = Self::read(response).await;
            (status, body)
        }

        /// Graph's MIME send: the message base64-encoded in a `text/plain` body.
        async fn graph_send_mime(&self, mime: &str) -> (u16, HeaderMap, Value) {
            let response = self
                .http
                .post(format!("{}/v1.0/me/sendMail", self.base))
                .bearer_auth(&self.token)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(STANDARD.encode(mime.as_bytes()))
                .send()
                .await
                .expect("the stand-in answers");
            Self::read(response).await
        }

        async fn history_id(&self) -> String {
            let (status, profile) = self.get("/gmail/v1/users/me/profile", &[]).await;
            assert_eq!(status, 200, "{profile}");
            profile["historyId"]
                .as_str()
                .expect("a history id")
                .to_owned()
        }

        fn delta_start(&self) -> String {
            format!(
                "{}/v1.0/me/mailFolders/inbox/messages/delta?$select=id,conversationId,internetMessageId,from,receivedDateTime,subject",
                self.base
            )
        }
    }

    fn reply_to(mailbox: &str, message_id: &str, subject: &str) -> Inbound {
        Inbound {
            mailbox: mailbox.into(),
            from: "Bob Stone <bob@client.example>".into(),
            subject: subject.into(),
            in_reply_to: Some(message_id.into()),
            references: Some(message_id.into()),
            headers: vec![("Auto-Submitted".into(), "no".into())],
            body: "Tuesday works.".into(),
            ..Inbound::default()
        }
    }

    fn note(mailbox: &str, subject: &str, age_seconds: u64) -> Inbound {
        Inbound {
            mailbox: mailbox.into(),
            from: "someone@client.example".into(),
            subject: subject.into(),
            body: "hello".into(),
            age_seconds,
            ..Inbound::default()
        }
    }

    #[test]
    fn fake_mailbox_reads_folded_encoded_and_multipart_messages() {
        let written = Written::parse(&outreach_mime(
            "Ada <ada@example.com>",
            "bob@client.example",
            "Café tomorrow?",
            "<pw.1@example.com>",
            "Line one\r\nLine two",
        ));
        assert_eq!(written.subject(), "Café tomorrow?");
        assert_eq!(written.body, "Line one\r\nLine two");
        assert_eq!(written.from().expect("a From").address, "ada@example.com");

        let folded = Written::parse(
            "From: =?UTF-8?Q?Jos=C3=A9?= <jose@client.example>\r\nTo: a@x.example, \"Last, First\" <b@y.example>\r\n\
             References: <a@x.example>\r\n <b@x.example>\r\nSubject: =?UTF-8?B?UmU6?= =?UTF-8?B?IGhp?=\r\n\
             Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\n\
             Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
             caf=C3=A9 =\r\nau lait\r\n--b1\r\nContent-Type: text/html\r\n\r\n<p>no</p>\r\n--b1--\r\n",
        );
        assert_eq!(
            folded.text("From").as_deref(),
            Some("José <jose@client.example>")
        );
        assert_eq!(folded.subject(), "Re: hi");
        assert_eq!(folded.recipients().len(), 2);
        assert_eq!(
            folded.answered_ids(),
            ["<b@x.example>", "<a@x.example>"],
            "the most recent reference first"
        );
        assert_eq!(folded.body, "café au lait");
        assert_eq!(topic("RE: Fwd: re:  Hello"), "hello");
    }

    #[tokio::test]
    async fn fake_mailbox_gmail_reply_joins_the_sent_thread_in_the_inbox_history() {
        let fake = FakeSocial::start().await;
        fake.signs_in(GoogleUser {
            email: "grace@example.com".into(),
        });
        let gmail = Mailbox::of(&fake, Provider::Google).await;
        let start = gmail.history_id().await;

        let mime = outreach_mime(
            "Grace <grace@example.com>",
            "bob@client.example",
            "Hello Bob",
            "<pw.1.a@example.com>",
            "Shall we talk?",
        );
        let (status, sent) = gmail.gmail_send(&mime, None).await;
        assert_eq!(status, 200, "{sent}");
        assert_eq!(sent["labelIds"], json!(["SENT"]));
        assert_eq!(
            sent["threadId"], sent["id"],
            "a new thread is named by its first message"
        );
        let after_send = gmail.history_id().await;
        assert!(after_send.parse::<u64>().unwrap() > start.parse::<u64>().unwrap());

        let inbox_since = |start: &str| {
            vec![
                ("startHistoryId", start.to_owned()),
                ("historyTypes", "messageAdded".to_owned()),
                ("labelId", "INBOX".to_owned()),
            ]
        };
        let query = inbox_since(&start);
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, history) = gmail.get("/gmail/v1/users/me/history", &query).await;
        assert_eq!(status, 200, "{history}");
        assert!(
            history.get("history").is_none(),
            "a SENT message is not in the Inbox: {history}"
        );
        assert_eq!(history["historyId"], after_send.as_str());
        let (_, everything) = gmail
            .get("/gmail/v1/users/me/history", &[("startHistoryId", &start)])
            .await;
        assert_eq!(
            everything["history"][0]["messagesAdded"][0]["message"]["labelIds"],
            json!(["SENT"])
        );

        let reply = fake.deliver(reply_to(
            "grace@example.com",
            "<pw.1.a@example.com>",
            "Re: Hello Bob",
        ));
        let (status, history) = gmail.get("/gmail/v1/users/me/history", &query).await;
        assert_eq!(status, 200, "{history}");
        let records = history["history"].as_array().expect("records");
        assert_eq!(records.len(), 1, "{history}");
        let added = &records[0]["messagesAdded"][0]["message"];
        assert_eq!(added["id"], reply.as_str());
        assert_eq!(
            added["threadId"], sent["threadId"],
            "the reply joins the thread"
        );
        assert!(
            added["labelIds"]
                .as_array()
                .unwrap()
                .contains(&json!("INBOX"))
        );
        assert_eq!(history["historyId"], gmail.history_id().await.as_str());

        let (status, message) = gmail
            .get(
                &format!("/gmail/v1/users/me/messages/{reply}"),
                &[
                    ("format", "metadata"),
                    ("metadataHeaders", "From"),
                    ("metadataHeaders", "in-reply-to"),
                ],
            )
            .await;
        assert_eq!(status, 200, "{message}");
        assert_eq!(
            message["payload"]["headers"],
            json!([{"name": "From", "value": "Bob Stone <bob@client.example>"},
                {"name": "In-Reply-To", "value": "<pw.1.a@example.com>"}])
        );
        assert_eq!(message["threadId"], sent["threadId"]);
        assert!(
            message["internalDate"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .is_ok()
        );
        let (status, missing) = gmail
            .get("/gmail/v1/users/me/messages/0123456789abcdef", &[])
            .await;
        assert_eq!(status, 404);
        assert_eq!(missing["error"]["status"], "NOT_FOUND");

        let mails = fake.sent_mail();
        assert_eq!(mails.len(), 1);
        let mail = &mails[0];
        assert_eq!(
            (mail.provider, mail.mailbox.as_str(), mail.token.as_str()),
            (Provider::Google, "grace@example.com", gmail.token.as_str())
        );
        assert_eq!(mail.subject, "Hello Bob");
        assert_eq!(mail.to, "bob@client.example");
        assert_eq!(mail.body, "Shall we talk?");
        assert_eq!(mail.message_id, "<pw.1.a@example.com>");
        assert_eq!(
            mail.list_unsubscribe.as_deref(),
            Some("<https://pipewise.example/u/1>")
        );
        assert_eq!(
            mail.list_unsubscribe_post.as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        assert_eq!(mail.provider_message_id, sent["id"].as_str().unwrap());
        assert_eq!(mail.thread_id, sent["threadId"].as_str().unwrap());
    }

    #[tokio::test]
    async fn fake_mailbox_gmail_history_pages_lists_recent_mail_and_expires() {
        let fake = FakeSocial::start().await;
        let gmail = Mailbox::of(&fake, Provider::Google).await;
        let start = gmail.history_id().await;
        fake.mailbox_page_size(Some(2));
        let delivered: Vec<String> = (0..5)
            .map(|n| {
                let age = if n == 0 { 8 * 86_400 } else { 0 };
                fake.deliver(note("ada@example.com", &format!("note {n}"), age))
            })
            .collect();

        let mut seen = Vec::new();
        let mut page_token: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut query = vec![
                ("startHistoryId", start.clone()),
                ("labelId", "INBOX".to_owned()),
            ];
            if let Some(token) = &page_token {
                query.push(("pageToken", token.clone()));
            }
            let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, page) = gmail.get("/gmail/v1/users/me/history", &query).await;
            assert_eq!(status, 200, "{page}");
            pages += 1;
            for record in page["history"].as_array().expect("records") {
                seen.push(
                    record["messagesAdded"][0]["message"]["id"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            match page["nextPageToken"].as_str() {
                Some(token) => page_token = Some(token.to_owned()),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, delivered, "every record once, oldest first");

        let (status, recent) = gmail
            .get(
                "/gmail/v1/users/me/messages",
                &[("q", "newer_than:7d"), ("labelIds", "INBOX")],
            )
            .await;
        assert_eq!(status, 200, "{recent}");
        assert_eq!(recent["resultSizeEstimate"], 4, "the 8-day-old note is out");
        assert_eq!(recent["messages"].as_array().unwrap().len(), 2);
        assert_eq!(
            recent["messages"][0]["id"],
            delivered[4].as_str(),
            "newest first"
        );
        let token = recent["nextPageToken"].as_str().expect("a second page");
        let (_, second) = gmail
            .get(
                "/gmail/v1/users/me/messages",
                &[
                    ("q", "newer_than:7d"),
                    ("labelIds", "INBOX"),
                    ("pageToken", token),
                ],
            )
            .await;
        assert_eq!(second["messages"].as_array().unwrap().len(), 2);
        let two_days_ago = (now().unix_timestamp() - 2 * 86_400).to_string();
        let (_, after) = gmail
            .get(
                "/gmail/v1/users/me/messages",
                &[
                    ("q", &format!("after:{two_days_ago}")),
                    ("maxResults", "10"),
                ],
            )
            .await;
        assert_eq!(after["resultSizeEstimate"], 4);
        let (status, _) = gmail
            .get("/gmail/v1/users/me/messages", &[("q", "is:starred")])
            .await;
        assert_eq!(
            status, 400,
            "a term the stand-in does not know is refused, not ignored"
        );

        fake.expire_gmail_history("ada@example.com");
        let (status, expired) = gmail
            .get("/gmail/v1/users/me/history", &[("startHistoryId", &start)])
            .await;
        assert_eq!(status, 404, "{expired}");
        assert_eq!(
            expired["error"]["message"],
            "Requested entity was not found."
        );
        let current = gmail.history_id().await;
        let (status, fresh) = gmail
            .get(
                "/gmail/v1/users/me/history",
                &[("startHistoryId", &current)],
            )
            .await;
        assert_eq!(status, 200, "{fresh}");
        assert!(fresh.get("history").is_none());
        let (status, invalid) = gmail
            .get("/gmail/v1/users/me/history", &[("startHistoryId", "soon")])
            .await;
        assert_eq!(
            (status, invalid["error"]["status"].as_str()),
            (400, Some("INVALID_ARGUMENT"))
        );
    }

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

    #[tokio::test]
    async fn fake_mailbox_graph_reply_joins_the_sent_conversation_in_the_delta() {
        let fake = FakeSocial::start().await;
        let graph = Mailbox::of(&fake, Provider::Microsoft).await;
        let (status, _, first) = graph.follow(&graph.delta_start(), Some(50)).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(first["value"], json!([]));
        assert!(first.get("@odata.nextLink").is_none());
        let mut delta = first["@odata.deltaLink"]
            .as_str()
            .expect("a delta link")
            .to_owned();

        let mime = outreach_mime(
            "Ada <ada@contoso.example>",
            "bob@client.example",
            "Hello Bob",
            "<pw.2.b@contoso.example>",
            "Shall we talk?",
        );
        let (status, _, body) = graph.graph_send_mime(&mime).await;
        assert_eq!(status, 202);
        assert_eq!(body, Value::Null, "no body");
        let sent = fake.sent_mail().pop().expect("recorded");
        assert_eq!(sent.provider, Provider::Microsoft);
        assert_eq!(sent.mailbox, "ada@contoso.example");
        assert_eq!(
            sent.message_id, "<pw.2.b@contoso.example>",
            "the MIME's Message-ID is kept"
        );
        assert_eq!(sent.subject, "Hello Bob");

        let (_, _, after_send) = graph.follow(&delta, None).await;
        assert_eq!(
            after_send["value"],
            json!([]),
            "Sent Items are not the Inbox"
        );
        delta = after_send["@odata.deltaLink"].as_str().unwrap().to_owned();

        let reply = fake.deliver(reply_to(
            "ada@contoso.example",
            "<pw.2.b@contoso.example>",
            "RE: Hello Bob",
        ));
        let (status, _, changes) = graph.follow(&delta, None).await;
        assert_eq!(status, 200, "{changes}");
        let message = &changes["value"][0];
        assert_eq!(message["id"], reply.as_str());
        assert_eq!(
            message["conversationId"],
            sent.thread_id.as_str(),
            "the conversation of the sent mail"
        );
        assert_eq!(
            message["from"]["emailAddress"]["address"],
            "bob@client.example"
        );
        assert_eq!(message["subject"], "RE: Hello Bob");
        assert!(
            message["internetMessageId"]
                .as_str()
                .unwrap()
                .ends_with("@client.example>")
        );
        assert!(message["receivedDateTime"].as_str().unwrap().ends_with('Z'));
        assert!(
            message.get("body").is_none(),
            "only what $select asked: {message}"
        );
        let (_, _, quiet) = graph
            .follow(changes["@odata.deltaLink"].as_str().unwrap(), None)
            .await;
        assert_eq!(quiet["value"], json!([]), "nothing new since");

        let (status, read) = graph
            .get(
                &format!("/v1.0/me/messages/{reply}"),
                &[(
                    "$select",
                    "id,conversationId,internetMessageHeaders,receivedDateTime,from",
                )],
            )
            .await;
        assert_eq!(status, 200, "{read}");
        let headers = headers_of(&read["internetMessageHeaders"]);
        assert_eq!(
            headers.get("in-reply-to").map(String::as_str),
            Some("<pw.2.b@contoso.example>")
        );
        assert_eq!(
            headers.get("auto-submitted").map(String::as_str),
            Some("no")
        );
        let (status, copy) = graph
            .get(
                &format!("/v1.0/me/messages/{}", sent.provider_message_id),
                &[("$select", "internetMessageHeaders,internetMessageId")],
            )
            .await;
        assert_eq!(status, 200, "{copy}");
        assert_eq!(copy["internetMessageId"], "<pw.2.b@contoso.example>");
        assert!(
            copy.get("internetMessageHeaders").is_none(),
            "a Sent Items copy has none"
        );
        let (status, missing) = graph.get("/v1.0/me/messages/AAMkNone=", &[]).await;
        assert_eq!(
            (status, missing["error"]["code"].as_str()),
            (404, Some("ErrorItemNotFound"))
        );
    }

    fn headers_of(list: &Value) -> HashMap<String, String> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|header| {
                (
                    header["name"].as_str().unwrap().to_ascii_lowercase(),
                    header["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn fake_mailbox_graph_delta_pages_expires_lists_and_refuses() {
        let fake = FakeSocial::start().await;
        let graph = Mailbox::of(&fake, Provider::Microsoft).await;
        fake.deliver(note("ada@contoso.example", "old", 2 * 86_400));
        for n in 0..3 {
            fake.deliver(note("ada@contoso.example", &format!("new {n}"), 0));
        }

        let (status, headers, first) = graph.follow(&graph.delta_start(), Some(3)).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(headers["preference-applied"], "odata.maxpagesize=3");
        assert_eq!(first["value"].as_array().unwrap().len(), 3);
        assert!(first.get("@odata.deltaLink").is_none(), "never both links");
        let (_, _, last) = graph
            .follow(
                first["@odata.nextLink"].as_str().expect("a next page"),
                Some(3),
            )
            .await;
        assert_eq!(last["value"].as_array().unwrap().len(), 1);
        let delta = last["@odata.deltaLink"]
            .as_str()
            .expect("the round's end")
            .to_owned();

        fake.expire_graph_delta("ada@contoso.example");
        let (status, _, gone) = graph.follow(&delta, None).await;
        assert_eq!(status, 410, "{gone}");
        assert_eq!(gone["error"]["code"], "SyncStateNotFound");
        let (status, _, again) = graph.follow(&graph.delta_start(), None).await;
        assert_eq!(
            (status, again["value"].as_array().unwrap().len()),
            (200, 4),
            "a fresh start sees all"
        );

        fake.mailbox_page_size(Some(2));
        let since = iso(now() - time::Duration::hours(1));
        let (status, listed) = graph
            .get(
                "/v1.0/me/mailFolders/inbox/messages",
                &[
                    ("$filter", &format!("receivedDateTime ge {since}")),
                    ("$select", "id,subject,receivedDateTime"),
                ],
            )
            .await;
        assert_eq!(status, 200, "{listed}");
        assert_eq!(listed["value"].as_array().unwrap().len(), 2);
        let (_, _, rest) = graph
            .follow(
                listed["@odata.nextLink"].as_str().expect("a next page"),
                None,
            )
            .await;
        assert_eq!(
            rest["value"].as_array().unwrap().len(),
            1,
            "the old one is filtered out"
        );
        assert!(rest.get("@odata.nextLink").is_none());
        let (status, refused) = graph
            .get(
                "/v1.0/me/mailFolders/inbox/messages",
                &[("$filter", "subject eq 'x'")],
            )
            .await;
        assert_eq!(status, 400, "{refused}");

        let stranger = Mailbox {
            token: "EwB.not-issued".into(),
            ..Mailbox::of(&fake, Provider::Microsoft).await
        };
        let (status, _, refused) = stranger.graph_send_mime("From: a@b.example\r\n\r\n").await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (401, Some("InvalidAuthenticationToken"))
        );
        let response = graph
            .http
            .post(format!("{}/v1.0/me/sendMail", graph.base))
            .bearer_auth(&graph.token)
            .header(header::CONTENT_TYPE, "text/plain")
            .body("not base64 at all!")
            .send()
            .await
            .unwrap();
        let (status, _, refused) = Mailbox::read(response).await;
        assert_eq!(status, 400);
        assert_eq!(
            refused["error"]["message"],
            "Invalid base64 string for MIME content."
        );
        let foreign = outreach_mime(
            "boss@contoso.example",
            "bob@client.example",
            "s",
            "<x@y.example>",
            "b",
        );
        let (status, _, refused) = graph.graph_send_mime(&foreign).await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (403, Some("ErrorSendAsDenied"))
        );

        fake.graph_send_answers(&[
            GraphSendAnswer::Throttled {
                retry_after_seconds: 7,
            },
            GraphSendAnswer::ServiceUnavailable {
                retry_after_seconds: None,
            },
            GraphSendAnswer::InvalidRecipients,
        ]);
        let mine = outreach_mime(
            "ada@contoso.example",
            "bob@client.example",
            "s",
            "<m@y.example>",
            "b",
        );
        let (status, headers, throttled) = graph.graph_send_mime(&mine).await;
        assert_eq!(status, 429, "{throttled}");
        assert_eq!(headers[header::RETRY_AFTER], "7");
        assert_eq!(graph.graph_send_mime(&mine).await.0, 503);
        let (status, _, refused) = graph.graph_send_mime(&mine).await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (400, Some("ErrorInvalidRecipients"))
        );
        assert!(fake.sent_mail().is_empty(), "nothing refused is recorded");

        let (status, refused) = graph
            .post_json(
                "/v1.0/me/sendMail",
                &json!({"message": {"subject": "nobody"}}),
            )
            .await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (400, Some("ErrorInvalidRecipients"))
        );
        let (status, accepted) = graph
            .post_json(
                "/v1.0/me/sendMail",
                &json!({"message": {"subject": "Hello", "body": {"contentType": "Text", "content": "Hi"},
                    "toRecipients": [{"emailAddress": {"address": "bob@client.example"}}]},
                    "saveToSentItems": true}),
            )
            .await;
        assert_eq!(status, 202, "{accepted}");
        let (_, sent_items) = graph
            .get("/v1.0/me/mailFolders/sentitems/messages", &[])
            .await;
        assert_eq!(sent_items["value"][0]["subject"], "Hello");
        assert_eq!(fake.sent_mail()[0].body, "Hi");
    }

    #[tokio::test]
    async fn fake_mailbox_inbound_route_delivers_a_developers_reply() {
        let fake = FakeSocial::start().await;
        let http = client();
        let response = http
            .post(format!("{}/_stand-in/inbound", fake.base_url))
            .json(
                &json!({"mailbox": "ADA@example.com", "from": "Grace <grace@client.example>",
                "subject": "Re: Hello", "in_reply_to": "<pw.9@example.com>", "body": "Sure.",
                "headers": [["Auto-Submitted", "auto-replied"]]}),
            )
            .send()
            .await
            .unwrap();
        let (status, _, created) = Mailbox::read(response).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["provider"], "google");
        let delivered = fake.delivered_mail();
        assert_eq!(delivered.len(), 1);
        assert_eq!(delivered[0].id, created["id"].as_str().unwrap());
        assert_eq!(
            delivered[0].mailbox, "ada@example.com",
            "the signed-in address"
        );

        let gmail = Mailbox::of(&fake, Provider::Google).await;
        let (_, message) = gmail
            .get(
                &format!("/gmail/v1/users/me/messages/{}", delivered[0].id),
                &[
                    ("format", "metadata"),
                    ("metadataHeaders", "Auto-Submitted"),
                ],
            )
            .await;
        assert_eq!(message["payload"]["headers"][0]["value"], "auto-replied");

        let response = http
            .post(format!("{}/_stand-in/inbound", fake.base_url))
            .json(&json!({"mailbox": "nobody@nowhere.example", "from": "x@y.example", "subject": "s"}))
            .send()
            .await
            .unwrap();
        let (status, _, refused) = Mailbox::read(response).await;
        assert_eq!(status, 400);
        assert!(refused["error"].as_str().unwrap().contains("no mailbox"));
    }
}
