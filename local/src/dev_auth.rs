//! Development tokens: HS256 with a fixed, public secret that only the local stack accepts.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde::Serialize;

use crate::template::Resolved;

/// The development signing secret. Public on purpose: it is never configured in AWS, where
/// tokens are RS256/ES256 from the issuer's JWKS.
pub const DEV_JWT_SECRET: &str = "pipewise-local-development-secret-not-for-aws";
/// Issuer of development tokens.
pub const DEV_ISSUER: &str = "https://auth.pipewise.local";
/// Audience of development tokens.
pub const DEV_AUDIENCE: &str = "pipewise-user-api";
/// Origins of the frontend in development (Next.js / CRA and Vite defaults).
pub const DEV_CORS_ORIGINS: [&str; 2] = ["http://localhost:3000", "http://localhost:5173"];

#[derive(Serialize)]
struct DevClaims<'a> {
    sub: &'a str,
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
}

/// A development token for `sub`, valid for `ttl_seconds`, with an optional space-separated scope.
pub fn dev_token(sub: &str, scope: Option<&str>, ttl_seconds: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = DevClaims {
        sub,
        iss: DEV_ISSUER,
        aud: DEV_AUDIENCE,
        iat: now,
        exp: now + ttl_seconds,
        scope,
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(DEV_JWT_SECRET.as_bytes()),
    )
    .unwrap_or_default()
}

/// Template parameters for a local stack with Cognito: the template's own user pool, created
/// in the emulator (`make dev IDP=cognito`).
pub fn cognito_parameters() -> HashMap<String, Resolved> {
    let mut parameters = dev_parameters();
    parameters.insert(
        "IdentityProvider".to_owned(),
        Resolved::Text("cognito".to_owned()),
    );
    parameters
}

/// Template parameters for a local stack: dev issuer, audience and CORS origins, no JWKS.
pub fn dev_parameters() -> HashMap<String, Resolved> {
    HashMap::from([
        (
            "IdentityProvider".to_owned(),
            Resolved::Text("external".to_owned()),
        ),
        (
            "JwtIssuer".to_owned(),
            Resolved::Text(DEV_ISSUER.to_owned()),
        ),
        (
            "JwtAudience".to_owned(),
            Resolved::Text(DEV_AUDIENCE.to_owned()),
        ),
        ("JwtJwks".to_owned(), Resolved::Text(String::new())),
        ("LogLevel".to_owned(), Resolved::Text("info".to_owned())),
        // Local receivers (`http://127.0.0.1:<port>`) may get webhooks; nothing else private.
        (
            "WebhookAllowLoopback".to_owned(),
            Resolved::Text("true".to_owned()),
        ),
        (
            "PublicApiBaseUrl".to_owned(),
            Resolved::Text("http://127.0.0.1:8001".to_owned()),
        ),
        (
            "CorsAllowedOrigins".to_owned(),
            Resolved::List(DEV_CORS_ORIGINS.iter().map(|o| (*o).to_owned()).collect()),
        ),
    ])
}

/// Variables the local stack sets beyond the template's: with the template's Cognito user pool,
/// where the emulator serves the pool's discovery document (moto names AWS's host in `iss`);
/// otherwise the development HS256 secret.
pub fn dev_overrides(stack: &crate::stack::LocalStack) -> Vec<(&'static str, String)> {
    match stack.physical.get("UserPool") {
        Some(pool_id) => {
            let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
            vec![(
                pipewise::config::vars::JWT_DISCOVERY_URL,
                format!(
                    "{}/{pool_id}/.well-known/openid-configuration",
                    endpoint.trim_end_matches('/')
                ),
            )]
        }
        None => vec![(
            pipewise::config::vars::JWT_HS256_SECRET,
            DEV_JWT_SECRET.to_owned(),
        )],
    }
}
