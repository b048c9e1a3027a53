//! API tests: the real routers against the AWS emulator. One binary keeps link time down.

mod accounts;
mod auth;
mod connect;
mod connected_accounts;
mod counters;
mod deliverability;
mod emulator;
mod errors;
mod events;
mod faults;
mod identity;
mod key_rotation;
mod least_privilege;
mod logging;
mod mailboxes;
mod mcp;
mod migration;
mod outreach;
mod personalisation;
mod routes;
mod security;
mod sweeper;
mod tamper;
mod targets;
mod template;
mod tenant_safety;
