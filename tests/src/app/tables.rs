//! The stack's DynamoDB tables read and written directly: every item as stored, and test data
//! written in bulk.

use std::collections::HashMap;

use crate::TestApp;

impl TestApp {
    /// Every item of a template table (one page: test tables are small), as stored.
    pub async fn scan_table(
        &self,
        logical_id: &str,
    ) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        self.dynamodb()
            .scan()
            .table_name(self.resource(logical_id))
            .send()
            .await
            .expect("scan the table")
            .items
            .unwrap_or_default()
    }

    /// Every item of a template table, all pages.
    pub async fn scan_all(
        &self,
        logical_id: &str,
    ) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let mut pages = self
            .dynamodb()
            .scan()
            .table_name(self.resource(logical_id))
            .into_paginator()
            .send();
        let mut items = Vec::new();
        while let Some(page) = pages.next().await {
            items.extend(page.expect("scan the table").items.unwrap_or_default());
        }
        items
    }

    /// Writes raw items into one of the stack's tables (`logical_table`, as template.yaml names
    /// it), 25 per BatchWriteItem: test data at a scale the API would take long to make.
    pub async fn put_items(
        &self,
        logical_table: &str,
        items: Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
    ) {
        let table = self.resource(logical_table).to_owned();
        let dynamodb = self.dynamodb();
        for chunk in items.chunks(25) {
            let writes = chunk
                .iter()
                .map(|item| {
                    aws_sdk_dynamodb::types::WriteRequest::builder()
                        .put_request(
                            aws_sdk_dynamodb::types::PutRequest::builder()
                                .set_item(Some(item.clone()))
                                .build()
                                .expect("a put request"),
                        )
                        .build()
                })
                .collect();
            let output = dynamodb
                .batch_write_item()
                .request_items(&table, writes)
                .send()
                .await
                .expect("batch write");
            assert!(
                output
                    .unprocessed_items()
                    .is_none_or(|left| left.values().all(Vec::is_empty)),
                "the emulator left items unprocessed"
            );
        }
    }
}

/// A communication of `user`'s `run_id`, stored as the worker's schedule leaves one: `scheduled`,
/// due at `due_at` (epoch seconds), in the release index under its UTC day. Test data at a scale
/// the API would take long to make (written with [`TestApp::put_items`]).
pub fn due_scheduled_communication(
    user: &str,
    run_id: &pipewise::ids::RunId,
    index: u32,
    due_at: i64,
) -> HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    use aws_sdk_dynamodb::types::AttributeValue;
    [
        ("user_id", AttributeValue::S(user.into())),
        (
            "sk",
            AttributeValue::S(
                pipewise::communications::store::CommunicationItem::sort_key(run_id, index),
            ),
        ),
        ("run_id", AttributeValue::S(run_id.to_string())),
        ("index", AttributeValue::N(index.to_string())),
        (
            "target_id",
            AttributeValue::S(uuid::Uuid::new_v4().to_string()),
        ),
        ("channel", AttributeValue::S("email".into())),
        ("account_id", AttributeValue::S("mail".into())),
        (
            "recipient",
            AttributeValue::M([("name".to_owned(), AttributeValue::S("P".into()))].into()),
        ),
        ("status", AttributeValue::S("scheduled".into())),
        ("attempts", AttributeValue::N("1".into())),
        ("scheduled_for", AttributeValue::N(due_at.to_string())),
        (
            "scheduled_day",
            AttributeValue::S(pipewise::clock::utc_day(due_at)),
        ),
        (
            "updated_at",
            AttributeValue::S("2026-01-01T00:00:00Z".into()),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}
