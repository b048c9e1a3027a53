//! AWS SDK setup and the mapping of SDK failures onto API errors.
//!
//! Endpoints, region and credentials come only from the SDK's standard settings
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...), so the same binary talks to AWS, LocalStack or moto.

use std::fmt::Debug;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::error::Error;

/// Longest wait for a connection to an AWS endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for one attempt of a call (DynamoDB, KMS and SQS answer in milliseconds).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a call with its retries: a hanging dependency costs the caller a 503 inside
/// the shortest function timeout (10 s, template.yaml `Globals`), never the timeout itself.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(8);

/// Loads the shared SDK configuration; call once per cold start and build every client from it.
pub async fn sdk_config() -> SdkConfig {
    // One HTTPS client for every SDK client of the process, its roots compiled in and parsed
    // once (the SDK's default reads /etc/ssl/certs and parses them again per client).
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(crate::https::sdk_http_client())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(CALL_TIMEOUT)
                .build(),
        )
        .load()
        .await
}

/// Turns an SDK failure into the API's answer: 503 with `Retry-After` for any failure of the
/// dependency itself (throttling, outage, a disabled key, a missing table); 422 `item_too_large`
/// when DynamoDB refuses an item over 400 KB (retrying cannot help); 500 when we built a request
/// the service calls invalid (a bug). The SDK's text only reaches the log.
pub fn dependency_error<E, R>(error: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: Debug + Send + Sync + 'static,
{
    match &error {
        SdkError::ConstructionFailure(_) => Error::internal(error),
        // DynamoDB refuses an item over 400 KB; retrying cannot help, so it is never a 503.
        SdkError::ServiceError(service)
            if service.err().code() == Some("ValidationException")
                && service
                    .err()
                    .message()
                    .is_some_and(|m| m.to_ascii_lowercase().contains("item size")) =>
        {
            Error::LimitExceeded {
                code: "item_too_large",
                message: "What this request would store is over DynamoDB's 400 KB item limit; \
                          send less data (fewer fields, shorter texts or fewer items)."
                    .into(),
            }
        }
        // Any other validation error is a request we built wrong: a bug, not an outage.
        SdkError::ServiceError(service) if service.err().code() == Some("ValidationException") => {
            Error::internal(error)
        }
        _ => Error::unavailable(error),
    }
}

/// The service error code of a failed call, if the service answered.
pub fn error_code<E, R>(error: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match error {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}
