//! The stack's SQS queues: their attributes and redrive policies, answered as URL and ARN.

use std::collections::HashMap;

use aws_sdk_sqs::types::QueueAttributeName;
use serde_yaml::Value;

use super::StackError;
use crate::template::{Bindings, Resolved, property_text};

pub(super) async fn create_queue(
    client: &aws_sdk_sqs::Client,
    queue: &str,
    resource: &Value,
    bindings: &Bindings,
) -> Result<(String, String), StackError> {
    let mut attributes = HashMap::new();
    for (property, attribute) in [
        ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
        (
            "MessageRetentionPeriod",
            QueueAttributeName::MessageRetentionPeriod,
        ),
        (
            "ReceiveMessageWaitTimeSeconds",
            QueueAttributeName::ReceiveMessageWaitTimeSeconds,
        ),
    ] {
        if let Some(value) = property_text(resource, property, bindings)? {
            attributes.insert(attribute, value);
        }
    }
    if let Some(redrive) = resource
        .get("Properties")
        .and_then(|p| p.get("RedrivePolicy"))
    {
        let target = redrive
            .get("deadLetterTargetArn")
            .ok_or("RedrivePolicy lacks deadLetterTargetArn")?;
        let target = match crate::template::resolve(target, bindings)? {
            Resolved::Text(text) => text,
            Resolved::List(_) => return Err("deadLetterTargetArn is a list".into()),
        };
        let max_receives = redrive
            .get("maxReceiveCount")
            .and_then(Value::as_u64)
            .ok_or("RedrivePolicy lacks maxReceiveCount")?;
        attributes.insert(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": target, "maxReceiveCount": max_receives})
                .to_string(),
        );
    }
    let created = client
        .create_queue()
        .queue_name(queue)
        .set_attributes(Some(attributes))
        .send()
        .await?;
    let url = created.queue_url.ok_or("CreateQueue returned no URL")?;
    let attributes = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?;
    let arn = attributes
        .attributes
        .and_then(|mut map| map.remove(&QueueAttributeName::QueueArn))
        .ok_or("GetQueueAttributes returned no ARN")?;
    Ok((url, arn))
}
