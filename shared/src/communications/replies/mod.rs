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

mod machine_mail;
mod mailbox_reader;

use std::time::{Duration, Instant};

use super::store::RunStore;
use crate::accounts::AccountService;
use crate::accounts::store::{AccountItem, MailboxCursor};
use crate::clock::Clock;
use crate::error::{Error, ErrorChain};
use crate::platforms::mailbox::MailboxFeed;
use crate::platforms::{PlatformApis, Provider};
use crate::targets::store::TargetStore;

pub use machine_mail::written_by_a_machine;
use mailbox_reader::MailboxReader;
pub use mailbox_reader::RESYNC_DAYS;

/// How long one run may read mailboxes: well inside the function's timeout, like the release
/// tick's budget.
const POLL_BUDGET: Duration = Duration::from_secs(20);

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
        let accounts = store.connected_mailboxes().await?;
        let ids: Vec<(crate::ids::UserId, String)> = accounts
            .iter()
            .map(|account| (account.user_id.clone(), account.account_id.to_string()))
            .collect();
        let cursors = store.mailbox_cursors(&ids).await?;
        let mut mailboxes: Vec<_> = accounts.into_iter().zip(cursors).collect();
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
}
