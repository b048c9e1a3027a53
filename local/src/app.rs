//! Every function's router in one process, as `make dev` and the tests serve them.

use std::collections::HashMap;

use aws_config::SdkConfig;
use pipewise::api::{HttpConfig, serve_routes};
use pipewise::config::{ConfigError, ConfigSource};

use crate::dev_auth::dev_overrides;
use crate::stack::LocalStack;

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
    let routes = accounts::router(accounts::state_from_config(source, sdk)?)
        .merge(targets::router(targets::state_from_config(source, sdk)?))
        .merge(orchestrator::router(orchestrator::state_from_config(
            source, sdk,
        )?))
        // Local only: the document the frontend and tools read while developing.
        .route(
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
