//! What Lambda's SQS event source mapping does, for the local stack: receive a batch, hand it
//! to the worker's handler, delete the messages it did not report as failed.

use std::collections::HashSet;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use communications_worker::{MessageHandler, handle_batch};

/// How one poll went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollReport {
    /// Messages received.
    pub received: usize,
    /// Messages the worker reported as failed (left on the queue for a retry).
    pub failed: usize,
}

/// Receives up to ten messages (waiting up to `wait_seconds`), runs the handler (the worker,
/// or the feedback handler) on them as one SQS event, and deletes the ones it finished.
pub async fn poll_once<H: MessageHandler>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    worker: &H,
    wait_seconds: i32,
) -> Result<PollReport, aws_sdk_sqs::Error> {
    poll_batch(sqs, queue_url, worker, wait_seconds, 10).await
}

/// Like [`poll_once`] with the event source mapping's `BatchSize` (1-10) set to `batch_size`.
pub async fn poll_batch<H: MessageHandler>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    worker: &H,
    wait_seconds: i32,
    batch_size: i32,
) -> Result<PollReport, aws_sdk_sqs::Error> {
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(batch_size)
        .wait_time_seconds(wait_seconds)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await?;
    let messages = received.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(PollReport::default());
    }
    let mut event = SqsEvent::default();
    for message in &messages {
        let mut record = SqsMessage::default();
        record.message_id = message.message_id.clone();
        record.receipt_handle = message.receipt_handle.clone();
        record.body = message.body.clone();
        record.event_source = Some("aws:sqs".into());
        record.attributes = message
            .attributes
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| (name.as_str().to_owned(), value))
            .collect();
        event.records.push(record);
    }
    let response = handle_batch(worker, event).await;
    let failed: HashSet<String> = response
        .batch_item_failures
        .into_iter()
        .map(|failure| failure.item_identifier)
        .collect();
    let entries: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .enumerate()
        .filter(|(_, message)| !failed.contains(message.message_id().unwrap_or_default()))
        .filter_map(|(position, message)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(position.to_string())
                .receipt_handle(message.receipt_handle()?)
                .build()
                .ok()
        })
        .collect();
    if !entries.is_empty() {
        sqs.delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await?;
    }
    Ok(PollReport {
        received: messages.len(),
        failed: failed.len(),
    })
}
