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
