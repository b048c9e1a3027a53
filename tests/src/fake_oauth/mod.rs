//! The providers' hosted sign-in (OAuth 2.0 authorization-code flow), played by the platform
//! stand-in ([`FakeSocial`]) on the same base URL as the platforms' APIs: per provider an
//! authorize page that consents at once (302 back to the `redirect_uri` with a fresh code), a
//! token endpoint and an identity endpoint, each answering as its provider documents, failures
//! included. Tests choose who signs in, refuse the next consent, expire the codes, revoke a
//! grant, and read back every authorize request and token-endpoint call.
//!
//! What each endpoint follows, and where it is written (read through stored copies of the
//! pages; an answer marked *observed* comes from third-party reports, not the provider's docs):
//!
//! **All providers** (RFC 6749, <https://datatracker.ietf.org/doc/html/rfc6749>; RFC 7636,
//! <https://datatracker.ietf.org/doc/html/rfc7636>):
//! - a request with an unknown `client_id` or without a usable `redirect_uri` gets a 400 page and
//!   is never redirected (§4.1.2.1); `state` is echoed on every redirect;
//! - a code works once, for the client and `redirect_uri` it was issued to, and only with the
//!   verifier whose SHA-256 (base64url, no padding) is the `S256` challenge; a verifier is 43 to
//!   128 unreserved characters (RFC 7636 §4.1, §4.6);
//! - a code that reached the token endpoint is spent even when that exchange is refused: no
//!   provider documents this either way, the stand-in takes the stricter reading.
//!
//! **X** (<https://docs.x.com/fundamentals/authentication/oauth-2-0/user-access-token>,
//! <https://docs.x.com/fundamentals/authentication/oauth-2-0/authorization-code>):
//! - `GET /i/oauth2/authorize`: `response_type=code`, `client_id`, `redirect_uri`, `scope`,
//!   `state`, `code_challenge` (`S256` required here); a code lives **30 seconds**;
//! - `POST /2/oauth2/token` (`grant_type=authorization_code`, in `fake_social`): `code`,
//!   `redirect_uri`, `code_verifier`, `client_id`; a confidential client uses HTTP Basic (401
//!   `unauthorized_client` "Missing valid authorization header" otherwise); the answer
//!   `{token_type: "bearer", expires_in: 7200, access_token, scope, refresh_token}` carries a
//!   refresh token only with `offline.access`; refresh tokens are single-use and rotate;
//! - refusals are 400 `invalid_request` with X's descriptions: "Value passed for the token was
//!   invalid." for a spent, expired or unknown code or refresh token (observed:
//!   <https://github.com/plhery/node-twitter-api-v2/issues/496>); "Value passed for the redirect
//!   uri did not match the uri of the authorization code." and "Value passed for the code
//!   verifier did not match the code challenge." (observed in third-party code);
//! - `GET /2/users/me` (<https://docs.x.com/x-api/users/lookup/introduction>):
//!   `{"data": {id, name, username}}`; a refused token is 401
//!   `{"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}`;
//! - a refusal at consent: `error=access_denied` and `state` (RFC 6749; X documents no more).
//!
//! **Google** (<https://developers.google.com/identity/protocols/oauth2/web-server>,
//! <https://developers.google.com/identity/protocols/oauth2/native-app> for PKCE):
//! - `GET /o/oauth2/v2/auth`: a malformed request (no PKCE, another `response_type`) is shown
//!   on Google's own error page, not redirected; a refusal redirects with `error=access_denied`;
//! - `POST /token`: `code`, `client_id`, `client_secret` (or HTTP Basic), `redirect_uri`,
//!   `grant_type`, `code_verifier`; the answer `{access_token, expires_in: 3599, scope,
//!   token_type: "Bearer", id_token (with `openid`), refresh_token}`: a refresh token only when
//!   the authorize request had `access_type=offline` and `prompt=consent` (Google also gives one
//!   on a first offline consent; the stand-in treats every sign-in as a repeat one, so a flow
//!   that forgets `prompt=consent` gets none); `grant_type=refresh_token` answers without a new
//!   refresh token (Google keeps it);
//! - refusals: unknown client 401 `invalid_client` "The OAuth client was not found.", wrong
//!   secret 401 `invalid_client` "Unauthorized"
//!   (observed: <https://github.com/erebusnz/gapi-google-analytics-php-interface/issues/149>,
//!   <https://github.com/hrishikeshrt/google_drive_ocr/issues/8>); a spent or expired code 400
//!   `invalid_grant` "Bad Request" (observed: <https://github.com/googleapis/signet/issues/184>),
//!   an unknown one "Malformed auth code."; a wrong verifier `invalid_grant` "Invalid code
//!   verifier." (observed: <https://github.com/googleapis/google-api-java-client/issues/1479>);
//!   another `redirect_uri` 400 `redirect_uri_mismatch` "Bad Request" (observed:
//!   <https://github.com/morgoth/picasa/issues/39>); a revoked grant's refresh 400
//!   `invalid_grant` "Token has been expired or revoked." (observed:
//!   <https://github.com/dolfim/django-gmailapi-backend/issues/9>);
//! - a code's lifetime is not documented: 10 minutes here;
//! - `GET /gmail/v1/users/me/profile`
//!   (<https://developers.google.com/workspace/gmail/api/reference/rest/v1/users/getProfile>):
//!   `{emailAddress, messagesTotal, threadsTotal, historyId}` of the signed-in user's mailbox
//!   ([`crate::fake_mailbox`]: `historyId` is its current one, "The ID of the mailbox's current
//!   history record"), the token as a Bearer header or an `access_token` parameter; refused: 401 `{"error": {"code": 401, "message": ...,
//!   "errors": [...], "status": "UNAUTHENTICATED"}}` (observed:
//!   <https://github.com/googleapis/google-api-nodejs-client/issues/2665>).
//!
//! **Microsoft** (<https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow>,
//! AADSTS codes: <https://learn.microsoft.com/entra/identity-platform/reference-error-codes>):
//! - `GET /common/oauth2/v2.0/authorize`: a malformed request is redirected with `error`
//!   (`invalid_request`, `unsupported_response_type`) and `error_description`; a refusal with
//!   `error=access_denied&error_description=the user canceled the authentication`; a code lives
//!   "about 10 minutes";
//! - `POST /common/oauth2/v2.0/token`: `client_id`, `client_secret` (or HTTP Basic), `code`,
//!   `redirect_uri`, `grant_type`, `code_verifier`, `scope`; the answer `{token_type: "Bearer",
//!   scope, expires_in: 3599, access_token, refresh_token (with `offline_access`), id_token (with
//!   `openid`)}`; a refresh answers a new refresh token to replace the old one, and the old one
//!   is not revoked (as documented);
//! - refusals `{error, error_description: "AADSTSnnn: ...", error_codes, timestamp, trace_id,
//!   correlation_id, error_uri}`: a spent code 400 `invalid_grant` AADSTS54005
//!   (<https://learn.microsoft.com/entra/identity-platform/msal-authentication-flows>), an
//!   expired one AADSTS70008, another `redirect_uri` AADSTS500112, a wrong verifier
//!   AADSTS501481, a revoked grant's refresh AADSTS50173, a malformed code or token AADSTS9002313;
//!   a wrong secret 401 `invalid_client` AADSTS7000215 (none: AADSTS7000218); an unknown client
//!   400 `unauthorized_client` AADSTS700016 (status *observed*);
//! - `GET /v1.0/me` (<https://learn.microsoft.com/graph/api/user-get>): `{id, displayName, mail,
//!   userPrincipalName, ...}`; refused: 401 `{"error": {"code": "InvalidAuthenticationToken",
//!   "message", "innerError"}}` (observed:
//!   <https://github.com/microsoftgraph/msgraph-sample-reactspa/issues/54>). A real access token
//!   outlives the revocation of its grant until it expires; the stand-in refuses it at once.
//!
//! **Instagram**, API with Instagram Login
//! (<https://developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login/business-login>):
//! - `GET /oauth/authorize`: `client_id`, `redirect_uri`, `response_type=code`, `scope`, `state`
//!   (no PKCE); success redirects with `code` and `#_` appended ("not part of the code"); a code
//!   lives **1 hour** and works once; a refusal redirects with `error=access_denied`,
//!   `error_reason=user_denied`, `error_description=The user denied your request`;
//! - `POST /oauth/access_token` (form `client_id`, `client_secret`, `grant_type`,
//!   `redirect_uri`, `code`): `{"data": [{access_token, user_id, permissions}]}` (the Business
//!   Login page's shape; the older Basic Display reference showed it flat), `user_id` the
//!   app-scoped id; refused: 400 `{"error_type": "OAuthException", "code": 400,
//!   "error_message": "Matching code was not found or was already used"}` (documented); the
//!   messages for a wrong client or `redirect_uri` are *observed* ones;
//! - `GET /access_token?grant_type=ig_exchange_token&client_secret&access_token`: `{access_token,
//!   token_type: "bearer", expires_in: 5184000}` (60 days);
//! - `GET /me?fields=user_id,username`
//!   (<https://developers.facebook.com/docs/instagram-platform/reference/me>): the token as
//!   `access_token` (documented) or a Bearer header; `{user_id, username, id}`, `id` the
//!   app-scoped id; refused: 400 with an `OAuthException` of code 190
//!   (<https://developers.facebook.com/docs/graph-api/guides/error-handling>; the 400 status is
//!   observed), subcode 458 once the person removed the app, 463 for an expired token;
//! - `GET /refresh_access_token` (in `fake_social`) answers a revoked grant with the same 190.
//!
//! This file holds the public types, the state kept in the stand-in's script, the helpers every
//! endpoint shares, the routes and the tests' controls ([`FakeSocial::oauth_client`] and the
//! rest); the endpoints are in `consent` (authorize pages), `tokens` and `instagram_tokens`
//! (token endpoints), `identity_endpoints` (who-am-I), over the bookkeeping of `grants`; who signs
//! in is in `users`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::fake_social::{FakeSocial, Script, Shared};

mod consent;
mod grants;
mod identity_endpoints;
mod instagram_tokens;
#[cfg(test)]
pub(crate) mod tests;
mod tokens;
mod users;

pub(crate) use identity_endpoints::{gmail_unauthorized, graph_unauthorized};
pub(crate) use tokens::{ClientAuth, x_exchange_code, x_refresh};
pub use users::{GoogleUser, Identity, InstagramUser, MicrosoftUser, XUser};

/// A query or form, as name-value pairs.
type Params = Vec<(String, String)>;
/// A form or query read by name.
type Fields = HashMap<String, String>;
/// A JSON answer: status and body.
pub(crate) type Answer = (StatusCode, Value);
/// A configured OAuth client: id and secret.
type Client = (String, String);

/// A provider whose hosted sign-in the stand-in plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// X (Twitter), OAuth 2.0 with PKCE.
    X,
    /// Google (a Gmail mailbox).
    Google,
    /// Microsoft identity platform v2.0 and Microsoft Graph.
    Microsoft,
    /// Instagram API with Instagram Login.
    Instagram,
}

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 4] = [
        Provider::X,
        Provider::Google,
        Provider::Microsoft,
        Provider::Instagram,
    ];

    /// The name the service gives it: `x`, `google`, `microsoft` or `instagram`.
    pub fn name(self) -> &'static str {
        match self {
            Provider::X => "x",
            Provider::Google => "google",
            Provider::Microsoft => "microsoft",
            Provider::Instagram => "instagram",
        }
    }

    /// How long a code waits for its exchange: X 30 s and Instagram 1 hour as documented,
    /// Microsoft "about 10 minutes"; Google documents none (10 minutes here).
    fn code_lifetime(self) -> Duration {
        Duration::from_secs(match self {
            Provider::X => 30,
            Provider::Google | Provider::Microsoft => 600,
            Provider::Instagram => 3600,
        })
    }

    /// The access token's lifetime (Instagram's short-lived token).
    fn access_lifetime(self) -> Duration {
        Duration::from_secs(match self {
            Provider::X => 7200,
            Provider::Google | Provider::Microsoft => 3599,
            Provider::Instagram => 3600,
        })
    }

    /// Instagram takes no PKCE; the stand-in requires `S256` of the other three.
    fn requires_pkce(self) -> bool {
        self != Provider::Instagram
    }

    /// A malformed authorize request is shown on the provider's own page (Google documents
    /// its error pages; Meta shows one too) rather than redirected (X, Microsoft).
    fn refuses_on_its_page(self) -> bool {
        matches!(self, Provider::Google | Provider::Instagram)
    }

    /// The beginning of the provider's codes: Google's contain a `/`, so a client that does not
    /// encode the code in its exchange fails here as it would there.
    fn code_prefix(self) -> &'static str {
        match self {
            Provider::X => "",
            Provider::Google => "4/0A",
            Provider::Microsoft => "1.A",
            Provider::Instagram => "AQ",
        }
    }
}

/// What an authorize page did with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consent {
    /// The person consented: 302 to the `redirect_uri` with a fresh code.
    Granted,
    /// The person refused ([`FakeSocial::deny_next_consent`]): 302 with `error=access_denied`.
    Denied,
    /// A malformed request sent back to the client: 302 with this `error`.
    ErrorRedirect(&'static str),
    /// A request the provider refuses on its own page (400, no redirect): what was wrong.
    ErrorPage(&'static str),
}

/// A request an authorize page received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeRequest {
    /// Whose page.
    pub provider: Provider,
    /// Its query parameters, in order.
    pub query: Vec<(String, String)>,
    /// What the page did.
    pub consent: Consent,
}

impl AuthorizeRequest {
    /// A query parameter's value (the first, when repeated).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A call a token endpoint received (never its tokens or codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCall {
    /// Whose endpoint.
    pub provider: Provider,
    /// `authorization_code`, `refresh_token`, `ig_exchange_token`, `ig_refresh_token`, ...
    pub grant_type: String,
    /// The client it named (HTTP Basic's user, or the `client_id` field).
    pub client_id: Option<String>,
    /// Whether a `code_verifier` came with it.
    pub code_verifier_sent: bool,
    /// The answer's status.
    pub status: u16,
    /// The refusal's error code (`invalid_grant`, Graph's `190`, ...), when refused.
    pub error: Option<String>,
}

/// A code waiting for its exchange.
#[derive(Debug, Clone)]
struct Code {
    provider: Provider,
    client_id: String,
    redirect_uri: String,
    challenge: Option<String>,
    identity: Identity,
    scope: String,
    refresh_due: bool,
    expires_at: Instant,
    spent: bool,
}

/// What a person granted a client: the tokens issued for it die with it.
#[derive(Debug, Clone)]
struct Grant {
    provider: Provider,
    client_id: String,
    identity: Identity,
    scope: String,
    revoked: bool,
}

/// An access token and the grant it belongs to.
#[derive(Debug, Clone)]
struct IssuedToken {
    grant: usize,
    expires_at: Instant,
}

/// Why a code was not exchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Unknown,
    Spent,
    Expired,
    OtherClient,
    RedirectMismatch,
    VerifierMissing,
    VerifierMismatch,
}

/// Why a token (access or refresh) was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenProblem {
    Unknown,
    Expired,
    Revoked,
    OtherClient,
}

/// The sign-in side of the stand-in, kept in its one script.
#[derive(Default)]
pub(crate) struct OAuthState {
    /// Google's, Microsoft's and Instagram's clients (X's is `Script::x_client`).
    clients: HashMap<Provider, Client>,
    signers: HashMap<Provider, Identity>,
    deny_next: HashSet<Provider>,
    codes: HashMap<String, Code>,
    grants: Vec<Grant>,
    access_tokens: HashMap<String, IssuedToken>,
    refresh_tokens: HashMap<String, usize>,
    authorize_requests: Vec<AuthorizeRequest>,
    token_calls: Vec<TokenCall>,
}

/// The Bearer token of a request ("" without one).
pub(crate) fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default()
}

fn field<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields.get(name).map(String::as_str).unwrap_or_default()
}

fn random_part() -> String {
    URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn has_scope(scope: &str, wanted: &str) -> bool {
    scope
        .split([' ', ','])
        .any(|item| item.eq_ignore_ascii_case(wanted))
}

/// The client configured at `provider`, if any (X's is the one [`FakeSocial::x_client`] set).
fn configured_client(script: &Script, provider: Provider) -> Option<Client> {
    if provider == Provider::X {
        script.x_client.clone()
    } else {
        script.oauth.clients.get(&provider).cloned()
    }
}

fn respond(answer: Answer) -> Response {
    (answer.0, Json(answer.1)).into_response()
}

/// The sign-in routes, on the stand-in's router.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/i/oauth2/authorize", get(consent::x_authorize))
        .route("/2/users/me", get(identity_endpoints::x_me))
        .route("/o/oauth2/v2/auth", get(consent::google_authorize))
        .route("/token", post(tokens::google_token))
        .route(
            "/gmail/v1/users/me/profile",
            get(identity_endpoints::gmail_profile),
        )
        .route(
            "/common/oauth2/v2.0/authorize",
            get(consent::microsoft_authorize),
        )
        .route("/common/oauth2/v2.0/token", post(tokens::microsoft_token))
        .route("/v1.0/me", get(identity_endpoints::graph_me))
        .route("/oauth/authorize", get(consent::instagram_authorize))
        .route("/oauth/access_token", post(tokens::instagram_code_exchange))
        .route("/access_token", get(tokens::instagram_long_lived))
        .route("/me", get(identity_endpoints::instagram_me))
}

impl FakeSocial {
    /// From now on `provider` knows only this OAuth client: its authorize page refuses any other
    /// `client_id` (a 400 page) and its token endpoint any other credentials, in the provider's
    /// own words. For X this is [`FakeSocial::x_client`]. Without it, any client is accepted.
    pub fn oauth_client(&self, provider: Provider, client_id: &str, client_secret: &str) {
        let mut script = self.state.lock().expect("lock");
        let client = (client_id.to_owned(), client_secret.to_owned());
        if provider == Provider::X {
            script.x_client = Some(client);
        } else {
            script.oauth.clients.insert(provider, client);
        }
    }

    /// From the next consent on, this person signs in at their provider (a code already issued
    /// keeps the person it was issued for). Until then: X `ada` (id 2244994945), Google
    /// `ada@example.com`, Microsoft `ms-ada-1` (`ada@contoso.example`), Instagram `ada.studio`
    /// (17841400000000001).
    pub fn signs_in(&self, identity: impl Into<Identity>) {
        let identity = identity.into();
        self.state
            .lock()
            .expect("lock")
            .oauth
            .signers
            .insert(identity.provider(), identity);
    }

    /// The next consent at `provider` is refused: its authorize page redirects with
    /// `error=access_denied` (and the provider's other error parameters) instead of a code.
    pub fn deny_next_consent(&self, provider: Provider) {
        self.state
            .lock()
            .expect("lock")
            .oauth
            .deny_next
            .insert(provider);
    }

    /// Every code issued so far, at every provider, has expired: its exchange is refused as its
    /// provider refuses an expired code.
    pub fn expire_codes(&self) {
        let now = Instant::now();
        for code in self.state.lock().expect("lock").oauth.codes.values_mut() {
            code.expires_at = now;
        }
    }

    /// The person took the app's access back at `provider`: every token issued there is refused
    /// by its identity endpoint, and every refresh gets the provider's dead-grant answer. For X
    /// this is also [`FakeSocial::revoke_x_grant`]. A new consent makes a new, working grant.
    pub fn revoke_grant(&self, provider: Provider) {
        let mut script = self.state.lock().expect("lock");
        if provider == Provider::X {
            script.x_grant_revoked = true;
        }
        script.oauth.revoke(provider);
    }

    /// Every request the authorize pages received, in order, with what they did.
    pub fn authorize_requests(&self) -> Vec<AuthorizeRequest> {
        self.state
            .lock()
            .expect("lock")
            .oauth
            .authorize_requests
            .clone()
    }

    /// Every call the sign-in token endpoints received (code exchanges, refreshes, Instagram's
    /// long-lived exchange and refresh), in order.
    pub fn token_calls(&self) -> Vec<TokenCall> {
        self.state.lock().expect("lock").oauth.token_calls.clone()
    }

    /// The service's variables that point every platform and sign-in at the stand-in.
    pub fn oauth_environment(&self) -> Vec<(&'static str, String)> {
        let base = &self.base_url;
        vec![
            ("X_API_BASE_URL", base.clone()),
            ("X_AUTHORIZE_URL", format!("{base}/i/oauth2/authorize")),
            ("GOOGLE_AUTHORIZE_URL", format!("{base}/o/oauth2/v2/auth")),
            ("GOOGLE_TOKEN_URL", format!("{base}/token")),
            ("GMAIL_API_BASE_URL", base.clone()),
            (
                "MICROSOFT_LOGIN_BASE_URL",
                format!("{base}/common/oauth2/v2.0"),
            ),
            ("MICROSOFT_GRAPH_BASE_URL", base.clone()),
            ("INSTAGRAM_AUTHORIZE_URL", format!("{base}/oauth/authorize")),
            ("INSTAGRAM_OAUTH_BASE_URL", base.clone()),
            ("INSTAGRAM_API_BASE_URL", base.clone()),
        ]
    }
}
