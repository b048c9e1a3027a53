//! The `orchestrator` Lambda function: starts outreach runs and reports on them.
//!
//! Every route is declared once, here, with its OpenAPI description.

use aws_config::SdkConfig;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use pipewise::accounts::AccountStore;
use pipewise::api::{ApiJson, ApiPath, ApiQuery, FunctionState, IDEMPOTENCY_KEY_HEADER};
use pipewise::auth::AuthUser;
use pipewise::communications::idempotency::parse_key;
use pipewise::communications::model::{
    InitiateRequest, InitiateResponse, RunList, RunListQuery, RunView,
};
use pipewise::communications::queue::CommunicationQueue;
use pipewise::communications::{Outreach, RunStore};
use pipewise::config::{ConfigError, ConfigSource, vars};
use pipewise::error::{Error, ErrorBody, Result};
use pipewise::targets::TargetStore;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What the orchestrator handlers share: the verifier and the outreach service.
pub type OrchestratorState = FunctionState<Outreach>;

/// Reads the function's settings and builds its clients from one SDK configuration.
pub fn state_from_config(
    source: &ConfigSource<'_>,
    sdk: &SdkConfig,
) -> Result<OrchestratorState, ConfigError> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let outreach = Outreach::new(
        RunStore::new(dynamodb.clone(), source.required(vars::RUNS_TABLE)?),
        TargetStore::new(dynamodb.clone(), source.required(vars::TARGETS_TABLE)?),
        AccountStore::new(dynamodb, source.required(vars::ACCOUNTS_TABLE)?),
        CommunicationQueue::new(
            aws_sdk_sqs::Client::new(sdk),
            source.required(vars::COMMUNICATIONS_QUEUE_URL)?,
        ),
    );
    FunctionState::new(source, outreach)
}

/// The function's routes with their OpenAPI descriptions.
pub fn routes() -> OpenApiRouter<OrchestratorState> {
    OpenApiRouter::new()
        .routes(routes!(initiate_communications))
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
        .routes(routes!(cancel_run))
}

/// The routes bound to their state, ready for `pipewise::api::serve_routes`.
pub fn router(state: OrchestratorState) -> axum::Router {
    routes().with_state(state).split_for_parts().0
}

/// The OpenAPI description of this function's routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().into_openapi()
}

/// Starts a run: one communication per (target, channel), queued for the worker.
#[utoipa::path(post, path = "/api/user/orchestrator/initiate-communications", tag = "outreach",
    request_body = InitiateRequest,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Same key and body: the same run, nothing enqueued twice. 1-255 visible ASCII characters.")),
    responses(
        (status = 202, body = InitiateResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, description = "the key was used with another body, or its request is still running", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "invalid fields, unknown targets, nothing deliverable, or over 1,000 communications", body = ErrorBody),
        (status = 503, description = "a dependency failed; retry with the same key to finish the run", body = ErrorBody),
    ))]
async fn initiate_communications(
    State(state): State<OrchestratorState>,
    user: AuthUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<(StatusCode, Json<InitiateResponse>)> {
    let key = headers
        .get(&IDEMPOTENCY_KEY_HEADER)
        .map(|value| {
            value
                .to_str()
                .map_err(|_| Error::BadHeader {
                    field: "Idempotency-Key",
                    problem: "must be visible ASCII",
                })
                .and_then(parse_key)
        })
        .transpose()?;
    let response = state
        .service
        .initiate_communications(&user.user_id, key, body)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(response)))
}

/// The user's recent runs, newest first.
#[utoipa::path(get, path = "/api/user/orchestrator/runs", tag = "outreach",
    params(RunListQuery),
    responses(
        (status = 200, body = RunList),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn list_runs(
    State(state): State<OrchestratorState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<RunListQuery>,
) -> Result<Json<RunList>> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Error::invalid("limit", "must be 1-100"));
    }
    let runs = state.service.recent_runs(&user.user_id, limit).await?;
    Ok(Json(RunList { runs }))
}

/// A run: status, counts and each communication's outcome.
#[utoipa::path(get, path = "/api/user/orchestrator/runs/{run_id}", tag = "outreach",
    params(("run_id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, body = RunView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn get_run(
    State(state): State<OrchestratorState>,
    user: AuthUser,
    ApiPath(run_id): ApiPath<String>,
) -> Result<Json<RunView>> {
    let run_id = parse_run_id(&run_id)?;
    Ok(Json(state.service.run(&user.user_id, &run_id).await?))
}

/// Cancels the run's communications that are not sent yet.
#[utoipa::path(post, path = "/api/user/orchestrator/runs/{run_id}/cancel", tag = "outreach",
    params(("run_id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, body = RunView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn cancel_run(
    State(state): State<OrchestratorState>,
    user: AuthUser,
    ApiPath(run_id): ApiPath<String>,
) -> Result<Json<RunView>> {
    let run_id = parse_run_id(&run_id)?;
    Ok(Json(state.service.cancel(&user.user_id, &run_id).await?))
}

/// Run ids are UUIDs; anything else names no run.
fn parse_run_id(value: &str) -> Result<String> {
    uuid::Uuid::try_parse(value)
        .map(|id| id.to_string())
        .map_err(|_| Error::NotFound)
}
