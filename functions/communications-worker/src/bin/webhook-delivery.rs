//! Lambda entry point of `webhook-delivery` (events and retries from the webhook queue):
//! wiring only.

use communications_worker::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use pipewise::config::ConfigSource;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    pipewise::telemetry::init();
    let sdk = pipewise::aws::sdk_config().await;
    let deliverer =
        communications_worker::webhook_deliverer_from_config(&ConfigSource::env(), &sdk)?;
    let deliverer = &deliverer;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, lambda_runtime::Error>(
            communications_worker::handle_batch(deliverer, event.payload).await,
        )
    }))
    .await
}
