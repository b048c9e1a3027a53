//! Gmail's reads of a mailbox: the history list, the message list with the search query (`q`)
//! the resync needs, and one message. The mailbox and `messages.send` are in `gmail.rs`. What it
//! follows (the marks as in [`crate::fake_mailbox`]):
//!
//! - `GET /gmail/v1/users/me/history`
//!   (<https://developers.google.com/workspace/gmail/api/reference/rest/v1/users.history/list>):
//!   records after `startHistoryId`, oldest first, each `{id, messages, messagesAdded}`; "History
//!   IDs increase chronologically but are not contiguous with random gaps" (here gaps of 1, 3 or
//!   5); `labelId`, `historyTypes`; `maxResults` "defaults to 100. The maximum allowed value for
//!   this field is 500"; `nextPageToken`; `historyId` is the mailbox's current one; "Supplying an
//!   invalid or out of date startHistoryId typically returns an HTTP 404" (body *observed*:
//!   "Requested entity was not found.",
//!   <https://github.com/LogicLabs-OU/OpenArchiver/issues/443>); `history` is left out when empty
//!   (*observed*: <https://github.com/googleworkspace/python-samples/issues/200>); a missing or
//!   non-numeric start is 400 "Missing/invalid parameter: startHistoryId" (*observed*:
//!   <https://github.com/googleapis/google-api-nodejs-client/issues/978>).
//! - `GET /gmail/v1/users/me/profile` (in [`crate::fake_oauth`]): `historyId` is the current one.
//! - `GET /gmail/v1/users/me/messages/{id}`
//!   (<https://developers.google.com/workspace/gmail/api/reference/rest/v1/users.messages/get>):
//!   `format` (`full` by default, `metadata`, `minimal`, `raw`) and `metadataHeaders` ("only
//!   include headers specified", matched here regardless of case, *not confirmed*); header values
//!   are shown with RFC 2047 words decoded (*not confirmed*); 404 for an unknown id.
//! - `GET /gmail/v1/users/me/messages`
//!   (<https://developers.google.com/workspace/gmail/api/reference/rest/v1/users.messages/list>,
//!   <https://developers.google.com/workspace/gmail/api/guides/filtering>,
//!   <https://support.google.com/mail/answer/7190>): `labelIds` (all must match), `maxResults`
//!   (100 by default, 500 at most), `pageToken`, `{messages: [{id, threadId}], nextPageToken,
//!   resultSizeEstimate}`; `q` supports `newer_than:`/`older_than:` with `d`, `m` (30 days here)
//!   and `y` (365 days), `after:`/`before:` with a date ("interpreted as midnight on that date in
//!   the PST timezone", UTC−8 here) or epoch seconds, `in:inbox`, `in:sent` and `label:`; any
//!   other term is refused (400, the stand-in's own limit). Newest first (*not confirmed*).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use serde_json::{Value, json};

use super::gmail::{GMAIL_PAGE, GmailMessage, gmail_invalid, gmail_mailbox, gmail_not_found};
use super::mime::decode_words;
use super::{Params, now, param, params_named, unix_millis};
use crate::fake_social::Shared;

/// `GET /gmail/v1/users/me/history`.
pub(super) async fn gmail_history(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> Response {
    let mut script = state.lock().expect("lock");
    let Some(address) = gmail_mailbox(&script, &headers, &query) else {
        return crate::fake_oauth::gmail_unauthorized();
    };
    let mail = &mut script.mailboxes;
    let Some(start) = param(&query, "startHistoryId").and_then(|start| start.parse::<u64>().ok())
    else {
        return gmail_invalid("Missing/invalid parameter: startHistoryId");
    };
    let after = match param(&query, "pageToken") {
        Some(token) => match token.parse::<u64>() {
            Ok(after) => after,
            Err(_) => return gmail_invalid("Invalid pageToken"),
        },
        None => start,
    };
    let limit = mail.page_limit(param(&query, "maxResults"), GMAIL_PAGE);
    let label = param(&query, "labelId");
    let types: Vec<&str> = params_named(&query, "historyTypes").collect();
    let mailbox = mail.gmail_box(&address);
    if start < mailbox.oldest_kept {
        return gmail_not_found();
    }
    let added_wanted = types.is_empty() || types.contains(&"messageAdded");
    let mut records = mailbox.messages.iter().filter(|message| {
        added_wanted
            && message.history_id > after
            && label.is_none_or(|label| message.labels.contains(&label))
    });
    let page: Vec<&GmailMessage> = records.by_ref().take(limit).collect();
    let more = records.next().is_some();
    let mut body = json!({"historyId": mailbox.history_id.to_string()});
    if !page.is_empty() {
        body["history"] = page
            .iter()
            .map(|message| {
                json!({"id": message.history_id.to_string(),
                    "messages": [{"id": message.id, "threadId": message.thread_id}],
                    "messagesAdded": [{"message": {"id": message.id,
                        "threadId": message.thread_id, "labelIds": message.labels}}]})
            })
            .collect();
    }
    if let (true, Some(last)) = (more, page.last()) {
        body["nextPageToken"] = last.history_id.to_string().into();
    }
    (StatusCode::OK, Json(body)).into_response()
}

/// One term of Gmail's search query the stand-in understands.
enum SearchTerm {
    /// Received at or after this time (unix milliseconds).
    Since(i64),
    /// Received before this time.
    Before(i64),
    /// Carries this label.
    Label(String),
}

/// Gmail's `q`, the terms the resync needs; anything else is refused rather than ignored.
fn search_terms(query: &str, now_ms: i64) -> Result<Vec<SearchTerm>, String> {
    const DAY_MS: i64 = 86_400_000;
    let relative = |value: &str| -> Option<i64> {
        let unit_at = value.len().checked_sub(1)?;
        if !value.is_char_boundary(unit_at) {
            return None;
        }
        let (count, unit) = value.split_at(unit_at);
        let count: i64 = count.parse().ok()?;
        let unit = match unit {
            "d" => DAY_MS,
            "m" => 30 * DAY_MS,
            "y" => 365 * DAY_MS,
            _ => return None,
        };
        Some(now_ms - count * unit)
    };
    let moment = |value: &str| -> Option<i64> {
        if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
            return value.parse::<i64>().ok().map(|seconds| seconds * 1000);
        }
        let parts: Vec<&str> = value.split(['/', '-']).collect();
        let [year, month, day] = parts.as_slice() else {
            return None;
        };
        let date = time::Date::from_calendar_date(
            year.parse().ok()?,
            time::Month::try_from(month.parse::<u8>().ok()?).ok()?,
            day.parse().ok()?,
        )
        .ok()?;
        // "Interpreted as midnight on that date in the PST timezone": UTC−8.
        let midnight = date.midnight().assume_utc() + time::Duration::hours(8);
        Some(unix_millis(midnight))
    };
    query
        .split_whitespace()
        .map(|term| {
            let parsed = match term.split_once(':') {
                Some(("newer_than", value)) => relative(value).map(SearchTerm::Since),
                Some(("older_than", value)) => relative(value).map(SearchTerm::Before),
                Some(("after", value)) => moment(value).map(SearchTerm::Since),
                Some(("before", value)) => moment(value).map(SearchTerm::Before),
                Some(("in", "inbox")) => Some(SearchTerm::Label("INBOX".into())),
                Some(("in", "sent")) => Some(SearchTerm::Label("SENT".into())),
                Some(("label", value)) => Some(SearchTerm::Label(value.to_owned())),
                _ => None,
            };
            parsed.ok_or_else(|| term.to_owned())
        })
        .collect()
}

/// `GET /gmail/v1/users/me/messages`.
pub(super) async fn gmail_list(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> Response {
    let mut script = state.lock().expect("lock");
    let Some(address) = gmail_mailbox(&script, &headers, &query) else {
        return crate::fake_oauth::gmail_unauthorized();
    };
    let mail = &mut script.mailboxes;
    let terms = match search_terms(param(&query, "q").unwrap_or_default(), unix_millis(now())) {
        Ok(terms) => terms,
        Err(term) => {
            return gmail_invalid(&format!(
                "The platform stand-in does not support the search term {term:?}"
            ));
        }
    };
    let offset = match param(&query, "pageToken").map(str::parse::<usize>) {
        None => 0,
        Some(Ok(offset)) => offset,
        Some(Err(_)) => return gmail_invalid("Invalid pageToken"),
    };
    let limit = mail.page_limit(param(&query, "maxResults"), GMAIL_PAGE);
    let labels: Vec<&str> = params_named(&query, "labelIds").collect();
    let mailbox = mail.gmail_box(&address);
    let mut matching: Vec<&GmailMessage> = mailbox
        .messages
        .iter()
        .filter(|message| labels.iter().all(|label| message.labels.contains(label)))
        .filter(|message| {
            terms.iter().all(|term| match term {
                SearchTerm::Since(at) => message.internal_ms >= *at,
                SearchTerm::Before(at) => message.internal_ms < *at,
                SearchTerm::Label(label) => message.labels.contains(&label.as_str()),
            })
        })
        .collect();
    matching.sort_by_key(|message| std::cmp::Reverse((message.internal_ms, message.history_id)));
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|message| json!({"id": message.id, "threadId": message.thread_id}))
        .collect();
    let mut body = json!({"resultSizeEstimate": matching.len()});
    if offset + page.len() < matching.len() {
        body["nextPageToken"] = (offset + page.len()).to_string().into();
    }
    if !page.is_empty() {
        body["messages"] = page.into();
    }
    (StatusCode::OK, Json(body)).into_response()
}

/// `GET /gmail/v1/users/me/messages/{id}`.
pub(super) async fn gmail_get(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> Response {
    let mut script = state.lock().expect("lock");
    let Some(address) = gmail_mailbox(&script, &headers, &query) else {
        return crate::fake_oauth::gmail_unauthorized();
    };
    let mailbox = script.mailboxes.gmail_box(&address);
    let Some(message) = mailbox.find(&id) else {
        return gmail_not_found();
    };
    let written = &message.written;
    let raw = written.render();
    let mut body = json!({"id": message.id, "threadId": message.thread_id,
        "labelIds": message.labels, "snippet": written.snippet(),
        "sizeEstimate": raw.len(), "historyId": message.history_id.to_string(),
        "internalDate": message.internal_ms.to_string()});
    let format = param(&query, "format")
        .unwrap_or("full")
        .to_ascii_lowercase();
    let wanted: Vec<&str> = params_named(&query, "metadataHeaders").collect();
    let headers: Vec<Value> = written
        .headers
        .iter()
        .filter(|(name, _)| {
            format != "metadata"
                || wanted.is_empty()
                || wanted
                    .iter()
                    .any(|wanted| wanted.eq_ignore_ascii_case(name))
        })
        .map(|(name, value)| json!({"name": name, "value": decode_words(value)}))
        .collect();
    match format.as_str() {
        "minimal" => {}
        "raw" => body["raw"] = URL_SAFE.encode(raw.as_bytes()).into(),
        "metadata" => {
            body["payload"] = json!({"partId": "", "mimeType": written.mime_type(),
                "filename": "", "headers": headers});
        }
        _ => {
            body["payload"] = json!({"partId": "", "mimeType": written.mime_type(),
                "filename": "", "headers": headers,
                "body": {"size": written.body.len(),
                    "data": URL_SAFE.encode(written.body.as_bytes())}});
        }
    }
    (StatusCode::OK, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_mailbox::test_client::{Mailbox, note, outreach_mime, reply_to};
    use crate::fake_oauth::{GoogleUser, Provider};
    use crate::fake_social::FakeSocial;

    #[tokio::test]
    async fn fake_mailbox_gmail_reply_joins_the_sent_thread_in_the_inbox_history() {
        let fake = FakeSocial::start().await;
        fake.signs_in(GoogleUser {
            email: "grace@example.com".into(),
        });
        let gmail = Mailbox::of(&fake, Provider::Google).await;
        let start = gmail.history_id().await;

        let mime = outreach_mime(
            "Grace <grace@example.com>",
            "bob@client.example",
            "Hello Bob",
            "<pw.1.a@example.com>",
            "Shall we talk?",
        );
        let (status, sent) = gmail.gmail_send(&mime, None).await;
        assert_eq!(status, 200, "{sent}");
        assert_eq!(sent["labelIds"], json!(["SENT"]));
        assert_eq!(
            sent["threadId"], sent["id"],
            "a new thread is named by its first message"
        );
        let after_send = gmail.history_id().await;
        assert!(after_send.parse::<u64>().unwrap() > start.parse::<u64>().unwrap());

        let inbox_since = |start: &str| {
            vec![
                ("startHistoryId", start.to_owned()),
                ("historyTypes", "messageAdded".to_owned()),
                ("labelId", "INBOX".to_owned()),
            ]
        };
        let query = inbox_since(&start);
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, history) = gmail.get("/gmail/v1/users/me/history", &query).await;
        assert_eq!(status, 200, "{history}");
        assert!(
            history.get("history").is_none(),
            "a SENT message is not in the Inbox: {history}"
        );
        assert_eq!(history["historyId"], after_send.as_str());
        let (_, everything) = gmail
            .get("/gmail/v1/users/me/history", &[("startHistoryId", &start)])
            .await;
        assert_eq!(
            everything["history"][0]["messagesAdded"][0]["message"]["labelIds"],
            json!(["SENT"])
        );

        let reply = fake.deliver(reply_to(
            "grace@example.com",
            "<pw.1.a@example.com>",
            "Re: Hello Bob",
        ));
        let (status, history) = gmail.get("/gmail/v1/users/me/history", &query).await;
        assert_eq!(status, 200, "{history}");
        let records = history["history"].as_array().expect("records");
        assert_eq!(records.len(), 1, "{history}");
        let added = &records[0]["messagesAdded"][0]["message"];
        assert_eq!(added["id"], reply.as_str());
        assert_eq!(
            added["threadId"], sent["threadId"],
            "the reply joins the thread"
        );
        assert!(
            added["labelIds"]
                .as_array()
                .unwrap()
                .contains(&json!("INBOX"))
        );
        assert_eq!(history["historyId"], gmail.history_id().await.as_str());

        let (status, message) = gmail
            .get(
                &format!("/gmail/v1/users/me/messages/{reply}"),
                &[
                    ("format", "metadata"),
                    ("metadataHeaders", "From"),
                    ("metadataHeaders", "in-reply-to"),
                ],
            )
            .await;
        assert_eq!(status, 200, "{message}");
        assert_eq!(
            message["payload"]["headers"],
            json!([{"name": "From", "value": "Bob Stone <bob@client.example>"},
                {"name": "In-Reply-To", "value": "<pw.1.a@example.com>"}])
        );
        assert_eq!(message["threadId"], sent["threadId"]);
        assert!(
            message["internalDate"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .is_ok()
        );
        let (status, missing) = gmail
            .get("/gmail/v1/users/me/messages/0123456789abcdef", &[])
            .await;
        assert_eq!(status, 404);
        assert_eq!(missing["error"]["status"], "NOT_FOUND");

        let mails = fake.sent_mail();
        assert_eq!(mails.len(), 1);
        let mail = &mails[0];
        assert_eq!(
            (mail.provider, mail.mailbox.as_str(), mail.token.as_str()),
            (Provider::Google, "grace@example.com", gmail.token.as_str())
        );
        assert_eq!(mail.subject, "Hello Bob");
        assert_eq!(mail.to, "bob@client.example");
        assert_eq!(mail.body, "Shall we talk?");
        assert_eq!(mail.message_id, "<pw.1.a@example.com>");
        assert_eq!(
            mail.list_unsubscribe.as_deref(),
            Some("<https://pipewise.example/u/1>")
        );
        assert_eq!(
            mail.list_unsubscribe_post.as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        assert_eq!(mail.provider_message_id, sent["id"].as_str().unwrap());
        assert_eq!(mail.thread_id, sent["threadId"].as_str().unwrap());
    }

    #[tokio::test]
    async fn fake_mailbox_gmail_history_pages_lists_recent_mail_and_expires() {
        let fake = FakeSocial::start().await;
        let gmail = Mailbox::of(&fake, Provider::Google).await;
        let start = gmail.history_id().await;
        fake.mailbox_page_size(Some(2));
        let delivered: Vec<String> = (0..5)
            .map(|n| {
                let age = if n == 0 { 8 * 86_400 } else { 0 };
                fake.deliver(note("ada@example.com", &format!("note {n}"), age))
            })
            .collect();

        let mut seen = Vec::new();
        let mut page_token: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut query = vec![
                ("startHistoryId", start.clone()),
                ("labelId", "INBOX".to_owned()),
            ];
            if let Some(token) = &page_token {
                query.push(("pageToken", token.clone()));
            }
            let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, page) = gmail.get("/gmail/v1/users/me/history", &query).await;
            assert_eq!(status, 200, "{page}");
            pages += 1;
            for record in page["history"].as_array().expect("records") {
                seen.push(
                    record["messagesAdded"][0]["message"]["id"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            match page["nextPageToken"].as_str() {
                Some(token) => page_token = Some(token.to_owned()),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, delivered, "every record once, oldest first");

        let (status, recent) = gmail
            .get(
                "/gmail/v1/users/me/messages",
                &[("q", "newer_than:7d"), ("labelIds", "INBOX")],
            )
            .await;
        assert_eq!(status, 200, "{recent}");
        assert_eq!(recent["resultSizeEstimate"], 4, "the 8-day-old note is out");
        assert_eq!(recent["messages"].as_array().unwrap().len(), 2);
        assert_eq!(
            recent["messages"][0]["id"],
            delivered[4].as_str(),
            "newest first"
        );
        let token = recent["nextPageToken"].as_str().expect("a second page");
        let (_, second) = gmail
            .get(
                "/gmail/v1/users/me/messages",
                &[
                    ("q", "newer_than:7d"),
                    ("labelIds", "INBOX"),
                    ("pageToken", token),
                ],
            )
            .await;
        assert_eq!(second["messages"].as_array().unwrap().len(), 2);
        let two_days_ago = (now().unix_timestamp() - 2 * 86_400).to_string();
        let (_, after) = gmail
            .get(
                "/gmail/v1/users/me/messages",
                &[
                    ("q", &format!("after:{two_days_ago}")),
                    ("maxResults", "10"),
                ],
            )
            .await;
        assert_eq!(after["resultSizeEstimate"], 4);
        let (status, _) = gmail
            .get("/gmail/v1/users/me/messages", &[("q", "is:starred")])
            .await;
        assert_eq!(
            status, 400,
            "a term the stand-in does not know is refused, not ignored"
        );

        fake.expire_gmail_history("ada@example.com");
        let (status, expired) = gmail
            .get("/gmail/v1/users/me/history", &[("startHistoryId", &start)])
            .await;
        assert_eq!(status, 404, "{expired}");
        assert_eq!(
            expired["error"]["message"],
            "Requested entity was not found."
        );
        let current = gmail.history_id().await;
        let (status, fresh) = gmail
            .get(
                "/gmail/v1/users/me/history",
                &[("startHistoryId", &current)],
            )
            .await;
        assert_eq!(status, 200, "{fresh}");
        assert!(fresh.get("history").is_none());
        let (status, invalid) = gmail
            .get("/gmail/v1/users/me/history", &[("startHistoryId", "soon")])
            .await;
        assert_eq!(
            (status, invalid["error"]["status"].as_str()),
            (400, Some("INVALID_ARGUMENT"))
        );
    }
}
