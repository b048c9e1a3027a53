//! Sequences: a run's message and its follow-ups. Step n+1 of a (target, channel) is scheduled
//! when step n is sent, `wait` later; right before it goes out the worker checks again that the
//! person has not replied, unsubscribed, bounced or complained, and cancels it with that reason
//! if they have.

use serde::{Deserialize, Serialize};

use super::model::{DEFAULT_SUBJECT, MessageTemplate, StepRequest};
use crate::error::FieldError;

/// Most steps in a sequence.
pub const MAX_STEPS: usize = 5;
/// Shortest wait before a follow-up (one minute).
pub const MIN_WAIT_SECONDS: i64 = 60;
/// Longest wait before a follow-up (30 days).
pub const MAX_WAIT_SECONDS: i64 = 30 * 86_400;
/// How far apart the indexes of one (target, channel)'s steps are: a run holds at most 1,000
/// communications per step, so step `s` of the pair at index `i` is `(s - 1) * 1000 + i`.
pub const STEP_INDEX_STRIDE: u32 = 1_000;

/// A follow-up as the run keeps it: its message and its wait after the step before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    /// What it sends.
    pub message: MessageTemplate,
    /// Seconds after the previous step was sent.
    pub wait_seconds: i64,
}

/// An ISO 8601 duration in seconds (weeks, days of 24 hours, hours, minutes, seconds); `None`
/// when it is not one or has months or years (whose length varies).
pub fn wait_seconds(text: &str) -> Option<i64> {
    let text = text.trim();
    // ISO 8601 only (jiff also reads its friendly form, `3 days`).
    if !text.starts_with(['P', 'p']) {
        return None;
    }
    let span: jiff::Span = text.parse().ok()?;
    if span.get_years() != 0 || span.get_months() != 0 || span.signum() < 0 {
        return None;
    }
    let seconds = i64::from(span.get_weeks())
        .checked_mul(7 * 86_400)?
        .checked_add(i64::from(span.get_days()).checked_mul(86_400)?)?
        .checked_add(i64::from(span.get_hours()).checked_mul(3_600)?)?
        .checked_add(span.get_minutes().checked_mul(60)?)?
        .checked_add(span.get_seconds())?;
    Some(seconds)
}

/// The first message and the follow-ups of a request that gives `message` or `steps` (exactly
/// one), with every problem named by its field.
pub fn sequence_of(
    message: Option<&MessageTemplate>,
    steps: Option<&[StepRequest]>,
) -> Result<(MessageTemplate, Vec<FollowUp>), Vec<FieldError>> {
    let steps = match (message, steps) {
        (Some(message), None) => {
            let problems = message.validate_at("message");
            return if problems.is_empty() {
                Ok((message.clone(), Vec::new()))
            } else {
                Err(problems)
            };
        }
        (None, Some(steps)) => steps,
        (Some(_), Some(_)) => {
            return Err(vec![FieldError::new(
                "steps",
                "cannot be given with message (message is a one-step run)",
            )]);
        }
        (None, None) => return Err(vec![FieldError::new("message", "is required")]),
    };
    let mut problems = Vec::new();
    if steps.is_empty() || steps.len() > MAX_STEPS {
        problems.push(FieldError::new("steps", "must hold 1-5 steps"));
    }
    let mut follow_ups = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        problems.extend(step.message.validate_at(&format!("steps[{i}].message")));
        let field = format!("steps[{i}].wait");
        match (i, step.wait.as_deref()) {
            (0, None) => {}
            (0, Some(_)) => problems.push(FieldError::new(field, "the first step has no wait")),
            (_, None) => problems.push(FieldError::new(field, "is required after the first step")),
            (_, Some(wait)) => match wait_seconds(wait) {
                Some(seconds) if (MIN_WAIT_SECONDS..=MAX_WAIT_SECONDS).contains(&seconds) => {
                    follow_ups.push(FollowUp {
                        message: step.message.clone(),
                        wait_seconds: seconds,
                    });
                }
                _ => problems.push(FieldError::new(
                    field,
                    "must be an ISO 8601 duration from PT1M to P30D",
                )),
            },
        }
    }
    match (problems.is_empty(), steps.first()) {
        (true, Some(first)) => Ok((first.message.clone(), follow_ups)),
        _ => Err(problems),
    }
}

/// The message step `step` (1-based) sends: the first message, or a follow-up whose email
/// subject, when it sets none, is `Re: ` and the first message's.
pub fn message_of_step(
    first: &MessageTemplate,
    follow_ups: &[FollowUp],
    step: u32,
) -> Option<MessageTemplate> {
    let position = usize::try_from(step).ok()?.checked_sub(2);
    let Some(position) = position else {
        return Some(first.clone());
    };
    let follow_up = follow_ups.get(position)?;
    let subject = follow_up.message.subject.clone().or_else(|| {
        Some(format!(
            "Re: {}",
            first.subject.as_deref().unwrap_or(DEFAULT_SUBJECT)
        ))
    });
    Some(MessageTemplate {
        subject,
        body: follow_up.message.body.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> MessageTemplate {
        MessageTemplate {
            subject: Some("Hi {{first_name}}".into()),
            body: body.into(),
        }
    }

    #[test]
    fn waits_are_iso_durations_within_a_minute_and_thirty_days() {
        assert_eq!(wait_seconds("PT1M"), Some(60));
        assert_eq!(wait_seconds("P3D"), Some(3 * 86_400));
        assert_eq!(wait_seconds("P1W"), Some(7 * 86_400));
        assert_eq!(wait_seconds("P1DT2H30M"), Some(86_400 + 9_000));
        assert_eq!(wait_seconds("P1M"), None, "a month has no fixed length");
        assert_eq!(wait_seconds("3 days"), None);
        let step = |wait: &str| StepRequest {
            message: message("Again"),
            wait: Some(wait.into()),
        };
        let first = StepRequest {
            message: message("Hello"),
            wait: None,
        };
        for wait in ["PT30S", "P31D", "P1M", "soon"] {
            let refused = sequence_of(None, Some(&[first.clone(), step(wait)])).unwrap_err();
            assert_eq!(refused[0].field, "steps[1].wait", "{wait}");
        }
        let (_, follow_ups) = sequence_of(None, Some(&[first, step("P3D")])).unwrap();
        assert_eq!(follow_ups[0].wait_seconds, 3 * 86_400);
    }

    #[test]
    fn exactly_one_of_message_and_steps_and_at_most_five_steps() {
        let one = message("Hello");
        assert!(sequence_of(Some(&one), None).unwrap().1.is_empty());
        assert_eq!(sequence_of(None, None).unwrap_err()[0].field, "message");
        let first = StepRequest {
            message: one.clone(),
            wait: None,
        };
        assert_eq!(
            sequence_of(Some(&one), Some(std::slice::from_ref(&first))).unwrap_err()[0].field,
            "steps"
        );
        let six = vec![first; 6];
        assert!(sequence_of(None, Some(&six)).is_err());
    }

    #[test]
    fn a_follow_up_without_a_subject_answers_the_first() {
        let first = message("Hello");
        let follow_ups = vec![FollowUp {
            message: MessageTemplate {
                subject: None,
                body: "Any thoughts?".into(),
            },
            wait_seconds: 60,
        }];
        let second = message_of_step(&first, &follow_ups, 2).unwrap();
        assert_eq!(second.subject.as_deref(), Some("Re: Hi {{first_name}}"));
        assert_eq!(second.body, "Any thoughts?");
        assert_eq!(message_of_step(&first, &follow_ups, 1), Some(first.clone()));
        assert_eq!(message_of_step(&first, &follow_ups, 3), None);
    }
}
