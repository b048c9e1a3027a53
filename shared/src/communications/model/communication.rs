//! One communication as the API shows it: where it stands, and what a provider said when it
//! accepted it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Channel;

/// Where a communication stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommunicationStatus {
    /// Waiting in the queue.
    Queued,
    /// A worker claimed it and is delivering it.
    Sending,
    /// Delivered to the provider.
    Sent,
    /// Not delivered; `reason` says why.
    Failed,
    /// Cancelled before it was sent.
    Cancelled,
    /// Its sender's daily cap was spent: it waits for the next day (`scheduled_for`).
    Scheduled,
    /// Sent, and the recipient's mail server accepted it (SES `Delivery` event).
    Delivered,
    /// Sent, and it bounced permanently (SES `Bounce` event); the address is suppressed.
    Bounced,
    /// Sent, and the recipient marked it as spam (SES `Complaint` event); the address is
    /// suppressed.
    Complained,
    /// Sent, and the recipient answered it (a reply found in the sender's mailbox).
    Replied,
}

impl CommunicationStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Scheduled => "scheduled",
            Self::Delivered => "delivered",
            Self::Bounced => "bounced",
            Self::Complained => "complained",
            Self::Replied => "replied",
        }
    }

    /// Whether the communication is finished (nothing more will be sent; feedback from the
    /// provider may still move a sent one to `delivered`, `bounced` or `complained`).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Sent
                | Self::Failed
                | Self::Cancelled
                | Self::Delivered
                | Self::Bounced
                | Self::Complained
                | Self::Replied
        )
    }

    /// Whether it waits for a worker (on the queue now, or when its day comes).
    pub fn is_waiting(self) -> bool {
        matches!(self, Self::Queued | Self::Scheduled)
    }
}

/// What a provider said of a message it accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// The provider's id of the message (SES's `MessageId`, which its feedback names; Gmail's
    /// message id); `None` for direct messages and Graph, which answers none.
    pub provider_message_id: Option<String>,
    /// The mailbox thread it went into (Gmail's `threadId`), which replies join.
    pub thread_id: Option<String>,
    /// Our `Message-ID` of a message sent through a mailbox, which replies name.
    pub internet_message_id: Option<String>,
}

/// One communication of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CommunicationView {
    /// Id of the communication.
    pub communication_id: String,
    /// Its step in the run's sequence (1: the first message).
    pub step: u32,
    /// The target.
    #[schema(value_type = String)]
    pub target_id: crate::ids::TargetId,
    /// The channel it travels on.
    pub channel: Channel,
    /// Where it stands.
    pub status: CommunicationStatus,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// RFC 3339: when a `scheduled` communication may go out (the next UTC day).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<String>,
    /// RFC 3339: when the recipient's reply arrived, once `replied`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replied_at: Option<String>,
    /// RFC 3339 of the last change.
    pub updated_at: String,
}
