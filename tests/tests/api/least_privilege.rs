//! Least privilege of the template's Cognito app clients, in the emulator's pool created from
//! template.yaml: the browser frontend's client cannot obtain the secrets scope, the agents'
//! client can, and the functions accept both clients' tokens.
//!
//! The emulator has no OAuth token endpoint (Cognito grants resource-server scopes only there),
//! so `authorized_access_token` stands in for it: it applies Cognito's rule (a scope outside the
//! client's `AllowedOAuthScopes` is `invalid_scope`) to the client as the emulator holds it.

use aws_sdk_cognitoidentityprovider::Client;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pipewise::config::vars;
use pipewise_tests::TestApp;
use pipewise_tests::cognito::{authorized_access_token, sign_in};
use reqwest::Method;
use serde_json::{Value, json};

const ACCOUNTS: &str = "/api/user/integrations/accounts";
const SECRET: &str = "k-least-privilege-7f3a9c";

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

#[tokio::test]
async fn only_the_agents_app_client_obtains_the_secrets_scope() {
    let app = TestApp::spawn_cognito().await;
    let pool = app.resource("UserPool").to_owned();
    let frontend = app.resource("UserPoolClient").to_owned();
    let agents = app.resource("AgentsUserPoolClient").to_owned();
    let scope = app.environment[vars::SECRETS_SCOPE].clone();
    assert_eq!(scope, "pipewise-user-api/secrets.read");
    // The functions (and, from the same template values, the gateway) accept both clients.
    assert_eq!(
        app.environment[vars::JWT_AUDIENCE]
            .split(',')
            .collect::<Vec<_>>(),
        [frontend.as_str(), agents.as_str()]
    );

    // The clients as the emulator holds them: only the agents' may request the scope, and it is
    // a confidential client.
    let cognito = Client::new(&app.sdk);
    let describe = |client: String| {
        let (cognito, pool) = (cognito.clone(), pool.clone());
        async move {
            cognito
                .describe_user_pool_client()
                .user_pool_id(pool)
                .client_id(client)
                .send()
                .await
                .expect("describe the app client")
                .user_pool_client
                .expect("an app client")
        }
    };
    let frontend_client = describe(frontend.clone()).await;
    let agents_client = describe(agents.clone()).await;
    assert!(
        !frontend_client.allowed_o_auth_scopes().contains(&scope),
        "{:?}",
        frontend_client.allowed_o_auth_scopes()
    );
    assert!(frontend_client.client_secret().is_none(), "a public client");
    assert!(
        agents_client.allowed_o_auth_scopes().contains(&scope),
        "{:?}",
        agents_client.allowed_o_auth_scopes()
    );
    assert!(
        agents_client.client_secret().is_some(),
        "a confidential client"
    );

    // Alice signs in through the frontend and stores a secret.
    let alice = sign_in(&app, &pool, &frontend, "alice").await;
    app.send(
        app.request(Method::POST, ACCOUNTS)
            .bearer_auth(&alice.access_token)
            .json(&json!({"account_id": "crm", "account_type": "crm", "configuration": {"api_key": SECRET}})),
    )
    .await
    .assert_status(201);
    let secrets = format!("{ACCOUNTS}/crm/secrets");
    app.send(
        app.request(Method::GET, &secrets)
            .bearer_auth(&alice.access_token),
    )
    .await
    .assert_error(403, "insufficient_scope");

    // The frontend asking for the secrets scope is refused, as Cognito refuses it.
    let refused = authorized_access_token(&app, &pool, &frontend, "alice", &scope)
        .await
        .expect_err("the frontend's client may not obtain the secrets scope");
    assert!(refused.starts_with("invalid_scope"), "{refused}");

    // The agents' client obtains it for alice, and its token reads alice's secrets.
    let agent = authorized_access_token(&app, &pool, &agents, "alice", &scope)
        .await
        .expect("the agents' client may obtain the secrets scope");
    let granted = claims(&agent);
    assert_eq!(granted["client_id"], agents.as_str());
    assert_eq!(granted["sub"], claims(&alice.access_token)["sub"]);
    assert!(
        granted["scope"]
            .as_str()
            .unwrap_or_default()
            .split(' ')
            .any(|s| s == scope),
        "{granted}"
    );
    let revealed = app
        .send(app.request(Method::GET, &secrets).bearer_auth(&agent))
        .await;
    revealed.assert_status(200);
    assert_eq!(revealed.body["configuration"]["api_key"], SECRET);
    // The agents' client's token is an ordinary user token elsewhere too.
    app.send(app.request(Method::GET, ACCOUNTS).bearer_auth(&agent))
        .await
        .assert_status(200);
}
