//! The connect flow as a browser plays it, for the tests: an app whose providers are the
//! platform stand-in, a session started, the consent page followed, and the callback answered.
//! Shared by the connect tests and every test that needs an account connected at a provider.

use serde_json::{Value, json};

use crate::fake_oauth::Provider;
use crate::fake_social::FakeSocial;
use crate::{TestApp, TestResponse, plaintext_audit};

/// `POST` here starts a connect session.
pub const SESSIONS: &str = "/api/user/integrations/connect-sessions";
/// The public callback.
pub const CALLBACK: &str = "/api/user/integrations/oauth/callback";
/// An allowed frontend URL (the dev CORS origin).
pub const RETURN_URL: &str = "http://localhost:3000/settings/integrations";

/// An app whose providers (sign-in, token, identity, mailbox and messaging endpoints) are a
/// fresh stand-in, which knows the template's OAuth clients (`set-me` / `set-me`).
pub async fn app_with_providers() -> (TestApp, FakeSocial) {
    let fake = FakeSocial::start().await;
    let variables = fake.oauth_environment();
    let app = TestApp::spawn_with(|environment| {
        for (name, value) in variables {
            environment.insert(name.to_owned(), value);
        }
    })
    .await;
    for provider in Provider::ALL {
        fake.oauth_client(provider, "set-me", "set-me");
    }
    (app, fake)
}

/// A client that shows redirects instead of following them, as the tests read each hop.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A redirect's `Location`.
pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .expect("a Location")
        .to_owned()
}

/// A query parameter of an absolute URL.
pub fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .expect("absolute URL")
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// `user`'s connect session with this body.
pub async fn start(app: &TestApp, user: &str, body: Value) -> TestResponse {
    app.post(SESSIONS, user, &body).await
}

/// Alice's session for `provider`, returning to the frontend's settings page.
pub async fn start_at(app: &TestApp, provider: &str) -> TestResponse {
    start(
        app,
        "alice",
        json!({"provider": provider, "return_url": RETURN_URL}),
    )
    .await
}

/// The consent page's answer: where the provider sends the browser (the callback, with a code
/// or an error).
pub async fn consent(authorize_url: &str) -> String {
    let response = browser()
        .get(authorize_url)
        .send()
        .await
        .expect("the consent page");
    assert_eq!(response.status().as_u16(), 302, "the provider redirects");
    location(&response)
}

/// The callback at the app, with the query the provider put on the redirect (the configured
/// public base URL is not this test server's, so only path and query are kept).
pub async fn callback_with(app: &TestApp, redirect: &str) -> reqwest::Response {
    let url = url::Url::parse(redirect).expect("redirect URL");
    assert_eq!(
        url.path(),
        CALLBACK,
        "the provider sends the browser to the callback"
    );
    let query = url.query().unwrap_or_default();
    let response = browser()
        .get(format!("{}{CALLBACK}?{query}", app.address))
        .send()
        .await
        .expect("the callback");
    if let Some(location) = response.headers().get(reqwest::header::LOCATION) {
        plaintext_audit::record_response(CALLBACK, location.to_str().unwrap_or_default());
    }
    response
}

/// The whole browser round trip for a new session; the callback's answer.
pub async fn connect(app: &TestApp, user: &str, body: Value) -> reqwest::Response {
    let session = start(app, user, body).await;
    session.assert_status(201);
    let redirect = consent(session.body["authorize_url"].as_str().expect("url")).await;
    callback_with(app, &redirect).await
}

/// Connects `user`'s account at `provider` (as whoever the stand-in signs in next); its id.
pub async fn connected(app: &TestApp, user: &str, provider: Provider) -> String {
    let answer = connect(
        app,
        user,
        json!({"provider": provider.name(), "return_url": RETURN_URL}),
    )
    .await;
    let back = location(&answer);
    assert_eq!(
        param(&back, "connect").as_deref(),
        Some("success"),
        "{back}"
    );
    param(&back, "account_id").expect("the account id")
}

/// The decrypted configuration of `user`'s account (the scope-gated reveal); its tokens join
/// the plaintext audit's canaries.
pub async fn revealed(app: &TestApp, user: &str, account_id: &str) -> Value {
    let secrets = app.reveal_secrets(user, account_id).await;
    secrets.assert_status(200);
    let configuration = secrets.body["configuration"].clone();
    for name in ["access_token", "refresh_token"] {
        if let Some(token) = configuration[name].as_str() {
            plaintext_audit::record_secret(token);
        }
    }
    configuration
}
