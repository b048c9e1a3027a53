//! The platforms this service talks to, a module each: where its API lives (overridable, so
//! tests and `make dev` point at a local stand-in), how its tokens are refreshed and what its
//! refusals mean, its refresh margin and the tools it offers agents. [`Provider`] dispatches to
//! them; nothing outside this module matches on a provider. Adding a platform: docs/architecture.md,
//! "Add a provider".

pub mod instagram;
pub mod oauth;
pub mod tokens;
pub mod x;

use crate::channel::Channel;
use crate::config::ConfigSource;

/// A social platform this service sends on and refreshes tokens for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// X (Twitter), OAuth 2.0 user context.
    X,
    /// Instagram, long-lived Instagram User token.
    Instagram,
}

impl Provider {
    /// The platform an account's `provider` names: `x` (or its old name `twitter`) or
    /// `instagram`, as the API documents them.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "x" | "twitter" => Some(Self::X),
            "instagram" => Some(Self::Instagram),
            _ => None,
        }
    }

    /// The channel its accounts send on.
    pub fn channel(self) -> Channel {
        match self {
            Self::X => Channel::Twitter,
            Self::Instagram => Channel::Instagram,
        }
    }

    /// What an agent can do through one of its accounts, as `(name, description)`.
    pub fn tools(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::X => x::TOOLS,
            Self::Instagram => instagram::TOOLS,
        }
    }

    /// Its name in logs and stored fields (`x`, `instagram`).
    pub fn name(self) -> &'static str {
        match self {
            Self::X => "x",
            Self::Instagram => "instagram",
        }
    }

    /// Refresh when the token expires within this many seconds.
    pub fn refresh_margin_seconds(self) -> i64 {
        match self {
            Self::X => x::REFRESH_MARGIN_SECONDS,
            Self::Instagram => instagram::REFRESH_MARGIN_SECONDS,
        }
    }
}

/// Base URLs of the social platforms' APIs (overridable for tests, which serve them locally).
#[derive(Debug, Clone)]
pub struct SocialApis {
    /// X API v2 base, default `https://api.x.com`.
    pub x: String,
    /// Instagram Graph API base, default `https://graph.instagram.com/v21.0`.
    pub instagram: String,
}

impl SocialApis {
    /// Reads `X_API_BASE_URL` and `INSTAGRAM_API_BASE_URL`, with the platforms' own defaults.
    pub fn from_source(source: &ConfigSource<'_>) -> Self {
        Self {
            x: source
                .optional(crate::config::vars::X_API_BASE_URL)
                .unwrap_or_else(|| x::DEFAULT_API_BASE_URL.into()),
            instagram: source
                .optional(crate::config::vars::INSTAGRAM_API_BASE_URL)
                .unwrap_or_else(|| instagram::DEFAULT_API_BASE_URL.into()),
        }
    }
}
