//! Microsoft (an Outlook / Microsoft 365 mailbox) through the identity platform v2.0 and
//! Microsoft Graph: what the connect flow asks for, how its tokens are refreshed (refresh tokens
//! rotate) and what its token endpoint's refusals mean. Sources: docs/providers.md, "Microsoft".

use serde_json::Value;

use super::tokens::{OAuthClient, PROVIDER_MISCONFIGURED, RefreshFailure};

/// The identity platform's base when `MICROSOFT_LOGIN_BASE_URL` is not set (`/authorize` and
/// `/token` under it); `common` lets work, school and personal accounts sign in.
pub const DEFAULT_LOGIN_BASE_URL: &str = "https://login.microsoftonline.com/common/oauth2/v2.0";
/// Microsoft Graph's base URL when `MICROSOFT_GRAPH_BASE_URL` is not set.
pub const DEFAULT_GRAPH_BASE_URL: &str = "https://graph.microsoft.com";

/// What the connect flow asks for: a refresh token, who the user is, sending and reading mail.
pub const SCOPES: &str = "offline_access User.Read Mail.Send Mail.Read";

/// Access tokens live about an hour: refresh when one expires within 5 minutes.
pub const REFRESH_MARGIN_SECONDS: i64 = 5 * 60;

/// The code exchange: `POST {login}/token`, the client's credentials in the form, with the
/// PKCE verifier and the scopes again (the identity platform asks for them on the exchange).
pub fn exchange_request(
    http: &reqwest::Client,
    login: &str,
    client: &OAuthClient,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> reqwest::RequestBuilder {
    http.post(format!("{login}/token")).form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
        ("scope", SCOPES),
        ("client_id", client.client_id.as_str()),
        (
            "client_secret",
            client.client_secret.as_deref().unwrap_or_default(),
        ),
    ])
}

/// The refresh request: `POST {login}/token`, `grant_type=refresh_token`; the answer carries a
/// new refresh token, which replaces the old one.
pub fn refresh_request(
    http: &reqwest::Client,
    login: &str,
    client: &OAuthClient,
    refresh_token: &str,
) -> reqwest::RequestBuilder {
    http.post(format!("{login}/token")).form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("scope", SCOPES),
        ("client_id", client.client_id.as_str()),
        (
            "client_secret",
            client.client_secret.as_deref().unwrap_or_default(),
        ),
    ])
}

/// Who the token belongs to: `GET {graph}/v1.0/me`.
pub fn identity_request(
    http: &reqwest::Client,
    graph: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    http.get(format!("{graph}/v1.0/me")).bearer_auth(token)
}

/// The user's id and mailbox address in `/me`'s answer: `mail`, or the sign-in name
/// (`userPrincipalName`) when an account has no `mail` set.
pub fn identity_of(answer: &Value) -> Option<(&str, &str)> {
    let id = answer["id"].as_str()?;
    let address = answer["mail"]
        .as_str()
        .or_else(|| answer["userPrincipalName"].as_str())?;
    Some((id, address))
}

/// What a 4xx from the token endpoint means: `invalid_grant` (RFC 6749; the identity platform's
/// answer for a revoked, expired or reused grant) asks the user to
/// reconnect; `invalid_client`, `unauthorized_client` and the rest are the deployment's.
pub fn classify_client_error(body: &Value) -> RefreshFailure {
    match body["error"].as_str() {
        Some("invalid_grant") => RefreshFailure::ReauthRequired,
        _ => RefreshFailure::Misconfigured(PROVIDER_MISCONFIGURED),
    }
}
