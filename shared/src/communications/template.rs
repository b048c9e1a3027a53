//! Message templates: `{{field}}` placeholders for a target's fields (`name`, `first_name`,
//! `email`, `twitter_username`, `instagram_username`) and its custom fields, each with an
//! optional fallback, `{{company | default: "your team"}}`. Values are inserted as plain text,
//! once: a value that itself looks like `{{...}}` is never expanded again.

use serde::{Deserialize, Serialize};

use crate::targets::model::TargetView;
use crate::targets::personal::{MAX_CUSTOM_FIELD_CHARS, is_field_name};

/// The target fields every template may use, besides the target's custom fields.
pub const BUILT_IN_FIELDS: [&str; 5] = [
    "name",
    "first_name",
    "email",
    "twitter_username",
    "instagram_username",
];

/// The target's fields at the time the run was created, kept with each communication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientSnapshot {
    /// The person's name.
    pub name: String,
    /// The email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// X handle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twitter_username: Option<String>,
    /// Instagram username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instagram_username: Option<String>,
    /// The target's time zone (its send window's, when the run has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The target's custom fields.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub custom_fields: std::collections::BTreeMap<String, String>,
}

impl From<&TargetView> for RecipientSnapshot {
    fn from(target: &TargetView) -> Self {
        Self {
            name: target.name.clone(),
            email: target.email.clone(),
            twitter_username: target.twitter_username.clone(),
            instagram_username: target.instagram_username.clone(),
            custom_fields: target.custom_fields.clone(),
            timezone: target.timezone.clone(),
        }
    }
}

/// One `{{...}}` of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placeholder<'a> {
    /// The field it names.
    pub field: &'a str,
    /// What stands in when the target has no value for it.
    pub fallback: Option<&'a str>,
}

/// A piece of a template: text as written, or a placeholder (`Err` when what is between the
/// braces is not a placeholder; it is then text too).
enum Piece<'a> {
    Text(&'a str),
    Placeholder(Result<Placeholder<'a>, &'a str>),
}

fn pieces(template: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        pieces.push(Piece::Text(&rest[..start]));
        let raw = &rest[start..start + 2 + end + 2];
        pieces.push(Piece::Placeholder(parse(&after[..end]).ok_or(raw)));
        rest = &after[end + 2..];
    }
    pieces.push(Piece::Text(rest));
    pieces
}

/// `field` or `field | default: "fallback"` (spaces around each part are free).
fn parse(inner: &str) -> Option<Placeholder<'_>> {
    let (field, fallback) = match inner.split_once('|') {
        None => (inner.trim(), None),
        Some((field, filter)) => {
            let quoted = filter
                .trim()
                .strip_prefix("default")?
                .trim_start()
                .strip_prefix(':')?
                .trim();
            let text = quoted.strip_prefix('"')?.strip_suffix('"')?;
            if text.contains('"') {
                return None;
            }
            (field.trim(), Some(text))
        }
    };
    (BUILT_IN_FIELDS.contains(&field) || is_field_name(field))
        .then_some(Placeholder { field, fallback })
}

/// The problems of a template's placeholders (none for a valid one): each must be `{{field}}`
/// or `{{field | default: "…"}}` with a field name, its fallback at most 500 characters.
pub fn problems(template: &str) -> Vec<&'static str> {
    let mut problems = Vec::new();
    for piece in pieces(template) {
        match piece {
            Piece::Placeholder(Err(_)) => problems
                .push("has a placeholder that is not {{field}} or {{field | default: \"text\"}}"),
            Piece::Placeholder(Ok(Placeholder {
                fallback: Some(text),
                ..
            })) if text.chars().count() > MAX_CUSTOM_FIELD_CHARS => {
                problems.push("has a fallback over 500 characters")
            }
            _ => {}
        }
    }
    problems.dedup();
    problems
}

fn value<'a>(field: &str, recipient: &'a RecipientSnapshot) -> Option<&'a str> {
    let value = match field {
        "name" => Some(recipient.name.as_str()),
        "first_name" => recipient.name.split_whitespace().next(),
        "email" => recipient.email.as_deref(),
        "twitter_username" => recipient.twitter_username.as_deref(),
        "instagram_username" => recipient.instagram_username.as_deref(),
        custom => recipient.custom_fields.get(custom).map(String::as_str),
    };
    value.filter(|value| !value.trim().is_empty())
}

/// Whether some placeholder of `template` has neither a value for `recipient` nor a fallback.
pub fn lacks_value(template: &str, recipient: &RecipientSnapshot) -> bool {
    pieces(template).into_iter().any(|piece| {
        matches!(piece, Piece::Placeholder(Ok(placeholder))
            if placeholder.fallback.is_none() && value(placeholder.field, recipient).is_none())
    })
}

/// The template with each placeholder replaced by the recipient's value, else its fallback, else
/// nothing; what is not a placeholder stays as written.
pub fn render(template: &str, recipient: &RecipientSnapshot) -> String {
    let mut output = String::with_capacity(template.len());
    for piece in pieces(template) {
        match piece {
            Piece::Text(text) | Piece::Placeholder(Err(text)) => output.push_str(text),
            Piece::Placeholder(Ok(placeholder)) => output.push_str(
                value(placeholder.field, recipient)
                    .or(placeholder.fallback)
                    .unwrap_or_default(),
            ),
        }
    }
    output
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn ada() -> RecipientSnapshot {
        RecipientSnapshot {
            name: "Ada Lovelace".into(),
            email: Some("ada@example.com".into()),
            twitter_username: None,
            instagram_username: None,
            custom_fields: BTreeMap::from([("company".into(), "Analytical Engines".into())]),
            timezone: None,
        }
    }

    #[test]
    fn rendering_fills_placeholders_once_and_leaves_text_alone() {
        assert_eq!(
            render("Hi {{name}} ({{ first_name }}) <{{email}}>", &ada()),
            "Hi Ada Lovelace (Ada) <ada@example.com>"
        );
        assert_eq!(render("{{twitter_username}}|", &ada()), "|");
        assert_eq!(
            render("<b>{{name}}</b> {{", &ada()),
            "<b>Ada Lovelace</b> {{"
        );
        let tricky = RecipientSnapshot {
            name: "{{email}}".into(),
            ..ada()
        };
        assert_eq!(
            render("{{name}}", &tricky),
            "{{email}}",
            "values are not expanded again"
        );
    }

    #[test]
    fn custom_fields_and_fallbacks_fill_in() {
        assert_eq!(render("at {{company}}", &ada()), "at Analytical Engines");
        assert_eq!(
            render("at {{ company | default: \"your team\" }}", &ada()),
            "at Analytical Engines"
        );
        assert_eq!(
            render("for {{role|default:\"your team\"}}", &ada()),
            "for your team"
        );
        assert_eq!(
            render("@{{twitter_username | default: \"there\"}}", &ada()),
            "@there"
        );
    }

    #[test]
    fn a_placeholder_without_value_or_fallback_is_found() {
        assert!(!lacks_value("Hi {{first_name}} at {{company}}", &ada()));
        assert!(lacks_value("Hi {{role}}", &ada()));
        assert!(lacks_value("DM {{twitter_username}}", &ada()));
        assert!(!lacks_value("Hi {{role | default: \"\"}}", &ada()));
        let blank = RecipientSnapshot {
            custom_fields: BTreeMap::from([("company".into(), "  ".into())]),
            ..ada()
        };
        assert!(lacks_value("{{company}}", &blank), "a blank value is none");
    }

    #[test]
    fn malformed_placeholders_are_refused() {
        assert!(problems("Hi {{name}} {{company | default: \"x\"}}").is_empty());
        for bad in [
            "{{Name}}",
            "{{first-name}}",
            "{{name | upcase}}",
            "{{name | default: x}}",
            "{{name | default: \"a\"b\"}}",
            "{{}}",
        ] {
            assert_eq!(problems(bad).len(), 1, "{bad}");
        }
        let long = format!("{{{{company | default: \"{}\"}}}}", "x".repeat(501));
        assert_eq!(problems(&long), ["has a fallback over 500 characters"]);
    }
}
