//! X (Twitter): where its API lives, how its OAuth 2.0 tokens are refreshed and what its token
//! endpoint's refusals mean, and what it offers agents. Sources: docs/providers.md, "X".

use serde_json::{Value, json};

use super::tokens::{OAuthClient, PROVIDER_MISCONFIGURED, RefreshFailure};

/// The API's base URL when `X_API_BASE_URL` is not set.
pub const DEFAULT_API_BASE_URL: &str = "https://api.x.com";

/// X's authorization page when `X_AUTHORIZE_URL` is not set.
pub const DEFAULT_AUTHORIZE_URL: &str = "https://x.com/i/oauth2/authorize";

/// What the connect flow asks for: who the user is, direct messages, and a refresh token.
pub const SCOPES: &str = "tweet.read users.read dm.read dm.write offline.access";

/// Access tokens live 2 hours: refresh when one expires within 5 minutes.
pub const REFRESH_MARGIN_SECONDS: i64 = 5 * 60;

/// What an agent can do through an X account.
pub const TOOLS: &[(&str, &str)] = &[("send_x_dm", "Send a direct message on X (Twitter).")];

/// The refresh request: `POST {base}/2/oauth2/token`, `grant_type=refresh_token`; a
/// confidential client authenticates with HTTP Basic (X's documented scheme). X's refresh
/// tokens are single-use and rotate.
pub fn refresh_request(
    http: &reqwest::Client,
    base: &str,
    client: &OAuthClient,
    refresh_token: &str,
) -> reqwest::RequestBuilder {
    let mut request = http.post(format!("{base}/2/oauth2/token")).form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", client.client_id.as_str()),
    ]);
    if let Some(secret) = &client.client_secret {
        request = request.basic_auth(&client.client_id, Some(secret));
    }
    request
}

/// The code exchange: `POST {base}/2/oauth2/token`, `grant_type=authorization_code`, with the
/// PKCE verifier; a confidential client authenticates with HTTP Basic, as for a refresh.
pub fn exchange_request(
    http: &reqwest::Client,
    base: &str,
    client: &OAuthClient,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> reqwest::RequestBuilder {
    let mut request = http.post(format!("{base}/2/oauth2/token")).form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
        ("client_id", client.client_id.as_str()),
    ]);
    if let Some(secret) = &client.client_secret {
        request = request.basic_auth(&client.client_id, Some(secret));
    }
    request
}

/// Who the token belongs to: `GET {base}/2/users/me`.
pub fn identity_request(
    http: &reqwest::Client,
    base: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    http.get(format!("{base}/2/users/me")).bearer_auth(token)
}

/// The user's id and username in `/2/users/me`'s answer.
pub fn identity_of(answer: &Value) -> Option<(&str, &str)> {
    Some((
        answer.pointer("/data/id")?.as_str()?,
        answer.pointer("/data/username")?.as_str()?,
    ))
}

/// What a 4xx from X's token endpoint means: only its dead-grant answer (400 `invalid_request`
/// "Value passed for the token was invalid.", or RFC 6749's `invalid_grant`) asks the user to
/// reconnect; anything else (401 `unauthorized_client` "Missing valid authorization header", a
/// malformed request) is the deployment's.
pub fn classify_client_error(status: u16, body: &Value) -> RefreshFailure {
    let oauth_error = body["error"].as_str();
    let description = body["error_description"].as_str().unwrap_or_default();
    let grant_gone = status == 400
        && (oauth_error == Some("invalid_grant")
            || (oauth_error == Some("invalid_request")
                && description.contains("Value passed for the token was invalid")));
    if grant_gone {
        RefreshFailure::ReauthRequired
    } else {
        RefreshFailure::Misconfigured(PROVIDER_MISCONFIGURED)
    }
}

/// The identity lookup of a recipient: `GET {base}/2/users/by/username/{username}`; the id is
/// at `/data/id` of the answer ([`user_id_of`]).
pub fn user_lookup(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    username: &str,
) -> reqwest::RequestBuilder {
    http.get(format!("{base}/2/users/by/username/{username}"))
        .bearer_auth(token)
}

/// The user id in a lookup's answer; `None`: X knows no such user.
pub fn user_id_of(answer: &Value) -> Option<&str> {
    answer.pointer("/data/id").and_then(Value::as_str)
}

/// The send call: a direct message to a user id,
/// `POST {base}/2/dm_conversations/with/{user_id}/messages`.
pub fn send_request(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    user_id: &str,
    text: &str,
) -> reqwest::RequestBuilder {
    http.post(format!("{base}/2/dm_conversations/with/{user_id}/messages"))
        .bearer_auth(token)
        .json(&json!({"text": text}))
}

/// Seconds until X's rate-limit window resets, from its `x-rate-limit-reset` header (Unix
/// seconds), kept within 1..=900 (SQS's longest delay); `None` without the header.
pub fn rate_limit_reset_seconds(headers: &reqwest::header::HeaderMap, now: i64) -> Option<u64> {
    headers
        .get("x-rate-limit-reset")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i64>().ok())
        // Saturating: the header is the platform's, any number at all.
        .map(|reset| reset.saturating_sub(now).clamp(1, 900) as u64)
}

/// Whom a direct message on X goes to: a username, whose user id is looked up once per warm
/// instance and account.
pub(super) struct DirectRecipient<'a> {
    pub(super) cache: &'a super::direct::XRecipientIds,
    pub(super) username: &'a str,
}

/// A direct message on X: the recipient's user id (looked up by username, then cached), then
/// the DM sent with the account's `access_token`.
pub(super) async fn send_direct_message(
    http: &reqwest::Client,
    base: &str,
    sender: super::direct::DirectSender<'_>,
    recipient: DirectRecipient<'_>,
    text: &str,
    clock: &crate::clock::Clock,
) -> Result<(), super::direct::DirectRefusal> {
    use super::direct::{DirectRefusal, read_answer};
    let Some(token) = sender
        .configuration
        .get("access_token")
        .and_then(Value::as_str)
    else {
        return Err(DirectRefusal::MissingCredentials);
    };
    let cache_key = (
        sender.user_id.clone(),
        sender.account_id.clone(),
        recipient.username.to_ascii_lowercase(),
    );
    let cached = recipient
        .cache
        .lock()
        .ok()
        .and_then(|ids| ids.get(&cache_key).cloned());
    let user_id = match cached {
        Some(id) => id,
        None => {
            let lookup = user_lookup(http, base, token, recipient.username)
                .send()
                .await;
            let answer = read_answer(lookup, false, clock.epoch_seconds()).await?;
            let id = user_id_of(&answer)
                .ok_or(DirectRefusal::NoSuchRecipient)?
                .to_owned();
            if let Ok(mut ids) = recipient.cache.lock() {
                ids.insert(cache_key, id.clone());
            }
            id
        }
    };
    let sent = send_request(http, base, token, &user_id, text).send().await;
    read_answer(sent, true, clock.epoch_seconds())
        .await
        .map(drop)
}
