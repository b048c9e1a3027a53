//! What the runs table holds: the run and communication items, their sort keys and the index
//! keys they carry. The other files of the store read and write these.

use serde::{Deserialize, Serialize};

use super::super::model::{
    Channel, CommunicationStatus, CommunicationView, MessageTemplate, RecipientSnapshot, RunCounts,
    RunStatus, RunView, Skipped, SkippedSummary,
};
use super::super::sequence::{FollowUp, STEP_INDEX_STRIDE, message_of_step};
use crate::ids::{RunId, UserId};

pub(super) const RUN_PREFIX: &str = "R#";
pub(super) const QUOTA_PREFIX: &str = "#runs-per-minute#";
/// Runs one user may start per minute; the next gets 429 with `Retry-After`.
pub const RUNS_PER_MINUTE: u32 = 10;
pub(super) const COMMUNICATION_PREFIX: &str = "C#";
pub(super) const DAILY_SENDS_PREFIX: &str = "#sends-per-day#";
/// Partition of the pointer from a provider's message id to its communication. User ids never
/// start with `#` (the authenticator refuses such a `sub`), so it cannot meet a user's partition.
pub(super) const PROVIDER_MESSAGE_PREFIX: &str = "#provider-message#";
/// Days a provider message id stays resolvable (feedback comes within days; complaints can
/// trail by weeks).
pub(super) const PROVIDER_MESSAGE_DAYS: i64 = 90;
/// Slot of the communication's own update in its state-change transactions (the run's counters
/// and pointers come after it).
pub(super) const COMMUNICATION_SLOT: usize = 0;
/// The runs table's index of communications not yet settled, by `in_flight_day`
/// (template.yaml): the sweeper reads it to find the ones a lost message or a dead worker left.
pub const IN_FLIGHT_INDEX: &str = "in_flight";
/// Partitions per day of the in-flight index, so one day's writes spread over several.
pub const IN_FLIGHT_SHARDS: u32 = 4;

/// The in-flight index key of a communication created at `epoch` with `index`.
pub fn in_flight_key(epoch: i64, index: u32) -> String {
    format!(
        "{}#{}",
        crate::clock::utc_day(epoch),
        index % IN_FLIGHT_SHARDS
    )
}

/// The runs table's index of scheduled communications, by `scheduled_day` (template.yaml).
pub const SCHEDULED_INDEX: &str = "scheduled";

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunItem {
    /// The user it belongs to (the token's `sub`).
    pub user_id: UserId,
    /// `R#<run_id>`.
    pub sk: String,
    /// Id (UUID v7).
    pub run_id: RunId,
    /// Its communications counted by outcome, stored as flat attributes ([`stored_counts`]).
    #[serde(flatten, with = "stored_counts")]
    pub counts: RunCounts,
    /// Communications with an index below this are on the queue.
    pub enqueued_through: u32,
    /// Whether cancelling was asked for.
    #[serde(default)]
    pub cancel_requested: bool,
    /// Pairs left out (the first [`MAX_SKIPPED_LISTED`](super::model::MAX_SKIPPED_LISTED)).
    pub skipped: Vec<Skipped>,
    /// How many pairs were left out in all (absent on runs stored before it was counted).
    #[serde(default)]
    pub skipped_total: u32,
    /// Pairs left out, by reason.
    #[serde(default)]
    pub skipped_counts: std::collections::BTreeMap<String, u32>,
    /// The message (the first step's).
    pub message: MessageTemplate,
    /// The follow-ups, in order (steps 2 and on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follow_ups: Vec<FollowUp>,
    /// When its messages may go out (none: any time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<super::super::window::SendWindow>,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
    /// RFC 3339 of the first delivery attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339 of the last communication's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
}

impl RunItem {
    /// A new run with nothing sent yet, created at `created_at` (RFC 3339).
    pub fn new(
        user: &UserId,
        run_id: &RunId,
        total: u32,
        skipped: SkippedSummary,
        message: MessageTemplate,
        created_at: String,
    ) -> Self {
        Self {
            user_id: user.clone(),
            sk: format!("{RUN_PREFIX}{run_id}"),
            run_id: *run_id,
            counts: RunCounts {
                total,
                pending: total,
                ..RunCounts::default()
            },
            enqueued_through: 0,
            cancel_requested: false,
            skipped: skipped.listed,
            skipped_total: skipped.total,
            skipped_counts: skipped.by_reason,
            message,
            follow_ups: Vec::new(),
            window: None,
            created_at,
            started_at: None,
            completed_at: None,
        }
    }

    /// The message step `step` sends (a follow-up's email subject filled in); `None` past the
    /// last step.
    pub fn message_of_step(&self, step: u32) -> Option<MessageTemplate> {
        message_of_step(&self.message, &self.follow_ups, step)
    }

    /// The follow-up after step `step`, if the sequence has one.
    pub fn follow_up_after(&self, step: u32) -> Option<&FollowUp> {
        self.follow_ups
            .get(usize::try_from(step).ok()?.checked_sub(1)?)
    }

    /// The run's status, derived from its counters.
    pub fn status(&self) -> RunStatus {
        let counts = &self.counts;
        if counts.pending == 0 {
            if counts.failed == 0 {
                RunStatus::Completed
            } else {
                RunStatus::CompletedWithErrors
            }
        } else if self.started_at.is_some() || counts.pending < counts.total {
            RunStatus::Running
        } else {
            RunStatus::Queued
        }
    }

    /// The API view, with the communications when given.
    pub fn view(&self, communications: Option<Vec<CommunicationView>>) -> RunView {
        RunView {
            run_id: self.run_id.to_string(),
            status: self.status(),
            cancel_requested: self.cancel_requested,
            counts: self.counts.clone(),
            skipped: self.skipped.clone(),
            skipped_total: self.skipped_total.max(self.skipped.len() as u32),
            skipped_counts: self.skipped_counts.clone(),
            created_at: self.created_at.clone(),
            completed_at: self.completed_at.clone(),
            steps: communications
                .as_deref()
                .filter(|_| !self.follow_ups.is_empty())
                .map(super::super::model::StepCounts::of)
                .unwrap_or_default(),
            communications,
        }
    }
}

/// A communication as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunicationItem {
    /// The user it belongs to (the token's `sub`).
    pub user_id: UserId,
    /// `C#<run_id>#<index>`.
    pub sk: String,
    /// The run.
    pub run_id: RunId,
    /// Position in the run (enqueue order); a follow-up's is its first step's plus
    /// [`STEP_INDEX_STRIDE`] per step.
    pub index: u32,
    /// Its step in the sequence (1: the first message).
    #[serde(default = "first_step", skip_serializing_if = "is_first_step")]
    pub step: u32,
    /// A follow-up's earlier messages' `Message-ID`s, oldest first (known for mailbox sends):
    /// its `In-Reply-To` is the last, its `References` all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    /// The target.
    pub target_id: crate::ids::TargetId,
    /// The channel it travels on.
    pub channel: Channel,
    /// The account that sends it.
    pub account_id: crate::ids::AccountId,
    /// The target's fields when the run was made.
    pub recipient: RecipientSnapshot,
    /// Where it stands; a final state never changes again.
    pub status: CommunicationStatus,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Delivery attempts started.
    #[serde(default)]
    pub attempts: u32,
    /// When the current attempt started (epoch seconds), while `sending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_since: Option<i64>,
    /// While `scheduled`: the epoch second from which it may be sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<i64>,
    /// While `scheduled`: the UTC day of `scheduled_for`, the key of the `scheduled` index
    /// the release sweep reads (removed when claimed, so the index holds only waiting ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_day: Option<String>,
    /// While not settled (queued, sending): the key of the `in_flight` index the sweeper reads
    /// ([`in_flight_key`]); removed when it ends or waits for a later day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight_day: Option<String>,
    /// The provider's id of the sent message (SES `MessageId`), which its feedback names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    /// The mailbox thread it went into (Gmail's `threadId`), which replies join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// Our `Message-ID` of a message sent through a mailbox, which replies name in
    /// `In-Reply-To` / `References`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internet_message_id: Option<String>,
    /// When the recipient's reply arrived (RFC 3339), once `replied`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replied_at: Option<String>,
    /// Feedback events already counted (`Delivery`, `Bounce`, `Complaint`, `Reject`): a
    /// duplicate notification finds its type here and changes nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feedback: Vec<String>,
    /// When it last changed (RFC 3339, UTC).
    pub updated_at: String,
}

fn first_step() -> u32 {
    1
}

fn is_first_step(step: &u32) -> bool {
    *step == 1
}

impl CommunicationItem {
    /// The next step's communication, `scheduled` for `at` (epoch seconds) and written at
    /// `now` (RFC 3339): the same person, channel and account, in the thread of this one as
    /// `accepted` reported it.
    pub fn follow_up(
        &self,
        accepted: &super::super::model::Accepted,
        at: i64,
        now: String,
    ) -> Self {
        let index = self.index.saturating_add(STEP_INDEX_STRIDE);
        let mut references = self.references.clone();
        references.extend(accepted.internet_message_id.clone());
        Self {
            user_id: self.user_id.clone(),
            sk: Self::sort_key(&self.run_id, index),
            run_id: self.run_id,
            index,
            step: self.step.saturating_add(1),
            references,
            target_id: self.target_id,
            channel: self.channel,
            account_id: self.account_id.clone(),
            recipient: self.recipient.clone(),
            status: CommunicationStatus::Scheduled,
            reason: None,
            attempts: 0,
            sending_since: None,
            scheduled_for: Some(at),
            scheduled_day: Some(crate::clock::utc_day(at)),
            in_flight_day: None,
            provider_message_id: None,
            thread_id: accepted
                .thread_id
                .clone()
                .or_else(|| self.thread_id.clone()),
            internet_message_id: None,
            replied_at: None,
            feedback: Vec::new(),
            updated_at: now,
        }
    }

    /// The sort key of a run's communication.
    pub fn sort_key(run_id: &RunId, index: u32) -> String {
        format!("{COMMUNICATION_PREFIX}{run_id}#{index:04}")
    }

    /// `(run_id, index)` of a communication's sort key.
    pub fn parse_sort_key(sort_key: &str) -> Option<(RunId, u32)> {
        let (run_id, index) = sort_key
            .strip_prefix(COMMUNICATION_PREFIX)?
            .rsplit_once('#')?;
        Some((RunId::parse(run_id)?, index.parse().ok()?))
    }

    /// Public id: run id and index.
    pub fn communication_id(&self) -> String {
        format!("{}-{:04}", self.run_id, self.index)
    }

    /// The API view.
    pub fn view(&self) -> CommunicationView {
        CommunicationView {
            communication_id: self.communication_id(),
            step: self.step,
            target_id: self.target_id,
            channel: self.channel,
            status: self.status,
            reason: self.reason.clone(),
            scheduled_for: self
                .scheduled_for
                .filter(|_| self.status == CommunicationStatus::Scheduled)
                .and_then(|at| time::OffsetDateTime::from_unix_timestamp(at).ok())
                .and_then(|at| {
                    at.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                }),
            replied_at: self.replied_at.clone(),
            updated_at: self.updated_at.clone(),
        }
    }
}

/// A run's counters as the runs table stores them: flat attributes named as [`RunCounts`]
/// names them, except `pending`, which is stored under its first name, `remaining` (the name the
/// counter updates use, [`RunCountChange::terms`](crate::communications::model::RunCountChange)).
mod stored_counts {
    use std::collections::HashMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::{Map, Value};

    use crate::communications::model::RunCounts;

    const STORED: &str = "remaining";
    const VIEWED: &str = "pending";

    pub fn serialize<S: Serializer>(counts: &RunCounts, serializer: S) -> Result<S::Ok, S::Error> {
        let Value::Object(mut attributes) =
            serde_json::to_value(counts).map_err(serde::ser::Error::custom)?
        else {
            return Err(serde::ser::Error::custom("run counts are not an object"));
        };
        if let Some(pending) = attributes.remove(VIEWED) {
            attributes.insert(STORED.to_owned(), pending);
        }
        attributes.serialize(serializer)
    }

    /// One of the item's other attributes, as the flattened counters see them: a count, or
    /// anything else (text, a list, bytes), which is not theirs.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Attribute {
        Count(u32),
        Other(serde::de::IgnoredAny),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<RunCounts, D::Error> {
        let attributes = HashMap::<String, Attribute>::deserialize(deserializer)?;
        let counts: Map<String, Value> = attributes
            .into_iter()
            .filter_map(|(name, attribute)| match attribute {
                Attribute::Count(count) if name == STORED => {
                    Some((VIEWED.to_owned(), count.into()))
                }
                Attribute::Count(count) => Some((name, count.into())),
                Attribute::Other(_) => None,
            })
            .collect();
        serde_json::from_value(Value::Object(counts)).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::AttributeValue;

    use super::*;

    fn run() -> RunItem {
        let mut run = RunItem::new(
            &UserId::from_verified_sub("alice".into()),
            &RunId::new(),
            7,
            SkippedSummary::default(),
            MessageTemplate {
                subject: None,
                body: "Hi".into(),
            },
            "2026-01-01T00:00:00Z".into(),
        );
        run.counts.sent = 2;
        run.counts.pending = 5;
        run.counts.replied = 1;
        run
    }

    #[test]
    fn run_counts_are_stored_flat_with_pending_as_remaining() {
        let stored: std::collections::HashMap<String, AttributeValue> =
            serde_dynamo::to_item(run()).expect("an item");
        for (name, value) in [
            ("total", "7"),
            ("remaining", "5"),
            ("sent", "2"),
            ("failed", "0"),
            ("cancelled", "0"),
            ("scheduled", "0"),
            ("delivered", "0"),
            ("bounced", "0"),
            ("complained", "0"),
            ("replied", "1"),
        ] {
            assert_eq!(
                stored.get(name),
                Some(&AttributeValue::N(value.into())),
                "{name}"
            );
        }
        assert!(!stored.contains_key("pending") && !stored.contains_key("counts"));
    }

    #[test]
    fn a_stored_run_reads_back_whatever_else_the_item_holds() {
        let original = run();
        let mut stored: std::collections::HashMap<String, AttributeValue> =
            serde_dynamo::to_item(&original).expect("an item");
        // Attributes the item type does not name (an older or newer writer's) are not counters.
        stored.insert("note".into(), AttributeValue::S("x".into()));
        stored.insert("blob".into(), AttributeValue::B(vec![1, 2].into()));
        stored.insert("extra_count".into(), AttributeValue::N("3".into()));
        // A run stored before a counter existed reads it as zero.
        stored.remove("replied");
        let read: RunItem = serde_dynamo::from_item(stored).expect("a run");
        let mut expected = original;
        expected.counts.replied = 0;
        assert_eq!(read, expected);
    }
}
