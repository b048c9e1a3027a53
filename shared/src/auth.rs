//! Bearer-token authentication: the user is the verified JWT's `sub`, nothing else.
//!
//! API Gateway's JWT authorizer checks tokens in AWS; the functions check them again (defence in
//! depth, and `make dev` has no authorizer) with an explicit algorithm allow-list: RS256/ES256 with
//! keys from a JWKS, HS256 only when a development secret is configured. `exp` is required,
//! `iss`/`aud` are checked when configured.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::config::{ConfigError, ConfigSource, vars};
use crate::error::Error;

/// Scope that lets an agent read decrypted account secrets.
pub const SECRETS_READ_SCOPE: &str = "integrations:secrets:read";

/// Clock skew tolerated on `exp`/`nbf`, in seconds.
pub const LEEWAY_SECONDS: u64 = 30;

/// Longest `sub` accepted; it becomes a DynamoDB partition key.
const MAX_SUBJECT_LEN: usize = 256;

/// Where verification keys come from and which claims must match.
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// Public keys (RS256 / ES256).
    pub jwks: Option<JwkSet>,
    /// Shared secret enabling HS256; local development only.
    pub hs256_secret: Option<Zeroizing<Vec<u8>>>,
    /// Expected issuer.
    pub issuer: Option<String>,
    /// Expected audience.
    pub audience: Option<String>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("jwks_keys", &self.jwks.as_ref().map(|set| set.keys.len()))
            .field("hs256", &self.hs256_secret.is_some())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl AuthConfig {
    /// Reads `JWT_JWKS`, `JWT_HS256_SECRET`, `JWT_ISSUER`, `JWT_AUDIENCE`; at least one key source
    /// is required.
    pub fn from_source(source: &ConfigSource<'_>) -> Result<Self, ConfigError> {
        let jwks = source
            .optional(vars::JWT_JWKS)
            .map(|text| {
                serde_json::from_str::<JwkSet>(&text).map_err(|_| ConfigError::Invalid {
                    name: vars::JWT_JWKS,
                    problem: "not a JWKS JSON document".into(),
                })
            })
            .transpose()?;
        let hs256_secret = source
            .optional(vars::JWT_HS256_SECRET)
            .map(|secret| Zeroizing::new(secret.into_bytes()));
        if hs256_secret
            .as_ref()
            .is_some_and(|secret| secret.len() < 32)
        {
            return Err(ConfigError::Invalid {
                name: vars::JWT_HS256_SECRET,
                problem: "must be at least 32 bytes".into(),
            });
        }
        let config = Self {
            jwks,
            hs256_secret,
            issuer: source.optional(vars::JWT_ISSUER),
            audience: source.optional(vars::JWT_AUDIENCE),
        };
        if config.jwks.is_none() && config.hs256_secret.is_none() {
            return Err(ConfigError::Missing(vars::JWT_JWKS));
        }
        Ok(config)
    }
}

struct VerificationKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
    /// The claim rules for this key's algorithm, built once.
    validation: Validation,
}

/// The claim rules: `exp` and `sub` required, `nbf` checked, the leeway, and `iss`/`aud` required
/// and matched when configured.
fn validation_for(algorithm: Algorithm, config: &AuthConfig) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.required_spec_claims = HashSet::from(["exp".to_owned(), "sub".to_owned()]);
    match &config.issuer {
        Some(issuer) => {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".to_owned());
        }
        None => validation.iss = None,
    }
    match &config.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            validation.required_spec_claims.insert("aud".to_owned());
        }
        None => validation.validate_aud = false,
    }
    validation
}

/// Verifies bearer tokens against the configured keys; built once per cold start.
pub struct JwtVerifier {
    keys: Vec<VerificationKey>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    scope: Option<String>,
}

/// Why a token was refused; logged, and summarised in the 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not a JWT, an algorithm outside the allow-list, no key for it, or a bad signature.
    Invalid,
    /// Past `exp` (beyond the leeway).
    Expired,
    /// Wrong or missing `iss` / `aud` / `exp` / `sub`.
    WrongClaims,
}

impl TokenRejection {
    fn public_reason(self) -> &'static str {
        match self {
            Self::Missing => "a bearer token is required",
            Self::Invalid => "the token is invalid",
            Self::Expired => "the token has expired",
            Self::WrongClaims => "the token's claims are not accepted",
        }
    }
}

impl From<TokenRejection> for Error {
    fn from(rejection: TokenRejection) -> Self {
        Error::Unauthorized(rejection.public_reason())
    }
}

impl JwtVerifier {
    /// Builds the verifier; JWKS keys that are neither RSA nor P-256 EC are ignored.
    pub fn new(config: &AuthConfig) -> Self {
        let mut keys = Vec::new();
        if let Some(secret) = &config.hs256_secret {
            keys.push(VerificationKey {
                kid: None,
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret),
                validation: validation_for(Algorithm::HS256, config),
            });
        }
        for jwk in config.jwks.iter().flat_map(|set| set.keys.iter()) {
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => continue,
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.push(VerificationKey {
                    kid: jwk.common.key_id.clone(),
                    algorithm,
                    key,
                    validation: validation_for(algorithm, config),
                });
            }
        }
        Self { keys }
    }

    /// Verifies a compact JWT and returns the authenticated user.
    pub fn verify(&self, token: &str) -> Result<AuthUser, TokenRejection> {
        let header = decode_header(token).map_err(|_| TokenRejection::Invalid)?;
        let candidate = self
            .keys
            .iter()
            .filter(|key| key.algorithm == header.alg)
            .find(|key| match (&header.kid, &key.kid) {
                (Some(wanted), Some(kid)) => wanted == kid,
                (Some(_), None) => key.algorithm == Algorithm::HS256,
                (None, _) => true,
            })
            .ok_or(TokenRejection::Invalid)?;
        let data =
            decode::<Claims>(token, &candidate.key, &candidate.validation).map_err(|error| {
                use jsonwebtoken::errors::ErrorKind;
                match error.kind() {
                    ErrorKind::ExpiredSignature => TokenRejection::Expired,
                    ErrorKind::InvalidIssuer
                    | ErrorKind::InvalidAudience
                    | ErrorKind::MissingRequiredClaim(_)
                    | ErrorKind::ImmatureSignature => TokenRejection::WrongClaims,
                    _ => TokenRejection::Invalid,
                }
            })?;
        let sub = data.claims.sub;
        if sub.is_empty() || sub.len() > MAX_SUBJECT_LEN || sub.chars().any(char::is_control) {
            return Err(TokenRejection::WrongClaims);
        }
        let scopes = data
            .claims
            .scope
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        Ok(AuthUser {
            user_id: UserId(sub),
            scopes,
        })
    }
}

/// The one user identity: the verified token's `sub`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    /// A user id read back from our own storage or queue, where only verified `sub`s are written.
    pub fn from_verified_sub(sub: String) -> Self {
        Self(sub)
    }

    /// The id as text (the DynamoDB partition key).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An authenticated request's user and scopes. As an extractor it answers 401 before the handler
/// runs when the token is missing or invalid.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user (`sub`).
    pub user_id: UserId,
    scopes: Vec<String>,
}

impl AuthUser {
    /// Ok when the token carries `scope`, else 403.
    pub fn require_scope(&self, scope: &'static str) -> Result<(), Error> {
        if self.scopes.iter().any(|granted| granted == scope) {
            Ok(())
        } else {
            Err(Error::MissingScope(scope))
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
        verifier.verify(token).map_err(|rejection| {
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

    fn subject(verifier: &JwtVerifier, token: &str) -> Result<String, TokenRejection> {
        verifier
            .verify(token)
            .map(|user| user.user_id.as_str().to_owned())
    }

    #[test]
    fn es256_tokens_verify_against_the_jwks_by_kid() -> TestResult {
        let (key, jwk) = es256_key("k1")?;
        let (other_key, other_jwk) = es256_key("k2")?;
        let verifier = verifier(json!({"keys": [jwk, other_jwk]}))?;
        let user = verifier
            .verify(&sign(Algorithm::ES256, &key, Some("k1"))?)
            .map_err(|rejection| format!("{rejection:?}"))?;
        assert_eq!(user.user_id.as_str(), "alice");
        assert!(user.require_scope("b").is_ok());
        assert!(user.require_scope(SECRETS_READ_SCOPE).is_err());
        assert!(
            verifier
                .verify(&sign(Algorithm::ES256, &other_key, Some("k2"))?)
                .is_ok()
        );
        // Signed by k2 but claiming k1: refused.
        let forged = sign(Algorithm::ES256, &other_key, Some("k1"))?;
        assert_eq!(subject(&verifier, &forged), Err(TokenRejection::Invalid));
        let unknown = sign(Algorithm::ES256, &key, Some("unknown"))?;
        assert_eq!(subject(&verifier, &unknown), Err(TokenRejection::Invalid));
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

    #[test]
    fn rs256_tokens_verify_against_the_jwks() -> TestResult {
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
        assert_eq!(subject(&verifier, &token), Ok("alice".to_owned()));
        // A token whose signature was changed is refused.
        let mut tampered = token.clone();
        tampered.pop();
        assert!(verifier.verify(&tampered).is_err());
        Ok(())
    }

    #[test]
    fn hs256_is_refused_when_only_a_jwks_is_configured() -> TestResult {
        let (_, jwk) = es256_key("k1")?;
        let verifier = verifier(json!({"keys": [jwk.clone()]}))?;
        // The classic confusion: an HMAC token keyed with the public key's text.
        let forged = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(jwk.to_string().as_bytes()),
            None,
        )?;
        assert_eq!(subject(&verifier, &forged), Err(TokenRejection::Invalid));
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
