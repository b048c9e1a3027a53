//! Microsoft (an Outlook / Microsoft 365 mailbox) through the identity platform v2.0 and
//! Microsoft Graph: what the connect flow asks for, how its tokens are refreshed (refresh tokens
//! rotate) and what its token endpoint's refusals mean. Sources: docs/providers.md, "Microsoft".

use serde_json::Value;

use super::mailbox::{InboundMessage, NewMail, headers_of};
use super::tokens::{OAuthClient, PROVIDER_MISCONFIGURED, RefreshFailure};

/// The identity platform's base when `MICROSOFT_LOGIN_BASE_URL` is not set (`/authorize` and
/// `/token` under it); `common` lets work, school and personal accounts sign in.
pub const DEFAULT_LOGIN_BASE_URL: &str = "https://login.microsoftonline.com/common/oauth2/v2.0";
/// Microsoft Graph's base URL when `MICROSOFT_GRAPH_BASE_URL` is not set.
pub const DEFAULT_GRAPH_BASE_URL: &str = "https://graph.microsoft.com";

/// What the connect flow asks for: a refresh token, who the user is, sending and reading mail.
pub const SCOPES: &str = "offline_access User.Read Mail.Send Mail.Read";

/// Access tokens live about an hour: refresh when one expires within 5 minutes.
pub const REFRESH_MARGIN_SECONDS: i64 = 5 * 60;

/// The code exchange: `POST {login}/token`, the client's credentials in the form, with the
/// PKCE verifier and the scopes again (the identity platform asks for them on the exchange).
pub fn exchange_request(
    http: &reqwest::Client,
    login: &str,
    client: &OAuthClient,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> reqwest::RequestBuilder {
    http.post(format!("{login}/token")).form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
        ("scope", SCOPES),
        ("client_id", client.client_id.as_str()),
        (
            "client_secret",
            client.client_secret.as_deref().unwrap_or_default(),
        ),
    ])
}

/// The refresh request: `POST {login}/token`, `grant_type=refresh_token`; the answer carries a
/// new refresh token, which replaces the old one.
pub fn refresh_request(
    http: &reqwest::Client,
    login: &str,
    client: &OAuthClient,
    refresh_token: &str,
) -> reqwest::RequestBuilder {
    http.post(format!("{login}/token")).form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("scope", SCOPES),
        ("client_id", client.client_id.as_str()),
        (
            "client_secret",
            client.client_secret.as_deref().unwrap_or_default(),
        ),
    ])
}

/// Who the token belongs to: `GET {graph}/v1.0/me`.
pub fn identity_request(
    http: &reqwest::Client,
    graph: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    http.get(format!("{graph}/v1.0/me")).bearer_auth(token)
}

/// Microsoft 365's limit: 10,000 recipients a day.
pub const DAILY_LIMIT: u32 = 10_000;

/// The send call: `POST {graph}/v1.0/me/sendMail` with the RFC 5322 message itself, base64 in a
/// `text/plain` body (Graph's MIME form); Graph answers 202 and no id, and keeps the message in
/// Sent Items.
pub fn send_mime_request(
    http: &reqwest::Client,
    graph: &str,
    token: &str,
    mime: &str,
) -> reqwest::RequestBuilder {
    use base64::Engine;
    http.post(format!("{graph}/v1.0/me/sendMail"))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "text/plain")
        .body(base64::engine::general_purpose::STANDARD.encode(mime.as_bytes()))
}

/// The first page of a delta query on the Inbox (every message in it, then `@odata.deltaLink`).
pub fn delta_start(graph: &str) -> String {
    format!(
        "{graph}/v1.0/me/mailFolders/inbox/messages/delta?$select=id,conversationId,internetMessageId,from,receivedDateTime"
    )
}

/// A page of a delta query: the start, a `@odata.nextLink` or a stored `@odata.deltaLink`.
pub fn delta_request(http: &reqwest::Client, link: &str, token: &str) -> reqwest::RequestBuilder {
    http.get(link)
        .bearer_auth(token)
        .header("Prefer", "odata.maxpagesize=50")
}

/// A delta page: the messages (deletions, `@removed`, left out), and the next page or the link
/// to start from next time.
pub fn delta_page(answer: &Value) -> NewMail {
    NewMail {
        messages: answer["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|message| message.get("@removed").is_none())
            .filter_map(|message| Some((message["id"].as_str()?.to_owned(), None)))
            .collect(),
        next_page: answer["@odata.nextLink"].as_str().map(str::to_owned),
        cursor: answer["@odata.deltaLink"].as_str().map(str::to_owned),
    }
}

/// Whether a delta query's refusal means its state is gone (Graph's 410 Gone, or an error
/// code `syncStateNotFound` / `resyncRequired`): start over.
pub fn delta_expired(status: u16, answer: &Value) -> bool {
    let code = answer["error"]["code"].as_str().unwrap_or_default();
    status == 410
        || code.eq_ignore_ascii_case("syncStateNotFound")
        || code.eq_ignore_ascii_case("resyncRequired")
        || code.eq_ignore_ascii_case("SyncStateInvalid")
}

/// One message's headers: `GET {graph}/v1.0/me/messages/{id}?$select=internetMessageHeaders,...`.
pub fn message_request(
    http: &reqwest::Client,
    graph: &str,
    token: &str,
    id: &str,
) -> reqwest::RequestBuilder {
    http.get(format!("{graph}/v1.0/me/messages/{id}"))
        .bearer_auth(token)
        .query(&[(
            "$select",
            "id,conversationId,internetMessageHeaders,receivedDateTime,from",
        )])
}

/// The message in the answer; `From` from the message's own field when the headers lack it.
pub fn message_of(answer: &Value) -> Option<InboundMessage> {
    let mut headers = headers_of(&answer["internetMessageHeaders"]);
    if let Some(from) = answer["from"]["emailAddress"]["address"].as_str() {
        headers
            .entry("from".into())
            .or_insert_with(|| from.to_owned());
    }
    Some(InboundMessage {
        id: answer["id"].as_str()?.to_owned(),
        thread_id: None,
        headers,
        received_at: answer["receivedDateTime"].as_str().map(str::to_owned),
    })
}

/// The user's id and mailbox address in `/me`'s answer: `mail`, or the sign-in name
/// (`userPrincipalName`) when an account has no `mail` set.
pub fn identity_of(answer: &Value) -> Option<(&str, &str)> {
    let id = answer["id"].as_str()?;
    let address = answer["mail"]
        .as_str()
        .or_else(|| answer["userPrincipalName"].as_str())?;
    Some((id, address))
}

/// What a 4xx from the token endpoint means: `invalid_grant` (RFC 6749; the identity platform's
/// answer for a revoked, expired or reused grant) asks the user to
/// reconnect; `invalid_client`, `unauthorized_client` and the rest are the deployment's.
pub fn classify_client_error(body: &Value) -> RefreshFailure {
    match body["error"].as_str() {
        Some("invalid_grant") => RefreshFailure::ReauthRequired,
        _ => RefreshFailure::Misconfigured(PROVIDER_MISCONFIGURED),
    }
}
