//! Google (a Gmail mailbox): where its OAuth endpoints and the Gmail API live, what the connect
//! flow asks for, how its tokens are refreshed and what its token endpoint's refusals mean.
//! Sources: docs/providers.md, "Google".

use serde_json::Value;

use super::tokens::{OAuthClient, PROVIDER_MISCONFIGURED, RefreshFailure};

/// Google's authorization page when `GOOGLE_AUTHORIZE_URL` is not set.
pub const DEFAULT_AUTHORIZE_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";
/// Google's token endpoint when `GOOGLE_TOKEN_URL` is not set.
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// The Gmail API's base URL when `GMAIL_API_BASE_URL` is not set.
pub const DEFAULT_GMAIL_API_BASE_URL: &str = "https://gmail.googleapis.com";

/// What the connect flow asks for: who the user is, and sending and reading their mail.
pub const SCOPES: &str = "openid email https://www.googleapis.com/auth/gmail.send https://www.googleapis.com/auth/gmail.readonly";

/// Google's further authorize parameters: a refresh token comes back only for an offline grant,
/// and again on a reconnect only when consent is asked again.
pub const AUTHORIZE_EXTRA: &[(&str, &str)] = &[("access_type", "offline"), ("prompt", "consent")];

/// Access tokens live an hour: refresh when one expires within 5 minutes.
pub const REFRESH_MARGIN_SECONDS: i64 = 5 * 60;

/// The code exchange: `POST {token_url}`, the client's credentials in the form (Google's
/// documented scheme), with the PKCE verifier.
pub fn exchange_request(
    http: &reqwest::Client,
    token_url: &str,
    client: &OAuthClient,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> reqwest::RequestBuilder {
    http.post(token_url).form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
        ("client_id", client.client_id.as_str()),
        (
            "client_secret",
            client.client_secret.as_deref().unwrap_or_default(),
        ),
    ])
}

/// The refresh request: `POST {token_url}`, `grant_type=refresh_token`. Google keeps the refresh
/// token (the answer carries none).
pub fn refresh_request(
    http: &reqwest::Client,
    token_url: &str,
    client: &OAuthClient,
    refresh_token: &str,
) -> reqwest::RequestBuilder {
    http.post(token_url).form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", client.client_id.as_str()),
        (
            "client_secret",
            client.client_secret.as_deref().unwrap_or_default(),
        ),
    ])
}

/// Who the token belongs to: `GET {gmail}/gmail/v1/users/me/profile`.
pub fn identity_request(
    http: &reqwest::Client,
    gmail: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    http.get(format!("{gmail}/gmail/v1/users/me/profile"))
        .bearer_auth(token)
}

/// The mailbox address in the profile's answer.
pub fn address_of(answer: &Value) -> Option<&str> {
    answer["emailAddress"].as_str()
}

/// What a 4xx from Google's token endpoint means: RFC 6749's `invalid_grant` is a dead grant
/// (revoked, expired, or the password changed); anything else (`invalid_client`,
/// `unauthorized_client`, a malformed request) is the deployment's.
pub fn classify_client_error(body: &Value) -> RefreshFailure {
    match body["error"].as_str() {
        Some("invalid_grant") => RefreshFailure::ReauthRequired,
        _ => RefreshFailure::Misconfigured(PROVIDER_MISCONFIGURED),
    }
}
