//! Connected accounts stay connected: tokens refreshed before use, one refresh per account at a
//! time under a lease in DynamoDB, the rotated tokens written under that lease only, and the
//! scheduled keeper that refreshes grants nobody uses. What each provider's answers mean is in
//! [`super::tokens`].

use serde_json::{Map, Value};

use super::provider::Provider;
use super::service::AccountService;
use super::store::{AccountItem, REAUTH_REQUIRED};
use crate::error::Error;
use crate::platforms::oauth::RefreshFailure;

/// How long a token refresh may hold an account's lease: longer than everything the holder does
/// under it (the token call's 10 s timeout, a KMS seal and a DynamoDB write, each bounded by the
/// SDK's call timeout), so a lease never lapses while its refresh is still running and a second
/// refresher can never spend the single-use refresh token the first one was rotating.
const LEASE_SECONDS: i64 = 60;
/// How often a caller waiting for another's refresh looks again, and how many times: 5 s in
/// all, well inside the shortest function timeout (10 s); then the caller answers "busy, retry".
const LEASE_POLL: std::time::Duration = std::time::Duration::from_millis(200);
const LEASE_WAIT_ROUNDS: usize = 25;
/// Attempts to merge refreshed tokens into an account that users keep editing meanwhile.
const MERGE_ATTEMPTS: usize = 3;

/// Why an account's tokens could not be made fresh.
#[derive(Debug)]
pub enum TokenFailure {
    /// The refresh itself failed.
    Refresh(RefreshFailure),
    /// DynamoDB or KMS failed, or the account is gone.
    Storage(Error),
}

impl From<Error> for TokenFailure {
    fn from(error: Error) -> Self {
        Self::Storage(error)
    }
}

/// What one run of the scheduled token keeper did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeeperReport {
    /// Accounts with refreshable tokens looked at.
    pub checked: usize,
    /// Accounts whose tokens were refreshed.
    pub refreshed: usize,
    /// Accounts found with a dead grant (now `reauth_required`).
    pub reauth_required: usize,
    /// Accounts that could not be refreshed now (tried again next run).
    pub failed: usize,
    /// Accounts left as they were because the provider refused this deployment's OAuth client
    /// (alarmed; tried again next run).
    pub misconfigured: usize,
}

impl AccountService {
    /// The configuration of an account with working tokens: decrypted, and for accounts whose
    /// provider's tokens expire (X, Instagram), refreshed first when they expire soon or when
    /// `force` says the platform refused them. Only one caller refreshes an account at a time
    /// (a lease in DynamoDB): the others wait for its result and reuse it, so a single-use
    /// refresh token is never spent twice. Returns the account as it now stands.
    pub async fn fresh_configuration(
        &self,
        item: AccountItem,
        force: bool,
    ) -> Result<(AccountItem, Map<String, Value>), TokenFailure> {
        let Some(provider) = Provider::of(&item) else {
            let configuration = self.decrypted_configuration(&item).await?;
            return Ok((item, configuration));
        };
        let mut item = item;
        let seen_version = item.version;
        for _ in 0..LEASE_WAIT_ROUNDS {
            let expiring = item.expires_at.as_deref().is_some_and(|at| {
                time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                    .map(|at| {
                        at.unix_timestamp()
                            .saturating_sub(self.clock.epoch_seconds())
                            < provider.refresh_margin_seconds()
                    })
                    .unwrap_or(true)
            });
            // Someone else refreshed since the caller read the account: use their tokens.
            let refreshed_meanwhile = item.version != seen_version;
            // Fresh enough, and either nobody complained or someone refreshed since.
            if !expiring && (!force || refreshed_meanwhile) {
                let configuration = self.decrypted_configuration(&item).await?;
                return Ok((item, configuration));
            }
            if item.status_reason.as_deref() == Some(REAUTH_REQUIRED) {
                return Err(TokenFailure::Refresh(RefreshFailure::ReauthRequired));
            }
            let lease_id = uuid::Uuid::new_v4().to_string();
            let now = self.clock.epoch_seconds();
            if let Some(leased) = self
                .store
                .take_refresh_lease(&item, now.saturating_add(LEASE_SECONDS), &lease_id, now)
                .await?
            {
                return self.refresh_with_lease(provider, leased, &lease_id).await;
            }
            tokio::time::sleep(LEASE_POLL).await;
            let user = item.user_id.clone();
            let id = item.account_id.clone();
            item = self.store.get(&user, &id).await?.ok_or(Error::NotFound)?;
        }
        Err(TokenFailure::Refresh(RefreshFailure::Transient(
            "another refresh is taking too long",
        )))
    }

    /// Refreshes every connected account whose tokens are within their provider's refresh
    /// margin, so idle grants do not lapse (the scheduled token keeper). One account's failure
    /// never stops the others.
    pub async fn keep_tokens_alive(&self) -> Result<KeeperReport, Error> {
        let mut report = KeeperReport::default();
        for item in self.store.with_expiring_tokens().await? {
            if !item.connected || Provider::of(&item).is_none() {
                continue;
            }
            report.checked += 1;
            let version = item.version;
            match self.fresh_configuration(item, false).await {
                Ok((fresh, _)) if fresh.version != version => report.refreshed += 1,
                Ok(_) => {}
                Err(TokenFailure::Refresh(RefreshFailure::ReauthRequired)) => {
                    report.reauth_required += 1;
                }
                Err(TokenFailure::Refresh(RefreshFailure::Misconfigured(_))) => {
                    report.misconfigured += 1;
                }
                Err(failure) => {
                    tracing::warn!(?failure, "token keeper could not refresh an account");
                    report.failed += 1;
                }
            }
        }
        tracing::info!(?report, "token keeper run");
        Ok(report)
    }

    async fn refresh_with_lease(
        &self,
        provider: Provider,
        item: AccountItem,
        lease_id: &str,
    ) -> Result<(AccountItem, Map<String, Value>), TokenFailure> {
        let configuration = match self.decrypted_configuration(&item).await {
            Ok(configuration) => configuration,
            Err(error) => {
                let _ = self.store.release_refresh_lease(&item, lease_id).await;
                return Err(error.into());
            }
        };
        match self.tokens.refresh(provider, &configuration).await {
            Ok(tokens) => {
                let expires_at = tokens.expires_in.and_then(|seconds| {
                    self.clock
                        .now()
                        .checked_add(time::Duration::seconds(seconds))
                        .and_then(|at| {
                            at.format(&time::format_description::well_known::Rfc3339)
                                .ok()
                        })
                });
                let stored = self
                    .store_refreshed(item, configuration, &tokens, expires_at, lease_id)
                    .await?;
                tracing::info!(user_id = %stored.0.user_id, account_id = %stored.0.account_id, "account tokens refreshed");
                crate::metrics::record(crate::metrics::BusinessMetric::TokenRefreshed {
                    provider: provider.name(),
                });
                Ok(stored)
            }
            Err(RefreshFailure::ReauthRequired) => {
                self.store.mark_reauth_required(&item, lease_id).await?;
                tracing::warn!(user_id = %item.user_id, account_id = %item.account_id, "account needs to be connected again");
                crate::metrics::record(crate::metrics::BusinessMetric::ReauthRequired {
                    provider: provider.name(),
                });
                Err(TokenFailure::Refresh(RefreshFailure::ReauthRequired))
            }
            // Nothing to refresh with: the stored token is all there is; let the platform judge.
            Err(RefreshFailure::NotRefreshable) => {
                let _ = self.store.release_refresh_lease(&item, lease_id).await;
                Ok((item, configuration))
            }
            Err(failure) => {
                let _ = self.store.release_refresh_lease(&item, lease_id).await;
                Err(TokenFailure::Refresh(failure))
            }
        }
    }

    /// Stores refreshed tokens under the lease: the new tokens are merged into the account as
    /// it stands (a user's edit since the lease was taken is kept), sealed in a new envelope,
    /// and written with the expiry in one update conditioned on the lease and the version read.
    /// The rotated refresh token is never dropped for a concurrent edit: the merge is retried.
    async fn store_refreshed(
        &self,
        leased: AccountItem,
        configuration: Map<String, Value>,
        tokens: &crate::platforms::oauth::RefreshedTokens,
        expires_at: Option<String>,
        lease_id: &str,
    ) -> Result<(AccountItem, Map<String, Value>), Error> {
        let mut current = leased;
        let mut configuration = configuration;
        for attempt in 0..MERGE_ATTEMPTS {
            if attempt > 0 {
                let id = current.account_id.clone();
                current = self
                    .store
                    .get(&current.user_id, &id)
                    .await?
                    .ok_or(Error::NotFound)?;
                if current.refresh_lease_id.as_deref() != Some(lease_id) {
                    break;
                }
                configuration = self.decrypted_configuration(&current).await?;
            }
            configuration.insert(
                "access_token".into(),
                Value::String(tokens.access_token.clone()),
            );
            if let Some(refresh_token) = &tokens.refresh_token {
                configuration.insert("refresh_token".into(), Value::String(refresh_token.clone()));
            }
            let sealed = self
                .seal_configuration(
                    &current.user_id,
                    current.account_id.as_str(),
                    configuration.clone(),
                )
                .await?;
            if self
                .store
                .store_refreshed_tokens(&current, lease_id, &sealed, expires_at.as_deref())
                .await?
            {
                let mut stored = current;
                stored.configuration = sealed.masked;
                stored.secret_paths = sealed.secret_paths;
                stored.secrets = sealed.envelope;
                stored.expires_at = expires_at;
                stored.refresh_lease_until = None;
                stored.refresh_lease_id = None;
                stored.version = stored.version.saturating_add(1);
                return Ok((stored, configuration));
            }
        }
        // Only a lease that lapsed (which LEASE_SECONDS rules out) or an account deleted
        // meanwhile gets here: the provider's new tokens cannot be stored.
        tracing::error!(user_id = %current.user_id, account_id = %current.account_id, "refreshed tokens could not be stored: the lease was lost");
        Err(Error::Conflict {
            code: "concurrent_update",
            message: "The account was changed by another request meanwhile; retry.".into(),
            existing_id: None,
        })
    }
}
