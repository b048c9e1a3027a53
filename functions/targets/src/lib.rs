//! The `targets` Lambda function: the people a user wants to reach.
//!
//! Every route is declared once, here, with its OpenAPI description.

use aws_config::SdkConfig;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use pipewise::api::{ApiCsv, ApiJson, ApiPath, ApiQuery, FunctionState, HttpFunction};
use pipewise::auth::AuthUser;
use pipewise::config::{ConfigError, ConfigSource};
use pipewise::error::{ErrorBody, Result};
use pipewise::targets::import::ImportResponse;
use pipewise::targets::model::{
    BatchCreateRequest, BatchCreateResponse, CreateTargetRequest, DEFAULT_PAGE_SIZE,
    TargetListQuery, TargetPage, TargetView, UpdateTargetRequest,
};
use pipewise::targets::{TargetId, TargetService};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

/// What the targets handlers share: the verifier and the targets service.
pub type TargetsState = FunctionState<TargetService>;

/// The targets function: its service and its routes; the state, router, OpenAPI document and
/// Lambda entry point are [`HttpFunction`]'s.
pub struct Targets;

impl HttpFunction for Targets {
    type Service = TargetService;

    fn service(source: &ConfigSource<'_>, sdk: &SdkConfig) -> Result<TargetService, ConfigError> {
        TargetService::from_config(source, sdk)
    }

    fn routes() -> OpenApiRouter<TargetsState> {
        OpenApiRouter::new()
            .routes(routes!(list_targets, create_target))
            .routes(routes!(create_targets_batch))
            // The import reads up to 5 MB of CSV; every other route keeps the API's 64 KB.
            .routes(
                routes!(import_targets).layer(axum::extract::DefaultBodyLimit::max(
                    pipewise::api::MAX_CSV_BYTES,
                )),
            )
            .routes(routes!(update_target, delete_target))
    }
}

/// Active targets, newest first, a page at a time.
#[utoipa::path(get, path = "/api/user/communication-targets", tag = "targets",
    params(TargetListQuery),
    responses(
        (status = 200, body = TargetPage),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn list_targets(
    State(state): State<TargetsState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<TargetListQuery>,
) -> Result<Json<TargetPage>> {
    let limit = pipewise::paging::PageLimit::or(query.limit, DEFAULT_PAGE_SIZE);
    let page = state
        .service
        .page(
            &user.user_id,
            limit,
            query.cursor.as_deref().filter(|c| !c.is_empty()),
        )
        .await?;
    Ok(Json(page))
}

/// Adds one target.
#[utoipa::path(post, path = "/api/user/communication-targets", tag = "targets",
    request_body = CreateTargetRequest,
    responses(
        (status = 201, body = TargetView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, description = "an active target has this email; `existing_id` names it", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn create_target(
    State(state): State<TargetsState>,
    user: AuthUser,
    ApiJson(request): ApiJson<CreateTargetRequest>,
) -> Result<(StatusCode, Json<TargetView>)> {
    let target = state.service.create(&user.user_id, request).await?;
    Ok((StatusCode::CREATED, Json(target)))
}

/// Imports targets from a CSV file: a header row (`name`, `email`, `twitter_username`,
/// `instagram_username`, `notes`, `timezone`; any other column is a custom field), up to 10,000
/// rows and 5 MB, `,` or `;` between fields; a result per row, duplicates (in the file or
/// stored) never stored twice.
#[utoipa::path(post, path = "/api/user/communication-targets/import", tag = "targets",
    request_body(content = String, content_type = "text/csv",
        description = "CSV with a header row", example = "name,email,company\nAda Lovelace,ada@example.com,Analytical Engines\n"),
    responses(
        (status = 200, body = ImportResponse,
            description = "a result per row; `unavailable` rows (a dependency failed part-way) are to be sent again"),
        (status = 401, body = ErrorBody),
        (status = 413, description = "over 5 MB or 10,000 rows; nothing imported", body = ErrorBody),
        (status = 415, description = "not `text/csv`", body = ErrorBody),
        (status = 422, description = "`csv_unreadable` (not UTF-8) or `csv_header_invalid`; nothing imported", body = ErrorBody),
        (status = 503, description = "a dependency failed before anything was stored", body = ErrorBody),
    ))]
async fn import_targets(
    State(state): State<TargetsState>,
    user: AuthUser,
    ApiCsv(body): ApiCsv,
) -> Result<axum::response::Response> {
    let response = state.service.import_csv(&user.user_id, &body).await?;
    let retry = response.unavailable > 0;
    Ok(per_item_answer(response, retry))
}

/// A 200 with a result per item; with `Retry-After` when some items are `unavailable` (a
/// dependency failed part-way), so the caller resends exactly those.
fn per_item_answer(body: impl serde::Serialize, retry: bool) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut answer = Json(body).into_response();
    if retry {
        answer.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(pipewise::error::RETRY_AFTER_SECONDS),
        );
    }
    answer
}

/// Adds up to 100 targets, with a result per item.
#[utoipa::path(post, path = "/api/user/communication-targets/batch", tag = "targets",
    request_body = BatchCreateRequest,
    responses(
        (status = 200, body = BatchCreateResponse,
            description = "a result per item; with `Retry-After` when a dependency failed part-way (items `unavailable`)"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, description = "more than 100 items; nothing created", body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, description = "a dependency failed before anything was stored", body = ErrorBody),
    ))]
async fn create_targets_batch(
    State(state): State<TargetsState>,
    user: AuthUser,
    ApiJson(request): ApiJson<BatchCreateRequest>,
) -> Result<axum::response::Response> {
    let response = state.service.create_batch(&user.user_id, request).await?;
    let retry = response.counts.unavailable > 0;
    Ok(per_item_answer(response, retry))
}

/// Changes some fields of an active target (`null` clears an optional one).
#[utoipa::path(patch, path = "/api/user/communication-targets/{target_id}", tag = "targets",
    params(("target_id" = String, Path, description = "The target's id")),
    request_body = UpdateTargetRequest,
    responses(
        (status = 200, body = TargetView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn update_target(
    State(state): State<TargetsState>,
    user: AuthUser,
    ApiPath(id): ApiPath<TargetId>,
    ApiJson(request): ApiJson<UpdateTargetRequest>,
) -> Result<Json<TargetView>> {
    Ok(Json(
        state.service.update(&user.user_id, id, request).await?,
    ))
}

/// Soft-deletes a target (`active = false`) and frees its email.
#[utoipa::path(delete, path = "/api/user/communication-targets/{target_id}", tag = "targets",
    params(("target_id" = String, Path, description = "The target's id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn delete_target(
    State(state): State<TargetsState>,
    user: AuthUser,
    ApiPath(id): ApiPath<TargetId>,
) -> Result<StatusCode> {
    state.service.delete(&user.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
