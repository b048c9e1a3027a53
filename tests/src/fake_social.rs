//! A local stand-in for the social platforms' APIs (X API v2: user lookup and direct messages;
//! Instagram Graph API: business discovery and messages), the third parties the tests cannot
//! reach. It records every message it accepts and answers as told.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};

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

#[derive(Default)]
struct Script {
    answers: Vec<u16>,
    sent: Vec<SentMessage>,
}

type Shared = Arc<Mutex<Script>>;

/// A running fake of both platforms on one local port.
#[derive(Clone)]
pub struct FakeSocial {
    /// Base URL, for `X_API_BASE_URL` and `INSTAGRAM_API_BASE_URL`.
    pub base_url: String,
    state: Shared,
}

impl FakeSocial {
    /// Starts the fake on a random local port.
    pub async fn start() -> Self {
        let state = Shared::default();
        let router = axum::Router::new()
            .route("/2/users/by/username/{username}", get(x_lookup))
            .route("/2/dm_conversations/with/{user_id}/messages", post(x_send))
            .route("/{ig_user_id}", get(instagram_discovery))
            .route("/{ig_user_id}/messages", post(instagram_send))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { base_url, state }
    }

    /// The next message posts (either platform) get these statuses, e.g. `[503]` fails once;
    /// after the script, every post is accepted.
    pub fn answer_with(&self, statuses: &[u16]) {
        self.state.lock().expect("lock").answers = statuses.to_vec();
    }

    /// Messages accepted so far, in order.
    pub fn sent(&self) -> Vec<SentMessage> {
        self.state.lock().expect("lock").sent.clone()
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

fn accept(state: &Shared, message: SentMessage) -> (StatusCode, Json<Value>) {
    let mut script = state.lock().expect("lock");
    let status = if script.answers.is_empty() {
        201
    } else {
        script.answers.remove(0)
    };
    if status < 300 {
        script.sent.push(message);
    }
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(json!({"data": {}})),
    )
}

async fn x_lookup(Path(username): Path<String>) -> (StatusCode, Json<Value>) {
    if username == "nobody" {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"errors": [{"title": "Not Found Error"}]})),
        );
    }
    (
        StatusCode::OK,
        Json(json!({"data": {"id": format!("id-{username}"), "username": username}})),
    )
}

async fn x_send(
    State(state): State<Shared>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
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

/// `GET /{ig_user_id}?fields=business_discovery.username(NAME){id}`.
async fn instagram_discovery(
    Query(query): Query<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let fields = query.get("fields").cloned().unwrap_or_default();
    let username = fields
        .strip_prefix("business_discovery.username(")
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_default();
    if username.is_empty() || username == "nobody" {
        return (StatusCode::OK, Json(json!({"id": "17841400000000000"})));
    }
    (
        StatusCode::OK,
        Json(
            json!({"business_discovery": {"id": format!("ig-{username}")}, "id": "17841400000000000"}),
        ),
    )
}

async fn instagram_send(
    State(state): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let recipient = body["recipient"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
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
