//! The `mcp` Lambda function: the Model Context Protocol server agents use to act for a user
//! (`POST /api/user/mcp`), over the official SDK's Streamable HTTP transport, stateless with
//! JSON answers so any Lambda instance serves any request. The tools and their calls are
//! [`pipewise::agents`]'; this crate only speaks the protocol.
//!
//! Every route is declared once, here, with its OpenAPI description.

mod server;

use std::sync::Arc;

use aws_config::SdkConfig;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pipewise::agents::Agents;
use pipewise::api::{FunctionState, HttpFunction, MAX_BODY_BYTES};
use pipewise::auth::{AuthConfig, AuthUser};
use pipewise::config::{ConfigError, ConfigSource, vars};
use pipewise::error::{Error, ErrorBody, ErrorDetail};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde::Serialize;
use tower::ServiceExt;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use server::AgentServer;

/// The MCP endpoint's path.
pub const MCP_PATH: &str = "/api/user/mcp";
/// Where the endpoint's protected-resource metadata is (RFC 9728 §3.1: the well-known prefix
/// inserted before the resource's path).
pub const RESOURCE_METADATA_PATH: &str = "/.well-known/oauth-protected-resource/api/user/mcp";

/// What the MCP handlers share: the verifier and [`McpService`].
pub type McpState = FunctionState<McpService>;

/// The protocol transport over the agents' tools, and what a client needs to find where to sign
/// in; built once per cold start.
#[derive(Clone)]
pub struct McpService {
    transport: StreamableHttpService<AgentServer, NeverSessionManager>,
    metadata: Arc<ProtectedResourceMetadata>,
    challenge: HeaderValue,
}

impl McpService {
    /// The transport over `agents`; `public_base` is the API's public base URL and `issuers`
    /// the accepted token issuers, for the metadata document.
    pub fn new(agents: Agents, public_base: &str, issuers: Vec<String>) -> Self {
        let server = AgentServer::new(agents);
        // Stateless with JSON answers: no session to pin a client to one instance. Host and
        // Origin checks guard servers on a developer's machine against DNS rebinding; this one
        // is reached through API Gateway's own host name and takes no ambient credential (a
        // bearer token on every request, CORS for browsers), so they are off.
        let config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_sse_keep_alive(None)
            .with_max_request_body_bytes(MAX_BODY_BYTES)
            .disable_allowed_hosts()
            .disable_allowed_origins();
        let transport = StreamableHttpService::new(
            move || Ok(server.clone()),
            Arc::new(NeverSessionManager::default()),
            config,
        );
        let base = public_base.trim_end_matches('/');
        let metadata_url = format!("{base}{RESOURCE_METADATA_PATH}");
        let challenge =
            HeaderValue::from_str(&format!("Bearer resource_metadata=\"{metadata_url}\""))
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
        Self {
            transport,
            metadata: Arc::new(ProtectedResourceMetadata {
                resource: format!("{base}{MCP_PATH}"),
                authorization_servers: issuers,
                bearer_methods_supported: vec!["header"],
                scopes_supported: Vec::new(),
                resource_name: "PipeWise User API (MCP)",
            }),
            challenge,
        }
    }
}

/// The MCP function: its service and its routes; the state, router, OpenAPI document and Lambda
/// entry point are [`HttpFunction`]'s.
pub struct Mcp;

impl HttpFunction for Mcp {
    type Service = McpService;

    fn service(source: &ConfigSource<'_>, sdk: &SdkConfig) -> Result<McpService, ConfigError> {
        let issuers = AuthConfig::from_source(source)?
            .issuers
            .into_iter()
            .map(|rules| rules.issuer)
            .collect();
        Ok(McpService::new(
            Agents::from_config(source, sdk)?,
            &source
                .optional(vars::PUBLIC_API_BASE_URL)
                .unwrap_or_default(),
            issuers,
        ))
    }

    fn routes() -> OpenApiRouter<McpState> {
        OpenApiRouter::new()
            .routes(routes!(mcp, mcp_stream))
            .routes(routes!(protected_resource_metadata))
    }
}

/// One JSON-RPC message of the Model Context Protocol (`2025-06-18`, Streamable HTTP): a request
/// is answered with its JSON-RPC response (`application/json`), a notification with 202. The
/// bearer token is the same as every route's; without a valid one the 401's `WWW-Authenticate`
/// names the protected-resource metadata (RFC 9728).
#[utoipa::path(post, path = "/api/user/mcp", tag = "agents",
    request_body(content = Object, content_type = "application/json",
        description = "A JSON-RPC 2.0 message: `initialize`, `tools/list`, `tools/call`, `ping`, or a notification"),
    params(("MCP-Protocol-Version" = Option<String>, Header, description = "The negotiated protocol version, after `initialize`")),
    responses(
        (status = 200, description = "the JSON-RPC response", content_type = "application/json"),
        (status = 202, description = "a notification was accepted"),
        (status = 400, description = "not a JSON-RPC message, or an unsupported protocol version"),
        (status = 401, description = "no valid bearer token; `WWW-Authenticate: Bearer resource_metadata=…`", body = ErrorBody),
        (status = 406, description = "the `Accept` header admits neither JSON nor an event stream"),
        (status = 413, description = "over 64 KB"),
        (status = 415, description = "not `application/json`"),
        (status = 503, body = ErrorBody),
    ))]
async fn mcp(
    State(state): State<McpState>,
    user: Result<AuthUser, Error>,
    mut request: Request,
) -> Response {
    let user = match user {
        Ok(user) => user,
        Err(error) => return refused(error, &state.service),
    };
    request.extensions_mut().insert(user.user_id);
    match state.service.transport.clone().oneshot(request).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(never) => match never {},
    }
}

/// The Streamable HTTP server-to-client stream: this server is stateless and sends nothing
/// unasked, so there is none (405, as the transport allows).
#[utoipa::path(get, path = "/api/user/mcp", tag = "agents",
    responses((status = 405, description = "`event_stream_not_offered`: no server-to-client stream; `Allow: POST`", body = ErrorBody)))]
async fn mcp_stream() -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: "event_stream_not_offered".into(),
            message: "This MCP server is stateless and sends nothing unasked: POST each message."
                .into(),
            request_id: pipewise::api::current_request_id(),
            details: Vec::new(),
            existing_id: None,
        },
    };
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, HeaderValue::from_static("POST"))],
        Json(body),
    )
        .into_response()
}

/// The MCP endpoint's protected-resource metadata (RFC 9728): which issuers' tokens it accepts,
/// so an MCP client can find where its user signs in. Public.
#[utoipa::path(get, path = "/.well-known/oauth-protected-resource/api/user/mcp", tag = "agents",
    security(()),
    responses((status = 200, body = ProtectedResourceMetadata)))]
async fn protected_resource_metadata(State(state): State<McpState>) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=3600")],
        Json(state.service.metadata.as_ref().clone()),
    )
        .into_response()
}

/// The 401 of the MCP endpoint points at the metadata; other refusals (503 while an issuer's
/// keys cannot be fetched) are the API's usual answers.
fn refused(error: Error, service: &McpService) -> Response {
    let unauthorized = error.status() == StatusCode::UNAUTHORIZED;
    let mut response = error.into_response();
    if unauthorized {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, service.challenge.clone());
    }
    response
}

/// OAuth 2.0 Protected Resource Metadata (RFC 9728 §2).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProtectedResourceMetadata {
    /// The resource: the MCP endpoint's URL.
    pub resource: String,
    /// The issuers whose access tokens it accepts.
    pub authorization_servers: Vec<String>,
    /// How the token is sent: `header` (`Authorization: Bearer`).
    pub bearer_methods_supported: Vec<&'static str>,
    /// Scopes the tools need: none beyond signing in.
    pub scopes_supported: Vec<String>,
    /// A name for people.
    pub resource_name: &'static str,
}
