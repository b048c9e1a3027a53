//! Business metrics as CloudWatch embedded metric format (EMF): one JSON line per event on
//! standard output, which CloudWatch Logs turns into metrics with no API call from the function
//! (the format: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>).
//! Namespace `PipeWise`; each metric a count, with the dimensions that say what it counts.

use std::sync::Mutex;

use serde_json::{Map, Value, json};

/// The metrics' CloudWatch namespace.
pub const NAMESPACE: &str = "PipeWise";

/// One thing worth counting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusinessMetric<'a> {
    /// A communication went out (`Channel`).
    Sent {
        /// `email`, `twitter` or `instagram`.
        channel: &'a str,
    },
    /// A communication failed (`Channel`, `Reason`: the stored reason).
    Failed {
        /// The channel.
        channel: &'a str,
        /// Why (`token_revoked`, `suppressed`, …).
        reason: &'a str,
    },
    /// A person replied to an outreach message.
    Replied,
    /// An account's tokens were refreshed (`Provider`).
    TokenRefreshed {
        /// `x`, `instagram`, `google`, `microsoft`.
        provider: &'a str,
    },
    /// An account's grant is gone: the user must connect it again (`Provider`).
    ReauthRequired {
        /// The provider.
        provider: &'a str,
    },
    /// A webhook event was given up on after its last retry (no dimension: one alarm watches
    /// the total; the log line beside it names the endpoint and event).
    WebhookFailed,
    /// An event could not be put on the webhook queue (SQS refused it after the SDK's
    /// retries): no endpoint will get it.
    WebhookEventDropped,
}

impl BusinessMetric<'_> {
    fn name_and_dimensions(&self) -> (&'static str, Vec<(&'static str, &str)>) {
        match self {
            Self::Sent { channel } => ("Sent", vec![("Channel", channel)]),
            Self::Failed { channel, reason } => {
                ("Failed", vec![("Channel", channel), ("Reason", reason)])
            }
            Self::Replied => ("Replied", Vec::new()),
            Self::TokenRefreshed { provider } => ("TokenRefreshed", vec![("Provider", provider)]),
            Self::ReauthRequired { provider } => ("ReauthRequired", vec![("Provider", provider)]),
            Self::WebhookFailed => ("WebhookFailed", Vec::new()),
            Self::WebhookEventDropped => ("WebhookEventDropped", Vec::new()),
        }
    }

    /// The EMF document of one occurrence at `timestamp_millis`.
    pub fn document(&self, timestamp_millis: i64) -> Value {
        let (name, dimensions) = self.name_and_dimensions();
        let keys: Vec<&str> = dimensions.iter().map(|(key, _)| *key).collect();
        let mut document = Map::new();
        document.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_millis,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [keys],
                    "Metrics": [{"Name": name, "Unit": "Count"}],
                }],
            }),
        );
        for (key, value) in dimensions {
            document.insert(key.into(), Value::String(value.to_owned()));
        }
        document.insert(name.into(), json!(1));
        Value::Object(document)
    }
}

/// Lines recorded instead of printed, while a test asks for them.
static RECORDED: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// Counts one occurrence: one EMF line on standard output.
pub fn record(metric: BusinessMetric<'_>) {
    let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let line = metric
        .document(i64::try_from(millis).unwrap_or_default())
        .to_string();
    if let Ok(mut recorded) = RECORDED.lock()
        && let Some(lines) = recorded.as_mut()
    {
        lines.push(line);
        return;
    }
    println!("{line}");
}

/// From now on, keeps the lines in memory (for tests) instead of printing them.
pub fn start_recording() {
    if let Ok(mut recorded) = RECORDED.lock() {
        recorded.get_or_insert_with(Vec::new);
    }
}

/// The lines kept since [`start_recording`], as JSON.
pub fn recorded() -> Vec<Value> {
    RECORDED
        .lock()
        .ok()
        .and_then(|recorded| recorded.clone())
        .unwrap_or_default()
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_an_emf_document_with_its_dimensions() {
        let document = BusinessMetric::Failed {
            channel: "email",
            reason: "token_revoked",
        }
        .document(1_700_000_000_000);
        assert_eq!(
            document,
            json!({
                "_aws": {"Timestamp": 1_700_000_000_000_i64, "CloudWatchMetrics": [{
                    "Namespace": "PipeWise",
                    "Dimensions": [["Channel", "Reason"]],
                    "Metrics": [{"Name": "Failed", "Unit": "Count"}]}]},
                "Channel": "email",
                "Reason": "token_revoked",
                "Failed": 1
            })
        );
        let replied = BusinessMetric::Replied.document(0);
        assert_eq!(
            replied["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[]])
        );
        assert_eq!(replied["Replied"], 1);
    }
}
