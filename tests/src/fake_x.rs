//! A local stand-in for X's API v2 (user lookup and direct messages), the one third party the
//! tests cannot reach. It records every DM and answers as told.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// How the fake answers DM posts, in order; after the script, `201`.
#[derive(Default)]
struct Script {
    answers: Vec<u16>,
    sent: Vec<(String, String, String)>,
}

/// A running fake X API.
#[derive(Clone)]
pub struct FakeX {
    /// Base URL, for `X_API_BASE_URL`.
    pub base_url: String,
    state: Arc<Mutex<Script>>,
}

impl FakeX {
    /// Starts the fake on a random local port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(Script::default()));
        let router = axum::Router::new()
            .route("/2/users/by/username/{username}", get(lookup))
            .route("/2/dm_conversations/with/{user_id}/messages", post(send_dm))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { base_url, state }
    }

    /// The next DM posts get these statuses (e.g. `[503]` fails once).
    pub fn answer_with(&self, statuses: &[u16]) {
        self.state.lock().expect("lock").answers = statuses.to_vec();
    }

    /// DMs accepted so far: `(bearer token, recipient user id, text)`.
    pub fn sent(&self) -> Vec<(String, String, String)> {
        self.state.lock().expect("lock").sent.clone()
    }
}

async fn lookup(Path(username): Path<String>) -> (StatusCode, Json<Value>) {
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

async fn send_dm(
    State(state): State<Arc<Mutex<Script>>>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut script = state.lock().expect("lock");
    let status = if script.answers.is_empty() {
        201
    } else {
        script.answers.remove(0)
    };
    if status == 201 {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim_start_matches("Bearer ")
            .to_owned();
        script.sent.push((
            token,
            user_id,
            body["text"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(json!({"data": {}})),
    )
}
