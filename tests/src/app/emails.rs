//! Email as the emulator's SES saw it: email accounts created and verified, the raw MIME
//! messages SES accepted from a sender (read back and decoded as [`RawEmail`]), and a recipient's
//! one-click unsubscribe.

use reqwest::Method;
use serde_json::Value;

use crate::TestApp;

/// A MIME email as the service writes it: headers, a blank line, a base64 text body.
pub struct RawEmail {
    headers: Vec<(String, String)>,
    body: String,
}

impl RawEmail {
    /// Splits a MIME text into headers and body.
    pub fn parse(raw: &str) -> Self {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let headers = head
            .split("\r\n")
            .filter_map(|line| line.split_once(": "))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        Self {
            headers,
            body: body.to_owned(),
        }
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    }

    /// The subject, decoded from its RFC 2047 base64 word.
    pub fn subject(&self) -> String {
        use base64::Engine;
        let word = self.header("Subject").unwrap_or_default();
        let inner = word
            .strip_prefix("=?UTF-8?B?")
            .and_then(|rest| rest.strip_suffix("?="))
            .unwrap_or(&word);
        base64::engine::general_purpose::STANDARD
            .decode(inner)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .unwrap_or(word)
    }

    /// The text body, decoded.
    pub fn body(&self) -> String {
        use base64::Engine;
        let joined: String = self.body.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(joined)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .unwrap_or_default()
    }
}

impl TestApp {
    /// `user`'s email account `account_id`, sending from `sales@{domain}` (at most
    /// `daily_send_limit` a day when given), created and verified (the emulator's SES verifies
    /// at once; the next read connects it). Returns the sender.
    pub async fn verified_email_account(
        &self,
        user: &str,
        account_id: &str,
        domain: &str,
        daily_send_limit: Option<u32>,
    ) -> String {
        let sender = format!("sales@{domain}");
        let mut configuration = serde_json::json!({"from_address": sender});
        if let Some(limit) = daily_send_limit {
            configuration["daily_send_limit"] = limit.into();
        }
        self.post(
            "/api/user/integrations/accounts",
            user,
            &serde_json::json!({"account_id": account_id, "account_type": "email",
                "configuration": configuration}),
        )
        .await
        .assert_status(201);
        self.sender_verified(user, account_id).await;
        sender
    }

    /// `count` targets of `user` made through the API, `Person{i} Surname` at `p{i}@{domain}`;
    /// their ids, in order.
    pub async fn email_targets(&self, user: &str, domain: &str, count: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(count);
        for i in 0..count {
            let created = self
                .post(
                    "/api/user/communication-targets",
                    user,
                    &serde_json::json!({"name": format!("Person{i} Surname"), "email": format!("p{i}@{domain}")}),
                )
                .await;
            created.assert_status(201);
            ids.push(created.body["id"].as_str().unwrap_or_default().to_owned());
        }
        ids
    }

    /// An SES identity made outside this service (the operator's own no-reply@, or one made
    /// by hand): it must never prove anyone's claim.
    pub async fn operator_identity(&self, email: &str) {
        aws_sdk_sesv2::Client::new(&self.sdk)
            .create_email_identity()
            .email_identity(email)
            .send()
            .await
            .expect("create the identity");
    }

    /// The owner of an email account's sender follows SES's verification link (the emulator's
    /// SES verifies at once) and the next read connects the account: asserted here.
    pub async fn sender_verified(&self, user: &str, account_id: &str) {
        let read = self
            .get(
                &format!("/api/user/integrations/accounts/{account_id}"),
                user,
            )
            .await;
        read.assert_status(200);
        assert_eq!(read.body["connected"], true, "{}", read.text);
    }

    /// The SES message ids of the emails the emulator's SES accepted from `sender`, in order.
    pub async fn sent_message_ids(&self, sender: &str) -> Vec<String> {
        self.emulator_ses_messages()
            .await
            .into_iter()
            .filter(|message| message["source"] == sender)
            .filter_map(|message| message["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Emails the emulator's SES accepted from `sender`: `(to, subject, body)`, the body decoded.
    pub async fn sent_emails(&self, sender: &str) -> Vec<(String, String, String)> {
        self.sent_raw_emails(sender)
            .await
            .into_iter()
            .map(|raw| {
                let email = RawEmail::parse(&raw);
                (
                    email.header("To").unwrap_or_default(),
                    email.subject(),
                    email.body(),
                )
            })
            .collect()
    }

    /// The MIME text of every email the emulator's SES accepted from `sender`.
    pub async fn sent_raw_emails(&self, sender: &str) -> Vec<String> {
        self.emulator_ses_messages()
            .await
            .into_iter()
            .filter(|message| message["source"] == sender)
            .filter_map(|message| message["raw_data"].as_str().map(str::to_owned))
            .collect()
    }

    async fn emulator_ses_messages(&self) -> Vec<Value> {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
        // Not the whole-state dump: it walks every object of every test's tables, seconds by
        // the end of a run, and every request waits for it (tools/emulator.py).
        self.client
            .get(format!(
                "{}/_emulator/ses/raw-messages",
                endpoint.trim_end_matches('/')
            ))
            .send()
            .await
            .expect("read the emulator's sent email")
            .json()
            .await
            .expect("the emulator's sent email is JSON")
    }

    /// The recipient of `email` clicks its one-click unsubscribe (RFC 8058: the POST a mail
    /// provider makes from its `List-Unsubscribe` header); asserts it was taken.
    pub async fn unsubscribe_from(&self, email: &RawEmail) {
        let link = email.header("List-Unsubscribe").expect("List-Unsubscribe");
        let path = link
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim_start_matches("http://127.0.0.1:8001")
            .to_owned();
        self.send(
            self.request(Method::POST, &path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("List-Unsubscribe=One-Click"),
        )
        .await
        .assert_status(200);
    }
}
