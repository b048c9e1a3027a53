//! What the initiate request asks for: the message template and its checks, the steps of a
//! sequence, the send window and the channels and accounts to use.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Channel;
use crate::error::FieldError;

/// Longest message body, in characters.
pub const MAX_BODY_CHARS: usize = 10_000;
/// Longest subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 200;
/// Subject of an email whose request gave none.
pub const DEFAULT_SUBJECT: &str = "Hello {{name}}";

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
            for problem in crate::communications::template::problems(text.unwrap_or_default()) {
                problems.push(FieldError::new(field.clone(), problem));
            }
        }
        problems
    }
}

/// A one-line header value: line breaks and other control characters become spaces, so a
/// rendered subject can never start another header.
pub fn single_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
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
