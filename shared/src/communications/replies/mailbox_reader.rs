//! Reading one mailbox's new mail: Gmail's history or Graph's delta query (with a resync when
//! the cursor is gone), fetching each message and deciding whether it answers one of our
//! communications.

use serde_json::Value;

use super::machine_mail::written_by_a_machine;
use super::{MailboxFailure, PollReport, ReplyPoller};
use crate::accounts::store::AccountItem;
use crate::communications::store::ReplyKey;
use crate::platforms::mailbox::{InboundMessage, NewMail};
use crate::platforms::{Provider, google, microsoft};

/// Pages of new mail read from one mailbox per run; the rest waits for the next run.
const PAGES_PER_MAILBOX: usize = 10;
/// How far back a resync looks.
pub const RESYNC_DAYS: u32 = 7;

impl ReplyPoller {
    /// Gmail: history since the cursor (`<historyId>` or `<historyId> <pageToken>` when a run
    /// stopped half-way); no cursor, or one Gmail no longer keeps (404): a resync.
    pub(super) async fn read_gmail(
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
    pub(super) async fn read_graph(
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
            .communication_replied_to(&account.user_id, &account.account_id, &keys)
            .await?
        else {
            return Ok(());
        };
        let replied_at = message
            .received_at
            .clone()
            .unwrap_or_else(|| self.clock.now_rfc3339());
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

/// A mailbox being read: its account, its own address and fresh tokens (refreshed once more
/// when the provider refuses them).
pub(super) struct MailboxReader<'a> {
    poller: &'a ReplyPoller,
    pub(super) account: AccountItem,
    own_address: String,
    token: String,
    http: reqwest::Client,
}

impl<'a> MailboxReader<'a> {
    pub(super) async fn open(
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
