//! What the key rotation (`pipewise-rotate-keys`) reads and writes through the store: every
//! item's wrapped data key, page by page, and the conditional write of a re-wrapped one.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::aws::dependency_error;
use crate::error::Error;
use crate::storage::{conditional, number, read_item, text, user_key};

use super::AccountStore;

/// What the key rotation (`pipewise-rotate-keys`) reads and writes: every item's wrapped data
/// key, and the conditional write of a re-wrapped one. The data key itself never leaves KMS.
impl AccountStore {
    /// One page of a consistent scan of the whole table, from `from` (`None`: the start), each
    /// item read as far as the rotation needs it. Every item is listed, the ones without an
    /// envelope (accounts without secrets, counters, sender claims) too, so that a run counts
    /// what it read. `next` is `None` after the last page.
    pub async fn data_keys_page(&self, from: Option<ScanPosition>) -> Result<DataKeyPage, Error> {
        let page = self
            .dynamodb
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .set_exclusive_start_key(from.map(|position| position.0))
            .send()
            .await
            .map_err(dependency_error)?;
        Ok(DataKeyPage {
            items: page
                .items
                .unwrap_or_default()
                .iter()
                .map(data_key_item)
                .collect(),
            next: page.last_evaluated_key.map(ScanPosition),
        })
    }

    /// One item as it is now (consistent read), read like [`Self::data_keys_page`] reads it;
    /// `None` once it is deleted.
    pub async fn read_data_key(&self, key: &ItemKey) -> Result<Option<DataKeyItem>, Error> {
        let item = read_item(&self.dynamodb, &self.table, key.attributes()).await?;
        Ok(item.as_ref().map(data_key_item))
    }

    /// Stores a re-wrapped data key (the envelope's `wrapped_key` and `kms_key_id`; its nonce
    /// and ciphertext stay as they are) and bumps the version, if the item still has the version
    /// and key it was read with; `false` when a concurrent write got in between. The bump makes
    /// a user write based on an earlier read fail with 409 instead of putting back an envelope
    /// under the old key.
    pub async fn store_rewrapped_key(
        &self,
        key: &ItemKey,
        seen_version: u64,
        seen_kms_key_id: &str,
        rewrapped: WrappedDataKey,
    ) -> Result<bool, Error> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.attributes()))
            .update_expression(
                "SET secrets.wrapped_key = :wrapped_key, secrets.kms_key_id = :kms_key_id, \
                 version = :next_version",
            )
            .condition_expression(
                "version = :seen_version AND secrets.kms_key_id = :seen_kms_key_id",
            )
            .expression_attribute_values(
                ":wrapped_key",
                AttributeValue::B(Blob::new(rewrapped.wrapped_key)),
            )
            .expression_attribute_values(":kms_key_id", text(rewrapped.kms_key_id))
            .expression_attribute_values(":next_version", number(seen_version.saturating_add(1)))
            .expression_attribute_values(":seen_version", number(seen_version))
            .expression_attribute_values(":seen_kms_key_id", text(seen_kms_key_id))
            .send()
            .await;
        conditional(result)
    }

    /// DynamoDB's approximate item count of the table (refreshed about every six hours), for a
    /// progress bar; `None` when it cannot be read.
    pub async fn estimated_item_count(&self) -> Option<u64> {
        let output = self
            .dynamodb
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .ok()?;
        output
            .table()
            .and_then(|table| table.item_count())
            .and_then(|count| u64::try_from(count).ok())
    }
}

/// The key of any item of the accounts table, as text: an account's owner and id, or the keys
/// of a counter or a sender claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ItemKey {
    /// Partition key: the owner (or a sender claim's `sender#<address>`).
    pub user_id: String,
    /// Sort key: the account id (or a counter's or claim's `#...`).
    pub account_id: String,
}

impl ItemKey {
    fn attributes(&self) -> HashMap<String, AttributeValue> {
        user_key(&self.user_id, "account_id", &self.account_id)
    }
}

/// A data key as an envelope stores it: wrapped by a KMS key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedDataKey {
    /// The ARN of the KMS key that wrapped it.
    pub kms_key_id: String,
    /// The data key, encrypted by KMS.
    pub wrapped_key: Vec<u8>,
}

/// One item of the accounts table as the key rotation reads it: never a secret, never the
/// masked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyItem {
    /// The item's key; `None` for an item without string keys (which the table's key schema
    /// rules out).
    pub key: Option<ItemKey>,
    /// The optimistic-lock version, or why it cannot be read.
    pub version: Result<u64, &'static str>,
    /// The wrapped data key of the item's `secrets` envelope: `None` for items without secrets,
    /// or why the envelope cannot be read.
    pub data_key: Result<Option<WrappedDataKey>, &'static str>,
}

/// One page of [`AccountStore::data_keys_page`].
#[derive(Debug, Clone)]
pub struct DataKeyPage {
    /// The page's items, in the scan's order.
    pub items: Vec<DataKeyItem>,
    /// Where the next page starts; `None` after the last.
    pub next: Option<ScanPosition>,
}

/// Where a scan of the accounts table goes on (opaque).
#[derive(Debug, Clone)]
pub struct ScanPosition(HashMap<String, AttributeValue>);

/// Reads the parts of an item the key rotation needs.
fn data_key_item(item: &HashMap<String, AttributeValue>) -> DataKeyItem {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value.clone()),
        _ => None,
    };
    DataKeyItem {
        key: text("user_id")
            .zip(text("account_id"))
            .map(|(user_id, account_id)| ItemKey {
                user_id,
                account_id,
            }),
        version: match item.get("version") {
            Some(AttributeValue::N(number)) => number
                .parse()
                .map_err(|_| "the item's version is not a whole number"),
            _ => Err("the item has no version"),
        },
        data_key: wrapped_data_key(item.get("secrets")),
    }
}

/// The wrapped data key of a `secrets` envelope; `None` when there is none.
fn wrapped_data_key(
    secrets: Option<&AttributeValue>,
) -> Result<Option<WrappedDataKey>, &'static str> {
    let envelope = match secrets {
        None | Some(AttributeValue::Null(_)) => return Ok(None),
        Some(AttributeValue::M(envelope)) => envelope,
        Some(_) => return Err("the item's secrets are not an envelope map"),
    };
    let Some(AttributeValue::S(kms_key_id)) = envelope.get("kms_key_id") else {
        return Err("the envelope names no KMS key");
    };
    let Some(AttributeValue::B(wrapped_key)) = envelope.get("wrapped_key") else {
        return Err("the envelope has no wrapped data key");
    };
    Ok(Some(WrappedDataKey {
        kms_key_id: kms_key_id.clone(),
        wrapped_key: wrapped_key.clone().into_inner(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::store::QUOTA_ITEM;
    use crate::envelope::Envelope;

    fn text(value: &str) -> AttributeValue {
        AttributeValue::S(value.to_owned())
    }

    fn account_item(secrets: Option<AttributeValue>) -> HashMap<String, AttributeValue> {
        let mut item = HashMap::from([
            ("user_id".to_owned(), text("alice")),
            ("account_id".to_owned(), text("crm-1")),
            (
                "configuration".to_owned(),
                text(r#"{"api_key":"********"}"#),
            ),
            ("version".to_owned(), AttributeValue::N("3".to_owned())),
        ]);
        if let Some(secrets) = secrets {
            item.insert("secrets".to_owned(), secrets);
        }
        item
    }

    /// The item a seal stores, through the same encoding as every account write.
    fn sealed_item() -> HashMap<String, AttributeValue> {
        let envelope = Envelope {
            v: 1,
            kms_key_id: "arn:aws:kms:eu-west-1:1:key/old".to_owned(),
            wrapped_key: vec![1, 2, 3],
            nonce: vec![4; 12],
            ciphertext: vec![5; 20],
        };
        account_item(Some(serde_dynamo::to_attribute_value(&envelope).unwrap()))
    }

    #[test]
    fn an_envelopes_data_key_is_read_with_the_items_key_and_version() {
        let read = data_key_item(&sealed_item());
        assert_eq!(
            read.key,
            Some(ItemKey {
                user_id: "alice".to_owned(),
                account_id: "crm-1".to_owned(),
            })
        );
        assert_eq!(read.version, Ok(3));
        assert_eq!(
            read.data_key,
            Ok(Some(WrappedDataKey {
                kms_key_id: "arn:aws:kms:eu-west-1:1:key/old".to_owned(),
                wrapped_key: vec![1, 2, 3],
            }))
        );
    }

    #[test]
    fn items_without_an_envelope_have_no_data_key() {
        assert_eq!(data_key_item(&account_item(None)).data_key, Ok(None));
        let null = account_item(Some(AttributeValue::Null(true)));
        assert_eq!(data_key_item(&null).data_key, Ok(None));
        // A user's counter: no version, no secrets.
        let counter = HashMap::from([
            ("user_id".to_owned(), text("alice")),
            ("account_id".to_owned(), text(QUOTA_ITEM)),
            (
                "account_count".to_owned(),
                AttributeValue::N("1".to_owned()),
            ),
        ]);
        let read = data_key_item(&counter);
        assert_eq!(read.data_key, Ok(None));
        assert_eq!(read.version, Err("the item has no version"));
    }

    #[test]
    fn a_broken_envelope_says_what_is_wrong_and_nothing_it_holds() {
        let not_a_map = account_item(Some(text("sealed")));
        assert_eq!(
            data_key_item(&not_a_map).data_key,
            Err("the item's secrets are not an envelope map")
        );
        let mut no_key = sealed_item();
        if let Some(AttributeValue::M(envelope)) = no_key.get_mut("secrets") {
            envelope.remove("kms_key_id");
        }
        assert_eq!(
            data_key_item(&no_key).data_key,
            Err("the envelope names no KMS key")
        );
        let mut no_wrapped = sealed_item();
        if let Some(AttributeValue::M(envelope)) = no_wrapped.get_mut("secrets") {
            envelope.insert("wrapped_key".to_owned(), text("not bytes"));
        }
        assert_eq!(
            data_key_item(&no_wrapped).data_key,
            Err("the envelope has no wrapped data key")
        );
        let mut odd_version = sealed_item();
        odd_version.insert("version".to_owned(), AttributeValue::N("1.5".to_owned()));
        assert_eq!(
            data_key_item(&odd_version).version,
            Err("the item's version is not a whole number")
        );
    }
}
