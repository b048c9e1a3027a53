//! Direct messages on X: the recipient's user id looked up by username (cached per warm
//! instance), then the DM sent with the account's token.

use serde_json::{Map, Value, json};

use super::{Delivery, Outcome, read_json};
use crate::accounts::store::AccountItem;
use crate::communications::store::CommunicationItem;

/// X user ids by (user, account, lower-case username).
pub(super) type XUserIds = std::collections::HashMap<(String, String, String), String>;

impl Delivery {
    pub(super) async fn send_x_dm(
        &self,
        client: &reqwest::Client,
        item: &CommunicationItem,
        account: &AccountItem,
        configuration: &Map<String, Value>,
        text: &str,
    ) -> Outcome {
        let Some(token) = configuration.get("access_token").and_then(Value::as_str) else {
            return Outcome::Failed("account_missing_credentials".into());
        };
        let Some(username) = item.recipient.twitter_username.as_deref() else {
            return Outcome::Failed("target_has_no_address".into());
        };
        let cache_key = (
            account.user_id.clone(),
            account.account_id.clone(),
            username.to_ascii_lowercase(),
        );
        let cached = self
            .x_user_ids
            .lock()
            .ok()
            .and_then(|ids| ids.get(&cache_key).cloned());
        let user_id = match cached {
            Some(id) => id,
            None => {
                let lookup = client
                    .get(format!("{}/2/users/by/username/{username}", self.apis.x))
                    .bearer_auth(token)
                    .send()
                    .await;
                let id = match read_json(lookup, false).await {
                    Ok(body) => match body.pointer("/data/id").and_then(Value::as_str) {
                        Some(id) => id.to_owned(),
                        None => return Outcome::Failed("recipient_not_found".into()),
                    },
                    Err(outcome) => return outcome,
                };
                if let Ok(mut ids) = self.x_user_ids.lock() {
                    ids.insert(cache_key, id.clone());
                }
                id
            }
        };
        let sent = client
            .post(format!(
                "{}/2/dm_conversations/with/{user_id}/messages",
                self.apis.x
            ))
            .bearer_auth(token)
            .json(&json!({"text": text}))
            .send()
            .await;
        match read_json(sent, true).await {
            Ok(_) => Outcome::Sent {
                provider_message_id: None,
            },
            Err(outcome) => outcome,
        }
    }
}
