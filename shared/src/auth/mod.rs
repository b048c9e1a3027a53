//! Bearer-token authentication: the user is the verified token's issuer-qualified `sub`.
//!
//! API Gateway's JWT authorizer checks tokens in AWS; the functions check them again (defence in
//! depth, and `make dev` has no authorizer) by the same rules, from the same template values:
//! per issuer its token kind (Cognito access tokens by `token_use` and `client_id`, OIDC access
//! tokens by `aud`), an algorithm allow-list (RS256/ES256 from the issuer's JWKS; HS256 only with
//! a development secret), `exp` required, `nbf`/`iat` checked with a small leeway.

pub mod issuers;
pub mod keys;

pub use crate::ids::UserId;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

pub use issuers::{AuthConfig, DEFAULT_SECRETS_SCOPE, IssuerRules, KeySource, TokenKind};
use keys::{IssuerKeys, KeyLookup};

use crate::error::Error;

/// The default scope that lets an agent read decrypted account secrets (see
/// [`JwtVerifier::secrets_scope`] for the configured one).
pub const SECRETS_READ_SCOPE: &str = DEFAULT_SECRETS_SCOPE;

/// Clock skew tolerated on `exp`/`nbf`/`iat`, in seconds.
pub const LEEWAY_SECONDS: u64 = 30;

/// Longest `sub` accepted; it becomes a DynamoDB partition key.
const MAX_SUBJECT_LEN: usize = 256;

/// One accepted issuer: its rules, its keys, and its claim rules per algorithm, built once.
struct Issuer {
    rules: IssuerRules,
    keys: IssuerKeys,
    hs256: Option<DecodingKey>,
    validations: Vec<(Algorithm, Validation)>,
}

impl Issuer {
    fn validation(&self, algorithm: Algorithm) -> Option<&Validation> {
        self.validations
            .iter()
            .find(|(alg, _)| *alg == algorithm)
            .map(|(_, validation)| validation)
    }
}

/// The claim rules: `exp`, `sub` and `iss` required, `nbf` checked, the leeway, and for OIDC
/// access tokens `aud` required and matched (Cognito access tokens carry `client_id` instead,
/// checked after decoding).
fn validation_for(algorithm: Algorithm, rules: &IssuerRules) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.required_spec_claims = ["exp", "sub", "iss"].map(str::to_owned).into();
    validation.set_issuer(&[&rules.issuer]);
    match rules.kind {
        TokenKind::OidcAccess => {
            validation.set_audience(&rules.audiences);
            validation.required_spec_claims.insert("aud".to_owned());
        }
        TokenKind::CognitoAccess => validation.validate_aud = false,
    }
    validation
}

/// Verifies bearer tokens; built once per cold start, keys fetched outside the handler
/// ([`JwtVerifier::prefetch`]) and refreshed when an unknown `kid` shows up.
pub struct JwtVerifier {
    issuers: Vec<Issuer>,
    http: Option<reqwest::Client>,
    secrets_scope: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    token_use: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    iat: Option<u64>,
}

/// Why a token was refused; logged, and summarised in the 401 (or the 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not a JWT, an algorithm outside the allow-list, no key for it, or a bad signature.
    Invalid,
    /// Past `exp` (beyond the leeway).
    Expired,
    /// Unknown issuer; wrong or missing `aud` / `client_id` / `token_use` / `exp` / `sub`;
    /// `nbf` or `iat` in the future.
    WrongClaims,
    /// The issuer's keys could not be obtained (503 with `Retry-After`, never a 401).
    KeysUnavailable,
}

impl TokenRejection {
    fn public_reason(self) -> &'static str {
        match self {
            Self::Missing => "a bearer token is required",
            Self::Invalid => "the token is invalid",
            Self::Expired => "the token has expired",
            Self::WrongClaims | Self::KeysUnavailable => "the token's claims are not accepted",
        }
    }
}

impl From<TokenRejection> for Error {
    fn from(rejection: TokenRejection) -> Self {
        match rejection {
            TokenRejection::KeysUnavailable => {
                Error::unavailable("the token issuer's signing keys are unavailable")
            }
            _ => Error::Unauthorized(rejection.public_reason()),
        }
    }
}

/// The `iss` of a token, read before its signature is checked only to pick the issuer's rules.
fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Peek {
        iss: String,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Peek>(&bytes)
        .ok()
        .map(|peek| peek.iss)
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl JwtVerifier {
    /// Builds the verifier (no network call: see [`JwtVerifier::prefetch`]).
    pub fn new(config: &AuthConfig) -> Self {
        let issuers = config
            .issuers
            .iter()
            .enumerate()
            .map(|(index, rules)| {
                // The development secret belongs to the primary issuer only.
                let hs256 = (index == 0)
                    .then_some(config.hs256_secret.as_ref())
                    .flatten()
                    .map(|secret| DecodingKey::from_secret(secret));
                let mut algorithms = vec![Algorithm::RS256, Algorithm::ES256];
                if hs256.is_some() {
                    algorithms.push(Algorithm::HS256);
                }
                Issuer {
                    keys: IssuerKeys::new(rules.keys.clone(), config.keys_refetch_interval),
                    hs256,
                    validations: algorithms
                        .into_iter()
                        .map(|alg| (alg, validation_for(alg, rules)))
                        .collect(),
                    rules: rules.clone(),
                }
            })
            .collect();
        let needs_http = config
            .issuers
            .iter()
            .any(|rules| !matches!(rules.keys, KeySource::Static(_)));
        Self {
            issuers,
            http: needs_http.then(crate::https::shared_client).flatten(),
            secrets_scope: config.secrets_scope.clone(),
        }
    }

    /// Fetches every issuer's keys; call once per cold start, before serving.
    pub async fn prefetch(&self) {
        for issuer in &self.issuers {
            issuer.keys.refresh(self.http.as_ref()).await;
        }
    }

    /// The scope `/secrets` needs.
    pub fn secrets_scope(&self) -> &str {
        &self.secrets_scope
    }

    /// How many times keys were fetched, over every issuer.
    pub fn key_fetches(&self) -> usize {
        self.issuers
            .iter()
            .map(|issuer| issuer.keys.fetches())
            .sum()
    }

    /// Verifies a compact JWT and returns the authenticated user.
    pub async fn verify(&self, token: &str) -> Result<AuthUser, TokenRejection> {
        let header = decode_header(token).map_err(|_| TokenRejection::Invalid)?;
        let iss = unverified_issuer(token).ok_or(TokenRejection::WrongClaims)?;
        let issuer = self
            .issuers
            .iter()
            .find(|issuer| issuer.rules.issuer == iss)
            .ok_or(TokenRejection::WrongClaims)?;
        let validation = issuer
            .validation(header.alg)
            .ok_or(TokenRejection::Invalid)?;
        let decoded = if header.alg == Algorithm::HS256 {
            let key = issuer.hs256.as_ref().ok_or(TokenRejection::Invalid)?;
            decode::<Claims>(token, key, validation)
        } else {
            let (keys, index) = issuer
                .keys
                .find(self.http.as_ref(), header.kid.as_deref(), header.alg)
                .await
                .map_err(|lookup| match lookup {
                    KeyLookup::NoSuchKey => TokenRejection::Invalid,
                    KeyLookup::Unavailable => TokenRejection::KeysUnavailable,
                })?;
            decode::<Claims>(token, &keys[index].key, validation)
        };
        let claims = decoded
            .map_err(|error| {
                use jsonwebtoken::errors::ErrorKind;
                match error.kind() {
                    ErrorKind::ExpiredSignature => TokenRejection::Expired,
                    ErrorKind::InvalidIssuer
                    | ErrorKind::InvalidAudience
                    | ErrorKind::MissingRequiredClaim(_)
                    | ErrorKind::ImmatureSignature => TokenRejection::WrongClaims,
                    _ => TokenRejection::Invalid,
                }
            })?
            .claims;
        if issuer.rules.kind == TokenKind::CognitoAccess {
            let client_allowed = claims
                .client_id
                .as_ref()
                .is_some_and(|client| issuer.rules.audiences.contains(client));
            if claims.token_use.as_deref() != Some("access") || !client_allowed {
                return Err(TokenRejection::WrongClaims);
            }
        }
        if claims
            .iat
            .is_some_and(|iat| iat > now_seconds() + LEEWAY_SECONDS)
        {
            return Err(TokenRejection::WrongClaims);
        }
        let sub = claims.sub;
        let ambiguous =
            self.issuers.len() > 1 && issuer.rules.user_prefix.is_empty() && sub.contains(':');
        // `#` starts the service's own partitions in DynamoDB (quotas, provider message ids).
        if sub.is_empty()
            || sub.starts_with('#')
            || sub.len() > MAX_SUBJECT_LEN
            || sub.chars().any(char::is_control)
            || ambiguous
        {
            return Err(TokenRejection::WrongClaims);
        }
        let scopes = claims
            .scope
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        Ok(AuthUser {
            user_id: UserId::from_verified_sub(format!("{}{sub}", issuer.rules.user_prefix)),
            scopes,
            secrets_scope: self.secrets_scope.clone(),
        })
    }
}

/// An authenticated request's user and scopes. As an extractor it answers 401 before the handler
/// runs when the token is missing or invalid (503 when the issuer's keys are unavailable).
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user: the issuer's user prefix (empty for the primary issuer) and `sub`.
    pub user_id: UserId,
    scopes: Vec<String>,
    secrets_scope: String,
}

impl AuthUser {
    /// Ok when the token carries the configured secrets scope, else 403.
    pub fn require_secrets_scope(&self) -> Result<(), Error> {
        if self.scopes.contains(&self.secrets_scope) {
            Ok(())
        } else {
            Err(Error::MissingScope(self.secrets_scope.clone()))
        }
    }

    /// Ok when the token carries `scope`, else 403.
    pub fn require_scope(&self, scope: &str) -> Result<(), Error> {
        if self.scopes.iter().any(|granted| granted == scope) {
            Ok(())
        } else {
            Err(Error::MissingScope(scope.to_owned()))
        }
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    Arc<JwtVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let verifier = Arc::<JwtVerifier>::from_ref(state);
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or(TokenRejection::Missing)?;
        verifier.verify(token).await.map_err(|rejection| {
            tracing::info!(reason = ?rejection, "token refused");
            Error::from(rejection)
        })
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;
    use crate::config::{ConfigSource, vars};

    type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

    /// A P-256 key pair: the signing key and its public JWK.
    fn es256_key(kid: &str) -> TestResult<(EncodingKey, serde_json::Value)> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)?;
        let pkcs8 = pair.to_pkcs8v1()?;
        let point = pair.public_key().as_ref().to_vec(); // 0x04 || x || y
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Ok((EncodingKey::from_ec_der(pkcs8.as_ref()), jwk))
    }

    fn verifier(jwks: serde_json::Value) -> TestResult<JwtVerifier> {
        let map = std::collections::HashMap::from([
            (vars::JWT_JWKS.to_owned(), jwks.to_string()),
            (
                vars::JWT_ISSUER.to_owned(),
                "https://issuer.example".to_owned(),
            ),
            (vars::JWT_AUDIENCE.to_owned(), "pipewise".to_owned()),
        ]);
        Ok(JwtVerifier::new(&AuthConfig::from_source(
            &ConfigSource::from_map(&map),
        )?))
    }

    fn claims() -> serde_json::Value {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        json!({"sub": "alice", "iss": "https://issuer.example", "aud": "pipewise", "exp": now + 300, "scope": "a b"})
    }

    fn sign(algorithm: Algorithm, key: &EncodingKey, kid: Option<&str>) -> TestResult<String> {
        let mut header = Header::new(algorithm);
        header.kid = kid.map(str::to_owned);
        Ok(encode(&header, &claims(), key)?)
    }

    async fn subject(verifier: &JwtVerifier, token: &str) -> Result<String, TokenRejection> {
        verifier
            .verify(token)
            .await
            .map(|user| user.user_id.as_str().to_owned())
    }

    #[tokio::test]
    async fn es256_tokens_verify_against_the_jwks_by_kid() -> TestResult {
        let (key, jwk) = es256_key("k1")?;
        let (other_key, other_jwk) = es256_key("k2")?;
        let verifier = verifier(json!({"keys": [jwk, other_jwk]}))?;
        let user = verifier
            .verify(&sign(Algorithm::ES256, &key, Some("k1"))?)
            .await
            .map_err(|rejection| format!("{rejection:?}"))?;
        assert_eq!(user.user_id.as_str(), "alice");
        assert!(user.require_scope("b").is_ok());
        assert!(user.require_scope(SECRETS_READ_SCOPE).is_err());
        assert!(
            verifier
                .verify(&sign(Algorithm::ES256, &other_key, Some("k2"))?)
                .await
                .is_ok()
        );
        // Signed by k2 but claiming k1: refused.
        let forged = sign(Algorithm::ES256, &other_key, Some("k1"))?;
        assert_eq!(
            subject(&verifier, &forged).await,
            Err(TokenRejection::Invalid)
        );
        let unknown = sign(Algorithm::ES256, &key, Some("unknown"))?;
        assert_eq!(
            subject(&verifier, &unknown).await,
            Err(TokenRejection::Invalid)
        );
        Ok(())
    }

    /// The RSAPrivateKey inside a PKCS#8 PrivateKeyInfo (jsonwebtoken signs with PKCS#1 DER):
    /// SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey }.
    fn pkcs1_from_pkcs8(der: &[u8]) -> &[u8] {
        // (tag, header length, content length) of the DER element at the start of `bytes`.
        fn element(bytes: &[u8]) -> (u8, usize, usize) {
            let first = bytes[1] as usize;
            if first < 0x80 {
                return (bytes[0], 2, first);
            }
            let count = first & 0x7f;
            let length = bytes[2..2 + count]
                .iter()
                .fold(0, |acc, b| (acc << 8) | *b as usize);
            (bytes[0], 2 + count, length)
        }
        let (_, outer_header, _) = element(der);
        let mut rest = &der[outer_header..];
        for _ in 0..2 {
            let (_, header, length) = element(rest);
            rest = &rest[header + length..];
        }
        let (tag, header, length) = element(rest);
        assert_eq!(tag, 0x04, "an OCTET STRING");
        &rest[header..header + length]
    }

    #[tokio::test]
    async fn rs256_tokens_verify_against_the_jwks() -> TestResult {
        use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
        use aws_lc_rs::rsa::{KeyPair as RsaPair, KeySize};
        let pair = RsaPair::generate(KeySize::Rsa2048)?;
        let der = AsDer::<Pkcs8V1Der>::as_der(&pair)?;
        let public = KeyPair::public_key(&pair);
        let jwk = json!({
            "kty": "RSA", "kid": "r1", "use": "sig", "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        });
        let verifier = verifier(json!({"keys": [jwk]}))?;
        let key = EncodingKey::from_rsa_der(pkcs1_from_pkcs8(der.as_ref()));
        let token = sign(Algorithm::RS256, &key, Some("r1"))?;
        assert_eq!(subject(&verifier, &token).await, Ok("alice".to_owned()));
        // A token whose signature was changed is refused.
        let mut tampered = token.clone();
        tampered.pop();
        assert!(verifier.verify(&tampered).await.is_err());
        Ok(())
    }

    #[tokio::test]
    async fn hs256_is_refused_when_only_a_jwks_is_configured() -> TestResult {
        let (_, jwk) = es256_key("k1")?;
        let verifier = verifier(json!({"keys": [jwk.clone()]}))?;
        // The classic confusion: an HMAC token keyed with the public key's text.
        let forged = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(jwk.to_string().as_bytes()),
            None,
        )?;
        assert_eq!(
            subject(&verifier, &forged).await,
            Err(TokenRejection::Invalid)
        );
        Ok(())
    }

    #[test]
    fn a_configuration_without_any_key_is_refused() {
        let map = std::collections::HashMap::new();
        assert!(AuthConfig::from_source(&ConfigSource::from_map(&map)).is_err());
        let short = std::collections::HashMap::from([(
            vars::JWT_HS256_SECRET.to_owned(),
            "short".to_owned(),
        )]);
        assert!(AuthConfig::from_source(&ConfigSource::from_map(&short)).is_err());
    }
}
