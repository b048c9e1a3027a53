//! The one error type of the API and its wire shape.
//!
//! Every non-2xx answer is `{"error": {"code", "message", "request_id", "details"?}}`. Client errors
//! say what is wrong; 5xx answers say nothing about their cause on the wire (the cause is logged).

use std::fmt;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::request_id::current_request_id;

/// Boxed cause kept for the log, never sent to clients.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with the API error as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECONDS: u32 = 2;

/// One invalid field of a request: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Path of the field in the request, e.g. `email` or `items[3].email`.
    pub field: String,
    /// What is wrong, as a short sentence.
    pub problem: String,
}

impl FieldError {
    /// A field error from a field path and a problem sentence.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Every way a request can fail, each with its status code and stable `code`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 401: no bearer token, or a token that failed verification (the reason is logged).
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// 403: a valid token without the scope the route needs.
    #[error("missing scope {0}")]
    MissingScope(String),
    /// 404: an unknown resource, or one that belongs to another user (indistinguishable).
    #[error("resource not found")]
    NotFound,
    /// 404: no route has this path.
    #[error("route not found")]
    RouteNotFound,
    /// 405: the path exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the request conflicts with stored state.
    #[error("conflict ({code}): {message}")]
    Conflict {
        /// Stable code, e.g. `email_taken`.
        code: &'static str,
        /// Human sentence.
        message: String,
        /// Id of the existing resource the request collided with, when there is one.
        existing_id: Option<String>,
    },
    /// 409 with `Retry-After`: another request holds what this one needs (an idempotency key
    /// being processed); retrying after the given seconds can succeed.
    #[error("busy ({code})")]
    Busy {
        /// Stable code, e.g. `idempotency_key_in_progress`.
        code: &'static str,
        /// Human sentence.
        message: String,
        /// Seconds until the holder's lease lapses.
        retry_after: u32,
    },
    /// 413: body over the limit, or a batch over its item limit.
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    /// 415: a body that is not declared as JSON.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 415: the body is not of the one media type the route reads (named).
    #[error("unsupported media type, expected {0}")]
    MediaTypeExpected(&'static str),
    /// 400: a body that is not well-formed JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// 400: a malformed request header (e.g. `Idempotency-Key`).
    #[error("bad request ({field}): {problem}")]
    BadHeader {
        /// The header's name.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// 422: well-formed JSON with invalid fields.
    #[error("validation failed: {0:?}")]
    Validation(Vec<FieldError>),
    /// 422: a per-user limit (accounts, targets, run size) would be exceeded.
    #[error("limit exceeded ({code}): {message}")]
    LimitExceeded {
        /// Stable code, e.g. `account_limit_reached`.
        code: &'static str,
        /// Human sentence naming the limit.
        message: String,
    },
    /// 422: nothing in the request can be done, with a reason per item.
    #[error("unprocessable ({code}): {message}")]
    Unprocessable {
        /// Stable code, e.g. `nothing_deliverable`.
        code: &'static str,
        /// Human sentence.
        message: String,
        /// Per-item reasons.
        details: Vec<FieldError>,
    },
    /// 429 with `Retry-After`: a per-user quota of ours is spent for now.
    #[error("quota exceeded ({code})")]
    QuotaExceeded {
        /// Stable code, e.g. `run_quota_exceeded`.
        code: &'static str,
        /// Human sentence naming the quota.
        message: String,
        /// Seconds until the quota allows the request again.
        retry_after: u32,
    },
    /// 503 with `Retry-After`: a dependency (DynamoDB, KMS, SQS) failed or throttled.
    #[error("dependency unavailable")]
    Unavailable(#[source] BoxError),
    /// 503 with `Retry-After`: a platform refuses this deployment's OAuth client (the
    /// operator must fix it; no account was changed).
    #[error("provider misconfigured")]
    ProviderMisconfigured,
    /// 500: a bug or corrupted state; the cause goes to the log only.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl Error {
    /// A 422 for a single field.
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, problem)])
    }

    /// A 503 from any dependency error.
    pub fn unavailable(cause: impl Into<BoxError>) -> Self {
        Self::Unavailable(cause.into())
    }

    /// A 500 from any unexpected error.
    pub fn internal(cause: impl Into<BoxError>) -> Self {
        Self::Internal(cause.into())
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::MissingScope(_) => StatusCode::FORBIDDEN,
            Self::NotFound | Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } | Self::Busy { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType | Self::MediaTypeExpected(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::MalformedJson(_) | Self::BadHeader { .. } => StatusCode::BAD_REQUEST,
            Self::Validation(_) | Self::LimitExceeded { .. } | Self::Unprocessable { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::ProviderMisconfigured => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::MissingScope(_) => "insufficient_scope",
            Self::NotFound => "not_found",
            Self::RouteNotFound => "route_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict { code, .. }
            | Self::Busy { code, .. }
            | Self::LimitExceeded { code, .. }
            | Self::Unprocessable { code, .. }
            | Self::QuotaExceeded { code, .. } => code,
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType | Self::MediaTypeExpected(_) => "unsupported_media_type",
            Self::MalformedJson(_) => "malformed_json",
            Self::BadHeader { .. } => "bad_request",
            Self::Validation(_) => "validation_failed",
            Self::Unavailable(_) => "service_unavailable",
            Self::ProviderMisconfigured => "provider_misconfigured",
            Self::Internal(_) => "internal_error",
        }
    }

    fn public_message(&self) -> String {
        match self {
            Self::Unauthorized(reason) => format!("Authentication failed: {reason}."),
            Self::MissingScope(scope) => format!("This route needs the scope `{scope}`."),
            Self::NotFound => "The resource does not exist.".into(),
            Self::RouteNotFound => "No route matches this path.".into(),
            Self::MethodNotAllowed => "This route does not accept this method.".into(),
            Self::Conflict { message, .. }
            | Self::Busy { message, .. }
            | Self::LimitExceeded { message, .. }
            | Self::Unprocessable { message, .. }
            | Self::QuotaExceeded { message, .. } => message.clone(),
            Self::PayloadTooLarge(message) => message.clone(),
            Self::MediaTypeExpected(media_type) => {
                format!("The body must be {media_type}.")
            }
            Self::UnsupportedMediaType => {
                "The body must be JSON (Content-Type: application/json).".into()
            }
            Self::MalformedJson(message) => format!("The body is not valid JSON: {message}."),
            Self::BadHeader { field, problem } => format!("Header `{field}` {problem}."),
            Self::Validation(_) => "Some fields are invalid.".into(),
            Self::Unavailable(_) => "A dependency is unavailable; retry shortly.".into(),
            Self::ProviderMisconfigured => {
                "The platform refused this service's OAuth client; the operator has been alerted."
                    .into()
            }
            Self::Internal(_) => "Something went wrong on our side.".into(),
        }
    }

    /// The per-field problems of a 4xx (empty for other errors).
    pub fn details(&self) -> Vec<FieldError> {
        match self {
            Self::Validation(details) | Self::Unprocessable { details, .. } => details.clone(),
            Self::BadHeader { field, problem } => vec![FieldError::new(*field, *problem)],
            _ => Vec::new(),
        }
    }
}

/// The wire shape of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The content of an error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `validation_failed`.
    pub code: String,
    /// Human-readable sentence.
    pub message: String,
    /// Id of the request, also in the `x-request-id` header.
    pub request_id: String,
    /// Invalid fields, for 422 (and 400 on a bad header).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
    /// For a 409: id of the existing resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_id: Option<String>,
}

/// Displays an error with its whole `source()` chain, for logs.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl Error {
    /// Logs the error as the answer to a request (server errors with their causes, refusals by
    /// code alone) and gives what the caller may see of it: code, public message, request id,
    /// field problems; never a cause's text.
    pub fn report(&self) -> ErrorDetail {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), code = self.code(), error = %ErrorChain(self), "request failed");
        } else {
            tracing::info!(
                status = status.as_u16(),
                code = self.code(),
                "request rejected"
            );
        }
        ErrorDetail {
            code: self.code().to_owned(),
            message: self.public_message(),
            request_id: current_request_id(),
            details: self.details(),
            existing_id: match self {
                Self::Conflict { existing_id, .. } => existing_id.clone(),
                _ => None,
            },
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: self.report(),
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            Self::Unavailable(_) | Self::ProviderMisconfigured => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            }
            Self::QuotaExceeded { retry_after, .. } | Self::Busy { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            Self::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            _ => {}
        }
        response
    }
}
