//! One SQS batch of the worker, whose messages share their reads (docs/reliability.md, "The
//! communications worker"): a sender's daily-cap slots taken for the whole batch still fill the
//! cap exactly, and a run's completion stamp, made once per batch, is never lost.

use pipewise_tests::fault_proxy::{Fault, FaultProxy, Persistence};
use pipewise_tests::{TestApp, unique_domain};
use serde_json::{Value, json};

/// Alice's verified sender (at most `daily_limit` a day), `people` targets and a run to all of
/// them; the run's id and its messages, received and still on the queue.
async fn run_to(
    app: &TestApp,
    people: usize,
    daily_limit: Option<u32>,
) -> (String, Vec<aws_sdk_sqs::types::Message>) {
    let domain = unique_domain();
    app.verified_email_account("alice", "mail", &domain, daily_limit)
        .await;
    app.email_targets("alice", &domain, people).await;
    let started = app
        .post(
            "/api/user/orchestrator/initiate-communications",
            "alice",
            &json!({"message": {"subject": "Hello {{first_name}}", "body": "Hi {{name}}."}}),
        )
        .await;
    started.assert_status(202);
    let messages = app.receive_messages().await;
    assert_eq!(messages.len(), people);
    (
        started.body["run_id"].as_str().unwrap().to_owned(),
        messages,
    )
}

async fn view(app: &TestApp, run_id: &str) -> Value {
    let view = app
        .get(&format!("/api/user/orchestrator/runs/{run_id}"), "alice")
        .await;
    view.assert_status(200);
    view.body
}

#[tokio::test]
async fn a_batch_wanting_more_than_its_senders_cap_has_left_fills_it_exactly() {
    let app = TestApp::spawn().await;
    let (run_id, messages) = run_to(&app, 10, Some(4)).await;
    // Ten emails of one sender in one batch: taking ten slots at once fails (four are left), so
    // each send takes its own, and the first four go.
    let answer =
        communications_worker::handle_batch(&app.worker(), TestApp::sqs_event(&messages)).await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    let counts = &view(&app, &run_id).await["counts"];
    assert_eq!(counts["sent"], 4, "{counts}");
    assert_eq!(
        counts["scheduled"], 6,
        "the rest wait for the sender's next day: {counts}"
    );
}

#[tokio::test]
async fn a_completion_stamp_that_failed_is_made_when_the_message_comes_back() {
    // A twin stack shows where the batch's completion stamp comes: its last UpdateItem.
    let twin = TestApp::spawn().await;
    let emulator = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let proxy = FaultProxy::start(&emulator).await;
    let (_, messages) = run_to(&twin, 1, None).await;
    let twin_worker = twin.worker_on(&twin.sdk_through(&proxy.url));
    proxy.take_calls();
    communications_worker::handle_batch(&twin_worker, TestApp::sqs_event(&messages)).await;
    let updates = proxy
        .take_calls()
        .iter()
        .filter(|call| *call == "dynamodb:UpdateItem")
        .count();

    let app = TestApp::spawn().await;
    let (run_id, messages) = run_to(&app, 1, None).await;
    let worker = app.worker_on(&app.sdk_through(&proxy.url));
    proxy.take_calls();
    proxy.inject(
        "dynamodb:UpdateItem",
        updates,
        Fault::ServerError,
        Persistence::Always,
    );
    let failed = communications_worker::handle_batch(&worker, TestApp::sqs_event(&messages)).await;
    assert!(proxy.fired() > 0, "the stamp was failed");
    assert_eq!(
        failed.batch_item_failures.len(),
        1,
        "the message comes back: {failed:?}"
    );
    let before = view(&app, &run_id).await;
    assert_eq!(before["counts"]["sent"], 1, "{before}");
    assert!(before["completed_at"].is_null(), "{before}");

    proxy.heal();
    let again = communications_worker::handle_batch(&worker, TestApp::sqs_event(&messages)).await;
    assert!(again.batch_item_failures.is_empty(), "{again:?}");
    let after = view(&app, &run_id).await;
    assert!(after["completed_at"].is_string(), "stamped now: {after}");
    assert_eq!(after["counts"]["sent"], 1, "sent once: {after}");
}
