//! Real identity providers: Cognito user pools in the emulator (created from template.yaml, real
//! RS256 tokens from `AdminInitiateAuth`), an OpenID issuer of our own whose keys rotate, and the
//! token attack matrix.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pipewise::auth::{AuthConfig, JwtVerifier, TokenRejection};
use pipewise::config::{ConfigSource, vars};
use pipewise_tests::TestApp;
use pipewise_tests::cognito::{another_client, another_pool, emulator_signing_key_der, sign_in};
use pipewise_tests::jwks_server::{JwksServer, SigningKey};
use reqwest::Method;
use serde_json::{Value, json};

const ACCOUNTS: &str = "/api/user/integrations/accounts";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

async fn call(app: &TestApp, token: &str) -> pipewise_tests::TestResponse {
    app.send(app.request(Method::GET, ACCOUNTS).bearer_auth(token))
        .await
}

/// A Cognito-shaped access token signed with the emulator's own pool key (kid `dummy`).
fn emulator_signed(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_der(&emulator_signing_key_der());
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("dummy".into());
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

struct CognitoApp {
    app: TestApp,
    pool: String,
    client: String,
    issuer: String,
}

async fn cognito_app() -> CognitoApp {
    let app = TestApp::spawn_cognito().await;
    let pool = app.resource("UserPool").to_owned();
    let client = app.resource("UserPoolClient").to_owned();
    let issuer = app.environment[vars::JWT_ISSUER].clone();
    CognitoApp {
        app,
        pool,
        client,
        issuer,
    }
}

#[tokio::test]
async fn cognito_access_tokens_are_accepted_and_everything_else_of_cognito_refused() {
    let cognito = cognito_app().await;
    let app = &cognito.app;
    assert!(
        cognito.issuer.ends_with(&cognito.pool),
        "{}",
        cognito.issuer
    );
    let alice = sign_in(app, &cognito.pool, &cognito.client, "alice").await;
    let created = app
        .send(
            app.request(Method::POST, ACCOUNTS)
                .bearer_auth(&alice.access_token)
                .json(&json!({"account_id": "crm", "account_type": "crm"})),
        )
        .await;
    created.assert_status(201);
    call(app, &alice.access_token).await.assert_status(200);
    // An ID token is not a bearer token.
    call(app, &alice.id_token)
        .await
        .assert_error(401, "unauthorized");
    // Another app client of the same pool, and another pool.
    let other_client = another_client(app, &cognito.pool).await;
    let via_other_client = sign_in(app, &cognito.pool, &other_client, "alice").await;
    call(app, &via_other_client.access_token)
        .await
        .assert_error(401, "unauthorized");
    let (pool, client) = another_pool(app).await;
    let other_pool = sign_in(app, &pool, &client, "alice").await;
    call(app, &other_pool.access_token)
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn the_secrets_scope_is_the_resource_servers_scope() {
    let cognito = cognito_app().await;
    let app = &cognito.app;
    let scope = app.environment[vars::SECRETS_SCOPE].clone();
    assert_eq!(scope, "pipewise-user-api/secrets.read");
    let alice = sign_in(app, &cognito.pool, &cognito.client, "alice").await;
    app.send(
        app.request(Method::POST, ACCOUNTS)
            .bearer_auth(&alice.access_token)
            .json(&json!({"account_id": "crm", "account_type": "crm", "configuration": {"api_key": "k-1"}})),
    )
    .await
    .assert_status(201);
    let secrets = format!("{ACCOUNTS}/crm/secrets");
    // A sign-in token carries only `aws.cognito.signin.user.admin`.
    app.send(
        app.request(Method::GET, &secrets)
            .bearer_auth(&alice.access_token),
    )
    .await
    .assert_error(403, "insufficient_scope");
    // The emulator issues custom scopes only through a hosted-UI flow it lacks; the pool's own
    // key signs the token Cognito would issue there, to the agents' app client (the only one
    // allowed the scope: least_privilege.rs).
    let sub = decode_claims(&alice.access_token)["sub"].clone();
    let agents = app.resource("AgentsUserPoolClient");
    let agent = emulator_signed(&json!({
        "iss": cognito.issuer, "sub": sub, "client_id": agents, "token_use": "access",
        "scope": format!("openid {scope}"), "iat": now(), "exp": now() + 300,
    }));
    let revealed = app
        .send(app.request(Method::GET, &secrets).bearer_auth(&agent))
        .await;
    revealed.assert_status(200);
    assert_eq!(revealed.body["configuration"]["api_key"], "k-1");
}

fn decode_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn tamper(token: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims = decode_claims(token);
    change(&mut claims);
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    parts.join(".")
}

#[tokio::test]
async fn the_token_attack_matrix_is_refused_before_any_store() {
    let cognito = cognito_app().await;
    let app = &cognito.app;
    let real = sign_in(app, &cognito.pool, &cognito.client, "mallory").await;
    let claims = |changes: Value| {
        let mut base = json!({"iss": cognito.issuer, "sub": "mallory-sub", "client_id": cognito.client,
            "token_use": "access", "iat": now(), "exp": now() + 300});
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                base.as_object_mut().unwrap().remove(key);
            } else {
                base[key] = value.clone();
            }
        }
        base
    };
    let public_jwks = reqwest::get(format!(
        "{}/{}/.well-known/jwks.json",
        std::env::var("AWS_ENDPOINT_URL").unwrap(),
        cognito.pool
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims(json!({})).to_string())
    );
    let hs256_with_public_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(json!({})),
        &EncodingKey::from_secret(public_jwks.as_bytes()),
    )
    .unwrap();
    let mut unknown_kid_header = Header::new(Algorithm::RS256);
    unknown_kid_header.kid = Some("not-a-key".into());
    let unknown_kid = jsonwebtoken::encode(
        &unknown_kid_header,
        &claims(json!({})),
        &EncodingKey::from_rsa_der(&emulator_signing_key_der()),
    )
    .unwrap();
    let cases: Vec<(&str, String)> = vec![
        ("alg none", unsigned),
        ("HS256 keyed with the RSA public key", hs256_with_public_key),
        (
            "expired",
            emulator_signed(&claims(json!({"exp": now() - 600, "iat": now() - 4000}))),
        ),
        (
            "nbf in the future",
            emulator_signed(&claims(json!({"nbf": now() + 600}))),
        ),
        (
            "iat in the future",
            emulator_signed(&claims(json!({"iat": now() + 600}))),
        ),
        (
            "exp as a string",
            emulator_signed(&claims(json!({"exp": (now() + 300).to_string()}))),
        ),
        ("no exp", emulator_signed(&claims(json!({"exp": null})))),
        (
            "wrong iss",
            emulator_signed(&claims(
                json!({"iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_other"}),
            )),
        ),
        (
            "wrong client_id",
            emulator_signed(&claims(json!({"client_id": "another-client"}))),
        ),
        (
            "aud instead of client_id",
            emulator_signed(&claims(json!({"client_id": null, "aud": cognito.client}))),
        ),
        ("ID token as bearer", real.id_token.clone()),
        ("unknown kid", unknown_kid),
        (
            "tampered payload",
            tamper(&real.access_token, |c| c["sub"] = json!("someone-else")),
        ),
        ("empty sub", emulator_signed(&claims(json!({"sub": ""})))),
    ];
    let mut refused = 0;
    for (name, token) in &cases {
        let answer = app
            .send(
                app.request(Method::POST, ACCOUNTS)
                    .bearer_auth(token)
                    .json(&json!({"account_id": "x", "account_type": "crm"})),
            )
            .await;
        assert_eq!(answer.status, 401, "{name}: {}", answer.text);
        refused += 1;
    }
    // A token only in the query string is no token.
    let query_only = app
        .send(
            app.request(
                Method::POST,
                &format!("{ACCOUNTS}?access_token={}", real.access_token),
            )
            .json(&json!({"account_id": "x", "account_type": "crm"})),
        )
        .await;
    query_only.assert_error(401, "unauthorized");
    refused += 1;
    let stored = app
        .dynamodb()
        .scan()
        .table_name(app.resource("AccountsTable"))
        .send()
        .await
        .unwrap()
        .count;
    assert_eq!(stored, 0, "no refused token reached a store");
    eprintln!("figures: {refused} attack tokens, {refused} refused with 401, 0 reached a store");
}

#[tokio::test]
async fn unreachable_issuer_keys_answer_503_never_401() {
    let cognito = cognito_app().await;
    let alice = sign_in(&cognito.app, &cognito.pool, &cognito.client, "alice").await;
    let broken = cognito
        .app
        .serve_variant(|environment| {
            environment.insert(
                vars::JWT_DISCOVERY_URL.to_owned(),
                "http://127.0.0.1:9/.well-known/openid-configuration".to_owned(),
            );
        })
        .await;
    let answer = call(&broken, &alice.access_token).await;
    answer.assert_error(503, "service_unavailable");
    assert!(answer.headers.contains_key("retry-after"));
}

fn issuer_config(server: &JwksServer, refetch_seconds: u64) -> AuthConfig {
    let map = HashMap::from([
        (vars::JWT_ISSUER.to_owned(), server.url.clone()),
        (vars::JWT_AUDIENCE.to_owned(), "pipewise".to_owned()),
        (
            vars::JWT_DISCOVERY_URL.to_owned(),
            format!("{}/.well-known/openid-configuration", server.url),
        ),
        (
            vars::JWT_KEYS_REFETCH_SECONDS.to_owned(),
            refetch_seconds.to_string(),
        ),
    ]);
    AuthConfig::from_source(&ConfigSource::from_map(&map)).expect("issuer config")
}

fn oidc_claims(server: &JwksServer) -> Value {
    json!({"iss": server.url, "sub": "alice", "aud": ["pipewise", "other"], "iat": now(), "exp": now() + 300})
}

#[tokio::test]
async fn rotated_keys_are_followed_without_a_restart() {
    let old = SigningKey::generate("2026-11-old");
    let new = SigningKey::generate("2026-11-new");
    let server = JwksServer::start(&[&old]).await;
    let verifier = JwtVerifier::new(&issuer_config(&server, 1));
    verifier.prefetch().await;
    assert_eq!(server.fetches(), 1, "fetched once at cold start");
    let claims = oidc_claims(&server);
    assert!(verifier.verify(&old.sign(&claims)).await.is_ok());
    // The issuer rotates: the new key is published, the old one removed.
    server.publish(&[&new]);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let user = verifier
        .verify(&new.sign(&claims))
        .await
        .expect("the new key is fetched");
    assert_eq!(user.user_id.as_str(), "alice");
    assert_eq!(server.fetches(), 2);
    assert_eq!(
        verifier.verify(&old.sign(&claims)).await.err(),
        Some(TokenRejection::Invalid),
        "the removed key no longer verifies after the refresh"
    );
}

#[tokio::test]
async fn a_burst_of_unknown_kids_fetches_the_keys_at_most_once() {
    let known = SigningKey::generate("known");
    let server = JwksServer::start(&[&known]).await;
    let verifier = Arc::new(JwtVerifier::new(&issuer_config(&server, 30)));
    verifier.prefetch().await;
    let claims = oidc_claims(&server);
    let tokens: Vec<String> = (0..100)
        .map(|i| SigningKey::generate(&format!("unknown-{i}")).sign(&claims))
        .collect();
    let results =
        futures::future::join_all(tokens.iter().map(|token| verifier.verify(token))).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().err() == Some(&TokenRejection::Invalid))
    );
    assert!(
        server.fetches() <= 2,
        "cold start + at most one refetch, got {}",
        server.fetches()
    );
    assert_eq!(verifier.key_fetches(), server.fetches());
    // A failed fetch keeps the keys: the known key still verifies.
    assert!(verifier.verify(&known.sign(&claims)).await.is_ok());
}

#[tokio::test]
async fn a_second_issuer_names_its_users_apart() {
    let primary_key = SigningKey::generate("p");
    let primary = JwksServer::start(&[&primary_key]).await;
    let legacy_key = SigningKey::generate("l");
    let legacy = JwksServer::start(&[&legacy_key]).await;
    let extra = json!([{"issuer": legacy.url, "token_use": "oidc_access", "audiences": ["authenticated"],
        "discovery_url": format!("{}/.well-known/openid-configuration", legacy.url), "user_prefix": "supabase:"}]);
    let map = HashMap::from([
        (vars::JWT_ISSUER.to_owned(), primary.url.clone()),
        (vars::JWT_AUDIENCE.to_owned(), "pipewise".to_owned()),
        (
            vars::JWT_DISCOVERY_URL.to_owned(),
            format!("{}/.well-known/openid-configuration", primary.url),
        ),
        (vars::JWT_EXTRA_ISSUERS.to_owned(), extra.to_string()),
    ]);
    let verifier =
        JwtVerifier::new(&AuthConfig::from_source(&ConfigSource::from_map(&map)).unwrap());
    let same_sub = "8f14e45f-ceea-467f-a8f4-4d0ab6a9b1b2";
    let primary_user = verifier
        .verify(&primary_key.sign(
            &json!({"iss": primary.url, "sub": same_sub, "aud": "pipewise", "exp": now() + 300}),
        ))
        .await
        .unwrap();
    let legacy_user = verifier
        .verify(&legacy_key.sign(&json!({"iss": legacy.url, "sub": same_sub, "aud": "authenticated", "exp": now() + 300})))
        .await
        .unwrap();
    assert_eq!(primary_user.user_id.as_str(), same_sub);
    assert_eq!(legacy_user.user_id.as_str(), format!("supabase:{same_sub}"));
    // A primary subject that looks prefixed could collide: refused while two issuers run.
    let spoof = primary_key.sign(&json!({"iss": primary.url, "sub": format!("supabase:{same_sub}"), "aud": "pipewise", "exp": now() + 300}));
    assert_eq!(
        verifier.verify(&spoof).await.err(),
        Some(TokenRejection::WrongClaims)
    );
    // The legacy issuer's key does not sign for the primary one.
    let crossed = legacy_key
        .sign(&json!({"iss": primary.url, "sub": same_sub, "aud": "pipewise", "exp": now() + 300}));
    assert!(verifier.verify(&crossed).await.is_err());
}
