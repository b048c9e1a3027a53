//! The `webhooks` Lambda function: the user's webhook endpoints, their test event and their
//! recent deliveries. The deliveries themselves go out from `webhook-delivery` (in the
//! `communications-worker` crate, with the other queue consumers).
//!
//! Every route is declared once, here, with its OpenAPI description.

use aws_config::SdkConfig;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use pipewise::api::{ApiJson, ApiPath, ApiQuery, FunctionState, HttpFunction};
use pipewise::auth::AuthUser;
use pipewise::config::{ConfigError, ConfigSource};
use pipewise::error::{ErrorBody, Result};
use pipewise::ids::WebhookId;
use pipewise::webhooks::WebhookService;
use pipewise::webhooks::service::{
    CreateWebhookRequest, DeliveryList, DeliveryListQuery, TestQueued, WebhookCreated, WebhookList,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What the webhook handlers share: the verifier and the webhook service.
pub type WebhooksState = FunctionState<WebhookService>;

/// The webhooks function: its service and its routes.
pub struct Webhooks;

impl HttpFunction for Webhooks {
    type Service = WebhookService;

    fn service(source: &ConfigSource<'_>, sdk: &SdkConfig) -> Result<WebhookService, ConfigError> {
        WebhookService::from_config(source, sdk)
    }

    fn routes() -> OpenApiRouter<WebhooksState> {
        OpenApiRouter::new()
            .routes(routes!(create_webhook, list_webhooks))
            .routes(routes!(delete_webhook))
            .routes(routes!(test_webhook))
            .routes(routes!(list_deliveries))
    }
}

/// Adds an endpoint; the answer holds its signing secret, shown only this once.
#[utoipa::path(post, path = "/api/user/webhooks", tag = "webhooks",
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, body = WebhookCreated),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "an invalid field (a URL that is not https or reaches a private address, an unknown event type), or `webhook_limit_reached` (10 per user)", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn create_webhook(
    State(state): State<WebhooksState>,
    user: AuthUser,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<(StatusCode, Json<WebhookCreated>)> {
    let created = state.service.create(&user.user_id, body).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// The user's endpoints (never their secrets), with their status.
#[utoipa::path(get, path = "/api/user/webhooks", tag = "webhooks",
    responses(
        (status = 200, body = WebhookList),
        (status = 401, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn list_webhooks(
    State(state): State<WebhooksState>,
    user: AuthUser,
) -> Result<Json<WebhookList>> {
    Ok(Json(state.service.list(&user.user_id).await?))
}

/// Deletes an endpoint; no delivery goes to it afterwards.
#[utoipa::path(delete, path = "/api/user/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn delete_webhook(
    State(state): State<WebhooksState>,
    user: AuthUser,
    ApiPath(webhook_id): ApiPath<WebhookId>,
) -> Result<StatusCode> {
    state.service.delete(&user.user_id, &webhook_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a `webhook.test` event to the endpoint (a disabled one too: a success enables it).
#[utoipa::path(post, path = "/api/user/webhooks/{webhook_id}/test", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 202, body = TestQueued),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn test_webhook(
    State(state): State<WebhooksState>,
    user: AuthUser,
    ApiPath(webhook_id): ApiPath<WebhookId>,
) -> Result<(StatusCode, Json<TestQueued>)> {
    let queued = state.service.test(&user.user_id, &webhook_id).await?;
    Ok((StatusCode::ACCEPTED, Json(queued)))
}

/// The endpoint's latest delivery attempts, newest first: event id, type, attempt, status
/// code, outcome.
#[utoipa::path(get, path = "/api/user/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The endpoint's id"), DeliveryListQuery),
    responses(
        (status = 200, body = DeliveryList),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn list_deliveries(
    State(state): State<WebhooksState>,
    user: AuthUser,
    ApiPath(webhook_id): ApiPath<WebhookId>,
    ApiQuery(query): ApiQuery<DeliveryListQuery>,
) -> Result<Json<DeliveryList>> {
    let limit = pipewise::paging::PageLimit::or(query.limit, 50);
    Ok(Json(
        state
            .service
            .deliveries(&user.user_id, &webhook_id, limit)
            .await?,
    ))
}
