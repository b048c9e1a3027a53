//! HTTP plumbing shared by every function: request ids, JSON/query/path extractors whose rejections
//! are the API's errors, fallbacks for unknown routes and methods, CORS and the body limit; and
//! the functions' one scaffold ([`HttpFunction`], [`serve_lambda`]).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use serde::de::DeserializeOwned;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::{ConfigError, ConfigSource, vars};
use crate::error::Error;

mod function;

pub use function::{FunctionState, HttpFunction, serve_lambda};

/// Largest request body accepted, in bytes (the contract's 64 KB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Header carrying the request id, on requests (optional) and every response.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Header an MCP client sends after `initialize` (browser clients need it allowed by CORS).
pub const MCP_PROTOCOL_VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// Header carrying an idempotency key on `POST`s that support it.
pub const IDEMPOTENCY_KEY_HEADER: HeaderName = HeaderName::from_static("idempotency-key");

pub use crate::json_input::{from_json_value, parse_json};
pub use crate::request_id::current_request_id;

/// A minimal HTML page for the public routes a person opens in a browser (the unsubscribe link,
/// the OAuth callback). `title` and `body` are the caller's fixed text, never request input.
pub fn html_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"
    )
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
///
/// `Router::layer` wraps each route (and the fallback) on its own, after the router has matched
/// the path, so `request_context` finds the route's template in the request's [`MatchedPath`];
/// the fallback's requests have none and are logged as [`UNMATCHED_ROUTE`].
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
            MCP_PROTOCOL_VERSION_HEADER,
        ])
        .expose_headers([REQUEST_ID_HEADER, header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(600))
}

/// What the request log says for a request no route matched (the 404 fallback).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The route template the request matched (`/api/user/unsubscribe/{token}`), never its path:
/// paths carry unsubscribe tokens and email addresses, and query strings anything.
fn route_template(request: &Request) -> Arc<str> {
    request.extensions().get::<MatchedPath>().map_or_else(
        || Arc::from(UNMATCHED_ROUTE),
        |matched| Arc::from(matched.as_str()),
    )
}

/// Takes the caller's request id when it is short and plain, else API Gateway's, else makes one;
/// scopes it for error bodies, sets it on the response, and logs one line per request, naming
/// the method and the route template (never the raw path or query).
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
    let route = route_template(&request);
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %request_id, %method, %route);
    let mut response = crate::request_id::scope(
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
        let bytes = read_body(request, state, || {
            Error::PayloadTooLarge(format!(
                "The body is larger than {} KB.",
                MAX_BODY_BYTES / 1024
            ))
        })
        .await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The whole body, within the route's limit: `too_large` past it, 400 when it cannot be read.
async fn read_body<S: Send + Sync>(
    request: Request,
    state: &S,
    too_large: impl FnOnce() -> Error,
) -> Result<Bytes, Error> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| match rejection {
            BytesRejection::FailedToBufferBody(_)
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
            {
                too_large()
            }
            _ => Error::MalformedJson("the body could not be read".into()),
        })
}

/// The media type of the body, lower-case, without parameters (`application/json`).
fn media_type(headers: &axum::http::HeaderMap) -> Option<String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())?;
    Some(
        content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

fn has_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    media_type(headers).is_some_and(|essence| {
        essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

/// Largest CSV body a route that reads one accepts (the targets import), in bytes.
pub use crate::targets::import::MAX_IMPORT_BYTES as MAX_CSV_BYTES;

/// A `text/csv` body, up to [`MAX_CSV_BYTES`] (the route's own limit, above the API's 64 KB): 415
/// for another media type, 413 over the limit. Its rows are the domain's to read.
pub struct ApiCsv(pub Bytes);

impl<S> FromRequest<S> for ApiCsv
where
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Error> {
        if media_type(request.headers()).as_deref() != Some("text/csv") {
            return Err(Error::MediaTypeExpected("CSV (Content-Type: text/csv)"));
        }
        let bytes = read_body(request, state, || {
            Error::PayloadTooLarge(format!(
                "A CSV body is at most {} MB.",
                MAX_CSV_BYTES / (1024 * 1024)
            ))
        })
        .await?;
        Ok(Self(bytes))
    }
}

/// Query parameters whose rejection is a 422 naming the parameter (never its value).
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let _ = state;
        crate::json_input::from_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
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

/// The optional `Idempotency-Key` header, checked: a malformed one is a 400 before the handler
/// runs.
pub struct IdempotencyHeader(pub Option<crate::communications::idempotency::IdempotencyKey>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Error> {
        parts
            .headers
            .get(&IDEMPOTENCY_KEY_HEADER)
            .map(|value| {
                value
                    .to_str()
                    .map_err(|_| Error::BadHeader {
                        field: "Idempotency-Key",
                        problem: "must be visible ASCII",
                    })
                    .and_then(crate::communications::idempotency::IdempotencyKey::parse)
            })
            .transpose()
            .map(IdempotencyHeader)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::http::StatusCode;
    use tower::ServiceExt;

    use super::*;

    /// Collects the JSON log lines written while it is the thread's subscriber.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut buffer) = self.0.lock() {
                buffer.extend_from_slice(bytes);
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
        type Writer = Self;

        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    /// Serves one request through `serve_routes` and returns its status and the log it wrote.
    async fn logged(method: Method, uri: &str) -> (StatusCode, String) {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_writer(lines.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let routes = Router::new().route(
            "/api/user/unsubscribe/{token}",
            axum::routing::get(|| async { "page" }),
        );
        let app = serve_routes(routes, &HttpConfig::default());
        let request = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let status = app.oneshot(request).await.unwrap().status();
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        (status, text)
    }

    #[tokio::test]
    async fn the_request_log_names_the_route_template_never_the_path_or_query() {
        let secret = "eyJ1MSIsImFsaWNlIl0.c2VjcmV0LW1hYw";
        let cases = [
            (
                Method::GET,
                format!("/api/user/unsubscribe/{secret}?to=ada@example.com"),
                StatusCode::OK,
                "\"route\":\"/api/user/unsubscribe/{token}\"",
            ),
            // A matched path with the wrong method still names its template.
            (
                Method::DELETE,
                format!("/api/user/unsubscribe/{secret}"),
                StatusCode::METHOD_NOT_ALLOWED,
                "\"route\":\"/api/user/unsubscribe/{token}\"",
            ),
            (
                Method::GET,
                format!("/api/user/nothing-here/{secret}/ada@example.com"),
                StatusCode::NOT_FOUND,
                "\"route\":\"unmatched\"",
            ),
        ];
        for (method, uri, status, route) in cases {
            let (answered, log) = logged(method, &uri).await;
            assert_eq!(answered, status, "{uri}");
            assert!(log.contains("request finished"), "{uri}: {log}");
            assert!(log.contains(route), "{uri}: {log}");
            assert!(
                !log.contains(secret) && !log.contains("ada@example.com"),
                "{uri}: {log}"
            );
            assert!(!log.contains("\"path\""), "{uri}: {log}");
        }
    }
}
