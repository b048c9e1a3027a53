//! DynamoDB conditions and transactions, read from SDK errors.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};

use crate::aws::{dependency_error, error_code};
use crate::error::Error;

/// Attempts of a transaction that DynamoDB cancels because another transaction held one of its
/// items (`TransactionConflict`); both would otherwise have to be retried by the client.
const TRANSACTION_ATTEMPTS: u32 = 4;

/// A string attribute.
pub fn text(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute.
pub fn number(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The key of an item in a user's partition: `user_id` plus the table's sort key.
pub fn user_key(
    user_id: &str,
    sort_name: &str,
    sort_value: &str,
) -> std::collections::HashMap<String, AttributeValue> {
    std::collections::HashMap::from([
        ("user_id".to_owned(), text(user_id)),
        (sort_name.to_owned(), text(sort_value)),
    ])
}

/// One item, read strongly consistently; `None` when there is none.
pub async fn read_item(
    client: &Client,
    table: &str,
    key: std::collections::HashMap<String, AttributeValue>,
) -> Result<Option<std::collections::HashMap<String, AttributeValue>>, Error> {
    let output = client
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .map_err(dependency_error)?;
    Ok(output.item)
}

/// Items by key from one table, read consistently, 100 keys per `BatchGetItem` (its limit);
/// keys DynamoDB leaves unprocessed under load are asked for again (8 rounds, then 503). A key
/// asked twice is asked once (`BatchGetItem` refuses a request that names one key twice). Keys
/// with no item are left out; the order is DynamoDB's.
pub async fn batch_get(
    client: &Client,
    table: &str,
    mut keys: Vec<std::collections::HashMap<String, AttributeValue>>,
) -> Result<Vec<std::collections::HashMap<String, AttributeValue>>, Error> {
    let mut seen = std::collections::HashSet::new();
    keys.retain(|key| seen.insert(key_fingerprint(key, key.keys())));
    let mut found = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(100) {
        let mut pending = chunk.to_vec();
        for attempt in 0u64.. {
            if pending.is_empty() {
                break;
            }
            if attempt >= 8 {
                return Err(Error::unavailable("DynamoDB left batch keys unprocessed"));
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(25 * attempt)).await;
            }
            let request = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(Error::internal)?;
            let output = client
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await
                .map_err(dependency_error)?;
            found.extend(
                output
                    .responses
                    .and_then(|mut tables| tables.remove(table))
                    .unwrap_or_default(),
            );
            pending = output
                .unprocessed_keys
                .and_then(|mut left| left.remove(table))
                .map(|left| left.keys)
                .unwrap_or_default();
        }
    }
    Ok(found)
}

/// Like [`batch_get`], each key named by the caller's `K` (an id, an address): the items found,
/// by the name of the key that found them, so callers match answers back without reading keys
/// out of items.
pub async fn batch_get_by<K>(
    client: &Client,
    table: &str,
    keys: Vec<(K, std::collections::HashMap<String, AttributeValue>)>,
) -> Result<std::collections::HashMap<K, std::collections::HashMap<String, AttributeValue>>, Error>
where
    K: Eq + std::hash::Hash,
{
    let Some(key_names) = keys
        .first()
        .map(|(_, key)| key.keys().cloned().collect::<Vec<_>>())
    else {
        return Ok(std::collections::HashMap::new());
    };
    let mut names = std::collections::HashMap::with_capacity(keys.len());
    let mut requested = Vec::with_capacity(keys.len());
    for (name, key) in keys {
        names.insert(key_fingerprint(&key, key.keys()), name);
        requested.push(key);
    }
    let mut by_name = std::collections::HashMap::with_capacity(names.len());
    for item in batch_get(client, table, requested).await? {
        if let Some(name) = names.remove(&key_fingerprint(&item, key_names.iter())) {
            by_name.insert(name, item);
        }
    }
    Ok(by_name)
}

/// The values of `names` in `item`, as one comparable text: what tells two keys apart.
fn key_fingerprint<'a>(
    item: &std::collections::HashMap<String, AttributeValue>,
    names: impl Iterator<Item = &'a String>,
) -> String {
    let mut names: Vec<&String> = names.collect();
    names.sort();
    names
        .into_iter()
        .map(|name| format!("{name}={:?}\u{0}", item.get(name)))
        .collect()
}

/// The outcome of a conditional single-item write: `true` when it was applied, `false` when its
/// condition did not hold, the API error (503) when DynamoDB failed.
pub fn conditional<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<bool, Error>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(error) if is_conditional_check_failed(&error) => Ok(false),
        Err(error) => Err(dependency_error(error)),
    }
}

/// Whether a single-item write failed its condition expression.
pub fn is_conditional_check_failed<E, R>(error: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    error_code(error) == Some("ConditionalCheckFailedException")
}

/// For a cancelled transaction, the cancellation code of each item in order (`"None"` for items
/// that were fine); `None` when the transaction failed for another reason.
pub fn cancellation_codes<R>(error: &SdkError<TransactWriteItemsError, R>) -> Option<Vec<String>> {
    let SdkError::ServiceError(service) = error else {
        return None;
    };
    let TransactWriteItemsError::TransactionCanceledException(cancelled) = service.err() else {
        return None;
    };
    Some(
        cancelled
            .cancellation_reasons()
            .iter()
            .map(|reason| reason.code().unwrap_or("None").to_owned())
            .collect(),
    )
}

/// Which items of a cancelled transaction failed their condition. Read by slot with
/// [`FailedConditions::at`], never by indexing: a slot past the reasons DynamoDB returned (or an
/// emulator that returns fewer) reads as "did not fail" instead of panicking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedConditions(Vec<bool>);

impl FailedConditions {
    /// Whether the item at `slot` (its position in the transaction) failed its condition.
    pub fn at(&self, slot: usize) -> bool {
        self.0.get(slot).copied().unwrap_or(false)
    }
}

/// Why a transaction did not commit.
#[derive(Debug)]
pub enum TransactionFailure {
    /// A condition failed: which items' conditions failed.
    ConditionFailed(FailedConditions),
    /// DynamoDB or the network failed (503), or the request was malformed (500).
    Dependency(Error),
}

impl From<TransactionFailure> for Error {
    fn from(failure: TransactionFailure) -> Self {
        match failure {
            TransactionFailure::ConditionFailed(_) => {
                Error::internal("a transaction condition failed unexpectedly")
            }
            TransactionFailure::Dependency(error) => error,
        }
    }
}

/// Writes `items` all-or-nothing. Retries cancellations caused only by concurrent transactions
/// (each attempt with a fresh idempotency token, so the SDK's own retries of one attempt never
/// apply it twice); reports failed conditions by item.
pub async fn transact_write(
    client: &Client,
    items: Vec<TransactWriteItem>,
) -> Result<(), TransactionFailure> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = client
            .transact_write_items()
            .set_transact_items(Some(items.clone()))
            .client_request_token(uuid::Uuid::new_v4().to_string())
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        match cancellation_codes(&error) {
            Some(codes) if codes.iter().any(|code| code == "ConditionalCheckFailed") => {
                return Err(TransactionFailure::ConditionFailed(FailedConditions(
                    codes
                        .iter()
                        .map(|code| code == "ConditionalCheckFailed")
                        .collect(),
                )));
            }
            Some(codes)
                if attempt < TRANSACTION_ATTEMPTS
                    && codes.iter().any(|code| code == "TransactionConflict") =>
            {
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
            }
            _ => return Err(TransactionFailure::Dependency(dependency_error(error))),
        }
    }
}

/// An item as DynamoDB attributes; absent optional fields are left out rather than stored as
/// NULL (so `attribute_not_exists` means "not set").
pub fn encode_item<T: serde::Serialize>(
    item: &T,
) -> Result<std::collections::HashMap<String, AttributeValue>, Error> {
    let mut encoded: std::collections::HashMap<String, AttributeValue> =
        serde_dynamo::to_item(item).map_err(Error::internal)?;
    encoded.retain(|_, value| !matches!(value, AttributeValue::Null(_)));
    Ok(encoded)
}

/// An item read back from DynamoDB attributes.
pub fn decode_item<T: serde::de::DeserializeOwned>(
    item: std::collections::HashMap<String, AttributeValue>,
) -> Result<T, Error> {
    serde_dynamo::from_item(item).map_err(Error::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user: &str, sk: &str) -> std::collections::HashMap<String, AttributeValue> {
        user_key(user, "sk", sk)
    }

    #[test]
    fn a_key_is_told_apart_by_its_key_attributes_only() {
        let asked = key("alice", "#suppression#a@example.com");
        let mut found = asked.clone();
        found.insert("reason".into(), text("bounced"));
        let names: Vec<String> = asked.keys().cloned().collect();
        assert_eq!(
            key_fingerprint(&asked, asked.keys()),
            key_fingerprint(&found, names.iter()),
            "an item found matches the key that asked for it"
        );
        assert_ne!(
            key_fingerprint(&asked, asked.keys()),
            key_fingerprint(&key("bob", "#suppression#a@example.com"), names.iter()),
        );
        // The separator keeps `a` + `bc` apart from `ab` + `c`.
        assert_ne!(
            key_fingerprint(&key("a", "bc"), names.iter()),
            key_fingerprint(&key("ab", "c"), names.iter()),
        );
    }
}
