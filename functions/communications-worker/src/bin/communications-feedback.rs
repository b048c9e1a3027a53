//! Lambda entry point of `communications-feedback` (SES events from the feedback queue):
//! wiring only.

use communications_worker::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use pipewise::config::ConfigSource;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    pipewise::telemetry::init();
    let sdk = pipewise::aws::sdk_config().await;
    let feedback = communications_worker::feedback_from_config(&ConfigSource::env(), &sdk)?;
    let feedback = &feedback;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, lambda_runtime::Error>(
            communications_worker::handle_batch(feedback, event.payload).await,
        )
    }))
    .await
}
