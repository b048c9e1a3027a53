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

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::Url;
use serde_json::{Value, json};

use crate::fake_social::{FakeSocial, Script, Shared};

/// A query or form, as name-value pairs.
type Params = Vec<(String, String)>;
/// A form or query read by name.
type Fields = HashMap<String, String>;
/// A JSON answer: status and body.
pub(crate) type Answer = (StatusCode, Value);
/// A configured OAuth client: id and secret.
type Client = (String, String);
/// What a token endpoint answers, given its configured client, the presented one and the form.
type TokenAnswer = fn(&mut OAuthState, Option<&Client>, &ClientAuth, &Fields) -> Answer;

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

/// Who signs in at X.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XUser {
    /// X's user id.
    pub id: String,
    /// The handle, without `@`.
    pub username: String,
    /// The display name.
    pub name: String,
}

impl Default for XUser {
    fn default() -> Self {
        Self {
            id: "2244994945".into(),
            username: "ada".into(),
            name: "Ada".into(),
        }
    }
}

/// Who signs in at Google.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleUser {
    /// The mailbox address.
    pub email: String,
}

impl Default for GoogleUser {
    fn default() -> Self {
        Self {
            email: "ada@example.com".into(),
        }
    }
}

/// Who signs in at Microsoft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MicrosoftUser {
    /// The object id (Graph's `id`).
    pub id: String,
    /// The mailbox address; Graph answers `null` for an account without one.
    pub mail: Option<String>,
    /// The sign-in name.
    pub user_principal_name: String,
    /// The display name.
    pub display_name: String,
}

impl Default for MicrosoftUser {
    fn default() -> Self {
        Self {
            id: "ms-ada-1".into(),
            mail: Some("ada@contoso.example".into()),
            user_principal_name: "ada@contoso.example".into(),
            display_name: "Ada".into(),
        }
    }
}

/// Who signs in at Instagram (a professional account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstagramUser {
    /// The professional account's id (`user_id` on `/me`, the one messages are sent as).
    pub user_id: String,
    /// The username.
    pub username: String,
}

impl Default for InstagramUser {
    fn default() -> Self {
        Self {
            user_id: "17841400000000001".into(),
            username: "ada.studio".into(),
        }
    }
}

impl InstagramUser {
    /// The app-scoped id Meta gives the same person (`id` on `/me`, `user_id` in the code
    /// exchange's answer). The stand-in's is `26` followed by the account's id: any value would
    /// do as long as the two differ, as Meta's do, so a service reading the wrong one is caught.
    pub fn app_scoped_id(&self) -> String {
        format!("26{}", self.user_id)
    }
}

/// Who signs in, at which provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// At X.
    X(XUser),
    /// At Google.
    Google(GoogleUser),
    /// At Microsoft.
    Microsoft(MicrosoftUser),
    /// At Instagram.
    Instagram(InstagramUser),
}

impl Identity {
    /// The provider this person signs in at.
    pub fn provider(&self) -> Provider {
        match self {
            Identity::X(_) => Provider::X,
            Identity::Google(_) => Provider::Google,
            Identity::Microsoft(_) => Provider::Microsoft,
            Identity::Instagram(_) => Provider::Instagram,
        }
    }

    /// Who signs in at `provider` until a test says otherwise.
    fn default_at(provider: Provider) -> Self {
        match provider {
            Provider::X => XUser::default().into(),
            Provider::Google => GoogleUser::default().into(),
            Provider::Microsoft => MicrosoftUser::default().into(),
            Provider::Instagram => InstagramUser::default().into(),
        }
    }
}

impl From<XUser> for Identity {
    fn from(user: XUser) -> Self {
        Identity::X(user)
    }
}

impl From<GoogleUser> for Identity {
    fn from(user: GoogleUser) -> Self {
        Identity::Google(user)
    }
}

impl From<MicrosoftUser> for Identity {
    fn from(user: MicrosoftUser) -> Self {
        Identity::Microsoft(user)
    }
}

impl From<InstagramUser> for Identity {
    fn from(user: InstagramUser) -> Self {
        Identity::Instagram(user)
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

    fn id(&self) -> &str {
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

/// BASE64URL(SHA-256(verifier)), RFC 7636 §4.2.
fn s256(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
fn is_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An `S256` challenge is a SHA-256 in base64url without padding: 43 characters.
fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// A JWT-shaped `id_token`: its claims are readable, its signature is no one's.
fn unsigned_id_token(claims: &Value) -> String {
    let head = URL_SAFE_NO_PAD
        .encode(json!({"alg": "RS256", "kid": "stand-in", "typ": "JWT"}).to_string());
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{head}.{body}.c3RhbmQtaW4")
}

/// The client configured at `provider`, if any (X's is the one [`FakeSocial::x_client`] set).
fn configured_client(script: &Script, provider: Provider) -> Option<Client> {
    if provider == Provider::X {
        script.x_client.clone()
    } else {
        script.oauth.clients.get(&provider).cloned()
    }
}

impl OAuthState {
    fn signer(&self, provider: Provider) -> Identity {
        self.signers
            .get(&provider)
            .cloned()
            .unwrap_or_else(|| Identity::default_at(provider))
    }

    /// Who a good access token of `provider` belongs to: one the code flow or a refresh issued,
    /// unexpired, of a grant not revoked. The mailbox endpoints ([`crate::fake_mailbox`]) answer
    /// for this identity's mailbox.
    pub(crate) fn token_identity(&self, provider: Provider, token: &str) -> Option<&Identity> {
        self.access_grant(provider, token)
            .ok()
            .map(|grant| &self.grants[grant].identity)
    }

    /// Everyone the stand-in knows at any provider: whoever was granted access, and whoever signs
    /// in next. An inbound message for an address finds its mailbox's provider here.
    pub(crate) fn known_identities(&self) -> Vec<Identity> {
        let mut identities: Vec<Identity> = self
            .grants
            .iter()
            .map(|grant| grant.identity.clone())
            .collect();
        identities.extend(
            Provider::ALL
                .into_iter()
                .map(|provider| self.signer(provider)),
        );
        identities
    }

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

    /// Takes a code for an exchange by `client_id`; the code is spent once it is found, whatever
    /// the rest of the request.
    fn redeem(
        &mut self,
        provider: Provider,
        form: &Fields,
        client_id: &str,
    ) -> Result<Code, Refused> {
        let code = self
            .codes
            .get_mut(field(form, "code"))
            .filter(|code| code.provider == provider)
            .ok_or(Refused::Unknown)?;
        if code.spent {
            return Err(Refused::Spent);
        }
        code.spent = true;
        if Instant::now() >= code.expires_at {
            return Err(Refused::Expired);
        }
        if code.client_id != client_id {
            return Err(Refused::OtherClient);
        }
        // Exactly the string of the authorize request (no normalising: providers compare strings).
        if field(form, "redirect_uri") != code.redirect_uri {
            return Err(Refused::RedirectMismatch);
        }
        if let Some(challenge) = &code.challenge {
            let verifier = field(form, "code_verifier");
            if verifier.is_empty() {
                return Err(Refused::VerifierMissing);
            }
            if !is_verifier(verifier) || s256(verifier) != *challenge {
                return Err(Refused::VerifierMismatch);
            }
        }
        Ok(code.clone())
    }

    fn start_grant(&mut self, code: &Code) -> usize {
        self.grants.push(Grant {
            provider: code.provider,
            client_id: code.client_id.clone(),
            identity: code.identity.clone(),
            scope: code.scope.clone(),
            revoked: false,
        });
        self.grants.len() - 1
    }

    fn issue_access(&mut self, grant: usize, prefix: &str, lifetime: Duration) -> String {
        let token = format!("{prefix}{}{}", random_part(), random_part());
        self.access_tokens.insert(
            token.clone(),
            IssuedToken {
                grant,
                expires_at: Instant::now() + lifetime,
            },
        );
        token
    }

    fn issue_refresh(&mut self, grant: usize, prefix: &str) -> String {
        let token = format!("{prefix}{}{}", random_part(), random_part());
        self.refresh_tokens.insert(token.clone(), grant);
        token
    }

    /// The grant behind an access token of `provider`.
    fn access_grant(&self, provider: Provider, token: &str) -> Result<usize, TokenProblem> {
        let issued = self
            .access_tokens
            .get(token)
            .filter(|issued| self.grants[issued.grant].provider == provider)
            .ok_or(TokenProblem::Unknown)?;
        if self.grants[issued.grant].revoked {
            return Err(TokenProblem::Revoked);
        }
        if Instant::now() >= issued.expires_at {
            return Err(TokenProblem::Expired);
        }
        Ok(issued.grant)
    }

    /// The grant behind a refresh token of `provider` presented by `client_id`; a single-use
    /// token (X's) is gone once it has worked.
    fn refresh_grant(
        &mut self,
        provider: Provider,
        token: &str,
        client_id: &str,
        single_use: bool,
    ) -> Result<usize, TokenProblem> {
        let grant = *self
            .refresh_tokens
            .get(token)
            .filter(|grant| self.grants[**grant].provider == provider)
            .ok_or(TokenProblem::Unknown)?;
        if self.grants[grant].revoked {
            return Err(TokenProblem::Revoked);
        }
        if self.grants[grant].client_id != client_id {
            return Err(TokenProblem::OtherClient);
        }
        if single_use {
            self.refresh_tokens.remove(token);
        }
        Ok(grant)
    }

    /// Whether `token` is a refresh token the code flow issued at `provider` (spent or not).
    pub(crate) fn knows_refresh_token(&self, provider: Provider, token: &str) -> bool {
        self.refresh_tokens
            .get(token)
            .is_some_and(|grant| self.grants[*grant].provider == provider)
    }

    /// The person took the app's access back at `provider`: every grant there is dead.
    pub(crate) fn revoke(&mut self, provider: Provider) {
        for grant in self.grants.iter_mut().filter(|g| g.provider == provider) {
            grant.revoked = true;
        }
    }

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

    /// Instagram's `POST /oauth/access_token`: the short-lived token.
    fn instagram_code_exchange(
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
    fn instagram_long_lived(&mut self, client: Option<&Client>, query: &Fields) -> Answer {
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

/// A Graph API (Instagram) refusal: 400 with an `OAuthException`.
fn graph_error(code: u32, subcode: Option<u32>, message: &str) -> Answer {
    let mut error = json!({"message": message, "type": "OAuthException", "code": code,
        "fbtrace_id": random_part()});
    if let Some(subcode) = subcode {
        error["error_subcode"] = subcode.into();
    }
    (StatusCode::BAD_REQUEST, json!({ "error": error }))
}

fn instagram_token_refusal(problem: TokenProblem) -> Answer {
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

fn respond(answer: Answer) -> Response {
    (answer.0, Json(answer.1)).into_response()
}

/// The sign-in routes, on the stand-in's router.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/i/oauth2/authorize", get(x_authorize))
        .route("/2/users/me", get(x_me))
        .route("/o/oauth2/v2/auth", get(google_authorize))
        .route("/token", post(google_token))
        .route("/gmail/v1/users/me/profile", get(gmail_profile))
        .route("/common/oauth2/v2.0/authorize", get(microsoft_authorize))
        .route("/common/oauth2/v2.0/token", post(microsoft_token))
        .route("/v1.0/me", get(graph_me))
        .route("/oauth/authorize", get(instagram_authorize))
        .route("/oauth/access_token", post(instagram_code_exchange))
        .route("/access_token", get(instagram_long_lived))
        .route("/me", get(instagram_me))
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

async fn x_authorize(State(state): State<Shared>, Query(query): Query<Params>) -> Response {
    authorize(&state, Provider::X, query)
}

async fn google_authorize(State(state): State<Shared>, Query(query): Query<Params>) -> Response {
    authorize(&state, Provider::Google, query)
}

async fn microsoft_authorize(State(state): State<Shared>, Query(query): Query<Params>) -> Response {
    authorize(&state, Provider::Microsoft, query)
}

async fn instagram_authorize(State(state): State<Shared>, Query(query): Query<Params>) -> Response {
    authorize(&state, Provider::Instagram, query)
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

async fn google_token(
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

async fn microsoft_token(
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

async fn instagram_code_exchange(
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

async fn instagram_long_lived(
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

/// A new X pair for `grant`. While the test manages X's tokens ([`FakeSocial::x_tokens`]) the
/// new pair becomes the managed one, so the direct messages sent with it are accepted.
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

/// X's `GET /2/users/me`.
async fn x_me(State(state): State<Shared>, headers: HeaderMap) -> Response {
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
async fn gmail_profile(
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
async fn graph_me(State(state): State<Shared>, headers: HeaderMap) -> Response {
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
async fn instagram_me(
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const REDIRECT: &str = "http://127.0.0.1:9/callback?from=test";

    pub(crate) fn client() -> reqwest::Client {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    /// Opens an authorize page and returns where it sends the browser.
    async fn consent(http: &reqwest::Client, url: &str, query: &[(&str, &str)]) -> Url {
        let response = http.get(url).query(query).send().await.expect("authorize");
        assert_eq!(
            response.status(),
            302,
            "{}",
            response.text().await.unwrap_or_default()
        );
        let location = response.headers()[header::LOCATION]
            .to_str()
            .expect("location");
        Url::parse(location).expect("a URL")
    }

    /// An authorize request's query with PKCE S256, as a client that follows the docs sends it.
    fn pkce_query<'a>(
        client_id: &'a str,
        scope: &'a str,
        challenge: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        vec![
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("scope", scope),
            ("state", "st"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ]
    }

    fn query_value(url: &Url, name: &str) -> Option<String> {
        url.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    async fn post_form(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let response = http.post(url).form(form).send().await.expect("token");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// An access token of `provider`'s code flow (Google or Microsoft) for whoever signs in there
    /// next: what the service holds for a connected mailbox.
    pub(crate) async fn mailbox_token(fake: &FakeSocial, provider: Provider) -> String {
        let (authorize, token, scope) = match provider {
            Provider::Google => (
                "/o/oauth2/v2/auth",
                "/token",
                "openid email https://www.googleapis.com/auth/gmail.send https://www.googleapis.com/auth/gmail.readonly",
            ),
            Provider::Microsoft => (
                "/common/oauth2/v2.0/authorize",
                "/common/oauth2/v2.0/token",
                "offline_access User.Read Mail.Send Mail.Read",
            ),
            other => panic!("{} has no mailbox", other.name()),
        };
        let http = client();
        let back = consent(
            &http,
            &format!("{}{authorize}", fake.base_url),
            &pkce_query("mail-client", scope, &s256(VERIFIER)),
        )
        .await;
        let code = query_value(&back, "code").expect("a code");
        let (status, answer) = post_form(
            &http,
            &format!("{}{token}", fake.base_url),
            &[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
                ("client_id", "mail-client"),
                ("client_secret", "mail-secret"),
            ],
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        answer["access_token"]
            .as_str()
            .expect("an access token")
            .to_owned()
    }

    #[test]
    fn the_pkce_check_is_rfc_7636s() {
        // RFC 7636, appendix B.
        assert_eq!(
            s256(VERIFIER),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(is_verifier(VERIFIER));
        assert!(!is_verifier("too-short"));
    }

    #[tokio::test]
    async fn fake_google_code_flow_with_pkce_gives_an_offline_grant() {
        let fake = FakeSocial::start().await;
        fake.oauth_client(Provider::Google, "g-client", "g-secret");
        fake.signs_in(GoogleUser {
            email: "grace@example.com".into(),
        });
        let http = client();
        let back = consent(
            &http,
            &format!("{}/o/oauth2/v2/auth", fake.base_url),
            &[
                ("response_type", "code"),
                ("client_id", "g-client"),
                ("redirect_uri", REDIRECT),
                (
                    "scope",
                    "openid email https://www.googleapis.com/auth/gmail.send",
                ),
                ("state", "s t/1"),
                ("code_challenge", &s256(VERIFIER)),
                ("code_challenge_method", "S256"),
                ("access_type", "offline"),
                ("prompt", "consent"),
            ],
        )
        .await;
        assert_eq!(back.path(), "/callback");
        assert_eq!(query_value(&back, "from").as_deref(), Some("test"));
        assert_eq!(query_value(&back, "state").as_deref(), Some("s t/1"));
        let code = query_value(&back, "code").expect("a code");
        assert!(code.starts_with("4/0A"), "{code}");

        let token_url = format!("{}/token", fake.base_url);
        let exchange = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", "g-client"),
            ("client_secret", "g-secret"),
        ];
        let (status, answer) = post_form(&http, &token_url, &exchange).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["token_type"], "Bearer");
        assert_eq!(answer["expires_in"], 3599);
        assert!(answer["id_token"].is_string());
        let access = answer["access_token"].as_str().expect("access token");
        let refresh = answer["refresh_token"].as_str().expect("a refresh token");

        let profile: Value = http
            .get(format!("{}/gmail/v1/users/me/profile", fake.base_url))
            .bearer_auth(access)
            .send()
            .await
            .expect("profile")
            .json()
            .await
            .expect("JSON");
        assert_eq!(profile["emailAddress"], "grace@example.com");

        // Google keeps the refresh token: the refresh answers none.
        let (status, refreshed) = post_form(
            &http,
            &token_url,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("client_id", "g-client"),
                ("client_secret", "g-secret"),
            ],
        )
        .await;
        assert_eq!(status, 200, "{refreshed}");
        assert!(refreshed.get("refresh_token").is_none(), "{refreshed}");

        fake.revoke_grant(Provider::Google);
        let refused = http
            .get(format!("{}/gmail/v1/users/me/profile", fake.base_url))
            .bearer_auth(access)
            .send()
            .await
            .expect("profile");
        assert_eq!(refused.status(), 401);
        let body: Value = refused.json().await.expect("JSON");
        assert_eq!(body["error"]["status"], "UNAUTHENTICATED");

        let requests = fake.authorize_requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].param("access_type"), Some("offline"));
        assert_eq!(requests[0].consent, Consent::Granted);
        let calls = fake.token_calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].grant_type, "authorization_code");
        assert_eq!(calls[0].client_id.as_deref(), Some("g-client"));
        assert!(calls[0].code_verifier_sent);
    }

    #[tokio::test]
    async fn fake_microsoft_refuses_a_reused_code() {
        let fake = FakeSocial::start().await;
        let http = client();
        let back = consent(
            &http,
            &format!("{}/common/oauth2/v2.0/authorize", fake.base_url),
            &pkce_query(
                "ms-client",
                "offline_access User.Read Mail.Send",
                &s256(VERIFIER),
            ),
        )
        .await;
        let code = query_value(&back, "code").expect("a code");
        let token_url = format!("{}/common/oauth2/v2.0/token", fake.base_url);
        let exchange = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", "ms-client"),
            ("client_secret", "anything"),
        ];
        let (status, first) = post_form(&http, &token_url, &exchange).await;
        assert_eq!(status, 200, "{first}");
        assert!(first["refresh_token"].is_string());
        let me: Value = http
            .get(format!("{}/v1.0/me", fake.base_url))
            .bearer_auth(first["access_token"].as_str().expect("token"))
            .send()
            .await
            .expect("me")
            .json()
            .await
            .expect("JSON");
        assert_eq!(me["id"], "ms-ada-1");
        assert_eq!(me["mail"], "ada@contoso.example");

        let (status, again) = post_form(&http, &token_url, &exchange).await;
        assert_eq!(status, 400);
        assert_eq!(again["error"], "invalid_grant");
        assert_eq!(again["error_codes"][0], 54005);
    }

    #[tokio::test]
    async fn fake_x_refuses_a_wrong_verifier_and_spends_the_code() {
        let fake = FakeSocial::start().await;
        fake.oauth_client(Provider::X, "x-client", "x-secret");
        let http = client();
        let back = consent(
            &http,
            &format!("{}/i/oauth2/authorize", fake.base_url),
            &pkce_query(
                "x-client",
                "tweet.read users.read dm.write offline.access",
                &s256(VERIFIER),
            ),
        )
        .await;
        let code = query_value(&back, "code").expect("a code");
        let token_url = format!("{}/2/oauth2/token", fake.base_url);
        let exchange = |verifier: &'static str| {
            let code = code.clone();
            let http = http.clone();
            let token_url = token_url.clone();
            async move {
                let response = http
                    .post(&token_url)
                    .basic_auth("x-client", Some("x-secret"))
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("code", code.as_str()),
                        ("redirect_uri", REDIRECT),
                        ("code_verifier", verifier),
                        ("client_id", "x-client"),
                    ])
                    .send()
                    .await
                    .expect("token");
                let status = response.status().as_u16();
                (status, response.json::<Value>().await.expect("JSON"))
            }
        };
        let (status, wrong) =
            exchange("a-verifier-that-is-long-enough-but-is-not-the-right-one").await;
        assert_eq!(status, 400);
        assert_eq!(wrong["error"], "invalid_request");
        assert_eq!(
            wrong["error_description"],
            "Value passed for the code verifier did not match the code challenge."
        );
        let (status, spent) = exchange(VERIFIER).await;
        assert_eq!(status, 400);
        assert_eq!(
            spent["error_description"],
            "Value passed for the token was invalid."
        );
        assert!(fake.refreshes().is_empty(), "a code exchange is no refresh");
    }

    #[tokio::test]
    async fn fake_x_code_flow_tokens_identify_and_rotate() {
        let fake = FakeSocial::start().await;
        fake.signs_in(XUser {
            id: "42".into(),
            username: "grace".into(),
            name: "Grace".into(),
        });
        let http = client();
        let back = consent(
            &http,
            &format!("{}/i/oauth2/authorize", fake.base_url),
            &pkce_query(
                "public-client",
                "users.read offline.access",
                &s256(VERIFIER),
            ),
        )
        .await;
        let code = query_value(&back, "code").expect("a code");
        let token_url = format!("{}/2/oauth2/token", fake.base_url);
        let (status, tokens) = post_form(
            &http,
            &token_url,
            &[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
                ("client_id", "public-client"),
            ],
        )
        .await;
        assert_eq!(status, 200, "{tokens}");
        let me: Value = http
            .get(format!("{}/2/users/me", fake.base_url))
            .bearer_auth(tokens["access_token"].as_str().expect("token"))
            .send()
            .await
            .expect("me")
            .json()
            .await
            .expect("JSON");
        assert_eq!(me["data"]["username"], "grace");

        let refresh = tokens["refresh_token"].as_str().expect("refresh token");
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", "public-client"),
        ];
        let (status, rotated) = post_form(&http, &token_url, &form).await;
        assert_eq!(status, 200, "{rotated}");
        assert_ne!(rotated["refresh_token"], tokens["refresh_token"]);
        let (status, reused) = post_form(&http, &token_url, &form).await;
        assert_eq!(status, 400);
        assert_eq!(reused["error"], "invalid_request");
        assert_eq!(fake.refreshes().len(), 2);
    }

    #[tokio::test]
    async fn fake_instagram_login_follows_business_login() {
        let fake = FakeSocial::start().await;
        fake.oauth_client(Provider::Instagram, "990602627938098", "ig-secret");
        fake.instagram_conversation("ada.l", "igsid-ada", 60);
        let http = client();
        let authorize = format!("{}/oauth/authorize", fake.base_url);
        let query = [
            ("client_id", "990602627938098"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            (
                "scope",
                "instagram_business_basic,instagram_business_manage_messages",
            ),
            ("state", "st"),
        ];
        fake.deny_next_consent(Provider::Instagram);
        let denied = consent(&http, &authorize, &query).await;
        assert_eq!(
            query_value(&denied, "error").as_deref(),
            Some("access_denied")
        );
        assert_eq!(
            query_value(&denied, "error_reason").as_deref(),
            Some("user_denied")
        );
        assert_eq!(query_value(&denied, "state").as_deref(), Some("st"));

        let back = consent(&http, &authorize, &query).await;
        assert_eq!(back.fragment(), Some("_"));
        let code = query_value(&back, "code").expect("a code");
        let exchange = [
            ("client_id", "990602627938098"),
            ("client_secret", "ig-secret"),
            ("grant_type", "authorization_code"),
            ("redirect_uri", REDIRECT),
            ("code", code.as_str()),
        ];
        let exchange_url = format!("{}/oauth/access_token", fake.base_url);
        let (status, short) = post_form(&http, &exchange_url, &exchange).await;
        assert_eq!(status, 200, "{short}");
        assert_eq!(short["data"][0]["user_id"], "2617841400000000001");
        assert_eq!(
            short["data"][0]["permissions"],
            "instagram_business_basic,instagram_business_manage_messages"
        );
        let (status, reused) = post_form(&http, &exchange_url, &exchange).await;
        assert_eq!(status, 400);
        assert_eq!(
            reused["error_message"],
            "Matching code was not found or was already used"
        );

        let long: Value = http
            .get(format!("{}/access_token", fake.base_url))
            .query(&[
                ("grant_type", "ig_exchange_token"),
                ("client_secret", "ig-secret"),
                (
                    "access_token",
                    short["data"][0]["access_token"].as_str().expect("token"),
                ),
            ])
            .send()
            .await
            .expect("long-lived")
            .json()
            .await
            .expect("JSON");
        assert_eq!(long["token_type"], "bearer");
        assert_eq!(long["expires_in"], 5_184_000);
        let long_lived = long["access_token"].as_str().expect("token");
        let me: Value = http
            .get(format!("{}/me", fake.base_url))
            .query(&[("fields", "user_id,username"), ("access_token", long_lived)])
            .send()
            .await
            .expect("me")
            .json()
            .await
            .expect("JSON");
        assert_eq!(me["user_id"], "17841400000000001");
        assert_eq!(me["username"], "ada.studio");
        assert_eq!(me["id"], "2617841400000000001");

        // The Graph API's own routes still answer next to the sign-in's.
        let conversations: Value = http
            .get(format!(
                "{}/{}/conversations?platform=instagram",
                fake.base_url,
                crate::fake_social::BUSINESS_IG_ID
            ))
            .send()
            .await
            .expect("conversations")
            .json()
            .await
            .expect("JSON");
        assert_eq!(
            conversations["data"][0]["participants"]["data"][1]["username"],
            "ada.l"
        );

        fake.revoke_grant(Provider::Instagram);
        let refused = http
            .get(format!("{}/me", fake.base_url))
            .query(&[("fields", "user_id,username")])
            .bearer_auth(long_lived)
            .send()
            .await
            .expect("me");
        assert_eq!(refused.status(), 400);
        let body: Value = refused.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], 190);
    }

    #[tokio::test]
    async fn fake_sign_in_refuses_unknown_clients_and_expired_codes() {
        let fake = FakeSocial::start().await;
        fake.oauth_client(Provider::Microsoft, "ms-client", "ms-secret");
        let http = client();
        let authorize = format!("{}/common/oauth2/v2.0/authorize", fake.base_url);
        let challenge = s256(VERIFIER);
        let mut query = pkce_query("someone-else", "User.Read", &challenge);
        let page = http
            .get(&authorize)
            .query(&query)
            .send()
            .await
            .expect("page");
        assert_eq!(page.status(), 400);
        assert!(page.headers().get(header::LOCATION).is_none());

        query[1] = ("client_id", "ms-client");
        query[6] = ("code_challenge_method", "plain");
        let back = consent(&http, &authorize, &query).await;
        assert_eq!(
            query_value(&back, "error").as_deref(),
            Some("invalid_request")
        );

        query[6] = ("code_challenge_method", "S256");
        let back = consent(&http, &authorize, &query).await;
        let code = query_value(&back, "code").expect("a code");
        fake.expire_codes();
        let (status, expired) = post_form(
            &http,
            &format!("{}/common/oauth2/v2.0/token", fake.base_url),
            &[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
                ("client_id", "ms-client"),
                ("client_secret", "ms-secret"),
            ],
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(expired["error_codes"][0], 70008);
        let consents: Vec<Consent> = fake
            .authorize_requests()
            .into_iter()
            .map(|request| request.consent)
            .collect();
        assert_eq!(
            consents,
            [
                Consent::ErrorPage("invalid_client"),
                Consent::ErrorRedirect("invalid_request"),
                Consent::Granted
            ]
        );
    }
}
