//! Shared core of the PipeWise User API.
//!
//! One crate for everything the Lambda functions have in common: typed configuration, the one
//! error type and its wire shape, JWT authentication, HTTP plumbing, the KMS envelope, and the
//! domains (accounts, targets, communications) with their DynamoDB storage.

#![warn(missing_docs)]

pub mod accounts;
pub mod agents;
pub mod api;
pub mod auth;
pub mod aws;
pub mod channel;
pub mod clock;
pub mod communications;
pub mod config;
pub mod envelope;
pub mod error;
pub mod https;
pub mod ids;
pub mod json_input;
pub mod metrics;
pub mod paging;
pub mod plain_text;
pub mod platforms;
pub mod request_id;
pub mod storage;
pub mod targets;
pub mod telemetry;
pub mod webhooks;

pub use error::{Error, Result};

/// Version of this service, reported by `/api/user/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
