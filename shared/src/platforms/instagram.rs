//! Instagram (Instagram API with Instagram Login): where its API lives, how its long-lived
//! tokens are refreshed and what the refresh's refusals mean, and what it offers agents.
//! Sources: docs/providers.md, "Instagram".

use serde_json::{Value, json};

use super::tokens::{OAuthClient, PROVIDER_MISCONFIGURED, RefreshFailure};

/// The Graph API's base URL when `INSTAGRAM_API_BASE_URL` is not set.
pub const DEFAULT_API_BASE_URL: &str = "https://graph.instagram.com/v21.0";

/// Instagram's authorization page when `INSTAGRAM_AUTHORIZE_URL` is not set.
pub const DEFAULT_AUTHORIZE_URL: &str = "https://www.instagram.com/oauth/authorize";
/// The base of Instagram's code exchange when `INSTAGRAM_OAUTH_BASE_URL` is not set.
pub const DEFAULT_OAUTH_BASE_URL: &str = "https://api.instagram.com";

/// What the connect flow asks for: the professional account's profile and its messages.
pub const SCOPES: &str = "instagram_business_basic instagram_business_manage_messages";

/// Long-lived tokens live 60 days: refresh when one expires within 7 days.
pub const REFRESH_MARGIN_SECONDS: i64 = 7 * 24 * 3600;

/// What an agent can do through an Instagram account.
pub const TOOLS: &[(&str, &str)] = &[(
    "send_instagram_reply",
    "Reply on Instagram to a person who messaged the business in the last 24 hours (Instagram allows no cold messages; others fail with instagram_window_closed).",
)];

/// The refresh request: `GET {base}/refresh_access_token?grant_type=ig_refresh_token` with the
/// long-lived token itself (no client credentials; the token must be at least 24 h old).
pub fn refresh_request(
    http: &reqwest::Client,
    base: &str,
    access_token: &str,
) -> reqwest::RequestBuilder {
    http.get(format!("{base}/refresh_access_token")).query(&[
        ("grant_type", "ig_refresh_token"),
        ("access_token", access_token),
    ])
}

/// The code exchange: `POST {oauth_base}/oauth/access_token`, the app's credentials in the form
/// (Instagram takes no PKCE); the answer is a short-lived token (an hour), exchanged at once for
/// a long-lived one ([`long_lived_request`]).
pub fn exchange_request(
    http: &reqwest::Client,
    oauth_base: &str,
    client: &OAuthClient,
    code: &str,
    redirect_uri: &str,
) -> reqwest::RequestBuilder {
    http.post(format!("{oauth_base}/oauth/access_token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", client.client_id.as_str()),
            (
                "client_secret",
                client.client_secret.as_deref().unwrap_or_default(),
            ),
        ])
}

/// The short-lived token in the exchange's answer: Meta documents it both flat
/// (`{access_token, user_id, permissions}`) and wrapped in `data[0]`; either is read.
pub fn short_lived_token_of(answer: &Value) -> Option<&str> {
    answer["access_token"]
        .as_str()
        .or_else(|| answer.pointer("/data/0/access_token")?.as_str())
}

/// The exchange of a short-lived token for a long-lived one (60 days):
/// `GET {base}/access_token?grant_type=ig_exchange_token`, with the app secret.
pub fn long_lived_request(
    http: &reqwest::Client,
    base: &str,
    client: &OAuthClient,
    short_lived: &str,
) -> reqwest::RequestBuilder {
    http.get(format!("{base}/access_token")).query(&[
        ("grant_type", "ig_exchange_token"),
        (
            "client_secret",
            client.client_secret.as_deref().unwrap_or_default(),
        ),
        ("access_token", short_lived),
    ])
}

/// Who the token belongs to: `GET {base}/me?fields=user_id,username`.
pub fn identity_request(
    http: &reqwest::Client,
    base: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    // The token as a query parameter, as Instagram's reference shows it.
    http.get(format!("{base}/me"))
        .query(&[("fields", "user_id,username"), ("access_token", token)])
}

/// The professional account's id (the one messages are sent as) and username in `/me`'s answer.
pub fn identity_of(answer: &Value) -> Option<(String, &str)> {
    let id = match &answer["user_id"] {
        Value::String(id) => id.clone(),
        Value::Number(id) => id.to_string(),
        _ => answer["id"].as_str()?.to_owned(),
    };
    Some((id, answer["username"].as_str()?))
}

/// What a 4xx from the refresh means: an OAuthException with code 190 (any subcode) is a dead
/// grant; the Graph API's throttling and temporary codes (1, 2, 4, 17, 341) are transient;
/// anything else is the deployment's.
pub fn classify_client_error(body: &Value) -> RefreshFailure {
    match body["error"]["code"].as_i64() {
        Some(190) => RefreshFailure::ReauthRequired,
        Some(1 | 2 | 4 | 17 | 341) => RefreshFailure::Transient("token_endpoint_throttled"),
        _ => RefreshFailure::Misconfigured(PROVIDER_MISCONFIGURED),
    }
}

/// How long after a person's last message a business may answer on Instagram.
pub const WINDOW_SECONDS: i64 = 24 * 3600;

/// Pages of conversations read looking for the person.
pub const CONVERSATION_PAGES: usize = 5;

/// The first page of the business's Instagram conversations, with each one's participants and
/// messages (who, when); later pages come from the answer's `/paging/next`.
pub fn conversations_url(base: &str, business_id: &str) -> String {
    format!(
        "{base}/{business_id}/conversations?platform=instagram&fields=participants,messages{{from,created_time}}"
    )
}

/// The next page of conversations named by an answer.
pub fn next_page(answer: &Value) -> Option<String> {
    answer
        .pointer("/paging/next")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The send call: a message to the Instagram-scoped id of an open conversation,
/// `POST {base}/{business_id}/messages`.
pub fn send_request(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    business_id: &str,
    recipient: &str,
    text: &str,
) -> reqwest::RequestBuilder {
    http.post(format!("{base}/{business_id}/messages"))
        .bearer_auth(token)
        .json(&json!({"recipient": {"id": recipient}, "message": {"text": text}}))
}

/// In one page of conversations: the Instagram-scoped id of `username` when that person's last
/// message to the business is inside the messaging window at `now` (epoch seconds).
pub fn open_conversation(
    page: &Value,
    business_id: &str,
    username: &str,
    now: i64,
) -> Option<String> {
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
        // Saturating: a time in the platform's answer is not ours to trust not to overflow.
        (now.saturating_sub(last_from_person) < WINDOW_SECONDS).then(|| person_id.to_owned())
    })
}

/// A direct message on Instagram, which allows no cold messages: a business may message a
/// person only inside the 24-hour window the person opened by messaging it, and only by the
/// Instagram-scoped id of that conversation. So the conversation with `username` is looked up
/// ([`CONVERSATION_PAGES`] pages at most), its last message from the person must be under 24
/// hours old, and the message goes to that id, from the account's `ig_user_id` with its
/// `access_token`.
pub(super) async fn send_direct_message(
    http: &reqwest::Client,
    base: &str,
    configuration: &serde_json::Map<String, Value>,
    username: &str,
    text: &str,
    clock: &crate::clock::Clock,
) -> Result<(), super::direct::DirectRefusal> {
    use super::direct::{DirectRefusal, read_answer};
    let (Some(token), Some(ig_user_id)) = (
        configuration.get("access_token").and_then(Value::as_str),
        configuration.get("ig_user_id").and_then(Value::as_str),
    ) else {
        return Err(DirectRefusal::MissingCredentials);
    };
    let mut next = Some(conversations_url(base, ig_user_id));
    let mut recipient = None;
    for _ in 0..CONVERSATION_PAGES {
        let Some(url) = next.take() else { break };
        let page = http.get(&url).bearer_auth(token).send().await;
        let body = read_answer(page, false, clock.epoch_seconds()).await?;
        if let Some(found) = open_conversation(&body, ig_user_id, username, clock.epoch_seconds()) {
            recipient = Some(found);
            break;
        }
        next = next_page(&body);
    }
    let recipient = recipient.ok_or(DirectRefusal::WindowClosed)?;
    let sent = send_request(http, base, token, ig_user_id, &recipient, text)
        .send()
        .await;
    read_answer(sent, true, clock.epoch_seconds())
        .await
        .map(drop)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn page(last_message: &str) -> Value {
        json!({"data": [{
            "participants": {"data": [
                {"id": "17841400000000001", "username": "ada.studio"},
                {"id": "ig-scoped-grace", "username": "Grace.Hopper"},
            ]},
            "messages": {"data": [
                {"from": {"id": "ig-scoped-grace"}, "created_time": last_message},
            ]},
        }]})
    }

    #[test]
    fn the_window_is_counted_from_the_clock_it_is_given() {
        // 2026-11-26T01:00:00Z
        let written = "2026-11-26T01:00:00+0000";
        let at = 1_795_654_800;
        let open =
            |now| open_conversation(&page(written), "17841400000000001", "grace.hopper", now);
        assert_eq!(open(at + 23 * 3_600).as_deref(), Some("ig-scoped-grace"));
        assert_eq!(open(at + 25 * 3_600), None, "closed after 24 hours");
        assert_eq!(
            open(i64::MIN),
            Some("ig-scoped-grace".into()),
            "no overflow"
        );
    }
}
