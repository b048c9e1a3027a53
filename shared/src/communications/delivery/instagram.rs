//! Direct messages on Instagram, inside the 24-hour window the person opened: Instagram allows
//! no cold messages.

use serde_json::{Map, Value};

use super::{Accepted, DirectMessages, Outcome, read_json};
use crate::accounts::store::AccountItem;
use crate::communications::reason::FailureReason;
use crate::communications::store::CommunicationItem;
use crate::platforms::instagram;

/// Reason of an Instagram message that cannot be sent: the person has not messaged the
/// business in the last 24 hours (or never).
pub const INSTAGRAM_WINDOW_CLOSED: &str = FailureReason::InstagramWindowClosed.as_str();

/// How long after a person's last message a business may answer on Instagram.
pub const INSTAGRAM_WINDOW_SECONDS: i64 = instagram::WINDOW_SECONDS;

/// Direct messages through Instagram's Graph API at `base` (`INSTAGRAM_API_BASE_URL`).
#[derive(Clone)]
pub(super) struct InstagramMessages {
    base: String,
    /// What the messaging window and rate-limit resets are counted from.
    clock: crate::clock::Clock,
}

impl InstagramMessages {
    pub(super) fn new(base: String, clock: crate::clock::Clock) -> Self {
        Self { base, clock }
    }
}

impl DirectMessages for InstagramMessages {
    /// Instagram does not allow cold messages: a business may message a person only inside the
    /// 24-hour window the person opened by messaging it, and only by the Instagram-scoped id of
    /// that conversation. So the conversation with the target's username is looked up, its last
    /// message from the person must be under 24 hours old, and the message goes to that id.
    async fn send(
        &self,
        client: &reqwest::Client,
        item: &CommunicationItem,
        _account: &AccountItem,
        configuration: &Map<String, Value>,
        text: &str,
    ) -> Outcome {
        let (Some(token), Some(ig_user_id)) = (
            configuration.get("access_token").and_then(Value::as_str),
            configuration.get("ig_user_id").and_then(Value::as_str),
        ) else {
            return Outcome::Failed(FailureReason::AccountMissingCredentials.into());
        };
        let Some(username) = item.recipient.instagram_username.as_deref() else {
            return Outcome::Failed(FailureReason::TargetHasNoAddress.into());
        };
        let mut next = Some(instagram::conversations_url(&self.base, ig_user_id));
        let mut recipient = None;
        for _ in 0..instagram::CONVERSATION_PAGES {
            let Some(url) = next.take() else { break };
            let page = client.get(&url).bearer_auth(token).send().await;
            let body = match read_json(page, false, self.clock.epoch_seconds()).await {
                Ok(body) => body,
                Err(outcome) => return outcome,
            };
            if let Some(found) = instagram::open_conversation(
                &body,
                ig_user_id,
                username,
                self.clock.epoch_seconds(),
            ) {
                recipient = Some(found);
                break;
            }
            next = instagram::next_page(&body);
        }
        let Some(recipient) = recipient else {
            return Outcome::Failed(FailureReason::InstagramWindowClosed.into());
        };
        let sent = instagram::send_request(client, &self.base, token, ig_user_id, &recipient, text)
            .send()
            .await;
        match read_json(sent, true, self.clock.epoch_seconds()).await {
            Ok(_) => Outcome::Sent(Accepted::default()),
            Err(outcome) => outcome,
        }
    }
}
