//! Outreach: runs, communications, the queue between orchestrator and worker, and delivery.

pub mod delivery;
pub mod feedback;
pub mod idempotency;
pub mod model;
pub mod outreach;
pub mod queue;
mod read_once;
pub mod reason;
pub mod replies;
pub mod sequence;
pub mod store;
pub mod suppression;
pub mod template;
pub mod unsubscribe;
pub mod window;
pub mod worker;

pub use outreach::Outreach;
pub use store::RunStore;
pub use worker::CommunicationsWorker;
