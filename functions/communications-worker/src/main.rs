//! Lambda entry point: wiring only.

use lambda_runtime::{LambdaEvent, service_fn};
use pipewise::config::ConfigSource;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    pipewise::telemetry::init();
    let sdk = pipewise::aws::sdk_config().await;
    let worker = communications_worker::worker_from_config(&ConfigSource::env(), &sdk)?;
    let worker = &worker;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<communications_worker::SqsEvent>| async move {
            Ok::<_, lambda_runtime::Error>(worker.handle_batch(event.payload).await)
        },
    ))
    .await
}
