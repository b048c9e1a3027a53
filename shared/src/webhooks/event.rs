//! What happened, as a webhook tells it: the event types of the contract and one event's
//! payload. Payloads carry ids and statuses only, never a secret, a token or a message body.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::ids::UserId;

/// Every event type a webhook can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    /// An account became usable (created connected, or connected at its provider).
    #[serde(rename = "account.connected")]
    AccountConnected,
    /// An account's grant is gone: the user must connect it again. Once per transition.
    #[serde(rename = "account.reauth_required")]
    AccountReauthRequired,
    /// An account that needed reconnecting works again.
    #[serde(rename = "account.recovered")]
    AccountRecovered,
    /// Every communication of a run is settled.
    #[serde(rename = "run.completed")]
    RunCompleted,
    /// A communication went out.
    #[serde(rename = "communication.sent")]
    CommunicationSent,
    /// A communication could not be sent (the reason is in the payload).
    #[serde(rename = "communication.failed")]
    CommunicationFailed,
    /// A sent email bounced permanently.
    #[serde(rename = "communication.bounced")]
    CommunicationBounced,
    /// The recipient marked a sent email as spam.
    #[serde(rename = "communication.complained")]
    CommunicationComplained,
    /// The recipient replied.
    #[serde(rename = "communication.replied")]
    CommunicationReplied,
    /// The recipient unsubscribed through the link of an outreach email.
    #[serde(rename = "communication.unsubscribed")]
    CommunicationUnsubscribed,
    /// Sent by `POST /webhooks/{id}/test` only.
    #[serde(rename = "webhook.test")]
    WebhookTest,
}

impl EventType {
    /// Every type, in the contract's order.
    pub const ALL: [EventType; 11] = [
        Self::AccountConnected,
        Self::AccountReauthRequired,
        Self::AccountRecovered,
        Self::RunCompleted,
        Self::CommunicationSent,
        Self::CommunicationFailed,
        Self::CommunicationBounced,
        Self::CommunicationComplained,
        Self::CommunicationReplied,
        Self::CommunicationUnsubscribed,
        Self::WebhookTest,
    ];

    /// The wire name, e.g. `communication.sent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccountConnected => "account.connected",
            Self::AccountReauthRequired => "account.reauth_required",
            Self::AccountRecovered => "account.recovered",
            Self::RunCompleted => "run.completed",
            Self::CommunicationSent => "communication.sent",
            Self::CommunicationFailed => "communication.failed",
            Self::CommunicationBounced => "communication.bounced",
            Self::CommunicationComplained => "communication.complained",
            Self::CommunicationReplied => "communication.replied",
            Self::CommunicationUnsubscribed => "communication.unsubscribed",
            Self::WebhookTest => "webhook.test",
        }
    }

    /// The type named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|event| event.as_str() == name)
    }
}

/// One event of one user, as it travels on the webhook queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// `msg_` + 32 hex digits: the `webhook-id` of every delivery and retry of this event.
    pub id: String,
    /// Whose event it is; only this user's endpoints get it.
    pub user_id: UserId,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When it happened (RFC 3339, UTC).
    pub timestamp: String,
    /// Ids and statuses.
    pub data: Value,
}

/// Namespace of the event ids (a random constant: ids are UUID v5 under it).
const EVENT_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x5b1e_6a0c_3f7d_4e2b_9c81_d04f_7a62_e913);

impl WebhookEvent {
    /// An event whose id is derived from `occurrence` (what makes this transition unique, e.g.
    /// a communication's id): a producer that emits the same transition twice (a retried
    /// message) emits the same id, and receivers deduplicate on `webhook-id`.
    /// `clock` tells when it happened (the producer's clock: tests move it).
    pub fn new(
        user_id: &UserId,
        event_type: EventType,
        occurrence: &str,
        data: Value,
        clock: &crate::clock::Clock,
    ) -> Self {
        let name = format!(
            "{}\n{}\n{occurrence}",
            user_id.as_str(),
            event_type.as_str()
        );
        let id = uuid::Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes());
        Self {
            id: format!("msg_{}", id.simple()),
            user_id: user_id.clone(),
            event_type,
            timestamp: clock.now_rfc3339(),
            data,
        }
    }

    /// The body every delivery of this event posts: `{type, timestamp, data}`.
    pub fn body(&self) -> String {
        serde_json::json!({
            "type": self.event_type.as_str(),
            "timestamp": self.timestamp,
            "data": self.data,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_its_wire_name() {
        for event in EventType::ALL {
            assert_eq!(EventType::parse(event.as_str()), Some(event));
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(json, format!("\"{}\"", event.as_str()));
        }
        assert_eq!(EventType::parse("account.deleted"), None);
    }

    #[test]
    fn an_event_is_timed_by_the_producers_clock() {
        let clock = crate::clock::Clock::adjustable();
        clock.advance(2 * crate::clock::DAY_SECONDS);
        let user = UserId::from_verified_sub("u1".into());
        let event = WebhookEvent::new(&user, EventType::RunCompleted, "r", Value::Null, &clock);
        let at = time::OffsetDateTime::parse(
            &event.timestamp,
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let ahead = at - time::OffsetDateTime::now_utc();
        assert!(ahead > time::Duration::days(1), "{ahead}");
        // The id names the occurrence, never the time: a retry on a moved clock is the same.
        let later = WebhookEvent::new(&user, EventType::RunCompleted, "r", Value::Null, &clock);
        assert_eq!(event.id, later.id);
    }

    #[test]
    fn the_same_occurrence_gets_the_same_id_and_another_one_another() {
        let user = UserId::from_verified_sub("u1".into());
        let data = serde_json::json!({"run_id": "r"});
        let clock = crate::clock::Clock::system();
        let first = WebhookEvent::new(&user, EventType::RunCompleted, "r", data.clone(), &clock);
        let again = WebhookEvent::new(&user, EventType::RunCompleted, "r", data.clone(), &clock);
        let other = WebhookEvent::new(&user, EventType::RunCompleted, "s", data.clone(), &clock);
        let other_user = WebhookEvent::new(
            &UserId::from_verified_sub("u2".into()),
            EventType::RunCompleted,
            "r",
            data,
            &clock,
        );
        assert_eq!(first.id, again.id);
        assert_ne!(first.id, other.id);
        assert_ne!(first.id, other_user.id);
        assert!(first.id.starts_with("msg_") && first.id.len() == 36);
        let body: Value = serde_json::from_str(&first.body()).unwrap();
        assert_eq!(body["type"], "run.completed");
        assert_eq!(body["data"]["run_id"], "r");
        assert!(body.get("user_id").is_none(), "the body names no user");
    }
}
