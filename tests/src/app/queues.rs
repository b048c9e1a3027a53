//! The queue consumers, run in process on the stack's queues: the communications worker, the SES
//! feedback handler and the webhook deliverer, configured like their functions, and draining
//! each queue until it is empty.

use aws_config::SdkConfig;
use pipewise::config::ConfigSource;
use pipewise_local::queue_poller::poll_once;
use serde_json::Value;

use crate::{TestApp, plaintext_audit};

/// A queue handler that hands each body to the plaintext audit first.
struct RecordingHandler<'a, H>(&'a H);

impl<H: communications_worker::MessageHandler> communications_worker::MessageHandler
    for RecordingHandler<'_, H>
{
    fn handle(
        &self,
        body: Option<&str>,
        receives: u32,
    ) -> impl std::future::Future<Output = bool> + Send {
        if let Some(body) = body {
            plaintext_audit::record_queue_body(body);
        }
        self.0.handle(body, receives)
    }

    fn handle_all(
        &self,
        messages: &[(Option<&str>, u32)],
    ) -> impl std::future::Future<Output = Vec<bool>> + Send {
        for body in messages.iter().filter_map(|(body, _)| *body) {
            plaintext_audit::record_queue_body(body);
        }
        self.0.handle_all(messages)
    }
}

impl TestApp {
    /// The worker, configured exactly like the functions.
    pub fn worker(&self) -> pipewise::communications::CommunicationsWorker {
        self.worker_on(&self.sdk)
    }

    /// The worker with another SDK configuration (e.g. one service pointed elsewhere).
    pub fn worker_on(&self, sdk: &SdkConfig) -> pipewise::communications::CommunicationsWorker {
        communications_worker::worker_from_config(&ConfigSource::from_map(&self.environment), sdk)
            .expect("configure the worker")
    }

    /// The worker with a clock the test moves (days turning for a sender's daily cap).
    pub fn worker_with_clock(
        &self,
        clock: pipewise::clock::Clock,
    ) -> pipewise::communications::CommunicationsWorker {
        communications_worker::worker_with_clock(
            &ConfigSource::from_map(&self.environment),
            &self.sdk,
            clock,
        )
        .expect("configure the worker")
    }

    /// The SES feedback handler, configured exactly like its function.
    pub fn feedback(&self) -> pipewise::communications::feedback::EmailFeedback {
        self.feedback_on(&self.sdk)
    }

    /// The feedback handler with another SDK configuration (e.g. through a proxy).
    pub fn feedback_on(
        &self,
        sdk: &SdkConfig,
    ) -> pipewise::communications::feedback::EmailFeedback {
        communications_worker::feedback_from_config(&ConfigSource::from_map(&self.environment), sdk)
            .expect("configure the feedback handler")
    }

    /// The webhook deliverer, configured exactly like its function, with a clock the test
    /// may move.
    pub fn webhook_deliverer(
        &self,
        clock: pipewise::clock::Clock,
    ) -> pipewise::webhooks::WebhookDeliverer {
        self.webhook_deliverer_on(&self.sdk, clock)
    }

    /// The webhook deliverer with another SDK configuration (e.g. through a proxy).
    pub fn webhook_deliverer_on(
        &self,
        sdk: &SdkConfig,
        clock: pipewise::clock::Clock,
    ) -> pipewise::webhooks::WebhookDeliverer {
        pipewise::webhooks::WebhookDeliverer::from_config(
            &ConfigSource::from_map(&self.environment),
            sdk,
            clock,
        )
        .expect("configure the webhook deliverer")
    }

    /// URL of a queue of the stack.
    pub fn queue_url(&self, logical_id: &str) -> String {
        self.resource(logical_id).to_owned()
    }

    /// Runs the worker on the communications queue until it is empty; returns how many messages
    /// were received in all.
    pub async fn drain_queue(&self) -> usize {
        self.drain_queue_with(&self.worker()).await
    }

    /// Like [`TestApp::drain_queue`], with a given worker.
    pub async fn drain_queue_with(
        &self,
        worker: &pipewise::communications::CommunicationsWorker,
    ) -> usize {
        self.drain("CommunicationsQueue", worker).await
    }

    /// The SQS event Lambda's event source mapping would hand over for `messages` (each on its
    /// first receive).
    pub fn sqs_event(messages: &[aws_sdk_sqs::types::Message]) -> aws_lambda_events::sqs::SqsEvent {
        let mut event = aws_lambda_events::sqs::SqsEvent::default();
        for message in messages {
            let mut record = aws_lambda_events::sqs::SqsMessage::default();
            record.message_id = message.message_id.clone();
            record.body = message.body.clone();
            record
                .attributes
                .insert("ApproximateReceiveCount".into(), "1".into());
            event.records.push(record);
        }
        event
    }

    /// Receives up to ten messages without handling or deleting them.
    pub async fn receive_messages(&self) -> Vec<aws_sdk_sqs::types::Message> {
        self.sqs()
            .receive_message()
            .queue_url(self.queue_url("CommunicationsQueue"))
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default()
    }

    /// Runs `deliverer` on the webhook queue until it is empty (events fan out, attempts go,
    /// retries without delay follow); returns how many messages were received.
    pub async fn drain_webhooks_with(
        &self,
        deliverer: &pipewise::webhooks::WebhookDeliverer,
    ) -> usize {
        self.drain("WebhookQueue", deliverer).await
    }

    /// [`TestApp::drain_webhooks_with`] a deliverer on the system clock.
    pub async fn drain_webhooks(&self) -> usize {
        self.drain_webhooks_with(&self.webhook_deliverer(pipewise::clock::Clock::system()))
            .await
    }

    /// Publishes an SES event (the JSON SES's event destination publishes) to the stack's
    /// email events topic, as SES does; SNS delivers it to the feedback queue.
    pub async fn publish_ses_event(&self, event: &Value) {
        aws_sdk_sns::Client::new(&self.sdk)
            .publish()
            .topic_arn(self.resource("EmailEventsTopic"))
            .message(event.to_string())
            .send()
            .await
            .expect("publish to the email events topic");
    }

    /// Runs the feedback handler on the feedback queue until it is empty; returns how many
    /// messages were received.
    pub async fn drain_feedback(&self) -> usize {
        self.drain_feedback_with(&self.feedback()).await
    }

    /// Like [`TestApp::drain_feedback`], with a given handler.
    pub async fn drain_feedback_with(
        &self,
        handler: &pipewise::communications::feedback::EmailFeedback,
    ) -> usize {
        self.drain("EmailFeedbackQueue", handler).await
    }

    /// Runs `handler` on the template's queue `logical_id` as Lambda's event source mapping
    /// would, until the queue is empty (every body recorded for the plaintext audit); returns
    /// how many messages were received in all.
    async fn drain<H: communications_worker::MessageHandler>(
        &self,
        logical_id: &str,
        handler: &H,
    ) -> usize {
        let sqs = self.sqs();
        let url = self.queue_url(logical_id);
        let mut received = 0;
        loop {
            let report = poll_once(&sqs, &url, &RecordingHandler(handler), 0)
                .await
                .unwrap_or_else(|error| panic!("poll {logical_id}: {error}"));
            received += report.received;
            if report.received == 0 {
                return received;
            }
        }
    }
}
