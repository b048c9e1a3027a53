//! The `token-keeper` Lambda function: on a schedule (EventBridge, daily), refreshes the tokens
//! of connected accounts that would otherwise lapse while nobody uses them: Instagram long-lived
//! tokens nearing their 60 days, and X grants (whose single-use refresh tokens are kept alive by
//! being used). The refresh itself is the accounts service's, with its lease, so it never races
//! a send or an agent's `/secrets` read.

use aws_config::SdkConfig;
use pipewise::accounts::sender::SenderVerification;
use pipewise::accounts::tokens::TokenEndpoints;
use pipewise::accounts::{AccountService, AccountStore};
use pipewise::config::{ConfigError, ConfigSource, vars};
use pipewise::envelope::EnvelopeCipher;
use pipewise::platforms::SocialApis;

pub use pipewise::accounts::service::KeeperReport;

/// Builds the accounts service from the function's settings (once per cold start).
pub fn service_from_config(
    source: &ConfigSource<'_>,
    sdk: &SdkConfig,
) -> Result<AccountService, ConfigError> {
    Ok(AccountService::new(
        AccountStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            source.required(vars::ACCOUNTS_TABLE)?,
        ),
        EnvelopeCipher::new(
            aws_sdk_kms::Client::new(sdk),
            source.required(vars::SECRETS_KMS_KEY_ID)?,
        ),
        SenderVerification::new(aws_sdk_sesv2::Client::new(sdk)),
        TokenEndpoints::new(
            SocialApis::from_source(source),
            aws_sdk_secretsmanager::Client::new(sdk),
            source.optional(vars::OAUTH_CLIENTS_SECRET_ARN),
        ),
    ))
}
