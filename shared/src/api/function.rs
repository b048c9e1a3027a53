//! The scaffold every HTTP function shares: the state its handlers share, built once per cold
//! start, its axum router, its OpenAPI document and its Lambda entry point. A function names only
//! its service and its routes ([`HttpFunction`]); `main` calls [`serve_lambda`].

use std::sync::Arc;

use aws_config::SdkConfig;
use axum::Router;
use axum::extract::FromRef;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use super::{HttpConfig, serve_routes};
use crate::auth::{AuthConfig, JwtVerifier};
use crate::config::{ConfigError, ConfigSource};

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

/// One HTTP function (`accounts`, `targets`, `orchestrator`): the service its handlers share and
/// its routes, each declared once with `utoipa-axum`'s `routes!`, so what it serves and what its
/// OpenAPI document says cannot drift apart. The rest is the same for every function and
/// provided.
pub trait HttpFunction {
    /// The function's domain service (cloned into each request: cheap to clone).
    type Service: Clone + Send + Sync + 'static;

    /// Builds the service from the settings and the cold start's one SDK configuration.
    fn service(source: &ConfigSource<'_>, sdk: &SdkConfig) -> Result<Self::Service, ConfigError>;

    /// The function's routes with their OpenAPI descriptions.
    fn routes() -> OpenApiRouter<FunctionState<Self::Service>>;

    /// The handlers' state: the service, then the verifier from the auth settings.
    fn state(
        source: &ConfigSource<'_>,
        sdk: &SdkConfig,
    ) -> Result<FunctionState<Self::Service>, ConfigError> {
        FunctionState::new(source, Self::service(source, sdk)?)
    }

    /// The routes bound to their state, ready for [`serve_routes`].
    fn router(state: FunctionState<Self::Service>) -> Router {
        Self::routes().with_state(state).split_for_parts().0
    }

    /// The OpenAPI description of the function's routes.
    fn openapi() -> OpenApi {
        Self::routes().into_openapi()
    }
}

/// A function's Lambda entry point: JSON logging, the settings from the environment, one SDK
/// configuration, the state, the issuers' signing keys (fetched here, once per cold start, not in
/// a request), then `lambda_http::run` over the routes wrapped by [`serve_routes`].
pub async fn serve_lambda<F: HttpFunction>() -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let source = ConfigSource::env();
    let sdk = crate::aws::sdk_config().await;
    let state = F::state(&source, &sdk)?;
    state.verifier.prefetch().await;
    let http = HttpConfig::from_source(&source)?;
    lambda_http::run(serve_routes(F::router(state), &http)).await
}
