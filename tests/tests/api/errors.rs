use pipewise_tests::TestApp;
use reqwest::Method;
use serde_json::json;

const ACCOUNTS: &str = "/api/user/integrations/accounts";

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let app = TestApp::spawn().await;
    app.get("/api/user/nothing-here", "alice")
        .await
        .assert_error(404, "route_not_found");
    app.get("/somewhere/else", "alice")
        .await
        .assert_error(404, "route_not_found");
    let put = app
        .send(
            app.request(Method::PUT, ACCOUNTS)
                .bearer_auth(app.token("alice")),
        )
        .await;
    put.assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn malformed_json_is_400_and_a_missing_content_type_is_415() {
    let app = TestApp::spawn().await;
    let token = app.token("alice");
    let malformed = app
        .send(
            app.request(Method::POST, ACCOUNTS)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body("{\"account_id\": "),
        )
        .await;
    malformed.assert_error(400, "malformed_json");
    let trailing = app
        .send(
            app.request(Method::POST, ACCOUNTS)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body("{} {}"),
        )
        .await;
    trailing.assert_error(400, "malformed_json");
    let no_type = app
        .send(
            app.request(Method::POST, ACCOUNTS)
                .bearer_auth(&token)
                .body("{}"),
        )
        .await;
    no_type.assert_error(415, "unsupported_media_type");
}

#[tokio::test]
async fn a_body_over_64_kb_is_413() {
    let app = TestApp::spawn().await;
    let body = json!({"account_id": "big", "account_type": "crm", "configuration": {"blob": "x".repeat(70 * 1024)}});
    app.post(ACCOUNTS, "alice", &body)
        .await
        .assert_error(413, "payload_too_large");
}

#[tokio::test]
async fn invalid_fields_are_422_with_every_field_named() {
    let app = TestApp::spawn().await;
    let body = json!({"account_id": "has space", "account_type": "fax", "label": "x".repeat(201),
        "configuration": {"a": {"b": {"c": {"d": {}}}}}});
    let response = app.post(ACCOUNTS, "alice", &body).await;
    response.assert_error(422, "validation_failed");
    let fields: Vec<&str> = response.body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["account_id", "account_type", "label", "configuration"]
    );

    let big = json!({"account_id": "big", "account_type": "crm", "configuration": {"blob": "x".repeat(17 * 1024)}});
    let response = app.post(ACCOUNTS, "alice", &big).await;
    response.assert_error(422, "validation_failed");
    assert_eq!(
        response.body["error"]["details"][0]["field"],
        "configuration"
    );

    let wrong_type = app
        .post(
            ACCOUNTS,
            "alice",
            &json!({"account_id": 7, "account_type": "crm"}),
        )
        .await;
    wrong_type.assert_error(422, "validation_failed");
    assert_eq!(
        wrong_type.body["error"]["details"][0]["field"],
        "account_id"
    );
    let missing = app
        .post(ACCOUNTS, "alice", &json!({"account_type": "crm"}))
        .await;
    missing.assert_error(422, "validation_failed");
    assert_eq!(missing.body["error"]["details"][0]["field"], "account_id");
    let not_object = app.post(ACCOUNTS, "alice", &json!([1, 2])).await;
    not_object.assert_error(422, "validation_failed");
}

#[tokio::test]
async fn a_path_that_cannot_name_an_account_is_404() {
    let app = TestApp::spawn().await;
    app.get(&format!("{ACCOUNTS}/{}", "a".repeat(65)), "alice")
        .await
        .assert_error(404, "not_found");
    app.get(&format!("{ACCOUNTS}/bad%20id"), "alice")
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let app = TestApp::spawn().await;
    let echoed = app
        .send(
            app.request(Method::GET, "/api/user/nothing")
                .header("x-request-id", "req-123"),
        )
        .await;
    assert_eq!(echoed.body["error"]["request_id"], "req-123");
    assert_eq!(echoed.headers["x-request-id"], "req-123");
    let made = app.send(app.request(Method::GET, "/api/user/health")).await;
    assert!(made.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn a_failing_dependency_is_503_with_retry_after_and_stores_nothing() {
    // KMS refuses every data key: the function points at a key that does not exist.
    let app = TestApp::spawn_with(|environment| {
        environment.insert(
            "SECRETS_KMS_KEY_ID".into(),
            "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000".into(),
        );
    })
    .await;
    let body = json!({"account_id": "gmail", "account_type": "email", "configuration": {"api_key": "k-secret"}});
    let refused = app.post(ACCOUNTS, "alice", &body).await;
    refused.assert_error(503, "service_unavailable");
    assert!(refused.headers.contains_key("retry-after"));
    assert!(
        !refused.text.contains("NotFound") && !refused.text.contains("arn:"),
        "no SDK text: {}",
        refused.text
    );
    app.get(&format!("{ACCOUNTS}/gmail"), "alice")
        .await
        .assert_error(404, "not_found");
    let items = app
        .dynamodb()
        .scan()
        .table_name(app.resource("AccountsTable"))
        .send()
        .await
        .unwrap();
    assert_eq!(items.count(), 0, "nothing partial is stored");

    // DynamoDB gone: reads are 503 too.
    app.dynamodb()
        .delete_table()
        .table_name(app.resource("AccountsTable"))
        .send()
        .await
        .unwrap();
    let down = app.get(ACCOUNTS, "alice").await;
    down.assert_error(503, "service_unavailable");
    assert!(down.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn cors_allows_the_configured_origins_only() {
    let app = TestApp::spawn().await;
    let preflight = app
        .send(
            app.request(Method::OPTIONS, ACCOUNTS)
                .header("origin", "http://localhost:3000")
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization,content-type",
                ),
        )
        .await;
    assert!(preflight.status.is_success(), "{}", preflight.status);
    assert_eq!(
        preflight.headers["access-control-allow-origin"],
        "http://localhost:3000"
    );
    // Error answers carry CORS headers too, so a browser can read them.
    let error = app
        .send(
            app.request(Method::GET, ACCOUNTS)
                .header("origin", "http://localhost:5173"),
        )
        .await;
    error.assert_status(401);
    assert_eq!(
        error.headers["access-control-allow-origin"],
        "http://localhost:5173"
    );
    let evil = app
        .send(
            app.request(Method::OPTIONS, ACCOUNTS)
                .header("origin", "https://evil.example")
                .header("access-control-request-method", "GET"),
        )
        .await;
    assert!(!evil.headers.contains_key("access-control-allow-origin"));
}

/// Every list route reads its query the same way: a bad parameter is a 422 that names it and
/// never repeats what was sent.
#[tokio::test]
async fn a_bad_query_parameter_is_named_and_never_echoed() {
    let app = TestApp::spawn().await;
    for (path, field) in [
        ("/api/user/communication-targets?limit=0", "limit"),
        ("/api/user/communication-targets?limit=CANARY77", "limit"),
        ("/api/user/orchestrator/runs?limit=101", "limit"),
        (
            "/api/user/integrations/accounts?account_type=CANARY77",
            "account_type",
        ),
    ] {
        let answer = app.get(path, "alice").await;
        answer.assert_error(422, "validation_failed");
        assert_eq!(answer.body["error"]["details"][0]["field"], field, "{path}");
        assert!(!answer.text.contains("CANARY77"), "{path}: {}", answer.text);
    }
    app.get("/api/user/orchestrator/runs?limit=100", "alice")
        .await
        .assert_status(200);
}
