use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use pipewise_tests::{DEV_AUDIENCE, DEV_ISSUER, DEV_JWT_SECRET, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

const ACCOUNTS: &str = "/api/user/integrations/accounts";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn valid_claims() -> Value {
    json!({"sub": "alice", "iss": DEV_ISSUER, "aud": DEV_AUDIENCE, "exp": now() + 600})
}

fn sign(claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn with(mut claims: Value, field: &str, value: Value) -> Value {
    if value.is_null() {
        claims.as_object_mut().unwrap().remove(field);
    } else {
        claims[field] = value;
    }
    claims
}

async fn call_with(app: &TestApp, authorization: Option<String>) -> pipewise_tests::TestResponse {
    let mut request = app.request(Method::GET, ACCOUNTS);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    app.send(request).await
}

#[tokio::test]
async fn a_valid_token_is_accepted_and_its_sub_is_the_user() {
    let app = TestApp::spawn().await;
    let token = sign(&valid_claims(), DEV_JWT_SECRET);
    call_with(&app, Some(format!("Bearer {token}")))
        .await
        .assert_status(200);
    // The scheme is case-insensitive.
    call_with(&app, Some(format!("bearer {token}")))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn every_bad_token_is_a_401_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(valid_claims().to_string())
    );
    let hs512 = encode(
        &Header::new(Algorithm::HS512),
        &valid_claims(),
        &EncodingKey::from_secret(DEV_JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing header", None),
        ("empty bearer", Some("Bearer ".into())),
        ("basic scheme", Some("Basic YWxpY2U6cHc=".into())),
        ("malformed", Some("Bearer not.a.jwt".into())),
        ("garbage", Some("Bearer abc".into())),
        ("alg none", Some(format!("Bearer {alg_none}"))),
        (
            "alg outside the allow-list",
            Some(format!("Bearer {hs512}")),
        ),
        (
            "wrong signature",
            Some(format!(
                "Bearer {}",
                sign(&valid_claims(), "another-secret-of-at-least-32-bytes!!")
            )),
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                sign(
                    &with(valid_claims(), "exp", json!(now() - 3600)),
                    DEV_JWT_SECRET
                )
            )),
        ),
        (
            "no exp",
            Some(format!(
                "Bearer {}",
                sign(&with(valid_claims(), "exp", Value::Null), DEV_JWT_SECRET)
            )),
        ),
        (
            "wrong issuer",
            Some(format!(
                "Bearer {}",
                sign(
                    &with(valid_claims(), "iss", json!("https://evil.example")),
                    DEV_JWT_SECRET
                )
            )),
        ),
        (
            "no issuer",
            Some(format!(
                "Bearer {}",
                sign(&with(valid_claims(), "iss", Value::Null), DEV_JWT_SECRET)
            )),
        ),
        (
            "wrong audience",
            Some(format!(
                "Bearer {}",
                sign(
                    &with(valid_claims(), "aud", json!("another-api")),
                    DEV_JWT_SECRET
                )
            )),
        ),
        (
            "no sub",
            Some(format!(
                "Bearer {}",
                sign(&with(valid_claims(), "sub", Value::Null), DEV_JWT_SECRET)
            )),
        ),
        (
            "empty sub",
            Some(format!(
                "Bearer {}",
                sign(&with(valid_claims(), "sub", json!("")), DEV_JWT_SECRET)
            )),
        ),
        (
            // `#` starts the service's own DynamoDB partitions (e.g. the pointer from an SES
            // message id to its communication): no user may land in one.
            "sub naming a service partition",
            Some(format!(
                "Bearer {}",
                sign(
                    &with(valid_claims(), "sub", json!("#provider-message#m-1")),
                    DEV_JWT_SECRET
                )
            )),
        ),
    ];
    for (case, authorization) in cases {
        let response = call_with(&app, authorization).await;
        assert_eq!(response.status.as_u16(), 401, "{case}: {}", response.text);
        assert_eq!(response.error_code(), "unauthorized", "{case}");
        assert!(response.headers.contains_key("www-authenticate"), "{case}");
    }
}

#[tokio::test]
async fn a_token_within_the_leeway_is_still_accepted() {
    let app = TestApp::spawn().await;
    let token = sign(
        &with(valid_claims(), "exp", json!(now() - 5)),
        DEV_JWT_SECRET,
    );
    call_with(&app, Some(format!("Bearer {token}")))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn the_user_is_the_sub_never_a_body_field() {
    let app = TestApp::spawn().await;
    let body =
        json!({"account_id": "a1", "account_type": "crm", "user_id": "bob", "configuration": {}});
    app.post(ACCOUNTS, "alice", &body).await.assert_status(201);
    assert_eq!(app.get(ACCOUNTS, "bob").await.body["total"], 0);
    assert_eq!(app.get(ACCOUNTS, "alice").await.body["total"], 1);
}
