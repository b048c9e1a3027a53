//! The `accounts` Lambda function: integration accounts, connecting them at their provider
//! (hosted OAuth) and checking them, the agent tool list, and health.
//!
//! Every route is declared once, here, with its OpenAPI description; [`HttpFunction::router`]
//! serves them and [`HttpFunction::openapi`] documents them, so the two cannot drift apart.

use aws_config::SdkConfig;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use pipewise::accounts::connect::{
    CallbackOutcome, CallbackQuery, ConnectSessionCreated, ConnectSessionRequest,
    ConnectSessionView, ConnectionTest,
};
use pipewise::accounts::model::{
    AccountList, AccountListQuery, AccountSecrets, AccountView, UpsertAccountRequest,
};
use pipewise::accounts::service::Upserted;
use pipewise::accounts::tools::{ToolList, tools};
use pipewise::accounts::{AccountId, AccountService};
use pipewise::api::{ApiJson, ApiPath, ApiQuery, FunctionState, HttpFunction, html_page};
use pipewise::auth::AuthUser;
use pipewise::config::{ConfigError, ConfigSource};
use pipewise::error::{ErrorBody, Result};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What the accounts handlers share: the verifier and the accounts service.
pub type AccountsState = FunctionState<AccountService>;

/// The accounts function: its service and its routes; the state, router, OpenAPI document and
/// Lambda entry point are [`HttpFunction`]'s.
pub struct Accounts;

impl HttpFunction for Accounts {
    type Service = AccountService;

    fn service(source: &ConfigSource<'_>, sdk: &SdkConfig) -> Result<AccountService, ConfigError> {
        AccountService::from_config(source, sdk)
    }

    fn routes() -> OpenApiRouter<AccountsState> {
        OpenApiRouter::new()
            .routes(routes!(health))
            .routes(routes!(list_accounts, upsert_account))
            .routes(routes!(get_account, delete_account))
            .routes(routes!(get_account_secrets))
            .routes(routes!(test_account))
            .routes(routes!(start_connect_session))
            .routes(routes!(get_connect_session))
            .routes(routes!(oauth_callback))
            .routes(routes!(list_tools))
    }
}

/// Answer of the health check.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the function runs.
    pub status: &'static str,
    /// Service version.
    pub version: &'static str,
}

/// Liveness: no auth, no dependency call.
#[utoipa::path(get, path = "/api/user/health", tag = "health", security(()),
    responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: pipewise::VERSION,
    })
}

/// Lists the user's accounts, optionally of one type; secrets masked.
#[utoipa::path(get, path = "/api/user/integrations/accounts", tag = "accounts",
    params(AccountListQuery),
    responses(
        (status = 200, body = AccountList),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn list_accounts(
    State(state): State<AccountsState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<AccountListQuery>,
) -> Result<Json<AccountList>> {
    let account_type = query.account_type;
    let accounts = state.service.list(&user.user_id, account_type).await?;
    Ok(Json(AccountList {
        total: accounts.len(),
        accounts,
    }))
}

/// Creates (201) or replaces (200) an account by `account_id`. Secrets are sealed; posting
/// `"********"` for a secret keeps the stored value.
#[utoipa::path(post, path = "/api/user/integrations/accounts", tag = "accounts",
    request_body = UpsertAccountRequest,
    responses(
        (status = 201, description = "created", body = AccountView),
        (status = 200, description = "updated", body = AccountView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "`sender_verifications_exceeded`: 10 sender verifications an hour (`Retry-After`)", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn upsert_account(
    State(state): State<AccountsState>,
    user: AuthUser,
    ApiJson(request): ApiJson<UpsertAccountRequest>,
) -> Result<(StatusCode, Json<AccountView>)> {
    let (outcome, account) = state.service.upsert(&user.user_id, request).await?;
    let status = match outcome {
        Upserted::Created => StatusCode::CREATED,
        Upserted::Updated => StatusCode::OK,
    };
    Ok((status, Json(account)))
}

/// One account, secrets masked.
#[utoipa::path(get, path = "/api/user/integrations/accounts/{account_id}", tag = "accounts",
    params(("account_id" = String, Path, description = "The account's id")),
    responses(
        (status = 200, body = AccountView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn get_account(
    State(state): State<AccountsState>,
    user: AuthUser,
    ApiPath(account_id): ApiPath<AccountId>,
) -> Result<Json<AccountView>> {
    Ok(Json(state.service.get(&user.user_id, &account_id).await?))
}

/// Disconnects an account: the item and its ciphertext are deleted.
#[utoipa::path(delete, path = "/api/user/integrations/accounts/{account_id}", tag = "accounts",
    params(("account_id" = String, Path, description = "The account's id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn delete_account(
    State(state): State<AccountsState>,
    user: AuthUser,
    ApiPath(account_id): ApiPath<AccountId>,
) -> Result<StatusCode> {
    state.service.delete(&user.user_id, &account_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The decrypted configuration, for agents holding the `integrations:secrets:read` scope.
#[utoipa::path(get, path = "/api/user/integrations/accounts/{account_id}/secrets", tag = "accounts",
    params(("account_id" = String, Path, description = "The account's id")),
    responses(
        (status = 200, body = AccountSecrets),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn get_account_secrets(
    State(state): State<AccountsState>,
    user: AuthUser,
    ApiPath(account_id): ApiPath<AccountId>,
) -> Result<Json<AccountSecrets>> {
    user.require_secrets_scope()?;
    Ok(Json(
        state.service.reveal(&user.user_id, &account_id).await?,
    ))
}

/// What an agent can do with the user's connected accounts.
#[utoipa::path(get, path = "/api/user/integrations/tools", tag = "accounts",
    responses(
        (status = 200, body = ToolList),
        (status = 401, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn list_tools(State(state): State<AccountsState>, user: AuthUser) -> Result<Json<ToolList>> {
    let accounts = state.service.list(&user.user_id, None).await?;
    Ok(Json(tools(&accounts)))
}

/// Checks an account with its provider: who its token belongs to (refreshed first when due),
/// or for an SES sender whether SES has verified it. The result is stored on the account.
#[utoipa::path(post, path = "/api/user/integrations/accounts/{account_id}/test", tag = "connect",
    params(("account_id" = String, Path, description = "The account's id")),
    responses(
        (status = 200, body = ConnectionTest),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, description = "`account_not_testable`: neither on a provider nor an SES sender", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn test_account(
    State(state): State<AccountsState>,
    user: AuthUser,
    ApiPath(account_id): ApiPath<AccountId>,
) -> Result<Json<ConnectionTest>> {
    Ok(Json(
        state
            .service
            .test_connection(&user.user_id, &account_id)
            .await?,
    ))
}

/// Starts connecting an account by signing in at its provider: opens a 10-minute session and
/// answers the provider's consent page for the browser.
#[utoipa::path(post, path = "/api/user/integrations/connect-sessions", tag = "connect",
    request_body = ConnectSessionRequest,
    responses(
        (status = 201, body = ConnectSessionCreated),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, description = "a dependency failed, or `provider_misconfigured`: no OAuth client for the provider", body = ErrorBody),
    ))]
async fn start_connect_session(
    State(state): State<AccountsState>,
    user: AuthUser,
    ApiJson(request): ApiJson<ConnectSessionRequest>,
) -> Result<(StatusCode, Json<ConnectSessionCreated>)> {
    let created = state.service.start_connect(&user.user_id, request).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Where a connect session stands (for popup flows that poll).
#[utoipa::path(get, path = "/api/user/integrations/connect-sessions/{session_id}", tag = "connect",
    params(("session_id" = String, Path, description = "The session's id")),
    responses(
        (status = 200, body = ConnectSessionView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn get_connect_session(
    State(state): State<AccountsState>,
    user: AuthUser,
    ApiPath(session_id): ApiPath<String>,
) -> Result<Json<ConnectSessionView>> {
    Ok(Json(
        state
            .service
            .connect_status(&user.user_id, &session_id)
            .await?,
    ))
}

/// Where the provider sends the browser back (public: only the session's state ties it to a
/// user). 303 to the session's return URL with `connect=success&account_id=...` or
/// `connect=error&error=...`; an unknown, used or expired state is a 400 page.
#[utoipa::path(get, path = "/api/user/integrations/oauth/callback", tag = "connect", security(()),
    params(CallbackQuery),
    responses(
        (status = 303, description = "back to the frontend's return URL with the outcome"),
        (status = 400, description = "an unknown, used or expired state: nothing stored", content_type = "text/html"),
        (status = 503, description = "the sign-in cannot be completed right now", content_type = "text/html"),
    ))]
async fn oauth_callback(
    State(state): State<AccountsState>,
    query: std::result::Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = query.map(|Query(query)| query).unwrap_or_default();
    // The URL carries a code and a state: nothing here may be cached or passed on as a referrer.
    let private = [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    match state.service.complete_connect(query).await {
        Ok(CallbackOutcome::Redirect(url)) => {
            (StatusCode::SEE_OTHER, private, [(header::LOCATION, url)]).into_response()
        }
        Ok(CallbackOutcome::InvalidState) => (
            StatusCode::BAD_REQUEST,
            private,
            Html(html_page(
                "This sign-in link cannot be used",
                "<p>It has expired or was already used. Go back to PipeWise and connect the account again.</p>",
            )),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            private,
            [(header::RETRY_AFTER, "30")],
            Html(html_page(
                "Please try again",
                "<p>The sign-in cannot be completed right now. Go back to PipeWise and connect the account again in a minute.</p>",
            )),
        )
            .into_response(),
    }
}
