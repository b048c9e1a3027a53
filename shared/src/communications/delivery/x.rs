//! Direct messages on X: the recipient's user id looked up by username (cached per warm
//! instance), then the DM sent with the account's token.

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use super::{Accepted, DirectMessages, Outcome, read_json};
use crate::accounts::store::AccountItem;
use crate::communications::reason::FailureReason;
use crate::communications::store::CommunicationItem;
use crate::ids::UserId;
use crate::platforms::x;

/// X user ids by (user, account, lower-case username).
type XUserIds = std::collections::HashMap<(UserId, crate::ids::AccountId, String), String>;

/// Direct messages through X's API at `base` (`X_API_BASE_URL`).
#[derive(Clone)]
pub(super) struct XMessages {
    base: String,
    /// One lookup per recipient per warm instance.
    user_ids: Arc<Mutex<XUserIds>>,
    /// What X's rate-limit reset is counted from.
    clock: crate::clock::Clock,
}

impl XMessages {
    pub(super) fn new(base: String, clock: crate::clock::Clock) -> Self {
        Self {
            base,
            user_ids: Arc::default(),
            clock,
        }
    }
}

impl DirectMessages for XMessages {
    async fn send(
        &self,
        client: &reqwest::Client,
        item: &CommunicationItem,
        account: &AccountItem,
        configuration: &Map<String, Value>,
        text: &str,
    ) -> Outcome {
        let Some(token) = configuration.get("access_token").and_then(Value::as_str) else {
            return Outcome::Failed(FailureReason::AccountMissingCredentials.into());
        };
        let Some(username) = item.recipient.twitter_username.as_deref() else {
            return Outcome::Failed(FailureReason::TargetHasNoAddress.into());
        };
        let cache_key = (
            account.user_id.clone(),
            account.account_id.clone(),
            username.to_ascii_lowercase(),
        );
        let cached = self
            .user_ids
            .lock()
            .ok()
            .and_then(|ids| ids.get(&cache_key).cloned());
        let user_id = match cached {
            Some(id) => id,
            None => {
                let lookup = x::user_lookup(client, &self.base, token, username)
                    .send()
                    .await;
                let id = match read_json(lookup, false, self.clock.epoch_seconds()).await {
                    Ok(body) => match x::user_id_of(&body) {
                        Some(id) => id.to_owned(),
                        None => return Outcome::Failed(FailureReason::RecipientNotFound.into()),
                    },
                    Err(outcome) => return outcome,
                };
                if let Ok(mut ids) = self.user_ids.lock() {
                    ids.insert(cache_key, id.clone());
                }
                id
            }
        };
        let sent = x::send_request(client, &self.base, token, &user_id, text)
            .send()
            .await;
        match read_json(sent, true, self.clock.epoch_seconds()).await {
            Ok(_) => Outcome::Sent(Accepted::default()),
            Err(outcome) => outcome,
        }
    }
}
