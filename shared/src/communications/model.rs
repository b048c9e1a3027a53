//! Outreach shapes: channels, the initiate request, the message template, runs and their
//! communications as the API shows them.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::FieldError;
use crate::targets::model::TargetView;

/// Most communications one run may hold.
pub const MAX_COMMUNICATIONS_PER_RUN: usize = 1_000;
/// Longest message body, in characters.
pub const MAX_BODY_CHARS: usize = 10_000;
/// Longest subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 200;
/// Subject of an email whose request gave none.
pub const DEFAULT_SUBJECT: &str = "Hello {{name}}";
/// Placeholders every message may use (besides the target's custom fields).
pub use super::template::BUILT_IN_FIELDS as PLACEHOLDERS;

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
}

/// The message to send, with `{{placeholder}}`s for target fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageTemplate {
    /// Email subject (default `Hello {{name}}`); unused by social channels.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub subject: Option<String>,
    /// The text, 1-10,000 characters.
    #[schema(min_length = 1, max_length = 10000)]
    pub body: String,
}

/// One step of `steps` in the initiate body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    /// What this step sends; an email follow-up without a subject is `Re: <first subject>`.
    pub message: MessageTemplate,
    /// How long after the previous step was sent (ISO 8601, `PT1M` to `P30D`, a day being 24
    /// hours); on every step but the first.
    #[serde(default)]
    #[schema(example = "P3D")]
    pub wait: Option<String>,
}

/// A run's send window: nothing goes out outside it; a send that falls outside waits,
/// `scheduled`, for the next opening. A target's own `timezone` overrides the run's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// IANA time zone (default `UTC`).
    #[serde(default)]
    #[schema(example = "Europe/Paris")]
    pub timezone: Option<String>,
    /// Days it opens (default every day), of `mon`, `tue`, `wed`, `thu`, `fri`, `sat`, `sun`.
    #[serde(default)]
    pub days: Option<Vec<String>>,
    /// Opening time, `HH:MM`.
    #[schema(example = "09:00")]
    pub start: String,
    /// Closing time, `HH:MM`, after `start`.
    #[schema(example = "17:00")]
    pub end: String,
}

/// Body of `POST /api/user/orchestrator/initiate-communications`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"message": {"subject": "Hi {{name}}", "body": "Hello {{first_name}}, ..."}}))]
pub struct InitiateRequest {
    /// Targets to reach (default: every active target).
    #[serde(default)]
    #[schema(value_type = Option<Vec<uuid::Uuid>>)]
    pub target_ids: Option<Vec<String>>,
    /// Channels to use (default: every channel the target has and the user has a connected
    /// account for).
    #[serde(default)]
    pub channels: Option<Vec<Channel>>,
    /// The message of a one-step run (give this or `steps`).
    #[serde(default)]
    pub message: Option<MessageTemplate>,
    /// A sequence: the first message and up to four follow-ups, each `wait` after the one
    /// before was sent, stopped for a person who replies, unsubscribes, bounces or complains
    /// (give this or `message`).
    #[serde(default)]
    pub steps: Option<Vec<StepRequest>>,
    /// When messages may go out (default: any time).
    #[serde(default)]
    pub schedule: Option<ScheduleRequest>,
    /// The accounts that send, at most one per channel (default: on each channel, the user's
    /// first connected account by id).
    #[serde(default)]
    pub account_ids: Option<Vec<String>>,
}

impl MessageTemplate {
    /// Checks lengths and that every placeholder is well formed.
    pub fn validate(&self) -> Vec<FieldError> {
        self.validate_at("message")
    }

    /// [`MessageTemplate::validate`] with the fields named under `prefix` (`steps[1].message`).
    pub fn validate_at(&self, prefix: &str) -> Vec<FieldError> {
        let mut problems = Vec::new();
        let (subject_field, body_field) = (format!("{prefix}.subject"), format!("{prefix}.body"));
        let body_chars = self.body.trim().chars().count();
        if body_chars == 0 || self.body.chars().count() > MAX_BODY_CHARS {
            problems.push(FieldError::new(
                body_field.clone(),
                "must be 1-10,000 characters",
            ));
        }
        if let Some(subject) = &self.subject
            && subject.chars().count() > MAX_SUBJECT_CHARS
        {
            problems.push(FieldError::new(
                subject_field.clone(),
                "must be at most 200 characters",
            ));
        }
        for (field, text) in [
            (&subject_field, self.subject.as_deref()),
            (&body_field, Some(self.body.as_str())),
        ] {
            for problem in super::template::problems(text.unwrap_or_default()) {
                problems.push(FieldError::new(field.clone(), problem));
            }
        }
        problems
    }
}

pub use super::template::render;

/// A one-line header value: line breaks and other control characters become spaces, so a
/// rendered subject can never start another header.
pub fn single_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

pub use super::template::RecipientSnapshot;

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

/// Where a run stands, derived from its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Nothing picked up yet.
    Queued,
    /// Some communications are being or have been delivered.
    Running,
    /// Every communication finished and none failed.
    Completed,
    /// Every communication finished and some failed.
    CompletedWithErrors,
}

/// A target/channel pair that the run leaves out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Skipped {
    /// The target.
    pub target_id: String,
    /// The channel it travels on.
    pub channel: Channel,
    /// `target_has_no_address` or `no_connected_account`.
    pub reason: String,
}

/// Most skipped pairs a run lists one by one; the rest are counted by reason. A bulk run over
/// 10,000 Instagram-only targets skips up to 20,000 pairs, far more than one DynamoDB item
/// (400 KB) or a readable answer holds.
pub const MAX_SKIPPED_LISTED: usize = 100;

/// What a run left out: the first [`MAX_SKIPPED_LISTED`] pairs, and every pair counted by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedSummary {
    /// The first pairs left out, in plan order.
    pub listed: Vec<Skipped>,
    /// How many pairs were left out in all.
    pub total: u32,
    /// How many pairs were left out, by reason.
    pub by_reason: std::collections::BTreeMap<String, u32>,
}

impl SkippedSummary {
    /// Summarises every skipped pair of a plan.
    pub fn of(skipped: Vec<Skipped>) -> Self {
        let mut summary = Self::default();
        for pair in skipped {
            summary.total = summary.total.saturating_add(1);
            *summary.by_reason.entry(pair.reason.clone()).or_default() += 1;
            if summary.listed.len() < MAX_SKIPPED_LISTED {
                summary.listed.push(pair);
            }
        }
        summary
    }
}

/// Answer of initiate (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InitiateResponse {
    /// The run.
    pub run_id: String,
    /// How many communications were queued.
    pub queued: usize,
    /// What was left out: the first 100 pairs (all of them when there are at most 100).
    pub skipped: Vec<Skipped>,
    /// How many pairs were left out in all.
    #[serde(default)]
    pub skipped_total: u32,
    /// How many pairs were left out, by reason.
    #[serde(default)]
    pub skipped_counts: std::collections::BTreeMap<String, u32>,
}

impl InitiateResponse {
    /// The answer for a run.
    pub fn new(run_id: String, queued: usize, skipped: SkippedSummary) -> Self {
        Self {
            run_id,
            queued,
            skipped: skipped.listed,
            skipped_total: skipped.total,
            skipped_counts: skipped.by_reason,
        }
    }
}

/// Counts of a run's communications by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunCounts {
    /// All communications of the run.
    pub total: u32,
    /// Not finished yet (queued, scheduled or sending).
    pub pending: u32,
    /// Accepted by the platform (SES, the mailbox, X or Instagram).
    pub sent: u32,
    /// Ended without being sent (the communication's `reason` says why).
    pub failed: u32,
    /// Stopped before they were sent (by the user, or a follow-up's stop rule).
    pub cancelled: u32,
    /// Of the pending ones: waiting for a later day (their sender's daily cap was spent).
    #[serde(default)]
    pub scheduled: u32,
    /// Of the sent ones: accepted by the recipient's mail server (SES feedback).
    #[serde(default)]
    pub delivered: u32,
    /// Of the sent ones: bounced permanently (SES feedback).
    #[serde(default)]
    pub bounced: u32,
    /// Of the sent ones: reported as spam by the recipient (SES feedback).
    #[serde(default)]
    pub complained: u32,
    /// Of the sent ones: answered by the recipient (a reply in the sender's mailbox).
    #[serde(default)]
    pub replied: u32,
}

/// A change to a run's stored counters, one named field per counter (the attribute names are
/// fixed in [`RunCountChange::terms`]); zero fields are left out of the update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCountChange {
    /// Communications in the run (a follow-up joins when the step before it is sent).
    pub total: i64,
    /// Communications not finished yet.
    pub remaining: i64,
    /// Communications accepted by the platform.
    pub sent: i64,
    /// Communications that ended without being sent.
    pub failed: i64,
    /// Communications stopped before they were sent.
    pub cancelled: i64,
    /// Waiting for a later day.
    pub scheduled: i64,
    /// Delivered (SES feedback).
    pub delivered: i64,
    /// Bounced (SES feedback).
    pub bounced: i64,
    /// Complained (SES feedback).
    pub complained: i64,
    /// Replied (found in the sender's mailbox).
    pub replied: i64,
}

impl RunCountChange {
    /// The stored attribute and delta of each counter that changes, in a fixed order.
    pub fn terms(&self) -> Vec<(&'static str, i64)> {
        [
            ("total", self.total),
            ("remaining", self.remaining),
            ("sent", self.sent),
            ("failed", self.failed),
            ("cancelled", self.cancelled),
            ("scheduled", self.scheduled),
            ("delivered", self.delivered),
            ("bounced", self.bounced),
            ("complained", self.complained),
            ("replied", self.replied),
        ]
        .into_iter()
        .filter(|(_, delta)| *delta != 0)
        .collect()
    }
}

/// How one step's communications stand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct StepCounts {
    /// The step (1: the first message).
    pub step: u32,
    /// Its communications so far (a follow-up exists once the step before it was sent).
    pub total: u32,
    /// How many are in each status (`sent`, `scheduled`, `replied`, `cancelled`, …).
    pub by_status: std::collections::BTreeMap<String, u32>,
    /// Of the cancelled, how many for each reason (`replied`, `unsubscribed`, `bounced`,
    /// `complained`, `cancelled_by_user`, `target_deleted`).
    pub cancelled_by_reason: std::collections::BTreeMap<String, u32>,
}

impl StepCounts {
    /// Each step's counts, from a run's communications.
    pub fn of(communications: &[CommunicationView]) -> Vec<Self> {
        let mut steps: std::collections::BTreeMap<u32, Self> = std::collections::BTreeMap::new();
        for communication in communications {
            let counts = steps.entry(communication.step).or_insert_with(|| Self {
                step: communication.step,
                ..Self::default()
            });
            counts.total += 1;
            *counts
                .by_status
                .entry(communication.status.as_str().to_owned())
                .or_insert(0) += 1;
            if communication.status == CommunicationStatus::Cancelled {
                *counts
                    .cancelled_by_reason
                    .entry(communication.reason.clone().unwrap_or_default())
                    .or_insert(0) += 1;
            }
        }
        steps.into_values().collect()
    }
}

/// One communication of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CommunicationView {
    /// Id of the communication.
    pub communication_id: String,
    /// Its step in the run's sequence (1: the first message).
    pub step: u32,
    /// The target.
    pub target_id: String,
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

/// A run as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RunView {
    /// The run's id (a UUID v7: runs sort by creation).
    pub run_id: String,
    /// Status, derived from the counts.
    pub status: RunStatus,
    /// Whether cancelling was asked for.
    pub cancel_requested: bool,
    /// Counts by outcome.
    pub counts: RunCounts,
    /// Left out when the run was created: the first 100 pairs.
    pub skipped: Vec<Skipped>,
    /// How many pairs were left out in all.
    pub skipped_total: u32,
    /// How many pairs were left out, by reason.
    pub skipped_counts: std::collections::BTreeMap<String, u32>,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
    /// RFC 3339, once every communication finished.
    pub completed_at: Option<String>,
    /// Each communication (only in `GET .../runs/{run_id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub communications: Option<Vec<CommunicationView>>,
    /// Per step of the sequence, how its communications stand (only in `GET .../runs/{run_id}`,
    /// from the communications listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepCounts>,
}

/// Answer of `GET /api/user/orchestrator/runs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    /// Recent runs, newest first, without their communications.
    pub runs: Vec<RunView>,
}

/// Query of `GET /api/user/orchestrator/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunListQuery {
    /// How many runs, 1-100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<crate::paging::PageLimit>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_stay_on_one_line() {
        assert_eq!(
            single_line("Hi\r\nBcc: evil@example.com"),
            "Hi  Bcc: evil@example.com"
        );
    }

    #[test]
    fn unknown_placeholders_and_empty_bodies_are_refused() {
        let message = MessageTemplate {
            subject: Some("{{Name!}}".into()),
            body: " ".into(),
        };
        let fields: Vec<String> = message.validate().into_iter().map(|p| p.field).collect();
        assert_eq!(fields, ["message.body", "message.subject"]);
    }
}
