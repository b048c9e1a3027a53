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
use pipewise_local::dev_auth::dev_parameters;
use pipewise_local::stack::LocalStack;

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

/// `TestApp`'s methods by area, each file a further `impl TestApp` block.
mod app {
    pub(crate) mod emails;
    mod queues;
    pub(crate) mod requests;
    mod sdk_endpoints;
    pub(crate) mod tables;
}

pub use app::emails::RawEmail;
pub use app::requests::TestResponse;
pub use app::tables::due_scheduled_communication;
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

    /// Another server over the same stack with a changed environment (e.g. a broken queue URL).
    pub async fn serve_variant(
        &self,
        adjust: impl FnOnce(&mut HashMap<String, String>),
    ) -> TestApp {
        let mut environment = self.environment.clone();
        adjust(&mut environment);
        Self::serve(self.sdk.clone(), self.stack.clone(), environment).await
    }

    /// Another server over the same stack and environment whose AWS calls use `sdk`.
    pub async fn serve_through(&self, sdk: SdkConfig) -> TestApp {
        Self::serve(sdk, self.stack.clone(), self.environment.clone()).await
    }

    /// Every router over this stack in process, without a socket (what the benchmarks drive),
    /// its AWS calls made with `sdk`.
    pub fn router_on(&self, sdk: &SdkConfig) -> axum::Router {
        api_router(&ConfigSource::from_map(&self.environment), sdk)
            .expect("configure the functions")
    }

    /// The physical name (table), ARN (key) or URL (queue) of a template resource.
    pub fn resource(&self, logical_id: &str) -> &str {
        self.stack
            .physical
            .get(logical_id)
            .unwrap_or_else(|| panic!("the stack has no {logical_id}"))
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
}
