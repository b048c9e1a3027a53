//! Warm latency per route: each request through every router in process (JWT check, JSON,
//! middleware, service, store), against the same AWS calls made directly with the same SDK
//! client — interleaved sample by sample, so the emulator's noise falls on both alike.

use std::collections::HashMap;
use std::time::Instant;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use http::Method;
use pipewise_tests::TestApp;
use serde_json::{Value, json};

use crate::fixture::Api;
use crate::report::{ms, percentile};

/// A measured route: its name, its request, and the AWS calls it makes, made directly.
#[derive(Clone, Copy)]
pub enum Route {
    ListAccounts,
    GetAccount,
    ReadSecrets,
    ListTools,
    ListTargets,
    CreateTarget,
}

impl Route {
    pub const ALL: [Route; 6] = [
        Route::ListAccounts,
        Route::GetAccount,
        Route::ReadSecrets,
        Route::ListTools,
        Route::ListTargets,
        Route::CreateTarget,
    ];

    /// The route as the API table names it.
    pub fn name(self) -> &'static str {
        match self {
            Route::ListAccounts => "GET /api/user/integrations/accounts",
            Route::GetAccount => "GET /api/user/integrations/accounts/{account_id}",
            Route::ReadSecrets => "GET /api/user/integrations/accounts/{account_id}/secrets",
            Route::ListTools => "GET /api/user/integrations/tools",
            Route::ListTargets => "GET /api/user/communication-targets",
            Route::CreateTarget => "POST /api/user/communication-targets",
        }
    }

    /// The AWS calls the direct version makes (checked against the route's own, counted at the
    /// wire, in `calls.json`).
    pub fn raw_calls(self) -> &'static [&'static str] {
        match self {
            Route::ListAccounts | Route::ListTools => &["dynamodb:Query"],
            Route::GetAccount => &["dynamodb:GetItem"],
            Route::ReadSecrets => &["dynamodb:GetItem", "kms:Decrypt"],
            Route::ListTargets => &["dynamodb:Query"],
            Route::CreateTarget => &["dynamodb:TransactWriteItems"],
        }
    }

    fn request(self, sample: usize, domain: &str) -> (Method, String, Option<Value>, u16) {
        match self {
            Route::ListAccounts => (
                Method::GET,
                "/api/user/integrations/accounts".into(),
                None,
                200,
            ),
            Route::GetAccount => (
                Method::GET,
                "/api/user/integrations/accounts/hubspot".into(),
                None,
                200,
            ),
            Route::ReadSecrets => (
                Method::GET,
                "/api/user/integrations/accounts/hubspot/secrets".into(),
                None,
                200,
            ),
            Route::ListTools => (
                Method::GET,
                "/api/user/integrations/tools".into(),
                None,
                200,
            ),
            Route::ListTargets => (
                Method::GET,
                "/api/user/communication-targets".into(),
                None,
                200,
            ),
            Route::CreateTarget => (
                Method::POST,
                "/api/user/communication-targets".into(),
                Some(
                    json!({"name": format!("Warm{sample} Person"), "email": format!("w{sample}@{domain}")}),
                ),
                201,
            ),
        }
    }
}

/// What the direct calls need: the same clients the service builds from the same SDK config.
pub struct Direct {
    dynamodb: aws_sdk_dynamodb::Client,
    kms: aws_sdk_kms::Client,
    accounts: String,
    targets: String,
    user: String,
    raw_user: String,
    wrapped_key: Blob,
}

impl Direct {
    async fn new(app: &TestApp, user: &str) -> Self {
        let kms = app.kms();
        let key_id = app.environment["SECRETS_KMS_KEY_ID"].clone();
        let context = HashMap::from([("purpose".to_owned(), "bench".to_owned())]);
        let wrapped_key = kms
            .generate_data_key()
            .key_id(key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context))
            .send()
            .await
            .expect("a data key")
            .ciphertext_blob
            .expect("wrapped");
        Self {
            dynamodb: app.dynamodb(),
            kms,
            accounts: app.resource("AccountsTable").to_owned(),
            targets: app.resource("TargetsTable").to_owned(),
            user: user.to_owned(),
            raw_user: format!("{user}-direct"),
            wrapped_key,
        }
    }

    fn user(&self) -> AttributeValue {
        AttributeValue::S(self.user.clone())
    }

    async fn get_account(&self) {
        self.dynamodb
            .get_item()
            .table_name(&self.accounts)
            .key("user_id", self.user())
            .key("account_id", AttributeValue::S("hubspot".into()))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem");
    }

    async fn run(&self, route: Route, sample: usize, domain: &str) {
        match route {
            Route::ListAccounts | Route::ListTools => {
                self.dynamodb
                    .query()
                    .table_name(&self.accounts)
                    .key_condition_expression("user_id = :user")
                    .expression_attribute_values(":user", self.user())
                    .send()
                    .await
                    .expect("Query");
            }
            Route::GetAccount => self.get_account().await,
            Route::ReadSecrets => {
                self.get_account().await;
                self.kms
                    .decrypt()
                    .ciphertext_blob(self.wrapped_key.clone())
                    .encryption_context("purpose", "bench")
                    .send()
                    .await
                    .expect("Decrypt");
            }
            Route::ListTargets => {
                self.dynamodb
                    .query()
                    .table_name(&self.targets)
                    .key_condition_expression("user_id = :user AND begins_with(sk, :active)")
                    .expression_attribute_values(":user", self.user())
                    .expression_attribute_values(":active", AttributeValue::S("T#".into()))
                    .scan_index_forward(false)
                    .consistent_read(true)
                    .limit(51)
                    .send()
                    .await
                    .expect("Query");
            }
            Route::CreateTarget => self.create_target(sample, domain).await,
        }
    }

    /// The three writes of a new target in one transaction: the item, the counter, the
    /// email's guard (into a partition of its own, so the route's guards never collide).
    async fn create_target(&self, sample: usize, domain: &str) {
        let id = pipewise::targets::TargetId::new().to_string();
        let now = pipewise::clock::Clock::system().now_rfc3339();
        let user = AttributeValue::S(self.raw_user.clone());
        let email = format!("w{sample}@{domain}");
        let put = Put::builder()
            .table_name(&self.targets)
            .item("user_id", user.clone())
            .item("sk", AttributeValue::S(format!("T#{id}")))
            .item("id", AttributeValue::S(id.clone()))
            .item("name", AttributeValue::S(format!("Warm{sample} Person")))
            .item("email", AttributeValue::S(email.clone()))
            .item("active", AttributeValue::Bool(true))
            .item("created_at", AttributeValue::S(now.clone()))
            .item("updated_at", AttributeValue::S(now))
            .item("version", AttributeValue::N("1".into()))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .expect("put");
        let count = Update::builder()
            .table_name(&self.targets)
            .key("user_id", user.clone())
            .key("sk", AttributeValue::S("#count".into()))
            .update_expression("SET active_count = if_not_exists(active_count, :zero) + :delta")
            .condition_expression("attribute_not_exists(active_count) OR active_count < :max")
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":delta", AttributeValue::N("1".into()))
            .expression_attribute_values(":max", AttributeValue::N("10000".into()))
            .build()
            .expect("update");
        let guard = Put::builder()
            .table_name(&self.targets)
            .item("user_id", user)
            .item("sk", AttributeValue::S(format!("E#{email}")))
            .item("target_id", AttributeValue::S(id))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .expect("guard");
        self.dynamodb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(count).build())
            .transact_items(TransactWriteItem::builder().put(guard).build())
            .send()
            .await
            .expect("TransactWriteItems");
    }
}

/// A user with an email account, a CRM account holding a secret, and `targets` targets.
pub async fn prepare(app: &TestApp, api: &Api, user: &str, domain: &str) -> Direct {
    crate::fixture::email_account(api, domain, 50).await;
    api.expect(
        Method::POST,
        "/api/user/integrations/accounts",
        Some(
            &json!({"account_id": "hubspot", "account_type": "crm", "provider": "hubspot",
            "configuration": {"portal": "eu1", "api_key": "pat-eu1-0c5b2f4e-bench-only-key"}}),
        ),
        201,
    )
    .await;
    crate::fixture::seed_targets(app, user, 100, domain).await;
    Direct::new(app, user).await
}

/// `samples` timed requests per route after `warmup` untimed ones, each followed by its direct
/// twin; p50 and p99 of both.
pub async fn measure(app: &TestApp, samples: usize, warmup: usize) -> Vec<Value> {
    let user = "bench-warm";
    let domain = crate::fixture::unique_domain();
    let api = Api::new(app, &app.sdk, user);
    let direct = prepare(app, &api, user, &domain).await;
    let mut results = Vec::new();
    for route in Route::ALL {
        let (mut through, mut raw) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
        for sample in 0..samples + warmup {
            let (method, path, body, status) = route.request(sample, &domain);
            let started = Instant::now();
            api.expect(method, &path, body.as_ref(), status).await;
            let routed = started.elapsed().as_secs_f64() * 1000.0;
            let started = Instant::now();
            direct.run(route, sample, &domain).await;
            let direct_ms = started.elapsed().as_secs_f64() * 1000.0;
            if sample >= warmup {
                through.push(routed);
                raw.push(direct_ms);
            }
        }
        let figure = json!({
            "route": route.name(),
            "p50_ms": ms(percentile(&through, 50.0)),
            "p99_ms": ms(percentile(&through, 99.0)),
            "raw_p50_ms": ms(percentile(&raw, 50.0)),
            "raw_p99_ms": ms(percentile(&raw, 99.0)),
            "raw_calls": route.raw_calls(),
        });
        eprintln!("warm {figure}");
        results.push(figure);
    }
    results
}
