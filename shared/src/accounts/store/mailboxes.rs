//! Mailboxes as the reply poller sees them: every connected Google or Microsoft email account,
//! and for each its cursor (where reading its new mail resumes: Gmail's `historyId`, Graph's
//! `@odata.deltaLink` or a `@odata.nextLink` left half-way) in an item of the user's partition
//! (sort key `#mailbox#<account_id>`, which no account id can equal).

use aws_sdk_dynamodb::types::AttributeValue;

use super::{AccountItem, AccountStore};
use crate::aws::dependency_error;
use crate::error::Error;
use crate::ids::UserId;
use crate::platforms::Provider;
use crate::storage::{number, text as s};

const CURSOR_PREFIX: &str = "#mailbox#";

/// Where reading a mailbox's new mail resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxCursor {
    /// The provider's cursor; `None`: never read (or its state is gone): resync.
    pub cursor: Option<String>,
    /// When the mailbox was last read (epoch seconds; 0: never).
    pub polled_at: i64,
}

impl AccountStore {
    /// Every connected mailbox (email accounts at Google or Microsoft): a Query of the
    /// `by_provider` index per mailbox provider, page by page, so the work grows with the
    /// mailboxes, not with the table. The index is eventually consistent: a mailbox connected a
    /// moment ago is read on the next tick.
    pub async fn connected_mailboxes(&self) -> Result<Vec<AccountItem>, Error> {
        let mailbox_providers = Provider::ALL.into_iter().filter(|p| p.is_mailbox());
        self.of_providers(
            mailbox_providers,
            "account_type = :email AND connected = :true",
            &[
                (":email", s("email")),
                (":true", AttributeValue::Bool(true)),
            ],
        )
        .await
    }

    /// Where reading each of `mailboxes` (user and account id) resumes, in the order asked:
    /// 100 per `BatchGetItem`.
    pub async fn mailbox_cursors(
        &self,
        mailboxes: &[(UserId, String)],
    ) -> Result<Vec<MailboxCursor>, Error> {
        let keys = mailboxes
            .iter()
            .map(|(user, account_id)| {
                let key = Self::key(user, &format!("{CURSOR_PREFIX}{account_id}"));
                ((user, account_id.as_str()), key)
            })
            .collect();
        let found = crate::storage::batch_get_by(&self.dynamodb, &self.table, keys).await?;
        Ok(mailboxes
            .iter()
            .map(|(user, account_id)| {
                found
                    .get(&(user, account_id.as_str()))
                    .map(cursor_of)
                    .unwrap_or_default()
            })
            .collect())
    }

    /// Stores where reading `account_id`'s mail resumes (one poller per schedule writes it).
    pub async fn save_mailbox_cursor(
        &self,
        user: &UserId,
        account_id: &str,
        cursor: &MailboxCursor,
    ) -> Result<(), Error> {
        let mut item = Self::key(user, &format!("{CURSOR_PREFIX}{account_id}"));
        if let Some(value) = &cursor.cursor {
            item.insert("cursor".into(), s(value));
        }
        item.insert("polled_at".into(), number(cursor.polled_at));
        self.dynamodb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(dependency_error)?;
        Ok(())
    }
}

fn cursor_of(item: &std::collections::HashMap<String, AttributeValue>) -> MailboxCursor {
    MailboxCursor {
        cursor: item
            .get("cursor")
            .and_then(|value| value.as_s().ok())
            .cloned(),
        polled_at: item
            .get("polled_at")
            .and_then(|value| value.as_n().ok())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0),
    }
}
