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
