//! Connecting accounts by signing in at the provider (hosted OAuth), against the platform
//! stand-in (tests/src/fake_oauth/), which plays each provider's consent page, token endpoint
//! and identity endpoint as their documentation describes: single-use codes that expire, exact
//! `redirect_uri`, S256 PKCE, the client check, each provider's own error answers.
//!
//! The test plays the browser: it opens the session's authorize URL, follows the stand-in's
//! redirect to the callback, and reads where the callback sends it.

use aws_sdk_dynamodb::types::AttributeValue;
use pipewise_tests::TestApp;
use pipewise_tests::connect_flow::{
    self, CALLBACK, RETURN_URL, SESSIONS, app_with_providers, browser, callback_with, connect,
    consent, location, param, start, start_at,
};
use pipewise_tests::fake_oauth::{Provider, XUser};
use pipewise_tests::log_capture::LogCapture;
use reqwest::Method;
use serde_json::{Value, json};

const ACCOUNTS: &str = "/api/user/integrations/accounts";

async fn revealed(app: &TestApp, account_id: &str) -> Value {
    connect_flow::revealed(app, "alice", account_id).await
}

#[tokio::test]
async fn each_provider_connects_through_its_consent_page_and_no_token_leaves_the_server() {
    // Before the app: a process has one log subscriber, and the first one set stays.
    let logs = LogCapture::install();
    let (app, fake) = app_with_providers().await;
    let cases = [
        (Provider::X, "x-ada", "social", "username", "ada"),
        (
            Provider::Google,
            "google-ada-example-com",
            "email",
            "from_address",
            "ada@example.com",
        ),
        (
            Provider::Microsoft,
            "microsoft-ada-contoso-example",
            "email",
            "from_address",
            "ada@contoso.example",
        ),
        (
            Provider::Instagram,
            "instagram-ada-studio",
            "social",
            "ig_user_id",
            "17841400000000001",
        ),
    ];
    for (provider, account_id, account_type, field, value) in cases {
        let name = provider.name();
        let session = start(
            &app,
            "alice",
            json!({"provider": name, "return_url": RETURN_URL}),
        )
        .await;
        session.assert_status(201);
        assert_eq!(session.body["provider"], name);
        let session_id = session.body["session_id"].as_str().expect("id").to_owned();
        let pending = app.get(&format!("{SESSIONS}/{session_id}"), "alice").await;
        assert_eq!(pending.body["status"], "pending", "{name}");

        let redirect = consent(session.body["authorize_url"].as_str().expect("url")).await;
        let answer = callback_with(&app, &redirect).await;
        assert_eq!(answer.status().as_u16(), 303, "{name}");
        let back = location(&answer);
        assert!(back.starts_with(RETURN_URL), "{name}: {back}");
        assert_eq!(
            param(&back, "connect").as_deref(),
            Some("success"),
            "{back}"
        );
        assert_eq!(param(&back, "account_id").as_deref(), Some(account_id));
        assert_eq!(
            answer
                .headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store")
        );

        // What the provider was asked for, as the contract fixes it.
        let asked = fake
            .authorize_requests()
            .into_iter()
            .rfind(|request| request.provider == provider)
            .expect("the consent page was asked");
        assert_eq!(asked.param("response_type"), Some("code"));
        assert_eq!(asked.param("client_id"), Some("set-me"));
        let scopes = match provider {
            Provider::X => "tweet.read users.read dm.read dm.write offline.access",
            Provider::Google => {
                "openid email https://www.googleapis.com/auth/gmail.send https://www.googleapis.com/auth/gmail.readonly"
            }
            Provider::Microsoft => "offline_access User.Read Mail.Send Mail.Read",
            Provider::Instagram => "instagram_business_basic instagram_business_manage_messages",
        };
        assert_eq!(asked.param("scope"), Some(scopes), "{name}");
        let pkce = provider != Provider::Instagram;
        assert_eq!(
            asked.param("code_challenge_method"),
            pkce.then_some("S256"),
            "{name}"
        );
        if provider == Provider::Google {
            assert_eq!(asked.param("access_type"), Some("offline"));
            assert_eq!(asked.param("prompt"), Some("consent"));
        }
        let exchange = fake
            .token_calls()
            .into_iter()
            .find(|call| call.provider == provider && call.grant_type == "authorization_code")
            .expect("the code was exchanged");
        assert_eq!(exchange.status, 200, "{name}: {exchange:?}");
        assert_eq!(exchange.code_verifier_sent, pkce, "{name}");
        if provider == Provider::Instagram {
            assert!(
                fake.token_calls()
                    .iter()
                    .any(|call| call.grant_type == "ig_exchange_token" && call.status == 200),
                "the short-lived token was exchanged for the 60-day one"
            );
        }

        // The account, as the frontend lists it: connected, tokens masked, identity public.
        let account = app.get(&format!("{ACCOUNTS}/{account_id}"), "alice").await;
        account.assert_status(200);
        assert_eq!(account.body["account_type"], account_type, "{name}");
        assert_eq!(account.body["provider"], name);
        assert_eq!(account.body["connected"], true);
        assert_eq!(account.body["configuration"][field], value, "{name}");
        assert_eq!(account.body["configuration"]["access_token"], "********");
        assert!(account.body["expires_at"].is_string(), "{name}");
        assert!(account.body["last_checked_at"].is_string(), "{name}");
        let done = app.get(&format!("{SESSIONS}/{session_id}"), "alice").await;
        assert_eq!(done.body["status"], "connected");
        assert_eq!(done.body["account_id"], account_id);

        // The tokens are sealed, and only the scope-gated reveal shows them.
        let secrets = revealed(&app, account_id).await;
        let token = secrets["access_token"].as_str().expect("an access token");
        assert!(!back.contains(token) && !redirect.contains(token));
        assert!(!account.text.contains(token));
        if provider != Provider::Instagram {
            assert!(
                secrets["refresh_token"].is_string(),
                "{name}: a refresh token came back"
            );
        }
        let tools = app.get("/api/user/integrations/tools", "alice").await;
        assert!(
            tools.body["tools"]
                .as_array()
                .expect("tools")
                .iter()
                .any(|tool| tool["account_id"] == account_id),
            "{name}: the connected account offers its tools"
        );
        let lines = logs.text();
        assert!(!lines.contains(token), "{name}: a token in a log line");
        assert!(!lines.contains(param(&redirect, "code").as_deref().unwrap_or("-")));
    }
}

#[tokio::test]
async fn a_denied_consent_and_a_refused_exchange_store_nothing() {
    // Before the app: a process has one log subscriber, and the first one set stays.
    let logs = LogCapture::install();
    let (app, fake) = app_with_providers().await;
    fake.deny_next_consent(Provider::Google);
    let session = start_at(&app, "google").await;
    let redirect = consent(session.body["authorize_url"].as_str().expect("url")).await;
    let answer = callback_with(&app, &redirect).await;
    assert_eq!(answer.status().as_u16(), 303);
    let back = location(&answer);
    assert_eq!(param(&back, "connect").as_deref(), Some("error"));
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    let id = session.body["session_id"].as_str().expect("id");
    let status = app.get(&format!("{SESSIONS}/{id}"), "alice").await;
    assert_eq!(status.body["status"], "failed");
    assert_eq!(status.body["error"], "access_denied");

    // A code that expired before the browser came back: the provider refuses the exchange.
    let session = start_at(&app, "x").await;
    let redirect = consent(session.body["authorize_url"].as_str().expect("url")).await;
    fake.expire_codes();
    let answer = callback_with(&app, &redirect).await;
    let back = location(&answer);
    assert_eq!(param(&back, "error").as_deref(), Some("exchange_failed"));
    assert!(
        !logs.text().contains("provider_misconfigured"),
        "an expired code is the round trip's, not the operator's"
    );

    // A deployment whose client secret the provider no longer takes: the same answer, and an
    // alarm for the operator.
    fake.oauth_client(Provider::Microsoft, "set-me", "a-rotated-secret");
    let answer = connect(
        &app,
        "alice",
        json!({"provider": "microsoft", "return_url": RETURN_URL}),
    )
    .await;
    let back = location(&answer);
    assert_eq!(param(&back, "error").as_deref(), Some("exchange_failed"));
    assert!(
        logs.text().contains("provider_misconfigured"),
        "a refused client raises the operator's alarm"
    );

    let accounts = app.get(ACCOUNTS, "alice").await;
    assert_eq!(
        accounts.body["total"], 0,
        "nothing stored: {}",
        accounts.text
    );
}

#[tokio::test]
async fn a_state_works_once_and_never_after_it_expires() {
    let (app, _fake) = app_with_providers().await;
    let session = start_at(&app, "x").await;
    let redirect = consent(session.body["authorize_url"].as_str().expect("url")).await;
    assert_eq!(callback_with(&app, &redirect).await.status().as_u16(), 303);
    let before = app.get(&format!("{ACCOUNTS}/x-ada"), "alice").await;

    // The same callback again (a reload, or someone who saw the URL): a page, no redirect.
    let replay = callback_with(&app, &redirect).await;
    assert_eq!(replay.status().as_u16(), 400);
    assert!(replay.headers().get("location").is_none());
    let page = replay.text().await.expect("page");
    assert!(page.contains("cannot be used"), "{page}");
    let after = app.get(&format!("{ACCOUNTS}/x-ada"), "alice").await;
    assert_eq!(before.body, after.body, "a replay changes nothing");

    // Unknown, malformed and missing states.
    for query in [
        "code=c&state=AAAAAAAAAAAAAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBB",
        "code=c&state=not%20a%20state",
        "code=c",
        "",
    ] {
        let response = browser()
            .get(format!("{}{CALLBACK}?{query}", app.address))
            .send()
            .await
            .expect("callback");
        assert_eq!(response.status().as_u16(), 400, "{query}");
    }

    // A session past its 10 minutes (its expiry moved back in the table: waiting is no test).
    let session = start(
        &app,
        "alice",
        json!({"provider": "x", "account_id": "x-late", "return_url": RETURN_URL}),
    )
    .await;
    let id = session.body["session_id"].as_str().expect("id").to_owned();
    app.dynamodb()
        .update_item()
        .table_name(app.resource("AccountsTable"))
        .key(
            "user_id",
            AttributeValue::S(format!("connect-session#{id}")),
        )
        .key("account_id", AttributeValue::S("#session".into()))
        .update_expression("SET expires_at_epoch = :past")
        .expression_attribute_values(":past", AttributeValue::N("1000".into()))
        .send()
        .await
        .expect("age the session");
    let redirect = consent(session.body["authorize_url"].as_str().expect("url")).await;
    assert_eq!(callback_with(&app, &redirect).await.status().as_u16(), 400);
    let status = app.get(&format!("{SESSIONS}/{id}"), "alice").await;
    assert_eq!(status.body["status"], "expired");
    app.get(&format!("{ACCOUNTS}/x-late"), "alice")
        .await
        .assert_status(404);
}

#[tokio::test]
async fn a_code_meant_for_another_session_fails_its_pkce_check() {
    let (app, fake) = app_with_providers().await;
    let first = start_at(&app, "google").await;
    let second = start_at(&app, "google").await;
    // The first session's code, arriving with the second session's state.
    let first_redirect = consent(first.body["authorize_url"].as_str().expect("url")).await;
    let second_authorize = second.body["authorize_url"].as_str().expect("url");
    let second_state = param(second_authorize, "state").expect("state");
    let code = param(&first_redirect, "code").expect("code");
    let mut injected = url::Url::parse(&first_redirect).expect("url");
    injected
        .query_pairs_mut()
        .clear()
        .append_pair("code", &code)
        .append_pair("state", &second_state);
    let answer = callback_with(&app, injected.as_str()).await;
    let back = location(&answer);
    assert_eq!(param(&back, "error").as_deref(), Some("exchange_failed"));
    let refused = fake
        .token_calls()
        .into_iter()
        .find(|call| call.grant_type == "authorization_code")
        .expect("an exchange was tried");
    assert_eq!(
        refused.error.as_deref(),
        Some("invalid_grant"),
        "{refused:?}"
    );
    assert_eq!(app.get(ACCOUNTS, "alice").await.body["total"], 0);
}

#[tokio::test]
async fn sessions_are_the_users_own_and_return_only_to_the_frontend() {
    let (app, _fake) = app_with_providers().await;
    for (body, field) in [
        (
            json!({"provider": "x", "return_url": "https://evil.example/steal"}),
            "return_url",
        ),
        (
            json!({"provider": "x", "return_url": "http://localhost:3000.evil.example/"}),
            "return_url",
        ),
        (
            json!({"provider": "linkedin", "return_url": RETURN_URL}),
            "provider",
        ),
        (
            json!({"provider": "x", "account_id": "no spaces", "return_url": RETURN_URL}),
            "account_id",
        ),
    ] {
        let refused = start(&app, "alice", body).await;
        refused.assert_error(422, "validation_failed");
        assert_eq!(refused.body["error"]["details"][0]["field"], field);
        assert!(!refused.text.contains("evil"), "no input echoed back");
    }
    let unknown_field = start(
        &app,
        "alice",
        json!({"provider": "x", "return_url": RETURN_URL, "user_id": "bob"}),
    )
    .await;
    unknown_field.assert_status(422);

    let session = start_at(&app, "x").await;
    let id = session.body["session_id"].as_str().expect("id");
    app.get(&format!("{SESSIONS}/{id}"), "mallory")
        .await
        .assert_error(404, "not_found");
    let anonymous = app
        .send(
            app.request(Method::POST, SESSIONS)
                .json(&json!({"provider": "x"})),
        )
        .await;
    anonymous.assert_status(401);
}

#[tokio::test]
async fn reconnecting_keeps_the_account_and_refuses_another_identity() {
    let (app, fake) = app_with_providers().await;
    let answer = connect(
        &app,
        "alice",
        json!({"provider": "x", "label": "Ada on X", "return_url": RETURN_URL}),
    )
    .await;
    assert_eq!(
        param(&location(&answer), "account_id").as_deref(),
        Some("x-ada")
    );
    let first_token = revealed(&app, "x-ada").await["access_token"].clone();

    // The grant is revoked at X: a connection test says so and stores it.
    fake.revoke_grant(Provider::X);
    let tested = app
        .post(&format!("{ACCOUNTS}/x-ada/test"), "alice", &json!({}))
        .await;
    tested.assert_status(200);
    assert_eq!(tested.body["connected"], false);
    assert_eq!(tested.body["status_reason"], "reauth_required");
    let account = app.get(&format!("{ACCOUNTS}/x-ada"), "alice").await;
    assert_eq!(account.body["status_reason"], "reauth_required");

    // Reconnecting the same X user: same id and label, new tokens, connected again.
    let answer = connect(
        &app,
        "alice",
        json!({"provider": "x", "account_id": "x-ada", "return_url": RETURN_URL}),
    )
    .await;
    assert_eq!(
        param(&location(&answer), "connect").as_deref(),
        Some("success")
    );
    let account = app.get(&format!("{ACCOUNTS}/x-ada"), "alice").await;
    assert_eq!(account.body["connected"], true);
    assert!(account.body.get("status_reason").is_none_or(Value::is_null));
    assert_eq!(account.body["label"], "Ada on X");
    assert_ne!(revealed(&app, "x-ada").await["access_token"], first_token);
    let tested = app
        .post(&format!("{ACCOUNTS}/x-ada/test"), "alice", &json!({}))
        .await;
    assert_eq!(tested.body["connected"], true, "{}", tested.text);
    assert_eq!(tested.body["identity"]["name"], "ada");

    // Someone else's X account for the same account id: refused, nothing changed.
    fake.signs_in(XUser {
        id: "999".into(),
        username: "grace".into(),
        name: "Grace".into(),
    });
    let before = revealed(&app, "x-ada").await;
    let answer = connect(
        &app,
        "alice",
        json!({"provider": "x", "account_id": "x-ada", "return_url": RETURN_URL}),
    )
    .await;
    assert_eq!(
        param(&location(&answer), "error").as_deref(),
        Some("account_identity_mismatch")
    );
    assert_eq!(revealed(&app, "x-ada").await, before);
}

#[tokio::test]
async fn only_accounts_with_a_provider_or_a_sender_can_be_tested() {
    let (app, _fake) = app_with_providers().await;
    let address = app
        .verified_email_account("alice", "mail", &pipewise_tests::unique_domain(), None)
        .await;
    let tested = app
        .post(&format!("{ACCOUNTS}/mail/test"), "alice", &json!({}))
        .await;
    tested.assert_status(200);
    assert_eq!(tested.body["connected"], true);
    assert_eq!(tested.body["identity"]["from_address"], address);
    assert_eq!(tested.body["identity"]["verified"], true);
    let account = app.get(&format!("{ACCOUNTS}/mail"), "alice").await;
    assert_eq!(account.body["last_checked_at"], tested.body["checked_at"]);

    app.post(
        ACCOUNTS,
        "alice",
        &json!({"account_id": "cal", "account_type": "calendar", "provider": "google",
            "configuration": {"calendar_id": "primary"}}),
    )
    .await
    .assert_status(201);
    app.post(&format!("{ACCOUNTS}/cal/test"), "alice", &json!({}))
        .await
        .assert_error(422, "account_not_testable");
    app.post(&format!("{ACCOUNTS}/nobody/test"), "alice", &json!({}))
        .await
        .assert_error(404, "not_found");
}
