use std::collections::HashSet;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::AttributeValue;
use pipewise_tests::fake_social::{FakeSocial, SentMessage};
use pipewise_tests::{TestApp, unique_domain};
use reqwest::Method;
use serde_json::{Value, json};

const INITIATE: &str = "/api/user/orchestrator/initiate-communications";
const RUNS: &str = "/api/user/orchestrator/runs";

struct Outreach {
    app: TestApp,
    sender: String,
    domain: String,
}

/// An app with `alice`'s email account (sender verified unless told otherwise) and `count`
/// targets with emails.
async fn setup(count: usize, verified: bool) -> (Outreach, Vec<String>) {
    let app = TestApp::spawn().await;
    let domain = unique_domain();
    let sender = format!("sales@{domain}");
    app.post(
        "/api/user/integrations/accounts",
        "alice",
        &json!({"account_id": "gmail", "account_type": "email", "configuration": {"from_address": sender}}),
    )
    .await
    .assert_status(201);
    if verified {
        app.sender_verified("alice", "gmail").await;
    }
    let ids = app.email_targets("alice", &domain, count).await;
    (
        Outreach {
            app,
            sender,
            domain,
        },
        ids,
    )
}

fn message() -> Value {
    json!({"message": {"subject": "Hi {{first_name}}", "body": "Hello {{name}}, <b>not html</b>"}})
}

async fn initiate(app: &TestApp, key: Option<&str>, body: &Value) -> pipewise_tests::TestResponse {
    let mut request = app
        .request(Method::POST, INITIATE)
        .bearer_auth(app.token("alice"))
        .json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    app.send(request).await
}

async fn queue_depth(app: &TestApp) -> usize {
    let attributes = app
        .sqs()
        .get_queue_attributes()
        .queue_url(app.queue_url("CommunicationsQueue"))
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
    ]
    .iter()
    .map(|name| {
        attributes
            .get(&aws_sdk_sqs::types::QueueAttributeName::from(*name))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    })
    .sum()
}

fn event_of(messages: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
    TestApp::sqs_event(messages)
}

#[tokio::test]
async fn a_run_emails_every_target_once_and_completes() {
    let (outreach, ids) = setup(5, true).await;
    let app = &outreach.app;
    let started = initiate(app, None, &message()).await;
    started.assert_status(202);
    assert_eq!(started.body["queued"], 5);
    assert_eq!(started.body["skipped"], json!([]));
    let run_id = started.body["run_id"].as_str().unwrap().to_owned();

    let queued = app.get(&format!("{RUNS}/{run_id}"), "alice").await;
    queued.assert_status(200);
    assert_eq!(queued.body["status"], "queued");
    assert_eq!(queued.body["counts"]["pending"], 5);

    assert_eq!(app.drain_queue().await, 5);
    let run = app.get(&format!("{RUNS}/{run_id}"), "alice").await;
    run.assert_status(200);
    assert_eq!(run.body["status"], "completed");
    assert_eq!(
        run.body["counts"],
        json!({"total": 5, "pending": 0, "sent": 5, "failed": 0, "cancelled": 0,
               "scheduled": 0, "delivered": 0, "bounced": 0, "complained": 0, "replied": 0})
    );
    assert!(run.body["completed_at"].is_string());
    let communications = run.body["communications"].as_array().unwrap();
    assert_eq!(communications.len(), 5);
    let targets: HashSet<&str> = communications
        .iter()
        .map(|c| c["target_id"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ids.iter().map(String::as_str).collect());
    assert!(
        communications
            .iter()
            .all(|c| c["status"] == "sent" && c["channel"] == "email")
    );

    let mut emails = app.sent_emails(&outreach.sender).await;
    emails.sort();
    assert_eq!(emails.len(), 5, "exactly five emails");
    for (i, (to, subject, body)) in emails.iter().enumerate() {
        assert_eq!(to, &format!("p{i}@{}", outreach.domain));
        assert_eq!(subject, &format!("Hi Person{i}"));
        assert!(
            body.starts_with(&format!("Hello Person{i} Surname, <b>not html</b>\r\n\r\n--\r\nTo stop receiving these emails: http://127.0.0.1:8001/api/user/unsubscribe/")),
            "{body}"
        );
    }
    let listed = app.get(RUNS, "alice").await;
    listed.assert_status(200);
    assert_eq!(listed.body["runs"][0]["run_id"], run_id.as_str());
    assert_eq!(listed.body["runs"][0]["status"], "completed");
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_run_and_enqueues_nothing_more() {
    let (outreach, _) = setup(3, true).await;
    let app = &outreach.app;
    let first = initiate(app, Some("key-1"), &message()).await;
    first.assert_status(202);
    assert_eq!(queue_depth(app).await, 3);
    let again = initiate(app, Some("key-1"), &message()).await;
    again.assert_status(202);
    assert_eq!(again.body, first.body);
    assert_eq!(queue_depth(app).await, 3, "nothing enqueued twice");

    let mut other = message();
    other["message"]["body"] = json!("Another text");
    let conflict = initiate(app, Some("key-1"), &other).await;
    conflict.assert_error(409, "idempotency_key_reused");
    assert_eq!(
        app.get(RUNS, "alice").await.body["runs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A malformed key is refused before anything happens.
    initiate(app, Some("bad key with spaces"), &message())
        .await
        .assert_error(400, "bad_request");
}

#[tokio::test]
async fn ten_concurrent_initiates_with_one_key_make_one_run() {
    let (outreach, _) = setup(2, true).await;
    let app = &outreach.app;
    let body = message();
    let responses =
        futures::future::join_all((0..10).map(|_| initiate(app, Some("same-key"), &body))).await;
    let run_ids: HashSet<String> = responses
        .iter()
        .filter(|r| r.status == 202)
        .map(|r| r.body["run_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        run_ids.len(),
        1,
        "{:?}",
        responses.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    for response in &responses {
        if response.status != 202 {
            response.assert_error(409, "idempotency_key_in_progress");
            let retry_after: i64 = response.headers["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&retry_after), "{retry_after}");
        }
    }
    assert_eq!(
        app.get(RUNS, "alice").await.body["runs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(queue_depth(app).await, 2);
}

#[tokio::test]
async fn a_message_delivered_twice_sends_one_email() {
    let (outreach, _) = setup(1, true).await;
    let app = &outreach.app;
    initiate(app, None, &message()).await.assert_status(202);
    let messages = app.receive_messages().await;
    assert_eq!(messages.len(), 1);
    let worker = app.worker();
    // The same message twice in one batch and once more in a later batch.
    let mut event = event_of(&messages);
    let mut copy = event.records[0].clone();
    copy.message_id = Some("duplicate-delivery".into());
    event.records.push(copy);
    assert!(
        communications_worker::handle_batch(&worker, event)
            .await
            .batch_item_failures
            .is_empty()
    );
    assert!(
        communications_worker::handle_batch(&worker, event_of(&messages))
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(app.sent_emails(&outreach.sender).await.len(), 1);
}

#[tokio::test]
async fn poison_messages_are_the_only_batch_failures_and_end_in_the_dlq() {
    let (outreach, _) = setup(1, true).await;
    let app = &outreach.app;
    initiate(app, None, &message()).await.assert_status(202);
    let mut event = event_of(&app.receive_messages().await);
    for (id, body) in [
        ("poison-1", "not json"),
        ("poison-2", r#"{"user_id": "alice"}"#),
    ] {
        let mut record = SqsMessage::default();
        record.message_id = Some(id.into());
        record.body = Some(body.into());
        event.records.push(record);
    }
    let response = communications_worker::handle_batch(&app.worker(), event).await;
    let failed: HashSet<String> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    assert_eq!(
        failed,
        HashSet::from(["poison-1".to_owned(), "poison-2".to_owned()])
    );
    assert_eq!(app.sent_emails(&outreach.sender).await.len(), 1);

    // Through the real queue: an undecodable message is retried until SQS moves it to the DLQ.
    let sqs = app.sqs();
    let queue = app.queue_url("CommunicationsQueue");
    sqs.purge_queue().queue_url(&queue).send().await.unwrap();
    // Failed messages come back at once instead of after the visibility timeout.
    sqs.set_queue_attributes()
        .queue_url(&queue)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "0",
        )
        .send()
        .await
        .unwrap();
    sqs.send_message()
        .queue_url(&queue)
        .message_body("garbage")
        .send()
        .await
        .unwrap();
    let worker = app.worker();
    let mut receives = 0;
    for _ in 0..10 {
        let report = pipewise_local::queue_poller::poll_once(&sqs, &queue, &worker, 0)
            .await
            .unwrap();
        assert_eq!(report.failed, report.received);
        receives += report.received;
        if report.received == 0 {
            break;
        }
    }
    assert_eq!(
        receives,
        pipewise::communications::worker::MAX_RECEIVES as usize
    );
    let dead = sqs
        .receive_message()
        .queue_url(app.queue_url("CommunicationsDeadLetterQueue"))
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body(), Some("garbage"));
}

#[tokio::test]
async fn a_sender_ses_no_longer_verifies_fails_with_a_reason_and_is_not_retried() {
    let (outreach, _) = setup(2, true).await;
    let app = &outreach.app;
    let run_id = initiate(app, None, &message()).await.body["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The identity disappears from SES after the run was queued.
    aws_sdk_sesv2::Client::new(&app.sdk)
        .delete_email_identity()
        .email_identity(&outreach.sender)
        .send()
        .await
        .unwrap();
    assert_eq!(
        app.drain_queue().await,
        2,
        "received once each: permanent failures are not retried"
    );
    assert_eq!(queue_depth(app).await, 0);
    let run = app.get(&format!("{RUNS}/{run_id}"), "alice").await;
    assert_eq!(run.body["status"], "completed_with_errors");
    assert_eq!(run.body["counts"]["failed"], 2);
    for communication in run.body["communications"].as_array().unwrap() {
        assert_eq!(communication["status"], "failed");
        assert_eq!(communication["reason"], "sender_not_verified");
    }
}

#[tokio::test]
async fn an_email_whose_answer_was_lost_is_sent_once_and_recorded_as_unknown() {
    // SES receives the request and the answer never comes back: SendEmail is not idempotent,
    // so neither the SDK nor SQS may send it again.
    let (outreach, _) = setup(1, true).await;
    let app = &outreach.app;
    let ses = pipewise_tests::black_hole::BlackHole::start().await;
    let worker = app.worker_on(&app.sdk_with_service_endpoint("AWS_ENDPOINT_URL_SESV2", &ses.url));
    let run_id = initiate(app, None, &message()).await.body["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.drain_queue_with(&worker).await,
        1,
        "received once, never redelivered"
    );
    assert_eq!(ses.requests(), 1, "the SDK must not retry SendEmail");
    assert_eq!(queue_depth(app).await, 0);
    let run = app.get(&format!("{RUNS}/{run_id}"), "alice").await;
    let communication = &run.body["communications"][0];
    assert_eq!(communication["status"], "failed");
    assert_eq!(communication["reason"], "delivery_outcome_unknown");
}

#[tokio::test]
async fn a_run_that_skips_5000_pairs_is_accepted_with_counts_and_a_bounded_list() {
    // One emailable target, and 5,000 Instagram-only targets without an Instagram account: a
    // realistic bulk import. The run item once listed every skipped pair and passed 400 KB.
    let (outreach, _) = setup(1, true).await;
    let app = &outreach.app;
    let now = "2026-11-26T00:00:00Z";
    let items = (0..5_000)
        .map(|i| {
            let id = uuid::Uuid::now_v7().to_string();
            [
                ("user_id", AttributeValue::S("alice".into())),
                ("sk", AttributeValue::S(format!("T#{id}"))),
                ("id", AttributeValue::S(id)),
                ("name", AttributeValue::S(format!("Insta {i}"))),
                ("instagram_username", AttributeValue::S(format!("ig_{i}"))),
                ("active", AttributeValue::Bool(true)),
                ("created_at", AttributeValue::S(now.into())),
                ("updated_at", AttributeValue::S(now.into())),
                ("version", AttributeValue::N("1".into())),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
        })
        .collect();
    app.put_items("TargetsTable", items).await;
    let started = initiate(app, Some("bulk"), &message()).await;
    started.assert_status(202);
    assert_eq!(started.body["queued"], 1);
    assert_eq!(started.body["skipped_total"], 5000);
    assert_eq!(
        started.body["skipped_counts"],
        json!({"no_connected_account": 5000})
    );
    assert_eq!(started.body["skipped"].as_array().unwrap().len(), 100);
    let replay = initiate(app, Some("bulk"), &message()).await;
    replay.assert_status(202);
    assert_eq!(
        replay.body, started.body,
        "the idempotent replay is the same answer"
    );
    let run = app
        .get(
            &format!("{RUNS}/{}", started.body["run_id"].as_str().unwrap()),
            "alice",
        )
        .await;
    assert_eq!(run.body["skipped_total"], 5000);
    assert_eq!(run.body["skipped"].as_array().unwrap().len(), 100);
}

#[tokio::test]
async fn cancel_stops_every_unsent_communication() {
    let (outreach, _) = setup(3, true).await;
    let app = &outreach.app;
    let run_id = initiate(app, None, &message()).await.body["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cancelled = app
        .post(&format!("{RUNS}/{run_id}/cancel"), "alice", &json!({}))
        .await;
    cancelled.assert_status(200);
    assert_eq!(cancelled.body["cancel_requested"], true);
    assert_eq!(cancelled.body["counts"]["cancelled"], 3);
    assert_eq!(cancelled.body["status"], "completed");
    app.drain_queue().await;
    assert!(
        app.sent_emails(&outreach.sender).await.is_empty(),
        "nothing sent after cancel"
    );
    let run = app.get(&format!("{RUNS}/{run_id}"), "alice").await;
    assert!(
        run.body["communications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "cancelled")
    );
}

#[tokio::test]
async fn another_users_run_is_404() {
    let (outreach, _) = setup(1, true).await;
    let app = &outreach.app;
    let run_id = initiate(app, None, &message()).await.body["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.get(&format!("{RUNS}/{run_id}"), "bob")
        .await
        .assert_error(404, "not_found");
    app.post(&format!("{RUNS}/{run_id}/cancel"), "bob", &json!({}))
        .await
        .assert_error(404, "not_found");
    app.get(&format!("{RUNS}/not-a-run"), "alice")
        .await
        .assert_error(404, "not_found");
    assert_eq!(app.get(RUNS, "bob").await.body["runs"], json!([]));
}

#[tokio::test]
async fn requests_that_cannot_be_delivered_are_422_with_reasons() {
    let app = TestApp::spawn().await;
    let target = app
        .post(
            "/api/user/communication-targets",
            "alice",
            &json!({"name": "Ada", "email": "ada@example.com"}),
        )
        .await;
    let id = target.body["id"].as_str().unwrap().to_owned();
    let nothing = initiate(&app, None, &message()).await;
    nothing.assert_error(422, "nothing_deliverable");
    assert_eq!(
        nothing.body["error"]["details"][0]["problem"],
        "no_connected_account"
    );

    let mut unknown = message();
    // A repeated id counts once; the unknown one is named by its place in the request.
    unknown["target_ids"] = json!([id, id, uuid::Uuid::now_v7().to_string()]);
    let refused = initiate(&app, None, &unknown).await;
    refused.assert_error(422, "unknown_targets");
    assert_eq!(
        refused.body["error"]["details"][0]["field"],
        "target_ids[2]"
    );

    let mut invalid = message();
    invalid["channels"] = json!(["fax"]);
    initiate(&app, None, &invalid)
        .await
        .assert_error(422, "validation_failed");
    // Any field name may be a custom field now; what is not a placeholder at all is refused.
    let placeholder = json!({"message": {"body": "Hi {{Nick Name}}"}});
    initiate(&app, None, &placeholder)
        .await
        .assert_error(422, "validation_failed");
    // A refused request leaves no run and no key behind: the key works for a corrected request.
    initiate(&app, Some("k"), &message())
        .await
        .assert_error(422, "nothing_deliverable");
    assert_eq!(app.get(RUNS, "alice").await.body["runs"], json!([]));
}

#[tokio::test]
async fn a_run_over_1000_communications_is_refused() {
    let (outreach, _) = setup(0, true).await;
    let app = &outreach.app;
    app.post("/api/user/integrations/accounts", "alice",
        &json!({"account_id": "x", "account_type": "social", "provider": "twitter", "configuration": {"access_token": "t"}}))
        .await
        .assert_status(201);
    // 501 targets on two channels: 1,002 communications. Written straight to the table (as the
    // targets function stores them) to keep the test fast; the limit is the orchestrator's.
    let items: Vec<aws_sdk_dynamodb::types::WriteRequest> = (0..501)
        .map(|i| {
            let id = uuid::Uuid::now_v7().to_string();
            let put = aws_sdk_dynamodb::types::PutRequest::builder()
                .item("user_id", AttributeValue::S("alice".into()))
                .item("sk", AttributeValue::S(format!("T#{id}")))
                .item("id", AttributeValue::S(id))
                .item("name", AttributeValue::S(format!("P{i}")))
                .item(
                    "email",
                    AttributeValue::S(format!("p{i}@{}", outreach.domain)),
                )
                .item("twitter_username", AttributeValue::S(format!("p{i}")))
                .item("active", AttributeValue::Bool(true))
                .item(
                    "created_at",
                    AttributeValue::S("2026-01-01T00:00:00Z".into()),
                )
                .item(
                    "updated_at",
                    AttributeValue::S("2026-01-01T00:00:00Z".into()),
                )
                .item("version", AttributeValue::N("1".into()))
                .build()
                .unwrap();
            aws_sdk_dynamodb::types::WriteRequest::builder()
                .put_request(put)
                .build()
        })
        .collect();
    for chunk in items.chunks(25) {
        app.dynamodb()
            .batch_write_item()
            .request_items(app.resource("TargetsTable"), chunk.to_vec())
            .send()
            .await
            .unwrap();
    }
    initiate(app, None, &message())
        .await
        .assert_error(422, "run_too_large");
    assert_eq!(queue_depth(app).await, 0);
}

#[tokio::test]
async fn after_an_enqueue_failure_a_retry_with_the_key_finishes_the_run_once() {
    let (outreach, _) = setup(4, true).await;
    let app = &outreach.app;
    let broken = app
        .serve_variant(|environment| {
            let url = environment["COMMUNICATIONS_QUEUE_URL"].clone();
            environment.insert("COMMUNICATIONS_QUEUE_URL".into(), format!("{url}-missing"));
        })
        .await;
    let failed = initiate(&broken, Some("retry-me"), &message()).await;
    failed.assert_error(503, "service_unavailable");
    assert!(failed.headers.contains_key("retry-after"));
    assert_eq!(queue_depth(app).await, 0);

    let retried = initiate(app, Some("retry-me"), &message()).await;
    retried.assert_status(202);
    assert_eq!(retried.body["queued"], 4);
    assert_eq!(queue_depth(app).await, 4);
    assert_eq!(
        app.get(RUNS, "alice").await.body["runs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let again = initiate(app, Some("retry-me"), &message()).await;
    assert_eq!(again.body, retried.body);
    assert_eq!(app.drain_queue().await, 4);
    assert_eq!(app.sent_emails(&outreach.sender).await.len(), 4);
}

#[tokio::test]
async fn a_communication_stuck_in_sending_is_resolved_without_sending_again() {
    let (outreach, _) = setup(1, true).await;
    let app = &outreach.app;
    let run_id = initiate(app, None, &message()).await.body["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A worker claimed it ten minutes ago and died.
    app.dynamodb()
        .update_item()
        .table_name(app.resource("RunsTable"))
        .key("user_id", AttributeValue::S("alice".into()))
        .key("sk", AttributeValue::S(format!("C#{run_id}#0000")))
        .update_expression("SET #s = :sending, sending_since = :then")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":sending", AttributeValue::S("sending".into()))
        .expression_attribute_values(":then", AttributeValue::N((time_now() - 600).to_string()))
        .send()
        .await
        .unwrap();
    app.drain_queue().await;
    let run = app.get(&format!("{RUNS}/{run_id}"), "alice").await;
    assert_eq!(run.body["communications"][0]["status"], "failed");
    assert_eq!(
        run.body["communications"][0]["reason"],
        "delivery_outcome_unknown"
    );
    assert_eq!(run.body["status"], "completed_with_errors");
    assert!(app.sent_emails(&outreach.sender).await.is_empty());
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sent(platform: &'static str, token: &str, recipient: &str, text: &str) -> SentMessage {
    SentMessage {
        platform,
        token: token.into(),
        recipient: recipient.into(),
        text: text.into(),
    }
}

/// An app whose worker talks to the fake platforms, with alice's social `account` and one target
/// per `(name, handle)` reachable on `channel_field`.
async fn social_app(
    account: Value,
    channel_field: &str,
    targets: &[(&str, &str)],
) -> (TestApp, FakeSocial) {
    let fake = FakeSocial::start().await;
    let base = fake.base_url.clone();
    let app = TestApp::spawn_with(|environment| {
        environment.insert("X_API_BASE_URL".into(), base.clone());
        environment.insert("INSTAGRAM_API_BASE_URL".into(), base);
    })
    .await;
    app.post("/api/user/integrations/accounts", "alice", &account)
        .await
        .assert_status(201);
    for (name, handle) in targets {
        app.post(
            "/api/user/communication-targets",
            "alice",
            &json!({"name": name, channel_field: handle}),
        )
        .await
        .assert_status(201);
    }
    (app, fake)
}

#[tokio::test]
async fn x_messages_retry_transient_failures_and_record_revoked_tokens() {
    let account = json!({"account_id": "x-main", "account_type": "social", "provider": "twitter",
        "configuration": {"access_token": "tok-123"}});
    let (app, fake) = social_app(
        account,
        "twitter_username",
        &[("Ada", "ada"), ("Grace", "grace")],
    )
    .await;
    fake.answer_with(&[503]);
    let started = initiate(&app, None, &json!({"message": {"body": "Hi {{name}}"}})).await;
    started.assert_status(202);
    let run_id = started.body["run_id"].as_str().unwrap().to_owned();
    let messages = app.receive_messages().await;
    assert_eq!(messages.len(), 2);
    let worker = app.worker();
    let first = communications_worker::handle_batch(&worker, event_of(&messages)).await;
    // A 5xx from the sending call itself means X may have sent it: never sent again.
    assert!(first.batch_item_failures.is_empty(), "nothing is retried");
    let delivered = fake.sent();
    assert_eq!(delivered.len(), 1, "the other one went out: {delivered:?}");
    assert_eq!(delivered[0].token, "tok-123", "with the account's token");
    let run = app.get(&format!("{RUNS}/{run_id}"), "alice").await;
    assert_eq!(run.body["status"], "completed_with_errors");
    let reasons: Vec<&Value> = run.body["communications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["reason"])
        .collect();
    assert!(
        reasons.contains(&&json!("delivery_outcome_unknown")),
        "{}",
        run.text
    );
    // Another delivery of the same messages (SQS at least once) sends nothing more.
    let mut again = event_of(&messages);
    for record in &mut again.records {
        record
            .attributes
            .insert("ApproximateReceiveCount".into(), "2".into());
    }
    assert!(
        communications_worker::handle_batch(&worker, again)
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(fake.sent().len(), 1, "each delivered at most once");

    // A revoked token (refused again after the refresh attempt) is a permanent failure:
    // recorded, not retried.
    fake.answer_with(&[401, 401]);
    let targets = app.get("/api/user/communication-targets", "alice").await;
    let ada = targets.body["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Ada")
        .unwrap()["id"]
        .clone();
    let second = initiate(
        &app,
        None,
        &json!({"target_ids": [ada], "message": {"body": "Again"}}),
    )
    .await;
    let run_id = second.body["run_id"].as_str().unwrap().to_owned();
    assert_eq!(app.drain_queue().await, 1);
    let run = app.get(&format!("{RUNS}/{run_id}"), "alice").await;
    assert_eq!(run.body["communications"][0]["reason"], "token_revoked");
    assert_eq!(fake.sent().len(), 1, "a refused message is not sent");
}

#[tokio::test]
async fn instagram_messages_go_through_the_graph_api_with_the_accounts_credentials() {
    let account = json!({"account_id": "ig", "account_type": "social", "provider": "instagram",
        "configuration": {"access_token": "ig-token", "ig_user_id": "17841400000000000"}});
    let (app, fake) = social_app(
        account,
        "instagram_username",
        &[("Ada", "ada.l"), ("Nobody", "nobody")],
    )
    .await;
    // Ada wrote to the business an hour ago; "nobody" never did.
    fake.instagram_conversation("ada.l", "igsid-ada", 3600);
    let started = initiate(
        &app,
        None,
        &json!({"channels": ["instagram"], "message": {"body": "Hi {{first_name}}"}}),
    )
    .await;
    started.assert_status(202);
    assert_eq!(started.body["queued"], 2);
    app.drain_queue().await;
    assert_eq!(
        fake.sent(),
        vec![sent("instagram", "ig-token", "igsid-ada", "Hi Ada")]
    );
    let run = app
        .get(
            &format!("{RUNS}/{}", started.body["run_id"].as_str().unwrap()),
            "alice",
        )
        .await;
    assert_eq!(run.body["status"], "completed_with_errors");
    let reasons: Vec<&Value> = run.body["communications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["reason"])
        .collect();
    assert!(
        reasons.contains(&&json!("instagram_window_closed")),
        "no cold messages on Instagram: {reasons:?}"
    );
}
