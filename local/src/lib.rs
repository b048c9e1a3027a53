//! The local stack: creates the emulator's resources from `template.yaml`, serves every
//! function's router in one process, and mints development tokens. Never deployed.

pub mod app;
pub mod cognito;
pub mod dev_auth;
pub mod openapi;
pub mod queue_poller;
pub mod stack;
pub mod template;
