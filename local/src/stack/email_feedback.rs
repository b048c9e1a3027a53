//! The SES feedback path of the stack: SNS topics, their SQS subscriptions and SES
//! configuration sets.

use std::collections::HashMap;

use aws_config::SdkConfig;
use serde_yaml::Value;

use super::{StackError, created_or_retried};
use crate::template::{Bindings, Resolved, Template, property_text};

/// The SES feedback path: topics, their SQS subscriptions (raw delivery as the template
/// says) and the SES configuration sets. A topic's `!Ref` is its ARN, a configuration set's its
/// name. moto keeps no SES v2 event destinations and never publishes SES events, so the
/// `AWS::SES::ConfigurationSetEventDestination` is not created: tests publish SES-shaped
/// events to the topic, as SES would (docs/deliverability.md).
pub(super) async fn create_email_feedback(
    sdk: &SdkConfig,
    name: &str,
    template: &Template,
    bindings: &mut Bindings,
    physical: &mut HashMap<String, String>,
) -> Result<(), StackError> {
    let sns = aws_sdk_sns::Client::new(sdk);
    for (logical, _) in template.resources_of_type("AWS::SNS::Topic") {
        let topic = sns
            .create_topic()
            .name(format!("{name}-{logical}"))
            .send()
            .await?;
        let arn = topic.topic_arn.ok_or("CreateTopic returned no ARN")?;
        bindings.bind_ref(&logical, Resolved::Text(arn.clone()));
        bindings.bind_attribute(&logical, "TopicArn", arn.clone());
        physical.insert(logical, arn);
    }
    for (_, resource) in template.resources_of_type("AWS::SNS::Subscription") {
        let topic = property_text(resource, "TopicArn", bindings)?
            .ok_or("a subscription has no TopicArn")?;
        let protocol = property_text(resource, "Protocol", bindings)?
            .ok_or("a subscription has no Protocol")?;
        let endpoint = property_text(resource, "Endpoint", bindings)?
            .ok_or("a subscription has no Endpoint")?;
        let raw = resource
            .get("Properties")
            .and_then(|properties| properties.get("RawMessageDelivery"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        sns.subscribe()
            .topic_arn(topic)
            .protocol(protocol)
            .endpoint(endpoint)
            .attributes("RawMessageDelivery", raw.to_string())
            .send()
            .await?;
    }
    let ses = aws_sdk_sesv2::Client::new(sdk);
    for (logical, resource) in template.resources_of_type("AWS::SES::ConfigurationSet") {
        let set = property_text(resource, "Name", bindings)?
            .unwrap_or_else(|| format!("{name}-{logical}"));
        let created = ses
            .create_configuration_set()
            .configuration_set_name(&set)
            .send()
            .await;
        // SES v2 says AlreadyExistsException; moto answers with SES v1's name.
        created_or_retried(
            created,
            &[
                "AlreadyExistsException",
                "ConfigurationSetAlreadyExistsException",
            ],
        )?;
        bindings.bind_ref(&logical, Resolved::Text(set.clone()));
        physical.insert(logical, set);
    }
    Ok(())
}
