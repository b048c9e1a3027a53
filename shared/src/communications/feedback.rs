//! What happened to sent email, as SES reports it: the configuration set's event destination
//! publishes `Delivery`, `Bounce`, `Complaint` and `Reject` events to SNS, SNS to the feedback
//! queue, and each event is matched to its communication by the SES message id kept at send
//! time. A permanent bounce or a complaint suppresses the address for the user; a transient
//! bounce changes nothing (SES retried it already). Each event type counts once per
//! communication, however often SNS delivers it.

use serde::Deserialize;

use super::model::{CommunicationStatus, RunCountChange};
use super::store::{CommunicationItem, RunStore};
use super::suppression::{SuppressionReason, SuppressionStore};
use crate::error::Error;

/// What one SES event says about a sent email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feedback {
    /// The recipient's mail server accepted it.
    Delivered,
    /// It bounced for good (including SES's own account-level suppression list,
    /// `OnAccountSuppressionList`): the addresses are suppressed.
    HardBounce(Vec<String>),
    /// It bounced for now (mailbox full, ...): SES has given up on this one message only.
    SoftBounce,
    /// The recipients reported it as spam: the addresses are suppressed.
    Complaint(Vec<String>),
    /// SES refused to send it (a virus in the content).
    Rejected,
    /// An event type outreach does not track (`Send`, `Open`, `Click`, ...).
    Ignored,
}

/// An SES event, identified by the message it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackEvent {
    /// SES's `MessageId` of the email.
    pub message_id: String,
    /// What it says.
    pub feedback: Feedback,
}

#[derive(Deserialize)]
struct SnsEnvelope {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Message")]
    message: String,
}

#[derive(Deserialize)]
struct SesEvent {
    // `eventType` from a configuration set's event destination; `notificationType` from the
    // older identity notifications, which carry the same fields.
    #[serde(rename = "eventType", alias = "notificationType")]
    event_type: String,
    mail: SesMail,
    #[serde(default)]
    bounce: Option<SesBounce>,
    #[serde(default)]
    complaint: Option<SesComplaint>,
}

#[derive(Deserialize)]
struct SesMail {
    #[serde(rename = "messageId")]
    message_id: String,
}

#[derive(Deserialize)]
struct SesBounce {
    #[serde(rename = "bounceType")]
    bounce_type: String,
    #[serde(rename = "bouncedRecipients", default)]
    recipients: Vec<SesRecipient>,
}

#[derive(Deserialize)]
struct SesComplaint {
    #[serde(rename = "complainedRecipients", default)]
    recipients: Vec<SesRecipient>,
}

#[derive(Deserialize)]
struct SesRecipient {
    #[serde(rename = "emailAddress")]
    email_address: String,
}

fn addresses(recipients: Vec<SesRecipient>) -> Vec<String> {
    recipients
        .into_iter()
        .map(|recipient| recipient.email_address.trim().to_lowercase())
        .collect()
}

/// Reads one queue message: the SES event JSON itself (raw message delivery) or wrapped in
/// SNS's notification envelope. `None` for anything else.
pub fn parse_event(body: &str) -> Option<FeedbackEvent> {
    let event: SesEvent = match serde_json::from_str::<SnsEnvelope>(body) {
        Ok(envelope) if envelope.kind == "Notification" => {
            serde_json::from_str(&envelope.message).ok()?
        }
        _ => serde_json::from_str(body).ok()?,
    };
    let feedback = match event.event_type.as_str() {
        "Delivery" => Feedback::Delivered,
        "Bounce" => {
            let bounce = event.bounce?;
            // `Undetermined` bounces are not proof the address is dead: treated as transient.
            if bounce.bounce_type == "Permanent" {
                Feedback::HardBounce(addresses(bounce.recipients))
            } else {
                Feedback::SoftBounce
            }
        }
        "Complaint" => Feedback::Complaint(addresses(event.complaint?.recipients)),
        "Reject" => Feedback::Rejected,
        _ => Feedback::Ignored,
    };
    Some(FeedbackEvent {
        message_id: event.mail.message_id,
        feedback,
    })
}

/// How one feedback event changes a communication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The event type, recorded so a duplicate counts once.
    pub kind: &'static str,
    /// The communication's new status.
    pub to: CommunicationStatus,
    /// Its new reason, if any.
    pub reason: Option<&'static str>,
    /// Changes to the run's counters.
    pub counters: RunCountChange,
}

/// Reason of a sent email SES then refused to deliver.
pub const REJECTED_BY_SES: &str = "rejected_by_ses";

fn rank(status: CommunicationStatus) -> u8 {
    match status {
        CommunicationStatus::Complained => 3,
        CommunicationStatus::Bounced => 2,
        CommunicationStatus::Delivered => 1,
        _ => 0,
    }
}

/// Decides what `feedback` does to a communication in `status` that has recorded the event
/// types `seen`. `None`: nothing (a duplicate, an event that changes nothing, or a
/// communication that was never sent). The status only moves up `sent` < `delivered` <
/// `bounced` < `complained` (events may arrive in any order); each count moves once.
pub fn transition(
    status: CommunicationStatus,
    seen: &[String],
    feedback: &Feedback,
) -> Option<Transition> {
    let sent = matches!(
        status,
        CommunicationStatus::Sent
            | CommunicationStatus::Delivered
            | CommunicationStatus::Bounced
            | CommunicationStatus::Complained
    );
    let (kind, reached, counter) = match feedback {
        Feedback::Delivered => (
            "Delivery",
            CommunicationStatus::Delivered,
            RunCountChange {
                delivered: 1,
                ..RunCountChange::default()
            },
        ),
        Feedback::HardBounce(_) => (
            "Bounce",
            CommunicationStatus::Bounced,
            RunCountChange {
                bounced: 1,
                ..RunCountChange::default()
            },
        ),
        Feedback::Complaint(_) => (
            "Complaint",
            CommunicationStatus::Complained,
            RunCountChange {
                complained: 1,
                ..RunCountChange::default()
            },
        ),
        Feedback::Rejected if status == CommunicationStatus::Sent => {
            return (!seen.iter().any(|kind| kind == "Reject")).then(|| Transition {
                kind: "Reject",
                to: CommunicationStatus::Failed,
                reason: Some(REJECTED_BY_SES),
                counters: RunCountChange {
                    sent: -1,
                    failed: 1,
                    ..RunCountChange::default()
                },
            });
        }
        Feedback::Rejected | Feedback::SoftBounce | Feedback::Ignored => return None,
    };
    if !sent || seen.iter().any(|seen| seen == kind) {
        return None;
    }
    let to = if rank(reached) > rank(status) {
        reached
    } else {
        status
    };
    Some(Transition {
        kind,
        to,
        reason: None,
        counters: counter,
    })
}

/// Records SES feedback on communications and the suppression list.
#[derive(Clone)]
pub struct EmailFeedback {
    runs: RunStore,
    suppressions: SuppressionStore,
}

/// Attempts at applying one event when other events of the same communication race it.
const APPLY_ATTEMPTS: usize = 5;

impl EmailFeedback {
    /// Over the runs store and the suppression list.
    pub fn new(runs: RunStore, suppressions: SuppressionStore) -> Self {
        Self { runs, suppressions }
    }

    /// Handles one queue message: `true` when done with (recorded, a duplicate, or about an
    /// email this service did not send), `false` when SQS must deliver it again.
    pub async fn handle_message(&self, body: Option<&str>) -> bool {
        let Some(event) = body.and_then(parse_event) else {
            // Never logged whole: it names recipients. It retries into the DLQ.
            tracing::error!(
                body_bytes = body.map_or(0, str::len),
                "undecodable feedback"
            );
            return false;
        };
        match self.record(&event).await {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(error = %crate::error::ErrorChain(&error), "feedback will be retried");
                false
            }
        }
    }

    /// Applies one event.
    pub async fn record(&self, event: &FeedbackEvent) -> Result<(), Error> {
        if event.feedback == Feedback::Ignored {
            return Ok(());
        }
        let Some(mut item) = self
            .runs
            .communication_by_provider_message(&event.message_id)
            .await?
        else {
            tracing::warn!("feedback about a message this service did not record");
            return Ok(());
        };
        // Suppression first: if the status update then fails, the retry suppresses again
        // (idempotent) rather than never.
        let suppression = match &event.feedback {
            Feedback::HardBounce(addresses) => Some((addresses, SuppressionReason::Bounced)),
            Feedback::Complaint(addresses) => Some((addresses, SuppressionReason::Complained)),
            _ => None,
        };
        if let Some((addresses, reason)) = suppression {
            self.suppress(&item, addresses, reason).await?;
        }
        for _ in 0..APPLY_ATTEMPTS {
            let Some(change) = transition(item.status, &item.feedback, &event.feedback) else {
                return Ok(());
            };
            if self
                .runs
                .apply_feedback(
                    &item,
                    change.kind,
                    change.to,
                    change.reason,
                    change.counters,
                )
                .await?
            {
                tracing::info!(run_id = %item.run_id, index = item.index, kind = change.kind, to = change.to.as_str(), "feedback recorded");
                return Ok(());
            }
            let Some(fresh) = self
                .runs
                .communication(&item.user_id, &item.run_id, item.index)
                .await?
            else {
                return Ok(());
            };
            item = fresh;
        }
        Err(Error::unavailable("feedback kept racing other updates"))
    }

    async fn suppress(
        &self,
        item: &CommunicationItem,
        addresses: &[String],
        reason: SuppressionReason,
    ) -> Result<(), Error> {
        let user = &item.user_id;
        // The event names the recipients SES tried; without any, the one this email went to.
        let recipient = item.recipient.email.as_deref().map(str::to_lowercase);
        let targets: Vec<&str> = if addresses.is_empty() {
            recipient.as_deref().into_iter().collect()
        } else {
            addresses.iter().map(String::as_str).collect()
        };
        for address in targets {
            self.suppressions.suppress(user, address, reason).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CommunicationStatus::*;

    fn seen(kinds: &[&str]) -> Vec<String> {
        kinds.iter().map(|kind| (*kind).to_owned()).collect()
    }

    #[test]
    fn the_status_only_moves_up_and_each_type_counts_once() {
        let hard = Feedback::HardBounce(vec!["a@example.com".into()]);
        let delivered = transition(Sent, &[], &Feedback::Delivered).expect("a change");
        assert_eq!(
            (delivered.to, delivered.counters),
            (
                Delivered,
                RunCountChange {
                    delivered: 1,
                    ..RunCountChange::default()
                }
            )
        );
        assert_eq!(
            transition(Delivered, &seen(&["Delivery"]), &Feedback::Delivered),
            None
        );
        assert_eq!(transition(Sent, &[], &hard).map(|t| t.to), Some(Bounced));
        // A complaint that arrives before its delivery keeps `complained`.
        let late_delivery =
            transition(Complained, &seen(&["Complaint"]), &Feedback::Delivered).expect("counted");
        assert_eq!(
            (late_delivery.to, late_delivery.kind),
            (Complained, "Delivery")
        );
        assert_eq!(
            transition(
                Delivered,
                &seen(&["Delivery"]),
                &Feedback::Complaint(vec![])
            )
            .map(|t| t.to),
            Some(Complained)
        );
        assert_eq!(transition(Sent, &[], &Feedback::SoftBounce), None);
        assert_eq!(transition(Sent, &[], &Feedback::Ignored), None);
    }

    #[test]
    fn feedback_about_unsent_communications_changes_nothing() {
        for status in [Queued, Sending, Failed, Cancelled, Scheduled] {
            assert_eq!(
                transition(status, &[], &Feedback::Delivered),
                None,
                "{status:?}"
            );
        }
        let rejected = transition(Sent, &[], &Feedback::Rejected).expect("a change");
        assert_eq!(
            (rejected.to, rejected.counters),
            (
                Failed,
                RunCountChange {
                    sent: -1,
                    failed: 1,
                    ..RunCountChange::default()
                }
            )
        );
        assert_eq!(transition(Delivered, &[], &Feedback::Rejected), None);
    }

    #[test]
    fn events_are_read_raw_or_inside_the_sns_envelope() {
        let raw = r#"{"eventType":"Bounce","mail":{"messageId":"m-1","destination":["A@Example.com"]},
            "bounce":{"bounceType":"Permanent","bounceSubType":"OnAccountSuppressionList",
            "bouncedRecipients":[{"emailAddress":"A@Example.com"}]}}"#;
        let expected = FeedbackEvent {
            message_id: "m-1".into(),
            feedback: Feedback::HardBounce(vec!["a@example.com".into()]),
        };
        assert_eq!(parse_event(raw), Some(expected.clone()));
        let wrapped = serde_json::json!({"Type": "Notification", "Message": raw}).to_string();
        assert_eq!(parse_event(&wrapped), Some(expected));
        let transient = raw.replace("Permanent", "Transient");
        assert_eq!(
            parse_event(&transient).map(|e| e.feedback),
            Some(Feedback::SoftBounce)
        );
        let open = r#"{"eventType":"Open","mail":{"messageId":"m-2"}}"#;
        assert_eq!(
            parse_event(open).map(|e| e.feedback),
            Some(Feedback::Ignored)
        );
        assert_eq!(parse_event("not json"), None);
        assert_eq!(
            parse_event(r#"{"eventType":"Bounce","mail":{"messageId":"m"}}"#),
            None
        );
    }
}
