//! AWS SDK setup and the mapping of SDK failures onto API errors.
//!
//! Endpoints, region and credentials come only from the SDK's standard settings
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...), so the same binary talks to AWS, LocalStack or moto.

use std::fmt::Debug;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::error::Error;

/// Loads the shared SDK configuration; call once per cold start and build every client from it.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
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
