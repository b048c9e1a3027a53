//! What a reply in the sender's mailbox names, kept when a message is sent through the mailbox:
//! its thread (Gmail's `threadId`) and our `Message-ID` (which a reply names in `In-Reply-To` /
//! `References`). Each is a pointer item to the communication, under a partition scoped to the
//! user and the sending account (`#reply#<user>#<account>#<key>`), so a message in one mailbox
//! can only ever match that mailbox's own communications. Pointers expire with the table's TTL.

use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};

use super::super::model::{Accepted, CommunicationStatus, RunCountChange};
use super::RunStore;
use super::items::{CommunicationItem, PROVIDER_MESSAGE_DAYS};
use crate::error::Error;
use crate::ids::UserId;
use crate::storage::{number as n, text as s, user_key};

/// Sort key, and partition prefix, of a reply pointer (`#`: no user id starts with it).
const REPLY_POINTER: &str = "#reply#";

/// Something a reply names that leads back to the message it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyKey {
    /// The mailbox thread the message went into (Gmail's `threadId`).
    Thread(String),
    /// A `Message-ID` (angle brackets and case do not matter).
    MessageId(String),
}

impl ReplyKey {
    /// The keys a message sent through a mailbox leaves for its replies.
    pub fn of(_item: &CommunicationItem, accepted: &Accepted) -> Vec<ReplyKey> {
        let mut keys = Vec::new();
        if let Some(thread) = &accepted.thread_id {
            keys.push(Self::Thread(thread.clone()));
        }
        if let Some(message_id) = &accepted.internet_message_id {
            keys.push(Self::MessageId(message_id.clone()));
        }
        keys
    }

    /// Every `Message-ID` named in an `In-Reply-To` or `References` header's value.
    pub fn named_in(header: &str) -> Vec<ReplyKey> {
        header
            .split(|c: char| c.is_whitespace() || c == ',')
            .map(|id| id.trim().trim_start_matches('<').trim_end_matches('>'))
            .filter(|id| id.contains('@'))
            .map(|id| Self::MessageId(id.to_owned()))
            .collect()
    }

    fn stored(&self) -> String {
        match self {
            Self::Thread(thread) => format!("thread:{thread}"),
            Self::MessageId(id) => format!(
                "message:{}",
                id.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_ascii_lowercase()
            ),
        }
    }

    fn partition(&self, user: &UserId, account_id: &crate::ids::AccountId) -> String {
        format!("{REPLY_POINTER}{user}#{account_id}#{}", self.stored())
    }
}

impl RunStore {
    /// The pointer from `key` (in `item`'s user and account) back to `item`.
    pub(super) fn reply_pointer(
        &self,
        item: &CommunicationItem,
        key: &ReplyKey,
    ) -> Result<TransactWriteItem, Error> {
        let mut pointer = user_key(
            &key.partition(&item.user_id, &item.account_id),
            "sk",
            REPLY_POINTER,
        );
        pointer.insert("communication".into(), s(&item.sk));
        pointer.insert(
            "expires_at".into(),
            n(self
                .clock
                .epoch_seconds()
                .saturating_add(PROVIDER_MESSAGE_DAYS * 86_400)),
        );
        Ok(TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(pointer))
                    .build()
                    .map_err(Error::internal)?,
            )
            .build())
    }

    /// The communication of `user`'s `account_id` that one of `keys` leads to, if any (the
    /// first key, in order, with a pointer): the pointers of all keys in one `BatchGetItem`.
    pub async fn communication_replied_to(
        &self,
        user: &UserId,
        account_id: &crate::ids::AccountId,
        keys: &[ReplyKey],
    ) -> Result<Option<CommunicationItem>, Error> {
        let partitions: Vec<String> = keys
            .iter()
            .map(|key| key.partition(user, account_id))
            .collect();
        let requested = partitions
            .iter()
            .map(|partition| (partition.as_str(), user_key(partition, "sk", REPLY_POINTER)))
            .collect();
        let pointers: std::collections::HashMap<&str, String> =
            crate::storage::batch_get_by(&self.dynamodb, &self.table, requested)
                .await?
                .into_iter()
                .filter_map(|(partition, pointer)| {
                    Some((
                        partition,
                        pointer.get("communication")?.as_s().ok()?.clone(),
                    ))
                })
                .collect();
        for partition in &partitions {
            let Some((run_id, index)) = pointers
                .get(partition.as_str())
                .and_then(|sk| CommunicationItem::parse_sort_key(sk))
            else {
                continue;
            };
            if let Some(item) = self.communication(user, &run_id, index).await? {
                return Ok(Some(item));
            }
        }
        Ok(None)
    }

    /// Marks a sent communication answered (`sent` or `delivered` -> `replied`, `replied_at`)
    /// and counts it on its run, in one transaction; `false` when it was not sent or already
    /// counted (the same reply read twice counts once).
    pub async fn mark_replied(
        &self,
        item: &CommunicationItem,
        replied_at: &str,
    ) -> Result<bool, Error> {
        let communication = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(&item.user_id, &item.sk)))
            .condition_expression(
                "(#status = :sent OR #status = :delivered) AND attribute_not_exists(replied_at)",
            )
            .update_expression("SET #status = :replied, replied_at = :at, updated_at = :now")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sent", s(CommunicationStatus::Sent.as_str()))
            .expression_attribute_values(":delivered", s(CommunicationStatus::Delivered.as_str()))
            .expression_attribute_values(":replied", s(CommunicationStatus::Replied.as_str()))
            .expression_attribute_values(":at", s(replied_at))
            .expression_attribute_values(":now", s(self.clock.now_rfc3339()))
            .build()
            .map_err(Error::internal)?;
        let run = self.run_counters(
            &item.user_id,
            &item.run_id,
            RunCountChange {
                replied: 1,
                ..RunCountChange::default()
            },
        )?;
        let replied = self.transact_communication(communication, run).await?;
        if replied {
            self.publish_communication(
                item,
                crate::webhooks::EventType::CommunicationReplied,
                CommunicationStatus::Replied,
                None,
            )
            .await;
        }
        Ok(replied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_message_ids_in_any_spelling() {
        let keys = ReplyKey::named_in("<a.1@x.example> <B.2@Y.example>,\r\n <not-an-id>");
        assert_eq!(
            keys,
            vec![
                ReplyKey::MessageId("a.1@x.example".into()),
                ReplyKey::MessageId("B.2@Y.example".into())
            ]
        );
        assert_eq!(
            ReplyKey::MessageId("<B.2@Y.example>".into()).stored(),
            ReplyKey::MessageId("b.2@y.example".into()).stored()
        );
    }
}
