//! The social platforms this service talks to: where their APIs live (overridable, so tests and
//! `make dev` can point the worker at a local stand-in).

use crate::config::ConfigSource;

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
                .unwrap_or_else(|| "https://api.x.com".into()),
            instagram: source
                .optional(crate::config::vars::INSTAGRAM_API_BASE_URL)
                .unwrap_or_else(|| "https://graph.instagram.com/v21.0".into()),
        }
    }
}
