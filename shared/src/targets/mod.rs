//! Communication targets: the people a user wants to reach.

pub mod batch;
pub mod import;
pub mod model;
pub mod personal;
pub mod service;
pub mod store;

pub use model::{Email, InstagramHandle, TargetDraft, TargetId, TwitterHandle};
pub use service::TargetService;
pub use store::TargetStore;
