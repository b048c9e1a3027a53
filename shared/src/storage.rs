//! DynamoDB conditions and transaction outcomes, read from SDK errors.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;

use crate::aws::error_code;

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
