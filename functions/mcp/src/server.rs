//! The MCP server's handler: `tools/list` and `tools/call` for the user the HTTP layer
//! authenticated, mapped onto [`Agents`] and back into the protocol's shapes.

use std::sync::Arc;

use pipewise::agents::{Agents, ToolCallError, ToolSpec};
use pipewise::api::REQUEST_ID_HEADER;
use pipewise::ids::UserId;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorData, Implementation,
    InitializeResult, ListToolsResult, PaginatedRequestParams, ServerCapabilities, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler};
use serde_json::json;

/// What agents are told when they connect.
const INSTRUCTIONS: &str = "PipeWise runs a user's sales outreach. Find or add the people to reach \
(list_targets, add_target), see which accounts can send (list_accounts), then send one message \
(send_email, send_x_dm, send_instagram_reply) or start outreach to many (start_outreach) and \
follow it (get_run). Sends go through PipeWise's rules: unsubscribed, bounced and complained \
addresses are refused, daily caps apply, and an idempotency_key never sends twice.";

/// The protocol handler: stateless, one per request, over the agents' service.
#[derive(Clone)]
pub struct AgentServer {
    agents: Agents,
}

impl AgentServer {
    /// The handler over `agents`.
    pub fn new(agents: Agents) -> Self {
        Self { agents }
    }
}

/// The authenticated user and the request id the HTTP layer put on the request: the transport
/// hands the request's parts to the handler, which runs in a task of its own.
fn caller(context: &RequestContext<RoleServer>) -> Result<(UserId, Arc<str>), ErrorData> {
    let parts = context.extensions.get::<http::request::Parts>();
    let user = parts
        .and_then(|parts| parts.extensions.get::<UserId>())
        .cloned()
        // Unreachable through the router (it authenticates first); never served anonymously.
        .ok_or_else(|| ErrorData::internal_error("the request is not authenticated", None))?;
    let request_id = parts
        .and_then(|parts| parts.headers.get(REQUEST_ID_HEADER))
        .and_then(|value| value.to_str().ok())
        .map_or_else(|| Arc::from(""), Arc::from);
    Ok((user, request_id))
}

fn tool(spec: ToolSpec) -> Tool {
    let hints = spec.hints;
    Tool::new_with_raw(
        spec.name,
        Some(spec.description.into()),
        Arc::new(spec.input_schema),
    )
    .with_title(spec.title)
    .with_raw_output_schema(Arc::new(spec.output_schema))
    .with_annotations(
        ToolAnnotations::with_title(spec.title)
            .read_only(hints.read_only)
            .destructive(hints.destructive)
            .idempotent(hints.idempotent)
            .open_world(hints.open_world),
    )
}

/// A failure of the service itself (not a refusal of the call): the API's error code, never its
/// cause.
fn service_failure(error: &pipewise::Error) -> ErrorData {
    let detail = error.report();
    ErrorData::internal_error(
        detail.message,
        Some(json!({"code": detail.code, "request_id": detail.request_id})),
    )
}

impl ServerHandler for AgentServer {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "pipewise-user-api",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let (user, request_id) = caller(&context)?;
        pipewise::request_id::scope(request_id, async {
            let specs = self
                .agents
                .tools(&user)
                .await
                .map_err(|error| service_failure(&error))?;
            Ok(ListToolsResult::with_all_items(
                specs.into_iter().map(tool).collect(),
            ))
        })
        .await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let (user, request_id) = caller(&context)?;
        pipewise::request_id::scope(request_id, async {
            let arguments = request.arguments.unwrap_or_default();
            match self.agents.call(&user, &request.name, arguments).await {
                Ok(value) => Ok(CallToolResult::structured(value).into()),
                // Unknown tools and arguments that do not fit the schema are protocol errors;
                // neither names the tool or a value the caller sent.
                Err(ToolCallError::UnknownTool) => Err(ErrorData::invalid_params(
                    "Unknown tool: it is not offered to this user (see tools/list).",
                    Some(json!({"code": "unknown_tool"})),
                )),
                Err(ToolCallError::InvalidArguments(error)) => Err(ErrorData::invalid_params(
                    "The arguments do not fit the tool's input schema.",
                    Some(json!({"code": "invalid_arguments", "details": error.details()})),
                )),
                // A refusal is the tool's result, with the API's error, so the model can read it
                // and change course.
                Err(ToolCallError::Refused(error)) => {
                    let detail = error.report();
                    Ok(CallToolResult::structured_error(json!({"error": detail})).into())
                }
            }
        })
        .await
    }
}
