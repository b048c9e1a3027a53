//! The platform stand-in of the tests (X, Instagram, Google and Microsoft as their docs describe
//! them, their hosted sign-in and the users' mailboxes included) as a server for `make dev`:
//! `cargo run -p pipewise-tests --bin pipewise-fake-platforms -- 127.0.0.1:9100`, then start
//! `make dev` with the variables it prints (`X_API_BASE_URL`, `X_AUTHORIZE_URL`,
//! `GOOGLE_AUTHORIZE_URL`, `GOOGLE_TOKEN_URL`, `GMAIL_API_BASE_URL`, `MICROSOFT_LOGIN_BASE_URL`,
//! `MICROSOFT_GRAPH_BASE_URL`, `INSTAGRAM_AUTHORIZE_URL`, `INSTAGRAM_OAUTH_BASE_URL`,
//! `INSTAGRAM_API_BASE_URL`), all pointing at it.
//!
//! It starts with X tokens `x-access-0` / `x-refresh-0` (refresh rotates them) and one Instagram
//! conversation: `ada.l` (Instagram-scoped id `igsid-ada`) wrote an hour ago. Its sign-in pages
//! accept any OAuth client and consent at once, as X `@ada`, Google `ada@example.com`,
//! Microsoft `ada@contoso.example` and Instagram `ada.studio`. It logs each message it accepts,
//! each refresh call, each consent and each code exchange; never a token, code or state.
//!
//! The signed-in users' mailboxes are there too (Gmail send, history and messages; Graph
//! sendMail, Inbox delta and messages: `pipewise_tests::fake_mailbox`). It logs each mail sent
//! (provider, mailbox, recipients, subject). A reply arrives when a developer delivers one:
//! `POST /_stand-in/inbound` with a JSON body, for example
//!
//! ```text
//! curl -X POST http://127.0.0.1:9100/_stand-in/inbound -H 'Content-Type: application/json' \
//!   -d '{"mailbox": "ada@example.com", "from": "Grace <grace@client.example>",
//!        "subject": "Re: Hello", "in_reply_to": "<the Message-ID of the mail sent>",
//!        "body": "Sounds good, call me.", "headers": [["Auto-Submitted", "no"]]}'
//! ```
//!
//! Fields: `mailbox`, `from`, `subject` (required), `in_reply_to`, `references`, `headers`
//! (`[["name", "value"]]`), `body`, `provider` (`google` or `microsoft`, when the address is a
//! mailbox at both) and `age_seconds` (how long ago it arrived). It answers 201 with the new
//! message's `provider`, `id`, `threadId` (Gmail thread or Graph conversation) and `messageId`,
//! and is logged like the mail sent.

use std::time::Duration;

use pipewise_tests::fake_mailbox::{DeliveredMail, SentMail};
use pipewise_tests::fake_oauth::{AuthorizeRequest, Consent, TokenCall};
use pipewise_tests::fake_social::FakeSocial;

#[tokio::main]
async fn main() {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9100".to_owned());
    let fake = FakeSocial::start_on(&address).await;
    fake.x_tokens("x-access-0", "x-refresh-0");
    fake.instagram_conversation("ada.l", "igsid-ada", 3600);
    println!(
        "platform stand-in on {} (X, Instagram, Google and Microsoft, sign-in included)",
        fake.base_url
    );
    println!(
        "  X tokens: access x-access-0, refresh x-refresh-0; Instagram: ada.l wrote an hour ago"
    );
    println!(
        "  sign-in: any client, consent at once as X @ada, Google ada@example.com, Microsoft ada@contoso.example, Instagram ada.studio"
    );
    println!(
        "  mailboxes: deliver a reply with POST {}/_stand-in/inbound, JSON {{\"mailbox\", \"from\", \"subject\", \"in_reply_to\", \"body\"}}",
        fake.base_url
    );
    println!("  start make dev with:");
    let variables: Vec<String> = fake
        .oauth_environment()
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    println!("    {} make dev", variables.join(" "));
    let (mut messages, mut refreshes, mut consents, mut token_calls) = (0, 0, 0, 0);
    let (mut mails, mut inbound) = (0, 0);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for message in fake.sent().iter().skip(messages) {
            println!(
                "  {} message to {}: {:?}",
                message.platform, message.recipient, message.text
            );
        }
        for call in fake.refreshes().iter().skip(refreshes) {
            println!("  {} token refresh", call.platform);
        }
        for request in fake.authorize_requests().iter().skip(consents) {
            println!("  {}", consent_line(request));
        }
        // Refreshes are logged above; here the code exchanges (and Instagram's long-lived one).
        for call in fake
            .token_calls()
            .iter()
            .skip(token_calls)
            .filter(|call| !call.grant_type.contains("refresh"))
        {
            println!("  {}", exchange_line(call));
        }
        for mail in fake.sent_mail().iter().skip(mails) {
            println!("  {}", mail_line(mail));
        }
        for delivered in fake.delivered_mail().iter().skip(inbound) {
            println!("  {}", inbound_line(delivered));
        }
        mails = fake.sent_mail().len();
        inbound = fake.delivered_mail().len();
        messages = fake.sent().len();
        refreshes = fake.refreshes().len();
        consents = fake.authorize_requests().len();
        token_calls = fake.token_calls().len();
    }
}

/// A mail a mailbox sent, without its token or body.
fn mail_line(mail: &SentMail) -> String {
    format!(
        "{} mail from {} to {}: {:?} (Message-ID {})",
        mail.provider.name(),
        mail.mailbox,
        mail.to,
        mail.subject,
        mail.message_id
    )
}

/// A message delivered into an inbox, without its body.
fn inbound_line(delivered: &DeliveredMail) -> String {
    format!(
        "{} inbound to {} from {}: {:?} (id {}, thread {})",
        delivered.provider.name(),
        delivered.mailbox,
        delivered.from,
        delivered.subject,
        delivered.id,
        delivered.thread_id
    )
}

/// A consent, without its `state` or challenge.
fn consent_line(request: &AuthorizeRequest) -> String {
    let outcome = match &request.consent {
        Consent::Granted => "granted".to_owned(),
        Consent::Denied => "denied (access_denied)".to_owned(),
        Consent::ErrorRedirect(error) => format!("refused, redirected with {error}"),
        Consent::ErrorPage(error) => format!("refused on the error page ({error})"),
    };
    format!(
        "{} consent {outcome}: client {}, scope {:?}, redirect_uri {}",
        request.provider.name(),
        request.param("client_id").unwrap_or("-"),
        request.param("scope").unwrap_or_default(),
        request.param("redirect_uri").unwrap_or("-"),
    )
}

/// A token-endpoint call, without its code, verifier, secret or tokens.
fn exchange_line(call: &TokenCall) -> String {
    let outcome = match &call.error {
        Some(error) => format!("{} {error}", call.status),
        None => call.status.to_string(),
    };
    format!(
        "{} token exchange ({}): client {}, PKCE verifier {}: {outcome}",
        call.provider.name(),
        call.grant_type,
        call.client_id.as_deref().unwrap_or("-"),
        if call.code_verifier_sent {
            "sent"
        } else {
            "not sent"
        },
    )
}
