//! CSV import of targets (`POST /api/user/communication-targets/import`): a header row naming
//! `name`, `email`, `twitter_username`, `instagram_username`, `notes`, `timezone` and any custom
//! field; up to 10,000 rows and 5 MB. Parsed with the `csv` crate (quoted fields, embedded line
//! breaks, a UTF-8 BOM, `,` or `;` between fields, told apart by the header row), each row checked
//! as a created target is, duplicates within the file and against stored targets reported and
//! never stored twice, the rest written in bulk ([`TargetStore::insert_many`]).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use utoipa::ToSchema;

use super::model::CreateTargetRequest;
use super::personal::is_field_name;
use super::store::{Inserted, TargetStore};
use crate::error::{Error, FieldError};
use crate::ids::UserId;

/// Largest CSV body, in bytes.
pub const MAX_IMPORT_BYTES: usize = 5 * 1024 * 1024;
/// Most data rows in one import.
pub const MAX_IMPORT_ROWS: usize = 10_000;

/// The columns a target has; any other column is a custom field.
const TARGET_COLUMNS: [&str; 6] = [
    "name",
    "email",
    "twitter_username",
    "instagram_username",
    "notes",
    "timezone",
];

/// What became of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportRowStatus {
    /// Stored as a new target (`id`).
    Created,
    /// The same person as an earlier row or a stored target (`id` names it when known).
    Duplicate,
    /// Not a valid target (`problems`).
    Invalid,
    /// Not stored: a dependency failed part-way; send these rows again.
    Unavailable,
}

/// One row's result.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportRowResult {
    /// The line of the file where the row starts (the header's is 1): the row number a
    /// spreadsheet shows, for a file without line breaks inside fields.
    pub row: usize,
    /// What became of it.
    pub status: ImportRowStatus,
    /// The new target, or the one it duplicates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Why it is invalid: fields by column name, never their values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<FieldError>,
}

/// Answer of the import.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportResponse {
    /// Rows stored as new targets.
    pub created: usize,
    /// Rows that were duplicates.
    pub duplicates: usize,
    /// Rows that were invalid.
    pub invalid: usize,
    /// Rows not stored because a dependency failed part-way (send them again).
    pub unavailable: usize,
    /// Every row's result, in file order.
    pub results: Vec<ImportRowResult>,
}

/// A file read into rows: each row's number and its target fields, or its problems.
type ParsedRows = Vec<(usize, Result<CreateTargetRequest, Vec<FieldError>>)>;

fn refused(code: &'static str, message: impl Into<String>) -> Error {
    Error::Unprocessable {
        code,
        message: message.into(),
        details: Vec::new(),
    }
}

/// The field separator, from the header row: `;` when it has more of them than commas (the
/// spreadsheet export of locales whose decimal mark is a comma), else `,`.
fn separator(text: &str) -> u8 {
    let header = text.lines().next().unwrap_or_default();
    let count = |c: char| header.chars().filter(|h| *h == c).count();
    if count(';') > count(',') { b';' } else { b',' }
}

/// Reads the file into rows (no I/O). Refusals of the whole file: not UTF-8, no usable header,
/// over 10,000 rows.
pub fn parse_csv(bytes: &[u8]) -> Result<ParsedRows, Error> {
    if bytes.len() > MAX_IMPORT_BYTES {
        return Err(Error::PayloadTooLarge(
            "A CSV import is at most 5 MB; nothing was imported.".into(),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| {
        refused(
            "csv_unreadable",
            "The file is not UTF-8 text; export it as CSV UTF-8.",
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(separator(text))
        .flexible(true)
        .has_headers(true)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|_| refused("csv_unreadable", "The header row cannot be read as CSV."))?
        .iter()
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    check_header(&header)?;
    let mut rows = Vec::new();
    let mut last_row = 1;
    for record in reader.records() {
        // The line where the row starts (the header's is 1): a spreadsheet's row number, blank
        // rows counted, for a file without line breaks inside fields.
        let start = match &record {
            Ok(record) => record.position().map(csv::Position::byte),
            Err(error) => error.position().map(csv::Position::byte),
        };
        // The reader's position may be at the line breaks (and blank lines) before the row.
        let row = start
            .and_then(|byte| usize::try_from(byte).ok())
            .map(|byte| {
                byte + text.as_bytes()[byte.min(text.len())..]
                    .iter()
                    .take_while(|b| matches!(b, b'\r' | b'\n'))
                    .count()
            })
            .and_then(|byte| text.get(..byte))
            .map_or(last_row + 1, |before| 1 + before.matches('\n').count());
        last_row = row;
        if rows.len() == MAX_IMPORT_ROWS {
            return Err(Error::PayloadTooLarge(format!(
                "A CSV import holds at most {MAX_IMPORT_ROWS} rows; nothing was imported."
            )));
        }
        let record = match record {
            Ok(record) => record,
            Err(_) => {
                rows.push((
                    row,
                    Err(vec![FieldError::new("row", "cannot be read as CSV")]),
                ));
                continue;
            }
        };
        if record.iter().all(|field| field.trim().is_empty()) {
            continue;
        }
        if record.len() != header.len() {
            rows.push((
                row,
                Err(vec![FieldError::new(
                    "row",
                    format!(
                        "has {} fields where the header has {}",
                        record.len(),
                        header.len()
                    ),
                )]),
            ));
            continue;
        }
        rows.push((row, Ok(request_of(&header, &record))));
    }
    Ok(rows)
}

fn check_header(header: &[String]) -> Result<(), Error> {
    let mut problems = Vec::new();
    if !header.iter().any(|name| name == "name") {
        problems.push(FieldError::new(
            "header",
            "must name a `name` column (columns separated by , or ;)",
        ));
    }
    for (position, name) in header.iter().enumerate() {
        let column = format!("header[{}]", position + 1);
        if !TARGET_COLUMNS.contains(&name.as_str()) && !is_field_name(name) {
            problems.push(FieldError::new(
                column,
                "is neither a target column nor a custom field name ([a-z][a-z0-9_]{0,39})",
            ));
        } else if header[..position].contains(name) {
            problems.push(FieldError::new(column, "repeats an earlier column"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Unprocessable {
            code: "csv_header_invalid",
            message: "The header row does not name the columns this import reads.".into(),
            details: problems,
        })
    }
}

fn request_of(header: &[String], record: &csv::StringRecord) -> CreateTargetRequest {
    let mut request = CreateTargetRequest::default();
    let mut custom = BTreeMap::new();
    for (name, value) in header.iter().zip(record.iter()) {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let value = value.to_owned();
        match name.as_str() {
            "name" => request.name = value,
            "email" => request.email = Some(value),
            "twitter_username" => request.twitter_username = Some(value),
            "instagram_username" => request.instagram_username = Some(value),
            "notes" => request.notes = Some(value),
            "timezone" => request.timezone = Some(value),
            field => {
                custom.insert(field.to_owned(), value);
            }
        }
    }
    request.custom_fields = (!custom.is_empty()).then_some(custom);
    request
}

/// Imports a CSV file for `user`: every row answered, valid new ones stored in bulk.
pub async fn import_csv(
    store: &TargetStore,
    user: &UserId,
    bytes: &[u8],
) -> Result<ImportResponse, Error> {
    let rows = parse_csv(bytes)?;
    let mut results: Vec<ImportRowResult> = Vec::with_capacity(rows.len());
    // The same person twice in the file: the later row is the earlier one's duplicate, by
    // email, X handle or Instagram username.
    let mut seen: HashMap<(&'static str, String), usize> = HashMap::new();
    let mut drafts = Vec::new();
    let mut draft_rows = Vec::new();
    for (row, parsed) in rows {
        let draft = parsed.and_then(|request| request.parse(""));
        let draft = match draft {
            Ok(draft) => draft,
            Err(problems) => {
                results.push(ImportRowResult {
                    row,
                    status: ImportRowStatus::Invalid,
                    id: None,
                    problems,
                });
                continue;
            }
        };
        let keys: Vec<(&'static str, String)> = [
            ("email", draft.email.as_ref().map(|v| v.as_str().to_owned())),
            (
                "twitter_username",
                draft
                    .twitter_username
                    .as_ref()
                    .map(|v| v.as_str().to_ascii_lowercase()),
            ),
            (
                "instagram_username",
                draft
                    .instagram_username
                    .as_ref()
                    .map(|v| v.as_str().to_ascii_lowercase()),
            ),
        ]
        .into_iter()
        .filter_map(|(kind, value)| value.map(|value| (kind, value)))
        .collect();
        if let Some(earlier) = keys.iter().find_map(|key| seen.get(key)) {
            // Its id is filled in once the earlier row is stored.
            results.push(ImportRowResult {
                row,
                status: ImportRowStatus::Duplicate,
                id: None,
                problems: vec![FieldError::new("row", format!("repeats row {earlier}"))],
            });
            continue;
        }
        for key in keys {
            seen.insert(key, row);
        }
        results.push(ImportRowResult {
            row,
            status: ImportRowStatus::Unavailable,
            id: None,
            problems: Vec::new(),
        });
        draft_rows.push(results.len() - 1);
        drafts.push(draft);
    }
    let outcome = store
        .insert_many(user, drafts, &mut |index, inserted| {
            let result = &mut results[draft_rows[index]];
            match inserted {
                Inserted::Created(id) => {
                    result.status = ImportRowStatus::Created;
                    result.id = Some(id);
                }
                Inserted::Duplicate(id) => {
                    result.status = ImportRowStatus::Duplicate;
                    result.id = id;
                }
                Inserted::OverLimit => {
                    result.status = ImportRowStatus::Invalid;
                    result.problems = vec![FieldError::new(
                        "row",
                        "would pass the limit of 10,000 active targets",
                    )];
                }
            }
        })
        .await;
    let stored_any = results
        .iter()
        .any(|result| result.status == ImportRowStatus::Created);
    if let Err(error) = outcome {
        if !stored_any {
            return Err(error);
        }
        tracing::warn!(error = %crate::error::ErrorChain(&error), "an import stopped part-way");
    }
    fill_in_duplicates(&mut results);
    let count = |status| results.iter().filter(|r| r.status == status).count();
    Ok(ImportResponse {
        created: count(ImportRowStatus::Created),
        duplicates: count(ImportRowStatus::Duplicate),
        invalid: count(ImportRowStatus::Invalid),
        unavailable: count(ImportRowStatus::Unavailable),
        results,
    })
}

/// A row that repeats an earlier one gets the earlier row's target id, once it has one.
fn fill_in_duplicates(results: &mut [ImportRowResult]) {
    let ids: HashMap<usize, Option<String>> = results
        .iter()
        .map(|result| (result.row, result.id.clone()))
        .collect();
    for result in results.iter_mut() {
        if result.status != ImportRowStatus::Duplicate || result.id.is_some() {
            continue;
        }
        let earlier = result
            .problems
            .first()
            .and_then(|problem| problem.problem.strip_prefix("repeats row "))
            .and_then(|row| row.parse::<usize>().ok());
        if let Some(id) = earlier.and_then(|row| ids.get(&row).cloned().flatten()) {
            result.id = Some(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(text: &str) -> Vec<(usize, Result<CreateTargetRequest, Vec<FieldError>>)> {
        parse_csv(text.as_bytes()).unwrap()
    }

    #[test]
    fn quoted_fields_line_breaks_a_bom_and_semicolons_are_read() {
        let text = "\u{feff}Name;Email;Company\r\n\"Lovelace; Ada\";ada@example.com;\"Analytical\nEngines\"\r\n";
        let rows = requests(text);
        assert_eq!(rows.len(), 1);
        let (row, request) = &rows[0];
        assert_eq!(*row, 2);
        let request = request.as_ref().unwrap();
        assert_eq!(request.name, "Lovelace; Ada");
        assert_eq!(request.email.as_deref(), Some("ada@example.com"));
        assert_eq!(
            request.custom_fields.as_ref().unwrap()["company"],
            "Analytical\nEngines"
        );
    }

    #[test]
    fn rows_are_numbered_as_a_spreadsheet_shows_them() {
        let rows = requests(
            "name,email\nAda,\"a@example.com\"\n\n\"Grace\nHopper\",g@example.com\nShort\n",
        );
        let numbers: Vec<usize> = rows.iter().map(|(row, _)| *row).collect();
        // The blank line is skipped; a quoted line break stays in its field.
        assert_eq!(numbers, [2, 4, 6]);
        assert!(rows[2].1.is_err(), "a row with too few fields");
    }

    #[test]
    fn a_header_without_name_or_with_odd_columns_is_refused() {
        for text in [
            "email\na@example.com\n",
            "name,Bad Column\nAda,x\n",
            "name,name\nA,B\n",
        ] {
            let refused = parse_csv(text.as_bytes()).unwrap_err();
            assert_eq!(refused.code(), "csv_header_invalid", "{text}");
        }
        let latin1 = b"name\nJos\xe9\n";
        assert_eq!(parse_csv(latin1).unwrap_err().code(), "csv_unreadable");
    }

    #[test]
    fn more_than_ten_thousand_rows_are_refused_whole() {
        let mut text = String::from("name\n");
        for i in 0..=MAX_IMPORT_ROWS {
            text.push_str(&format!("P{i}\n"));
        }
        assert_eq!(
            parse_csv(text.as_bytes()).unwrap_err().code(),
            "payload_too_large"
        );
    }
}
