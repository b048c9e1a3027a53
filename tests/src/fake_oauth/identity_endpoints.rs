//! The who-am-I endpoints of a signed-in token: X's `GET /2/users/me`, Gmail's profile,
//! Microsoft Graph's `GET /v1.0/me` and Instagram's `GET /me`, each with its provider's refusal
//! of a token it does not accept.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::instagram_tokens::instagram_token_refusal;
use super::{Fields, Identity, Provider, TokenProblem, bearer, field, respond, unix_now};
use crate::fake_social::Shared;

/// X's `GET /2/users/me`.
pub(super) async fn x_me(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let script = state.lock().expect("lock");
    let token = bearer(&headers);
    let identity = match script.oauth.access_grant(Provider::X, token) {
        Ok(grant) => Some(script.oauth.grants[grant].identity.clone()),
        // The token a test manages ([`FakeSocial::x_tokens`]) belongs to who signs in at X.
        Err(TokenProblem::Unknown) => script
            .x_tokens
            .as_ref()
            .filter(|(access, _)| !token.is_empty() && access == token && !script.x_grant_revoked)
            .map(|_| script.oauth.signer(Provider::X)),
        Err(_) => None,
    };
    match identity {
        Some(Identity::X(user)) => (
            StatusCode::OK,
            Json(json!({"data": {"id": user.id, "name": user.name, "username": user.username}})),
        )
            .into_response(),
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(
                json!({"title": "Unauthorized", "type": "about:blank", "status": 401,
                "detail": "Unauthorized"}),
            ),
        )
            .into_response(),
    }
}

/// Gmail's `GET /gmail/v1/users/me/profile`: the mailbox's address, counts and current history id
/// ([`crate::fake_mailbox`] keeps the mailbox).
pub(super) async fn gmail_profile(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<Fields>,
) -> Response {
    let mut guard = state.lock().expect("lock");
    let script = &mut *guard;
    let token = match bearer(&headers) {
        "" => field(&query, "access_token"),
        token => token,
    };
    let Some(Identity::Google(user)) = script
        .oauth
        .token_identity(Provider::Google, token)
        .cloned()
    else {
        return gmail_unauthorized();
    };
    let (messages, threads, history_id) = script.mailboxes.gmail_profile(&user.email);
    (
        StatusCode::OK,
        Json(
            json!({"emailAddress": user.email, "messagesTotal": messages,
            "threadsTotal": threads, "historyId": history_id.to_string()}),
        ),
    )
        .into_response()
}

/// Gmail's 401 for a token it does not accept (observed shape, see the module's sources).
pub(crate) fn gmail_unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
            ),
        )],
        Json(json!({"error": {"code": 401,
            "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
            "errors": [{"message": "Invalid Credentials", "domain": "global",
                "reason": "authError", "location": "Authorization",
                "locationType": "header"}],
            "status": "UNAUTHENTICATED"}})),
    )
        .into_response()
}

/// Microsoft Graph's 401 `InvalidAuthenticationToken` for `token` (empty or not accepted).
pub(crate) fn graph_unauthorized(token: &str) -> Response {
    let message = if token.is_empty() {
        "Access token is empty."
    } else {
        "Access token validation failure."
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    (
        StatusCode::UNAUTHORIZED,
        Json(
            json!({"error": {"code": "InvalidAuthenticationToken", "message": message,
            "innerError": {"date": unix_now(), "request-id": request_id,
                "client-request-id": request_id}}}),
        ),
    )
        .into_response()
}

/// Microsoft Graph's `GET /v1.0/me`.
pub(super) async fn graph_me(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let script = state.lock().expect("lock");
    let token = bearer(&headers);
    match script.oauth.token_identity(Provider::Microsoft, token) {
        Some(Identity::Microsoft(user)) => (
            StatusCode::OK,
            Json(json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
                "businessPhones": [], "displayName": user.display_name, "givenName": null,
                "jobTitle": null, "mail": user.mail, "mobilePhone": null,
                "officeLocation": null, "preferredLanguage": null, "surname": null,
                "userPrincipalName": user.user_principal_name, "id": user.id,
            })),
        )
            .into_response(),
        _ => graph_unauthorized(token),
    }
}

/// Instagram's `GET /me?fields=...`.
pub(super) async fn instagram_me(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<Fields>,
) -> Response {
    let script = state.lock().expect("lock");
    let token = match field(&query, "access_token") {
        "" => bearer(&headers),
        token => token,
    };
    let grant = match script.oauth.access_grant(Provider::Instagram, token) {
        Ok(grant) => grant,
        Err(problem) => return respond(instagram_token_refusal(problem)),
    };
    let Identity::Instagram(user) = &script.oauth.grants[grant].identity else {
        return respond(instagram_token_refusal(TokenProblem::Unknown));
    };
    // The fields asked for, and always `id` (the app-scoped id), as the Graph API answers.
    let mut body = json!({});
    for name in field(&query, "fields").split(',').map(str::trim) {
        match name {
            "user_id" => body["user_id"] = user.user_id.clone().into(),
            "username" => body["username"] = user.username.clone().into(),
            _ => {}
        }
    }
    body["id"] = user.app_scoped_id().into();
    respond((StatusCode::OK, body))
}
