//! The `orchestrator` Lambda function: starts outreach runs and reports on them.
//!
//! Every route is declared once, here, with its OpenAPI description.

use aws_config::SdkConfig;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Html;
use pipewise::api::{
    ApiJson, ApiPath, ApiQuery, FunctionState, HttpFunction, IdempotencyHeader, html_page,
};
use pipewise::auth::AuthUser;
use pipewise::communications::Outreach;
use pipewise::communications::model::{
    InitiateRequest, InitiateResponse, RunList, RunListQuery, RunView,
};
use pipewise::communications::outreach::preview::PreviewResponse;
use pipewise::communications::suppression::SuppressionList;
use pipewise::config::{ConfigError, ConfigSource};
use pipewise::error::{ErrorBody, Result};
use pipewise::ids::RunId;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What the orchestrator handlers share: the verifier and the outreach service.
pub type OrchestratorState = FunctionState<Outreach>;

/// The orchestrator function: its service and its routes; the state, router, OpenAPI document and
/// Lambda entry point are [`HttpFunction`]'s.
pub struct Orchestrator;

impl HttpFunction for Orchestrator {
    type Service = Outreach;

    fn service(source: &ConfigSource<'_>, sdk: &SdkConfig) -> Result<Outreach, ConfigError> {
        Outreach::from_config(source, sdk)
    }

    fn routes() -> OpenApiRouter<OrchestratorState> {
        OpenApiRouter::new()
            .routes(routes!(initiate_communications))
            .routes(routes!(preview))
            .routes(routes!(list_runs))
            .routes(routes!(get_run))
            .routes(routes!(cancel_run))
            .routes(routes!(unsubscribe_page, unsubscribe))
            .routes(routes!(list_suppressions))
            .routes(routes!(lift_suppression))
    }
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
        (status = 429, description = "over the user's 10 runs per minute; `Retry-After` says when", body = ErrorBody),
        (status = 503, description = "a dependency failed; retry with the same key to finish the run", body = ErrorBody),
    ))]
async fn initiate_communications(
    State(state): State<OrchestratorState>,
    user: AuthUser,
    IdempotencyHeader(key): IdempotencyHeader,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<(StatusCode, Json<InitiateResponse>)> {
    let response = state
        .service
        .initiate_communications(&user.user_id, key.as_ref(), body)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(response)))
}

/// What initiate would send for this body: each message rendered per (target, channel, step)
/// for the first 20 targets, with its send time; the same refusals as initiate; nothing stored,
/// nothing queued.
#[utoipa::path(post, path = "/api/user/orchestrator/preview", tag = "outreach",
    request_body = InitiateRequest,
    responses(
        (status = 200, body = PreviewResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "as initiate: invalid fields, unknown targets, nothing deliverable, `template_value_missing`, over 1,000 communications", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn preview(
    State(state): State<OrchestratorState>,
    user: AuthUser,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Json<PreviewResponse>> {
    Ok(Json(state.service.preview(&user.user_id, body).await?))
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
    let limit = pipewise::paging::PageLimit::or(query.limit, 20);
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
    ApiPath(run_id): ApiPath<RunId>,
) -> Result<Json<RunView>> {
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
    ApiPath(run_id): ApiPath<RunId>,
) -> Result<Json<RunView>> {
    Ok(Json(state.service.cancel(&user.user_id, &run_id).await?))
}

/// The one-click unsubscribe page (public, from the link in every outreach email). It only shows
/// a button: link scanners that open every URL must not unsubscribe anyone.
#[utoipa::path(get, path = "/api/user/unsubscribe/{token}", tag = "unsubscribe", security(()),
    params(("token" = String, Path, description = "The token of the email's link")),
    responses(
        (status = 200, description = "a page with a button that unsubscribes", content_type = "text/html"),
        (status = 404, description = "an unknown or altered token", content_type = "text/html"),
        (status = 503, description = "the link cannot be checked right now (`Retry-After`)", content_type = "text/html"),
    ))]
async fn unsubscribe_page(
    State(state): State<OrchestratorState>,
    Path(token): Path<String>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match state.service.unsubscribed(&token).await {
        Ok(Some(false)) => (StatusCode::OK, Html(unsubscribe_form())).into_response(),
        Ok(Some(true)) => (StatusCode::OK, Html(unsubscribed_page())).into_response(),
        Ok(None) => not_found_page().into_response(),
        // A person reads this page: an HTML answer, not the API's JSON error.
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "30")],
            Html(html_page(
                "Please try again",
                "<p>This page cannot be shown right now. Please try again in a minute.</p>",
            )),
        )
            .into_response(),
    }
}

/// One-click unsubscribe (RFC 8058): mail providers POST `List-Unsubscribe=One-Click`; the
/// page's button posts the same. Idempotent. The page shown after it offers the recipient (and
/// only the recipient, who holds the signed link) to undo it: the same URL posted with
/// `action=resubscribe`.
#[utoipa::path(post, path = "/api/user/unsubscribe/{token}", tag = "unsubscribe", security(()),
    params(("token" = String, Path, description = "The token of the email's link")),
    request_body(content = OneClickForm, content_type = "application/x-www-form-urlencoded",
        description = "`List-Unsubscribe=One-Click`, as mail providers send it; `action=resubscribe` undoes an unsubscribe"),
    responses(
        (status = 200, description = "unsubscribed (also when already), or subscribed again", content_type = "text/html"),
        (status = 404, description = "an unknown or altered token", content_type = "text/html"),
        (status = 503, body = ErrorBody),
    ))]
async fn unsubscribe(
    State(state): State<OrchestratorState>,
    Path(token): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Html<String>)> {
    // Only an explicit `action=resubscribe` undoes; anything else (RFC 8058's fixed body, an
    // empty or unreadable one) unsubscribes, as a mail provider's one-click must.
    let resubscribe = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
        .unwrap_or_default()
        .iter()
        .any(|(name, value)| name == "action" && value == "resubscribe");
    if resubscribe {
        return if state.service.resubscribe(&token).await? {
            Ok((StatusCode::OK, Html(unsubscribe_form_after_resubscribe())))
        } else {
            Ok(not_found_page())
        };
    }
    if state.service.unsubscribe(&token).await? {
        Ok((StatusCode::OK, Html(unsubscribed_page())))
    } else {
        Ok(not_found_page())
    }
}

/// The page with the button that unsubscribes (never the GET itself: link scanners open URLs).
fn unsubscribe_form() -> String {
    html_page(
        "Unsubscribe",
        "<p>Stop receiving these emails?</p>\
         <form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
         <button type=\"submit\">Unsubscribe</button></form>",
    )
}

/// After an unsubscribe: the recipient may undo it here.
fn unsubscribed_page() -> String {
    html_page(
        "Unsubscribed",
        "<p>You will not receive these emails again.</p>\
         <form method=\"post\"><input type=\"hidden\" name=\"action\" value=\"resubscribe\">\
         <button type=\"submit\">Undo: subscribe again</button></form>",
    )
}

fn unsubscribe_form_after_resubscribe() -> String {
    html_page(
        "Subscribed again",
        "<p>You may receive these emails again.</p>\
         <form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
         <button type=\"submit\">Unsubscribe</button></form>",
    )
}

/// The form mail providers post for a one-click unsubscribe (RFC 8058). Its content is fixed, and
/// the token alone decides what is unsubscribed.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct OneClickForm {
    /// Always `One-Click`.
    #[schema(rename = "List-Unsubscribe", pattern = "^One-Click$")]
    list_unsubscribe: String,
}

fn not_found_page() -> (StatusCode, Html<String>) {
    (
        StatusCode::NOT_FOUND,
        Html(html_page(
            "Link not valid",
            "<p>This unsubscribe link is not valid.</p>",
        )),
    )
}

/// The user's suppressed addresses (unsubscribed, bounced, complained): outreach skips them.
#[utoipa::path(get, path = "/api/user/suppressions", tag = "unsubscribe",
    responses((status = 200, body = SuppressionList), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn list_suppressions(
    State(state): State<OrchestratorState>,
    user: AuthUser,
) -> Result<Json<SuppressionList>> {
    Ok(Json(state.service.suppressions(&user.user_id).await?))
}

/// Lifts a bounce at the user's request (for example, after the address was fixed). An
/// unsubscribe or a complaint is the recipient's own decision: 409
/// `suppression_owned_by_recipient` (the recipient can undo an unsubscribe from its link).
#[utoipa::path(delete, path = "/api/user/suppressions/{address}", tag = "unsubscribe",
    params(("address" = String, Path, description = "The suppressed address")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "an unsubscribe or complaint, which only the recipient can undo", body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn lift_suppression(
    State(state): State<OrchestratorState>,
    user: AuthUser,
    Path(address): Path<String>,
) -> Result<StatusCode> {
    state
        .service
        .lift_suppression(&user.user_id, &address)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
