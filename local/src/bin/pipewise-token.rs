//! Prints a token the running local stack accepts, in the stack's own mode (read from the
//! `.dev.env` that `make dev` writes):
//! - plain `make dev`: a development HS256 JWT;
//! - `make dev IDP=cognito`: a real Cognito access token of the template's user pool in the
//!   emulator (the user is created on first use, then signs in with `AdminInitiateAuth` through
//!   the frontend's app client, the first of `JWT_AUDIENCE`). With a SCOPE, which Cognito grants
//!   only through its hosted UI (absent from the emulator), the token Cognito would issue to the
//!   first of the stack's app clients allowed that scope (the agents' client for the secrets
//!   scope) is signed with the emulator's own pool key; no client allowed it: refused.
//!
//! `pipewise-token SUB [SCOPE] [TTL_SECONDS]` (the Makefile's `make token SUB=alice SCOPE=...`).

use std::collections::HashMap;
use std::process::ExitCode;

use pipewise::config::vars;

const ENV_FILE: &str = ".dev.env";

fn dev_environment() -> HashMap<String, String> {
    std::fs::read_to_string(ENV_FILE)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(sub) = args.next().filter(|sub| !sub.is_empty()) else {
        eprintln!("usage: pipewise-token SUB [SCOPE] [TTL_SECONDS]");
        return ExitCode::from(2);
    };
    let scope = args.next().filter(|scope| !scope.is_empty());
    let ttl = args
        .next()
        .and_then(|ttl| ttl.parse().ok())
        .unwrap_or(12 * 3600);
    let environment = dev_environment();
    if environment.get(vars::JWT_TOKEN_USE).map(String::as_str) != Some("cognito_access") {
        println!(
            "{}",
            pipewise_local::dev_auth::dev_token(&sub, scope.as_deref(), ttl)
        );
        return ExitCode::SUCCESS;
    }
    match cognito_token(&environment, &sub, scope.as_deref()).await {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("pipewise-token: {problem}");
            ExitCode::FAILURE
        }
    }
}

async fn cognito_token(
    environment: &HashMap<String, String>,
    username: &str,
    scope: Option<&str>,
) -> Result<String, String> {
    let get = |name: &str| {
        environment
            .get(name)
            .cloned()
            .ok_or_else(|| format!("{ENV_FILE} has no {name}: is `make dev IDP=cognito` running?"))
    };
    let issuer = get(vars::JWT_ISSUER)?;
    let audience = get(vars::JWT_AUDIENCE)?;
    let clients: Vec<&str> = audience
        .split(',')
        .map(str::trim)
        .filter(|client| !client.is_empty())
        .collect();
    let pool = issuer.rsplit('/').next().unwrap_or_default().to_owned();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(get("AWS_ENDPOINT_URL")?)
        .region(aws_config::Region::new(
            environment
                .get("AWS_REGION")
                .cloned()
                .unwrap_or_else(|| "us-east-1".into()),
        ))
        .credentials_provider(aws_sdk_cognitoidentityprovider::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "pipewise-token",
        ))
        .load()
        .await;
    let Some(scope) = scope else {
        let frontend = clients
            .first()
            .ok_or_else(|| format!("{ENV_FILE} names no app client in {}", vars::JWT_AUDIENCE))?;
        return Ok(
            pipewise_local::cognito::sign_in(&sdk, &pool, frontend, username)
                .await?
                .access_token,
        );
    };
    let mut refusals = Vec::new();
    for client in &clients {
        match pipewise_local::cognito::authorized_access_token(&sdk, &pool, client, username, scope)
            .await
        {
            Ok(token) => return Ok(token),
            Err(refused) => refusals.push(refused),
        }
    }
    Err(format!(
        "no app client of the pool may request {scope}: {}",
        refusals.join("; ")
    ))
}
