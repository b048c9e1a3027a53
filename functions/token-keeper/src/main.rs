//! Lambda entry point: wiring only.

use lambda_runtime::{LambdaEvent, service_fn};
use pipewise::config::ConfigSource;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    pipewise::telemetry::init();
    let sdk = pipewise::aws::sdk_config().await;
    let service = token_keeper::service_from_config(&ConfigSource::env(), &sdk)?;
    let service = &service;
    lambda_runtime::run(service_fn(
        move |_event: LambdaEvent<serde_json::Value>| async move {
            // The schedule's event carries nothing we need: every run looks at every account.
            let report = service.keep_tokens_alive().await?;
            Ok::<_, lambda_runtime::Error>(serde_json::json!({
                "checked": report.checked,
                "refreshed": report.refreshed,
                "reauth_required": report.reauth_required,
                "failed": report.failed,
            }))
        },
    ))
    .await
}
