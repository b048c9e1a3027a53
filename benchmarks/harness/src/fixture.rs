//! The stack a measurement runs on: a fresh stack in the emulator (the tests' own `TestApp`),
//! every router in process, and data seeded the cheap way when only its volume matters.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use axum::body::Body;
use http::{Method, Request, header};
use http_body_util::BodyExt;
use pipewise::targets::TargetId;
use pipewise::targets::store::TargetItem;
use pipewise_tests::TestApp;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Every router of the service, in process, with one user's token.
#[derive(Clone)]
pub struct Api {
    router: axum::Router,
    token: String,
}

impl Api {
    /// `app`'s routers making their AWS calls with `sdk`, as `user` with the scope that
    /// reveals secrets (agents reading credentials hold it; other routes ignore it).
    pub fn new(app: &TestApp, sdk: &aws_config::SdkConfig, user: &str) -> Self {
        Self {
            router: app.router_on(sdk),
            token: app.token_with_scope(user, "integrations:secrets:read"),
        }
    }

    /// One request through the router: status and JSON body.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let body = body.map(|body| ("application/json", serde_json::to_vec(body).expect("JSON")));
        self.call_with(method, path, body).await
    }

    /// One request with a body of any type (`content type`, bytes): status and JSON body.
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> (u16, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        let body = match body {
            Some((content_type, bytes)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("the router answers");
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Like [`Api::call`], failing the run unless the status is `expected`.
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        expected: u16,
    ) -> Value {
        let (status, answer) = self.call(method.clone(), path, body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
        answer
    }
}

/// A sender domain of this run's own (the emulator's SES is shared).
pub fn unique_domain() -> String {
    format!(
        "b{}.example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// A verified email account (`gmail`) of `user` that may send `daily_send_limit` a day.
pub async fn email_account(api: &Api, domain: &str, daily_send_limit: u32) {
    let sender = format!("sales@{domain}");
    api.expect(
        Method::POST,
        "/api/user/integrations/accounts",
        Some(&json!({"account_id": "gmail", "account_type": "email",
            "configuration": {"from_address": sender, "daily_send_limit": daily_send_limit}})),
        201,
    )
    .await;
    // The emulator's SES verifies at once; the next read connects the account.
    api.expect(
        Method::GET,
        "/api/user/integrations/accounts/gmail",
        None,
        200,
    )
    .await;
}

/// Stores `count` active targets with emails for `user` straight into the table (25 per
/// `BatchWriteItem`), with the counter the service keeps: the volume for list and initiate
/// measurements, without creating each through the API (the emulator copies a table per
/// transaction, which would make seeding 10,000 quadratic).
pub async fn seed_targets(app: &TestApp, user: &str, count: usize, domain: &str) {
    let table = app.resource("TargetsTable").to_owned();
    let dynamodb = app.dynamodb();
    let now = pipewise::clock::Clock::system().now_rfc3339();
    let items: Vec<HashMap<String, AttributeValue>> = (0..count)
        .map(|i| {
            let id = TargetId::new().to_string();
            let item: TargetItem = serde_json::from_value(json!({
                "user_id": user, "sk": format!("T#{id}"), "id": id,
                "name": format!("Person{i} Surname"), "email": format!("p{i}@{domain}"),
                "active": true, "created_at": now, "updated_at": now, "version": 1,
            }))
            .expect("a target item");
            pipewise::storage::encode_item(&item).expect("encode")
        })
        .collect();
    for chunk in items.chunks(25) {
        let mut requests: Vec<WriteRequest> = chunk
            .iter()
            .map(|item| {
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(item.clone()))
                            .build()
                            .expect("put"),
                    )
                    .build()
            })
            .collect();
        while !requests.is_empty() {
            let output = dynamodb
                .batch_write_item()
                .request_items(&table, requests)
                .send()
                .await
                .expect("seed targets");
            requests = output
                .unprocessed_items
                .and_then(|mut unprocessed| unprocessed.remove(&table))
                .unwrap_or_default();
        }
    }
    dynamodb
        .put_item()
        .table_name(&table)
        .item("user_id", AttributeValue::S(user.to_owned()))
        .item("sk", AttributeValue::S("#count".into()))
        .item("active_count", AttributeValue::N(count.to_string()))
        .send()
        .await
        .expect("seed the target counter");
}

/// The message every measured run sends.
/// Starts a run of [`outreach_message`] to all of the user's targets: the initiate's answer.
pub async fn initiate(api: &Api) -> Value {
    api.expect(
        Method::POST,
        "/api/user/orchestrator/initiate-communications",
        Some(&outreach_message()),
        202,
    )
    .await
}

pub fn outreach_message() -> Value {
    json!({"message": {"subject": "Hi {{first_name}}", "body": "Hello {{name}}, a short note."}})
}
