//! Shared setup of the integration tests: the emulator's clients, tokens, and a `TestApp` that
//! serves every router in process against resources created from `template.yaml` for that test.
//!
//! The emulator is started once per run by `make test` (tools/with-emulator), which sets
//! `AWS_ENDPOINT_URL`; every test gets its own stack (tables, key, queues) under a random name.

use std::collections::HashMap;
use std::sync::LazyLock;

use aws_config::SdkConfig;
use pipewise::config::ConfigSource;
use pipewise_local::app::{api_router, local_environment};
use pipewise_local::dev_auth::{dev_parameters, dev_token};
use pipewise_local::queue_poller::poll_once;
use pipewise_local::stack::LocalStack;
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub mod black_hole;
pub mod cognito;
pub mod connect_flow;
pub mod fake_mailbox;
pub mod fake_oauth;
pub mod fake_social;
pub mod fault_proxy;
pub mod jwks_server;
pub mod log_capture;
pub mod mcp_client;
pub mod plaintext_audit;
pub mod webhook_receiver;

pub use pipewise_local::dev_auth::{DEV_AUDIENCE, DEV_ISSUER, DEV_JWT_SECRET};

/// Once per test process: logs when `TEST_LOG` is set, and the TLS provider of the test
/// client (reqwest is built without one; the service configures its own explicitly).
static PROCESS_SETUP: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        pipewise::telemetry::init();
    } else {
        plaintext_audit::install_log_writer();
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
});

/// A served API with its own stack in the emulator.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// HTTP client for requests to the app.
    pub client: reqwest::Client,
    /// The SDK configuration pointing at the emulator.
    pub sdk: SdkConfig,
    /// The resources created for this test.
    pub stack: LocalStack,
    /// The environment the functions run with.
    pub environment: HashMap<String, String>,
}

/// A MIME email as the service writes it: headers, a blank line, a base64 text body.
pub struct RawEmail {
    headers: Vec<(String, String)>,
    body: String,
}

impl RawEmail {
    /// Splits a MIME text into headers and body.
    pub fn parse(raw: &str) -> Self {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let headers = head
            .split("\r\n")
            .filter_map(|line| line.split_once(": "))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        Self {
            headers,
            body: body.to_owned(),
        }
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    }

    /// The subject, decoded from its RFC 2047 base64 word.
    pub fn subject(&self) -> String {
        use base64::Engine;
        let word = self.header("Subject").unwrap_or_default();
        let inner = word
            .strip_prefix("=?UTF-8?B?")
            .and_then(|rest| rest.strip_suffix("?="))
            .unwrap_or(&word);
        base64::engine::general_purpose::STANDARD
            .decode(inner)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .unwrap_or(word)
    }

    /// The text body, decoded.
    pub fn body(&self) -> String {
        use base64::Engine;
        let joined: String = self.body.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(joined)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .unwrap_or_default()
    }
}

/// A service-specific endpoint, as the SDK reads `AWS_ENDPOINT_URL_<SERVICE>`.
#[derive(Debug)]
struct ServiceEndpoint {
    env: String,
    url: String,
}

impl aws_types::service_config::LoadServiceConfig for ServiceEndpoint {
    fn load_config(&self, key: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
        // `AWS_ENDPOINT_URL` itself moves every service; `AWS_ENDPOINT_URL_<SERVICE>` one.
        (key.env() == "AWS_ENDPOINT_URL"
            && (self.env == "AWS_ENDPOINT_URL"
                || self.env.ends_with(&key.service_id().to_ascii_uppercase())))
        .then(|| self.url.clone())
    }
}

/// A queue handler that hands each body to the plaintext audit first.
struct RecordingHandler<'a, H>(&'a H);

impl<H: communications_worker::MessageHandler> communications_worker::MessageHandler
    for RecordingHandler<'_, H>
{
    fn handle(
        &self,
        body: Option<&str>,
        receives: u32,
    ) -> impl std::future::Future<Output = bool> + Send {
        if let Some(body) = body {
            plaintext_audit::record_queue_body(body);
        }
        self.0.handle(body, receives)
    }
}

/// An answer: status, headers and the body as JSON (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct TestResponse {
    /// Status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body parsed as JSON.
    pub body: Value,
    /// Raw body.
    pub text: String,
}

impl TestResponse {
    /// The error code of an error body.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// Asserts the status, printing the body when it differs.
    #[track_caller]
    pub fn assert_status(&self, expected: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            expected,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// Asserts an error answer in the contract's shape with this status and code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> &Self {
        self.assert_status(status);
        let error = &self.body["error"];
        assert_eq!(error["code"], code, "body: {}", self.text);
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "body: {}",
            self.text
        );
        assert!(
            error["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "body: {}",
            self.text
        );
        self
    }
}

/// A domain of the calling test's own: the emulator's SES is shared by every test, and a
/// claim's verification replaces an identity another test's claim made.
pub fn unique_domain() -> String {
    format!(
        "t{}.example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// The SDK configuration for the emulator (from `AWS_ENDPOINT_URL` and friends).
pub async fn emulator_sdk() -> SdkConfig {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "AWS_ENDPOINT_URL is not set: run the tests with `make test`, which starts the emulator"
    );
    pipewise::aws::sdk_config().await
}

impl TestApp {
    /// Creates a fresh stack and serves every router on a random local port.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Like [`TestApp::spawn`], with a chance to change the functions' environment first.
    pub async fn spawn_with(adjust: impl FnOnce(&mut HashMap<String, String>)) -> Self {
        Self::spawn_stack(&dev_parameters(), adjust).await
    }

    /// An app whose users sign in through the template's own Cognito user pool, created in the
    /// emulator (`IdentityProvider=cognito`), exactly as `make dev IDP=cognito` runs.
    pub async fn spawn_cognito() -> Self {
        Self::spawn_stack(&pipewise_local::dev_auth::cognito_parameters(), |_| {}).await
    }

    async fn spawn_stack(
        parameters: &HashMap<String, pipewise_local::template::Resolved>,
        adjust: impl FnOnce(&mut HashMap<String, String>),
    ) -> Self {
        LazyLock::force(&PROCESS_SETUP);
        let sdk = emulator_sdk().await;
        let name = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let stack = LocalStack::create(&sdk, &name, parameters)
            .await
            .expect("create the test stack in the emulator");
        let mut environment = local_environment(&stack);
        adjust(&mut environment);
        Self::serve(sdk, stack, environment).await
    }

    /// Serves every router, configured by `environment`, on a random local port.
    async fn serve(
        sdk: SdkConfig,
        stack: LocalStack,
        environment: HashMap<String, String>,
    ) -> Self {
        let router = api_router(&ConfigSource::from_map(&environment), &sdk)
            .expect("configure the functions");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            address,
            // Redirects are answers to read (the OAuth callback's 303), never followed.
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
            sdk,
            stack,
            environment,
        }
    }

    /// A development token for `sub`.
    pub fn token(&self, sub: &str) -> String {
        dev_token(sub, None, 3600)
    }

    /// A development token for `sub` with a scope.
    pub fn token_with_scope(&self, sub: &str, scope: &str) -> String {
        dev_token(sub, Some(scope), 3600)
    }

    /// The physical name (table), ARN (key) or URL (queue) of a template resource.
    pub fn resource(&self, logical_id: &str) -> &str {
        self.stack
            .physical
            .get(logical_id)
            .unwrap_or_else(|| panic!("the stack has no {logical_id}"))
    }

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

    /// DynamoDB client on the emulator.
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    /// KMS client on the emulator.
    pub fn kms(&self) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&self.sdk)
    }

    /// SQS client on the emulator.
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk)
    }

    /// The worker, configured exactly like the functions.
    pub fn worker(&self) -> pipewise::communications::CommunicationsWorker {
        self.worker_on(&self.sdk)
    }

    /// The worker with another SDK configuration (e.g. one service pointed elsewhere).
    pub fn worker_on(&self, sdk: &SdkConfig) -> pipewise::communications::CommunicationsWorker {
        communications_worker::worker_from_config(&ConfigSource::from_map(&self.environment), sdk)
            .expect("configure the worker")
    }

    /// The worker with a clock the test moves (days turning for a sender's daily cap).
    pub fn worker_with_clock(
        &self,
        clock: pipewise::clock::Clock,
    ) -> pipewise::communications::CommunicationsWorker {
        communications_worker::worker_with_clock(
            &ConfigSource::from_map(&self.environment),
            &self.sdk,
            clock,
        )
        .expect("configure the worker")
    }

    /// The SES feedback handler, configured exactly like its function.
    pub fn feedback(&self) -> pipewise::communications::feedback::EmailFeedback {
        communications_worker::feedback_from_config(
            &ConfigSource::from_map(&self.environment),
            &self.sdk,
        )
        .expect("configure the feedback handler")
    }

    /// The webhook deliverer, configured exactly like its function, with a clock the test
    /// may move.
    pub fn webhook_deliverer(
        &self,
        clock: pipewise::clock::Clock,
    ) -> pipewise::webhooks::WebhookDeliverer {
        pipewise::webhooks::WebhookDeliverer::from_config(
            &ConfigSource::from_map(&self.environment),
            &self.sdk,
            clock,
        )
        .expect("configure the webhook deliverer")
    }

    /// Runs `deliverer` on the webhook queue until it is empty (events fan out, attempts go,
    /// retries without delay follow); returns how many messages were received.
    pub async fn drain_webhooks_with(
        &self,
        deliverer: &pipewise::webhooks::WebhookDeliverer,
    ) -> usize {
        let sqs = self.sqs();
        let url = self.queue_url("WebhookQueue");
        let mut received = 0;
        loop {
            let report = poll_once(&sqs, &url, &RecordingHandler(deliverer), 0)
                .await
                .expect("poll the webhook queue");
            received += report.received;
            if report.received == 0 {
                return received;
            }
        }
    }

    /// [`TestApp::drain_webhooks_with`] a deliverer on the system clock.
    pub async fn drain_webhooks(&self) -> usize {
        self.drain_webhooks_with(&self.webhook_deliverer(pipewise::clock::Clock::system()))
            .await
    }

    /// Publishes an SES event (the JSON SES's event destination publishes) to the stack's
    /// email events topic, as SES does; SNS delivers it to the feedback queue.
    pub async fn publish_ses_event(&self, event: &Value) {
        aws_sdk_sns::Client::new(&self.sdk)
            .publish()
            .topic_arn(self.resource("EmailEventsTopic"))
            .message(event.to_string())
            .send()
            .await
            .expect("publish to the email events topic");
    }

    /// Runs the feedback handler on the feedback queue until it is empty; returns how many
    /// messages were received.
    pub async fn drain_feedback(&self) -> usize {
        let sqs = self.sqs();
        let url = self.queue_url("EmailFeedbackQueue");
        let feedback = self.feedback();
        let mut received = 0;
        loop {
            let report = poll_once(&sqs, &url, &RecordingHandler(&feedback), 0)
                .await
                .expect("poll the feedback queue");
            received += report.received;
            if report.received == 0 {
                return received;
            }
        }
    }

    /// The SES message ids of the emails the emulator's SES accepted from `sender`, in order.
    pub async fn sent_message_ids(&self, sender: &str) -> Vec<String> {
        self.emulator_ses_messages()
            .await
            .into_iter()
            .filter(|message| message["source"] == sender)
            .filter_map(|message| message["id"].as_str().map(str::to_owned))
            .collect()
    }

    async fn emulator_ses_messages(&self) -> Vec<Value> {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
        // Not the whole-state dump: it walks every object of every test's tables, seconds by
        // the end of a run, and every request waits for it (tools/emulator.py).
        self.client
            .get(format!(
                "{}/_emulator/ses/raw-messages",
                endpoint.trim_end_matches('/')
            ))
            .send()
            .await
            .expect("read the emulator's sent email")
            .json()
            .await
            .expect("the emulator's sent email is JSON")
    }

    /// The SDK configuration with one service's endpoint moved to `url`, the way
    /// `AWS_ENDPOINT_URL_<SERVICE>` does it (e.g. `service_env` = `AWS_ENDPOINT_URL_SESV2`).
    pub fn sdk_with_service_endpoint(&self, service_env: &str, url: &str) -> SdkConfig {
        self.sdk
            .to_builder()
            .service_config(ServiceEndpoint {
                env: service_env.to_owned(),
                url: url.to_owned(),
            })
            .build()
    }

    /// URL of a queue of the stack.
    pub fn queue_url(&self, logical_id: &str) -> String {
        self.resource(logical_id).to_owned()
    }

    /// Runs the worker on the communications queue until it is empty; returns how many messages
    /// were received in all.
    pub async fn drain_queue(&self) -> usize {
        self.drain_queue_with(&self.worker()).await
    }

    /// Like [`TestApp::drain_queue`], with a given worker.
    pub async fn drain_queue_with(
        &self,
        worker: &pipewise::communications::CommunicationsWorker,
    ) -> usize {
        let sqs = self.sqs();
        let url = self.queue_url("CommunicationsQueue");
        let mut received = 0;
        loop {
            let report = poll_once(&sqs, &url, &RecordingHandler(worker), 0)
                .await
                .expect("poll the queue");
            received += report.received;
            if report.received == 0 {
                return received;
            }
        }
    }

    /// Receives up to ten messages without handling or deleting them.
    pub async fn receive_messages(&self) -> Vec<aws_sdk_sqs::types::Message> {
        self.sqs()
            .receive_message()
            .queue_url(self.queue_url("CommunicationsQueue"))
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default()
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

    /// `user`'s email account `account_id`, sending from `sales@{domain}` (at most
    /// `daily_send_limit` a day when given), created and verified (the emulator's SES verifies
    /// at once; the next read connects it). Returns the sender.
    pub async fn verified_email_account(
        &self,
        user: &str,
        account_id: &str,
        domain: &str,
        daily_send_limit: Option<u32>,
    ) -> String {
        let sender = format!("sales@{domain}");
        let mut configuration = serde_json::json!({"from_address": sender});
        if let Some(limit) = daily_send_limit {
            configuration["daily_send_limit"] = limit.into();
        }
        self.post(
            "/api/user/integrations/accounts",
            user,
            &serde_json::json!({"account_id": account_id, "account_type": "email",
                "configuration": configuration}),
        )
        .await
        .assert_status(201);
        self.sender_verified(user, account_id).await;
        sender
    }

    /// An SES identity made outside this service (the operator's own no-reply@, or one made
    /// by hand): it must never prove anyone's claim.
    pub async fn operator_identity(&self, email: &str) {
        aws_sdk_sesv2::Client::new(&self.sdk)
            .create_email_identity()
            .email_identity(email)
            .send()
            .await
            .expect("create the identity");
    }

    /// The owner of an email account's sender follows SES's verification link (the emulator's
    /// SES verifies at once) and the next read connects the account: asserted here.
    pub async fn sender_verified(&self, user: &str, account_id: &str) {
        let read = self
            .get(
                &format!("/api/user/integrations/accounts/{account_id}"),
                user,
            )
            .await;
        read.assert_status(200);
        assert_eq!(read.body["connected"], true, "{}", read.text);
    }

    /// Emails the emulator's SES accepted from `sender`: `(to, subject, body)`, the body decoded.
    pub async fn sent_emails(&self, sender: &str) -> Vec<(String, String, String)> {
        self.sent_raw_emails(sender)
            .await
            .into_iter()
            .map(|raw| {
                let email = RawEmail::parse(&raw);
                (
                    email.header("To").unwrap_or_default(),
                    email.subject(),
                    email.body(),
                )
            })
            .collect()
    }

    /// The MIME text of every email the emulator's SES accepted from `sender`.
    pub async fn sent_raw_emails(&self, sender: &str) -> Vec<String> {
        self.emulator_ses_messages()
            .await
            .into_iter()
            .filter(|message| message["source"] == sender)
            .filter_map(|message| message["raw_data"].as_str().map(str::to_owned))
            .collect()
    }

    /// Another server over the same stack with a changed environment (e.g. a broken queue URL).
    pub async fn serve_variant(
        &self,
        adjust: impl FnOnce(&mut HashMap<String, String>),
    ) -> TestApp {
        let mut environment = self.environment.clone();
        adjust(&mut environment);
        Self::serve(self.sdk.clone(), self.stack.clone(), environment).await
    }

    /// The SDK configuration with every service's endpoint at `url` (e.g. a fault proxy), the
    /// service's own timeouts, and the retry backoff cut to milliseconds so a fault matrix of
    /// hundreds of cases runs in minutes (attempts stay at the SDK's standard 3).
    pub fn sdk_through(&self, url: &str) -> SdkConfig {
        self.sdk_through_with_timeouts(
            url,
            pipewise::aws::ATTEMPT_TIMEOUT,
            pipewise::aws::CALL_TIMEOUT,
        )
    }

    /// Like [`TestApp::sdk_through`] with short timeouts: for calls that hang, so a case costs
    /// seconds rather than the service's 12.
    pub fn sdk_through_impatient(&self, url: &str) -> SdkConfig {
        self.sdk_through_with_timeouts(
            url,
            std::time::Duration::from_millis(1_000),
            std::time::Duration::from_millis(3_000),
        )
    }

    fn sdk_through_with_timeouts(
        &self,
        url: &str,
        attempt: std::time::Duration,
        call: std::time::Duration,
    ) -> SdkConfig {
        self.sdk
            .to_builder()
            .endpoint_url(url)
            .service_config(ServiceEndpoint {
                env: "AWS_ENDPOINT_URL".to_owned(),
                url: url.to_owned(),
            })
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(std::time::Duration::from_millis(5)),
            )
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(pipewise::aws::CONNECT_TIMEOUT)
                    .operation_attempt_timeout(attempt)
                    .operation_timeout(call)
                    .build(),
            )
            .build()
    }

    /// Every router over this stack in process, without a socket (what the benchmarks drive),
    /// its AWS calls made with `sdk`.
    pub fn router_on(&self, sdk: &SdkConfig) -> axum::Router {
        api_router(&ConfigSource::from_map(&self.environment), sdk)
            .expect("configure the functions")
    }

    /// Another server over the same stack and environment whose AWS calls use `sdk`.
    pub async fn serve_through(&self, sdk: SdkConfig) -> TestApp {
        Self::serve(sdk, self.stack.clone(), self.environment.clone()).await
    }

    /// A request builder for `path` on the app.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{}", self.address, path))
    }

    /// Sends a request and reads the answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> TestResponse {
        let request = request.build().expect("a well-formed request");
        let path = request.url().path().to_owned();
        if let Some(body) = request.body().and_then(reqwest::Body::as_bytes) {
            plaintext_audit::record_request(&path, body);
        }
        let response = self
            .client
            .execute(request)
            .await
            .expect("request reaches the app");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("read body");
        plaintext_audit::record_response(&path, &text);
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        TestResponse {
            status,
            headers,
            body,
            text,
        }
    }

    /// `GET .../accounts/{account_id}/secrets` as `user` with the development secrets scope.
    pub async fn reveal_secrets(&self, user: &str, account_id: &str) -> TestResponse {
        self.send(
            self.request(
                Method::GET,
                &format!("/api/user/integrations/accounts/{account_id}/secrets"),
            )
            .bearer_auth(self.token_with_scope(user, "integrations:secrets:read")),
        )
        .await
    }

    /// `GET path` as `user`.
    pub async fn get(&self, path: &str, user: &str) -> TestResponse {
        self.send(
            self.request(Method::GET, path)
                .bearer_auth(self.token(user)),
        )
        .await
    }

    /// `DELETE path` as `user`.
    pub async fn delete(&self, path: &str, user: &str) -> TestResponse {
        self.send(
            self.request(Method::DELETE, path)
                .bearer_auth(self.token(user)),
        )
        .await
    }

    /// `POST path` with a JSON body as `user`.
    pub async fn post(&self, path: &str, user: &str, body: &Value) -> TestResponse {
        self.send(
            self.request(Method::POST, path)
                .bearer_auth(self.token(user))
                .json(body),
        )
        .await
    }

    /// The recipient of `email` clicks its one-click unsubscribe (RFC 8058: the POST a mail
    /// provider makes from its `List-Unsubscribe` header); asserts it was taken.
    pub async fn unsubscribe_from(&self, email: &RawEmail) {
        let link = email.header("List-Unsubscribe").expect("List-Unsubscribe");
        let path = link
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim_start_matches("http://127.0.0.1:8001")
            .to_owned();
        self.send(
            self.request(Method::POST, &path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("List-Unsubscribe=One-Click"),
        )
        .await
        .assert_status(200);
    }

    /// `PATCH path` with a JSON body as `user`.
    pub async fn patch(&self, path: &str, user: &str, body: &Value) -> TestResponse {
        self.send(
            self.request(Method::PATCH, path)
                .bearer_auth(self.token(user))
                .json(body),
        )
        .await
    }
}
