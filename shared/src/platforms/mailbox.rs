//! What the mailbox APIs say of new mail: Gmail's history (`users.history.list` from a stored
//! `historyId`, then `users.messages.get` with the headers that matter) and Graph's delta query
//! on the Inbox (pages until a `@odata.deltaLink`, then `GET /me/messages/{id}` for the headers).
//! Provider-neutral shapes here; the requests and the reading of each answer are in `google.rs`
//! and `microsoft.rs`. `communications::replies` decides what a message means.

use std::collections::HashMap;

use serde_json::Value;

/// Headers read from each inbound message: who wrote it, what it answers, and whether a machine
/// wrote it.
pub const INBOUND_HEADERS: &[&str] = &[
    "From",
    "In-Reply-To",
    "References",
    "Auto-Submitted",
    "X-Autoreply",
    "X-Autorespond",
    "Precedence",
    "Content-Type",
];

/// One message that arrived in a mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundMessage {
    /// The provider's id of the message.
    pub id: String,
    /// The mailbox thread (Gmail `threadId`); Graph's conversations are not matched on.
    pub thread_id: Option<String>,
    /// Its headers by lower-case name (the first of each).
    pub headers: HashMap<String, String>,
    /// When it arrived (RFC 3339), when the provider says.
    pub received_at: Option<String>,
}

impl InboundMessage {
    /// A header's value, by any spelling of its name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The address in `From`, lower case (`Ada <ada@x.example>` → `ada@x.example`).
    pub fn from_address(&self) -> Option<String> {
        let from = self.header("From")?;
        let address = match (from.rfind('<'), from.rfind('>')) {
            (Some(open), Some(close)) if open < close => &from[open + 1..close],
            _ => from,
        };
        Some(address.trim().to_ascii_lowercase())
    }
}

/// Headers as `[{name, value}]` (Gmail's `payload.headers`, Graph's `internetMessageHeaders`).
pub fn headers_of(list: &Value) -> HashMap<String, String> {
    let mut headers = HashMap::new();
    for header in list.as_array().into_iter().flatten() {
        if let (Some(name), Some(value)) = (header["name"].as_str(), header["value"].as_str()) {
            headers
                .entry(name.to_ascii_lowercase())
                .or_insert_with(|| value.to_owned());
        }
    }
    headers
}

/// How a mailbox platform tells what is new: the reply poller reads each in its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxFeed {
    /// Gmail: `users.history.list` from a stored `historyId`.
    GmailHistory,
    /// Microsoft Graph: a delta query on the Inbox.
    GraphDelta,
}

/// One page of "what is new" in a mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMail {
    /// New messages' ids (and Gmail threads), in the provider's order.
    pub messages: Vec<(String, Option<String>)>,
    /// Where the next page is (Gmail `pageToken`, Graph `@odata.nextLink`).
    pub next_page: Option<String>,
    /// Where to start next time once every page is read (Gmail's newest `historyId`, Graph's
    /// `@odata.deltaLink`).
    pub cursor: Option<String>,
}
