//! Every function's router in one process, as `make dev` and the tests serve them.

use std::collections::HashMap;

use accounts::Accounts;
use aws_config::SdkConfig;
use mcp::Mcp;
use orchestrator::Orchestrator;
use pipewise::api::{HttpConfig, HttpFunction, serve_routes};
use pipewise::config::{ConfigError, ConfigSource};
use targets::Targets;
use utoipa::openapi::OpenApi;
use webhooks::Webhooks;

use crate::dev_auth::dev_overrides;
use crate::stack::LocalStack;

/// One HTTP function as the local stack and the tests see it, whatever its service.
#[derive(Clone, Copy)]
pub struct LocalFunction {
    /// Its logical id in `template.yaml`.
    pub logical_id: &'static str,
    /// Its state built from a configuration and bound to its routes (not yet wrapped by
    /// `serve_routes`).
    pub router: fn(&ConfigSource<'_>, &SdkConfig) -> Result<axum::Router, ConfigError>,
    /// The OpenAPI description of its routes.
    pub openapi: fn() -> OpenApi,
}

impl LocalFunction {
    const fn of<F: HttpFunction>(logical_id: &'static str) -> Self {
        Self {
            logical_id,
            router: router_of::<F>,
            openapi: F::openapi,
        }
    }

    /// The HTTP function `template.yaml` calls `logical_id`.
    pub fn named(logical_id: &str) -> Option<Self> {
        HTTP_FUNCTIONS
            .iter()
            .find(|function| function.logical_id == logical_id)
            .copied()
    }
}

fn router_of<F: HttpFunction>(
    source: &ConfigSource<'_>,
    sdk: &SdkConfig,
) -> Result<axum::Router, ConfigError> {
    Ok(F::router(F::state(source, sdk)?))
}

/// Every HTTP function, in `template.yaml`'s order.
pub const HTTP_FUNCTIONS: &[LocalFunction] = &[
    LocalFunction::of::<Accounts>("AccountsFunction"),
    LocalFunction::of::<Targets>("TargetsFunction"),
    LocalFunction::of::<Orchestrator>("OrchestratorFunction"),
    LocalFunction::of::<Mcp>("McpFunction"),
    LocalFunction::of::<Webhooks>("WebhooksFunction"),
];

/// The environment the functions see locally: the stack's resolved template variables plus the
/// development overrides.
pub fn local_environment(stack: &LocalStack) -> HashMap<String, String> {
    let mut environment: HashMap<String, String> = stack.environment.clone().into_iter().collect();
    for (name, value) in dev_overrides(stack) {
        environment.insert(name.to_owned(), value);
    }
    environment
}

/// The routers of every HTTP function, merged and wrapped exactly as each Lambda wraps its own.
pub fn api_router(source: &ConfigSource<'_>, sdk: &SdkConfig) -> Result<axum::Router, ConfigError> {
    let http = HttpConfig::from_source(source)?;
    let mut routes = axum::Router::new();
    for function in HTTP_FUNCTIONS {
        routes = routes.merge((function.router)(source, sdk)?);
    }
    // Local only: the document the frontend and tools read while developing.
    let routes = routes.route(
        "/api/user/openapi.json",
        axum::routing::get(openapi_document),
    );
    Ok(serve_routes(routes, &http))
}

async fn openapi_document() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        crate::openapi::api_document_json(),
    )
}
