//! Integration accounts: which tools a user has connected, and how.

pub mod connect;
pub mod model;
pub mod provider;
pub mod refresh;
pub mod secrets;
pub mod sender;
pub mod service;
pub mod store;
pub mod tools;
pub mod vault;

pub use model::{AccountId, AccountType};
pub use service::AccountService;
pub use store::AccountStore;
