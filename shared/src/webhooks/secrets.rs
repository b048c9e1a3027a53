//! Endpoint signing secrets at rest: sealed with the accounts' KMS envelope, bound to the
//! webhooks table, the user and the endpoint (`account_id` of the context is `webhook:<id>`),
//! so a sealed secret moved to another item does not open. Opened secrets are cached for the
//! life of the process: one KMS call per endpoint per cold start, not one per delivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use super::signing::SigningSecret;
use super::store::EndpointItem;
use crate::envelope::{EncryptionContext, Envelope, EnvelopeCipher};
use crate::error::Error;
use crate::ids::{UserId, WebhookId};

/// Opened secrets by (webhook id, wrapped data key).
type OpenedSecrets = Arc<Mutex<HashMap<(WebhookId, Vec<u8>), Zeroizing<Vec<u8>>>>>;

/// Seals and opens endpoint secrets.
#[derive(Clone)]
pub struct EndpointSecrets {
    cipher: EnvelopeCipher,
    table: String,
    opened: OpenedSecrets,
}

impl EndpointSecrets {
    /// Secrets sealed with `cipher`, bound to `table`.
    pub fn new(cipher: EnvelopeCipher, table: impl Into<String>) -> Self {
        Self {
            cipher,
            table: table.into(),
            opened: Arc::default(),
        }
    }

    fn context<'a>(&'a self, user: &'a UserId, item_id: &'a str) -> EncryptionContext<'a> {
        EncryptionContext {
            table: &self.table,
            user_id: user.as_str(),
            account_id: item_id,
        }
    }

    /// Seals a new endpoint's secret (one KMS call).
    pub async fn seal(
        &self,
        user: &UserId,
        webhook_id: &WebhookId,
        secret: &SigningSecret,
    ) -> Result<Envelope, Error> {
        let item_id = format!("webhook:{webhook_id}");
        self.cipher
            .seal(self.context(user, &item_id), secret.bytes())
            .await
    }

    /// The endpoint's secret: from the process's cache, or opened (one KMS call).
    pub async fn open(&self, endpoint: &EndpointItem) -> Result<SigningSecret, Error> {
        let cache_key = (endpoint.webhook_id, endpoint.secret.wrapped_key.clone());
        if let Some(bytes) = self
            .opened
            .lock()
            .ok()
            .and_then(|opened| opened.get(&cache_key).cloned())
        {
            return Ok(SigningSecret::from_bytes(bytes));
        }
        let item_id = format!("webhook:{}", endpoint.webhook_id);
        let bytes = self
            .cipher
            .open(self.context(&endpoint.user_id, &item_id), &endpoint.secret)
            .await?;
        if let Ok(mut opened) = self.opened.lock() {
            opened.insert(cache_key, bytes.clone());
        }
        Ok(SigningSecret::from_bytes(bytes))
    }
}
