//! The `token-keeper` Lambda function: on a schedule (EventBridge, daily), refreshes the tokens
//! of connected accounts that would otherwise lapse while nobody uses them: Instagram long-lived
//! tokens nearing their 60 days, and X grants (whose single-use refresh tokens are kept alive by
//! being used). The refresh itself is the accounts service's, with its lease, so it never races
//! a send or an agent's `/secrets` read.

use aws_config::SdkConfig;
use pipewise::accounts::AccountService;
use pipewise::config::{ConfigError, ConfigSource};

pub use pipewise::accounts::refresh::KeeperReport;

/// Builds the accounts service from the function's settings (once per cold start).
pub fn service_from_config(
    source: &ConfigSource<'_>,
    sdk: &SdkConfig,
) -> Result<AccountService, ConfigError> {
    AccountService::from_config(source, sdk)
}
