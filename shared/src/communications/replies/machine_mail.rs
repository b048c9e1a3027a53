//! The machine-mail rule: an inbound message a machine wrote (an auto-reply or a delivery
//! report) is never a reply.

use crate::platforms::mailbox::InboundMessage;

/// Mail a machine wrote: an auto-reply (RFC 3834 `Auto-Submitted` other than `no`; the
/// `X-Autoreply` / `X-Autorespond` of older responders; `Precedence: auto_reply|bulk|junk|list`),
/// or a delivery status notification (`multipart/report`, or from `mailer-daemon` /
/// `postmaster`).
pub fn written_by_a_machine(message: &InboundMessage) -> bool {
    let value = |name: &str| {
        message
            .header(name)
            .map(|value| value.trim().to_ascii_lowercase())
    };
    let auto_submitted = value("Auto-Submitted").is_some_and(|value| {
        value
            .split(';')
            .next()
            .is_some_and(|kind| kind.trim() != "no")
    });
    let responder =
        message.header("X-Autoreply").is_some() || message.header("X-Autorespond").is_some();
    let precedence = value("Precedence")
        .is_some_and(|value| matches!(value.as_str(), "auto_reply" | "bulk" | "junk" | "list"));
    let report = value("Content-Type").is_some_and(|value| value.starts_with("multipart/report"));
    let daemon = message.from_address().is_some_and(|from| {
        let local = from.split('@').next().unwrap_or_default();
        local == "mailer-daemon" || local == "postmaster"
    });
    auto_submitted || responder || precedence || report || daemon
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn message(headers: &[(&str, &str)]) -> InboundMessage {
        InboundMessage {
            id: "m".into(),
            thread_id: None,
            headers: headers
                .iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), (*value).to_owned()))
                .collect::<HashMap<_, _>>(),
            received_at: None,
        }
    }

    #[test]
    fn machines_mail_is_not_a_reply() {
        let person = [("From", "Grace <grace@acme.example>")];
        assert!(!written_by_a_machine(&message(&person)));
        for extra in [
            ("Auto-Submitted", "auto-replied"),
            ("Auto-Submitted", "auto-generated; owner-email=x@y"),
            ("X-Autoreply", "yes"),
            ("Precedence", "bulk"),
            ("Precedence", "auto_reply"),
            (
                "Content-Type",
                "multipart/report; report-type=delivery-status",
            ),
        ] {
            let mut headers = person.to_vec();
            headers.push(extra);
            assert!(written_by_a_machine(&message(&headers)), "{extra:?}");
        }
        let mut headers = person.to_vec();
        headers.push(("Auto-Submitted", "no"));
        assert!(!written_by_a_machine(&message(&headers)));
        assert!(written_by_a_machine(&message(&[(
            "From",
            "Mail Delivery Subsystem <MAILER-DAEMON@googlemail.com>"
        )])));
    }
}
