//! Runs as the API shows them: their status, counts by outcome and by step, the pairs they
//! left out, the changes to their stored counters, and the run list and its query.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Channel, CommunicationStatus, CommunicationView};

/// Most communications one run may hold.
pub const MAX_COMMUNICATIONS_PER_RUN: usize = 1_000;

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
    #[schema(value_type = String)]
    pub target_id: crate::ids::TargetId,
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
