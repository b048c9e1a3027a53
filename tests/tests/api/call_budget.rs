//! What one email costs in AWS calls, counted at the wire by the recording proxy of the fault
//! tests (retries included, what AWS bills): the budget of docs/benchmarks.md, "AWS calls per
//! email". Each figure is a count, not a time, so it is exact on any machine; a change that
//! adds a call per email fails here.

use std::collections::BTreeMap;

use pipewise::clock::Clock;
use pipewise_tests::fault_proxy::FaultProxy;
use pipewise_tests::{TestApp, unique_domain};
use serde_json::json;

/// DynamoDB calls per email sent, the initiate's or the release tick's share included.
const DYNAMODB_CALLS_PER_EMAIL: f64 = 4.0;
/// SQS sends (`SendMessage`, `SendMessageBatch`) per email: the communications queue's and the
/// webhook events', each ten per call (a follow-up batch: the release, the ten `sent` events
/// and the run's completion; one call per event before events were held per batch: 1.1).
const SQS_SENDS_PER_EMAIL: f64 = 0.3;
/// Emails in the run: one batch of the worker's event source mapping (`BatchSize: 10`).
const EMAILS: usize = 10;

/// The calls recorded since the last look, by `service:Operation`.
fn tally(calls: Vec<String>) -> BTreeMap<String, usize> {
    let mut counted = BTreeMap::new();
    for call in calls {
        *counted.entry(call).or_default() += 1;
    }
    counted
}

fn per_email(calls: &BTreeMap<String, usize>, service: &str) -> f64 {
    let total: usize = calls
        .iter()
        .filter(|(call, _)| call.starts_with(service))
        .map(|(_, count)| count)
        .sum();
    total as f64 / EMAILS as f64
}

#[tokio::test]
async fn an_email_and_its_follow_up_each_cost_at_most_four_dynamodb_calls_and_no_kms() {
    let direct = TestApp::spawn().await;
    let emulator = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let proxy = FaultProxy::start(&emulator).await;
    let app = direct.serve_through(direct.sdk_through(&proxy.url)).await;
    let clock = Clock::adjustable();
    let worker = app.worker_with_clock(clock.clone());
    let domain = unique_domain();
    let sender = app
        .verified_email_account("alice", "mail", &domain, None)
        .await;
    app.email_targets("alice", &domain, EMAILS).await;
    let two_steps = json!({"steps": [
        {"message": {"subject": "Hello {{first_name}}", "body": "First, {{name}}."}},
        {"message": {"body": "Following up, {{first_name}}."}, "wait": "P3D"},
    ]});

    // The first step: initiate, then the worker.
    proxy.take_calls();
    app.post(
        "/api/user/orchestrator/initiate-communications",
        "alice",
        &two_steps,
    )
    .await
    .assert_status(202);
    assert_eq!(app.drain_queue_with(&worker).await, EMAILS);
    let first = tally(proxy.take_calls());
    assert_eq!(app.sent_emails(&sender).await.len(), EMAILS);
    assert!(
        per_email(&first, "dynamodb:") <= DYNAMODB_CALLS_PER_EMAIL,
        "first step: {} DynamoDB calls per email: {first:?}",
        per_email(&first, "dynamodb:")
    );
    assert_eq!(
        per_email(&first, "kms:"),
        0.0,
        "an SES email needs no key: {first:?}"
    );
    // The queue and the webhook events: the initiate's enqueue and the batch's ten `sent`
    // events each go out ten per `SendMessageBatch`, not one call per email.
    assert!(
        per_email(&first, "sqs:SendMessage") <= SQS_SENDS_PER_EMAIL,
        "first step: {} SQS sends per email: {first:?}",
        per_email(&first, "sqs:SendMessage")
    );

    // The follow-up: the release tick's share (its calls beyond an idle tick's: the tick runs
    // every minute whether anything is due or not), then the worker.
    clock.advance(3 * 86_400 + 60);
    proxy.take_calls();
    assert_eq!(worker.tick().await.expect("tick").released, EMAILS);
    let releasing = tally(proxy.take_calls());
    assert_eq!(app.drain_queue_with(&worker).await, EMAILS);
    let mut second = tally(proxy.take_calls());
    assert_eq!(worker.tick().await.expect("tick").released, 0);
    let idle = tally(proxy.take_calls());
    for (call, count) in releasing {
        let share = count.saturating_sub(idle.get(&call).copied().unwrap_or(0));
        *second.entry(call).or_default() += share;
    }
    assert_eq!(app.sent_emails(&sender).await.len(), 2 * EMAILS);
    assert!(
        per_email(&second, "dynamodb:") <= DYNAMODB_CALLS_PER_EMAIL,
        "follow-up: {} DynamoDB calls per email: {second:?}",
        per_email(&second, "dynamodb:")
    );
    assert_eq!(per_email(&second, "kms:"), 0.0, "{second:?}");
    assert!(
        per_email(&second, "sqs:SendMessage") <= SQS_SENDS_PER_EMAIL,
        "follow-up: {} SQS sends per email: {second:?}",
        per_email(&second, "sqs:SendMessage")
    );
}
