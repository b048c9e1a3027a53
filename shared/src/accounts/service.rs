//! The accounts use cases: upsert with secret sealing, reads with masking, and the audited read of
//! decrypted secrets. Handlers call these and only translate HTTP.

use serde_json::{Map, Value};

use super::model::{
    AccountDraft, AccountId, AccountSecrets, AccountType, AccountView, UpsertAccountRequest,
};
use super::secrets::{self, SecretPath, StoredSecret, SubmittedSecret, display_path};
use super::store::{AccountItem, AccountStore};
use crate::auth::UserId;
use crate::envelope::{EncryptionContext, Envelope, EnvelopeCipher};
use crate::error::{Error, FieldError};

/// Whether an upsert made a new account or changed an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// A new account (201).
    Created,
    /// An existing account was replaced (200).
    Updated,
}

/// Accounts of users: storage plus the envelope that guards their secrets.
#[derive(Clone)]
pub struct AccountService {
    store: AccountStore,
    cipher: EnvelopeCipher,
}

impl AccountService {
    /// A service over a store and a cipher.
    pub fn new(store: AccountStore, cipher: EnvelopeCipher) -> Self {
        Self { store, cipher }
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
        items
            .into_iter()
            .filter(|item| account_type.is_none_or(|wanted| item.account_type == wanted))
            .map(view)
            .collect()
    }

    /// One account, masked; 404 when the user has none with this id. No KMS call.
    pub async fn get(&self, user: &UserId, account_id: &AccountId) -> Result<AccountView, Error> {
        let item = self
            .store
            .get(user, account_id)
            .await?
            .ok_or(Error::NotFound)?;
        view(item)
    }

    /// Creates or replaces an account by `account_id`. New secret values are sealed under a fresh
    /// data key; a posted mask keeps the stored value, and when every secret is kept unchanged
    /// the stored envelope is reused without calling KMS.
    pub async fn upsert(
        &self,
        user: &UserId,
        request: UpsertAccountRequest,
    ) -> Result<(Upserted, AccountView), Error> {
        let draft = request.parse()?;
        let existing = self.store.get(user, &draft.account_id).await?;
        let split = secrets::split(draft.configuration.clone());
        let secret_paths: Vec<SecretPath> =
            split.secrets.iter().map(|(path, _)| path.clone()).collect();
        let envelope = self
            .seal_secrets(user, &draft, existing.as_ref(), split.secrets)
            .await?;
        let now = crate::now_rfc3339();
        let configuration = serde_json::to_string(&split.masked).map_err(Error::internal)?;
        let item = AccountItem {
            user_id: user.as_str().to_owned(),
            account_id: draft.account_id.as_str().to_owned(),
            account_type: draft.account_type,
            provider: draft.provider,
            label: draft.label,
            configuration,
            secret_paths,
            secrets: envelope,
            connected: draft.connected,
            status_reason: draft.status_reason,
            created_at: existing
                .as_ref()
                .map_or_else(|| now.clone(), |old| old.created_at.clone()),
            updated_at: now,
            version: existing.as_ref().map_or(1, |old| old.version + 1),
        };
        let outcome = match &existing {
            None => {
                self.store.insert(&item).await?;
                Upserted::Created
            }
            Some(old) => {
                self.store.replace(&item, old.version).await?;
                Upserted::Updated
            }
        };
        Ok((outcome, view(item)?))
    }

    /// Disconnects an account: the item and its ciphertext are deleted.
    pub async fn delete(&self, user: &UserId, account_id: &AccountId) -> Result<(), Error> {
        self.store.delete(user, account_id).await
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
        let configuration = self.decrypted_configuration(&item).await?;
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
            user_id: &item.user_id,
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
        created_at: item.created_at,
        updated_at: item.updated_at,
    })
}
