//! The worker's batch handler: delivers each queued communication at most once.
//!
//! Per message: read the communication; a finished one is a duplicate delivery and is
//! acknowledged; a queued one is claimed (`queued` -> `sending`, conditional) before anything is
//! sent, then delivered and finished (`sent` / `failed` / `cancelled`) together with its run's
//! counters. A transient failure gives the claim back and reports the message so SQS retries it;
//! on its last receive it is recorded as failed instead. A communication left in `sending` (its
//! worker died mid-delivery) is resolved as failed with `delivery_outcome_unknown` once stale:
//! it may have been delivered, so it is never sent again.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;

use super::delivery::{Delivery, Outcome};
use super::model::CommunicationStatus;
use super::queue::{CommunicationMessage, CommunicationQueue};
use super::store::{RunStore, epoch_seconds};
use crate::error::{Error, ErrorChain};

/// Receives of one message before SQS moves it to the dead-letter queue; must equal the
/// queue's `maxReceiveCount` in template.yaml (a test checks).
pub const MAX_RECEIVES: u32 = 5;
/// Seconds after which a communication still `sending` is taken to have lost its worker
/// (well above the worker's 30 s timeout).
pub const STUCK_SENDING_SECONDS: i64 = 300;
/// Messages of one batch processed at the same time.
const CONCURRENCY: usize = 10;

/// Why a message must come back.
#[derive(Debug)]
enum Redeliver {
    Transient(String),
    Dependency(Error),
}

impl From<Error> for Redeliver {
    fn from(error: Error) -> Self {
        Self::Dependency(error)
    }
}

/// Delivers communications from queue messages.
#[derive(Clone)]
pub struct CommunicationsWorker {
    runs: RunStore,
    delivery: Delivery,
    queue: CommunicationQueue,
}

impl CommunicationsWorker {
    /// A worker over the runs store, a delivery, and its own queue (for communications that
    /// wait for a platform's rate limit).
    pub fn new(runs: RunStore, delivery: Delivery, queue: CommunicationQueue) -> Self {
        Self {
            runs,
            delivery,
            queue,
        }
    }

    /// Processes one SQS batch; the answer lists only the messages to retry.
    pub async fn handle_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        let failures: Vec<BatchItemFailure> = futures::stream::iter(event.records)
            .map(|record| async move {
                let id = record.message_id.clone().unwrap_or_default();
                let span = tracing::info_span!("message", message_id = %id);
                let keep =
                    tracing::Instrument::instrument(self.handle_message(&record), span).await;
                (!keep).then(|| {
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = id;
                    failure
                })
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(|failure| async move { failure })
            .collect()
            .await;
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = failures;
        response
    }

    /// `true` when the message is done with (delivered, recorded, or a duplicate).
    async fn handle_message(&self, record: &SqsMessage) -> bool {
        let Some(message) = record
            .body
            .as_deref()
            .and_then(|body| serde_json::from_str::<CommunicationMessage>(body).ok())
        else {
            // Never logged whole: a body is not ours to print. It retries into the DLQ.
            tracing::error!(
                body_bytes = record.body.as_ref().map_or(0, String::len),
                "undecodable message"
            );
            return false;
        };
        let receives = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|count| count.parse().ok())
            .unwrap_or(1);
        match self.process(&message, receives).await {
            Ok(()) => true,
            Err(Redeliver::Transient(reason)) => {
                tracing::warn!(run_id = %message.run_id, index = message.index, %reason, receives, "delivery will be retried");
                false
            }
            Err(Redeliver::Dependency(error)) => {
                tracing::error!(run_id = %message.run_id, index = message.index, error = %ErrorChain(&error), "message failed");
                false
            }
        }
    }

    async fn process(
        &self,
        message: &CommunicationMessage,
        receives: u32,
    ) -> Result<(), Redeliver> {
        let Some(item) = self
            .runs
            .communication(&message.user_id, &message.run_id, message.index)
            .await?
        else {
            tracing::warn!(run_id = %message.run_id, index = message.index, "message names no communication");
            return Ok(());
        };
        let last_receive = receives >= MAX_RECEIVES;
        match item.status {
            status if status.is_final() => return Ok(()),
            CommunicationStatus::Sending => {
                let stale = item
                    .sending_since
                    .is_none_or(|since| epoch_seconds() - since > STUCK_SENDING_SECONDS);
                if stale || last_receive {
                    self.runs
                        .finish(
                            &item,
                            CommunicationStatus::Sending,
                            CommunicationStatus::Failed,
                            Some("delivery_outcome_unknown"),
                        )
                        .await?;
                    return Ok(());
                }
                return Err(Redeliver::Transient("another attempt is in flight".into()));
            }
            _ => {}
        }
        let user = crate::auth::UserId::from_verified_sub(item.user_id.clone());
        let Some(run) = self.runs.run(&user, &item.run_id).await? else {
            return Err(Redeliver::Transient("run not readable yet".into()));
        };
        if run.cancel_requested {
            self.runs
                .finish(
                    &item,
                    CommunicationStatus::Queued,
                    CommunicationStatus::Cancelled,
                    Some("cancelled_by_user"),
                )
                .await?;
            return Ok(());
        }
        if !self.runs.claim(&item).await? {
            // Another delivery of this message claimed it, or it was cancelled meanwhile.
            return Ok(());
        }
        if run.started_at.is_none() {
            self.runs.mark_started(&item.user_id, &item.run_id).await?;
        }
        let outcome = self.delivery.deliver(&item, &run.message).await;
        tracing::info!(run_id = %item.run_id, index = item.index, channel = item.channel.as_str(), outcome = ?outcome, "delivery attempt");
        let (to, reason) = match outcome {
            Outcome::Sent => (CommunicationStatus::Sent, None),
            Outcome::Failed(reason) => (CommunicationStatus::Failed, Some(reason)),
            Outcome::Unknown(_) => (
                CommunicationStatus::Failed,
                Some("delivery_outcome_unknown".to_owned()),
            ),
            Outcome::Retry(_) if last_receive => (
                CommunicationStatus::Failed,
                Some("retries_exhausted".to_owned()),
            ),
            Outcome::Retry(reason) => {
                self.runs.release(&item).await?;
                return Err(Redeliver::Transient(reason));
            }
            // Waiting for the platform is not a failed attempt: the communication goes back to
            // the queue, visible when the platform's window resets, and this receive is done.
            Outcome::RateLimited { reason, seconds } => {
                self.runs.release(&item).await?;
                self.queue.send_delayed(message, seconds).await?;
                tracing::info!(run_id = %item.run_id, index = item.index, %reason, seconds, "waiting for the platform's rate limit");
                return Ok(());
            }
        };
        self.runs
            .finish(&item, CommunicationStatus::Sending, to, reason.as_deref())
            .await?;
        Ok(())
    }
}
