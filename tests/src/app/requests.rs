//! HTTP requests to the served app as a signed-in user: the development tokens, the request
//! builder, sending and reading the answer (through the plaintext audit), and `TestResponse`'s
//! assertions.

use pipewise_local::dev_auth::dev_token;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::{TestApp, plaintext_audit};

/// An answer: status, headers and the body as JSON (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct TestResponse {
    /// Status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body parsed as JSON.
    pub body: Value,
    /// Raw body.
    pub text: String,
}

impl TestResponse {
    /// The error code of an error body.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// Asserts the status, printing the body when it differs.
    #[track_caller]
    pub fn assert_status(&self, expected: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            expected,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// Asserts an error answer in the contract's shape with this status and code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> &Self {
        self.assert_status(status);
        let error = &self.body["error"];
        assert_eq!(error["code"], code, "body: {}", self.text);
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "body: {}",
            self.text
        );
        assert!(
            error["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "body: {}",
            self.text
        );
        self
    }
}

impl TestApp {
    /// A development token for `sub`.
    pub fn token(&self, sub: &str) -> String {
        dev_token(sub, None, 3600)
    }

    /// A development token for `sub` with a scope.
    pub fn token_with_scope(&self, sub: &str, scope: &str) -> String {
        dev_token(sub, Some(scope), 3600)
    }

    /// A request builder for `path` on the app.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{}", self.address, path))
    }

    /// Sends a request and reads the answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> TestResponse {
        let request = request.build().expect("a well-formed request");
        let path = request.url().path().to_owned();
        if let Some(body) = request.body().and_then(reqwest::Body::as_bytes) {
            plaintext_audit::record_request(&path, body);
        }
        let response = self
            .client
            .execute(request)
            .await
            .expect("request reaches the app");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("read body");
        plaintext_audit::record_response(&path, &text);
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        TestResponse {
            status,
            headers,
            body,
            text,
        }
    }

    /// `GET path` as `user`.
    pub async fn get(&self, path: &str, user: &str) -> TestResponse {
        self.send(
            self.request(Method::GET, path)
                .bearer_auth(self.token(user)),
        )
        .await
    }

    /// `DELETE path` as `user`.
    pub async fn delete(&self, path: &str, user: &str) -> TestResponse {
        self.send(
            self.request(Method::DELETE, path)
                .bearer_auth(self.token(user)),
        )
        .await
    }

    /// `POST path` with a JSON body as `user`.
    pub async fn post(&self, path: &str, user: &str, body: &Value) -> TestResponse {
        self.send(
            self.request(Method::POST, path)
                .bearer_auth(self.token(user))
                .json(body),
        )
        .await
    }

    /// `PATCH path` with a JSON body as `user`.
    pub async fn patch(&self, path: &str, user: &str, body: &Value) -> TestResponse {
        self.send(
            self.request(Method::PATCH, path)
                .bearer_auth(self.token(user))
                .json(body),
        )
        .await
    }

    /// `GET .../accounts/{account_id}/secrets` as `user` with the development secrets scope.
    pub async fn reveal_secrets(&self, user: &str, account_id: &str) -> TestResponse {
        self.send(
            self.request(
                Method::GET,
                &format!("/api/user/integrations/accounts/{account_id}/secrets"),
            )
            .bearer_auth(self.token_with_scope(user, "integrations:secrets:read")),
        )
        .await
    }
}
