//! End-to-end checks of the sign-in stand-in: each provider's flow driven over HTTP as a client
//! following its docs would (consent, exchange, identity, refresh, revocation), and the helpers
//! other stand-ins' tests use to get a signed-in mailbox token.

use axum::http::header;
use reqwest::Url;
use serde_json::Value;

use super::grants::s256;
use super::{Consent, GoogleUser, Provider, XUser};
use crate::fake_social::FakeSocial;

pub(super) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
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
    let (status, wrong) = exchange("a-verifier-that-is-long-enough-but-is-not-the-right-one").await;
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
