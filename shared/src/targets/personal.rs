//! What personalises outreach to a target beyond its addresses: its time zone (an IANA name, checked
//! against the bundled tz database) and its custom fields (the values templates fill in).

use std::collections::BTreeMap;

use crate::plain_text;

/// Most custom fields on one target.
pub const MAX_CUSTOM_FIELDS: usize = 50;
/// Longest custom field value, in characters.
pub const MAX_CUSTOM_FIELD_CHARS: usize = 500;
/// Longest custom field name, in characters.
const MAX_FIELD_NAME_CHARS: usize = 40;

/// Whether `name` may name a custom field (and so a placeholder): `[a-z][a-z0-9_]{0,39}`.
pub fn is_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_lowercase())
        && name.len() <= MAX_FIELD_NAME_CHARS
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A time zone name the tz database knows (`Europe/Paris`, `America/New_York`, `UTC`), in its
/// canonical spelling; `None` for anything else.
pub fn time_zone(name: &str) -> Option<String> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 {
        return None;
    }
    jiff::tz::TimeZone::get(name)
        .ok()
        .and_then(|zone| zone.iana_name().map(str::to_owned))
}

/// The problems of a target's custom fields, as `(field path suffix, problem)`; empty when they
/// are valid. Names never appear in a problem's text (they are the caller's input).
pub fn custom_field_problems(fields: &BTreeMap<String, String>) -> Vec<(String, &'static str)> {
    let mut problems = Vec::new();
    if fields.len() > MAX_CUSTOM_FIELDS {
        problems.push((String::new(), "must hold at most 50 fields"));
    }
    for (name, value) in fields {
        if !is_field_name(name) {
            // The name is input: the problem names the map, not the key.
            problems.push((
                String::new(),
                "has a field name that is not [a-z][a-z0-9_]{0,39}",
            ));
            continue;
        }
        if value.chars().count() > MAX_CUSTOM_FIELD_CHARS {
            problems.push((format!(".{name}"), "must be at most 500 characters"));
        } else if let Some(problem) = plain_text::check(value, plain_text::Lines::Single) {
            problems.push((format!(".{name}"), problem));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_lower_snake_case_of_at_most_forty() {
        assert!(is_field_name("company"));
        assert!(is_field_name("deal_size_2"));
        assert!(!is_field_name("Company"));
        assert!(!is_field_name("2fa"));
        assert!(!is_field_name("first-name"));
        assert!(!is_field_name(""));
        assert!(is_field_name(&format!("a{}", "b".repeat(39))));
        assert!(!is_field_name(&format!("a{}", "b".repeat(40))));
    }

    #[test]
    fn time_zones_are_the_databases_names() {
        assert_eq!(time_zone("Europe/Paris").as_deref(), Some("Europe/Paris"));
        assert_eq!(time_zone("UTC").as_deref(), Some("UTC"));
        assert_eq!(time_zone("Mars/Olympus"), None);
        assert_eq!(time_zone("+02:00"), None);
        assert_eq!(time_zone(""), None);
    }

    #[test]
    fn values_are_bounded_single_lines() {
        let fields = BTreeMap::from([
            ("company".to_owned(), "Analytical Engines".to_owned()),
            ("bio".to_owned(), "x".repeat(501)),
            ("title".to_owned(), "CEO\r\nBcc: everyone".to_owned()),
        ]);
        let problems: Vec<String> = custom_field_problems(&fields)
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        assert_eq!(problems, [".bio", ".title"]);
    }
}
