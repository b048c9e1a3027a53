//! Reading JSON input with the API's error semantics, below the HTTP layer (domains parse
//! request documents with it too): a syntax error is 400 `malformed_json`; a document of the
//! wrong shape is a 422 naming the first field that does not fit, never echoing a value.

use serde::de::DeserializeOwned;

use crate::error::{Error, FieldError};

/// Parses a JSON document into `T` with the API's error semantics (see [`crate::api::ApiJson`]).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    // Syntax first (a document with trailing garbage is malformed even if its start would not
    // fit `T`), then the shape, with the path of the first field that does not fit.
    let document: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|error| json_error(error, String::new()))?;
    from_json_value(document)
}

/// Reads a query string into `T`; a parameter that does not fit is a 422 naming it (never its
/// value), like a JSON field.
pub fn from_query<T: DeserializeOwned>(query: &str) -> Result<T, Error> {
    let deserializer =
        serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        let (field, problem) = if let Some(rest) = message.strip_prefix("missing field `") {
            (
                rest.split('`').next().unwrap_or_default().to_owned(),
                "is required".to_owned(),
            )
        } else if message.starts_with("unknown field") {
            (path, "is not an accepted parameter".to_owned())
        } else {
            (path, wrong_type_problem(&message))
        };
        let field = if field == "." || field.is_empty() {
            "query".to_owned()
        } else {
            field
        };
        Error::Validation(vec![FieldError::new(field, problem)])
    })
}

/// Reads a well-formed JSON value into `T`; a value of the wrong shape is a 422 naming the field.
pub fn from_json_value<T: DeserializeOwned>(document: serde_json::Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(document).map_err(|error| {
        let path = error.path().to_string();
        json_error(error.into_inner(), path)
    })
}

fn json_error(error: serde_json::Error, path: String) -> Error {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => Error::MalformedJson(format!(
            "syntax error at line {}, column {}",
            error.line(),
            error.column()
        )),
        Category::Data => {
            // serde's message names the offending value; only the kind of problem is sent back.
            let text = error.to_string();
            let (field, problem) = if let Some(rest) = text.strip_prefix("missing field `") {
                let name = rest.split('`').next().unwrap_or_default();
                let field = if path == "." || path.is_empty() {
                    name.to_owned()
                } else {
                    format!("{path}.{name}")
                };
                (field, "is required".to_owned())
            } else if text.starts_with("unknown field") {
                (path, "is not an accepted field".to_owned())
            } else {
                (path, wrong_type_problem(&text))
            };
            let field = if field == "." || field.is_empty() {
                "body".to_owned()
            } else {
                field
            };
            Error::Validation(vec![FieldError::new(field, problem)])
        }
    }
}

/// The problem sentence of a serde type error, written by us. serde's message quotes the
/// offending input before its final `, expected ...` (which describes our type), so only the
/// text after the *last* `, expected ` is kept, and only when it looks like a type description.
fn wrong_type_problem(serde_message: &str) -> String {
    let message = match serde_message.rsplit_once(" at line ") {
        Some((head, position))
            if position
                .split(" column ")
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            head
        }
        _ => serde_message,
    };
    let expected = message
        .rsplit_once(", expected ")
        .map(|(_, expected)| expected)
        .filter(|expected| {
            expected.len() <= 120
                && expected
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || " `,_-".contains(c))
        });
    let kind = if message.starts_with("unknown variant") {
        "is not one of the accepted values"
    } else if message.starts_with("invalid length") {
        "has the wrong number of items"
    } else if message.starts_with("invalid value") {
        "has an invalid value"
    } else {
        "has the wrong type"
    };
    match expected {
        Some(expected) => format!("{kind}: expected {expected}"),
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        #[serde(default)]
        count: Option<u32>,
    }

    fn code(bytes: &[u8]) -> (&'static str, Vec<FieldError>) {
        match parse_json::<Sample>(bytes) {
            Ok(_) => ("ok", Vec::new()),
            Err(Error::Validation(details)) => ("validation_failed", details),
            Err(error) => (error.code(), Vec::new()),
        }
    }

    #[test]
    fn syntax_errors_are_malformed_and_shape_errors_name_the_field() {
        assert_eq!(code(br#"{"name": "#).0, "malformed_json");
        assert_eq!(code(br#"{"name": "a"} {}"#).0, "malformed_json");
        assert_eq!(code(b"").0, "malformed_json");
        assert_eq!(code(br#"{} {}"#).0, "malformed_json");
        let (kind, details) = code(br#"{"count": 1}"#);
        assert_eq!(kind, "validation_failed");
        assert_eq!(details[0].field, "name");
        let (_, details) = code(br#"{"name": "a", "count": "many"}"#);
        assert_eq!(details[0].field, "count");
        assert!(
            !details[0].problem.contains("many"),
            "values are never echoed"
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Typed {
        flag: Option<bool>,
        kind: Option<Kind>,
        items: Option<Vec<u8>>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Email,
        Social,
    }

    #[test]
    fn no_problem_ever_contains_the_value_that_was_sent() {
        // Values built to look like serde's own message parts, at every place a type error can be.
        let hostile = [
            "CANARY, expected CANARY",
            "x\", expected a boolean at line 1 column 2 CANARY",
            "CANARY` or `email",
            "one of `email`, `CANARY`",
            ", expected ",
        ];
        for value in hostile {
            for body in [
                serde_json::json!({"flag": value}),
                serde_json::json!({"kind": value}),
                serde_json::json!({"items": value}),
                serde_json::json!({"items": [value]}),
                serde_json::json!({"flag": {value: value}}),
            ] {
                let bytes = serde_json::to_vec(&body).unwrap_or_default();
                let result = parse_json::<Typed>(&bytes);
                assert!(
                    matches!(result, Err(Error::Validation(_))),
                    "{body} was not refused as invalid: {result:?}"
                );
                if let Err(Error::Validation(details)) = result {
                    for detail in details {
                        let printed = format!("{} {}", detail.field, detail.problem);
                        assert!(!printed.contains("CANARY"), "{printed}");
                        assert!(!printed.contains(value), "{printed}");
                    }
                }
            }
        }
    }
}
