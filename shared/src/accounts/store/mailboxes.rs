//! Mailboxes as the reply poller sees them: every connected Google or Microsoft email account,
//! and for each its cursor (where reading its new mail resumes: Gmail's `historyId`, Graph's
//! `@odata.deltaLink` or a `@odata.nextLink` left half-way) in an item of the user's partition
//! (sort key `#mailbox#<account_id>`, which no account id can equal).

use aws_sdk_dynamodb::types::AttributeValue;

use super::{AccountItem, AccountStore};
use crate::aws::dependency_error;
use crate::error::Error;
use crate::ids::UserId;
use crate::storage::{decode_item, number, text as s};

const CURSOR_PREFIX: &str = "#mailbox#";

/// The accounts table's index by `provider` (template.yaml).
const PROVIDER_INDEX: &str = "by_provider";

/// The `provider` values of accounts whose mailbox the poller reads (`gmail` is an older name
/// of `google`, still accepted).
const MAILBOX_PROVIDERS: [&str; 3] = ["google", "gmail", "microsoft"];

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
        let mut mailboxes = Vec::new();
        for provider in MAILBOX_PROVIDERS {
            let mut start = None;
            loop {
                let page = self
                    .dynamodb
                    .query()
                    .table_name(&self.table)
                    .index_name(PROVIDER_INDEX)
                    .key_condition_expression("provider = :provider")
                    .filter_expression("account_type = :email AND connected = :true")
                    .expression_attribute_values(":provider", s(provider))
                    .expression_attribute_values(":email", s("email"))
                    .expression_attribute_values(":true", AttributeValue::Bool(true))
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(dependency_error)?;
                for item in page.items.unwrap_or_default() {
                    mailboxes.push(decode_item(item)?);
                }
                start = page.last_evaluated_key;
                if start.is_none() {
                    break;
                }
            }
        }
        Ok(mailboxes)
    }

    /// Where reading each of `mailboxes` (user and account id) resumes, in the order asked:
    /// 100 per `BatchGetItem`.
    pub async fn mailbox_cursors(
        &self,
        mailboxes: &[(UserId, String)],
    ) -> Result<Vec<MailboxCursor>, Error> {
        let key_of = |user: &UserId, account_id: &str| {
            Self::key(user, &format!("{CURSOR_PREFIX}{account_id}"))
        };
        // BatchGetItem refuses a request that names one key twice.
        let mut unique: Vec<&(UserId, String)> = mailboxes.iter().collect();
        unique.sort();
        unique.dedup();
        let keys = unique
            .into_iter()
            .map(|(user, account_id)| key_of(user, account_id))
            .collect();
        let found = crate::storage::batch_get(&self.dynamodb, &self.table, keys).await?;
        let cursor_key = |item: &std::collections::HashMap<String, AttributeValue>| {
            (
                item.get("user_id").and_then(|v| v.as_s().ok()).cloned(),
                item.get("account_id").and_then(|v| v.as_s().ok()).cloned(),
            )
        };
        let by_key: std::collections::HashMap<_, _> = found
            .iter()
            .map(|item| (cursor_key(item), cursor_of(item)))
            .collect();
        Ok(mailboxes
            .iter()
            .map(|(user, account_id)| {
                by_key
                    .get(&(
                        Some(user.as_str().to_owned()),
                        Some(format!("{CURSOR_PREFIX}{account_id}")),
                    ))
                    .cloned()
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
