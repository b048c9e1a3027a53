//! The account's secrets at rest: split from the configuration, sealed in a fresh envelope per
//! write (a mask keeps the stored value at the same place), and opened for the worker and
//! `/secrets`. No other file calls the cipher for accounts.

use serde_json::{Map, Value};

use super::model::{AccountDraft, AccountId, AccountSecrets};
use super::refresh::TokenFailure;
use super::secrets::{self, SecretPath, StoredSecret, SubmittedSecret, display_path};
use super::service::{AccountService, parse_configuration};
use super::store::{AccountItem, REAUTH_REQUIRED, SealedConfiguration};
use crate::envelope::{EncryptionContext, Envelope};
use crate::error::{Error, FieldError};
use crate::ids::UserId;
use crate::platforms::oauth::RefreshFailure;

impl AccountService {
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
            account_id: item.account_id.into(),
            account_type: item.account_type,
            provider: item.provider,
            configuration,
        })
    }

    /// Splits a full configuration into its masked JSON and its secrets, sealed under a fresh
    /// data key (no KMS call when it has no secrets).
    pub(crate) async fn seal_configuration(
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

    pub(crate) async fn open(
        &self,
        item: &AccountItem,
        envelope: &Envelope,
    ) -> Result<Vec<StoredSecret>, Error> {
        let context = EncryptionContext {
            table: self.store.table(),
            user_id: item.user_id.as_str(),
            account_id: item.account_id.as_str(),
        };
        let plaintext = self.cipher.open(context, envelope).await?;
        serde_json::from_slice(&plaintext).map_err(Error::internal)
    }

    pub(crate) async fn seal_secrets(
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
