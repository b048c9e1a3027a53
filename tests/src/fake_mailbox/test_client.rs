//! For the tests of the mailbox stand-in: a mailbox reached as the service reaches it
//! ([`Mailbox`]: the stand-in's base URL and a code-flow token), the message the service writes
//! ([`outreach_mime`]), and the messages tests deliver ([`reply_to`], [`note`]).

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::Inbound;
use crate::fake_oauth::Provider;
use crate::fake_oauth::tests::{client, mailbox_token};
use crate::fake_social::FakeSocial;

/// A message as the service writes one (`outreach_mime`): encoded subject, base64 body,
/// one-click unsubscribe headers.
pub(super) fn outreach_mime(
    from: &str,
    to: &str,
    subject: &str,
    message_id: &str,
    body: &str,
) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: =?UTF-8?B?{}?=\r\nMessage-ID: {message_id}\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\
         Content-Transfer-Encoding: base64\r\nList-Unsubscribe: <https://pipewise.example/u/1>\r\n\
         List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n{}\r\n",
        STANDARD.encode(subject),
        STANDARD.encode(body)
    )
}

/// A mailbox as the service reaches it: the stand-in's base URL and a code-flow token.
pub(super) struct Mailbox {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) token: String,
}

impl Mailbox {
    pub(super) async fn of(fake: &FakeSocial, provider: Provider) -> Self {
        Self {
            http: client(),
            base: fake.base_url.clone(),
            token: mailbox_token(fake, provider).await,
        }
    }

    pub(super) async fn read(response: reqwest::Response) -> (u16, HeaderMap, Value) {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    pub(super) async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the stand-in answers");
        let (status, _, body) = Self::read(response).await;
        (status, body)
    }

    /// Follows a Graph link as given, with `Prefer: odata.maxpagesize` when asked.
    pub(super) async fn follow(&self, link: &str, page: Option<usize>) -> (u16, HeaderMap, Value) {
        let mut request = self.http.get(link).bearer_auth(&self.token);
        if let Some(page) = page {
            request = request.header("Prefer", format!("odata.maxpagesize={page}"));
        }
        Self::read(request.send().await.expect("the stand-in answers")).await
    }

    pub(super) async fn gmail_send(&self, mime: &str, thread_id: Option<&str>) -> (u16, Value) {
        let mut body = json!({"raw": URL_SAFE_NO_PAD.encode(mime.as_bytes())});
        if let Some(thread_id) = thread_id {
            body["threadId"] = thread_id.into();
        }
        self.post_json("/gmail/v1/users/me/messages/send", &body)
            .await
    }

    pub(super) async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("the stand-in answers");
        let (status, _, body) = Self::read(response).await;
        (status, body)
    }

    /// Graph's MIME send: the message base64-encoded in a `text/plain` body.
    pub(super) async fn graph_send_mime(&self, mime: &str) -> (u16, HeaderMap, Value) {
        let response = self
            .http
            .post(format!("{}/v1.0/me/sendMail", self.base))
            .bearer_auth(&self.token)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(STANDARD.encode(mime.as_bytes()))
            .send()
            .await
            .expect("the stand-in answers");
        Self::read(response).await
    }

    pub(super) async fn history_id(&self) -> String {
        let (status, profile) = self.get("/gmail/v1/users/me/profile", &[]).await;
        assert_eq!(status, 200, "{profile}");
        profile["historyId"]
            .as_str()
            .expect("a history id")
            .to_owned()
    }

    pub(super) fn delta_start(&self) -> String {
        format!(
            "{}/v1.0/me/mailFolders/inbox/messages/delta?$select=id,conversationId,internetMessageId,from,receivedDateTime,subject",
            self.base
        )
    }
}

pub(super) fn reply_to(mailbox: &str, message_id: &str, subject: &str) -> Inbound {
    Inbound {
        mailbox: mailbox.into(),
        from: "Bob Stone <bob@client.example>".into(),
        subject: subject.into(),
        in_reply_to: Some(message_id.into()),
        references: Some(message_id.into()),
        headers: vec![("Auto-Submitted".into(), "no".into())],
        body: "Tuesday works.".into(),
        ..Inbound::default()
    }
}

pub(super) fn note(mailbox: &str, subject: &str, age_seconds: u64) -> Inbound {
    Inbound {
        mailbox: mailbox.into(),
        from: "someone@client.example".into(),
        subject: subject.into(),
        body: "hello".into(),
        age_seconds,
        ..Inbound::default()
    }
}
