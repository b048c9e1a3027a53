//! The emulator itself (tools/emulator.py): its state dump, which `make dev` users read to see
//! sent email, must answer while queue pollers are waiting in long polls, as they always are; and
//! its DynamoDB keeps DynamoDB's promise for a transaction's client token, and rolls a cancelled
//! transaction back item by item.

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

/// The emulator backs up only the items a transaction writes (moto copied whole tables, O(table)
/// per transaction): a cancelled transaction — by a failed condition after a put, an update and
/// a delete, or by naming one item twice — must leave every item exactly as it was, and the
/// table's index must show the same.
#[tokio::test]
async fn a_cancelled_transaction_leaves_every_item_as_it_was() {
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    use aws_sdk_dynamodb::types::{
        AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update,
    };

    let app = TestApp::spawn().await;
    let dynamodb = app.dynamodb();
    let table = app.resource("AccountsTable").to_owned();
    let user = format!("rollback-{}", uuid::Uuid::new_v4());
    let key = |id: &str| {
        [
            ("user_id".to_owned(), AttributeValue::S(user.clone())),
            ("account_id".to_owned(), AttributeValue::S(id.to_owned())),
        ]
        .into_iter()
        .collect::<std::collections::HashMap<_, _>>()
    };
    for (id, hits) in [("kept", "1"), ("deleted", "7")] {
        let mut item = key(id);
        item.insert("hits".into(), AttributeValue::N(hits.into()));
        item.insert("provider".into(), AttributeValue::S("rollback-test".into()));
        dynamodb
            .put_item()
            .table_name(&table)
            .set_item(Some(item))
            .send()
            .await
            .expect("seed");
    }
    let mut new_item = key("new");
    new_item.insert("provider".into(), AttributeValue::S("rollback-test".into()));
    let put = TransactWriteItem::builder()
        .put(
            Put::builder()
                .table_name(&table)
                .set_item(Some(new_item))
                .build()
                .expect("put"),
        )
        .build();
    let update = TransactWriteItem::builder()
        .update(
            Update::builder()
                .table_name(&table)
                .set_key(Some(key("kept")))
                .update_expression("ADD hits :n")
                .expression_attribute_values(":n", AttributeValue::N("10".into()))
                .build()
                .expect("update"),
        )
        .build();
    let delete = TransactWriteItem::builder()
        .delete(
            Delete::builder()
                .table_name(&table)
                .set_key(Some(key("deleted")))
                .build()
                .expect("delete"),
        )
        .build();
    let failing_check = TransactWriteItem::builder()
        .condition_check(
            ConditionCheck::builder()
                .table_name(&table)
                .set_key(Some(key("absent")))
                .condition_expression("attribute_exists(user_id)")
                .build()
                .expect("check"),
        )
        .build();
    let cancelled = dynamodb
        .transact_write_items()
        .transact_items(put.clone())
        .transact_items(update.clone())
        .transact_items(delete.clone())
        .transact_items(failing_check)
        .send()
        .await
        .expect_err("the condition fails");
    assert_eq!(cancelled.code(), Some("TransactionCanceledException"));
    let twice = dynamodb
        .transact_write_items()
        .transact_items(put)
        .transact_items(update.clone())
        .transact_items(delete)
        .transact_items(update)
        .send()
        .await
        .expect_err("one item twice");
    assert_eq!(twice.code(), Some("ValidationException"));

    let items = dynamodb
        .query()
        .table_name(&table)
        .key_condition_expression("user_id = :user")
        .expression_attribute_values(":user", AttributeValue::S(user.clone()))
        .consistent_read(true)
        .send()
        .await
        .expect("read back")
        .items
        .unwrap_or_default();
    let hits: Vec<(String, String)> = items
        .iter()
        .map(|item| {
            let text = |name: &str| match &item[name] {
                AttributeValue::S(text) | AttributeValue::N(text) => text.clone(),
                other => panic!("{other:?}"),
            };
            (text("account_id"), text("hits"))
        })
        .collect();
    assert_eq!(
        hits,
        [
            ("deleted".to_owned(), "7".to_owned()),
            ("kept".to_owned(), "1".to_owned())
        ],
        "nothing of either cancelled transaction stayed"
    );
    let indexed = dynamodb
        .query()
        .table_name(&table)
        .index_name("by_provider")
        .key_condition_expression("provider = :provider AND user_id = :user")
        .expression_attribute_values(":provider", AttributeValue::S("rollback-test".into()))
        .expression_attribute_values(":user", AttributeValue::S(user))
        .send()
        .await
        .expect("the index")
        .count;
    assert_eq!(indexed, 2, "the index shows the same two items");
}
