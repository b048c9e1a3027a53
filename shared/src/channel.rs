//! The channels a communication can travel on: vocabulary shared by the domains (accounts know
//! which channel an account sends on, communications travel on one), so none of them has to
//! import another to name it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a communication reaches its target.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Email through SES from the user's email account.
    Email,
    /// A direct message on X through the user's X account.
    Twitter,
    /// A direct message on Instagram through the user's Instagram account.
    Instagram,
}

impl Channel {
    /// Every channel, in the order communications are planned.
    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Twitter, Channel::Instagram];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Twitter => "twitter",
            Self::Instagram => "instagram",
        }
    }
}
