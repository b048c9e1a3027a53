//! Real Cognito sign-ins against the emulator's user pools (`make token` in Cognito mode, the
//! identity tests), and the pool's own signing key for the token shapes the emulator cannot
//! issue (a resource-server scope, which Cognito grants only through its hosted UI and token
//! endpoint; an expired token). [`authorized_access_token`] stands in for that endpoint and
//! applies its rule to the app client as the emulator holds it: a scope the client is not
//! allowed is refused (`invalid_scope`).

use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::types::{AuthFlowType, MessageActionType};

use aws_config::SdkConfig;

const PASSWORD: &str = "Correct-horse-battery-staple-1";

/// Tokens of one sign-in.
pub struct SignIn {
    /// The access token (`token_use: access`, `client_id`).
    pub access_token: String,
    /// The ID token (`token_use: id`, `aud`).
    pub id_token: String,
}

/// Creates `username` in `pool_id` if needed and signs in through `client_id`
/// (`AdminInitiateAuth`, `ADMIN_USER_PASSWORD_AUTH`).
pub async fn sign_in(
    sdk: &SdkConfig,
    pool_id: &str,
    client_id: &str,
    username: &str,
) -> Result<SignIn, String> {
    let cognito = Client::new(sdk);
    let _ = cognito
        .admin_create_user()
        .user_pool_id(pool_id)
        .username(username)
        .message_action(MessageActionType::Suppress)
        .send()
        .await;
    cognito
        .admin_set_user_password()
        .user_pool_id(pool_id)
        .username(username)
        .password(PASSWORD)
        .permanent(true)
        .send()
        .await
        .map_err(|error| format!("set the user's password: {error}"))?;
    let auth = cognito
        .admin_initiate_auth()
        .user_pool_id(pool_id)
        .client_id(client_id)
        .auth_flow(AuthFlowType::AdminUserPasswordAuth)
        .auth_parameters("USERNAME", username)
        .auth_parameters("PASSWORD", PASSWORD)
        .send()
        .await
        .map_err(|error| format!("sign in through Cognito: {error}"))?
        .authentication_result
        .ok_or("Cognito returned no authentication result")?;
    Ok(SignIn {
        access_token: auth.access_token.ok_or("no access token")?,
        id_token: auth.id_token.ok_or("no ID token")?,
    })
}

/// The private key the emulator signs every pool's tokens with (kid `dummy`), as PKCS#1 DER,
/// read from the installed moto package by `tools/emulator-signing-key.py`.
pub fn emulator_signing_key_der() -> Result<Vec<u8>, String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tools/emulator-signing-key.py"))
        .output()
        .map_err(|error| format!("run the venv's python (make tools installs it): {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "read moto's signing key: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(output.stdout)
}

/// A token signed with the emulator's pool key: what Cognito would issue for `claims`.
pub fn emulator_signed(claims: &serde_json::Value) -> Result<String, String> {
    let key = jsonwebtoken::EncodingKey::from_rsa_der(&emulator_signing_key_der()?);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("dummy".into());
    jsonwebtoken::encode(&header, claims, &key).map_err(|error| error.to_string())
}

/// The access token Cognito's code flow would give `client_id` after `username` authorized it
/// for `scope` (space-separated; `openid` is always asked for too): refused like Cognito's
/// token endpoint refuses it when the client may not use the code flow (`unauthorized_client`)
/// or may not request one of the scopes (`invalid_scope`), judged from the client's settings in
/// the emulator (`DescribeUserPoolClient`, as the local stack created them from the template).
/// Otherwise the user signs in through that client (`AdminInitiateAuth`, a real token of the
/// client) and the token gets the scope, signed with the pool's emulator key.
pub async fn authorized_access_token(
    sdk: &SdkConfig,
    pool_id: &str,
    client_id: &str,
    username: &str,
    scope: &str,
) -> Result<String, String> {
    let client = Client::new(sdk)
        .describe_user_pool_client()
        .user_pool_id(pool_id)
        .client_id(client_id)
        .send()
        .await
        .map_err(|error| format!("describe the app client: {error}"))?
        .user_pool_client
        .ok_or("Cognito returned no app client")?;
    let code_flow = client.allowed_o_auth_flows_user_pool_client() == Some(true)
        && client
            .allowed_o_auth_flows()
            .contains(&aws_sdk_cognitoidentityprovider::types::OAuthFlowType::Code);
    if !code_flow {
        return Err(format!(
            "unauthorized_client: app client {client_id} may not use the authorization code flow"
        ));
    }
    let mut requested = vec!["openid"];
    for wanted in scope.split_whitespace() {
        if !requested.contains(&wanted) {
            requested.push(wanted);
        }
    }
    let allowed = client.allowed_o_auth_scopes();
    if let Some(refused) = requested
        .iter()
        .find(|wanted| !allowed.iter().any(|scope| scope == *wanted))
    {
        return Err(format!(
            "invalid_scope: app client {client_id} may not request {refused}"
        ));
    }
    let signed_in = sign_in(sdk, pool_id, client_id, username).await?;
    let mut claims: serde_json::Value =
        jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&signed_in.access_token)
            .map_err(|error| error.to_string())?
            .claims;
    claims["scope"] = serde_json::Value::String(requested.join(" "));
    emulator_signed(&claims)
}
