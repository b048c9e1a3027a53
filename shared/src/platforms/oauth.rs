//! The deployment's OAuth clients and the refresh of users' tokens at each platform's token
//! endpoint: the request each platform's module builds, the answer read back (lifetimes
//! clamped), and what a refusal means. `accounts::refresh` decides when to refresh and makes
//! sure only one caller does (a lease in DynamoDB).
//!
//! | provider | access token lives | refreshed by | refreshed when |
//! |---|---|---|---|
//! | X (OAuth 2.0, `offline.access`) | 2 hours | `POST {X_API_BASE_URL}/2/oauth2/token`, `grant_type=refresh_token`; the refresh token is single-use and rotates | it expires within 5 minutes, or X answers 401 once |
//! | Instagram (long-lived token) | 60 days | `GET {INSTAGRAM_API_BASE_URL}/refresh_access_token?grant_type=ig_refresh_token` (token at least 24 h old) | it expires within 7 days, or Instagram answers 401 once |
//! | Google (offline grant) | 1 hour | `POST {GOOGLE_TOKEN_URL}`, `grant_type=refresh_token`; the refresh token stays | it expires within 5 minutes |
//! | Microsoft (`offline_access`) | about 1 hour | `POST {MICROSOFT_LOGIN_BASE_URL}/token`, `grant_type=refresh_token`; the refresh token rotates | it expires within 5 minutes |

use std::sync::Arc;

use serde_json::{Map, Value};

pub use super::tokens::{
    MAX_TOKEN_LIFETIME_SECONDS, OAuthClient, OAuthClients, PROVIDER_MISCONFIGURED, RefreshFailure,
    RefreshedTokens,
};
use super::{PlatformApis, Provider};

/// Reads the OAuth clients once per cold start, on first use.
#[derive(Clone)]
pub struct TokenEndpoints {
    pub(super) apis: PlatformApis,
    clients: Arc<tokio::sync::OnceCell<OAuthClients>>,
    secret: Option<(aws_sdk_secretsmanager::Client, String)>,
}

impl TokenEndpoints {
    /// The platforms' token endpoints; the OAuth clients come from the secret `secret_arn`.
    pub fn new(
        apis: PlatformApis,
        secrets: aws_sdk_secretsmanager::Client,
        secret_arn: Option<String>,
    ) -> Self {
        Self {
            apis,
            clients: Arc::new(tokio::sync::OnceCell::new()),
            secret: secret_arn.map(|arn| (secrets, arn)),
        }
    }

    pub(super) fn http(&self) -> Option<reqwest::Client> {
        crate::https::shared_client()
    }

    /// The OAuth clients, read on first use; a failed read is not remembered.
    pub(super) async fn clients(&self) -> Option<&OAuthClients> {
        self.clients
            .get_or_try_init(|| async {
                let Some((secrets, arn)) = &self.secret else {
                    return Ok(OAuthClients::default());
                };
                match secrets.get_secret_value().secret_id(arn).send().await {
                    Ok(output) => Ok(output
                        .secret_string()
                        .and_then(|text| serde_json::from_str(text).ok())
                        .unwrap_or_default()),
                    Err(error) => {
                        tracing::error!(error = %crate::error::ErrorChain(&error), "could not read the OAuth clients' secret");
                        Err(())
                    }
                }
            })
            .await
            .ok()
    }

    /// Exchanges the stored refresh credentials for new tokens.
    pub async fn refresh(
        &self,
        provider: Provider,
        configuration: &Map<String, Value>,
    ) -> Result<RefreshedTokens, RefreshFailure> {
        let http = self
            .http()
            .ok_or(RefreshFailure::Transient("http_client_unavailable"))?;
        let text = |name: &str| configuration.get(name).and_then(Value::as_str);
        let client = |clients: Option<&OAuthClients>| {
            clients
                .ok_or(RefreshFailure::Transient("oauth_clients_unavailable"))?
                .of(provider)
                .cloned()
                .ok_or(RefreshFailure::NotRefreshable)
        };
        let request = match provider {
            Provider::Instagram => {
                let access_token = text("access_token").ok_or(RefreshFailure::NotRefreshable)?;
                super::instagram::refresh_request(&http, &self.apis.instagram, access_token)
            }
            Provider::X | Provider::Google | Provider::Microsoft => {
                let refresh_token = text("refresh_token").ok_or(RefreshFailure::NotRefreshable)?;
                let client = client(self.clients().await)?;
                match provider {
                    Provider::Google => super::google::refresh_request(
                        &http,
                        &self.apis.google_token,
                        &client,
                        refresh_token,
                    ),
                    Provider::Microsoft => super::microsoft::refresh_request(
                        &http,
                        &self.apis.microsoft_login,
                        &client,
                        refresh_token,
                    ),
                    _ => super::x::refresh_request(&http, &self.apis.x, &client, refresh_token),
                }
            }
        };
        let response = request
            .send()
            .await
            .map_err(|_| RefreshFailure::Transient("token_endpoint_unreachable"))?;
        read_token_answer(provider, Grant::Refresh, response).await
    }
}

/// Which grant a token endpoint was asked for: its refusals mean different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grant {
    /// `refresh_token` (or Instagram's `ig_refresh_token`): a dead grant is the account's.
    Refresh,
    /// `authorization_code` (or Instagram's `ig_exchange_token` right after it): a refused code
    /// is the browser's round trip (expired, reused, another session's); only a refused client
    /// is the deployment's.
    Code,
}

/// Reads a token endpoint's answer: the tokens of a success, or what a refusal means (a
/// refused client is alarmed; no token or body ever reaches the log).
pub(super) async fn read_token_answer(
    provider: Provider,
    grant: Grant,
    response: reqwest::Response,
) -> Result<RefreshedTokens, RefreshFailure> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return tokens_of(&body).ok_or(RefreshFailure::Transient(
            "token_endpoint_answer_unreadable",
        ));
    }
    let failure = match grant {
        Grant::Refresh => classify_refusal(provider, status.as_u16(), &body),
        Grant::Code => classify_code_refusal(status.as_u16(), &body),
    };
    if let RefreshFailure::Misconfigured(_) = failure {
        // No token or body in the line: the status and the provider's error code only.
        tracing::error!(
            alarm = PROVIDER_MISCONFIGURED,
            provider = provider.name(),
            status = status.as_u16(),
            error_code = %error_code(&body),
            "the provider refused this deployment's OAuth client; no account was changed"
        );
    }
    Err(failure)
}

/// The tokens in a token endpoint's successful answer (RFC 6749 section 5.1).
fn tokens_of(body: &Value) -> Option<RefreshedTokens> {
    Some(RefreshedTokens {
        access_token: body["access_token"].as_str()?.to_owned(),
        refresh_token: body["refresh_token"].as_str().map(str::to_owned),
        expires_in: expires_in(&body["expires_in"]),
    })
}

/// A provider's `expires_in` (a number, or a number in a string as some send it), clamped.
fn expires_in(value: &Value) -> Option<i64> {
    let seconds = match value {
        Value::Number(number) => number
            .as_i64()
            .or_else(|| number.as_f64().map(|f| f as i64)),
        Value::String(text) => text.trim().parse::<i64>().ok(),
        _ => None,
    }?;
    Some(seconds.clamp(0, MAX_TOKEN_LIFETIME_SECONDS))
}

/// The provider's error code, for logs: an OAuth `error` string, or a Graph `error.code`.
fn error_code(body: &Value) -> String {
    match &body["error"] {
        Value::String(code) => code.chars().take(40).collect(),
        Value::Object(error) => error.get("code").map(Value::to_string).unwrap_or_default(),
        _ => String::new(),
    }
}

/// What a code exchange's refusal means: the client refused (RFC 6749's `invalid_client` and
/// `unauthorized_client`, any 401, Instagram's "Invalid platform app" and client-secret
/// answers) is the deployment's; anything else (an expired, reused or mismatched code:
/// `invalid_grant`, X's `invalid_request`, Instagram's "Matching code was not found") is the
/// round trip's, and the user simply connects again.
pub fn classify_code_refusal(status: u16, body: &Value) -> RefreshFailure {
    if status == 429 || status >= 500 || !(400..500).contains(&status) || body.is_null() {
        return RefreshFailure::Transient("token_endpoint_failed");
    }
    let oauth_error = body["error"].as_str();
    let instagram_message = body["error_message"].as_str().unwrap_or_default();
    let client_refused = status == 401
        || matches!(oauth_error, Some("invalid_client" | "unauthorized_client"))
        || instagram_message.contains("platform app")
        || instagram_message.contains("client secret");
    if client_refused {
        RefreshFailure::Misconfigured(PROVIDER_MISCONFIGURED)
    } else {
        RefreshFailure::ReauthRequired
    }
}

/// What a token endpoint's refusal means. Only the answer each provider documents for a dead
/// grant asks the user to reconnect (docs/providers.md, "Token refresh answers"); a refused
/// client or any other 4xx is the deployment's problem and changes no account; 429, 5xx and
/// anything unreadable are transient. Each platform's module reads its own 4xx answers.
pub fn classify_refusal(provider: Provider, status: u16, body: &Value) -> RefreshFailure {
    if status == 429 || status >= 500 || !(400..500).contains(&status) {
        return RefreshFailure::Transient("token_endpoint_failed");
    }
    if body.is_null() {
        return RefreshFailure::Transient("token_endpoint_answer_unreadable");
    }
    match provider {
        Provider::X => super::x::classify_client_error(status, body),
        Provider::Instagram => super::instagram::classify_client_error(body),
        Provider::Google => super::google::classify_client_error(body),
        Provider::Microsoft => super::microsoft::classify_client_error(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_a_dead_grant_asks_the_user_to_reconnect() {
        let x = |status, body| classify_refusal(Provider::X, status, &body);
        assert_eq!(
            x(
                400,
                json!({"error": "invalid_request", "error_description": "Value passed for the token was invalid."})
            ),
            RefreshFailure::ReauthRequired
        );
        assert_eq!(
            x(400, json!({"error": "invalid_grant"})),
            RefreshFailure::ReauthRequired
        );
        // A deployment with a wrong client: X's answer, and RFC 6749's.
        for refused in [
            x(
                401,
                json!({"error": "unauthorized_client", "error_description": "Missing valid authorization header"}),
            ),
            x(401, json!({"error": "invalid_client"})),
            x(
                400,
                json!({"error": "invalid_request", "error_description": "Missing required parameter [client_id]."}),
            ),
        ] {
            assert_eq!(
                refused,
                RefreshFailure::Misconfigured(PROVIDER_MISCONFIGURED)
            );
        }
        for transient in [x(429, json!({})), x(503, json!({})), x(400, Value::Null)] {
            assert!(
                matches!(transient, RefreshFailure::Transient(_)),
                "{transient:?}"
            );
        }
        let instagram = |status, body| classify_refusal(Provider::Instagram, status, &body);
        assert_eq!(
            instagram(
                400,
                json!({"error": {"message": "Error validating access token", "type": "OAuthException", "code": 190}})
            ),
            RefreshFailure::ReauthRequired
        );
        assert!(matches!(
            instagram(400, json!({"error": {"type": "OAuthException", "code": 4}})),
            RefreshFailure::Transient(_)
        ));
        assert_eq!(
            instagram(
                400,
                json!({"error": {"type": "IGApiException", "code": 100}})
            ),
            RefreshFailure::Misconfigured(PROVIDER_MISCONFIGURED)
        );
    }

    #[test]
    fn only_a_refused_client_makes_a_code_exchange_the_deployments_problem() {
        let round_trip = [
            (
                400,
                json!({"error": "invalid_grant", "error_description": "Code was already redeemed."}),
            ),
            (
                400,
                json!({"error": "invalid_request", "error_description": "Value passed for the authorization code was invalid."}),
            ),
            (
                400,
                json!({"error_type": "OAuthException", "code": 400, "error_message": "Matching code was not found or was already used"}),
            ),
        ];
        for (status, body) in round_trip {
            assert_eq!(
                classify_code_refusal(status, &body),
                RefreshFailure::ReauthRequired,
                "{body}"
            );
        }
        let deployment = [
            (401, json!({"error": "invalid_client"})),
            (
                401,
                json!({"error": "unauthorized_client", "error_description": "Missing valid authorization header"}),
            ),
            (
                400,
                json!({"error": "unauthorized_client", "error_codes": [700016]}),
            ),
            (
                400,
                json!({"error_type": "OAuthException", "code": 400, "error_message": "Error validating client secret."}),
            ),
            (
                400,
                json!({"error_type": "OAuthException", "code": 400, "error_message": "Invalid platform app"}),
            ),
        ];
        for (status, body) in deployment {
            assert_eq!(
                classify_code_refusal(status, &body),
                RefreshFailure::Misconfigured(PROVIDER_MISCONFIGURED),
                "{body}"
            );
        }
        assert!(matches!(
            classify_code_refusal(503, &json!({})),
            RefreshFailure::Transient(_)
        ));
    }

    #[test]
    fn a_providers_lifetime_is_clamped_never_overflowing() {
        assert_eq!(expires_in(&json!(7200)), Some(7200));
        assert_eq!(expires_in(&json!("5184000")), Some(5_184_000));
        assert_eq!(
            expires_in(&json!(i64::MAX)),
            Some(MAX_TOKEN_LIFETIME_SECONDS)
        );
        assert_eq!(expires_in(&json!(1e300)), Some(MAX_TOKEN_LIFETIME_SECONDS));
        assert_eq!(expires_in(&json!(-5)), Some(0));
        assert_eq!(expires_in(&json!("soon")), None);
    }
}
