//! Direct messages on Instagram, inside the 24-hour window the person opened: Instagram allows
//! no cold messages.

use serde_json::{Map, Value, json};

use super::{DirectMessages, Outcome, read_json};
use crate::accounts::store::AccountItem;
use crate::communications::reason::FailureReason;
use crate::communications::store::CommunicationItem;

/// Reason of an Instagram message that cannot be sent: the person has not messaged the
/// business in the last 24 hours (or never).
pub const INSTAGRAM_WINDOW_CLOSED: &str = FailureReason::InstagramWindowClosed.as_str();

/// How long after a person's last message a business may answer on Instagram.
pub const INSTAGRAM_WINDOW_SECONDS: i64 = 24 * 3600;

const INSTAGRAM_CONVERSATION_PAGES: usize = 5;

/// In one page of conversations: the Instagram-scoped id of `username` when that person's last
/// message to the business is inside the messaging window.
fn open_conversation(page: &Value, business_id: &str, username: &str) -> Option<String> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    page["data"].as_array()?.iter().find_map(|conversation| {
        let person = conversation["participants"]["data"]
            .as_array()?
            .iter()
            .find(|p| {
                p["id"].as_str() != Some(business_id)
                    && p["username"]
                        .as_str()
                        .is_some_and(|name| name.eq_ignore_ascii_case(username))
            })?;
        let person_id = person["id"].as_str()?;
        let last_from_person = conversation["messages"]["data"]
            .as_array()?
            .iter()
            .filter(|message| message["from"]["id"].as_str() == Some(person_id))
            .filter_map(|message| message["created_time"].as_str().and_then(graph_time))
            .max()?;
        (now - last_from_person < INSTAGRAM_WINDOW_SECONDS).then(|| person_id.to_owned())
    })
}

/// A Graph API time (`2026-11-26T01:00:00+0000`, or RFC 3339) as Unix seconds.
fn graph_time(text: &str) -> Option<i64> {
    let graph = time::format_description::parse_borrowed::<2>(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory][offset_minute]",
    )
    .ok()?;
    time::OffsetDateTime::parse(text, &graph)
        .or_else(|_| {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        })
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

/// Direct messages through Instagram's Graph API at `base` (`INSTAGRAM_API_BASE_URL`).
#[derive(Clone)]
pub(super) struct InstagramMessages {
    base: String,
}

impl InstagramMessages {
    pub(super) fn new(base: String) -> Self {
        Self { base }
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
        let mut next = Some(format!(
            "{}/{ig_user_id}/conversations?platform=instagram&fields=participants,messages{{from,created_time}}",
            self.base
        ));
        let mut recipient = None;
        for _ in 0..INSTAGRAM_CONVERSATION_PAGES {
            let Some(url) = next.take() else { break };
            let page = client.get(&url).bearer_auth(token).send().await;
            let body = match read_json(page, false).await {
                Ok(body) => body,
                Err(outcome) => return outcome,
            };
            if let Some(found) = open_conversation(&body, ig_user_id, username) {
                recipient = Some(found);
                break;
            }
            next = body
                .pointer("/paging/next")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        let Some(recipient) = recipient else {
            return Outcome::Failed(FailureReason::InstagramWindowClosed.into());
        };
        let sent = client
            .post(format!("{}/{ig_user_id}/messages", self.base))
            .bearer_auth(token)
            .json(&json!({"recipient": {"id": recipient}, "message": {"text": text}}))
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
