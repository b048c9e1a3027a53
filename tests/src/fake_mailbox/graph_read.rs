//! Microsoft Graph's reads of a mailbox: a folder's delta (its pages and tokens), a folder's
//! message list with the `receivedDateTime` filter, one message, and the message JSON they
//! share. The mailbox and `sendMail` are in `graph.rs`. What it follows (the marks as
//! in [`crate::fake_mailbox`]):
//!
//! - `GET /v1.0/me/mailFolders/inbox/messages/delta`
//!   (<https://learn.microsoft.com/graph/api/message-delta>,
//!   <https://learn.microsoft.com/graph/delta-query-messages>,
//!   <https://learn.microsoft.com/graph/delta-query-overview>): pages with `@odata.nextLink` until
//!   one with `@odata.deltaLink`, never both; the options (`$select`, `$filter` on
//!   `receivedDateTime`) are carried in the links; `Prefer: odata.maxpagesize=N`
//!   (`Preference-Applied` echoes it), 10 by default (*observed* in a client's docs:
//!   <https://docs.rs/io-msgraph/0.9.2/src/io_msgraph/v1/rest/users/messages/delta.rs.html>); a
//!   delta link returns what was added since. An expired or unknown token is 410 Gone (Microsoft
//!   staff answers: <https://learn.microsoft.com/en-us/answers/questions/649481>,
//!   <https://learn.microsoft.com/en-us/answers/questions/1142247>) with code `SyncStateNotFound`
//!   and the message Microsoft gives for directory objects
//!   (<https://devblogs.microsoft.com/microsoft365dev/duration-of-change-tracking-tokens-for-identity-and-education-resources/>):
//!   the body for mail is *not confirmed*.
//! - `GET /v1.0/me/messages/{id}` (<https://learn.microsoft.com/graph/api/message-get>):
//!   `internetMessageHeaders` only when `$select`ed (message resource); a Sent Items copy has none
//!   (*observed*: <https://github.com/microsoftgraph/microsoft-graph-docs/issues/12726>,
//!   <https://github.com/OfficeDev/office-js/issues/5413>); unknown id: 404 `ErrorItemNotFound`
//!   "The specified object was not found in the store." (*observed*:
//!   <https://github.com/microsoft/MHA/issues/77>).
//! - `GET /v1.0/me/mailFolders/inbox/messages`
//!   (<https://learn.microsoft.com/graph/api/mailfolder-list-messages>): 10 a page by default,
//!   `$top` up to 1000, `@odata.nextLink`; `$filter=receivedDateTime ge|gt|le|lt <ISO 8601>`
//!   (joined by `and`); newest first unless `$orderby=receivedDateTime asc` (*not confirmed*); any
//!   other filter: 400 `ErrorInvalidUrlQueryFilter` (*not confirmed*).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::graph::{Folder, GraphMessage, Refusal, graph_address, graph_error, graph_user};
use super::mime::{Address, addresses};
use super::{Params, base_url, iso, param, random_token};
use crate::fake_oauth::bearer;
use crate::fake_social::Shared;

/// Graph's page sizes: a delta or list page's default, and `$top`'s maximum.
const GRAPH_PAGE: (usize, usize) = (10, 1000);

/// What a delta query asks: carried by its links from page to page and round to round.
#[derive(Debug, Clone)]
pub(super) struct DeltaQuery {
    folder: Folder,
    select: Option<String>,
    filter: Vec<TimeBound>,
}

/// Where a round of a delta query is: its changes after `since` up to `until`, from `offset`.
#[derive(Debug, Clone)]
pub(super) struct DeltaRound {
    query: DeltaQuery,
    since: u64,
    until: u64,
    offset: usize,
}

/// A message as Graph shows it: everything, or the `$select`ed properties (and `id`).
fn graph_message_json(message: &GraphMessage, select: Option<&str>) -> Value {
    let written = &message.written;
    let from = written.from().unwrap_or_default().graph();
    let to: Vec<Value> = addresses(written.header("To").unwrap_or_default())
        .iter()
        .map(Address::graph)
        .collect();
    let received = iso(message.received);
    let mut full = json!({
        "@odata.etag": format!("W/\"CQAAABYAAAD{:08}\"", message.seq),
        "id": message.id, "createdDateTime": received, "lastModifiedDateTime": received,
        "receivedDateTime": received, "sentDateTime": received, "hasAttachments": false,
        "internetMessageId": written.message_id(), "subject": written.subject(),
        "bodyPreview": written.snippet(), "importance": "normal",
        "parentFolderId": message.folder.id(), "conversationId": message.conversation_id,
        "isRead": message.folder == Folder::SentItems, "isDraft": false,
        "body": {"contentType": "text", "content": written.body},
        "sender": from, "from": from, "toRecipients": to, "ccRecipients": [],
        "bccRecipients": [], "replyTo": [],
    });
    let Some(select) = select else {
        return full;
    };
    let Value::Object(properties) = &mut full else {
        return Value::Null;
    };
    let mut chosen = Map::new();
    for name in ["@odata.etag", "id"] {
        if let Some(value) = properties.remove(name) {
            chosen.insert(name.to_owned(), value);
        }
    }
    for name in select.split(',').map(str::trim) {
        if name.eq_ignore_ascii_case("internetMessageHeaders") {
            // A Sent Items copy carries none (observed).
            if message.folder == Folder::Inbox {
                let headers: Vec<Value> = written
                    .headers
                    .iter()
                    .map(|(name, value)| json!({"name": name, "value": value}))
                    .collect();
                chosen.insert("internetMessageHeaders".to_owned(), headers.into());
            }
            continue;
        }
        if let Some(key) = properties
            .keys()
            .find(|key| key.eq_ignore_ascii_case(name))
            .cloned()
            && let Some(value) = properties.remove(&key)
        {
            chosen.insert(key, value);
        }
    }
    Value::Object(chosen)
}

/// `receivedDateTime` against a time (`$filter=receivedDateTime ge 2025-07-01T00:00:00Z`).
#[derive(Debug, Clone, Copy)]
struct TimeBound {
    comparison: std::cmp::Ordering,
    inclusive: bool,
    at: OffsetDateTime,
}

impl TimeBound {
    fn admits(&self, received: OffsetDateTime) -> bool {
        let order = received.cmp(&self.at);
        order == self.comparison || (self.inclusive && order == std::cmp::Ordering::Equal)
    }
}

/// Graph's `$filter` on `receivedDateTime`, clauses joined by `and`; anything else is refused.
fn time_filter(filter: Option<&str>) -> Result<Vec<TimeBound>, Refusal> {
    let refuse = || {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidUrlQueryFilter",
            "The query filter contains one or more invalid nodes.",
        )
    };
    let Some(filter) = filter.filter(|filter| !filter.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    let words: Vec<&str> = filter.split_whitespace().collect();
    let clauses: Vec<&[&str]> = words.chunks(4).collect();
    let mut bounds = Vec::new();
    for (index, clause) in clauses.iter().enumerate() {
        // `field op value`, then `and` before every clause but the last.
        let last = index + 1 == clauses.len();
        let (field, operator, value) = match (*clause, last) {
            ([field, operator, value], true) => (field, operator, value),
            ([field, operator, value, joiner], false) if joiner.eq_ignore_ascii_case("and") => {
                (field, operator, value)
            }
            _ => return Err(refuse()),
        };
        if !field.eq_ignore_ascii_case("receivedDateTime") {
            return Err(refuse());
        }
        let value = value.trim_matches('\'');
        let at = OffsetDateTime::parse(value, &Rfc3339)
            .or_else(|_| OffsetDateTime::parse(&format!("{value}T00:00:00Z"), &Rfc3339))
            .map_err(|_| refuse())?;
        let (comparison, inclusive) = match operator.to_ascii_lowercase().as_str() {
            "ge" => (std::cmp::Ordering::Greater, true),
            "gt" => (std::cmp::Ordering::Greater, false),
            "le" => (std::cmp::Ordering::Less, true),
            "lt" => (std::cmp::Ordering::Less, false),
            _ => return Err(refuse()),
        };
        bounds.push(TimeBound {
            comparison,
            inclusive,
            at,
        });
    }
    Ok(bounds)
}

fn graph_item_not_found() -> Response {
    graph_error(
        StatusCode::NOT_FOUND,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

/// `odata.maxpagesize` in a `Prefer` header.
fn preferred_page_size(headers: &HeaderMap) -> Option<usize> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|preference| {
            let (name, value) = preference.split_once('=')?;
            (name.trim() == "odata.maxpagesize")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
}

/// `GET /v1.0/me/mailFolders/{folder}/messages/delta`.
pub(super) async fn graph_delta(
    State(state): State<Shared>,
    Path(folder): Path<String>,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> Response {
    let mut script = state.lock().expect("lock");
    let Some(user) = graph_user(&script, &headers) else {
        return crate::fake_oauth::graph_unauthorized(bearer(&headers));
    };
    let mail = &mut script.mailboxes;
    let preferred = preferred_page_size(&headers);
    let limit = mail.page_limit(
        preferred.map(|size| size.to_string()).as_deref(),
        GRAPH_PAGE,
    );
    let Some(folder) = Folder::named(&folder) else {
        return graph_item_not_found();
    };
    let mailbox = mail.graph_box(&graph_address(&user));
    let round = if let Some(skip) = param(&query, "$skiptoken") {
        mailbox.rounds.get(skip).cloned()
    } else if let Some(delta) = param(&query, "$deltatoken") {
        mailbox.deltas.get(delta).map(|(query, seen)| DeltaRound {
            query: query.clone(),
            since: *seen,
            until: mailbox.seq,
            offset: 0,
        })
    } else {
        let filter = match time_filter(param(&query, "$filter")) {
            Ok(filter) => filter,
            Err(refusal) => return refusal.respond(),
        };
        Some(DeltaRound {
            query: DeltaQuery {
                folder,
                select: param(&query, "$select").map(str::to_owned),
                filter,
            },
            since: 0,
            until: mailbox.seq,
            offset: 0,
        })
    };
    let Some(round) = round else {
        return graph_error(
            StatusCode::GONE,
            "SyncStateNotFound",
            "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
        );
    };
    let changes: Vec<&GraphMessage> = mailbox
        .messages
        .iter()
        .filter(|message| {
            message.folder == round.query.folder
                && message.seq > round.since
                && message.seq <= round.until
                && round
                    .query
                    .filter
                    .iter()
                    .all(|bound| bound.admits(message.received))
        })
        .collect();
    let page: Vec<Value> = changes
        .iter()
        .skip(round.offset)
        .take(limit)
        .map(|message| graph_message_json(message, round.query.select.as_deref()))
        .collect();
    let link = format!(
        "{}/v1.0/me/mailFolders/{}/messages/delta",
        base_url(&headers),
        round.query.folder.name()
    );
    let mut body = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(message)",
        "value": page,
    });
    let next_offset = round.offset + page.len();
    if next_offset < changes.len() {
        let token = random_token();
        mailbox.rounds.insert(
            token.clone(),
            DeltaRound {
                offset: next_offset,
                ..round
            },
        );
        body["@odata.nextLink"] = format!("{link}?$skiptoken={token}").into();
    } else {
        let token = random_token();
        mailbox
            .deltas
            .insert(token.clone(), (round.query, round.until));
        body["@odata.deltaLink"] = format!("{link}?$deltatoken={token}").into();
    }
    let mut response = (StatusCode::OK, Json(body)).into_response();
    if let Some(value) =
        preferred.and_then(|size| HeaderValue::from_str(&format!("odata.maxpagesize={size}")).ok())
    {
        response.headers_mut().insert("preference-applied", value);
    }
    response
}

/// `GET /v1.0/me/mailFolders/{folder}/messages`.
pub(super) async fn graph_list(
    State(state): State<Shared>,
    Path(folder): Path<String>,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> Response {
    let mut script = state.lock().expect("lock");
    let Some(user) = graph_user(&script, &headers) else {
        return crate::fake_oauth::graph_unauthorized(bearer(&headers));
    };
    let mail = &mut script.mailboxes;
    let Some(folder) = Folder::named(&folder) else {
        return graph_item_not_found();
    };
    let filter = match time_filter(param(&query, "$filter")) {
        Ok(filter) => filter,
        Err(refusal) => return refusal.respond(),
    };
    let top = mail.page_limit(param(&query, "$top"), GRAPH_PAGE);
    let skip: usize = param(&query, "$skip")
        .and_then(|skip| skip.parse().ok())
        .unwrap_or(0);
    let ascending =
        param(&query, "$orderby").is_some_and(|order| order.to_ascii_lowercase().ends_with(" asc"));
    let select = param(&query, "$select");
    let mailbox = mail.graph_box(&graph_address(&user));
    let mut matching: Vec<&GraphMessage> = mailbox
        .messages
        .iter()
        .filter(|message| {
            message.folder == folder && filter.iter().all(|bound| bound.admits(message.received))
        })
        .collect();
    matching.sort_by_key(|message| (message.received, message.seq));
    if !ascending {
        matching.reverse();
    }
    let page: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(top)
        .map(|message| graph_message_json(message, select))
        .collect();
    let mut body = json!({
        "@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#users('{}')/mailFolders('{}')/messages", user.id, folder.name()),
        "value": page,
    });
    if skip + page.len() < matching.len() {
        let mut next: Vec<(&str, String)> = ["$filter", "$select", "$orderby"]
            .iter()
            .filter_map(|name| param(&query, name).map(|value| (*name, value.to_owned())))
            .collect();
        next.push(("$top", top.to_string()));
        next.push(("$skip", (skip + page.len()).to_string()));
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(next)
            .finish();
        body["@odata.nextLink"] = format!(
            "{}/v1.0/me/mailFolders/{}/messages?{encoded}",
            base_url(&headers),
            folder.name()
        )
        .into();
    }
    (StatusCode::OK, Json(body)).into_response()
}

/// `GET /v1.0/me/messages/{id}`.
pub(super) async fn graph_get(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> Response {
    let mut script = state.lock().expect("lock");
    let Some(user) = graph_user(&script, &headers) else {
        return crate::fake_oauth::graph_unauthorized(bearer(&headers));
    };
    let mailbox = script.mailboxes.graph_box(&graph_address(&user));
    match mailbox.messages.iter().find(|message| message.id == id) {
        Some(message) => (
            StatusCode::OK,
            Json(graph_message_json(message, param(&query, "$select"))),
        )
            .into_response(),
        None => graph_item_not_found(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::http::header;

    use super::*;
    use crate::fake_mailbox::test_client::{Mailbox, note, outreach_mime, reply_to};
    use crate::fake_mailbox::{GraphSendAnswer, now};
    use crate::fake_oauth::Provider;
    use crate::fake_social::FakeSocial;

    #[tokio::test]
    async fn fake_mailbox_graph_reply_joins_the_sent_conversation_in_the_delta() {
        let fake = FakeSocial::start().await;
        let graph = Mailbox::of(&fake, Provider::Microsoft).await;
        let (status, _, first) = graph.follow(&graph.delta_start(), Some(50)).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(first["value"], json!([]));
        assert!(first.get("@odata.nextLink").is_none());
        let mut delta = first["@odata.deltaLink"]
            .as_str()
            .expect("a delta link")
            .to_owned();

        let mime = outreach_mime(
            "Ada <ada@contoso.example>",
            "bob@client.example",
            "Hello Bob",
            "<pw.2.b@contoso.example>",
            "Shall we talk?",
        );
        let (status, _, body) = graph.graph_send_mime(&mime).await;
        assert_eq!(status, 202);
        assert_eq!(body, Value::Null, "no body");
        let sent = fake.sent_mail().pop().expect("recorded");
        assert_eq!(sent.provider, Provider::Microsoft);
        assert_eq!(sent.mailbox, "ada@contoso.example");
        assert_eq!(
            sent.message_id, "<pw.2.b@contoso.example>",
            "the MIME's Message-ID is kept"
        );
        assert_eq!(sent.subject, "Hello Bob");

        let (_, _, after_send) = graph.follow(&delta, None).await;
        assert_eq!(
            after_send["value"],
            json!([]),
            "Sent Items are not the Inbox"
        );
        delta = after_send["@odata.deltaLink"].as_str().unwrap().to_owned();

        let reply = fake.deliver(reply_to(
            "ada@contoso.example",
            "<pw.2.b@contoso.example>",
            "RE: Hello Bob",
        ));
        let (status, _, changes) = graph.follow(&delta, None).await;
        assert_eq!(status, 200, "{changes}");
        let message = &changes["value"][0];
        assert_eq!(message["id"], reply.as_str());
        assert_eq!(
            message["conversationId"],
            sent.thread_id.as_str(),
            "the conversation of the sent mail"
        );
        assert_eq!(
            message["from"]["emailAddress"]["address"],
            "bob@client.example"
        );
        assert_eq!(message["subject"], "RE: Hello Bob");
        assert!(
            message["internetMessageId"]
                .as_str()
                .unwrap()
                .ends_with("@client.example>")
        );
        assert!(message["receivedDateTime"].as_str().unwrap().ends_with('Z'));
        assert!(
            message.get("body").is_none(),
            "only what $select asked: {message}"
        );
        let (_, _, quiet) = graph
            .follow(changes["@odata.deltaLink"].as_str().unwrap(), None)
            .await;
        assert_eq!(quiet["value"], json!([]), "nothing new since");

        let (status, read) = graph
            .get(
                &format!("/v1.0/me/messages/{reply}"),
                &[(
                    "$select",
                    "id,conversationId,internetMessageHeaders,receivedDateTime,from",
                )],
            )
            .await;
        assert_eq!(status, 200, "{read}");
        let headers = headers_of(&read["internetMessageHeaders"]);
        assert_eq!(
            headers.get("in-reply-to").map(String::as_str),
            Some("<pw.2.b@contoso.example>")
        );
        assert_eq!(
            headers.get("auto-submitted").map(String::as_str),
            Some("no")
        );
        let (status, copy) = graph
            .get(
                &format!("/v1.0/me/messages/{}", sent.provider_message_id),
                &[("$select", "internetMessageHeaders,internetMessageId")],
            )
            .await;
        assert_eq!(status, 200, "{copy}");
        assert_eq!(copy["internetMessageId"], "<pw.2.b@contoso.example>");
        assert!(
            copy.get("internetMessageHeaders").is_none(),
            "a Sent Items copy has none"
        );
        let (status, missing) = graph.get("/v1.0/me/messages/AAMkNone=", &[]).await;
        assert_eq!(
            (status, missing["error"]["code"].as_str()),
            (404, Some("ErrorItemNotFound"))
        );
    }

    fn headers_of(list: &Value) -> HashMap<String, String> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|header| {
                (
                    header["name"].as_str().unwrap().to_ascii_lowercase(),
                    header["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn fake_mailbox_graph_delta_pages_expires_lists_and_refuses() {
        let fake = FakeSocial::start().await;
        let graph = Mailbox::of(&fake, Provider::Microsoft).await;
        fake.deliver(note("ada@contoso.example", "old", 2 * 86_400));
        for n in 0..3 {
            fake.deliver(note("ada@contoso.example", &format!("new {n}"), 0));
        }

        let (status, headers, first) = graph.follow(&graph.delta_start(), Some(3)).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(headers["preference-applied"], "odata.maxpagesize=3");
        assert_eq!(first["value"].as_array().unwrap().len(), 3);
        assert!(first.get("@odata.deltaLink").is_none(), "never both links");
        let (_, _, last) = graph
            .follow(
                first["@odata.nextLink"].as_str().expect("a next page"),
                Some(3),
            )
            .await;
        assert_eq!(last["value"].as_array().unwrap().len(), 1);
        let delta = last["@odata.deltaLink"]
            .as_str()
            .expect("the round's end")
            .to_owned();

        fake.expire_graph_delta("ada@contoso.example");
        let (status, _, gone) = graph.follow(&delta, None).await;
        assert_eq!(status, 410, "{gone}");
        assert_eq!(gone["error"]["code"], "SyncStateNotFound");
        let (status, _, again) = graph.follow(&graph.delta_start(), None).await;
        assert_eq!(
            (status, again["value"].as_array().unwrap().len()),
            (200, 4),
            "a fresh start sees all"
        );

        fake.mailbox_page_size(Some(2));
        let since = iso(now() - time::Duration::hours(1));
        let (status, listed) = graph
            .get(
                "/v1.0/me/mailFolders/inbox/messages",
                &[
                    ("$filter", &format!("receivedDateTime ge {since}")),
                    ("$select", "id,subject,receivedDateTime"),
                ],
            )
            .await;
        assert_eq!(status, 200, "{listed}");
        assert_eq!(listed["value"].as_array().unwrap().len(), 2);
        let (_, _, rest) = graph
            .follow(
                listed["@odata.nextLink"].as_str().expect("a next page"),
                None,
            )
            .await;
        assert_eq!(
            rest["value"].as_array().unwrap().len(),
            1,
            "the old one is filtered out"
        );
        assert!(rest.get("@odata.nextLink").is_none());
        let (status, refused) = graph
            .get(
                "/v1.0/me/mailFolders/inbox/messages",
                &[("$filter", "subject eq 'x'")],
            )
            .await;
        assert_eq!(status, 400, "{refused}");

        let stranger = Mailbox {
            token: "EwB.not-issued".into(),
            ..Mailbox::of(&fake, Provider::Microsoft).await
        };
        let (status, _, refused) = stranger.graph_send_mime("From: a@b.example\r\n\r\n").await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (401, Some("InvalidAuthenticationToken"))
        );
        let response = graph
            .http
            .post(format!("{}/v1.0/me/sendMail", graph.base))
            .bearer_auth(&graph.token)
            .header(header::CONTENT_TYPE, "text/plain")
            .body("not base64 at all!")
            .send()
            .await
            .unwrap();
        let (status, _, refused) = Mailbox::read(response).await;
        assert_eq!(status, 400);
        assert_eq!(
            refused["error"]["message"],
            "Invalid base64 string for MIME content."
        );
        let foreign = outreach_mime(
            "boss@contoso.example",
            "bob@client.example",
            "s",
            "<x@y.example>",
            "b",
        );
        let (status, _, refused) = graph.graph_send_mime(&foreign).await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (403, Some("ErrorSendAsDenied"))
        );

        fake.graph_send_answers(&[
            GraphSendAnswer::Throttled {
                retry_after_seconds: 7,
            },
            GraphSendAnswer::ServiceUnavailable {
                retry_after_seconds: None,
            },
            GraphSendAnswer::InvalidRecipients,
        ]);
        let mine = outreach_mime(
            "ada@contoso.example",
            "bob@client.example",
            "s",
            "<m@y.example>",
            "b",
        );
        let (status, headers, throttled) = graph.graph_send_mime(&mine).await;
        assert_eq!(status, 429, "{throttled}");
        assert_eq!(headers[header::RETRY_AFTER], "7");
        assert_eq!(graph.graph_send_mime(&mine).await.0, 503);
        let (status, _, refused) = graph.graph_send_mime(&mine).await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (400, Some("ErrorInvalidRecipients"))
        );
        assert!(fake.sent_mail().is_empty(), "nothing refused is recorded");

        let (status, refused) = graph
            .post_json(
                "/v1.0/me/sendMail",
                &json!({"message": {"subject": "nobody"}}),
            )
            .await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (400, Some("ErrorInvalidRecipients"))
        );
        let (status, accepted) = graph
            .post_json(
                "/v1.0/me/sendMail",
                &json!({"message": {"subject": "Hello", "body": {"contentType": "Text", "content": "Hi"},
                    "toRecipients": [{"emailAddress": {"address": "bob@client.example"}}]},
                    "saveToSentItems": true}),
            )
            .await;
        assert_eq!(status, 202, "{accepted}");
        let (_, sent_items) = graph
            .get("/v1.0/me/mailFolders/sentitems/messages", &[])
            .await;
        assert_eq!(sent_items["value"][0]["subject"], "Hello");
        assert_eq!(fake.sent_mail()[0].body, "Hi");
    }
}
