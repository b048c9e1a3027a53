use pipewise_tests::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

const ACCOUNTS: &str = "/api/user/integrations/accounts";

/// An address of this test's own: the emulator's SES is shared by every test, and a claim's
/// verification attempt replaces an identity another test's attempt made (nextest runs each test
/// in its own process, so this is per test).
fn address(local: &str) -> String {
    static DOMAIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "t{}.example.com",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        )
    });
    format!("{local}@{}", *DOMAIN)
}

fn seed() -> Value {
    json!({
        "account_id": "gmail-work",
        "account_type": "email",
        "configuration": {"from_address": address("me"), "access_token": "ya29.secret-value"}
    })
}

async fn secrets_of(app: &TestApp, user: &str, account_id: &str) -> pipewise_tests::TestResponse {
    app.send(
        app.request(Method::GET, &format!("{ACCOUNTS}/{account_id}/secrets"))
            .bearer_auth(app.token_with_scope(user, "profile integrations:secrets:read")),
    )
    .await
}

#[tokio::test]
async fn health_answers_without_a_token() {
    let app = TestApp::spawn().await;
    let response = app.send(app.request(Method::GET, "/api/user/health")).await;
    response.assert_status(200);
    assert_eq!(response.body["status"], "ok");
    assert_eq!(response.body["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn the_seed_body_creates_then_updates_an_account_with_secrets_masked() {
    let app = TestApp::spawn().await;
    // Pending until SES has verified the sender this claim asked it to verify.
    let created = app.post(ACCOUNTS, "alice", &seed()).await;
    created.assert_status(201);
    let account = &created.body;
    assert_eq!(account["account_id"], "gmail-work");
    assert_eq!(account["account_type"], "email");
    assert_eq!(account["connected"], false);
    assert_eq!(account["status_reason"], "sender_pending_verification");
    assert_eq!(account["configuration"]["from_address"], address("me"));
    app.sender_verified("alice", "gmail-work").await;
    assert_eq!(account["configuration"]["access_token"], "********");
    assert_eq!(account["secret_fields"], json!(["access_token"]));
    assert!(!created.text.contains("ya29.secret-value"));
    assert!(
        account["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    let mut changed = seed();
    changed["label"] = json!("Work inbox");
    let updated = app.post(ACCOUNTS, "alice", &changed).await;
    updated.assert_status(200);
    assert_eq!(updated.body["label"], "Work inbox");
    assert_eq!(updated.body["created_at"], account["created_at"]);

    let listed = app.get(ACCOUNTS, "alice").await;
    listed.assert_status(200);
    assert_eq!(listed.body["total"], 1);
    assert_eq!(listed.body["accounts"][0]["label"], "Work inbox");
    assert!(!listed.text.contains("ya29.secret-value"));
}

#[tokio::test]
async fn two_accounts_of_one_provider_live_side_by_side_and_filter_by_type() {
    let app = TestApp::spawn().await;
    for (id, kind) in [
        ("cal-home", "calendar"),
        ("cal-work", "calendar"),
        ("hubspot", "crm"),
    ] {
        app.post(ACCOUNTS, "alice", &json!({"account_id": id, "account_type": kind, "provider": "google", "configuration": {}}))
            .await
            .assert_status(201);
    }
    let calendars = app
        .get(&format!("{ACCOUNTS}?account_type=calendar"), "alice")
        .await;
    calendars.assert_status(200);
    assert_eq!(calendars.body["total"], 2);
    let ids: Vec<&str> = calendars.body["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["cal-home", "cal-work"]);
    app.get(&format!("{ACCOUNTS}?account_type=fax"), "alice")
        .await
        .assert_error(422, "validation_failed");
    assert_eq!(app.get(ACCOUNTS, "bob").await.body["total"], 0);
}

#[tokio::test]
async fn get_and_delete_one_account_and_never_another_users() {
    let app = TestApp::spawn().await;
    app.post(ACCOUNTS, "alice", &seed())
        .await
        .assert_status(201);
    let path = format!("{ACCOUNTS}/gmail-work");
    let one = app.get(&path, "alice").await;
    one.assert_status(200);
    assert_eq!(one.body["configuration"]["access_token"], "********");

    app.get(&path, "bob").await.assert_error(404, "not_found");
    app.delete(&path, "bob")
        .await
        .assert_error(404, "not_found");
    secrets_of(&app, "bob", "gmail-work")
        .await
        .assert_error(404, "not_found");

    app.delete(&path, "alice").await.assert_status(204);
    app.get(&path, "alice").await.assert_error(404, "not_found");
    app.delete(&path, "alice")
        .await
        .assert_error(404, "not_found");
    // The item and its ciphertext are gone from the table.
    let raw = app
        .dynamodb()
        .scan()
        .table_name(app.resource("AccountsTable"))
        .send()
        .await
        .unwrap();
    assert!(raw.items().iter().all(|item| !item.contains_key("secrets")));
}

#[tokio::test]
async fn secrets_need_the_scope_and_come_back_decrypted() {
    let app = TestApp::spawn().await;
    let body = json!({
        "account_id": "x-main", "account_type": "social", "provider": "twitter",
        "configuration": {"handle": "pipewise", "oauth": {"access_token": "tok-1", "access_token_secret": "sec-1"},
                          "keys": [{"api_key": "k-1"}]}
    });
    let created = app.post(ACCOUNTS, "alice", &body).await;
    created.assert_status(201);
    assert_eq!(
        created.body["secret_fields"],
        json!([
            "keys.0.api_key",
            "oauth.access_token",
            "oauth.access_token_secret"
        ])
    );

    app.get(&format!("{ACCOUNTS}/x-main/secrets"), "alice")
        .await
        .assert_error(403, "insufficient_scope");
    let revealed = secrets_of(&app, "alice", "x-main").await;
    revealed.assert_status(200);
    assert_eq!(revealed.body["configuration"], body["configuration"]);
}

#[tokio::test]
async fn posting_the_mask_back_keeps_the_stored_secret() {
    let app = TestApp::spawn().await;
    app.post(ACCOUNTS, "alice", &seed())
        .await
        .assert_status(201);
    let read = app.get(&format!("{ACCOUNTS}/gmail-work"), "alice").await;
    let mut edited = read.body.clone();
    edited["configuration"]["from_address"] = json!(address("sales"));
    app.post(ACCOUNTS, "alice", &edited)
        .await
        .assert_status(200);

    let revealed = secrets_of(&app, "alice", "gmail-work").await;
    revealed.assert_status(200);
    assert_eq!(
        revealed.body["configuration"]["access_token"],
        "ya29.secret-value"
    );
    assert_eq!(
        revealed.body["configuration"]["from_address"],
        address("sales").as_str()
    );

    // A new value replaces it; a mask where nothing is stored is refused.
    let mut rotated = seed();
    rotated["configuration"]["access_token"] = json!("ya29.rotated");
    rotated["configuration"]["refresh_token"] = json!("********");
    let refused = app.post(ACCOUNTS, "alice", &rotated).await;
    refused.assert_error(422, "validation_failed");
    assert_eq!(
        refused.body["error"]["details"][0]["field"],
        "configuration.refresh_token"
    );
    rotated["configuration"]
        .as_object_mut()
        .unwrap()
        .remove("refresh_token");
    app.post(ACCOUNTS, "alice", &rotated)
        .await
        .assert_status(200);
    let revealed = secrets_of(&app, "alice", "gmail-work").await;
    assert_eq!(
        revealed.body["configuration"]["access_token"],
        "ya29.rotated"
    );
}

#[tokio::test]
async fn a_disconnected_account_needs_a_reason() {
    let app = TestApp::spawn().await;
    let mut body = seed();
    body["connected"] = json!(false);
    let refused = app.post(ACCOUNTS, "alice", &body).await;
    refused.assert_error(422, "validation_failed");
    assert_eq!(
        refused.body["error"]["details"][0]["field"],
        "status_reason"
    );
    body["status_reason"] = json!("token revoked by the user");
    let saved = app.post(ACCOUNTS, "alice", &body).await;
    saved.assert_status(201);
    assert_eq!(saved.body["connected"], false);
    assert_eq!(saved.body["status_reason"], "token revoked by the user");
}

#[tokio::test]
async fn tools_follow_the_connected_accounts() {
    let app = TestApp::spawn().await;
    let tools = app.get("/api/user/integrations/tools", "alice").await;
    tools.assert_status(200);
    assert_eq!(tools.body["tools"], json!([]));

    app.post(ACCOUNTS, "alice", &seed())
        .await
        .assert_status(201);
    app.post(
        ACCOUNTS,
        "alice",
        &json!({"account_id": "ig", "account_type": "social", "provider": "instagram",
        "connected": false, "status_reason": "expired"}),
    )
    .await
    .assert_status(201);
    let tools = app.get("/api/user/integrations/tools", "alice").await;
    tools.assert_status(200);
    let names: Vec<&str> = tools.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["send_email"]);
    assert_eq!(tools.body["tools"][0]["account_id"], "gmail-work");
}

#[tokio::test]
async fn the_per_user_account_limit_is_enforced() {
    let app = TestApp::spawn().await;
    // Start just under the limit by setting the counter, as 200 real writes would.
    app.dynamodb()
        .put_item()
        .table_name(app.resource("AccountsTable"))
        .item(
            "user_id",
            aws_sdk_dynamodb::types::AttributeValue::S("alice".into()),
        )
        .item(
            "account_id",
            aws_sdk_dynamodb::types::AttributeValue::S("#quota".into()),
        )
        .item(
            "account_count",
            aws_sdk_dynamodb::types::AttributeValue::N("199".into()),
        )
        .send()
        .await
        .unwrap();
    app.post(ACCOUNTS, "alice", &seed())
        .await
        .assert_status(201);
    let mut another = seed();
    another["account_id"] = json!("gmail-2");
    another["configuration"]["from_address"] = json!(address("other"));
    app.post(ACCOUNTS, "alice", &another)
        .await
        .assert_error(422, "account_limit_reached");
    // Updating an existing account is not a new one.
    app.post(ACCOUNTS, "alice", &seed())
        .await
        .assert_status(200);
    // Deleting frees a place.
    app.delete(&format!("{ACCOUNTS}/gmail-work"), "alice")
        .await
        .assert_status(204);
    app.post(ACCOUNTS, "alice", &another)
        .await
        .assert_status(201);
}

#[tokio::test]
async fn a_time_past_year_9999_in_utc_is_refused_never_a_crash() {
    let app = TestApp::spawn().await;
    for at in ["9999-12-31T23:59:59-23:59", "0000-01-01T00:00:00+23:59"] {
        let answer = app
            .post(
                ACCOUNTS,
                "alice",
                &json!({"account_id": "x-main", "account_type": "social", "provider": "x",
                    "expires_at": at, "configuration": {"access_token": "t"}}),
            )
            .await;
        answer.assert_error(422, "validation_failed");
        assert_eq!(answer.body["error"]["details"][0]["field"], "expires_at");
        assert!(!answer.text.contains(at), "the input is not echoed");
    }
    // The process is still serving.
    app.get("/api/user/health", "alice")
        .await
        .assert_status(200);
}
