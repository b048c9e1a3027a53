//! Inbound mail, either provider: a message someone sends to a mailbox, written as its sender's
//! server would, put in the inbox of the mailbox its address names (Gmail label `INBOX`, Graph
//! folder Inbox) and threaded as that provider threads it; and `POST /_stand-in/inbound`, the
//! control route a developer delivers a reply with under `make dev`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use super::gmail::GmailMessage;
use super::graph::{Folder, GraphMessage, graph_address, graph_id};
use super::mime::{Written, address, encode_words};
use super::{DeliveredMail, Inbound, key, now, unix_millis};
use crate::fake_oauth::{Identity, Provider};
use crate::fake_social::{Script, Shared};

/// The provider and address of the mailbox `inbound` is for: a mailbox already used, or someone
/// known to the sign-in (granted, or signing in next). A Microsoft account reached by its sign-in
/// name is keyed by its `mail`, as the service keys it.
fn mailbox_of(script: &Script, inbound: &Inbound) -> Result<(Provider, String), String> {
    fn note(found: &mut Vec<(Provider, String)>, provider: Provider, address: &str) {
        if !found.iter().any(|(known, _)| *known == provider) {
            found.push((provider, address.to_owned()));
        }
    }
    let wanted = key(&inbound.mailbox);
    let mut found = Vec::new();
    for identity in script.oauth.known_identities() {
        match identity {
            Identity::Google(user) if key(&user.email) == wanted => {
                note(&mut found, Provider::Google, &user.email);
            }
            Identity::Microsoft(user)
                if key(&graph_address(&user)) == wanted
                    || key(&user.user_principal_name) == wanted =>
            {
                note(&mut found, Provider::Microsoft, &graph_address(&user));
            }
            _ => {}
        }
    }
    if script.mailboxes.gmail.contains_key(&wanted) {
        note(&mut found, Provider::Google, &inbound.mailbox);
    }
    if script.mailboxes.graph.contains_key(&wanted) {
        note(&mut found, Provider::Microsoft, &inbound.mailbox);
    }
    match (inbound.provider, found.as_slice()) {
        (Some(provider @ (Provider::Google | Provider::Microsoft)), _) => Ok(found
            .iter()
            .find(|(known, _)| *known == provider)
            .cloned()
            .unwrap_or((provider, inbound.mailbox.clone()))),
        (Some(other), _) => Err(format!("{} has no mailbox", other.name())),
        (None, [only]) => Ok(only.clone()),
        (None, []) => Err(format!(
            "no mailbox {}: nobody with that address signs in at Google or Microsoft",
            inbound.mailbox
        )),
        (None, _) => Err(format!(
            "{} is a mailbox at both Google and Microsoft: name the provider",
            inbound.mailbox
        )),
    }
}

/// Puts `inbound` in its mailbox's inbox.
pub(super) fn deliver(script: &mut Script, inbound: &Inbound) -> Result<DeliveredMail, String> {
    let (provider, address) = mailbox_of(script, inbound)?;
    let received = now() - time::Duration::seconds(inbound.age_seconds as i64);
    let written = inbound_message(inbound, received);
    let mail = &mut script.mailboxes;
    let (id, thread_id) = match provider {
        Provider::Google => {
            let id = mail.next_gmail_id();
            let mailbox = mail.gmail_box(&address);
            let thread_id = mailbox
                .answered(&written)
                .map_or_else(|| id.clone(), |message| message.thread_id.clone());
            mailbox.add(GmailMessage {
                id: id.clone(),
                thread_id: thread_id.clone(),
                labels: vec!["INBOX", "UNREAD"],
                written: written.clone(),
                internal_ms: unix_millis(received),
                history_id: 0,
            });
            (id, thread_id)
        }
        _ => {
            let mailbox = mail.graph_box(&address);
            let id = graph_id("AAMkADRmYjE2");
            let conversation_id = mailbox
                .conversation_answered(&written)
                .unwrap_or_else(|| graph_id("AAQkADRmYjE2"));
            mailbox.add(GraphMessage {
                id: id.clone(),
                conversation_id: conversation_id.clone(),
                folder: Folder::Inbox,
                written: written.clone(),
                received,
                seq: 0,
            });
            (id, conversation_id)
        }
    };
    let delivered = DeliveredMail {
        provider,
        mailbox: address,
        from: inbound.from.clone(),
        subject: inbound.subject.clone(),
        id,
        thread_id,
        message_id: written.message_id(),
    };
    mail.delivered.push(delivered.clone());
    Ok(delivered)
}

/// The message as its sender's server would have written it.
fn inbound_message(inbound: &Inbound, received: OffsetDateTime) -> Written {
    let domain = address(&inbound.from)
        .and_then(|from| {
            from.address
                .split_once('@')
                .map(|(_, domain)| domain.to_owned())
        })
        .unwrap_or_else(|| "mail.example".to_owned());
    let mut written = Written::default();
    written.set("From", &inbound.from);
    written.set("To", &inbound.mailbox);
    written.set("Subject", &encode_words(&inbound.subject));
    written.set("Date", &received.format(&Rfc2822).unwrap_or_default());
    written.set(
        "Message-ID",
        &format!("<{}@{domain}>", uuid::Uuid::new_v4().simple()),
    );
    if let Some(in_reply_to) = &inbound.in_reply_to {
        written.set("In-Reply-To", in_reply_to);
    }
    if let Some(references) = &inbound.references {
        written.set("References", references);
    }
    for (name, value) in &inbound.headers {
        written.set(name, value);
    }
    written.set("MIME-Version", "1.0");
    if written.header("Content-Type").is_none() {
        written.set("Content-Type", "text/plain; charset=UTF-8");
    }
    written.encoded_body = inbound.body.clone();
    written.body = inbound.body.clone();
    written
}

// ---------------------------------------------------------------------------------------------
// The control route for `make dev`.
// ---------------------------------------------------------------------------------------------

/// `POST /_stand-in/inbound`'s body: [`Inbound`]'s fields, `headers` as `[["name", "value"]]`,
/// `provider` as `google` or `microsoft`.
#[derive(Debug, Deserialize)]
pub(super) struct InboundRequest {
    mailbox: String,
    from: String,
    subject: String,
    #[serde(default)]
    in_reply_to: Option<String>,
    #[serde(default)]
    references: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: String,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    age_seconds: u64,
}

/// `POST /_stand-in/inbound`: a developer delivers a reply with curl; 201 with its ids.
pub(super) async fn inbound_route(
    State(state): State<Shared>,
    Json(request): Json<InboundRequest>,
) -> Response {
    let provider = match request
        .provider
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => None,
        Some("google" | "gmail") => Some(Provider::Google),
        Some("microsoft" | "graph" | "outlook") => Some(Provider::Microsoft),
        Some(other) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("unknown provider {other:?}: google or microsoft")})),
            )
                .into_response();
        }
    };
    let inbound = Inbound {
        mailbox: request.mailbox,
        from: request.from,
        subject: request.subject,
        in_reply_to: request.in_reply_to,
        references: request.references,
        headers: request.headers,
        body: request.body,
        provider,
        age_seconds: request.age_seconds,
    };
    let mut script = state.lock().expect("lock");
    match deliver(&mut script, &inbound) {
        Ok(delivered) => (
            StatusCode::CREATED,
            Json(
                json!({"provider": delivered.provider.name(), "id": delivered.id,
                "threadId": delivered.thread_id, "messageId": delivered.message_id}),
            ),
        )
            .into_response(),
        Err(problem) => {
            (StatusCode::BAD_REQUEST, Json(json!({ "error": problem }))).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_mailbox::test_client::Mailbox;
    use crate::fake_oauth::tests::client;
    use crate::fake_social::FakeSocial;

    #[tokio::test]
    async fn fake_mailbox_inbound_route_delivers_a_developers_reply() {
        let fake = FakeSocial::start().await;
        let http = client();
        let response = http
            .post(format!("{}/_stand-in/inbound", fake.base_url))
            .json(
                &json!({"mailbox": "ADA@example.com", "from": "Grace <grace@client.example>",
                "subject": "Re: Hello", "in_reply_to": "<pw.9@example.com>", "body": "Sure.",
                "headers": [["Auto-Submitted", "auto-replied"]]}),
            )
            .send()
            .await
            .unwrap();
        let (status, _, created) = Mailbox::read(response).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["provider"], "google");
        let delivered = fake.delivered_mail();
        assert_eq!(delivered.len(), 1);
        assert_eq!(delivered[0].id, created["id"].as_str().unwrap());
        assert_eq!(
            delivered[0].mailbox, "ada@example.com",
            "the signed-in address"
        );

        let gmail = Mailbox::of(&fake, Provider::Google).await;
        let (_, message) = gmail
            .get(
                &format!("/gmail/v1/users/me/messages/{}", delivered[0].id),
                &[
                    ("format", "metadata"),
                    ("metadataHeaders", "Auto-Submitted"),
                ],
            )
            .await;
        assert_eq!(message["payload"]["headers"][0]["value"], "auto-replied");

        let response = http
            .post(format!("{}/_stand-in/inbound", fake.base_url))
            .json(&json!({"mailbox": "nobody@nowhere.example", "from": "x@y.example", "subject": "s"}))
            .send()
            .await
            .unwrap();
        let (status, _, refused) = Mailbox::read(response).await;
        assert_eq!(status, 400);
        assert!(refused["error"].as_str().unwrap().contains("no mailbox"));
    }
}
