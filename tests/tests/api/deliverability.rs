//! Outreach email that inbox providers accept: RFC 8058 one-click unsubscribe (headers and a
//! visible link), the per-user suppression list, and initiate skipping suppressed addresses.

use pipewise_tests::{RawEmail, TestApp};
use reqwest::Method;
use serde_json::json;

const INITIATE: &str = "/api/user/orchestrator/initiate-communications";

struct Mailing {
    app: TestApp,
    sender: String,
    ada: String,
}

/// Alice's verified email account and one target; one run sent.
async fn one_email_sent() -> Mailing {
    let app = TestApp::spawn().await;
    let domain = format!(
        "t{}.example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let sender = format!("sales@{domain}");
    let ada = format!("ada@{domain}");
    app.verify_sender(&sender).await;
    app.post(
        "/api/user/integrations/accounts",
        "alice",
        &json!({"account_id": "mail", "account_type": "email", "configuration": {"from_address": sender}}),
    )
    .await
    .assert_status(201);
    app.post(
        "/api/user/communication-targets",
        "alice",
        &json!({"name": "Ada", "email": ada}),
    )
    .await
    .assert_status(201);
    app.post(
        INITIATE,
        "alice",
        &json!({"message": {"subject": "Hello", "body": "Hi {{first_name}}"}}),
    )
    .await
    .assert_status(202);
    app.drain_queue().await;
    Mailing { app, sender, ada }
}

fn unsubscribe_url(raw: &str) -> String {
    let email = RawEmail::parse(raw);
    let header = email.header("List-Unsubscribe").expect("List-Unsubscribe");
    header
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

async fn post_one_click(app: &TestApp, url: &str) -> pipewise_tests::TestResponse {
    let path = url.trim_start_matches("http://127.0.0.1:8001");
    app.send(
        app.request(Method::POST, path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click"),
    )
    .await
}

#[tokio::test]
async fn every_outreach_email_carries_one_click_unsubscribe() {
    let mailing = one_email_sent().await;
    let raw = mailing.app.sent_raw_emails(&mailing.sender).await;
    assert_eq!(raw.len(), 1);
    let email = RawEmail::parse(&raw[0]);
    let url = unsubscribe_url(&raw[0]);
    assert!(
        url.starts_with("http://127.0.0.1:8001/api/user/unsubscribe/"),
        "{url}"
    );
    assert_eq!(
        email.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    assert!(
        email.body().contains(&url),
        "the link is visible in the body too"
    );
}

#[tokio::test]
async fn one_click_unsubscribes_and_the_next_run_skips_the_address() {
    let mailing = one_email_sent().await;
    let app = &mailing.app;
    let url = unsubscribe_url(&mailing.app.sent_raw_emails(&mailing.sender).await[0]);
    let path = url.trim_start_matches("http://127.0.0.1:8001");
    // Opening the link (a person, or a mail scanner) only shows the button.
    let page = app.send(app.request(Method::GET, path)).await;
    page.assert_status(200);
    assert!(page.text.contains("<form method=\"post\""));
    let listed = app.get("/api/user/suppressions", "alice").await;
    assert_eq!(
        listed.body["suppressions"],
        json!([]),
        "GET never unsubscribes"
    );
    // The mail provider's one-click POST; twice is the same as once.
    post_one_click(app, &url).await.assert_status(200);
    post_one_click(app, &url).await.assert_status(200);
    let listed = app.get("/api/user/suppressions", "alice").await;
    let suppressions = listed.body["suppressions"].as_array().unwrap();
    assert_eq!(suppressions.len(), 1);
    assert_eq!(suppressions[0]["address"], mailing.ada.as_str());
    assert_eq!(suppressions[0]["reason"], "unsubscribed");
    // The next run leaves the address out, saying why.
    let next = app
        .post(INITIATE, "alice", &json!({"message": {"body": "Again"}}))
        .await;
    next.assert_error(422, "nothing_deliverable");
    assert_eq!(next.body["error"]["details"][0]["problem"], "unsubscribed");
    // The user may lift an unsubscribe on request; then the address is reachable again.
    app.delete(&format!("/api/user/suppressions/{}", mailing.ada), "alice")
        .await
        .assert_status(204);
    app.post(INITIATE, "alice", &json!({"message": {"body": "Again"}}))
        .await
        .assert_status(202);
    // Another user cannot see or lift it.
    app.delete(
        &format!("/api/user/suppressions/{}", mailing.ada),
        "mallory",
    )
    .await
    .assert_error(404, "not_found");
}

#[tokio::test]
async fn tampered_and_foreign_tokens_are_404_pages_and_change_nothing() {
    let mailing = one_email_sent().await;
    let app = &mailing.app;
    let url = unsubscribe_url(&mailing.app.sent_raw_emails(&mailing.sender).await[0]);
    let token = url.rsplit('/').next().unwrap().to_owned();
    let (payload, mac) = token.split_once('.').unwrap();
    let mut flipped = mac.as_bytes().to_vec();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let cases = [
        format!("{payload}.{}", String::from_utf8(flipped).unwrap()),
        // Any change of the payload (here its first character) breaks the MAC.
        format!(
            "{}{}.{mac}",
            if payload.starts_with('X') { "Y" } else { "X" },
            &payload[1..]
        ),
        "not-a-token".to_owned(),
        format!("{payload}."),
        String::new() + "x.y",
    ];
    for case in &cases {
        let path = format!("/api/user/unsubscribe/{case}");
        let page = app.send(app.request(Method::GET, &path)).await;
        assert_eq!(page.status, 404, "{case}");
        let posted = post_one_click(app, &path).await;
        assert_eq!(posted.status, 404, "{case}");
    }
    // A token of another stack (another signing key) is foreign here.
    let other = TestApp::spawn().await;
    let foreign = other
        .send(other.request(Method::GET, &format!("/api/user/unsubscribe/{token}")))
        .await;
    assert_eq!(foreign.status, 404);
    let listed = app.get("/api/user/suppressions", "alice").await;
    assert_eq!(listed.body["suppressions"], json!([]));
}

#[tokio::test]
async fn twenty_five_concurrent_runs_meet_the_per_minute_quota() {
    let mailing = one_email_sent().await;
    let app = &mailing.app;
    let attempts = (0..25).map(|i| async move {
        app.send(
            app.request(Method::POST, INITIATE)
                .bearer_auth(app.token("alice"))
                .header("idempotency-key", format!("quota-{i}"))
                .json(&json!({"message": {"body": "Hi"}})),
        )
        .await
    });
    let answers = futures::future::join_all(attempts).await;
    let accepted = answers.iter().filter(|a| a.status == 202).count();
    let limited: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    // One run was started before; a minute boundary may fall inside the burst (two windows).
    assert!(
        accepted <= 19,
        "at most 10 runs per minute: {accepted} accepted"
    );
    assert_eq!(accepted + limited.len(), 25, "every other answer is 429");
    for answer in limited {
        answer.assert_error(429, "run_quota_exceeded");
        let retry_after: u32 = answer.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry_after));
    }
}

#[tokio::test]
async fn an_unsubscribe_after_the_run_was_queued_stops_its_email() {
    let mailing = one_email_sent().await;
    let app = &mailing.app;
    let url = unsubscribe_url(&app.sent_raw_emails(&mailing.sender).await[0]);
    let queued = app
        .post(INITIATE, "alice", &json!({"message": {"body": "Second"}}))
        .await;
    queued.assert_status(202);
    // The person unsubscribes from the first email before the second goes out.
    post_one_click(app, &url).await.assert_status(200);
    app.drain_queue().await;
    assert_eq!(
        app.sent_raw_emails(&mailing.sender).await.len(),
        1,
        "nothing more was sent"
    );
    let run = app
        .get(
            &format!(
                "/api/user/orchestrator/runs/{}",
                queued.body["run_id"].as_str().unwrap()
            ),
            "alice",
        )
        .await;
    assert_eq!(run.body["communications"][0]["reason"], "suppressed");
}
