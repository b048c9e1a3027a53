//! Connected accounts stay connected: each provider's token lifecycle, declared once, and the
//! HTTP calls that refresh its tokens. [`super::AccountService::fresh_configuration`] decides
//! when to refresh and makes sure only one caller does (a lease in DynamoDB).
//!
//! | provider | access token lives | refreshed by | refreshed when |
//! |---|---|---|---|
//! | X (OAuth 2.0, `offline.access`) | 2 hours | `POST {X_API_BASE_URL}/2/oauth2/token`, `grant_type=refresh_token`; the refresh token is single-use and rotates | it expires within 5 minutes, or X answers 401 once |
//! | Instagram (long-lived token) | 60 days | `GET {INSTAGRAM_API_BASE_URL}/refresh_access_token?grant_type=ig_refresh_token` (token at least 24 h old) | it expires within 7 days, or Instagram answers 401 once |

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

pub use super::provider::Provider;
use crate::platforms::SocialApis;

/// One OAuth client of this deployment.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OAuthClient {
    /// Client id.
    pub client_id: String,
    /// Client secret (confidential clients); absent for public clients.
    #[serde(default)]
    pub client_secret: Option<String>,
}

/// The deployment's OAuth clients, kept in Secrets Manager (`OAUTH_CLIENTS_SECRET_ARN`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OAuthClients {
    /// X's OAuth 2.0 client.
    #[serde(default)]
    pub x: Option<OAuthClient>,
}

/// New tokens from a refresh.
#[derive(Debug, Clone)]
pub struct RefreshedTokens {
    /// The new access token.
    pub access_token: String,
    /// The new refresh token, when the provider rotates it.
    pub refresh_token: Option<String>,
    /// Seconds the access token lives.
    pub expires_in: Option<i64>,
}

/// Why tokens could not be refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshFailure {
    /// The grant is gone (`invalid_grant`, a revoked or reused refresh token): the user must
    /// connect the account again.
    ReauthRequired,
    /// Nothing to refresh with (no refresh token, no OAuth client configured).
    NotRefreshable,
    /// The provider or the network failed; a later attempt may work.
    Transient(&'static str),
}

/// Reads the OAuth clients once per cold start, on first use.
#[derive(Clone)]
pub struct TokenEndpoints {
    apis: SocialApis,
    http: Arc<std::sync::OnceLock<Option<reqwest::Client>>>,
    clients: Arc<tokio::sync::OnceCell<OAuthClients>>,
    secret: Option<(aws_sdk_secretsmanager::Client, String)>,
}

impl TokenEndpoints {
    /// The platforms' token endpoints; the OAuth clients come from the secret `secret_arn`.
    pub fn new(
        apis: SocialApis,
        secrets: aws_sdk_secretsmanager::Client,
        secret_arn: Option<String>,
    ) -> Self {
        Self {
            apis,
            http: Arc::new(std::sync::OnceLock::new()),
            clients: Arc::new(tokio::sync::OnceCell::new()),
            secret: secret_arn.map(|arn| (secrets, arn)),
        }
    }

    fn http(&self) -> Option<reqwest::Client> {
        self.http.get_or_init(crate::https::https_client).clone()
    }

    /// The OAuth clients, read on first use; a failed read is not remembered.
    async fn clients(&self) -> Option<&OAuthClients> {
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
        let request = match provider {
            Provider::X => {
                let refresh_token = text("refresh_token").ok_or(RefreshFailure::NotRefreshable)?;
                let client = self
                    .clients()
                    .await
                    .ok_or(RefreshFailure::Transient("oauth_clients_unavailable"))?
                    .x
                    .clone()
                    .ok_or(RefreshFailure::NotRefreshable)?;
                let mut request = http.post(format!("{}/2/oauth2/token", self.apis.x)).form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                    ("client_id", client.client_id.as_str()),
                ]);
                // Confidential clients authenticate with HTTP Basic (X's documented scheme).
                if let Some(secret) = &client.client_secret {
                    request = request.basic_auth(&client.client_id, Some(secret));
                }
                request
            }
            Provider::Instagram => {
                let access_token = text("access_token").ok_or(RefreshFailure::NotRefreshable)?;
                http.get(format!("{}/refresh_access_token", self.apis.instagram))
                    .query(&[
                        ("grant_type", "ig_refresh_token"),
                        ("access_token", access_token),
                    ])
            }
        };
        let response = request
            .send()
            .await
            .map_err(|_| RefreshFailure::Transient("token_endpoint_unreachable"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            let access_token = body["access_token"]
                .as_str()
                .ok_or(RefreshFailure::Transient(
                    "token_endpoint_answer_unreadable",
                ))?
                .to_owned();
            return Ok(RefreshedTokens {
                access_token,
                refresh_token: body["refresh_token"].as_str().map(str::to_owned),
                expires_in: body["expires_in"].as_i64(),
            });
        }
        // X: `invalid_grant` / `invalid_request` for a revoked, expired or reused refresh token;
        // Instagram: an OAuthException (code 190) for an invalid token.
        let grant_gone = matches!(
            body["error"].as_str(),
            Some("invalid_grant" | "invalid_request")
        ) || body["error"]["code"].as_i64() == Some(190)
            || status == reqwest::StatusCode::UNAUTHORIZED;
        if status.is_client_error() && grant_gone {
            Err(RefreshFailure::ReauthRequired)
        } else {
            Err(RefreshFailure::Transient("token_endpoint_failed"))
        }
    }
}
