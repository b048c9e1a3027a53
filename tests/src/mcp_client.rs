//! A Model Context Protocol client over the wire format (JSON-RPC 2.0 in Streamable HTTP POSTs,
//! protocol `2025-06-18`), as an agent's MCP client speaks to `POST /api/user/mcp`. Hand-rolled
//! on purpose: the tests see every header and byte the server sends, and every answer passes
//! through [`TestApp::send`], so the plaintext audit reads it.

use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::Method;
use serde_json::{Value, json};

use crate::{TestApp, TestResponse};

/// The protocol version the contract names.
pub const PROTOCOL_VERSION: &str = "2025-06-18";
/// The endpoint.
pub const MCP_PATH: &str = "/api/user/mcp";

/// One user's MCP client.
pub struct McpClient<'a> {
    app: &'a TestApp,
    token: String,
    next_id: AtomicU64,
}

impl<'a> McpClient<'a> {
    /// A client for `user` with a development token.
    pub fn new(app: &'a TestApp, user: &str) -> Self {
        Self {
            app,
            token: app.token(user),
            next_id: AtomicU64::new(1),
        }
    }

    /// POSTs one JSON-RPC message with the headers a Streamable HTTP client sends.
    pub async fn post(&self, message: &Value) -> TestResponse {
        self.app
            .send(
                self.app
                    .request(Method::POST, MCP_PATH)
                    .bearer_auth(&self.token)
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", PROTOCOL_VERSION)
                    .json(message),
            )
            .await
    }

    /// A request's whole JSON-RPC response (`result` or `error`), asserting the transport's
    /// side: 200, JSON, the request's id.
    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let answer = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        answer.assert_status(200);
        let content_type = answer
            .headers
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "{method}: {content_type}"
        );
        assert_eq!(answer.body["jsonrpc"], "2.0", "{}", answer.text);
        assert_eq!(answer.body["id"], id, "{}", answer.text);
        answer.body
    }

    /// `initialize`, then the `initialized` notification; the server's `InitializeResult`.
    pub async fn initialize(&self) -> Value {
        let answer = self
            .rpc(
                "initialize",
                json!({"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                    "clientInfo": {"name": "pipewise-tests", "version": "1.0"}}),
            )
            .await;
        let notified = self
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        notified.assert_status(202);
        answer["result"].clone()
    }

    /// `tools/list`: the tools offered.
    pub async fn tools(&self) -> Vec<Value> {
        let answer = self.rpc("tools/list", json!({})).await;
        answer["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("tools/list: {answer}"))
            .clone()
    }

    /// The names of the tools offered.
    pub async fn tool_names(&self) -> Vec<String> {
        self.tools()
            .await
            .iter()
            .map(|tool| tool["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// `tools/call`: the whole JSON-RPC response.
    pub async fn call_raw(&self, name: &str, arguments: Value) -> Value {
        self.rpc("tools/call", json!({"name": name, "arguments": arguments}))
            .await
    }

    /// `tools/call` that must succeed: its `structuredContent`.
    #[track_caller]
    pub fn succeeded(answer: &Value) -> Value {
        let result = &answer["result"];
        assert_eq!(result["isError"], false, "{answer}");
        result["structuredContent"].clone()
    }

    /// `tools/call` of a tool that must succeed: its `structuredContent`.
    pub async fn call(&self, name: &str, arguments: Value) -> Value {
        let answer = self.call_raw(name, arguments).await;
        Self::succeeded(&answer)
    }

    /// `tools/call` of a tool that must refuse: the API error it carries (`{code, message, …}`).
    pub async fn refused(&self, name: &str, arguments: Value) -> Value {
        let answer = self.call_raw(name, arguments).await;
        let result = &answer["result"];
        assert_eq!(result["isError"], true, "{answer}");
        result["structuredContent"]["error"].clone()
    }
}
