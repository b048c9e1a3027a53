//! The accounts use cases: create, read, update and delete accounts, and the audited read of
//! decrypted secrets. Handlers call these and only translate HTTP. Token refresh
//! ([`super::refresh`]), sealing ([`super::vault`]) and sender ownership
//! ([`super::sender::ownership`]) are the same service's other use cases, a file each.

use serde_json::{Map, Value};

use super::model::{AccountId, AccountType, AccountView, UpsertAccountRequest};
use super::secrets::{self, SecretPath, display_path};
use super::sender::SenderVerification;
use super::sender::{PENDING_CHECKS_PER_LIST, is_pending_sender, mark_pending};
use super::store::{AccountItem, AccountStore, SENDER_TAKEN, SenderClaim, SenderWrite};
use crate::envelope::EnvelopeCipher;
use crate::error::Error;
use crate::ids::UserId;
use crate::platforms::Provider;
use crate::platforms::oauth::TokenEndpoints;
use crate::targets::model::Email;

/// How [`AccountService::save`] writes, beyond a plain upsert.
#[derive(Debug, Clone, Default)]
pub(crate) struct SaveOptions {
    /// `(created_at, updated_at)` to keep (accounts moved in from another store).
    pub timestamps: Option<(String, String)>,
    /// The version the caller read (`Some(None)`: no account); a different one is 409.
    pub expected_version: Option<Option<u64>>,
    /// The write stores a new OAuth grant: a refresh of the old one in progress loses its lease.
    pub new_grant: bool,
    /// When the provider last confirmed the account's identity.
    pub checked_at: Option<String>,
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
    pub(super) store: AccountStore,
    pub(super) cipher: EnvelopeCipher,
    pub(super) senders: SenderVerification,
    pub(super) tokens: TokenEndpoints,
    pub(super) connect: super::connect::settings::ConnectSettings,
    /// What the service's timestamps, leases, sessions and claims read (tests move it).
    pub(super) clock: crate::clock::Clock,
}

impl AccountService {
    /// A service over a store, a cipher, SES's sender identities and the platforms' token
    /// endpoints.
    pub fn new(
        store: AccountStore,
        cipher: EnvelopeCipher,
        senders: SenderVerification,
        tokens: TokenEndpoints,
        connect: super::connect::settings::ConnectSettings,
    ) -> Self {
        Self {
            store,
            cipher,
            senders,
            tokens,
            connect,
            clock: crate::clock::Clock::system(),
        }
    }

    /// The same service telling time by `clock`, its store too.
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.store = self.store.with_clock(clock.clone());
        self.clock = clock;
        self
    }

    /// The service every function that touches accounts uses, from the functions' settings
    /// (`ACCOUNTS_TABLE`, `SECRETS_KMS_KEY_ID`, the platforms' URLs, `OAUTH_CLIENTS_SECRET_ARN`,
    /// `PUBLIC_API_BASE_URL`, `CORS_ALLOWED_ORIGINS`) and one SDK configuration; built once per
    /// cold start.
    pub fn from_config(
        source: &crate::config::ConfigSource<'_>,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, crate::config::ConfigError> {
        use crate::config::vars;
        Ok(Self::new(
            AccountStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                source.required(vars::ACCOUNTS_TABLE)?,
            )
            .with_events(crate::webhooks::EventPublisher::from_source(source, sdk)),
            EnvelopeCipher::new(
                aws_sdk_kms::Client::new(sdk),
                source.required(vars::SECRETS_KMS_KEY_ID)?,
            ),
            SenderVerification::new(aws_sdk_sesv2::Client::new(sdk)),
            TokenEndpoints::new(
                crate::platforms::PlatformApis::from_source(source),
                aws_sdk_secretsmanager::Client::new(sdk),
                source.optional(vars::OAUTH_CLIENTS_SECRET_ARN),
            ),
            super::connect::settings::ConnectSettings::from_source(source),
        ))
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
        let options = SaveOptions {
            timestamps,
            ..SaveOptions::default()
        };
        self.save(user, request, options).await
    }

    /// The one write path of accounts: validates, claims or keeps the sender, seals the
    /// secrets and writes the account (conditional on the version read, or on `options`).
    pub(crate) async fn save(
        &self,
        user: &UserId,
        request: UpsertAccountRequest,
        options: SaveOptions,
    ) -> Result<(Upserted, AccountView), Error> {
        let timestamps = options.timestamps;
        let mut draft = request.parse()?;
        let existing = self.store.get(user, &draft.account_id).await?;
        if let Some(expected) = options.expected_version
            && existing.as_ref().map(|item| item.version) != expected
        {
            return Err(super::store::concurrent_change());
        }
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
        let now = self.clock.now_rfc3339();
        let (created_at, updated_at) = match timestamps {
            Some((created, updated)) => (Some(created), updated),
            None => (None, now.clone()),
        };
        let configuration = serde_json::to_string(&split.masked).map_err(Error::internal)?;
        let is_mailbox = Provider::of_account(draft.account_type, draft.provider.as_deref())
            .is_some_and(Provider::is_mailbox);
        let mut item = AccountItem {
            user_id: user.clone(),
            account_id: draft.account_id.clone(),
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
            // A refresh in progress keeps its lease: it merges its tokens into this write. A new
            // grant ends it instead: the old grant's refreshed tokens must not overwrite it.
            refresh_lease_until: existing
                .as_ref()
                .and_then(|old| old.refresh_lease_until)
                .filter(|_| !options.new_grant),
            refresh_lease_id: existing
                .as_ref()
                .and_then(|old| old.refresh_lease_id.clone())
                .filter(|_| !options.new_grant),
            // A mailbox saved with typed values (tokens, address) is confirmed with its
            // provider again before it sends (`sender::mailbox`); a connect just confirmed it.
            last_checked_at: options.checked_at.or_else(|| {
                existing
                    .as_ref()
                    .filter(|_| !is_mailbox)
                    .and_then(|old| old.last_checked_at.clone())
            }),
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
        let after = (item.connected, item.status_reason.as_deref());
        match existing {
            None => {
                self.store.insert(item, sender).await?;
                self.store.announce(item, None, after, item.version).await;
                Ok(Upserted::Created)
            }
            Some(old) => {
                self.store
                    .replace(item, old.version, sender, released)
                    .await?;
                let before = (old.connected, old.status_reason.as_deref());
                self.store
                    .announce(item, Some(before), after, item.version)
                    .await;
                Ok(Upserted::Updated)
            }
        }
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
}

pub(super) fn parse_configuration(text: &str) -> Result<Map<String, Value>, Error> {
    serde_json::from_str(text).map_err(Error::internal)
}

/// The masked view of a stored account.
pub fn view(item: AccountItem) -> Result<AccountView, Error> {
    Ok(AccountView {
        configuration: parse_configuration(&item.configuration)?,
        secret_fields: item.secret_paths.iter().map(display_path).collect(),
        account_id: item.account_id.into(),
        account_type: item.account_type,
        provider: item.provider,
        label: item.label,
        connected: item.connected,
        status_reason: item.status_reason,
        expires_at: item.expires_at,
        created_at: item.created_at,
        updated_at: item.updated_at,
        last_checked_at: item.last_checked_at,
    })
}
