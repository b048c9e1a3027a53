//! The emulator itself (tools/emulator.py): its state dump, which `make dev` users read to see
//! sent email, must answer while queue pollers are waiting in long polls, as they always are; and
//! its DynamoDB keeps DynamoDB's promise for a transaction's client token.

use std::time::Duration;

use aws_sdk_sqs::config::timeout::TimeoutConfig;
use pipewise_tests::TestApp;
use reqwest::StatusCode;
use serde_json::Value;

/// As long as SQS lets a receive wait.
const LONG_POLL_SECONDS: i32 = 20;
/// What `make dev` polls: the outreach queue and the SES feedback queue (one of them twice).
const POLLED: [&str; 3] = [
    "CommunicationsQueue",
    "EmailFeedbackQueue",
    "CommunicationsQueue",
];

/// The dump once waited for every running long poll, and starved while pollers kept polling
/// (minutes under `make dev`). It must answer while three 20 s polls on empty queues still wait.
#[tokio::test]
async fn state_dump_answers_while_long_polls_wait() {
    let app = TestApp::spawn().await;
    // The functions' SDK gives up on a call after seconds; a long poll waits longer.
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&app.sdk)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_attempt_timeout(Duration::from_secs(40))
                    .operation_timeout(Duration::from_secs(40))
                    .build(),
            )
            .build(),
    );
    let polls: Vec<_> = POLLED
        .into_iter()
        .map(|queue| {
            let receive = sqs
                .receive_message()
                .queue_url(app.queue_url(queue))
                .wait_time_seconds(LONG_POLL_SECONDS);
            tokio::spawn(async move { receive.send().await })
        })
        .collect();
    // Time for the polls to reach the emulator and start waiting.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let dump = app
        .client
        .get(format!(
            "{}/moto-api/data.json",
            endpoint.trim_end_matches('/')
        ))
        .send();
    // A bound well inside the polls' 20 s, not a measurement.
    let response = tokio::time::timeout(Duration::from_secs(10), dump)
        .await
        .expect("the state dump answers while long polls wait, not after them")
        .expect("read the emulator's state");
    assert_eq!(response.status(), StatusCode::OK);
    let state: Value = response.json().await.expect("emulator state is JSON");
    assert!(state["sqs"].is_object(), "the dump has SQS's state");

    for poll in polls {
        assert!(
            !poll.is_finished(),
            "a long poll ended before the dump answered: nothing was tested"
        );
        poll.abort();
    }
}

/// The SDK retries an attempt that timed out with the same `ClientRequestToken`; DynamoDB applies
/// such a repeat once. moto applied it again, and a version-guarded account write failed its own
/// condition (409 `concurrent_update` in CI when the emulator stalled past the 5 s attempt).
#[tokio::test]
async fn a_repeated_transaction_token_applies_once() {
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

    let app = TestApp::spawn().await;
    let token = uuid::Uuid::new_v4().to_string();
    let dynamodb = app.dynamodb();
    let table = app.resource("AccountsTable").to_owned();
    let add = |amount: &str| {
        let update = Update::builder()
            .table_name(&table)
            .key("user_id", AttributeValue::S("token-test".into()))
            .key("account_id", AttributeValue::S("counter".into()))
            .update_expression("ADD hits :n")
            .expression_attribute_values(":n", AttributeValue::N(amount.into()))
            .build()
            .expect("update");
        TransactWriteItem::builder().update(update).build()
    };
    for _ in 0..2 {
        dynamodb
            .transact_write_items()
            .transact_items(add("1"))
            .client_request_token(&token)
            .send()
            .await
            .expect("a repeat of a committed call answers as the first");
    }
    let mismatch = dynamodb
        .transact_write_items()
        .transact_items(add("5"))
        .client_request_token(&token)
        .send()
        .await
        .expect_err("the same token with other parameters");
    assert_eq!(
        mismatch.code(),
        Some("IdempotentParameterMismatchException")
    );
    // A new token is a new call.
    dynamodb
        .transact_write_items()
        .transact_items(add("1"))
        .client_request_token(uuid::Uuid::new_v4().to_string())
        .send()
        .await
        .expect("a new token");
    let item = dynamodb
        .get_item()
        .table_name(&table)
        .key("user_id", AttributeValue::S("token-test".into()))
        .key("account_id", AttributeValue::S("counter".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("read")
        .item
        .expect("the counter");
    assert_eq!(item["hits"], AttributeValue::N("2".into()));
}
