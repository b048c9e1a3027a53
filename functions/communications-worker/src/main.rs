//! Lambda entry point of `communications-worker`: wiring only.

use communications_worker::WorkerEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use pipewise::config::ConfigSource;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    pipewise::telemetry::init();
    let sdk = pipewise::aws::sdk_config().await;
    let worker = communications_worker::worker_from_config(&ConfigSource::env(), &sdk)?;
    let worker = &worker;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<WorkerEvent>| async move {
            communications_worker::handle_worker_event(worker, event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        },
    ))
    .await
}
