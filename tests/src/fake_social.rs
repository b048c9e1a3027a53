//! A local stand-in for the social platforms' APIs, the third parties the tests cannot reach,
//! behaving as their documentation says, limits and failures included:
//! - X API v2: user lookup, direct messages, and OAuth 2.0 refresh (`POST /2/oauth2/token`,
//!   `grant_type=refresh_token`): refresh tokens are single-use and rotate, a reused or unknown
//!   one is `invalid_request`, as X answers; once access tokens are managed
//!   ([`FakeSocial::x_tokens`]) only the current one is accepted (401 otherwise); a scripted 429
//!   carries `x-rate-limit-reset`.
//! - Instagram Graph API: conversations (`GET /{ig_id}/conversations?platform=instagram`) with
//!   their participants and messages, and messages (`POST /{ig_id}/messages`) only to the
//!   Instagram-scoped id of a person who messaged the business in the last 24 hours (anything
//!   else is refused as Instagram does, error code 10 / subcode 2534022); long-lived token refresh
//!   (`GET /refresh_access_token?grant_type=ig_refresh_token`).
//!
//! It records every message it accepts and every refresh call.
//!
//! The providers' hosted sign-in (authorize pages, the code exchange, identity endpoints) is in
//! [`crate::fake_oauth`], on the same base URL; X's code exchange shares `POST /2/oauth2/token`
//! with the refresh below. The signed-in users' mailboxes at Gmail and Microsoft Graph (send,
//! history, delta, inbound replies) are in [`crate::fake_mailbox`], on the same base URL too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Form;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::fake_oauth::{ClientAuth, OAuthState, Provider};

/// A message the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SentMessage {
    /// `x` or `instagram`.
    pub platform: &'static str,
    /// The bearer token it came with.
    pub token: String,
    /// The platform's id of the recipient.
    pub recipient: String,
    /// The text.
    pub text: String,
}

/// A refresh call the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshCall {
    /// `x` or `instagram`.
    pub platform: &'static str,
    /// The refresh token (X) or access token (Instagram) it came with.
    pub presented: String,
    /// X's `client_id` form field.
    pub client_id: Option<String>,
}

/// A person's Instagram conversation with the business.
#[derive(Debug, Clone)]
pub struct Conversation {
    /// The person's username.
    pub username: String,
    /// Their Instagram-scoped id in this conversation.
    pub igsid: String,
    /// Seconds ago the person last wrote to the business.
    pub last_message_seconds_ago: i64,
}

#[derive(Default)]
pub(crate) struct Script {
    answers: Vec<u16>,
    rate_limit_reset_in: i64,
    sent: Vec<SentMessage>,
    refreshes: Vec<RefreshCall>,
    /// When set, the X access token accepted, and the refresh token that may be used once.
    pub(crate) x_tokens: Option<(String, String)>,
    x_generation: u32,
    pub(crate) x_grant_revoked: bool,
    /// When set, the only OAuth client X's token endpoint accepts (`client_id`, and the
    /// secret it must present with HTTP Basic).
    pub(crate) x_client: Option<(String, String)>,
    /// How long X's token endpoint takes to answer.
    x_token_delay: std::time::Duration,
    conversations: Vec<Conversation>,
    /// The providers' sign-in ([`crate::fake_oauth`]).
    pub(crate) oauth: OAuthState,
    /// The signed-in users' mailboxes at Gmail and Microsoft Graph ([`crate::fake_mailbox`]).
    pub(crate) mailboxes: crate::fake_mailbox::MailboxState,
}

pub(crate) type Shared = Arc<Mutex<Script>>;

/// A running fake of both platforms on one local port.
#[derive(Clone)]
pub struct FakeSocial {
    /// Base URL, for `X_API_BASE_URL` and `INSTAGRAM_API_BASE_URL`.
    pub base_url: String,
    pub(crate) state: Shared,
}

/// The business's own Instagram id in the fake.
pub const BUSINESS_IG_ID: &str = "17841400000000000";

impl FakeSocial {
    /// A test app whose X and Instagram calls go to a new fake.
    pub async fn with_app() -> (crate::TestApp, Self) {
        use pipewise::config::vars;
        let fake = Self::start().await;
        let base = fake.base_url.clone();
        let app = crate::TestApp::spawn_with(|environment| {
            environment.insert(vars::X_API_BASE_URL.into(), base.clone());
            environment.insert(vars::INSTAGRAM_API_BASE_URL.into(), base);
        })
        .await;
        (app, fake)
    }

    /// Starts the fake on a random local port.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    /// Starts the fake on `address` (`make dev`'s stand-in: `pipewise-fake-platforms`).
    pub async fn start_on(address: &str) -> Self {
        let state = Shared::default();
        let router = axum::Router::new()
            .route("/2/users/by/username/{username}", get(x_lookup))
            .route("/2/dm_conversations/with/{user_id}/messages", post(x_send))
            .route("/2/oauth2/token", post(x_token))
            .route("/refresh_access_token", get(instagram_refresh))
            .route("/{ig_user_id}/conversations", get(instagram_conversations))
            .route("/{ig_user_id}/messages", post(instagram_send))
            .merge(crate::fake_oauth::routes())
            .merge(crate::fake_mailbox::routes())
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { base_url, state }
    }

    /// The next message posts (either platform) get these statuses, e.g. `[503]` fails once;
    /// after the script, every post is accepted.
    pub fn answer_with(&self, statuses: &[u16]) {
        self.state.lock().expect("lock").answers = statuses.to_vec();
    }

    /// A scripted 429 says the window resets this many seconds from now.
    pub fn rate_limit_resets_in(&self, seconds: i64) {
        self.state.lock().expect("lock").rate_limit_reset_in = seconds;
    }

    /// From now on X accepts only `access_token`, and `refresh_token` once (then rotates both).
    pub fn x_tokens(&self, access_token: &str, refresh_token: &str) {
        self.state.lock().expect("lock").x_tokens =
            Some((access_token.to_owned(), refresh_token.to_owned()));
    }

    /// X knows only this confidential client: any other (or none) is refused as X refuses it,
    /// 401 `unauthorized_client` "Missing valid authorization header".
    pub fn x_client(&self, client_id: &str, client_secret: &str) {
        self.state.lock().expect("lock").x_client =
            Some((client_id.to_owned(), client_secret.to_owned()));
    }

    /// X's token endpoint answers after `delay` (a refresh slower than a user's edit).
    pub fn x_token_delay(&self, delay: std::time::Duration) {
        self.state.lock().expect("lock").x_token_delay = delay;
    }

    /// The user revoked the app: every refresh is `invalid_grant`, and the tokens of X's code
    /// flow ([`crate::fake_oauth`]) are refused by `GET /2/users/me`.
    pub fn revoke_x_grant(&self) {
        let mut script = self.state.lock().expect("lock");
        script.x_grant_revoked = true;
        script.oauth.revoke(Provider::X);
    }

    /// A person who wrote to the business on Instagram.
    pub fn instagram_conversation(&self, username: &str, igsid: &str, seconds_ago: i64) {
        self.state
            .lock()
            .expect("lock")
            .conversations
            .push(Conversation {
                username: username.to_owned(),
                igsid: igsid.to_owned(),
                last_message_seconds_ago: seconds_ago,
            });
    }

    /// Messages accepted so far, in order.
    pub fn sent(&self) -> Vec<SentMessage> {
        self.state.lock().expect("lock").sent.clone()
    }

    /// Refresh calls so far, in order.
    pub fn refreshes(&self) -> Vec<RefreshCall> {
        self.state.lock().expect("lock").refreshes.clone()
    }
}

fn bearer(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim_start_matches("Bearer ")
        .to_owned()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn accept(state: &Shared, message: SentMessage) -> Response {
    let mut script = state.lock().expect("lock");
    let status = if script.answers.is_empty() {
        201
    } else {
        script.answers.remove(0)
    };
    if status < 300 {
        script.sent.push(message);
    }
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(json!({"data": {}})),
    )
        .into_response();
    if status == 429 {
        let reset = now() + script.rate_limit_reset_in.max(1);
        if let Ok(value) = HeaderValue::from_str(&reset.to_string()) {
            response.headers_mut().insert("x-rate-limit-reset", value);
        }
    }
    response
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"title": "Unauthorized", "status": 401, "detail": "Unauthorized"})),
    )
        .into_response()
}

async fn x_lookup(
    State(state): State<Shared>,
    Path(username): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some((access, _)) = &state.lock().expect("lock").x_tokens
        && *access != bearer(&headers)
    {
        return unauthorized();
    }
    if username == "nobody" {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"errors": [{"title": "Not Found Error"}]})),
        )
            .into_response();
    }
    (
        StatusCode::OK,
        Json(json!({"data": {"id": format!("id-{username}"), "username": username}})),
    )
        .into_response()
}

async fn x_send(
    State(state): State<Shared>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some((access, _)) = &state.lock().expect("lock").x_tokens
        && *access != bearer(&headers)
    {
        return unauthorized();
    }
    let text = body["text"].as_str().unwrap_or_default().to_owned();
    accept(
        &state,
        SentMessage {
            platform: "x",
            token: bearer(&headers),
            recipient: user_id,
            text,
        },
    )
}

/// `POST /2/oauth2/token` (form): a single-use refresh token buys a new pair; an authorization
/// code buys the first one ([`crate::fake_oauth`]).
async fn x_token(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let delay = state.lock().expect("lock").x_token_delay;
    tokio::time::sleep(delay).await;
    let mut guard = state.lock().expect("lock");
    let script = &mut *guard;
    let (status, body) = x_token_answer(script, &headers, &form);
    let client_id = ClientAuth::of(&headers, &form).id;
    script
        .oauth
        .record_token_call(Provider::X, &form, client_id, &(status, body.clone()));
    (status, Json(body)).into_response()
}

fn x_token_answer(
    script: &mut Script,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> (StatusCode, Value) {
    let grant_type = form
        .get("grant_type")
        .map(String::as_str)
        .unwrap_or_default();
    let presented = form.get("refresh_token").cloned().unwrap_or_default();
    if grant_type != "authorization_code" {
        script.refreshes.push(RefreshCall {
            platform: "x",
            presented: presented.clone(),
            client_id: form.get("client_id").cloned(),
        });
    }
    // A confidential client authenticates with HTTP Basic; X refuses anything else before it
    // looks at the token.
    if let Some((client_id, client_secret)) = &script.x_client {
        use base64::Engine;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{client_id}:{client_secret}"))
        );
        let presented_auth = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        if presented_auth != Some(expected.as_str()) {
            return (
                StatusCode::UNAUTHORIZED,
                json!({"error": "unauthorized_client", "error_description": "Missing valid authorization header"}),
            );
        }
    }
    let client_id = ClientAuth::of(headers, form).id.unwrap_or_default();
    if grant_type == "authorization_code" {
        return crate::fake_oauth::x_exchange_code(script, &client_id, form);
    }
    if grant_type == "refresh_token" && script.oauth.knows_refresh_token(Provider::X, &presented) {
        return crate::fake_oauth::x_refresh(script, &client_id, &presented);
    }
    if script.x_grant_revoked {
        return (
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant", "error_description": "Value passed for the token was invalid."}),
        );
    }
    let current = script.x_tokens.as_ref().map(|(_, refresh)| refresh.clone());
    if grant_type != "refresh_token" || current.as_deref() != Some(presented.as_str()) {
        return (
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "Value passed for the token was invalid."}),
        );
    }
    script.x_generation += 1;
    let generation = script.x_generation;
    let pair = (
        format!("x-access-{generation}"),
        format!("x-refresh-{generation}"),
    );
    script.x_tokens = Some(pair.clone());
    (
        StatusCode::OK,
        json!({"token_type": "bearer", "expires_in": 7200, "access_token": pair.0,
            "scope": "dm.write dm.read users.read tweet.read offline.access", "refresh_token": pair.1}),
    )
}

/// `GET /refresh_access_token?grant_type=ig_refresh_token&access_token=...`.
/// A token of a grant the person revoked gets Instagram's 190 ([`crate::fake_oauth`]).
async fn instagram_refresh(
    State(state): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let presented = query.get("access_token").cloned().unwrap_or_default();
    let mut script = state.lock().expect("lock");
    script.refreshes.push(RefreshCall {
        platform: "instagram",
        presented: presented.clone(),
        client_id: None,
    });
    let answer = match script.oauth.instagram_refresh_refusal(&presented) {
        Some(refusal) => refusal,
        None => {
            let refreshed = format!("{presented}-refreshed");
            script.oauth.instagram_refreshed(&presented, &refreshed);
            (
                StatusCode::OK,
                json!({"access_token": refreshed, "token_type": "bearer", "expires_in": 5_184_000}),
            )
        }
    };
    script
        .oauth
        .record_token_call(Provider::Instagram, &query, None, &answer);
    (answer.0, Json(answer.1)).into_response()
}

fn graph_time(seconds_ago: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(now() - seconds_ago)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+0000",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

async fn instagram_conversations(
    State(state): State<Shared>,
    Path(ig_user_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if query.get("platform").map(String::as_str) != Some("instagram") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": "(#100) platform is required", "type": "OAuthException", "code": 100}})),
        )
            .into_response();
    }
    let script = state.lock().expect("lock");
    let data: Vec<Value> = script
        .conversations
        .iter()
        .map(|c| {
            json!({
                "id": format!("conv-{}", c.igsid),
                "participants": {"data": [
                    {"username": "the_business", "id": ig_user_id},
                    {"username": c.username, "id": c.igsid},
                ]},
                "messages": {"data": [
                    {"id": "m1", "created_time": graph_time(c.last_message_seconds_ago), "from": {"username": c.username, "id": c.igsid}},
                ]},
            })
        })
        .collect();
    (StatusCode::OK, Json(json!({"data": data}))).into_response()
}

async fn instagram_send(
    State(state): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let recipient = body["recipient"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let window_open = state
        .lock()
        .expect("lock")
        .conversations
        .iter()
        .any(|c| c.igsid == recipient && c.last_message_seconds_ago < 24 * 3600);
    if !window_open {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error": {"message": "(#10) This message is sent outside of allowed window.",
                "type": "OAuthException", "code": 10, "error_subcode": 2534022}}),
            ),
        )
            .into_response();
    }
    let text = body["message"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    accept(
        &state,
        SentMessage {
            platform: "instagram",
            token: bearer(&headers),
            recipient,
            text,
        },
    )
}
