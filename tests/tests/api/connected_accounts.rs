//! Connected accounts stay connected: OAuth refresh before use (once, under a lease, with the
//! rotated refresh token sealed), reauth_required when the grant is gone, rate limits waited
//! out, Instagram messages only inside the window the person opened. Against the platform
//! stand-in (tests/src/fake_social.rs), which behaves as the platforms document.

use pipewise::config::ConfigSource;
use pipewise_tests::TestApp;
use pipewise_tests::fake_social::{BUSINESS_IG_ID, FakeSocial};
use serde_json::{Value, json};

const ACCOUNTS: &str = "/api/user/integrations/accounts";
const INITIATE: &str = "/api/user/orchestrator/initiate-communications";
const RUNS: &str = "/api/user/orchestrator/runs";
const EXPIRED: &str = "2020-01-01T00:00:00Z";

async fn app_with_fake() -> (TestApp, FakeSocial) {
    FakeSocial::with_app().await
}

/// Alice's X account whose access token has expired.
async fn expired_x_account(app: &TestApp, fake: &FakeSocial) {
    fake.x_tokens("x-access-0", "x-refresh-0");
    app.post(
        ACCOUNTS,
        "alice",
        &json!({"account_id": "x-main", "account_type": "social", "provider": "x",
            "expires_at": EXPIRED,
            "configuration": {"access_token": "x-access-expired", "refresh_token": "x-refresh-0"}}),
    )
    .await
    .assert_status(201);
}

async fn targets(app: &TestApp, field: &str, handles: &[String]) {
    for handle in handles {
        app.post(
            "/api/user/communication-targets",
            "alice",
            &json!({"name": format!("T {handle}"), field: handle}),
        )
        .await
        .assert_status(201);
    }
}

async fn secrets(app: &TestApp, account: &str) -> Value {
    app.send(
        app.request(
            reqwest::Method::GET,
            &format!("{ACCOUNTS}/{account}/secrets"),
        )
        .bearer_auth(app.token_with_scope("alice", "integrations:secrets:read")),
    )
    .await
    .body["configuration"]
        .clone()
}

#[tokio::test]
async fn an_expired_x_token_is_refreshed_once_for_a_whole_run() {
    let (app, fake) = app_with_fake().await;
    expired_x_account(&app, &fake).await;
    let handles: Vec<String> = (0..20).map(|i| format!("person{i}")).collect();
    targets(&app, "twitter_username", &handles).await;
    let run = app
        .post(
            INITIATE,
            "alice",
            &json!({"message": {"body": "Hi {{first_name}}"}}),
        )
        .await;
    run.assert_status(202);
    assert_eq!(run.body["queued"], 20);
    app.drain_queue().await;
    let refreshes = fake.refreshes();
    assert_eq!(
        refreshes.len(),
        1,
        "one refresh for 20 messages: {refreshes:?}"
    );
    assert_eq!(refreshes[0].presented, "x-refresh-0");
    assert_eq!(
        refreshes[0].client_id.as_deref(),
        Some("set-me"),
        "the client from Secrets Manager"
    );
    let sent = fake.sent();
    assert_eq!(sent.len(), 20);
    assert!(
        sent.iter().all(|m| m.token == "x-access-1"),
        "every DM carries the new token"
    );
    // The rotated refresh token is what is stored now, sealed.
    let stored = secrets(&app, "x-main").await;
    assert_eq!(stored["refresh_token"], "x-refresh-1");
    assert_eq!(stored["access_token"], "x-access-1");
    let raw = format!("{:?}", app.scan_table("AccountsTable").await);
    assert!(
        !raw.contains("x-refresh-1") && !raw.contains("x-access-1"),
        "tokens are sealed"
    );
    let account = app.get(&format!("{ACCOUNTS}/x-main"), "alice").await;
    assert_ne!(account.body["expires_at"], EXPIRED);
    assert_eq!(account.body["connected"], true);
}

#[tokio::test]
async fn twenty_concurrent_users_of_one_expired_account_share_one_refresh() {
    let (app, fake) = app_with_fake().await;
    expired_x_account(&app, &fake).await;
    let service = pipewise::accounts::AccountService::from_config(
        &ConfigSource::from_map(&app.environment),
        &app.sdk,
    )
    .expect("accounts service");
    let user = pipewise::auth::UserId::from_verified_sub("alice".into());
    let id = pipewise::accounts::AccountId::parse("x-main").unwrap();
    let item = service.store().get(&user, &id).await.unwrap().unwrap();
    let calls = (0..20).map(|_| service.fresh_configuration(item.clone(), false));
    let results = futures::future::join_all(calls).await;
    for result in &results {
        let (_, configuration) = result.as_ref().expect("fresh tokens");
        assert_eq!(configuration["access_token"], "x-access-1");
    }
    assert_eq!(
        fake.refreshes().len(),
        1,
        "one refresh, the others waited and reused it"
    );
}

#[tokio::test]
async fn a_revoked_grant_marks_the_account_and_sends_nothing() {
    let (app, fake) = app_with_fake().await;
    expired_x_account(&app, &fake).await;
    fake.revoke_x_grant();
    targets(&app, "twitter_username", &["ada".into(), "grace".into()]).await;
    let run = app
        .post(INITIATE, "alice", &json!({"message": {"body": "Hi"}}))
        .await;
    app.drain_queue().await;
    assert!(fake.sent().is_empty());
    assert_eq!(
        fake.refreshes().len(),
        1,
        "the dead grant is not tried again"
    );
    let view = app
        .get(
            &format!("{RUNS}/{}", run.body["run_id"].as_str().unwrap()),
            "alice",
        )
        .await;
    for communication in view.body["communications"].as_array().unwrap() {
        assert_eq!(communication["status"], "failed");
        assert_eq!(communication["reason"], "reauth_required");
    }
    let account = app.get(&format!("{ACCOUNTS}/x-main"), "alice").await;
    assert_eq!(account.body["connected"], false);
    assert_eq!(account.body["status_reason"], "reauth_required");
}

#[tokio::test]
async fn a_rate_limited_message_waits_for_the_reset_and_goes_once() {
    let (app, fake) = app_with_fake().await;
    fake.x_tokens("x-access-0", "x-refresh-0");
    app.post(
        ACCOUNTS,
        "alice",
        &json!({"account_id": "x-main", "account_type": "social", "provider": "x",
            "configuration": {"access_token": "x-access-0", "refresh_token": "x-refresh-0"}}),
    )
    .await
    .assert_status(201);
    targets(&app, "twitter_username", &["ada".into()]).await;
    fake.rate_limit_resets_in(3);
    fake.answer_with(&[429]);
    app.post(INITIATE, "alice", &json!({"message": {"body": "Hi"}}))
        .await
        .assert_status(202);
    app.drain_queue().await;
    assert!(fake.sent().is_empty(), "nothing goes out before the reset");
    // SQS holds the message back until the platform's window resets (a real SQS delay in the
    // emulator, so the test waits for it rather than faking time).
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    app.drain_queue().await;
    assert_eq!(fake.sent().len(), 1, "sent after the reset, once");
}

#[tokio::test]
async fn secrets_for_an_agent_are_refreshed_when_they_expire() {
    let (app, fake) = app_with_fake().await;
    expired_x_account(&app, &fake).await;
    let stored = secrets(&app, "x-main").await;
    assert_eq!(stored["access_token"], "x-access-1");
    assert_eq!(fake.refreshes().len(), 1);
}

#[tokio::test]
async fn instagram_messages_only_go_into_an_open_conversation() {
    let (app, fake) = app_with_fake().await;
    app.post(
        ACCOUNTS,
        "alice",
        &json!({"account_id": "ig", "account_type": "social", "provider": "instagram",
            "configuration": {"access_token": "ig-token", "ig_user_id": BUSINESS_IG_ID}}),
    )
    .await
    .assert_status(201);
    fake.instagram_conversation("recent.fan", "igsid-recent", 2 * 3600);
    fake.instagram_conversation("old.fan", "igsid-old", 3 * 24 * 3600);
    targets(
        &app,
        "instagram_username",
        &["recent.fan".into(), "old.fan".into(), "stranger".into()],
    )
    .await;
    let run = app
        .post(
            INITIATE,
            "alice",
            &json!({"channels": ["instagram"], "message": {"body": "Hi"}}),
        )
        .await;
    app.drain_queue().await;
    let sent = fake.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0].recipient, "igsid-recent",
        "the conversation's own id"
    );
    let view = app
        .get(
            &format!("{RUNS}/{}", run.body["run_id"].as_str().unwrap()),
            "alice",
        )
        .await;
    let closed = view.body["communications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["reason"] == "instagram_window_closed")
        .count();
    assert_eq!(
        closed, 2,
        "an old conversation and a stranger: nothing sent"
    );
}

#[tokio::test]
async fn the_scheduled_keeper_refreshes_grants_nobody_uses() {
    let (app, fake) = app_with_fake().await;
    expired_x_account(&app, &fake).await;
    let in_days = |days: i64| {
        (time::OffsetDateTime::now_utc() + time::Duration::days(days))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    for (id, token, expires) in [
        ("ig-soon", "ig-soon-token", in_days(2)),
        ("ig-later", "ig-later-token", in_days(40)),
    ] {
        app.post(
            ACCOUNTS,
            "alice",
            &json!({"account_id": id, "account_type": "social", "provider": "instagram",
                "expires_at": expires,
                "configuration": {"access_token": token, "ig_user_id": BUSINESS_IG_ID}}),
        )
        .await
        .assert_status(201);
    }
    // The keeper reads accounts by provider name (an index query per name): an account stored
    // under X's older name is read too, and one of no platform is not.
    app.post(
        ACCOUNTS,
        "bob",
        &json!({"account_id": "x-old-name", "account_type": "social", "provider": "twitter",
            "expires_at": in_days(40),
            "configuration": {"access_token": "bob-access", "refresh_token": "bob-refresh"}}),
    )
    .await
    .assert_status(201);
    app.post(
        ACCOUNTS,
        "bob",
        &json!({"account_id": "crm", "account_type": "crm", "provider": "hubspot",
            "expires_at": in_days(1), "configuration": {"portal": "123"}}),
    )
    .await
    .assert_status(201);
    let keeper =
        token_keeper::service_from_config(&ConfigSource::from_map(&app.environment), &app.sdk)
            .expect("the keeper's service");
    let report = keeper.keep_tokens_alive().await.expect("a keeper run");
    assert_eq!(
        (report.checked, report.refreshed, report.failed),
        (4, 2, 0),
        "{report:?}"
    );
    let presented: Vec<String> = fake
        .refreshes()
        .into_iter()
        .map(|call| call.presented)
        .collect();
    assert!(presented.contains(&"ig-soon-token".to_owned()));
    assert!(presented.contains(&"x-refresh-0".to_owned()));
    assert!(
        !presented.contains(&"ig-later-token".to_owned()),
        "40 days left: not yet"
    );
    assert_eq!(
        secrets(&app, "ig-soon").await["access_token"],
        "ig-soon-token-refreshed"
    );
    // A second run right after has nothing to do.
    let again = keeper.keep_tokens_alive().await.unwrap();
    assert_eq!(again.refreshed, 0);
}

#[tokio::test]
async fn a_refused_oauth_client_disconnects_nobody() {
    let (app, fake) = app_with_fake().await;
    expired_x_account(&app, &fake).await;
    // The deployment still has the template's placeholder client; X knows only the real one.
    fake.x_client("real-client-id", "real-client-secret");
    let keeper =
        token_keeper::service_from_config(&ConfigSource::from_map(&app.environment), &app.sdk)
            .expect("the keeper's service");
    let report = keeper.keep_tokens_alive().await.expect("a keeper run");
    assert_eq!(
        (report.checked, report.reauth_required, report.misconfigured),
        (1, 0, 1),
        "{report:?}"
    );
    let account = app.get(&format!("{ACCOUNTS}/x-main"), "alice").await;
    assert_eq!(account.body["connected"], true, "{}", account.text);
    assert_eq!(account.body["status_reason"], Value::Null);
    // An agent asking for the tokens learns it is the deployment, not the account.
    let answer = app
        .send(
            app.request(reqwest::Method::GET, &format!("{ACCOUNTS}/x-main/secrets"))
                .bearer_auth(app.token_with_scope("alice", "integrations:secrets:read")),
        )
        .await;
    answer.assert_error(503, "provider_misconfigured");
    assert!(answer.headers.contains_key("retry-after"));
    // Once the operator fixes the client, the same grant refreshes.
    fake.x_client("set-me", "set-me");
    let fixed = keeper.keep_tokens_alive().await.unwrap();
    assert_eq!((fixed.refreshed, fixed.misconfigured), (1, 0), "{fixed:?}");
}

#[tokio::test]
async fn a_users_edit_during_a_refresh_keeps_the_rotated_refresh_token() {
    let (app, fake) = app_with_fake().await;
    expired_x_account(&app, &fake).await;
    fake.x_token_delay(std::time::Duration::from_millis(1500));
    let service = pipewise::accounts::AccountService::from_config(
        &ConfigSource::from_map(&app.environment),
        &app.sdk,
    )
    .expect("accounts service");
    let user = pipewise::ids::UserId::from_verified_sub("alice".into());
    let id = pipewise::accounts::model::AccountId::parse("x-main").unwrap();
    let item = service.store().get(&user, &id).await.unwrap().unwrap();
    let refresh = tokio::spawn({
        let service = service.clone();
        async move { service.fresh_configuration(item, false).await.is_ok() }
    });
    // While X is answering, the user renames the account (keeping the masked tokens).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let read = app.get(&format!("{ACCOUNTS}/x-main"), "alice").await;
    let mut edited = read.body.clone();
    edited["label"] = json!("Brand account");
    edited["secret_fields"] = Value::Null;
    let saved = app.post(ACCOUNTS, "alice", &edited).await;
    saved.assert_status(200);
    assert!(refresh.await.unwrap(), "the refresh stored its tokens");
    let account = app.get(&format!("{ACCOUNTS}/x-main"), "alice").await;
    assert_eq!(account.body["label"], "Brand account", "the edit is kept");
    let stored = secrets(&app, "x-main").await;
    assert_eq!(
        stored["refresh_token"], "x-refresh-1",
        "the rotated single-use refresh token is not lost"
    );
    assert_eq!(stored["access_token"], "x-access-1");
}
