//! The accounts use cases: upsert with secret sealing, reads with masking, and the audited read of
//! decrypted secrets. Handlers call these and only translate HTTP.

use serde_json::{Map, Value};

use super::model::{
    AccountDraft, AccountId, AccountSecrets, AccountType, AccountView, UpsertAccountRequest,
};
use super::secrets::{self, SecretPath, StoredSecret, SubmittedSecret, display_path};
use super::sender::{self, SenderStatus, SenderVerification};
use super::store::{
    AccountItem, AccountStore, REAUTH_REQUIRED, SENDER_TAKEN, SealedConfiguration, SenderClaim,
    SenderWrite, UNVERIFIED_CLAIM_SECONDS,
};
use super::tokens::{Provider, RefreshFailure, TokenEndpoints};
use crate::clock::epoch_seconds;
use crate::envelope::{EncryptionContext, Envelope, EnvelopeCipher};
use crate::error::{Error, FieldError};
use crate::ids::UserId;
use crate::targets::model::Email;

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

/// Whether an upsert made a new account or changed an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// A new account (201).
    Created,
    /// An existing account was replaced (200).
    Updated,
}

/// Accounts of users: storage, the envelope that guards their secrets, and SES for proving
/// that a user controls the address an email account sends from.
#[derive(Clone)]
pub struct AccountService {
    store: AccountStore,
    cipher: EnvelopeCipher,
    senders: SenderVerification,
    tokens: TokenEndpoints,
}

impl AccountService {
    /// A service over a store, a cipher, SES's sender identities and the platforms' token
    /// endpoints.
    pub fn new(
        store: AccountStore,
        cipher: EnvelopeCipher,
        senders: SenderVerification,
        tokens: TokenEndpoints,
    ) -> Self {
        Self {
            store,
            cipher,
            senders,
            tokens,
        }
    }

    /// The service every function that touches accounts uses, from the functions' settings
    /// (`ACCOUNTS_TABLE`, `SECRETS_KMS_KEY_ID`, the platforms' URLs, `OAUTH_CLIENTS_SECRET_ARN`)
    /// and one SDK configuration; built once per cold start.
    pub fn from_config(
        source: &crate::config::ConfigSource<'_>,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, crate::config::ConfigError> {
        use crate::config::vars;
        Ok(Self::new(
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
                crate::platforms::SocialApis::from_source(source),
                aws_sdk_secretsmanager::Client::new(sdk),
                source.optional(vars::OAUTH_CLIENTS_SECRET_ARN),
            ),
        ))
    }

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
                        at.unix_timestamp().saturating_sub(epoch_seconds())
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
            let now = epoch_seconds();
            if let Some(leased) = self
                .store
                .take_refresh_lease(&item, now.saturating_add(LEASE_SECONDS), &lease_id, now)
                .await?
            {
                return self.refresh_with_lease(provider, leased, &lease_id).await;
            }
            tokio::time::sleep(LEASE_POLL).await;
            let user = item.user_id.clone();
            let id = AccountId::parse(&item.account_id).map_err(Error::internal)?;
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
                    time::OffsetDateTime::now_utc()
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
                Ok(stored)
            }
            Err(RefreshFailure::ReauthRequired) => {
                self.store.mark_reauth_required(&item, lease_id).await?;
                tracing::warn!(user_id = %item.user_id, account_id = %item.account_id, "account needs to be connected again");
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
        tokens: &super::tokens::RefreshedTokens,
        expires_at: Option<String>,
        lease_id: &str,
    ) -> Result<(AccountItem, Map<String, Value>), Error> {
        let mut current = leased;
        let mut configuration = configuration;
        for attempt in 0..MERGE_ATTEMPTS {
            if attempt > 0 {
                let id = AccountId::parse(&current.account_id).map_err(Error::internal)?;
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
                .seal_configuration(&current.user_id, &current.account_id, configuration.clone())
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

    /// Splits a full configuration into its masked JSON and its secrets, sealed under a fresh
    /// data key (no KMS call when it has no secrets).
    async fn seal_configuration(
        &self,
        user: &UserId,
        account_id: &str,
        configuration: Map<String, Value>,
    ) -> Result<SealedConfiguration, Error> {
        let split = secrets::split(configuration);
        let values: Vec<StoredSecret> = split
            .secrets
            .into_iter()
            .filter_map(|(path, secret)| match secret {
                SubmittedSecret::New(value) => Some(StoredSecret { path, value }),
                SubmittedSecret::Keep => None,
            })
            .collect();
        let masked = serde_json::to_string(&split.masked).map_err(Error::internal)?;
        let secret_paths = values.iter().map(|secret| secret.path.clone()).collect();
        if values.is_empty() {
            return Ok(SealedConfiguration {
                masked,
                secret_paths,
                envelope: None,
            });
        }
        let plaintext =
            zeroize::Zeroizing::new(serde_json::to_vec(&values).map_err(Error::internal)?);
        let context = EncryptionContext {
            table: self.store.table(),
            user_id: user.as_str(),
            account_id,
        };
        let envelope = self.cipher.seal(context, &plaintext).await?;
        Ok(SealedConfiguration {
            masked,
            secret_paths,
            envelope: Some(envelope),
        })
    }

    /// The underlying store (read-only uses such as the outreach channel lookup).
    pub fn store(&self) -> &AccountStore {
        &self.store
    }

    /// The user's accounts, optionally of one type; no KMS call.
    pub async fn list(
        &self,
        user: &UserId,
        account_type: Option<AccountType>,
    ) -> Result<Vec<AccountView>, Error> {
        let items = self.store.list(user).await?;
        let mut views = Vec::with_capacity(items.len());
        // A list re-checks at most this many pending senders with SES (the rest on a later read),
        // so a user with many pending accounts cannot turn one request into hundreds of calls.
        let mut checks_left = PENDING_CHECKS_PER_LIST;
        for item in items
            .into_iter()
            .filter(|item| account_type.is_none_or(|wanted| item.account_type == wanted))
        {
            let item = if checks_left > 0 && is_pending_sender(&item) {
                checks_left -= 1;
                self.refresh_pending_sender(item).await?
            } else {
                item
            };
            views.push(view(item)?);
        }
        Ok(views)
    }

    /// An email account waiting for SES to verify its sender is re-checked on a read, and
    /// marked connected once SES has verified the attempt its own claim started.
    async fn refresh_pending_sender(&self, item: AccountItem) -> Result<AccountItem, Error> {
        if !is_pending_sender(&item) {
            return Ok(item);
        }
        let Some(claim) = self.owned_sender(&item).await? else {
            return Ok(item);
        };
        self.confirm_sender(item, &claim).await
    }

    /// Connects an account whose unverified claim SES has now verified (this claim's attempt,
    /// nothing else); the account as it then stands.
    async fn confirm_sender(
        &self,
        item: AccountItem,
        claim: &SenderClaim,
    ) -> Result<AccountItem, Error> {
        let (Some(attempt), false) = (claim.attempt.as_deref(), claim.verified) else {
            return Ok(item);
        };
        let address = Email::parse(&claim.address).map_err(Error::internal)?;
        if !self.senders.status(&address).await?.proves(attempt)
            || !self.store.mark_sender_verified(&item, claim).await?
        {
            return Ok(item);
        }
        let user = item.user_id.clone();
        let id = AccountId::parse(&item.account_id).map_err(Error::internal)?;
        self.store.get(&user, &id).await?.ok_or(Error::NotFound)
    }

    /// One account, masked; 404 when the user has none with this id. No KMS call.
    pub async fn get(&self, user: &UserId, account_id: &AccountId) -> Result<AccountView, Error> {
        let item = self
            .store
            .get(user, account_id)
            .await?
            .ok_or(Error::NotFound)?;
        view(self.refresh_pending_sender(item).await?)
    }

    /// Creates or replaces an account by `account_id`. New secret values are sealed under a fresh
    /// data key; a posted mask keeps the stored value, and when every secret is kept unchanged
    /// the stored envelope is reused without calling KMS.
    pub async fn upsert(
        &self,
        user: &UserId,
        request: UpsertAccountRequest,
    ) -> Result<(Upserted, AccountView), Error> {
        self.upsert_at(user, request, None).await
    }

    /// Like [`AccountService::upsert`], keeping given `(created_at, updated_at)` timestamps
    /// (accounts moved in from another store keep theirs).
    pub async fn upsert_at(
        &self,
        user: &UserId,
        request: UpsertAccountRequest,
        timestamps: Option<(String, String)>,
    ) -> Result<(Upserted, AccountView), Error> {
        let mut draft = request.parse()?;
        let existing = self.store.get(user, &draft.account_id).await?;
        let sender = self
            .plan_sender(user, &mut draft, existing.as_ref())
            .await?;
        let released = match &existing {
            Some(old) => self.owned_sender(old).await?.filter(|old| {
                sender
                    .as_ref()
                    .is_none_or(|new| new.claim().address != old.address)
            }),
            None => None,
        };
        let split = secrets::split_with(draft.configuration.clone(), &draft.explicit_secrets);
        let secret_paths: Vec<SecretPath> =
            split.secrets.iter().map(|(path, _)| path.clone()).collect();
        let envelope = self
            .seal_secrets(
                user,
                &draft,
                existing.as_ref(),
                &split.masked,
                split.secrets,
            )
            .await?;
        let now = crate::now_rfc3339();
        let (created_at, updated_at) = match timestamps {
            Some((created, updated)) => (Some(created), updated),
            None => (None, now.clone()),
        };
        let configuration = serde_json::to_string(&split.masked).map_err(Error::internal)?;
        let mut item = AccountItem {
            user_id: user.clone(),
            account_id: draft.account_id.as_str().to_owned(),
            account_type: draft.account_type,
            provider: draft.provider,
            label: draft.label,
            configuration,
            secret_paths,
            secrets: envelope,
            connected: draft.connected,
            status_reason: draft.status_reason,
            created_at: created_at.unwrap_or_else(|| {
                existing
                    .as_ref()
                    .map_or_else(|| now.clone(), |old| old.created_at.clone())
            }),
            updated_at,
            expires_at: draft.expires_at.clone(),
            sender_address: sender.as_ref().map(|write| write.claim().address.clone()),
            // A refresh in progress keeps its lease: it merges its tokens into this write.
            refresh_lease_until: existing.as_ref().and_then(|old| old.refresh_lease_until),
            refresh_lease_id: existing
                .as_ref()
                .and_then(|old| old.refresh_lease_id.clone()),
            version: existing.as_ref().map_or(1, |old| old.version + 1),
        };
        // The identity goes before the claim: a release that stops half-way leaves a claim
        // (retried by the next save), never an identity that someone could mistake for proof.
        if let Some(released) = &released {
            self.forget_identity(released).await?;
        }
        let written = self
            .write_account(&item, existing.as_ref(), sender.as_ref(), released.as_ref())
            .await;
        let outcome = match written {
            Ok(outcome) => outcome,
            // Another account took the address between our read and our write: the same answer
            // as any address someone else holds.
            Err(Error::Conflict { code, .. }) if code == SENDER_TAKEN => {
                item.sender_address = None;
                mark_pending(&mut item.connected, &mut item.status_reason);
                let outcome = self
                    .write_account(&item, existing.as_ref(), None, released.as_ref())
                    .await?;
                return Ok((outcome, view(item)?));
            }
            Err(error) => return Err(error),
        };
        let Some(write) = sender else {
            return Ok((outcome, view(item)?));
        };
        match write {
            // After the claim is ours, and only then, SES is asked to mail the address. The
            // account stays pending: SES verifies only once the owner follows the link, which
            // a later read notices.
            SenderWrite::Start(claim) => {
                let address = Email::parse(&claim.address).map_err(Error::internal)?;
                let status = self.senders.status(&address).await?;
                let attempt = claim.attempt.as_deref().unwrap_or_default();
                if !self.senders.start(&address, &status, attempt).await? {
                    tracing::warn!(
                        user_id = %user,
                        account_id = %item.account_id,
                        "a sender SES already knows from outside this service was claimed; it stays pending"
                    );
                }
                Ok((outcome, view(item)?))
            }
            SenderWrite::Hold(claim) => {
                let item = self.confirm_sender(item, &claim).await?;
                Ok((outcome, view(item)?))
            }
        }
    }

    /// Inserts or replaces the account with its sender write.
    async fn write_account(
        &self,
        item: &AccountItem,
        existing: Option<&AccountItem>,
        sender: Option<&SenderWrite>,
        released: Option<&SenderClaim>,
    ) -> Result<Upserted, Error> {
        match existing {
            None => {
                self.store.insert(item, sender).await?;
                Ok(Upserted::Created)
            }
            Some(old) => {
                self.store
                    .replace(item, old.version, sender, released)
                    .await?;
                Ok(Upserted::Updated)
            }
        }
    }

    /// For an email account, what the save does with its sender, and whether the account is
    /// connected meanwhile:
    /// - a claim this account holds and SES verified for it (or one from before verification
    ///   attempts were recorded, on a connected account) is kept;
    /// - a claim it holds whose attempt is still pending in SES is kept, the account pending;
    /// - an address nobody holds, a claim of its own whose identity is gone, or a claim nobody
    ///   verified within a day starts a new verification attempt (counted per user and hour);
    /// - an address another account holds: pending, nothing claimed, SES never asked (the
    ///   same answer as a pending verification, so no one learns who sends from what).
    async fn plan_sender(
        &self,
        user: &UserId,
        draft: &mut AccountDraft,
        existing: Option<&AccountItem>,
    ) -> Result<Option<SenderWrite>, Error> {
        let address = sender::sender_of(draft.account_type, &draft.configuration)
            .map_err(|problem| Error::Validation(vec![problem]))?;
        if address.is_some() {
            sender::daily_send_limit(&draft.configuration)
                .map_err(|problem| Error::Validation(vec![problem]))?;
        }
        let Some(address) = address else {
            return Ok(None);
        };
        let account_id = draft.account_id.as_str();
        let now = epoch_seconds();
        let current = self.store.sender_owner(address.as_str()).await?;
        let link_expired =
            |claim: &SenderClaim| now.saturating_sub(claim.started_at) > UNVERIFIED_CLAIM_SECONDS;
        let write = match current {
            Some(claim) if claim.is_held_by(user, account_id) => {
                let legacy_connected = claim.attempt.is_none()
                    && existing.is_some_and(|old| old.connected && old.status_reason.is_none());
                if claim.verified || legacy_connected {
                    SenderWrite::Hold(claim)
                } else if let Some(attempt) = claim.attempt.as_deref()
                    && !link_expired(&claim)
                    && matches!(
                        self.senders.status(&address).await?,
                        SenderStatus::Known { attempt: Some(tagged), .. } if tagged == attempt
                    )
                {
                    mark_pending(&mut draft.connected, &mut draft.status_reason);
                    SenderWrite::Hold(claim)
                } else {
                    mark_pending(&mut draft.connected, &mut draft.status_reason);
                    SenderWrite::Start(new_claim(&address, user, account_id, now))
                }
            }
            Some(claim) if claim.attempt.is_none() || claim.verified || !link_expired(&claim) => {
                mark_pending(&mut draft.connected, &mut draft.status_reason);
                return Ok(None);
            }
            _ => {
                mark_pending(&mut draft.connected, &mut draft.status_reason);
                SenderWrite::Start(new_claim(&address, user, account_id, now))
            }
        };
        Ok(Some(write))
    }

    /// The claim a stored account holds on its sender, if it holds one.
    async fn owned_sender(&self, item: &AccountItem) -> Result<Option<SenderClaim>, Error> {
        let address = match &item.sender_address {
            Some(address) => address.clone(),
            // Accounts stored before the claimed address was kept on the item.
            None => {
                let configuration = parse_configuration(&item.configuration)?;
                let Ok(Some(address)) = sender::sender_of(item.account_type, &configuration) else {
                    return Ok(None);
                };
                address.as_str().to_owned()
            }
        };
        Ok(self
            .store
            .sender_owner(&address)
            .await?
            .filter(|owner| owner.is_held_by(&item.user_id, &item.account_id)))
    }

    /// Before a claim is released: deletes the SES identity it created (its attempt's, or a
    /// claim from before attempts that created one), so the next claimant must prove control
    /// again. An identity this service did not create is left alone.
    async fn forget_identity(&self, released: &SenderClaim) -> Result<(), Error> {
        let address = Email::parse(&released.address).map_err(Error::internal)?;
        let ours = match released.attempt.as_deref() {
            Some(attempt) => matches!(
                self.senders.status(&address).await?,
                SenderStatus::Known { attempt: Some(tagged), .. } if tagged == attempt
            ),
            None => released.created_identity,
        };
        if ours {
            self.senders.forget(&address).await?;
        }
        Ok(())
    }

    /// Disconnects an account: the item and its ciphertext are deleted and its sender released.
    pub async fn delete(&self, user: &UserId, account_id: &AccountId) -> Result<(), Error> {
        let Some(existing) = self.store.get(user, account_id).await? else {
            return Err(Error::NotFound);
        };
        let released = self.owned_sender(&existing).await?;
        if let Some(released) = &released {
            self.forget_identity(released).await?;
        }
        self.store.delete(user, account_id, released.as_ref()).await
    }

    /// The decrypted configuration of an account. The caller has checked the scope; this writes
    /// the audit line (names of the secrets, never their values).
    pub async fn reveal(
        &self,
        user: &UserId,
        account_id: &AccountId,
    ) -> Result<AccountSecrets, Error> {
        let item = self
            .store
            .get(user, account_id)
            .await?
            .ok_or(Error::NotFound)?;
        // Agents get tokens that work: refreshed first when they expire soon.
        let (item, configuration) = match self.fresh_configuration(item, false).await {
            Ok(fresh) => fresh,
            Err(TokenFailure::Storage(error)) => return Err(error),
            Err(TokenFailure::Refresh(RefreshFailure::ReauthRequired)) => {
                return Err(Error::Conflict {
                    code: REAUTH_REQUIRED,
                    message:
                        "The platform revoked this account's grant; the user must connect it again."
                            .into(),
                    existing_id: None,
                });
            }
            Err(TokenFailure::Refresh(RefreshFailure::Misconfigured(_))) => {
                return Err(Error::ProviderMisconfigured);
            }
            Err(TokenFailure::Refresh(_)) => {
                return Err(Error::unavailable("the platform's token endpoint failed"));
            }
        };
        tracing::info!(
            audit = "account_secrets_read",
            user_id = %user,
            account_id = %item.account_id,
            secret_fields = ?item.secret_paths.iter().map(display_path).collect::<Vec<_>>(),
            "decrypted account secrets were read"
        );
        Ok(AccountSecrets {
            account_id: item.account_id,
            account_type: item.account_type,
            provider: item.provider,
            configuration,
        })
    }

    /// The full configuration of a stored account, secrets decrypted (one KMS call when it has
    /// secrets). Used by `/secrets` and by the outreach worker.
    pub async fn decrypted_configuration(
        &self,
        item: &AccountItem,
    ) -> Result<Map<String, Value>, Error> {
        let masked = parse_configuration(&item.configuration)?;
        let stored = match &item.secrets {
            Some(envelope) => self.open(item, envelope).await?,
            None => Vec::new(),
        };
        Ok(secrets::reveal(masked, stored))
    }

    async fn open(
        &self,
        item: &AccountItem,
        envelope: &Envelope,
    ) -> Result<Vec<StoredSecret>, Error> {
        let context = EncryptionContext {
            table: self.store.table(),
            user_id: item.user_id.as_str(),
            account_id: &item.account_id,
        };
        let plaintext = self.cipher.open(context, envelope).await?;
        serde_json::from_slice(&plaintext).map_err(Error::internal)
    }

    async fn seal_secrets(
        &self,
        user: &UserId,
        draft: &AccountDraft,
        existing: Option<&AccountItem>,
        masked: &Map<String, Value>,
        submitted: Vec<(SecretPath, SubmittedSecret)>,
    ) -> Result<Option<Envelope>, Error> {
        if submitted.is_empty() {
            return Ok(None);
        }
        let kept: Vec<&SecretPath> = submitted
            .iter()
            .filter(|(_, secret)| *secret == SubmittedSecret::Keep)
            .map(|(path, _)| path)
            .collect();
        let stored_paths = existing
            .map(|item| item.secret_paths.as_slice())
            .unwrap_or_default();
        let missing: Vec<FieldError> = kept
            .iter()
            .filter(|path| !stored_paths.contains(path))
            .map(|path| {
                FieldError::new(
                    format!("configuration.{}", display_path(path)),
                    "is the mask, but no secret is stored at this place",
                )
            })
            .collect();
        if !missing.is_empty() {
            return Err(Error::Validation(missing));
        }
        if let Some(old) = existing {
            let stored = parse_configuration(&old.configuration)?;
            let moved = masks_in_moved_list_items(&kept, masked, &stored);
            if !moved.is_empty() {
                return Err(Error::Validation(moved));
            }
        }
        // Every secret kept and none dropped: the stored envelope already holds exactly these.
        if let Some(old) = existing
            && kept.len() == submitted.len()
            && kept.len() == stored_paths.len()
        {
            return Ok(old.secrets.clone());
        }
        let mut previous = match existing {
            Some(old) if !kept.is_empty() => match &old.secrets {
                Some(envelope) => self.open(old, envelope).await?,
                None => Vec::new(),
            },
            _ => Vec::new(),
        };
        let mut values = Vec::with_capacity(submitted.len());
        for (path, secret) in submitted {
            let value = match secret {
                SubmittedSecret::New(value) => value,
                SubmittedSecret::Keep => {
                    let index = previous
                        .iter()
                        .position(|stored| stored.path == path)
                        .ok_or_else(|| Error::internal("a stored secret path has no value"))?;
                    previous.swap_remove(index).value
                }
            };
            values.push(StoredSecret { path, value });
        }
        let plaintext =
            zeroize::Zeroizing::new(serde_json::to_vec(&values).map_err(Error::internal)?);
        let context = EncryptionContext {
            table: self.store.table(),
            user_id: user.as_str(),
            account_id: draft.account_id.as_str(),
        };
        self.cipher.seal(context, &plaintext).await.map(Some)
    }
}

/// A mask inside a list keeps the stored secret only when the list still has its stored length
/// and the item holding the mask is unchanged (compared in masked form); otherwise the mask
/// could hand one item's secret to another (two inboxes, the first deleted: the second would get
/// the first one's password), so it is refused, naming the field.
fn masks_in_moved_list_items(
    kept: &[&SecretPath],
    submitted: &Map<String, Value>,
    stored: &Map<String, Value>,
) -> Vec<FieldError> {
    let mut problems = Vec::new();
    for path in kept {
        let Some((first, rest)) = path.split_first() else {
            continue;
        };
        // The configuration root is an object, so lists start one level down.
        let (mut new, mut old) = (submitted.get(first), stored.get(first));
        for segment in rest {
            let (Some(new_node), Some(old_node)) = (new, old) else {
                break;
            };
            if let Value::Array(new_items) = new_node {
                let same_item = match (old_node, segment.parse::<usize>()) {
                    (Value::Array(old_items), Ok(index)) => {
                        old_items.len() == new_items.len()
                            && old_items.get(index) == new_items.get(index)
                    }
                    _ => false,
                };
                if !same_item {
                    problems.push(FieldError::new(
                        format!("configuration.{}", display_path(path)),
                        "is the mask, but the list item it stands in has moved or changed; send the secret itself",
                    ));
                    break;
                }
            }
            new = child(new_node, segment);
            old = child(old_node, segment);
        }
    }
    problems
}

fn child<'a>(value: &'a Value, segment: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    }
}

/// How many pending senders one list re-checks with SES.
const PENDING_CHECKS_PER_LIST: usize = 3;

fn is_pending_sender(item: &AccountItem) -> bool {
    !item.connected && item.status_reason.as_deref() == Some(sender::PENDING_VERIFICATION)
}

/// Keeps an account disconnected until its sender is proven; a client that marks the account
/// disconnected keeps its own reason.
fn mark_pending(connected: &mut bool, status_reason: &mut Option<String>) {
    if *connected {
        *connected = false;
        *status_reason = Some(sender::PENDING_VERIFICATION.to_owned());
    }
}

/// A claim with a new verification attempt.
fn new_claim(address: &Email, user: &UserId, account_id: &str, now: i64) -> SenderClaim {
    SenderClaim {
        address: address.as_str().to_owned(),
        user_id: user.clone(),
        account_id: account_id.to_owned(),
        created_identity: false,
        attempt: Some(uuid::Uuid::new_v4().to_string()),
        verified: false,
        started_at: now,
    }
}

fn parse_configuration(text: &str) -> Result<Map<String, Value>, Error> {
    serde_json::from_str(text).map_err(Error::internal)
}

/// The masked view of a stored account.
pub fn view(item: AccountItem) -> Result<AccountView, Error> {
    Ok(AccountView {
        configuration: parse_configuration(&item.configuration)?,
        secret_fields: item.secret_paths.iter().map(display_path).collect(),
        account_id: item.account_id,
        account_type: item.account_type,
        provider: item.provider,
        label: item.label,
        connected: item.connected,
        status_reason: item.status_reason,
        expires_at: item.expires_at,
        created_at: item.created_at,
        updated_at: item.updated_at,
    })
}
