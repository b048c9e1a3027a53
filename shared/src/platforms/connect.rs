//! The provider's side of connecting an account by signing in there (hosted OAuth): the
//! authorization URL each provider documents, the server-side code exchange (with the PKCE
//! verifier where the provider takes one), Instagram's exchange of the short-lived token for a
//! long-lived one, and who the token belongs to. `accounts::connect` keeps the sessions and
//! writes the account. Sources: docs/providers.md, "Connecting accounts".

use serde_json::{Map, Value, json};

use super::oauth::{Grant, TokenEndpoints, read_token_answer};
use super::tokens::{OAuthClient, RefreshFailure, RefreshedTokens};
use super::{Provider, google, instagram, microsoft, x};

/// Who a provider says a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderIdentity {
    /// The provider's stable id of the user: X's user id, Instagram's professional account id,
    /// Microsoft's object id, Google's mailbox address.
    pub id: String,
    /// What a person recognises: the username, or the mailbox address.
    pub name: String,
    /// The public configuration fields the account stores (`username`, `user_id`,
    /// `ig_user_id`, `from_address`).
    pub fields: Map<String, Value>,
}

impl ProviderIdentity {
    /// The configuration field holding [`ProviderIdentity::id`] on a stored account: the field
    /// a reconnect compares.
    pub fn id_field(provider: Provider) -> &'static str {
        match provider {
            Provider::X | Provider::Microsoft => "user_id",
            Provider::Instagram => "ig_user_id",
            Provider::Google => "from_address",
        }
    }

    /// The identity as the API shows it (public fields only).
    pub fn to_json(&self) -> Value {
        json!({"id": self.id, "name": self.name})
    }
}

/// Why the provider did not tell who a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityFailure {
    /// The provider refused the token (401): the grant is gone.
    TokenRefused,
    /// The provider or the network failed, or the answer could not be read.
    Unavailable,
}

/// The PKCE challenge (RFC 7636, `S256`) of a verifier: BASE64URL(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

impl TokenEndpoints {
    /// This deployment's OAuth client at `provider`; the deployment's problem when there is none
    /// (503 `provider_misconfigured`).
    pub async fn client_of(&self, provider: Provider) -> Result<OAuthClient, crate::error::Error> {
        let clients = self.clients().await.ok_or_else(|| {
            crate::error::Error::unavailable("the OAuth clients' secret could not be read")
        })?;
        clients.of(provider).cloned().ok_or_else(|| {
            tracing::error!(
                alarm = super::tokens::PROVIDER_MISCONFIGURED,
                provider = provider.name(),
                "no OAuth client is configured for this provider"
            );
            crate::error::Error::ProviderMisconfigured
        })
    }

    /// The provider's authorization URL: `response_type=code`, the client id, the callback, the
    /// provider's scopes, the single-use `state` and, where the provider takes PKCE, the `S256`
    /// challenge of the session's verifier.
    pub fn authorize_url(
        &self,
        provider: Provider,
        client: &OAuthClient,
        redirect_uri: &str,
        state: &str,
        verifier: &str,
    ) -> String {
        let (page, scopes, extra): (String, &str, &[(&str, &str)]) = match provider {
            Provider::X => (self.apis.x_authorize.clone(), x::SCOPES, &[]),
            Provider::Instagram => (
                self.apis.instagram_authorize.clone(),
                instagram::SCOPES,
                &[],
            ),
            Provider::Google => (
                self.apis.google_authorize.clone(),
                google::SCOPES,
                google::AUTHORIZE_EXTRA,
            ),
            Provider::Microsoft => (
                format!("{}/authorize", self.apis.microsoft_login),
                microsoft::SCOPES,
                &[],
            ),
        };
        let challenge = pkce_challenge(verifier);
        let mut query = vec![
            ("response_type", "code"),
            ("client_id", client.client_id.as_str()),
            ("redirect_uri", redirect_uri),
            ("scope", scopes),
            ("state", state),
        ];
        if provider != Provider::Instagram {
            query.push(("code_challenge", &challenge));
            query.push(("code_challenge_method", "S256"));
        }
        query.extend_from_slice(extra);
        let encoded = serde_urlencoded::to_string(&query).unwrap_or_default();
        let separator = if page.contains('?') { '&' } else { '?' };
        format!("{page}{separator}{encoded}")
    }

    /// Exchanges an authorization code for tokens at the provider (server to server, with the
    /// client's secret and the PKCE verifier); for Instagram, the short-lived token is exchanged
    /// at once for the long-lived one.
    pub async fn exchange_code(
        &self,
        provider: Provider,
        client: &OAuthClient,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<RefreshedTokens, RefreshFailure> {
        let http = self
            .http()
            .ok_or(RefreshFailure::Transient("http_client_unavailable"))?;
        let apis = &self.apis;
        let request = match provider {
            Provider::X => {
                x::exchange_request(&http, &apis.x, client, code, redirect_uri, verifier)
            }
            Provider::Google => google::exchange_request(
                &http,
                &apis.google_token,
                client,
                code,
                redirect_uri,
                verifier,
            ),
            Provider::Microsoft => microsoft::exchange_request(
                &http,
                &apis.microsoft_login,
                client,
                code,
                redirect_uri,
                verifier,
            ),
            Provider::Instagram => {
                return self
                    .exchange_instagram_code(&http, client, code, redirect_uri)
                    .await;
            }
        };
        let response = request
            .send()
            .await
            .map_err(|_| RefreshFailure::Transient("token_endpoint_unreachable"))?;
        read_token_answer(provider, Grant::Code, response).await
    }

    async fn exchange_instagram_code(
        &self,
        http: &reqwest::Client,
        client: &OAuthClient,
        code: &str,
        redirect_uri: &str,
    ) -> Result<RefreshedTokens, RefreshFailure> {
        let response = instagram::exchange_request(
            http,
            &self.apis.instagram_oauth,
            client,
            code,
            redirect_uri,
        )
        .send()
        .await
        .map_err(|_| RefreshFailure::Transient("token_endpoint_unreachable"))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let failure = super::oauth::classify_code_refusal(status.as_u16(), &answer);
            if let RefreshFailure::Misconfigured(_) = failure {
                tracing::error!(
                    alarm = super::tokens::PROVIDER_MISCONFIGURED,
                    provider = Provider::Instagram.name(),
                    status = status.as_u16(),
                    "the provider refused this deployment's OAuth client; no account was changed"
                );
            }
            return Err(failure);
        }
        let short_lived = instagram::short_lived_token_of(&answer).ok_or(
            RefreshFailure::Transient("token_endpoint_answer_unreadable"),
        )?;
        let response =
            instagram::long_lived_request(http, &self.apis.instagram, client, short_lived)
                .send()
                .await
                .map_err(|_| RefreshFailure::Transient("token_endpoint_unreachable"))?;
        read_token_answer(Provider::Instagram, Grant::Code, response).await
    }

    /// Asks the provider who `access_token` belongs to.
    pub async fn identify(
        &self,
        provider: Provider,
        access_token: &str,
    ) -> Result<ProviderIdentity, IdentityFailure> {
        let http = self.http().ok_or(IdentityFailure::Unavailable)?;
        let apis = &self.apis;
        let request = match provider {
            Provider::X => x::identity_request(&http, &apis.x, access_token),
            Provider::Instagram => {
                instagram::identity_request(&http, &apis.instagram, access_token)
            }
            Provider::Google => google::identity_request(&http, &apis.gmail, access_token),
            Provider::Microsoft => {
                microsoft::identity_request(&http, &apis.microsoft_graph, access_token)
            }
        };
        let response = request
            .send()
            .await
            .map_err(|_| IdentityFailure::Unavailable)?;
        let status = response.status().as_u16();
        // Instagram answers a dead token with 400 and OAuthException code 190; the others 401.
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status == 401 || answer["error"]["code"].as_i64() == Some(190) {
            return Err(IdentityFailure::TokenRefused);
        }
        if !(200..300).contains(&status) {
            return Err(IdentityFailure::Unavailable);
        }
        identity_in(provider, &answer).ok_or(IdentityFailure::Unavailable)
    }
}

/// The identity in an identity endpoint's answer.
fn identity_in(provider: Provider, answer: &Value) -> Option<ProviderIdentity> {
    let mut fields = Map::new();
    let (id, name) = match provider {
        Provider::X => {
            let (id, username) = x::identity_of(answer)?;
            fields.insert("user_id".into(), json!(id));
            fields.insert("username".into(), json!(username));
            (id.to_owned(), username.to_owned())
        }
        Provider::Instagram => {
            let (id, username) = instagram::identity_of(answer)?;
            fields.insert("ig_user_id".into(), json!(id));
            fields.insert("username".into(), json!(username));
            (id, username.to_owned())
        }
        Provider::Google => {
            let address = google::address_of(answer)?.to_ascii_lowercase();
            fields.insert("from_address".into(), json!(address));
            (address.clone(), address)
        }
        Provider::Microsoft => {
            let (id, address) = microsoft::identity_of(answer)?;
            let address = address.to_ascii_lowercase();
            fields.insert("user_id".into(), json!(id));
            fields.insert("from_address".into(), json!(address));
            (id.to_owned(), address)
        }
    };
    Some(ProviderIdentity { id, name, fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_rfc_7636s() {
        // RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn a_microsoft_account_without_mail_is_named_by_its_sign_in_name() {
        let identity = identity_in(
            Provider::Microsoft,
            &json!({"id": "ms-1", "mail": null, "userPrincipalName": "Ada@Contoso.example"}),
        )
        .expect("identity");
        assert_eq!(identity.id, "ms-1");
        assert_eq!(identity.fields["from_address"], "ada@contoso.example");
    }
}
