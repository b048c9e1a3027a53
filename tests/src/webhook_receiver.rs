//! A webhook receiver for the tests: a local HTTP server that records every request it gets
//! (headers and body) and answers the statuses it is told to, in order (then 200).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct ReceivedWebhook {
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body, as sent.
    pub body: Bytes,
}

impl ReceivedWebhook {
    /// A header's value.
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a webhook body is JSON")
    }

    /// The event type of the body.
    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_owned()
    }
}

#[derive(Default)]
struct Recorded {
    received: Vec<ReceivedWebhook>,
    answers: VecDeque<u16>,
}

/// A running receiver.
#[derive(Clone)]
pub struct WebhookReceiver {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    state: Arc<Mutex<Recorded>>,
}

impl WebhookReceiver {
    /// Starts a receiver that answers 200.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(Recorded::default()));
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, state }
    }

    /// The next requests get these statuses, in order; then 200 again.
    pub fn answer(&self, statuses: &[u16]) {
        self.state
            .lock()
            .expect("receiver state")
            .answers
            .extend(statuses);
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<ReceivedWebhook> {
        self.state.lock().expect("receiver state").received.clone()
    }
}

async fn receive(
    State(state): State<Arc<Mutex<Recorded>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut recorded = state.lock().expect("receiver state");
    recorded.received.push(ReceivedWebhook { headers, body });
    let status = recorded.answers.pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}
