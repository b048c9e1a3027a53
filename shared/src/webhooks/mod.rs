//! Webhooks: the user's systems told what happened, signed as Standard Webhooks.
//!
//! Producers (the worker, the feedback handler, the reply poller, the token refresh, the
//! connect flow, the unsubscribe page) call [`EventPublisher::publish`] where a transition
//! commits, and go on: one message on the webhook queue. The deliverer ([`WebhookDeliverer`],
//! its own function) fans it out to the user's subscribed endpoints and posts each attempt,
//! with retries on the contract's schedule. Events carry ids and statuses only. See
//! docs/webhooks.md.

pub mod address;
pub mod delivery;
pub mod event;
pub mod queue;
pub mod secrets;
pub mod service;
pub mod signing;
pub mod store;

pub use delivery::WebhookDeliverer;
pub use event::{EventType, WebhookEvent};
pub use queue::EventPublisher;
pub use service::WebhookService;

/// The webhooks table and its sealed secrets, from `WEBHOOKS_TABLE` and `SECRETS_KMS_KEY_ID`:
/// what the routes and the deliverer both build at cold start.
fn store_and_secrets(
    source: &crate::config::ConfigSource<'_>,
    sdk: &aws_config::SdkConfig,
) -> Result<(store::WebhookStore, secrets::EndpointSecrets), crate::config::ConfigError> {
    use crate::config::vars;
    let table = source.required(vars::WEBHOOKS_TABLE)?;
    let cipher = crate::envelope::EnvelopeCipher::new(
        aws_sdk_kms::Client::new(sdk),
        source.required(vars::SECRETS_KMS_KEY_ID)?,
    );
    Ok((
        store::WebhookStore::new(aws_sdk_dynamodb::Client::new(sdk), table.clone()),
        secrets::EndpointSecrets::new(cipher, table),
    ))
}
