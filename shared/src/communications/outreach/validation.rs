//! Checking an initiate request (targets, channels, senders, sequence, schedule) and, once the
//! run is planned, that every placeholder it will send has a value.

use std::collections::HashSet;

use super::super::model::{
    Channel, DEFAULT_SUBJECT, InitiateRequest, MAX_COMMUNICATIONS_PER_RUN, MessageTemplate,
    RecipientSnapshot,
};
use super::super::sequence::{FollowUp, message_of_step, sequence_of};
use super::super::template;
use super::super::window::SendWindow;
use super::Plan;
use crate::error::{Error, FieldError};
use crate::ids::AccountId;
use crate::targets::TargetId;

/// Most targets a `template_value_missing` answer names.
const MAX_TARGETS_NAMED: usize = 100;

/// Every placeholder of what each planned communication will send has a value or a fallback,
/// else 422 `template_value_missing` naming the targets (the first 100), before anything is
/// stored: a message never goes out with a hole in it.
pub(super) fn check_template_values(sequence: &Sequence, plan: &Plan) -> Result<(), Error> {
    let messages = sequence.messages();
    let mut lacking: Vec<crate::ids::TargetId> = Vec::new();
    for planned in &plan.communications {
        let recipient = RecipientSnapshot::from(&planned.target);
        let lacks = messages.iter().any(|message| {
            let subject = message.subject.as_deref().unwrap_or(DEFAULT_SUBJECT);
            template::lacks_value(&message.body, &recipient)
                || (planned.channel == Channel::Email && template::lacks_value(subject, &recipient))
        });
        if lacks && !lacking.contains(&planned.target.id) {
            lacking.push(planned.target.id);
        }
    }
    if lacking.is_empty() {
        return Ok(());
    }
    Err(Error::Unprocessable {
        code: "template_value_missing",
        message: format!(
            "{} targets have no value for a placeholder that has no fallback; give them the field or the placeholder a fallback ({{{{field | default: \"...\"}}}}). The first {} are listed.",
            lacking.len(),
            lacking.len().min(MAX_TARGETS_NAMED)
        ),
        details: lacking
            .iter()
            .take(MAX_TARGETS_NAMED)
            .map(|id| {
                FieldError::new(
                    id.to_string(),
                    "has no value for a placeholder without a fallback",
                )
            })
            .collect(),
    })
}

/// What a request asks for, checked: target ids and sender account ids, each with its position
/// in the request (duplicates dropped), and channels.
pub(super) struct Validated {
    pub(super) target_ids: Option<Vec<(usize, TargetId)>>,
    pub(super) channels: Option<Vec<Channel>>,
    pub(super) senders: Option<Vec<(usize, AccountId)>>,
    pub(super) sequence: Sequence,
}

/// What a run sends: its first message and its follow-ups.
pub(in crate::communications) struct Sequence {
    pub(super) first: MessageTemplate,
    pub(super) follow_ups: Vec<FollowUp>,
    pub(super) window: Option<SendWindow>,
}

impl Sequence {
    /// Each step's message, as it will be sent (a follow-up's email subject filled in).
    pub(super) fn messages(&self) -> Vec<MessageTemplate> {
        (1..=u32::try_from(self.follow_ups.len() + 1).unwrap_or(1))
            .filter_map(|step| message_of_step(&self.first, &self.follow_ups, step))
            .collect()
    }
}

pub(super) fn validate(request: &InitiateRequest) -> Result<Validated, Error> {
    let mut problems = Vec::new();
    let sequence = match sequence_of(request.message.as_ref(), request.steps.as_deref()) {
        Ok((first, follow_ups)) => Some(Sequence {
            first,
            follow_ups,
            window: None,
        }),
        Err(found) => {
            problems.extend(found);
            None
        }
    };
    let target_ids = request.target_ids.as_ref().map(|ids| {
        if ids.is_empty() {
            problems.push(FieldError::new(
                "target_ids",
                "must not be empty (leave it out for every active target)",
            ));
        }
        if ids.len() > MAX_COMMUNICATIONS_PER_RUN {
            problems.push(FieldError::new("target_ids", "must hold at most 1,000 ids"));
        }
        let mut seen = HashSet::new();
        ids.iter()
            .enumerate()
            .filter_map(|(i, id)| match TargetId::parse(id) {
                Some(id) => seen.insert(id).then_some((i, id)),
                None => {
                    problems.push(FieldError::new(
                        format!("target_ids[{i}]"),
                        "is not a target id",
                    ));
                    None
                }
            })
            .collect::<Vec<_>>()
    });
    let channels = request.channels.as_ref().map(|channels| {
        if channels.is_empty() {
            problems.push(FieldError::new(
                "channels",
                "must not be empty (leave it out for every channel)",
            ));
        }
        let mut unique: Vec<Channel> = Vec::new();
        for channel in channels {
            if !unique.contains(channel) {
                unique.push(*channel);
            }
        }
        unique
    });
    let senders = request.account_ids.as_ref().map(|ids| {
        if ids.is_empty() {
            problems.push(FieldError::new(
                "account_ids",
                "must not be empty (leave it out for the default accounts)",
            ));
        }
        let mut seen = HashSet::new();
        ids.iter()
            .enumerate()
            .filter_map(|(i, id)| match AccountId::parse(id) {
                Ok(id) => seen.insert(id.clone()).then_some((i, id)),
                Err(_) => {
                    problems.push(FieldError::new(
                        format!("account_ids[{i}]"),
                        "is not an account id",
                    ));
                    None
                }
            })
            .collect::<Vec<_>>()
    });
    let window = request.schedule.as_ref().map(|schedule| {
        SendWindow::parse(
            schedule.timezone.as_deref(),
            schedule.days.as_deref(),
            &schedule.start,
            &schedule.end,
        )
        .map_err(|found| problems.extend(found))
        .ok()
    });
    let sequence = sequence.map(|sequence| Sequence {
        window: window.flatten(),
        ..sequence
    });
    match sequence {
        Some(sequence) if problems.is_empty() => Ok(Validated {
            target_ids,
            channels,
            senders,
            sequence,
        }),
        _ => Err(Error::Validation(problems)),
    }
}
