//! Webhooks (issue 25): endpoints per user with a secret shown once and sealed at rest,
//! deliveries signed as Standard Webhooks and verified here by the reference library, retries
//! that keep the event's id, a receiver that is down getting the event later, an endpoint
//! failing for 5 days disabled, deletes that stop deliveries, and URLs that reach private
//! addresses refused.

use pipewise::clock::Clock;
use pipewise::config::vars;
use pipewise_tests::fake_social::FakeSocial;
use pipewise_tests::webhook_receiver::{ReceivedWebhook, WebhookReceiver};
use pipewise_tests::{TestApp, unique_domain};
use serde_json::{Value, json};

const WEBHOOKS: &str = "/api/user/webhooks";
const INITIATE: &str = "/api/user/orchestrator/initiate-communications";
const ACCOUNTS: &str = "/api/user/integrations/accounts";
const TARGETS: &str = "/api/user/communication-targets";

/// An app whose retries follow at once (the schedule's shape is unit-tested).
async fn app_with_quick_retries() -> TestApp {
    TestApp::spawn_with(|environment| {
        environment.insert(vars::WEBHOOK_RETRY_DELAYS.to_owned(), "0,0,0".to_owned());
    })
    .await
}

async fn create(app: &TestApp, user: &str, body: Value) -> Value {
    let created = app.post(WEBHOOKS, user, &body).await;
    created.assert_status(201);
    created.body
}

/// Verifies a delivery with the Standard Webhooks reference library.
fn verify(secret: &str, delivery: &ReceivedWebhook) {
    let verifier = standardwebhooks::Webhook::new(secret).expect("a whsec_ secret");
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, delivery.header(name).parse().expect("a header value"));
    }
    verifier
        .verify(&delivery.body, &headers)
        .expect("the reference verifier accepts the signature");
}

#[tokio::test]
async fn a_test_event_arrives_signed_and_the_reference_library_verifies_it() {
    let app = TestApp::spawn().await;
    let receiver = WebhookReceiver::start().await;
    let created = create(
        &app,
        "alice",
        json!({"url": receiver.url, "description": "CRM sync"}),
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["events"].as_array().unwrap().len(),
        10,
        "every type but the test"
    );

    // The list shows it, never its secret; the table holds the secret only sealed.
    let list = app.get(WEBHOOKS, "alice").await;
    list.assert_status(200);
    assert_eq!(list.body["webhooks"][0]["id"], id.as_str());
    assert_eq!(list.body["webhooks"][0]["status"], "enabled");
    assert!(!list.text.contains(&secret) && !list.text.contains("secret"));
    let stored = format!("{:?}", app.scan_table("WebhooksTable").await);
    let encoded_key = secret.trim_start_matches("whsec_");
    assert!(
        !stored.contains(encoded_key),
        "the secret is sealed at rest"
    );

    let queued = app
        .post(&format!("{WEBHOOKS}/{id}/test"), "alice", &json!({}))
        .await;
    queued.assert_status(202);
    app.drain_webhooks().await;
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    verify(&secret, &received[0]);
    assert_eq!(
        received[0].header("webhook-id"),
        queued.body["event_id"].as_str().unwrap()
    );
    assert_eq!(received[0].event_type(), "webhook.test");
    assert_eq!(received[0].json()["data"]["webhook_id"], id.as_str());
    assert!(
        received[0]
            .header("content-type")
            .starts_with("application/json")
    );

    let deliveries = app
        .get(&format!("{WEBHOOKS}/{id}/deliveries"), "alice")
        .await;
    deliveries.assert_status(200);
    let attempt = &deliveries.body["deliveries"][0];
    assert_eq!(attempt["outcome"], "succeeded", "{}", deliveries.text);
    assert_eq!(attempt["status_code"], 200);
    assert_eq!(attempt["attempt"], 1);
    assert_eq!(attempt["type"], "webhook.test");

    // Another user sees none of it.
    assert_eq!(
        app.get(WEBHOOKS, "mallory").await.body["webhooks"],
        json!([])
    );
    app.get(&format!("{WEBHOOKS}/{id}/deliveries"), "mallory")
        .await
        .assert_error(404, "not_found");
    app.post(&format!("{WEBHOOKS}/{id}/test"), "mallory", &json!({}))
        .await
        .assert_error(404, "not_found");
    app.delete(&format!("{WEBHOOKS}/{id}"), "mallory")
        .await
        .assert_error(404, "not_found");
    // A path that is not an endpoint id names none.
    app.get(&format!("{WEBHOOKS}/not-an-id/deliveries"), "alice")
        .await
        .assert_error(404, "not_found");
    assert_eq!(
        app.get(WEBHOOKS, "alice").await.body["webhooks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn outreach_events_reach_a_receiver_that_was_down_with_the_same_id_on_every_retry() {
    let app = app_with_quick_retries().await;
    let receiver = WebhookReceiver::start().await;
    let created = create(
        &app,
        "alice",
        json!({"url": receiver.url, "events": ["communication.sent", "run.completed", "account.connected"]}),
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let domain = unique_domain();
    app.verified_email_account("alice", "mail", &domain, None)
        .await;
    app.post(
        "/api/user/communication-targets",
        "alice",
        &json!({"name": "Ada", "email": format!("ada@{domain}")}),
    )
    .await
    .assert_status(201);
    let run = app
        .post(
            INITIATE,
            "alice",
            &json!({"message": {"subject": "Hello", "body": "Private words"}}),
        )
        .await;
    run.assert_status(202);
    let run_id = run.body["run_id"].as_str().unwrap().to_owned();
    app.drain_queue().await;

    // The receiver is down for the first two attempts of the first event it gets.
    receiver.answer(&[503, 500]);
    app.drain_webhooks().await;
    let received = receiver.received();
    let sent: Vec<&ReceivedWebhook> = received
        .iter()
        .filter(|delivery| delivery.event_type() == "communication.sent")
        .collect();
    let completed: Vec<&ReceivedWebhook> = received
        .iter()
        .filter(|delivery| delivery.event_type() == "run.completed")
        .collect();
    let connected: Vec<&ReceivedWebhook> = received
        .iter()
        .filter(|delivery| delivery.event_type() == "account.connected")
        .collect();
    assert!(
        !connected.is_empty(),
        "the sender's verification connected the account"
    );
    assert_eq!(connected[0].json()["data"]["account_id"], "mail");
    assert!(!sent.is_empty() && !completed.is_empty());
    // Three events, two failed attempts among them: five requests, and each event's
    // attempts carry one id.
    assert_eq!(
        received.len(),
        5,
        "{:?}",
        received
            .iter()
            .map(ReceivedWebhook::event_type)
            .collect::<Vec<_>>()
    );
    for group in [&sent, &completed, &connected] {
        let ids: std::collections::HashSet<String> = group
            .iter()
            .map(|delivery| delivery.header("webhook-id"))
            .collect();
        assert_eq!(ids.len(), 1, "one id per event, on every retry");
        for delivery in group.iter() {
            verify(&secret, delivery);
        }
    }
    let sent_data = sent[0].json()["data"].clone();
    assert_eq!(sent_data["run_id"], run_id.as_str());
    assert_eq!(sent_data["status"], "sent");
    assert_eq!(sent_data["channel"], "email");
    let body = String::from_utf8_lossy(&sent[0].body).to_string();
    assert!(
        !body.contains("Private words") && !body.contains("Hello") && !body.contains("ada@"),
        "ids and statuses only: {body}"
    );
    assert_eq!(completed[0].json()["data"]["status"], "completed");
    assert_eq!(completed[0].json()["data"]["counts"]["sent"], 1);

    let deliveries = app
        .get(&format!("{WEBHOOKS}/{id}/deliveries"), "alice")
        .await;
    let outcomes: Vec<(String, u64)> = deliveries.body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attempt| {
            (
                attempt["outcome"].as_str().unwrap().to_owned(),
                attempt["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes.iter().filter(|(o, _)| o == "retrying").count(),
        2,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|(o, _)| o == "succeeded").count(),
        3,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|(outcome, attempt)| outcome == "succeeded" && *attempt > 1),
        "an event that failed went through on a retry: {outcomes:?}"
    );
}

#[tokio::test]
async fn an_event_failing_every_retry_is_recorded_failed_and_counted_for_the_alarm() {
    pipewise::metrics::start_recording();
    let app = app_with_quick_retries().await;
    let receiver = WebhookReceiver::start().await;
    let created = create(&app, "alice", json!({"url": receiver.url})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    receiver.answer(&[500, 502, 503, 500]);
    app.post(&format!("{WEBHOOKS}/{id}/test"), "alice", &json!({}))
        .await
        .assert_status(202);
    app.drain_webhooks().await;
    assert_eq!(
        receiver.received().len(),
        4,
        "the first attempt and one per retry delay"
    );
    let deliveries = app
        .get(&format!("{WEBHOOKS}/{id}/deliveries"), "alice")
        .await;
    let outcomes: Vec<(u64, String)> = deliveries.body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attempt| {
            (
                attempt["attempt"].as_u64().unwrap(),
                attempt["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (4, "failed".to_owned()),
            (3, "retrying".to_owned()),
            (2, "retrying".to_owned()),
            (1, "retrying".to_owned())
        ],
        "newest first"
    );
    let lines = pipewise::metrics::recorded();
    assert_eq!(
        lines
            .iter()
            .filter(|line| line["WebhookFailed"] == 1)
            .count(),
        1,
        "the alarm's metric, once per event given up on: {lines:?}"
    );
}

#[tokio::test]
async fn an_endpoint_failing_for_five_days_is_disabled_and_a_successful_test_enables_it() {
    let app = app_with_quick_retries().await;
    let clock = Clock::adjustable();
    let deliverer = app.webhook_deliverer(clock.clone());
    let receiver = WebhookReceiver::start().await;
    let created = create(&app, "alice", json!({"url": receiver.url})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let test = format!("{WEBHOOKS}/{id}/test");

    // Four attempts (the first and three retries), all refused: recorded failed, still enabled.
    receiver.answer(&[500; 4]);
    app.post(&test, "alice", &json!({}))
        .await
        .assert_status(202);
    app.drain_webhooks_with(&deliverer).await;
    assert_eq!(receiver.received().len(), 4);
    let list = app.get(WEBHOOKS, "alice").await;
    assert_eq!(list.body["webhooks"][0]["status"], "enabled");
    assert!(list.body["webhooks"][0]["failing_since"].is_string());
    let deliveries = app
        .get(&format!("{WEBHOOKS}/{id}/deliveries"), "alice")
        .await;
    assert_eq!(deliveries.body["deliveries"][0]["outcome"], "failed");
    assert_eq!(deliveries.body["deliveries"][0]["attempt"], 4);
    assert_eq!(deliveries.body["deliveries"][0]["error"], "http_status");

    // Five days on, still failing: disabled, with the reason shown.
    clock.advance(5 * 86_400 + 1);
    receiver.answer(&[500]);
    app.post(&test, "alice", &json!({}))
        .await
        .assert_status(202);
    app.drain_webhooks_with(&deliverer).await;
    assert_eq!(receiver.received().len(), 5, "no retry once disabled");
    let list = app.get(WEBHOOKS, "alice").await;
    assert_eq!(
        list.body["webhooks"][0]["status"], "disabled",
        "{}",
        list.text
    );
    assert!(
        list.body["webhooks"][0]["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("5 days")
    );

    // Events no longer go to it...
    let domain = unique_domain();
    app.verified_email_account("alice", "mail", &domain, None)
        .await;
    app.drain_webhooks_with(&deliverer).await;
    assert_eq!(
        receiver.received().len(),
        5,
        "a disabled endpoint gets no events"
    );

    // ...until a test succeeds.
    app.post(&test, "alice", &json!({}))
        .await
        .assert_status(202);
    app.drain_webhooks_with(&deliverer).await;
    assert_eq!(receiver.received().len(), 6);
    let list = app.get(WEBHOOKS, "alice").await;
    assert_eq!(list.body["webhooks"][0]["status"], "enabled");
    assert!(list.body["webhooks"][0]["failing_since"].is_null());
}

#[tokio::test]
async fn deleting_a_webhook_stops_its_deliveries_even_those_already_queued() {
    let app = TestApp::spawn().await;
    let receiver = WebhookReceiver::start().await;
    let created = create(&app, "alice", json!({"url": receiver.url})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.post(&format!("{WEBHOOKS}/{id}/test"), "alice", &json!({}))
        .await
        .assert_status(202);
    app.delete(&format!("{WEBHOOKS}/{id}"), "alice")
        .await
        .assert_status(204);
    app.drain_webhooks().await;
    assert!(receiver.received().is_empty());
    app.get(&format!("{WEBHOOKS}/{id}/deliveries"), "alice")
        .await
        .assert_error(404, "not_found");
    app.delete(&format!("{WEBHOOKS}/{id}"), "alice")
        .await
        .assert_error(404, "not_found");
    // The freed slot counts again: ten may be made after a delete.
    for _ in 0..10 {
        create(&app, "alice", json!({"url": receiver.url})).await;
    }
    app.post(WEBHOOKS, "alice", &json!({"url": receiver.url}))
        .await
        .assert_error(422, "webhook_limit_reached");
}

#[tokio::test]
async fn a_grant_found_dead_by_a_send_is_told_once_and_a_reconnect_is_told_as_recovered() {
    let (app, fake) = FakeSocial::with_app().await;
    let receiver = WebhookReceiver::start().await;
    create(
        &app,
        "alice",
        json!({"url": receiver.url,
            "events": ["account.reauth_required", "account.recovered", "communication.failed"]}),
    )
    .await;
    // An X account whose access token expired and whose grant the user revoked at X.
    fake.x_tokens("x-access-0", "x-refresh-0");
    let account = |access: &str, expires_at: &str| {
        json!({"account_id": "x-main", "account_type": "social", "provider": "x",
            "expires_at": expires_at,
            "configuration": {"access_token": access, "refresh_token": "x-refresh-0"}})
    };
    app.post(
        ACCOUNTS,
        "alice",
        &account("x-access-expired", "2020-01-01T00:00:00Z"),
    )
    .await
    .assert_status(201);
    fake.revoke_x_grant();
    for handle in ["ada", "grace"] {
        app.post(
            TARGETS,
            "alice",
            &json!({"name": handle, "twitter_username": handle}),
        )
        .await
        .assert_status(201);
    }
    app.post(INITIATE, "alice", &json!({"message": {"body": "Hi"}}))
        .await
        .assert_status(202);
    app.drain_queue().await;
    app.drain_webhooks().await;

    // Two sends met the dead grant: each communication failed with its reason, and the user
    // hears of the account once.
    let (account_events, failed): (Vec<ReceivedWebhook>, Vec<ReceivedWebhook>) = receiver
        .received()
        .into_iter()
        .partition(|delivery| delivery.event_type().starts_with("account."));
    assert_eq!(failed.len(), 2);
    for delivery in &failed {
        let data = &delivery.json()["data"];
        assert_eq!(delivery.event_type(), "communication.failed");
        assert_eq!(data["status"], "failed");
        assert_eq!(data["reason"], "reauth_required");
        assert_eq!(data["channel"], "twitter");
    }
    let received = account_events;
    let types: Vec<String> = received.iter().map(ReceivedWebhook::event_type).collect();
    assert_eq!(types, ["account.reauth_required"], "{types:?}");
    let data = &received[0].json()["data"];
    assert_eq!(data["account_id"], "x-main");
    assert_eq!(data["provider"], "x");
    assert_eq!(data["connected"], false);
    assert_eq!(data["status_reason"], "reauth_required");
    let body = String::from_utf8_lossy(&received[0].body);
    assert!(
        !body.contains("x-refresh-0") && !body.contains("x-access"),
        "no token in an event"
    );

    // The user connects it again: recovered, once.
    app.post(
        ACCOUNTS,
        "alice",
        &account("x-access-new", "2099-01-01T00:00:00Z"),
    )
    .await
    .assert_status(200);
    app.drain_webhooks().await;
    let types: Vec<String> = receiver
        .received()
        .iter()
        .map(ReceivedWebhook::event_type)
        .filter(|kind| kind.starts_with("account."))
        .collect();
    assert_eq!(
        types,
        ["account.reauth_required", "account.recovered"],
        "{types:?}"
    );
}

#[tokio::test]
async fn urls_that_reach_private_addresses_or_are_not_https_are_refused() {
    // As in AWS: no loopback either.
    let app = TestApp::spawn_with(|environment| {
        environment.insert(vars::WEBHOOK_ALLOW_LOOPBACK.to_owned(), "false".to_owned());
    })
    .await;
    let refused = [
        "http://93.184.215.14/hook",
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://10.1.2.3/hook",
        "https://172.16.0.1/hook",
        "https://192.168.1.1/hook",
        "https://[fd12::1]/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/",
        "https://100.64.0.1/",
        "https://[fe80::1]/",
        "https://[::ffff:10.0.0.1]/",
        "https://localhost/hook",
        "https://metadata.google.internal/",
        "https://user:password@93.184.215.14/hook",
        "https://does-not-resolve.invalid/hook",
        "not a url",
    ];
    for url in refused {
        let answer = app.post(WEBHOOKS, "alice", &json!({"url": url})).await;
        answer.assert_error(422, "validation_failed");
        assert_eq!(
            answer.body["error"]["details"][0]["field"], "url",
            "{url}: {}",
            answer.text
        );
        assert!(!answer.text.contains(url), "the URL is not echoed");
    }
    let answer = app
        .post(
            WEBHOOKS,
            "alice",
            &json!({"url": "https://93.184.215.14/hook", "events": ["run.completed", "no.such"]}),
        )
        .await;
    answer.assert_error(422, "validation_failed");
    assert_eq!(answer.body["error"]["details"][0]["field"], "events[1]");
    // A public address is accepted.
    let created = create(
        &app,
        "alice",
        json!({"url": "https://93.184.215.14/hook", "events": ["run.completed"]}),
    )
    .await;
    assert_eq!(created["events"], json!(["run.completed"]));
}
