//! Cognito in the emulator for the identity tests: sign-ins (`pipewise_local::cognito`), and
//! further app clients and pools to prove their tokens are refused.

use aws_sdk_cognitoidentityprovider::Client;

use crate::TestApp;
pub use pipewise_local::cognito::{SignIn, emulator_signed};

/// The access token Cognito's code flow would give `client_id` of `pool_id` for `username` and
/// `scope`, or Cognito's refusal (`invalid_scope: ...` for a scope the client may not request):
/// see `pipewise_local::cognito::authorized_access_token`.
pub async fn authorized_access_token(
    app: &TestApp,
    pool_id: &str,
    client_id: &str,
    username: &str,
    scope: &str,
) -> Result<String, String> {
    pipewise_local::cognito::authorized_access_token(&app.sdk, pool_id, client_id, username, scope)
        .await
}

/// Signs `username` in through `client_id` of `pool_id`.
pub async fn sign_in(app: &TestApp, pool_id: &str, client_id: &str, username: &str) -> SignIn {
    pipewise_local::cognito::sign_in(&app.sdk, pool_id, client_id, username)
        .await
        .expect("sign in through the emulator's Cognito")
}

/// The emulator's pool signing key (PKCS#1 DER), read once per test process.
pub fn emulator_signing_key_der() -> Vec<u8> {
    static KEY: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        pipewise_local::cognito::emulator_signing_key_der().expect("moto's signing key")
    });
    KEY.clone()
}

/// Another app client of a pool.
pub async fn another_client(app: &TestApp, pool_id: &str) -> String {
    Client::new(&app.sdk)
        .create_user_pool_client()
        .user_pool_id(pool_id)
        .client_name("another-app")
        .send()
        .await
        .expect("create an app client")
        .user_pool_client
        .and_then(|client| client.client_id)
        .expect("a client id")
}

/// Another user pool with one app client: `(pool id, client id)`.
pub async fn another_pool(app: &TestApp) -> (String, String) {
    let pool = Client::new(&app.sdk)
        .create_user_pool()
        .pool_name("another-pool")
        .send()
        .await
        .expect("create a pool")
        .user_pool
        .and_then(|pool| pool.id)
        .expect("a pool id");
    let client = another_client(app, &pool).await;
    (pool, client)
}
