//! Instagram (Instagram API with Instagram Login): where its API lives, how its long-lived
//! tokens are refreshed and what the refresh's refusals mean, and what it offers agents.
//! Sources: docs/providers.md, "Instagram".

use serde_json::Value;

use super::tokens::{PROVIDER_MISCONFIGURED, RefreshFailure};

/// The Graph API's base URL when `INSTAGRAM_API_BASE_URL` is not set.
pub const DEFAULT_API_BASE_URL: &str = "https://graph.instagram.com/v21.0";

/// Long-lived tokens live 60 days: refresh when one expires within 7 days.
pub const REFRESH_MARGIN_SECONDS: i64 = 7 * 24 * 3600;

/// What an agent can do through an Instagram account.
pub const TOOLS: &[(&str, &str)] = &[(
    "send_instagram_dm",
    "Reply on Instagram to a person who messaged the business in the last 24 hours (Instagram allows no cold messages; others fail with instagram_window_closed).",
)];

/// The refresh request: `GET {base}/refresh_access_token?grant_type=ig_refresh_token` with the
/// long-lived token itself (no client credentials; the token must be at least 24 h old).
pub fn refresh_request(
    http: &reqwest::Client,
    base: &str,
    access_token: &str,
) -> reqwest::RequestBuilder {
    http.get(format!("{base}/refresh_access_token")).query(&[
        ("grant_type", "ig_refresh_token"),
        ("access_token", access_token),
    ])
}

/// What a 4xx from the refresh means: an OAuthException with code 190 (any subcode) is a dead
/// grant; the Graph API's throttling and temporary codes (1, 2, 4, 17, 341) are transient;
/// anything else is the deployment's.
pub fn classify_client_error(body: &Value) -> RefreshFailure {
    match body["error"]["code"].as_i64() {
        Some(190) => RefreshFailure::ReauthRequired,
        Some(1 | 2 | 4 | 17 | 341) => RefreshFailure::Transient("token_endpoint_throttled"),
        _ => RefreshFailure::Misconfigured(PROVIDER_MISCONFIGURED),
    }
}
