//! API tests: the real routers against the AWS emulator. One binary keeps link time down.

mod accounts;
mod auth;
mod counters;
mod errors;
mod events;
mod identity;
mod migration;
mod outreach;
mod routes;
mod security;
mod targets;
mod template;
mod tenant_safety;
