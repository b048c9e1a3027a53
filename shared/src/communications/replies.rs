//! Replies: a scheduled poller reads each connected mailbox's new mail since its cursor
//! (Gmail's history from a `historyId`, Graph's delta query on the Inbox), and an inbound message
//! that answers one of our messages (same Gmail thread, or our `Message-ID` in its
//! `In-Reply-To` / `References`) makes that communication `replied`, counts it on its run and
//! stamps the target's `last_replied_at`. Machines' mail (auto-replies, delivery reports) and the
//! sender's own messages are not replies.
//!
//! A cursor the provider no longer knows (Gmail's 404 for an old `startHistoryId`, Graph's
//! expired delta state) is a resync of the last 7 days, never an error loop. One mailbox's
//! failure (a revoked grant: the refresh marks it `reauth_required`) never stops the others.
//! Work per run is bounded (a time budget, and pages per mailbox); the oldest-read mailboxes go
//! first and a mailbox left half-way resumes where it stopped.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::store::{ReplyKey, RunStore};
use crate::accounts::AccountService;
use crate::accounts::store::{AccountItem, MailboxCursor};
use crate::clock::Clock;
use crate::error::{Error, ErrorChain};
use crate::platforms::mailbox::{InboundMessage, MailboxFeed, NewMail};
use crate::platforms::{PlatformApis, Provider, google, microsoft};
use crate::targets::store::TargetStore;

/// How long one run may read mailboxes: well inside the function's timeout, like the release
/// tick's budget.
const POLL_BUDGET: Duration = Duration::from_secs(20);
/// Pages of new mail read from one mailbox per run; the rest waits for the next run.
const PAGES_PER_MAILBOX: usize = 10;
/// How far back a resync looks.
pub const RESYNC_DAYS: u32 = 7;

/// What one run of the poller did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PollReport {
    /// Mailboxes read.
    pub mailboxes: usize,
    /// Inbound messages looked at.
    pub messages: usize,
    /// Communications newly marked `replied`.
    pub replies: usize,
    /// Mailboxes whose cursor was gone and were read again from the last 7 days.
    pub resynced: usize,
    /// Mailboxes that could not be read this time (tried again next run).
    pub failed: usize,
    /// Mailboxes left for the next run (the time budget was spent).
    pub deferred: usize,
}

/// Why a mailbox could not be read this time.
enum MailboxFailure {
    /// Its tokens could not be made fresh (a dead grant is marked `reauth_required`).
    Tokens,
    /// The provider answered with this status.
    Provider(u16),
    /// The provider could not be reached.
    Unreachable,
    /// Our own storage failed.
    Storage(Error),
}

impl From<Error> for MailboxFailure {
    fn from(error: Error) -> Self {
        Self::Storage(error)
    }
}

/// Reads connected mailboxes for replies.
#[derive(Clone)]
pub struct ReplyPoller {
    accounts: AccountService,
    runs: RunStore,
    targets: TargetStore,
    apis: PlatformApis,
    clock: Clock,
}

impl ReplyPoller {
    /// A poller over these accounts, runs and targets, with the mailbox APIs at `apis`.
    pub fn new(
        accounts: AccountService,
        runs: RunStore,
        targets: TargetStore,
        apis: PlatformApis,
        clock: Clock,
    ) -> Self {
        Self {
            accounts,
            runs,
            targets,
            apis,
            clock,
        }
    }

    /// Reads every connected mailbox's new mail, the longest unread first, within the budget.
    pub async fn poll(&self) -> Result<PollReport, Error> {
        let started = Instant::now();
        let store = self.accounts.store();
        let mut mailboxes = Vec::new();
        for account in store.connected_mailboxes().await? {
            let cursor = store
                .mailbox_cursor(&account.user_id, account.account_id.as_str())
                .await?;
            mailboxes.push((account, cursor));
        }
        mailboxes.sort_by_key(|(_, cursor)| cursor.polled_at);
        let mut report = PollReport::default();
        let total = mailboxes.len();
        for (done, (account, cursor)) in mailboxes.into_iter().enumerate() {
            if started.elapsed() >= POLL_BUDGET {
                report.deferred = total - done;
                break;
            }
            let (user, id) = (account.user_id.clone(), account.account_id.clone());
            match self.poll_mailbox(account, cursor, &mut report).await {
                Ok(()) => report.mailboxes += 1,
                Err(failure) => {
                    report.failed += 1;
                    match &failure {
                        MailboxFailure::Storage(error) => {
                            tracing::error!(user_id = %user, account_id = %id, error = %ErrorChain(error), "a mailbox could not be read")
                        }
                        MailboxFailure::Provider(status) => {
                            tracing::warn!(user_id = %user, account_id = %id, status, "the mailbox's provider refused a read")
                        }
                        MailboxFailure::Tokens => {
                            tracing::warn!(user_id = %user, account_id = %id, "the mailbox's tokens could not be made fresh")
                        }
                        MailboxFailure::Unreachable => {
                            tracing::warn!(user_id = %user, account_id = %id, "the mailbox's provider could not be reached")
                        }
                    }
                }
            }
        }
        tracing::info!(
            mailboxes = report.mailboxes,
            messages = report.messages,
            replies = report.replies,
            resynced = report.resynced,
            failed = report.failed,
            deferred = report.deferred,
            "mailboxes read for replies"
        );
        Ok(report)
    }

    async fn poll_mailbox(
        &self,
        account: AccountItem,
        cursor: MailboxCursor,
        report: &mut PollReport,
    ) -> Result<(), MailboxFailure> {
        let Some((provider, feed)) =
            Provider::of(&account).and_then(|p| p.mailbox_feed().map(|feed| (p, feed)))
        else {
            return Ok(());
        };
        let mut reader = MailboxReader::open(self, account, provider).await?;
        let next = match feed {
            MailboxFeed::GraphDelta => self.read_graph(&mut reader, cursor.cursor, report).await?,
            MailboxFeed::GmailHistory => {
                self.read_gmail(&mut reader, cursor.cursor, report).await?
            }
        };
        self.accounts
            .store()
            .save_mailbox_cursor(
                &reader.account.user_id,
                reader.account.account_id.as_str(),
                &MailboxCursor {
                    cursor: next,
                    polled_at: self.clock.epoch_seconds(),
                },
            )
            .await?;
        Ok(())
    }

    /// Gmail: history since the cursor (`<historyId>` or `<historyId> <pageToken>` when a run
    /// stopped half-way); no cursor, or one Gmail no longer keeps (404): a resync.
    async fn read_gmail(
        &self,
        reader: &mut MailboxReader<'_>,
        cursor: Option<String>,
        report: &mut PollReport,
    ) -> Result<Option<String>, MailboxFailure> {
        let Some(cursor) = cursor else {
            return self.resync_gmail(reader, report).await;
        };
        let (start, mut page) = match cursor.split_once(' ') {
            Some((start, page)) => (start.to_owned(), Some(page.to_owned())),
            None => (cursor, None),
        };
        let mut newest = None;
        for _ in 0..PAGES_PER_MAILBOX {
            let (status, answer) = reader
                .get(|http, token| {
                    google::history_request(http, &self.apis.gmail, token, &start, page.as_deref())
                })
                .await?;
            if status == 404 {
                return self.resync_gmail(reader, report).await;
            }
            if !(200..300).contains(&status) {
                return Err(MailboxFailure::Provider(status));
            }
            let mail = google::history_page(&answer);
            self.consider_gmail(reader, &mail, report).await?;
            newest = mail.cursor.or(newest);
            match mail.next_page {
                Some(next) => page = Some(next),
                None => return Ok(newest.or(Some(start))),
            }
        }
        // The budget of pages is spent: resume from this page next run.
        Ok(Some(match page {
            Some(page) => format!("{start} {page}"),
            None => start,
        }))
    }

    /// Gmail resync: the mailbox's history id first (so nothing after it is missed), then the
    /// Inbox's last 7 days.
    async fn resync_gmail(
        &self,
        reader: &mut MailboxReader<'_>,
        report: &mut PollReport,
    ) -> Result<Option<String>, MailboxFailure> {
        report.resynced += 1;
        let (status, profile) = reader
            .get(|http, token| google::identity_request(http, &self.apis.gmail, token))
            .await?;
        if !(200..300).contains(&status) {
            return Err(MailboxFailure::Provider(status));
        }
        let history_id = google::history_id_of(&profile);
        let mut page: Option<String> = None;
        for _ in 0..PAGES_PER_MAILBOX {
            let (status, answer) = reader
                .get(|http, token| {
                    google::recent_request(
                        http,
                        &self.apis.gmail,
                        token,
                        RESYNC_DAYS,
                        page.as_deref(),
                    )
                })
                .await?;
            if !(200..300).contains(&status) {
                return Err(MailboxFailure::Provider(status));
            }
            let mail = google::recent_page(&answer);
            self.consider_gmail(reader, &mail, report).await?;
            match mail.next_page {
                Some(next) => page = Some(next),
                None => break,
            }
        }
        Ok(history_id)
    }

    async fn consider_gmail(
        &self,
        reader: &mut MailboxReader<'_>,
        mail: &NewMail,
        report: &mut PollReport,
    ) -> Result<(), MailboxFailure> {
        for (id, _) in &mail.messages {
            let (status, answer) = reader
                .get(|http, token| google::message_request(http, &self.apis.gmail, token, id))
                .await?;
            // Deleted since it arrived: nothing to answer.
            if status == 404 {
                continue;
            }
            if !(200..300).contains(&status) {
                return Err(MailboxFailure::Provider(status));
            }
            if let Some(message) = google::message_of(&answer) {
                self.consider(&reader.account, &reader.own_address, message, report)
                    .await?;
            }
        }
        Ok(())
    }

    /// Graph: the delta query from the stored link (a `@odata.deltaLink`, or a `@odata.nextLink`
    /// when a run stopped half-way); none, or an expired one: a new delta query over the Inbox,
    /// of which only the last 7 days count.
    async fn read_graph(
        &self,
        reader: &mut MailboxReader<'_>,
        cursor: Option<String>,
        report: &mut PollReport,
    ) -> Result<Option<String>, MailboxFailure> {
        let mut resyncing = cursor.is_none();
        if resyncing {
            report.resynced += 1;
        }
        let mut link = cursor.unwrap_or_else(|| microsoft::delta_start(&self.apis.microsoft_graph));
        for _ in 0..PAGES_PER_MAILBOX {
            let (status, answer) = reader
                .get(|http, token| microsoft::delta_request(http, &link, token))
                .await?;
            if microsoft::delta_expired(status, &answer) && !resyncing {
                resyncing = true;
                report.resynced += 1;
                link = microsoft::delta_start(&self.apis.microsoft_graph);
                continue;
            }
            if !(200..300).contains(&status) {
                return Err(MailboxFailure::Provider(status));
            }
            let mail = microsoft::delta_page(&answer);
            let oldest = (resyncing)
                .then(|| self.clock.now() - time::Duration::days(i64::from(RESYNC_DAYS)));
            for (id, _) in &mail.messages {
                let (status, answer) = reader
                    .get(|http, token| {
                        microsoft::message_request(http, &self.apis.microsoft_graph, token, id)
                    })
                    .await?;
                if status == 404 {
                    continue;
                }
                if !(200..300).contains(&status) {
                    return Err(MailboxFailure::Provider(status));
                }
                let Some(message) = microsoft::message_of(&answer) else {
                    continue;
                };
                let too_old =
                    oldest
                        .zip(message.received_at.as_deref())
                        .is_some_and(|(oldest, received)| {
                            time::OffsetDateTime::parse(
                                received,
                                &time::format_description::well_known::Rfc3339,
                            )
                            .is_ok_and(|received| received < oldest)
                        });
                if !too_old {
                    self.consider(&reader.account, &reader.own_address, message, report)
                        .await?;
                }
            }
            match (mail.next_page, mail.cursor) {
                (Some(next), _) => link = next,
                (None, Some(delta)) => return Ok(Some(delta)),
                (None, None) => return Ok(Some(link)),
            }
        }
        Ok(Some(link))
    }

    /// One inbound message: a reply to one of this mailbox's communications, or not.
    async fn consider(
        &self,
        account: &AccountItem,
        own_address: &str,
        message: InboundMessage,
        report: &mut PollReport,
    ) -> Result<(), MailboxFailure> {
        report.messages += 1;
        if written_by_a_machine(&message)
            || message
                .from_address()
                .is_none_or(|from| from == own_address)
        {
            return Ok(());
        }
        let mut keys = Vec::new();
        if let Some(thread) = &message.thread_id {
            keys.push(ReplyKey::Thread(thread.clone()));
        }
        for header in ["In-Reply-To", "References"] {
            if let Some(value) = message.header(header) {
                keys.extend(ReplyKey::named_in(value));
            }
        }
        if keys.is_empty() {
            return Ok(());
        }
        let Some(item) = self
            .runs
            .communication_replied_to(&account.user_id, account.account_id.as_str(), &keys)
            .await?
        else {
            return Ok(());
        };
        let replied_at = message
            .received_at
            .clone()
            .unwrap_or_else(crate::now_rfc3339);
        if self.runs.mark_replied(&item, &replied_at).await? {
            report.replies += 1;
            crate::metrics::record(crate::metrics::BusinessMetric::Replied);
            self.targets
                .record_reply(&item.user_id, &item.target_id, &replied_at)
                .await?;
            tracing::info!(user_id = %item.user_id, run_id = %item.run_id, index = item.index, "a reply arrived");
        }
        Ok(())
    }
}

/// Mail a machine wrote: an auto-reply (RFC 3834 `Auto-Submitted` other than `no`; the
/// `X-Autoreply` / `X-Autorespond` of older responders; `Precedence: auto_reply|bulk|junk|list`),
/// or a delivery status notification (`multipart/report`, or from `mailer-daemon` /
/// `postmaster`).
pub fn written_by_a_machine(message: &InboundMessage) -> bool {
    let value = |name: &str| {
        message
            .header(name)
            .map(|value| value.trim().to_ascii_lowercase())
    };
    let auto_submitted = value("Auto-Submitted").is_some_and(|value| {
        value
            .split(';')
            .next()
            .is_some_and(|kind| kind.trim() != "no")
    });
    let responder =
        message.header("X-Autoreply").is_some() || message.header("X-Autorespond").is_some();
    let precedence = value("Precedence")
        .is_some_and(|value| matches!(value.as_str(), "auto_reply" | "bulk" | "junk" | "list"));
    let report = value("Content-Type").is_some_and(|value| value.starts_with("multipart/report"));
    let daemon = message.from_address().is_some_and(|from| {
        let local = from.split('@').next().unwrap_or_default();
        local == "mailer-daemon" || local == "postmaster"
    });
    auto_submitted || responder || precedence || report || daemon
}

/// A mailbox being read: its account, its own address and fresh tokens (refreshed once more
/// when the provider refuses them).
struct MailboxReader<'a> {
    poller: &'a ReplyPoller,
    account: AccountItem,
    own_address: String,
    token: String,
    http: reqwest::Client,
}

impl<'a> MailboxReader<'a> {
    async fn open(
        poller: &'a ReplyPoller,
        account: AccountItem,
        _provider: Provider,
    ) -> Result<Self, MailboxFailure> {
        let http = crate::https::shared_client().ok_or(MailboxFailure::Unreachable)?;
        let (account, configuration) = poller
            .accounts
            .fresh_configuration(account, false)
            .await
            .map_err(|_| MailboxFailure::Tokens)?;
        let text = |name: &str| {
            configuration
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Self {
            poller,
            own_address: text(crate::accounts::sender::FROM_ADDRESS).to_ascii_lowercase(),
            token: text("access_token"),
            account,
            http,
        })
    }

    /// A GET with the mailbox's token: its status and JSON; a 401 refreshes the token once and
    /// asks again.
    async fn get(
        &mut self,
        request: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<(u16, Value), MailboxFailure> {
        for attempt in 0..2 {
            let response = request(&self.http, &self.token)
                .send()
                .await
                .map_err(|_| MailboxFailure::Unreachable)?;
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            if status != 401 || attempt > 0 {
                return Ok((status, answer));
            }
            let (account, configuration) = self
                .poller
                .accounts
                .fresh_configuration(self.account.clone(), true)
                .await
                .map_err(|_| MailboxFailure::Tokens)?;
            self.account = account;
            self.token = configuration
                .get("access_token")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
        }
        Err(MailboxFailure::Provider(401))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn message(headers: &[(&str, &str)]) -> InboundMessage {
        InboundMessage {
            id: "m".into(),
            thread_id: None,
            headers: headers
                .iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), (*value).to_owned()))
                .collect::<HashMap<_, _>>(),
            received_at: None,
        }
    }

    #[test]
    fn machines_mail_is_not_a_reply() {
        let person = [("From", "Grace <grace@acme.example>")];
        assert!(!written_by_a_machine(&message(&person)));
        for extra in [
            ("Auto-Submitted", "auto-replied"),
            ("Auto-Submitted", "auto-generated; owner-email=x@y"),
            ("X-Autoreply", "yes"),
            ("Precedence", "bulk"),
            ("Precedence", "auto_reply"),
            (
                "Content-Type",
                "multipart/report; report-type=delivery-status",
            ),
        ] {
            let mut headers = person.to_vec();
            headers.push(extra);
            assert!(written_by_a_machine(&message(&headers)), "{extra:?}");
        }
        let mut headers = person.to_vec();
        headers.push(("Auto-Submitted", "no"));
        assert!(!written_by_a_machine(&message(&headers)));
        assert!(written_by_a_machine(&message(&[(
            "From",
            "Mail Delivery Subsystem <MAILER-DAEMON@googlemail.com>"
        )])));
    }
}
