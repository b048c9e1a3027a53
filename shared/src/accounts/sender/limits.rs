//! How much an email account may send, and from where: the daily cap (SES senders default to a
//! cautious 50; a mailbox defaults to, and never exceeds, its provider's own sending limit), and
//! the free-mail domains whose DMARC policies make mail from any other server bounce, so that
//! an address there can only send through its own mailbox. Sources: docs/deliverability.md,
//! "Free-mail senders" and docs/providers.md, "Gmail" and "Microsoft".

use serde_json::{Map, Value};

use super::DAILY_SEND_LIMIT;
use crate::error::FieldError;
use crate::platforms::Provider;

/// An SES sender's sends per UTC day when it sets none.
pub const DEFAULT_DAILY_SEND_LIMIT: u32 = 50;
/// Highest `daily_send_limit` of an SES sender (SES's production quotas start around here).
pub const MAX_DAILY_SEND_LIMIT: u32 = 10_000;

/// Domains of free-mail providers that publish a DMARC policy (`p=reject` or `p=quarantine`):
/// mail "from" them that their own servers did not send fails DMARC and bounces or lands in
/// spam. `gmx.*` is matched for every top-level domain.
pub const FREEMAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "msn.com",
    "yahoo.com",
    "ymail.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "aol.com",
    "proton.me",
    "protonmail.com",
    "gmx.*",
    "mail.com",
    "zoho.com",
    "yandex.com",
];

/// Whether `domain` is a free-mail provider's ([`FREEMAIL_DOMAINS`]).
pub fn is_freemail(domain: &str) -> bool {
    let domain = domain.to_ascii_lowercase();
    FREEMAIL_DOMAINS
        .iter()
        .any(|free| match free.strip_suffix(".*") {
            Some(stem) => domain
                .strip_prefix(stem)
                .is_some_and(|rest| rest.starts_with('.') && !rest[1..].contains('.')),
            None => domain == *free,
        })
}

/// The most a sender may send per UTC day: its provider's limit for a mailbox (Gmail tells a
/// consumer account from a Workspace one by its domain), SES's ceiling otherwise.
pub fn daily_send_ceiling(mailbox: Option<Provider>, address: Option<&str>) -> u32 {
    mailbox
        .and_then(|provider| provider.mailbox_daily_limit(address))
        .unwrap_or(MAX_DAILY_SEND_LIMIT)
}

/// An email account's sends per UTC day: its `daily_send_limit` (1 up to the ceiling of
/// [`daily_send_ceiling`]), or by default the mailbox's own limit, or
/// [`DEFAULT_DAILY_SEND_LIMIT`] for an SES sender. A user may lower a mailbox's cap, never raise
/// it past what the provider allows.
pub fn daily_send_limit(
    mailbox: Option<Provider>,
    configuration: &Map<String, Value>,
) -> Result<u32, FieldError> {
    let address = configuration
        .get(super::FROM_ADDRESS)
        .and_then(Value::as_str);
    let ceiling = daily_send_ceiling(mailbox, address);
    match configuration.get(DAILY_SEND_LIMIT) {
        None | Some(Value::Null) if mailbox.is_some() => Ok(ceiling),
        None | Some(Value::Null) => Ok(DEFAULT_DAILY_SEND_LIMIT),
        Some(value) => value
            .as_u64()
            .and_then(|limit| u32::try_from(limit).ok())
            .filter(|limit| (1..=ceiling).contains(limit))
            .ok_or_else(|| {
                FieldError::new(
                    format!("configuration.{DAILY_SEND_LIMIT}"),
                    format!("must be a whole number from 1 to {ceiling}"),
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_mailbox_defaults_to_its_providers_limit_and_may_only_lower_it() {
        let gmail = config(json!({"from_address": "ada@gmail.com"}));
        let workspace = config(json!({"from_address": "ada@acme.example"}));
        assert_eq!(daily_send_limit(Some(Provider::Google), &gmail), Ok(500));
        assert_eq!(
            daily_send_limit(Some(Provider::Google), &workspace),
            Ok(2_000)
        );
        assert_eq!(
            daily_send_limit(Some(Provider::Microsoft), &workspace),
            Ok(10_000)
        );
        let lowered = config(json!({"from_address": "ada@gmail.com", "daily_send_limit": 40}));
        assert_eq!(daily_send_limit(Some(Provider::Google), &lowered), Ok(40));
        let raised = config(json!({"from_address": "ada@gmail.com", "daily_send_limit": 501}));
        assert!(daily_send_limit(Some(Provider::Google), &raised).is_err());
        assert_eq!(
            daily_send_limit(None, &workspace),
            Ok(DEFAULT_DAILY_SEND_LIMIT)
        );
        for bad in [json!(0), json!(10_001), json!(2.5), json!("3"), json!(-1)] {
            let field = daily_send_limit(None, &config(json!({"daily_send_limit": bad})))
                .err()
                .map(|problem| problem.field);
            assert_eq!(field.as_deref(), Some("configuration.daily_send_limit"));
        }
    }

    #[test]
    fn free_mail_domains_are_recognised_in_any_case() {
        for free in [
            "gmail.com",
            "GMAIL.COM",
            "hotmail.com",
            "gmx.de",
            "gmx.net",
            "proton.me",
        ] {
            assert!(is_freemail(free), "{free}");
        }
        for own in [
            "acme.example",
            "gmail.com.evil.example",
            "gmx.co.evil.example",
            "mygmail.com",
        ] {
            assert!(!is_freemail(own), "{own}");
        }
    }
}
