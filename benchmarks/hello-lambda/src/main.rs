//! Baseline for `make bench`: what any Rust HTTP Lambda costs before it does anything of ours.

use axum::Json;
use axum::routing::get;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let router = axum::Router::new().route(
        "/api/user/health",
        get(|| async { Json(serde_json_value()) }),
    );
    lambda_http::run(router).await
}

fn serde_json_value() -> std::collections::BTreeMap<&'static str, &'static str> {
    std::collections::BTreeMap::from([("status", "ok")])
}
