//! Structured JSON logs via `tracing`, set up once per process.

use tracing_subscriber::EnvFilter;

/// Installs a JSON log subscriber (level from `RUST_LOG`, default `info`). Safe to call twice.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        // CloudWatch adds its own timestamp and the runtime its own request id.
        .with_target(false)
        .without_time()
        .try_init();
}
