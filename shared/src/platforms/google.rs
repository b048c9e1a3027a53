//! Google (a Gmail mailbox): where its OAuth endpoints and the Gmail API live, what the connect
//! flow asks for, how its tokens are refreshed and what its token endpoint's refusals mean.
//! Sources: docs/providers.md, "Google".

use serde_json::Value;

use super::mailbox::{INBOUND_HEADERS, InboundMessage, NewMail, headers_of};
use super::tokens::{OAuthClient, PROVIDER_MISCONFIGURED, RefreshFailure};

/// Google's authorization page when `GOOGLE_AUTHORIZE_URL` is not set.
pub const DEFAULT_AUTHORIZE_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";
/// Google's token endpoint when `GOOGLE_TOKEN_URL` is not set.
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// The Gmail API's base URL when `GMAIL_API_BASE_URL` is not set.
pub const DEFAULT_GMAIL_API_BASE_URL: &str = "https://gmail.googleapis.com";

/// What the connect flow asks for: who the user is, and sending and reading their mail.
pub const SCOPES: &str = "openid email https://www.googleapis.com/auth/gmail.send https://www.googleapis.com/auth/gmail.readonly";

/// Google's further authorize parameters: a refresh token comes back only for an offline grant,
/// and again on a reconnect only when consent is asked again.
pub const AUTHORIZE_EXTRA: &[(&str, &str)] = &[("access_type", "offline"), ("prompt", "consent")];

/// Access tokens live an hour: refresh when one expires within 5 minutes.
pub const REFRESH_MARGIN_SECONDS: i64 = 5 * 60;

/// The code exchange: `POST {token_url}`, the client's credentials in the form (Google's
/// documented scheme), with the PKCE verifier.
pub fn exchange_request(
    http: &reqwest::Client,
    token_url: &str,
    client: &OAuthClient,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> reqwest::RequestBuilder {
    http.post(token_url).form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
        ("client_id", client.client_id.as_str()),
        (
            "client_secret",
            client.client_secret.as_deref().unwrap_or_default(),
        ),
    ])
}

/// The refresh request: `POST {token_url}`, `grant_type=refresh_token`. Google keeps the refresh
/// token (the answer carries none).
pub fn refresh_request(
    http: &reqwest::Client,
    token_url: &str,
    client: &OAuthClient,
    refresh_token: &str,
) -> reqwest::RequestBuilder {
    http.post(token_url).form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", client.client_id.as_str()),
        (
            "client_secret",
            client.client_secret.as_deref().unwrap_or_default(),
        ),
    ])
}

/// Who the token belongs to: `GET {gmail}/gmail/v1/users/me/profile`.
pub fn identity_request(
    http: &reqwest::Client,
    gmail: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    http.get(format!("{gmail}/gmail/v1/users/me/profile"))
        .bearer_auth(token)
}

/// Gmail's limit for a consumer account (gmail.com, googlemail.com): 500 messages a day.
pub const CONSUMER_DAILY_LIMIT: u32 = 500;
/// Google Workspace's limit: 2,000 messages a day.
pub const WORKSPACE_DAILY_LIMIT: u32 = 2_000;

/// The sends a day Google allows a mailbox: a consumer account's (told by its address's domain,
/// or when the address is unknown) or a Workspace account's.
pub fn daily_limit(address: Option<&str>) -> u32 {
    let domain = address
        .and_then(|address| address.rsplit_once('@'))
        .map(|(_, domain)| domain.to_ascii_lowercase());
    match domain.as_deref() {
        Some("gmail.com" | "googlemail.com") | None => CONSUMER_DAILY_LIMIT,
        Some(_) => WORKSPACE_DAILY_LIMIT,
    }
}

/// The send call: `POST {gmail}/gmail/v1/users/me/messages/send`, the RFC 5322 message
/// base64url-encoded in `raw`; a follow-up names the thread of the earlier message.
pub fn send_request(
    http: &reqwest::Client,
    gmail: &str,
    token: &str,
    mime: &str,
    thread_id: Option<&str>,
) -> reqwest::RequestBuilder {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mime.as_bytes());
    let mut body = serde_json::json!({ "raw": raw });
    if let Some(thread) = thread_id {
        body["threadId"] = Value::String(thread.to_owned());
    }
    http.post(format!("{gmail}/gmail/v1/users/me/messages/send"))
        .bearer_auth(token)
        .json(&body)
}

/// The message's and its thread's ids in the send's answer (`{id, threadId, labelIds}`).
pub fn sent_ids(answer: &Value) -> Option<(&str, &str)> {
    Some((answer["id"].as_str()?, answer["threadId"].as_str()?))
}

/// Whether a 403 is Gmail's rate limit rather than a refusal: its error's `reason` is
/// `rateLimitExceeded` or `userRateLimitExceeded` (Gmail's "Resolve errors" page).
pub fn is_rate_limit(answer: &Value) -> bool {
    let reasons = answer["error"]["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|error| error["reason"].as_str());
    reasons
        .chain(
            answer["error"]["details"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|detail| detail["reason"].as_str()),
        )
        .any(|reason| {
            matches!(
                reason,
                "rateLimitExceeded" | "userRateLimitExceeded" | "RATE_LIMIT_EXCEEDED"
            )
        })
}

/// What was added to the Inbox since history record `start`:
/// `GET {gmail}/gmail/v1/users/me/history?startHistoryId&historyTypes=messageAdded&labelId=INBOX`.
/// Gmail answers 404 for a `start` older than it keeps (about a week): then resync.
pub fn history_request(
    http: &reqwest::Client,
    gmail: &str,
    token: &str,
    start: &str,
    page: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut query = vec![
        ("startHistoryId", start),
        ("historyTypes", "messageAdded"),
        ("labelId", "INBOX"),
    ];
    if let Some(page) = page {
        query.push(("pageToken", page));
    }
    http.get(format!("{gmail}/gmail/v1/users/me/history"))
        .bearer_auth(token)
        .query(&query)
}

/// A history page: the added messages, the next page, and the mailbox's newest history id.
pub fn history_page(answer: &Value) -> NewMail {
    let mut messages = Vec::new();
    for record in answer["history"].as_array().into_iter().flatten() {
        for added in record["messagesAdded"].as_array().into_iter().flatten() {
            let message = &added["message"];
            if let Some(id) = message["id"].as_str() {
                messages.push((
                    id.to_owned(),
                    message["threadId"].as_str().map(str::to_owned),
                ));
            }
        }
    }
    NewMail {
        messages,
        next_page: answer["nextPageToken"].as_str().map(str::to_owned),
        cursor: text_or_number(&answer["historyId"]),
    }
}

/// The Inbox's messages of the last `days` days (a resync):
/// `GET {gmail}/gmail/v1/users/me/messages?q=newer_than:{days}d&labelIds=INBOX`.
pub fn recent_request(
    http: &reqwest::Client,
    gmail: &str,
    token: &str,
    days: u32,
    page: Option<&str>,
) -> reqwest::RequestBuilder {
    let newer = format!("newer_than:{days}d");
    let mut query = vec![("q", newer.as_str()), ("labelIds", "INBOX")];
    if let Some(page) = page {
        query.push(("pageToken", page));
    }
    http.get(format!("{gmail}/gmail/v1/users/me/messages"))
        .bearer_auth(token)
        .query(&query)
}

/// A page of the messages list: ids and threads, and the next page.
pub fn recent_page(answer: &Value) -> NewMail {
    NewMail {
        messages: answer["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|message| {
                Some((
                    message["id"].as_str()?.to_owned(),
                    message["threadId"].as_str().map(str::to_owned),
                ))
            })
            .collect(),
        next_page: answer["nextPageToken"].as_str().map(str::to_owned),
        cursor: None,
    }
}

/// One message's headers: `GET {gmail}/gmail/v1/users/me/messages/{id}?format=metadata`.
pub fn message_request(
    http: &reqwest::Client,
    gmail: &str,
    token: &str,
    id: &str,
) -> reqwest::RequestBuilder {
    let mut query = vec![("format", "metadata")];
    query.extend(
        INBOUND_HEADERS
            .iter()
            .map(|name| ("metadataHeaders", *name)),
    );
    http.get(format!("{gmail}/gmail/v1/users/me/messages/{id}"))
        .bearer_auth(token)
        .query(&query)
}

/// The message in `messages.get`'s answer.
pub fn message_of(answer: &Value) -> Option<InboundMessage> {
    let received_at = answer["internalDate"]
        .as_str()
        .and_then(|millis| millis.parse::<i64>().ok())
        .and_then(|millis| time::OffsetDateTime::from_unix_timestamp(millis / 1000).ok())
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    Some(InboundMessage {
        id: answer["id"].as_str()?.to_owned(),
        thread_id: answer["threadId"].as_str().map(str::to_owned),
        headers: headers_of(&answer["payload"]["headers"]),
        received_at,
    })
}

/// The mailbox's newest history id in the profile's answer (where watching starts).
pub fn history_id_of(profile: &Value) -> Option<String> {
    text_or_number(&profile["historyId"])
}

fn text_or_number(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The mailbox address in the profile's answer.
pub fn address_of(answer: &Value) -> Option<&str> {
    answer["emailAddress"].as_str()
}

/// What a 4xx from Google's token endpoint means: RFC 6749's `invalid_grant` is a dead grant
/// (revoked, expired, or the password changed); anything else (`invalid_client`,
/// `unauthorized_client`, a malformed request) is the deployment's.
pub fn classify_client_error(body: &Value) -> RefreshFailure {
    match body["error"].as_str() {
        Some("invalid_grant") => RefreshFailure::ReauthRequired,
        _ => RefreshFailure::Misconfigured(PROVIDER_MISCONFIGURED),
    }
}
