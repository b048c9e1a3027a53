//! Outreach shapes: channels, the initiate request, the message template, runs and their
//! communications as the API shows them.

mod communication;
mod requests;
mod runs;

pub use communication::{Accepted, CommunicationStatus, CommunicationView};
pub use requests::{
    DEFAULT_SUBJECT, InitiateRequest, MAX_BODY_CHARS, MAX_SUBJECT_CHARS, MessageTemplate,
    ScheduleRequest, StepRequest, single_line,
};
pub use runs::{
    InitiateResponse, MAX_COMMUNICATIONS_PER_RUN, MAX_SKIPPED_LISTED, RunCountChange, RunCounts,
    RunList, RunListQuery, RunStatus, RunView, Skipped, SkippedSummary, StepCounts,
};

use crate::targets::model::TargetView;

/// Placeholders every message may use (besides the target's custom fields).
pub use super::template::BUILT_IN_FIELDS as PLACEHOLDERS;
pub use super::template::RecipientSnapshot;
pub use super::template::render;

pub use crate::channel::Channel;

/// The channel's side that needs a target: where a target is reached on it.
impl Channel {
    /// The target's address on this channel, if it has one.
    pub fn address(self, target: &TargetView) -> Option<&str> {
        match self {
            Self::Email => target.email.as_deref(),
            Self::Twitter => target.twitter_username.as_deref(),
            Self::Instagram => target.instagram_username.as_deref(),
        }
    }

    /// The recipient's address on this channel, as the communication recorded it.
    pub fn recipient_address(self, recipient: &RecipientSnapshot) -> Option<&str> {
        match self {
            Self::Email => recipient.email.as_deref(),
            Self::Twitter => recipient.twitter_username.as_deref(),
            Self::Instagram => recipient.instagram_username.as_deref(),
        }
    }
}
