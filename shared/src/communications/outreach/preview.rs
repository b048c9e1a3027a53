//! Preview: what initiate would send, rendered per (target, channel), for the first 20 targets,
//! from the same validation, plan and template checks as initiate; nothing stored or queued.

use serde::Serialize;
use utoipa::ToSchema;

use super::super::model::{
    Channel, DEFAULT_SUBJECT, InitiateRequest, RecipientSnapshot, SkippedSummary, single_line,
};
use super::super::template::render;
use super::{Outreach, Validated, check_template_values, validate};
use crate::error::Error;
use crate::ids::UserId;
use crate::json_input::from_json_value;

/// Most targets one preview renders.
pub const MAX_PREVIEW_TARGETS: usize = 20;

/// One message as the target would receive it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PreviewMessage {
    /// The target.
    pub target_id: String,
    /// The channel.
    pub channel: Channel,
    /// The step of the sequence (1: the first message).
    pub step: u32,
    /// The account that would send it.
    pub account_id: String,
    /// Where it would go (the email address or handle).
    pub to: String,
    /// The rendered subject (email only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The rendered text (an email also carries the unsubscribe link below it).
    pub body: String,
    /// When it would be sent (RFC 3339): the first step as soon as it is queued, each follow-up
    /// its waits later (if the steps before go out at once; a sender at its daily cap moves a
    /// send to the next day).
    pub send_at: String,
}

/// Answer of `POST /api/user/orchestrator/preview`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PreviewResponse {
    /// The messages of the first 20 targets, in plan order.
    pub messages: Vec<PreviewMessage>,
    /// How many targets the run would reach.
    pub targets_total: usize,
    /// How many communications the run would hold.
    pub communications_total: usize,
    /// Pairs left out: the first 100.
    pub skipped: Vec<super::super::model::Skipped>,
    /// Pairs left out in all.
    pub skipped_total: u32,
}

/// Each step's send time if every one goes out as soon as it may: the first now or at the
/// window's next opening (in the target's zone), each follow-up its wait after the one before,
/// moved into the window.
fn send_times(sequence: &super::Sequence, zone: Option<&str>, now: i64) -> Vec<i64> {
    let in_window = |at: i64| {
        sequence
            .window
            .as_ref()
            .and_then(|window| window.next_opening(zone, at))
            .unwrap_or(at)
    };
    let mut times = vec![in_window(now)];
    for follow_up in &sequence.follow_ups {
        let last = times.last().copied().unwrap_or(now);
        times.push(in_window(last.saturating_add(follow_up.wait_seconds)));
    }
    times
}

impl Outreach {
    /// Renders what `initiate_communications` would send for this body, with its refusals
    /// (422 for the same reasons), storing and queuing nothing.
    pub async fn preview(
        &self,
        user: &UserId,
        body: serde_json::Value,
    ) -> Result<PreviewResponse, Error> {
        let request: InitiateRequest = from_json_value(body)?;
        let Validated {
            target_ids,
            channels,
            senders,
            sequence,
        } = validate(&request)?;
        let plan = self.plan(user, target_ids, channels, senders).await?;
        check_template_values(&sequence, &plan)?;
        let now = self.clock.epoch_seconds();
        let messages_by_step = sequence.messages();
        let mut targets: Vec<crate::ids::TargetId> = Vec::new();
        let mut messages = Vec::new();
        for planned in &plan.communications {
            let id = planned.target.id;
            let position = targets
                .iter()
                .position(|target| *target == id)
                .unwrap_or_else(|| {
                    targets.push(id);
                    targets.len() - 1
                });
            if position >= MAX_PREVIEW_TARGETS {
                continue;
            }
            let recipient = RecipientSnapshot::from(&planned.target);
            let send_at = send_times(&sequence, recipient.timezone.as_deref(), now);
            for (step, (message, at)) in messages_by_step.iter().zip(&send_at).enumerate() {
                let subject = (planned.channel == Channel::Email).then(|| {
                    single_line(&render(
                        message.subject.as_deref().unwrap_or(DEFAULT_SUBJECT),
                        &recipient,
                    ))
                });
                messages.push(PreviewMessage {
                    target_id: planned.target.id.to_string(),
                    channel: planned.channel,
                    step: u32::try_from(step + 1).unwrap_or(u32::MAX),
                    account_id: planned.account_id.to_string(),
                    to: planned
                        .channel
                        .address(&planned.target)
                        .unwrap_or_default()
                        .to_owned(),
                    subject,
                    body: render(&message.body, &recipient),
                    send_at: crate::clock::rfc3339(*at),
                });
            }
        }
        let skipped = SkippedSummary::of(plan.skipped);
        Ok(PreviewResponse {
            messages,
            targets_total: targets.len(),
            communications_total: plan.communications.len(),
            skipped: skipped.listed,
            skipped_total: skipped.total,
        })
    }
}
