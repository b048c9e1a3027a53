//! Lambda entry point: wiring only.

use pipewise::api::{HttpConfig, serve_routes};
use pipewise::config::ConfigSource;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    pipewise::telemetry::init();
    let source = ConfigSource::env();
    let sdk = pipewise::aws::sdk_config().await;
    let state = accounts::state_from_config(&source, &sdk)?;
    // The issuer's signing keys are fetched here, once per cold start, not in a request.
    state.verifier.prefetch().await;
    let http = HttpConfig::from_source(&source)?;
    lambda_http::run(serve_routes(accounts::router(state), &http)).await
}
