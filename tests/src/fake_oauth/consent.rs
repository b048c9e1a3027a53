//! The authorize pages: each provider's consent screen validates the request (client,
//! `redirect_uri`, `response_type`, PKCE) and consents, or refuses, at once, redirecting or
//! showing its own error page as that provider does.

use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use reqwest::Url;

use super::grants::is_s256_challenge;
use super::{
    AuthorizeRequest, Code, Consent, OAuthState, Params, Provider, configured_client, has_scope,
    random_part,
};
use crate::fake_social::Shared;

impl OAuthState {
    /// The authorize page: validates the request, then consents (or refuses) at once.
    fn consent(
        &mut self,
        provider: Provider,
        configured_client_id: Option<&str>,
        query: &Params,
    ) -> (Consent, Response) {
        let param = |name: &str| {
            query
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let client_id = param("client_id").unwrap_or_default();
        if client_id.is_empty() || configured_client_id.is_some_and(|id| id != client_id) {
            return (
                Consent::ErrorPage("invalid_client"),
                error_page(provider, "The OAuth client was not found."),
            );
        }
        // Never redirect to a URI that cannot be one (RFC 6749 §3.1.2: absolute, no fragment).
        let Some(redirect) = param("redirect_uri")
            .and_then(|uri| Url::parse(uri).ok())
            .filter(|url| url.fragment().is_none() && !url.cannot_be_a_base())
        else {
            return (
                Consent::ErrorPage("invalid_redirect_uri"),
                error_page(provider, "The redirect_uri is missing or invalid."),
            );
        };
        let state = param("state");
        let refuse = |error: &'static str, description: &str| {
            if provider.refuses_on_its_page() {
                (Consent::ErrorPage(error), error_page(provider, description))
            } else {
                (
                    Consent::ErrorRedirect(error),
                    redirect_to(
                        &redirect,
                        &[("error", error), ("error_description", description)],
                        state,
                        false,
                    ),
                )
            }
        };
        if param("response_type") != Some("code") {
            return refuse(
                "unsupported_response_type",
                "The response_type must be code.",
            );
        }
        let challenge = param("code_challenge");
        if provider.requires_pkce()
            && (param("code_challenge_method") != Some("S256")
                || !challenge.is_some_and(is_s256_challenge))
        {
            return refuse(
                "invalid_request",
                "A code_challenge with code_challenge_method=S256 is required.",
            );
        }
        if self.deny_next.remove(&provider) {
            return (
                Consent::Denied,
                redirect_to(&redirect, denial(provider), state, false),
            );
        }
        let scope = param("scope").unwrap_or_default().to_owned();
        let refresh_due = match provider {
            Provider::X => has_scope(&scope, "offline.access"),
            Provider::Google => {
                param("access_type") == Some("offline")
                    && param("prompt")
                        .is_some_and(|prompt| prompt.split(' ').any(|p| p == "consent"))
            }
            Provider::Microsoft => has_scope(&scope, "offline_access"),
            Provider::Instagram => false,
        };
        let code = format!(
            "{}{}{}",
            provider.code_prefix(),
            random_part(),
            random_part()
        );
        self.codes.insert(
            code.clone(),
            Code {
                provider,
                client_id: client_id.to_owned(),
                // Kept as sent: the exchange must present the same string.
                redirect_uri: param("redirect_uri").unwrap_or_default().to_owned(),
                challenge: challenge
                    .filter(|_| provider.requires_pkce())
                    .map(str::to_owned),
                identity: self.signer(provider),
                scope,
                refresh_due,
                expires_at: Instant::now() + provider.code_lifetime(),
                spent: false,
            },
        );
        (
            Consent::Granted,
            redirect_to(
                &redirect,
                &[("code", &code)],
                state,
                provider == Provider::Instagram,
            ),
        )
    }
}

/// The query a refusal at consent adds, as each provider documents it.
fn denial(provider: Provider) -> &'static [(&'static str, &'static str)] {
    match provider {
        Provider::X | Provider::Google => &[("error", "access_denied")],
        Provider::Microsoft => &[
            ("error", "access_denied"),
            ("error_description", "the user canceled the authentication"),
        ],
        Provider::Instagram => &[
            ("error", "access_denied"),
            ("error_reason", "user_denied"),
            ("error_description", "The user denied your request"),
        ],
    }
}

/// 302 to `redirect` with `pairs` and `state` added to its query (its own parameters kept);
/// Instagram's success adds `#_`.
fn redirect_to(
    redirect: &Url,
    pairs: &[(&str, &str)],
    state: Option<&str>,
    instagram_fragment: bool,
) -> Response {
    let mut url = redirect.clone();
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in pairs {
            query.append_pair(name, value);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
    }
    if instagram_fragment {
        url.set_fragment(Some("_"));
    }
    match HeaderValue::from_str(url.as_str()) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "The redirect_uri is invalid.").into_response(),
    }
}

/// The provider's own error page: 400, nothing the request sent is echoed.
fn error_page(provider: Provider, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(format!(
            "<!doctype html><title>Sign-in error</title><h1>{} sign-in (stand-in)</h1><p>{message}</p>",
            provider.name()
        )),
    )
        .into_response()
}

fn authorize(state: &Shared, provider: Provider, query: Params) -> Response {
    let mut guard = state.lock().expect("lock");
    let script = &mut *guard;
    let configured = configured_client(script, provider).map(|(id, _)| id);
    let (consent, response) = script
        .oauth
        .consent(provider, configured.as_deref(), &query);
    script.oauth.authorize_requests.push(AuthorizeRequest {
        provider,
        query,
        consent,
    });
    response
}

pub(super) async fn x_authorize(
    State(state): State<Shared>,
    Query(query): Query<Params>,
) -> Response {
    authorize(&state, Provider::X, query)
}

pub(super) async fn google_authorize(
    State(state): State<Shared>,
    Query(query): Query<Params>,
) -> Response {
    authorize(&state, Provider::Google, query)
}

pub(super) async fn microsoft_authorize(
    State(state): State<Shared>,
    Query(query): Query<Params>,
) -> Response {
    authorize(&state, Provider::Microsoft, query)
}

pub(super) async fn instagram_authorize(
    State(state): State<Shared>,
    Query(query): Query<Params>,
) -> Response {
    authorize(&state, Provider::Instagram, query)
}
