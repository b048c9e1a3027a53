//! The token endpoints: the client a request presents, the code exchanges and refreshes of X,
//! Google and Microsoft in each one's words (answers and refusals), the HTTP handlers of every
//! provider's token endpoint, and the record of each call.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::{
    Answer, Client, Fields, Identity, OAuthState, Provider, Refused, TokenCall, TokenProblem,
    configured_client, field, has_scope, random_part, respond, unix_now,
};
use crate::fake_social::{Script, Shared};

/// What a token endpoint answers, given its configured client, the presented one and the form.
type TokenAnswer = fn(&mut OAuthState, Option<&Client>, &ClientAuth, &Fields) -> Answer;

/// The client a token request presented: HTTP Basic first (RFC 6749 §2.3.1), else the form.
pub(crate) struct ClientAuth {
    /// The client id.
    pub(crate) id: Option<String>,
    /// The secret.
    pub(crate) secret: Option<String>,
}

impl ClientAuth {
    /// Reads the client from a token request.
    pub(crate) fn of(headers: &HeaderMap, form: &Fields) -> Self {
        if let Some((id, secret)) = basic_credentials(headers) {
            return Self {
                id: Some(id),
                secret: Some(secret),
            };
        }
        Self {
            id: form.get("client_id").cloned(),
            secret: form.get("client_secret").cloned(),
        }
    }

    pub(super) fn id(&self) -> &str {
        self.id.as_deref().unwrap_or_default()
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(value.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// A JWT-shaped `id_token`: its claims are readable, its signature is no one's.
fn unsigned_id_token(claims: &Value) -> String {
    let head = URL_SAFE_NO_PAD
        .encode(json!({"alg": "RS256", "kid": "stand-in", "typ": "JWT"}).to_string());
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{head}.{body}.c3RhbmQtaW4")
}

impl OAuthState {
    /// Records a token-endpoint call (never a token, code or secret).
    pub(crate) fn record_token_call(
        &mut self,
        provider: Provider,
        fields: &Fields,
        client_id: Option<String>,
        answer: &Answer,
    ) {
        let error = if answer.0.is_success() {
            None
        } else {
            match &answer.1["error"] {
                Value::String(code) => Some(code.clone()),
                Value::Object(error) => error.get("code").map(Value::to_string),
                _ => answer.1["error_type"].as_str().map(str::to_owned),
            }
        };
        self.token_calls.push(TokenCall {
            provider,
            grant_type: field(fields, "grant_type").to_owned(),
            client_id,
            code_verifier_sent: !field(fields, "code_verifier").is_empty(),
            status: answer.0.as_u16(),
            error,
        });
    }

    /// Google's `POST /token`.
    fn google_token(
        &mut self,
        client: Option<&Client>,
        auth: &ClientAuth,
        form: &Fields,
    ) -> Answer {
        let refuse = |status: StatusCode, error: &str, description: &str| {
            (
                status,
                json!({"error": error, "error_description": description}),
            )
        };
        if let Some((id, secret)) = client {
            if auth.id() != id {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "The OAuth client was not found.",
                );
            }
            if auth.secret.as_deref() != Some(secret.as_str()) {
                return refuse(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized");
            }
        }
        match field(form, "grant_type") {
            "authorization_code" => {
                let code = match self.redeem(Provider::Google, form, auth.id()) {
                    Ok(code) => code,
                    Err(Refused::Unknown) => {
                        return refuse(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            "Malformed auth code.",
                        );
                    }
                    Err(Refused::Spent | Refused::Expired | Refused::OtherClient) => {
                        return refuse(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
                    }
                    Err(Refused::RedirectMismatch) => {
                        return refuse(
                            StatusCode::BAD_REQUEST,
                            "redirect_uri_mismatch",
                            "Bad Request",
                        );
                    }
                    Err(Refused::VerifierMissing) => {
                        return refuse(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            "Missing code verifier.",
                        );
                    }
                    Err(Refused::VerifierMismatch) => {
                        return refuse(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            "Invalid code verifier.",
                        );
                    }
                };
                let grant = self.start_grant(&code);
                let access = self.issue_access(grant, "ya29.", Provider::Google.access_lifetime());
                let mut body = json!({"access_token": access, "expires_in": 3599,
                    "scope": code.scope, "token_type": "Bearer"});
                if code.refresh_due {
                    body["refresh_token"] = self.issue_refresh(grant, "1//0").into();
                }
                if has_scope(&code.scope, "openid")
                    && let Identity::Google(user) = &code.identity
                {
                    let now = unix_now();
                    body["id_token"] = unsigned_id_token(&json!({
                        "iss": "https://accounts.google.com", "aud": code.client_id,
                        "sub": format!("stand-in-{}", user.email), "email": user.email,
                        "email_verified": true, "iat": now, "exp": now + 3599,
                    }))
                    .into();
                }
                (StatusCode::OK, body)
            }
            "refresh_token" => {
                match self.refresh_grant(
                    Provider::Google,
                    field(form, "refresh_token"),
                    auth.id(),
                    false,
                ) {
                    Ok(grant) => {
                        let access =
                            self.issue_access(grant, "ya29.", Provider::Google.access_lifetime());
                        (
                            StatusCode::OK,
                            json!({"access_token": access, "expires_in": 3599,
                                "scope": self.grants[grant].scope, "token_type": "Bearer"}),
                        )
                    }
                    Err(TokenProblem::Revoked) => refuse(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Token has been expired or revoked.",
                    ),
                    Err(TokenProblem::OtherClient) => refuse(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized_client",
                        "Unauthorized",
                    ),
                    Err(TokenProblem::Unknown | TokenProblem::Expired) => {
                        refuse(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request")
                    }
                }
            }
            other => refuse(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("Invalid grant_type: {other}"),
            ),
        }
    }

    /// Microsoft's `POST /common/oauth2/v2.0/token`.
    fn microsoft_token(
        &mut self,
        client: Option<&Client>,
        auth: &ClientAuth,
        form: &Fields,
    ) -> Answer {
        let malformed = || {
            aadsts(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                9002313,
                "Invalid request. Request is malformed or invalid.",
            )
        };
        if let Some((id, secret)) = client {
            if auth.id() != id {
                return aadsts(
                    StatusCode::BAD_REQUEST,
                    "unauthorized_client",
                    700016,
                    &format!(
                        "Application with identifier '{}' was not found in the directory 'common'.",
                        auth.id()
                    ),
                );
            }
            match auth.secret.as_deref() {
                None | Some("") => {
                    return aadsts(
                        StatusCode::UNAUTHORIZED,
                        "invalid_client",
                        7000218,
                        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                    );
                }
                Some(presented) if presented != secret => {
                    return aadsts(
                        StatusCode::UNAUTHORIZED,
                        "invalid_client",
                        7000215,
                        &format!(
                            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{id}'."
                        ),
                    );
                }
                Some(_) => {}
            }
        }
        match field(form, "grant_type") {
            "authorization_code" => {
                let code = match self.redeem(Provider::Microsoft, form, auth.id()) {
                    Ok(code) => code,
                    Err(Refused::Unknown | Refused::OtherClient) => return malformed(),
                    Err(Refused::Spent) => {
                        return aadsts(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            54005,
                            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
                        );
                    }
                    Err(Refused::Expired) => {
                        return aadsts(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            70008,
                            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
                        );
                    }
                    Err(Refused::RedirectMismatch) => {
                        return aadsts(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            500112,
                            "The reply address does not match the reply address provided when requesting Authorization code.",
                        );
                    }
                    Err(Refused::VerifierMissing | Refused::VerifierMismatch) => {
                        return aadsts(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            501481,
                            "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                        );
                    }
                };
                let grant = self.start_grant(&code);
                let mut body = self.microsoft_tokens(grant, code.refresh_due);
                if has_scope(&code.scope, "openid")
                    && let Identity::Microsoft(user) = &code.identity
                {
                    let now = unix_now();
                    body["id_token"] = unsigned_id_token(&json!({
                        "iss": "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
                        "aud": code.client_id, "oid": user.id, "name": user.display_name,
                        "preferred_username": user.user_principal_name, "iat": now, "exp": now + 3599,
                    }))
                    .into();
                }
                (StatusCode::OK, body)
            }
            "refresh_token" => {
                match self.refresh_grant(
                    Provider::Microsoft,
                    field(form, "refresh_token"),
                    auth.id(),
                    false,
                ) {
                    // A new refresh token each time, to replace the old one; the old one is not
                    // revoked (documented).
                    Ok(grant) => (StatusCode::OK, self.microsoft_tokens(grant, true)),
                    Err(TokenProblem::Revoked) => aadsts(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        50173,
                        "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.",
                    ),
                    Err(_) => malformed(),
                }
            }
            other => aadsts(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                &format!("The app requested an unsupported grant type '{other}'."),
            ),
        }
    }

    fn microsoft_tokens(&mut self, grant: usize, with_refresh: bool) -> Value {
        let access = self.issue_access(grant, "EwB", Provider::Microsoft.access_lifetime());
        let mut body = json!({"token_type": "Bearer", "scope": self.grants[grant].scope,
            "expires_in": 3599, "access_token": access});
        if with_refresh {
            body["refresh_token"] = self.issue_refresh(grant, "M.C5").into();
        }
        body
    }
}

/// A Microsoft identity platform refusal, in its documented shape.
fn aadsts(status: StatusCode, error: &str, code: u32, message: &str) -> Answer {
    let now = time::OffsetDateTime::now_utc();
    let timestamp = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let trace_id = uuid::Uuid::new_v4().to_string();
    let correlation_id = uuid::Uuid::new_v4().to_string();
    (
        status,
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {message}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}"),
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

/// A token endpoint of the flow: reads the client, answers, records the call.
fn token_endpoint(
    state: &Shared,
    provider: Provider,
    headers: &HeaderMap,
    form: &Fields,
    answer: TokenAnswer,
) -> Response {
    let mut guard = state.lock().expect("lock");
    let script = &mut *guard;
    let client = configured_client(script, provider);
    let auth = ClientAuth::of(headers, form);
    let answer = answer(&mut script.oauth, client.as_ref(), &auth, form);
    script
        .oauth
        .record_token_call(provider, form, auth.id.clone(), &answer);
    respond(answer)
}

pub(super) async fn google_token(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<Fields>,
) -> Response {
    token_endpoint(
        &state,
        Provider::Google,
        &headers,
        &form,
        OAuthState::google_token,
    )
}

pub(super) async fn microsoft_token(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<Fields>,
) -> Response {
    token_endpoint(
        &state,
        Provider::Microsoft,
        &headers,
        &form,
        OAuthState::microsoft_token,
    )
}

pub(super) async fn instagram_code_exchange(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<Fields>,
) -> Response {
    token_endpoint(
        &state,
        Provider::Instagram,
        &headers,
        &form,
        OAuthState::instagram_code_exchange,
    )
}

pub(super) async fn instagram_long_lived(
    State(state): State<Shared>,
    Query(query): Query<Fields>,
) -> Response {
    let mut guard = state.lock().expect("lock");
    let script = &mut *guard;
    let client = configured_client(script, Provider::Instagram);
    let answer = script.oauth.instagram_long_lived(client.as_ref(), &query);
    script
        .oauth
        .record_token_call(Provider::Instagram, &query, None, &answer);
    respond(answer)
}

/// X's code exchange on `POST /2/oauth2/token`, once X's client check passed; `client_id` is
/// the one the request named.
pub(crate) fn x_exchange_code(script: &mut Script, client_id: &str, form: &Fields) -> Answer {
    let refuse = |description: &str| {
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": description}),
        )
    };
    let code = match script.oauth.redeem(Provider::X, form, client_id) {
        Ok(code) => code,
        Err(Refused::RedirectMismatch) => {
            return refuse(
                "Value passed for the redirect uri did not match the uri of the authorization code.",
            );
        }
        Err(Refused::VerifierMissing | Refused::VerifierMismatch) => {
            return refuse("Value passed for the code verifier did not match the code challenge.");
        }
        Err(_) => return refuse("Value passed for the token was invalid."),
    };
    let grant = script.oauth.start_grant(&code);
    (StatusCode::OK, x_tokens_of(script, grant, code.refresh_due))
}

/// X's refresh of a code-flow grant: the refresh token is single-use and rotates.
pub(crate) fn x_refresh(script: &mut Script, client_id: &str, presented: &str) -> Answer {
    match script
        .oauth
        .refresh_grant(Provider::X, presented, client_id, true)
    {
        Ok(grant) => (StatusCode::OK, x_tokens_of(script, grant, true)),
        Err(_) => (
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "Value passed for the token was invalid."}),
        ),
    }
}

/// A new X pair for `grant`. While the test manages X's tokens
/// ([`FakeSocial::x_tokens`](crate::fake_social::FakeSocial::x_tokens)) the new pair becomes the
/// managed one, so the direct messages sent with it are accepted.
fn x_tokens_of(script: &mut Script, grant: usize, with_refresh: bool) -> Value {
    let access = script
        .oauth
        .issue_access(grant, "", Provider::X.access_lifetime());
    let mut body = json!({"token_type": "bearer", "expires_in": 7200, "access_token": access,
        "scope": script.oauth.grants[grant].scope});
    let refresh = with_refresh.then(|| script.oauth.issue_refresh(grant, ""));
    if let Some(refresh) = &refresh {
        body["refresh_token"] = refresh.clone().into();
    }
    if script.x_tokens.is_some() {
        // Without a refresh token nobody can refresh the managed pair: a value no one holds.
        script.x_tokens = Some((access, refresh.unwrap_or_else(random_part)));
    }
    body
}
