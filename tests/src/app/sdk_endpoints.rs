//! SDK configurations whose AWS calls go elsewhere than the emulator: one service moved (as
//! `AWS_ENDPOINT_URL_<SERVICE>` does) or every service through a proxy, with short retries.

use aws_config::SdkConfig;

use crate::TestApp;

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

impl TestApp {
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
}
