//! HTTP plumbing shared by every function: request ids, JSON/query/path extractors whose rejections
//! are the API's errors, fallbacks for unknown routes and methods, CORS and the body limit.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{
    DefaultBodyLimit, FromRef, FromRequest, FromRequestParts, Path, Query, Request,
};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use serde::de::DeserializeOwned;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::{AuthConfig, JwtVerifier};
use crate::config::{ConfigError, ConfigSource, vars};
use crate::error::{Error, FieldError};

/// Largest request body accepted, in bytes (the contract's 64 KB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Header carrying the request id, on requests (optional) and every response.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Header carrying an idempotency key on `POST`s that support it.
pub const IDEMPOTENCY_KEY_HEADER: HeaderName = HeaderName::from_static("idempotency-key");

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// The id of the request being served (empty outside a request).
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(|id| id.to_string()).unwrap_or_default()
}

/// What an HTTP function's handlers share, built once per cold start: the bearer-token verifier
/// (which the [`crate::auth::AuthUser`] extractor finds through `FromRef`) and the function's own
/// service.
#[derive(Clone)]
pub struct FunctionState<T> {
    /// Bearer-token verifier.
    pub verifier: Arc<JwtVerifier>,
    /// The function's domain service or store.
    pub service: T,
}

impl<T> FunctionState<T> {
    /// Reads the auth settings and pairs the verifier with `service`.
    pub fn new(source: &ConfigSource<'_>, service: T) -> Result<Self, ConfigError> {
        let auth = AuthConfig::from_source(source)?;
        Ok(Self {
            verifier: Arc::new(JwtVerifier::new(&auth)),
            service,
        })
    }
}

impl<T> FromRef<FunctionState<T>> for Arc<JwtVerifier> {
    fn from_ref(state: &FunctionState<T>) -> Self {
        state.verifier.clone()
    }
}

/// HTTP settings: which browser origins may call the API.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    /// Origins allowed by CORS; empty means no cross-origin access.
    pub cors_allowed_origins: Vec<HeaderValue>,
}

impl HttpConfig {
    /// Reads `CORS_ALLOWED_ORIGINS` (comma-separated origins).
    pub fn from_source(source: &ConfigSource<'_>) -> Result<Self, ConfigError> {
        let origins = source
            .optional(vars::CORS_ALLOWED_ORIGINS)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(|origin| {
                HeaderValue::from_str(origin).map_err(|_| ConfigError::Invalid {
                    name: vars::CORS_ALLOWED_ORIGINS,
                    problem: "an origin is not a valid header value".into(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            cors_allowed_origins: origins,
        })
    }
}

/// Wraps the routes of one or more functions into the served API: fallbacks for unknown routes
/// (404) and methods (405), the body limit, request ids with a span per request, and CORS (outermost,
/// so error answers carry CORS headers too).
pub fn serve_routes(routes: Router, http: &HttpConfig) -> Router {
    routes
        .fallback(|| async { Error::RouteNotFound })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(request_context))
        .layer(cors_layer(http))
}

fn cors_layer(http: &HttpConfig) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(http.cors_allowed_origins.clone()))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            IDEMPOTENCY_KEY_HEADER,
            REQUEST_ID_HEADER,
        ])
        .expose_headers([REQUEST_ID_HEADER, header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(600))
}

/// Takes the caller's request id when it is short and plain, else API Gateway's, else makes one;
/// scopes it for error bodies, sets it on the response, and logs one line per request.
async fn request_context(mut request: Request, next: Next) -> Response {
    let request_id: Arc<str> = request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map(Arc::from)
        .or_else(|| gateway_request_id(&request))
        .unwrap_or_else(|| Arc::from(uuid::Uuid::new_v4().to_string()));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        request.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %request_id, %method, %path);
    let mut response = REQUEST_ID
        .scope(
            request_id.clone(),
            tracing::Instrument::instrument(next.run(request), span.clone()),
        )
        .await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request finished"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// API Gateway's own id of the request (in Lambda), so our logs and error bodies match its logs.
fn gateway_request_id(request: &Request) -> Option<Arc<str>> {
    match request
        .extensions()
        .get::<lambda_http::request::RequestContext>()?
    {
        lambda_http::request::RequestContext::ApiGatewayV2(context) => context
            .request_id
            .as_deref()
            .filter(|id| !id.is_empty())
            .map(Arc::from),
        _ => None,
    }
}

/// A JSON body whose every rejection is the API's error: 415 without a JSON content type, 413 over
/// the body limit, 400 for malformed JSON, 422 (naming the field) for a well-formed body of the
/// wrong shape. Values are never echoed back (they may be secrets).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Error> {
        if !has_json_content_type(request.headers()) {
            return Err(Error::UnsupportedMediaType);
        }
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection {
                    BytesRejection::FailedToBufferBody(_)
                        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
                    {
                        Error::PayloadTooLarge(format!(
                            "The body is larger than {} KB.",
                            MAX_BODY_BYTES / 1024
                        ))
                    }
                    _ => Error::MalformedJson("the body could not be read".into()),
                })?;
        parse_json(&bytes).map(ApiJson)
    }
}

fn has_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON document into `T` with the API's error semantics (see [`ApiJson`]).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    // Syntax first (a document with trailing garbage is malformed even if its start would not
    // fit `T`), then the shape, with the path of the first field that does not fit.
    let document: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|error| json_error(error, String::new()))?;
    from_json_value(document)
}

/// Reads a well-formed JSON value into `T`; a value of the wrong shape is a 422 naming the field.
pub fn from_json_value<T: DeserializeOwned>(document: serde_json::Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(document).map_err(|error| {
        let path = error.path().to_string();
        json_error(error.into_inner(), path)
    })
}

fn json_error(error: serde_json::Error, path: String) -> Error {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => Error::MalformedJson(format!(
            "syntax error at line {}, column {}",
            error.line(),
            error.column()
        )),
        Category::Data => {
            // serde's message names the offending value; only the kind of problem is sent back.
            let text = error.to_string();
            let (field, problem) = if let Some(rest) = text.strip_prefix("missing field `") {
                let name = rest.split('`').next().unwrap_or_default();
                let field = if path == "." || path.is_empty() {
                    name.to_owned()
                } else {
                    format!("{path}.{name}")
                };
                (field, "is required".to_owned())
            } else if text.starts_with("unknown field") {
                (path, "is not an accepted field".to_owned())
            } else {
                (path, wrong_type_problem(&text))
            };
            let field = if field == "." || field.is_empty() {
                "body".to_owned()
            } else {
                field
            };
            Error::Validation(vec![FieldError::new(field, problem)])
        }
    }
}

/// The problem sentence of a serde type error, written by us. serde's message quotes the
/// offending input before its final `, expected ...` (which describes our type), so only the
/// text after the *last* `, expected ` is kept, and only when it looks like a type description.
fn wrong_type_problem(serde_message: &str) -> String {
    let message = match serde_message.rsplit_once(" at line ") {
        Some((head, position))
            if position
                .split(" column ")
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            head
        }
        _ => serde_message,
    };
    let expected = message
        .rsplit_once(", expected ")
        .map(|(_, expected)| expected)
        .filter(|expected| {
            expected.len() <= 120
                && expected
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || " `,_-".contains(c))
        });
    let kind = if message.starts_with("unknown variant") {
        "is not one of the accepted values"
    } else if message.starts_with("invalid length") {
        "has the wrong number of items"
    } else if message.starts_with("invalid value") {
        "has an invalid value"
    } else {
        "has the wrong type"
    };
    match expected {
        Some(expected) => format!("{kind}: expected {expected}"),
        None => kind.to_owned(),
    }
}

/// Query parameters whose rejection is a 422 naming the query.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|_| Error::invalid("query", "has an invalid parameter"))
    }
}

/// Path parameters whose rejection is a 404 (a path that cannot name a resource names none).
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|_| Error::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        #[serde(default)]
        count: Option<u32>,
    }

    fn code(bytes: &[u8]) -> (&'static str, Vec<FieldError>) {
        match parse_json::<Sample>(bytes) {
            Ok(_) => ("ok", Vec::new()),
            Err(Error::Validation(details)) => ("validation_failed", details),
            Err(error) => (error.code(), Vec::new()),
        }
    }

    #[test]
    fn syntax_errors_are_malformed_and_shape_errors_name_the_field() {
        assert_eq!(code(br#"{"name": "#).0, "malformed_json");
        assert_eq!(code(br#"{"name": "a"} {}"#).0, "malformed_json");
        assert_eq!(code(b"").0, "malformed_json");
        assert_eq!(code(br#"{} {}"#).0, "malformed_json");
        let (kind, details) = code(br#"{"count": 1}"#);
        assert_eq!(kind, "validation_failed");
        assert_eq!(details[0].field, "name");
        let (_, details) = code(br#"{"name": "a", "count": "many"}"#);
        assert_eq!(details[0].field, "count");
        assert!(
            !details[0].problem.contains("many"),
            "values are never echoed"
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Typed {
        flag: Option<bool>,
        kind: Option<Kind>,
        items: Option<Vec<u8>>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Email,
        Social,
    }

    #[test]
    fn no_problem_ever_contains_the_value_that_was_sent() {
        // Values built to look like serde's own message parts, at every place a type error can be.
        let hostile = [
            "CANARY, expected CANARY",
            "x\", expected a boolean at line 1 column 2 CANARY",
            "CANARY` or `email",
            "one of `email`, `CANARY`",
            ", expected ",
        ];
        for value in hostile {
            for body in [
                serde_json::json!({"flag": value}),
                serde_json::json!({"kind": value}),
                serde_json::json!({"items": value}),
                serde_json::json!({"items": [value]}),
                serde_json::json!({"flag": {value: value}}),
            ] {
                let bytes = serde_json::to_vec(&body).unwrap_or_default();
                let result = parse_json::<Typed>(&bytes);
                assert!(
                    matches!(result, Err(Error::Validation(_))),
                    "{body} was not refused as invalid: {result:?}"
                );
                if let Err(Error::Validation(details)) = result {
                    for detail in details {
                        let printed = format!("{} {}", detail.field, detail.problem);
                        assert!(!printed.contains("CANARY"), "{printed}");
                        assert!(!printed.contains(value), "{printed}");
                    }
                }
            }
        }
    }
}
