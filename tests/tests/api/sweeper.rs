//! Nothing stays in flight: a claim whose answer was lost is still ours, the worker's tick
//! settles what a dead worker or a lost message left (`sending` -> `delivery_outcome_unknown`,
//! `queued` -> back on the queue) and finishes their runs, and the release of scheduled
//! communications reads them in batches and stops inside its time budget.

use aws_sdk_dynamodb::types::AttributeValue;
use pipewise_tests::TestApp;
use pipewise_tests::fault_proxy::{Fault, FaultProxy, Persistence};
use serde_json::{Value, json};

const INITIATE: &str = "/api/user/orchestrator/initiate-communications";

/// Alice's verified email account and one run to `targets` people; the run id and sender.
async fn email_run(app: &TestApp, targets: usize) -> (String, String) {
    let domain = pipewise_tests::unique_domain();
    let sender = app
        .verified_email_account("alice", "mail", &domain, Some(1000))
        .await;
    for i in 0..targets {
        app.post(
            "/api/user/communication-targets",
            "alice",
            &json!({"name": format!("Person {i}"), "email": format!("p{i}@{domain}")}),
        )
        .await
        .assert_status(201);
    }
    let started = app
        .post(INITIATE, "alice", &json!({"message": {"body": "Hi"}}))
        .await;
    started.assert_status(202);
    (started.body["run_id"].as_str().unwrap().to_owned(), sender)
}

async fn run_of(app: &TestApp, run_id: &str) -> Value {
    app.get(&format!("/api/user/orchestrator/runs/{run_id}"), "alice")
        .await
        .body
}

async fn purge_queue(app: &TestApp) {
    // What SQS holds is gone (the messages lost); receive and delete rather than PurgeQueue,
    // which AWS allows once a minute.
    let sqs = app.sqs();
    let url = app.queue_url("CommunicationsQueue");
    loop {
        let messages = app.receive_messages().await;
        if messages.is_empty() {
            return;
        }
        for message in messages {
            sqs.delete_message()
                .queue_url(&url)
                .receipt_handle(message.receipt_handle.unwrap_or_default())
                .send()
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn a_claim_whose_answer_was_lost_is_still_delivered_once() {
    let app = TestApp::spawn().await;
    let (run_id, sender) = email_run(&app, 1).await;
    let proxy = FaultProxy::start(&std::env::var("AWS_ENDPOINT_URL").unwrap()).await;
    let worker = app.worker_on(&app.sdk_through(&proxy.url));
    // The claim (the worker's first UpdateItem) is applied; its answer never comes back, and
    // the SDK's retry of it finds the communication already `sending`.
    proxy.inject(
        "dynamodb:UpdateItem",
        1,
        Fault::LostAnswer,
        Persistence::Once,
    );
    app.drain_queue_with(&worker).await;
    assert_eq!(proxy.fired(), 1, "the claim's answer was lost");
    proxy.heal();
    assert_eq!(app.sent_raw_emails(&sender).await.len(), 1, "sent, once");
    let run = run_of(&app, &run_id).await;
    assert_eq!(run["communications"][0]["status"], "sent", "{run}");
    assert_eq!(run["status"], "completed");
}

#[tokio::test]
async fn the_tick_settles_what_a_dead_worker_or_a_lost_message_left() {
    let app = TestApp::spawn().await;
    let (run_id, sender) = email_run(&app, 2).await;
    purge_queue(&app).await;
    // One communication was claimed by a worker that died mid-delivery; the other's message
    // is gone. Both are left as they were.
    let table = app.resource("RunsTable").to_owned();
    let started = pipewise::clock::Clock::system().epoch_seconds();
    app.dynamodb()
        .update_item()
        .table_name(&table)
        .key("user_id", AttributeValue::S("alice".into()))
        .key(
            "sk",
            AttributeValue::S(
                pipewise::communications::store::CommunicationItem::sort_key(
                    &pipewise::ids::RunId::parse(&run_id).unwrap(),
                    0,
                ),
            ),
        )
        .update_expression("SET #status = :sending, sending_since = :since")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":sending", AttributeValue::S("sending".into()))
        .expression_attribute_values(":since", AttributeValue::N(started.to_string()))
        .send()
        .await
        .unwrap();
    let clock = pipewise::clock::Clock::adjustable();
    let worker = app.worker_with_clock(clock.clone());
    // Too early: a worker may still be on it, a message may still be on its way.
    let early = worker.tick().await.unwrap();
    assert_eq!((early.settled_unknown, early.requeued), (0, 0), "{early:?}");
    // Past both thresholds.
    clock.advance(pipewise::communications::worker::STALE_QUEUED_SECONDS + 1);
    let report = worker.tick().await.unwrap();
    assert_eq!(
        (report.settled_unknown, report.requeued),
        (1, 1),
        "{report:?}"
    );
    app.drain_queue_with(&worker).await;
    let run = run_of(&app, &run_id).await;
    let by_index: Vec<(&Value, &Value)> = run["communications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (&c["status"], &c["reason"]))
        .collect();
    assert!(
        by_index.contains(&(&json!("failed"), &json!("delivery_outcome_unknown"))),
        "{run}"
    );
    assert!(by_index.contains(&(&json!("sent"), &Value::Null)), "{run}");
    assert_eq!(run["status"], "completed_with_errors", "the run finishes");
    // Exactly the re-queued one went out: the one that may have gone out never goes again.
    assert_eq!(app.sent_raw_emails(&sender).await.len(), 1);
    // Settled ones leave the in-flight index: the next tick has nothing to do.
    let again = worker.tick().await.unwrap();
    assert_eq!((again.settled_unknown, again.requeued), (0, 0), "{again:?}");
}

#[tokio::test]
async fn ten_thousand_due_communications_are_released_in_one_tick() {
    let app = TestApp::spawn().await;
    let run_id = pipewise::ids::RunId::new();
    let now = pipewise::clock::Clock::system().epoch_seconds();
    let total = 10_000;
    let items = (0..total)
        .map(|index: u32| {
            pipewise_tests::due_scheduled_communication("alice", &run_id, index, now - 60)
        })
        .collect();
    app.put_items("RunsTable", items).await;
    // A tick whose budget is spent at once still makes progress (its first step), says it ran
    // out of time, and leaves the rest in the index for the next tick.
    let hurried = app
        .worker()
        .with_tick_budget(std::time::Duration::ZERO)
        .tick()
        .await
        .unwrap();
    assert_eq!(
        (hurried.released, hurried.out_of_time),
        (pipewise::communications::worker::RELEASE_STEP, true),
        "{hurried:?}"
    );
    purge_queue(&app).await;
    // One tick whose budget suffices releases all 10,000, 100 per BatchGetItem (the budget is
    // lifted here so the assertion never depends on the emulator's speed, which serialises
    // every call; `make bench` times it).
    let released = app
        .worker()
        .with_tick_budget(std::time::Duration::from_secs(3600))
        .release_scheduled()
        .await
        .unwrap();
    assert_eq!(released, total as usize);
    let attributes = app
        .sqs()
        .get_queue_attributes()
        .queue_url(app.queue_url("CommunicationsQueue"))
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    let queued: usize = attributes
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    assert_eq!(queued, total as usize, "every due one is on the queue");
}
