//! The SQS queue between the orchestrator and the worker.

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::{Deserialize, Serialize};

use crate::aws::dependency_error;
use crate::error::Error;
use crate::ids::{RunId, UserId};

/// Most entries in one `SendMessageBatch` (SQS's limit).
pub const SEND_BATCH_SIZE: usize = 10;

/// The body of one queue message: which communication to deliver. Nothing else travels on the
/// queue (no addresses, no message text): the worker reads the stored communication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommunicationMessage {
    /// The user it belongs to (the token's `sub`).
    pub user_id: UserId,
    /// The run.
    pub run_id: RunId,
    /// The communication's index in the run.
    pub index: u32,
}

/// Sends communication messages to SQS.
#[derive(Clone)]
pub struct CommunicationQueue {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl CommunicationQueue {
    /// A queue client for `queue_url`.
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            sqs,
            queue_url: queue_url.into(),
        }
    }

    /// Sends up to ten messages in one call; returns how many of them, from the first, were
    /// accepted (all of them unless SQS refused some entries).
    pub async fn send_batch(&self, messages: &[CommunicationMessage]) -> Result<usize, Error> {
        let entries = messages
            .iter()
            .take(SEND_BATCH_SIZE)
            .enumerate()
            .map(|(position, message)| {
                SendMessageBatchRequestEntry::builder()
                    .id(position.to_string())
                    .message_body(serde_json::to_string(message).map_err(Error::internal)?)
                    .build()
                    .map_err(Error::internal)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let sent = entries.len();
        let output = self
            .sqs
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(dependency_error)?;
        let first_failed = output
            .failed()
            .iter()
            .filter_map(|entry| entry.id().parse::<usize>().ok())
            .min();
        Ok(first_failed.unwrap_or(sent))
    }

    /// Sends one message that becomes visible after `delay_seconds` (at most 900, SQS's limit):
    /// a communication waiting for a platform's rate limit to reset.
    pub async fn send_delayed(
        &self,
        message: &CommunicationMessage,
        delay_seconds: u64,
    ) -> Result<(), Error> {
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(serde_json::to_string(message).map_err(Error::internal)?)
            .delay_seconds(i32::try_from(delay_seconds.min(900)).unwrap_or(900))
            .send()
            .await
            .map_err(dependency_error)?;
        Ok(())
    }
}
