//! Communication targets: the people a user wants to reach.

pub mod batch;
pub mod model;
pub mod store;

pub use model::{Email, InstagramHandle, TargetDraft, TargetId, TwitterHandle};
pub use store::TargetStore;
