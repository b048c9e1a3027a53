//! Real Cognito sign-ins against the emulator's user pools (`make token` in Cognito mode, the
//! identity tests), and the pool's own signing key for the token shapes the emulator cannot
//! issue (a resource-server scope, which Cognito grants only through its hosted UI; an expired
//! token).

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
