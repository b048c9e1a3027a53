//! One-click unsubscribe (RFC 8058): the link in every outreach email and its
//! `List-Unsubscribe` header name a token that binds the user, the target and the address,
//! MAC'd (HMAC-SHA256) with a key kept in Secrets Manager (`UNSUBSCRIBE_SECRET_ARN`), so it
//! cannot be guessed or altered. The key is read once per cold start, on first use.

use std::sync::Arc;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::ids::UserId;

const TOKEN_VERSION: &str = "u1";

/// What a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscription {
    /// The user whose outreach it was.
    pub user_id: UserId,
    /// The target written to.
    pub target_id: String,
    /// The address to suppress.
    pub address: String,
}

/// Makes and checks unsubscribe tokens.
#[derive(Clone)]
pub struct UnsubscribeTokens {
    secrets: aws_sdk_secretsmanager::Client,
    secret_arn: Option<String>,
    key: Arc<tokio::sync::OnceCell<Option<hmac::Key>>>,
    /// Public base URL of the API (`PUBLIC_API_BASE_URL`), without `/api/user`.
    pub public_base_url: String,
}

impl UnsubscribeTokens {
    /// Tokens MAC'd with the secret at `secret_arn`; links under `public_base_url`.
    pub fn new(
        secrets: aws_sdk_secretsmanager::Client,
        secret_arn: Option<String>,
        public_base_url: String,
    ) -> Self {
        Self {
            secrets,
            secret_arn,
            key: Arc::new(tokio::sync::OnceCell::new()),
            public_base_url: public_base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// The key, read on first use; a failed read is not remembered, so the next call tries again.
    /// From the functions' settings (`UNSUBSCRIBE_SECRET_ARN`, `PUBLIC_API_BASE_URL`).
    pub fn from_source(
        source: &crate::config::ConfigSource<'_>,
        sdk: &aws_config::SdkConfig,
    ) -> Self {
        Self::new(
            aws_sdk_secretsmanager::Client::new(sdk),
            source.optional(crate::config::vars::UNSUBSCRIBE_SECRET_ARN),
            source
                .optional(crate::config::vars::PUBLIC_API_BASE_URL)
                .unwrap_or_default(),
        )
    }

    async fn key(&self) -> Option<&hmac::Key> {
        self.key
            .get_or_try_init(|| async {
                let arn = self.secret_arn.as_ref().ok_or(())?;
                match self.secrets.get_secret_value().secret_id(arn).send().await {
                    Ok(output) => Ok(output
                        .secret_string()
                        .filter(|secret| secret.len() >= 32)
                        .map(|secret| hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()))),
                    Err(error) => {
                        tracing::error!(error = %crate::error::ErrorChain(&error), "could not read the unsubscribe signing secret");
                        Err(())
                    }
                }
            })
            .await
            .ok()
            .and_then(Option::as_ref)
    }

    /// The token for one recipient of one user; `None` when no signing key is available.
    pub async fn token(&self, unsubscription: &Unsubscription) -> Option<String> {
        let key = self.key().await?;
        let payload = serde_json::to_vec(&[
            TOKEN_VERSION,
            unsubscription.user_id.as_str(),
            &unsubscription.target_id,
            &unsubscription.address,
        ])
        .ok()?;
        let tag = hmac::sign(key, &payload);
        Some(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        ))
    }

    /// The public one-click URL of a token.
    pub fn url(&self, token: &str) -> String {
        format!("{}/api/user/unsubscribe/{token}", self.public_base_url)
    }

    /// What a token names, if it is ours and unaltered; an error when the signing key cannot
    /// be read (a valid link must never be called invalid because Secrets Manager is down).
    pub async fn verify(&self, token: &str) -> Result<Option<Unsubscription>, crate::error::Error> {
        let key = self.key().await.ok_or_else(|| {
            crate::error::Error::unavailable("the unsubscribe signing key is unavailable")
        })?;
        Ok(Self::open(key, token))
    }

    fn open(key: &hmac::Key, token: &str) -> Option<Unsubscription> {
        let (payload, tag) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(key, &payload, &tag).ok()?;
        let fields: Vec<String> = serde_json::from_slice(&payload).ok()?;
        match fields.as_slice() {
            [version, user_id, target_id, address] if version == TOKEN_VERSION => {
                Some(Unsubscription {
                    // Only a token we MAC'd gets here, and we MAC only verified users' ids.
                    user_id: UserId::from_verified_sub(user_id.clone()),
                    target_id: target_id.clone(),
                    address: address.clone(),
                })
            }
            _ => None,
        }
    }
}
