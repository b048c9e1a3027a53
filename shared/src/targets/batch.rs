//! Batch create: up to 100 targets in one request, each with its own result.

use super::model::{
    BatchCounts, BatchCreateRequest, BatchCreateResponse, BatchItemResult, BatchItemStatus,
    CreateTargetRequest, MAX_BATCH_ITEMS,
};
use super::store::TargetStore;
use crate::error::{Error, FieldError};
use crate::ids::UserId;
use crate::json_input::from_json_value;

/// Creates each item of a batch in order. Items are independent: an invalid or duplicate item
/// does not stop the others (a later item with an earlier item's email is a duplicate of it). A
/// batch over [`MAX_BATCH_ITEMS`] is refused whole (413). A dependency failure before anything
/// was stored is a 503 (nothing stored); after some items were stored, the batch stops writing
/// and answers per item, the rest `unavailable`, so the caller resends exactly those (nothing
/// stored twice, even for targets without an email, which no uniqueness check would catch).
pub async fn create_targets(
    store: &TargetStore,
    user: &UserId,
    request: BatchCreateRequest,
) -> Result<BatchCreateResponse, Error> {
    if request.targets.len() > MAX_BATCH_ITEMS {
        return Err(Error::PayloadTooLarge(format!(
            "A batch holds at most {MAX_BATCH_ITEMS} targets ({} sent); nothing was created.",
            request.targets.len()
        )));
    }
    let mut results = Vec::with_capacity(request.targets.len());
    let mut counts = BatchCounts::default();
    let mut outage = false;
    // In order, one at a time: items never contend with each other for the user's counter.
    for (index, value) in request.targets.into_iter().enumerate() {
        let prefix = format!("targets[{index}]");
        let parsed = from_json_value::<CreateTargetRequest>(value)
            .map_err(|error| match error {
                Error::Validation(details) => details
                    .into_iter()
                    .map(|d| FieldError::new(prefixed(&prefix, &d.field), d.problem))
                    .collect(),
                _ => vec![FieldError::new(prefix.clone(), "is not a target")],
            })
            .and_then(|request| request.parse(&prefix));
        let result = match parsed {
            Err(errors) => invalid(index, errors),
            Ok(_) if outage => unavailable(index, &prefix),
            Ok(draft) => match store.create(user, draft).await {
                Ok(target) => BatchItemResult {
                    index,
                    status: BatchItemStatus::Created,
                    id: Some(target.id.to_string()),
                    existing_id: None,
                    errors: Vec::new(),
                },
                Err(Error::Conflict { existing_id, .. }) => BatchItemResult {
                    index,
                    status: BatchItemStatus::Duplicate,
                    id: None,
                    existing_id,
                    errors: Vec::new(),
                },
                Err(Error::LimitExceeded { message, .. }) => {
                    invalid(index, vec![FieldError::new(prefix, message)])
                }
                Err(other) if counts.created == 0 => return Err(other),
                Err(other) => {
                    tracing::warn!(error = %crate::error::ErrorChain(&other), index, "batch stopped part-way");
                    outage = true;
                    unavailable(index, &prefix)
                }
            },
        };
        match result.status {
            BatchItemStatus::Created => counts.created += 1,
            BatchItemStatus::Duplicate => counts.duplicate += 1,
            BatchItemStatus::Invalid => counts.invalid += 1,
            BatchItemStatus::Unavailable => counts.unavailable += 1,
        }
        results.push(result);
    }
    Ok(BatchCreateResponse { results, counts })
}

fn prefixed(prefix: &str, field: &str) -> String {
    if field == "body" {
        prefix.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

fn unavailable(index: usize, prefix: &str) -> BatchItemResult {
    BatchItemResult {
        index,
        status: BatchItemStatus::Unavailable,
        id: None,
        existing_id: None,
        errors: vec![FieldError::new(
            prefix,
            "not stored: a dependency is unavailable; send this item again",
        )],
    }
}

fn invalid(index: usize, errors: Vec<FieldError>) -> BatchItemResult {
    BatchItemResult {
        index,
        status: BatchItemStatus::Invalid,
        id: None,
        existing_id: None,
        errors,
    }
}
