//! Instagram's token answers (API with Instagram Login): the code exchange for a short-lived
//! token, the long-lived exchange, the hooks of `fake_social`'s `ig_refresh_token`, and the
//! Graph API's `OAuthException` refusals of a token.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;

use super::{
    Answer, Client, ClientAuth, Fields, Identity, IssuedToken, OAuthState, Provider, Refused,
    TokenProblem, field, random_part,
};

impl OAuthState {
    /// Instagram's `POST /oauth/access_token`: the short-lived token.
    pub(super) fn instagram_code_exchange(
        &mut self,
        client: Option<&Client>,
        auth: &ClientAuth,
        form: &Fields,
    ) -> Answer {
        let refuse = |message: &str| {
            (
                StatusCode::BAD_REQUEST,
                json!({"error_type": "OAuthException", "code": 400, "error_message": message}),
            )
        };
        if let Some((id, secret)) = client {
            if auth.id() != id {
                return refuse("Invalid platform app");
            }
            if auth.secret.as_deref() != Some(secret.as_str()) {
                return refuse("Error validating client secret.");
            }
        }
        if field(form, "grant_type") != "authorization_code" {
            return refuse("Invalid grant_type");
        }
        let code = match self.redeem(Provider::Instagram, form, auth.id()) {
            Ok(code) => code,
            Err(Refused::RedirectMismatch) => {
                return refuse(
                    "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request",
                );
            }
            Err(_) => return refuse("Matching code was not found or was already used"),
        };
        let grant = self.start_grant(&code);
        let access = self.issue_access(grant, "IGAA", Provider::Instagram.access_lifetime());
        let app_scoped = match &code.identity {
            Identity::Instagram(user) => user.app_scoped_id(),
            _ => String::new(),
        };
        let permissions: Vec<&str> = code
            .scope
            .split([' ', ','])
            .filter(|item| !item.is_empty())
            .collect();
        (
            StatusCode::OK,
            json!({"data": [{"access_token": access, "user_id": app_scoped,
                "permissions": permissions.join(",")}]}),
        )
    }

    /// Instagram's `GET /access_token?grant_type=ig_exchange_token`: the long-lived token.
    pub(super) fn instagram_long_lived(
        &mut self,
        client: Option<&Client>,
        query: &Fields,
    ) -> Answer {
        if field(query, "grant_type") != "ig_exchange_token" {
            return graph_error(100, None, "Unsupported grant_type");
        }
        if let Some((_, secret)) = client
            && field(query, "client_secret") != secret
        {
            return graph_error(101, None, "Error validating client secret.");
        }
        match self.access_grant(Provider::Instagram, field(query, "access_token")) {
            Ok(grant) => {
                let access = self.issue_access(grant, "IGAA", Duration::from_secs(5_184_000));
                (
                    StatusCode::OK,
                    json!({"access_token": access, "token_type": "bearer", "expires_in": 5_184_000}),
                )
            }
            Err(problem) => instagram_token_refusal(problem),
        }
    }

    /// `ig_refresh_token`'s answer for a token of a revoked (or expired) code-flow grant;
    /// `None` lets the refresh go on (tokens the stand-in did not issue keep working, as before).
    pub(crate) fn instagram_refresh_refusal(&self, token: &str) -> Option<Answer> {
        match self.access_grant(Provider::Instagram, token) {
            Err(problem @ (TokenProblem::Revoked | TokenProblem::Expired)) => {
                Some(instagram_token_refusal(problem))
            }
            _ => None,
        }
    }

    /// A refreshed Instagram token belongs to the grant of the token it replaces, for 60 days.
    pub(crate) fn instagram_refreshed(&mut self, presented: &str, refreshed: &str) {
        if let Ok(grant) = self.access_grant(Provider::Instagram, presented) {
            self.access_tokens.insert(
                refreshed.to_owned(),
                IssuedToken {
                    grant,
                    expires_at: Instant::now() + Duration::from_secs(5_184_000),
                },
            );
        }
    }
}

/// A Graph API (Instagram) refusal: 400 with an `OAuthException`.
fn graph_error(code: u32, subcode: Option<u32>, message: &str) -> Answer {
    let mut error = json!({"message": message, "type": "OAuthException", "code": code,
        "fbtrace_id": random_part()});
    if let Some(subcode) = subcode {
        error["error_subcode"] = subcode.into();
    }
    (StatusCode::BAD_REQUEST, json!({ "error": error }))
}

pub(super) fn instagram_token_refusal(problem: TokenProblem) -> Answer {
    match problem {
        TokenProblem::Revoked => graph_error(
            190,
            Some(458),
            "Error validating access token: The user has not authorized application.",
        ),
        TokenProblem::Expired => graph_error(
            190,
            Some(463),
            "Error validating access token: Session has expired.",
        ),
        TokenProblem::Unknown | TokenProblem::OtherClient => graph_error(
            190,
            None,
            "Invalid OAuth access token - Cannot parse access token",
        ),
    }
}
