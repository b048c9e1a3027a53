//! The outreach background functions: `communications-worker` drains the communications queue
//! (and, on its schedule, releases communications whose day has come); `communications-feedback`
//! drains SES's delivery, bounce and complaint events; `webhook-delivery` drains the webhook
//! queue.
//!
//! The domain logic lives in `pipewise::communications`; this crate holds the Lambda side: SQS
//! batches with partial failures, and the wiring of configuration and clients.

use std::future::Future;

use aws_config::SdkConfig;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use pipewise::accounts::AccountService;
use pipewise::clock::Clock;
use pipewise::communications::delivery::{
    DailySendCap, Delivery, PlatformApis, ses_sending_client,
};
use pipewise::communications::feedback::EmailFeedback;
use pipewise::communications::queue::CommunicationQueue;
use pipewise::communications::replies::ReplyPoller;
use pipewise::communications::suppression::SuppressionStore;
use pipewise::communications::unsubscribe::UnsubscribeTokens;
use pipewise::communications::worker::FollowUpStops;
use pipewise::communications::{CommunicationsWorker, RunStore};
use pipewise::config::{ConfigError, ConfigSource, vars};
use pipewise::targets::store::TargetStore;
use pipewise::webhooks::{EventPublisher, WebhookDeliverer};
use serde::Deserialize;

pub use aws_lambda_events::sqs::SqsEvent;

/// Messages of one batch processed at the same time.
const CONCURRENCY: usize = 10;

/// Something that handles SQS messages: each `true` when it is done with, `false` when SQS must
/// deliver it again.
pub trait MessageHandler: Sync {
    /// Handles one message body, received `receives` times so far.
    fn handle(&self, body: Option<&str>, receives: u32) -> impl Future<Output = bool> + Send;

    /// Handles a whole batch (body and receive count of each), answering in the same order: by
    /// default each message on its own, [`CONCURRENCY`] at a time.
    fn handle_all(
        &self,
        messages: &[(Option<&str>, u32)],
    ) -> impl Future<Output = Vec<bool>> + Send {
        async move {
            let mut done = Vec::with_capacity(messages.len());
            for chunk in messages.chunks(CONCURRENCY) {
                let handled = chunk
                    .iter()
                    .map(|&(body, receives)| self.handle(body, receives));
                done.extend(futures::future::join_all(handled).await);
            }
            done
        }
    }
}

impl MessageHandler for CommunicationsWorker {
    fn handle(&self, body: Option<&str>, receives: u32) -> impl Future<Output = bool> + Send {
        self.handle_message(body, receives)
    }

    /// The batch together: its messages share their reads (`CommunicationsWorker::handle_messages`).
    fn handle_all(
        &self,
        messages: &[(Option<&str>, u32)],
    ) -> impl Future<Output = Vec<bool>> + Send {
        // Boxed: a batch's future nests every delivery's awaits, deeper than the compiler's
        // default layout depth in the function that awaits it.
        Box::pin(self.handle_messages(messages))
    }
}

impl MessageHandler for WebhookDeliverer {
    fn handle(&self, body: Option<&str>, _receives: u32) -> impl Future<Output = bool> + Send {
        self.handle_message(body)
    }
}

impl MessageHandler for EmailFeedback {
    fn handle(&self, body: Option<&str>, _receives: u32) -> impl Future<Output = bool> + Send {
        self.handle_message(body)
    }
}

/// Processes one SQS batch; the answer lists only the messages to retry
/// (`ReportBatchItemFailures`), so one bad message never redelivers the rest.
pub async fn handle_batch<H: MessageHandler>(handler: &H, event: SqsEvent) -> SqsBatchResponse {
    let messages: Vec<(Option<&str>, u32)> = event
        .records
        .iter()
        .map(|record| (record.body.as_deref(), receive_count(record)))
        .collect();
    let done = handler.handle_all(&messages).await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = event
        .records
        .iter()
        .zip(done.into_iter().chain(std::iter::repeat(false)))
        .filter(|(_, done)| !done)
        .map(|(record, _)| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = record.message_id.clone().unwrap_or_default();
            failure
        })
        .collect();
    response
}

fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|count| count.parse().ok())
        .unwrap_or(1)
}

/// What invokes `communications-worker`: a batch from its queue, or its release schedule.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum WorkerEvent {
    /// An EventBridge schedule tick (`detail-type: Scheduled Event`): release scheduled
    /// communications whose day has come.
    Schedule {
        /// `Scheduled Event`.
        #[serde(rename = "detail-type")]
        detail_type: String,
        /// Which schedule: [`POLL_MAILBOXES`] reads mailboxes for replies; any other releases.
        #[serde(default)]
        source: String,
    },
    /// Communications to deliver.
    Queue(SqsEvent),
}

/// The worker's answer: partial batch failures for a batch, how many were released for a tick.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum WorkerResponse {
    /// For a batch.
    Batch(SqsBatchResponse),
    /// For a release tick.
    Released(pipewise::communications::worker::TickReport),
    /// For a mailbox poll.
    Polled(pipewise::communications::replies::PollReport),
}

/// The `source` of the schedule that reads the connected mailboxes for replies (template.yaml,
/// `PollMailboxes`).
pub const POLL_MAILBOXES: &str = "pipewise.poll-mailboxes";

/// Handles one invocation of `communications-worker`.
pub async fn handle_worker_event(
    worker: &CommunicationsWorker,
    event: WorkerEvent,
) -> Result<WorkerResponse, pipewise::Error> {
    // The schedule's futures are boxed like a batch's (`handle_all`): a poll nests every mailbox's
    // reads, and from a clean build (no incremental cache) the layout of `main`'s future overflowed
    // the compiler's query depth.
    match event {
        WorkerEvent::Queue(batch) => Ok(WorkerResponse::Batch(handle_batch(worker, batch).await)),
        WorkerEvent::Schedule { source, .. } if source == POLL_MAILBOXES => Ok(
            WorkerResponse::Polled(Box::pin(worker.poll_replies()).await?),
        ),
        WorkerEvent::Schedule { detail_type, .. } => {
            tracing::info!(%detail_type, "release tick");
            Ok(WorkerResponse::Released(Box::pin(worker.tick()).await?))
        }
    }
}

/// Builds the worker from its settings and one SDK configuration (once per cold start).
pub fn worker_from_config(
    source: &ConfigSource<'_>,
    sdk: &SdkConfig,
) -> Result<CommunicationsWorker, ConfigError> {
    worker_with_clock(source, sdk, Clock::system())
}

/// Like [`worker_from_config`], with the clock its days are counted by (tests move it).
pub fn worker_with_clock(
    source: &ConfigSource<'_>,
    sdk: &SdkConfig,
    clock: Clock,
) -> Result<CommunicationsWorker, ConfigError> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let accounts = AccountService::from_config(source, sdk)?.with_clock(clock.clone());
    let runs = RunStore::new(dynamodb.clone(), source.required(vars::RUNS_TABLE)?)
        .with_events(EventPublisher::from_source(source, sdk))
        .with_clock(clock.clone());
    let targets_table = source.required(vars::TARGETS_TABLE)?;
    let replies = ReplyPoller::new(
        accounts.clone(),
        runs.clone(),
        TargetStore::new(dynamodb.clone(), targets_table.clone()),
        PlatformApis::from_source(source),
        clock.clone(),
    );
    let delivery = Delivery::new(
        accounts,
        ses_sending_client(sdk),
        PlatformApis::from_source(source),
        UnsubscribeTokens::from_source(source, sdk),
        SuppressionStore::new(dynamodb.clone(), targets_table.clone()),
        DailySendCap::new(runs.clone(), clock.clone()),
    )
    .with_configuration_set(source.optional(vars::SES_CONFIGURATION_SET));
    Ok(CommunicationsWorker::new(
        runs,
        delivery,
        CommunicationQueue::new(
            aws_sdk_sqs::Client::new(sdk),
            source.required(vars::COMMUNICATIONS_QUEUE_URL)?,
        ),
        clock,
    )
    .with_replies(replies)
    .with_follow_up_stops(FollowUpStops::new(
        TargetStore::new(dynamodb.clone(), targets_table.clone()),
        SuppressionStore::new(dynamodb, targets_table),
    )))
}

/// Builds the SES feedback handler (once per cold start).
pub fn feedback_from_config(
    source: &ConfigSource<'_>,
    sdk: &SdkConfig,
) -> Result<EmailFeedback, ConfigError> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    Ok(EmailFeedback::new(
        RunStore::new(dynamodb.clone(), source.required(vars::RUNS_TABLE)?)
            .with_events(EventPublisher::from_source(source, sdk)),
        SuppressionStore::new(dynamodb, source.required(vars::TARGETS_TABLE)?),
    ))
}

/// Builds the webhook deliverer (once per cold start).
pub fn webhook_deliverer_from_config(
    source: &ConfigSource<'_>,
    sdk: &SdkConfig,
) -> Result<WebhookDeliverer, ConfigError> {
    WebhookDeliverer::from_config(source, sdk, Clock::system())
}
