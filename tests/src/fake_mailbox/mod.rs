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
//! choice of the stand-in where neither was found), is listed in the file of its code:
//! - this file: what tests hand in and read back ([`Inbound`], [`SentMail`], [`DeliveredMail`],
//!   [`GmailSendAnswer`], [`GraphSendAnswer`]), the state every mailbox is kept in, the test
//!   controls on [`FakeSocial`], and the routes;
//! - `mime.rs`: the message as written (RFC 5322, MIME), read and written;
//! - `gmail.rs`: a Gmail mailbox, Gmail's errors, and `messages.send`;
//! - `gmail_read.rs`: Gmail's history, message list and message get;
//! - `graph.rs`: a Graph mailbox, Graph's errors, and `sendMail`;
//! - `graph_read.rs`: Graph's delta, folder message list and message get;
//! - `inbound.rs`: delivering a message into either inbox, and `POST /_stand-in/inbound`.

use std::collections::{HashMap, HashSet, VecDeque};

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::fake_oauth::Provider;
use crate::fake_social::{FakeSocial, Shared};

mod gmail;
mod gmail_read;
mod graph;
mod graph_read;
mod inbound;
mod mime;
#[cfg(test)]
mod test_client;

use gmail::{GmailBox, gmail_send};
use gmail_read::{gmail_get, gmail_history, gmail_list};
use graph::{GraphBox, graph_send};
use graph_read::{graph_delta, graph_get, graph_list};
use inbound::{deliver, inbound_route};
use mime::{Written, header_in};

/// A query, as name-value pairs (names repeat: `metadataHeaders`, `labelIds`).
type Params = Vec<(String, String)>;

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
    /// 401 `authError` "Invalid Credentials": the token was refused (expired or revoked early).
    Unauthenticated,
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
