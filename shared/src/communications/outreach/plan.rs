//! What a run holds, decided from what was read, with no I/O: one communication per (target,
//! channel) the target has an address on and the user a connected account for, unless the
//! address is suppressed; every other pair asked for is skipped with its reason.

use std::collections::BTreeMap;

use super::super::model::{Channel, MAX_COMMUNICATIONS_PER_RUN, Skipped};
use crate::accounts::model::AccountType;
use crate::accounts::provider::Provider;
use crate::accounts::store::AccountItem;
use crate::error::{Error, FieldError};
use crate::targets::model::TargetView;

/// The channel an account can send on, if any.
pub fn channel_of(account: &AccountItem) -> Option<Channel> {
    match account.account_type {
        AccountType::Email => Some(Channel::Email),
        _ => Provider::of(account).map(Provider::channel),
    }
}

/// One communication a run will hold.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCommunication {
    /// The target, as read.
    pub target: TargetView,
    /// The channel it travels on.
    pub channel: Channel,
    /// The account that sends it.
    pub account_id: crate::ids::AccountId,
}

/// What a run will hold, and what it leaves out.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The communications, in target then channel order.
    pub communications: Vec<PlannedCommunication>,
    /// The pairs left out, with their reasons.
    pub skipped: Vec<Skipped>,
}

/// The accounts a request chose to send from (`account_ids`, with their positions): each must
/// be one of the user's connected accounts that sends on a channel, one per channel. Only those
/// send; a channel none of them covers has no sender. No I/O.
pub fn choose_senders(
    accounts: Vec<AccountItem>,
    chosen: &[(usize, crate::ids::AccountId)],
) -> Result<Vec<AccountItem>, Error> {
    let mut problems = Vec::new();
    let mut senders: Vec<AccountItem> = Vec::new();
    for (position, id) in chosen {
        let field = format!("account_ids[{position}]");
        let Some(account) = accounts.iter().find(|account| &account.account_id == id) else {
            problems.push(FieldError::new(field, "is not an account of yours"));
            continue;
        };
        let Some(channel) = channel_of(account) else {
            problems.push(FieldError::new(field, "does not send outreach"));
            continue;
        };
        if !account.connected {
            problems.push(FieldError::new(
                field,
                "is not connected (it needs reconnecting or verifying)",
            ));
        } else if senders
            .iter()
            .any(|sender| channel_of(sender) == Some(channel))
        {
            problems.push(FieldError::new(
                field,
                "is a second account for the same channel",
            ));
        } else {
            senders.push(account.clone());
        }
    }
    if problems.is_empty() {
        Ok(senders)
    } else {
        Err(Error::Unprocessable {
            code: "account_not_usable",
            message: "Some chosen accounts cannot send this run.".into(),
            details: problems,
        })
    }
}

/// Decides a run from what was read: one communication per (target, channel) the target has
/// an address on and the user a connected account for (the first by account id sends), unless
/// the address is suppressed; every other pair asked for is skipped with its reason. No I/O.
pub fn plan(
    targets: Vec<TargetView>,
    accounts: &[AccountItem],
    suppressed: &std::collections::HashMap<String, crate::communications::suppression::Suppression>,
    channels: Option<Vec<Channel>>,
) -> Result<Plan, Error> {
    let mut senders: BTreeMap<Channel, crate::ids::AccountId> = BTreeMap::new();
    for account in accounts {
        if account.connected
            && let Some(channel) = channel_of(account)
        {
            senders
                .entry(channel)
                .and_modify(|current| {
                    if account.account_id.as_str() < current.as_str() {
                        *current = account.account_id.clone();
                    }
                })
                .or_insert_with(|| account.account_id.clone());
        }
    }
    let explicit = channels.is_some();
    let channels = channels.unwrap_or_else(|| Channel::ALL.to_vec());
    let mut plan = Plan {
        communications: Vec::new(),
        skipped: Vec::new(),
    };
    for target in targets {
        for &channel in &channels {
            let skip = |reason: &str| Skipped {
                target_id: target.id,
                channel,
                reason: reason.to_owned(),
            };
            let suppression = (channel == Channel::Email)
                .then(|| {
                    target
                        .email
                        .as_ref()
                        .and_then(|email| suppressed.get(email))
                })
                .flatten();
            if let Some(suppression) = suppression {
                plan.skipped.push(skip(suppression.reason.as_str()));
            } else if channel.address(&target).is_none() {
                // By default a target is reached on the channels it has; asked-for channels it
                // lacks are reported.
                if explicit {
                    plan.skipped.push(skip("target_has_no_address"));
                }
            } else if let Some(account_id) = senders.get(&channel) {
                plan.communications.push(PlannedCommunication {
                    target: target.clone(),
                    channel,
                    account_id: account_id.clone(),
                });
            } else {
                plan.skipped.push(skip("no_connected_account"));
            }
        }
    }
    if plan.communications.is_empty() {
        return Err(Error::Unprocessable {
            code: "nothing_deliverable",
            message: format!(
                "No target can be reached on the requested channels with the connected accounts ({} pairs left out; the first {} are listed).",
                plan.skipped.len(),
                plan.skipped
                    .len()
                    .min(crate::communications::model::MAX_SKIPPED_LISTED)
            ),
            details: plan
                .skipped
                .iter()
                .take(crate::communications::model::MAX_SKIPPED_LISTED)
                .map(|s| {
                    FieldError::new(
                        format!("{}.{}", s.target_id, s.channel.as_str()),
                        s.reason.clone(),
                    )
                })
                .collect(),
        });
    }
    if plan.communications.len() > MAX_COMMUNICATIONS_PER_RUN {
        return Err(Error::LimitExceeded {
            code: "run_too_large",
            message: format!(
                "A run holds at most {MAX_COMMUNICATIONS_PER_RUN} communications; this one would hold {}.",
                plan.communications.len()
            ),
        });
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::communications::suppression::Suppression;
    use crate::ids::UserId;

    /// A target id that reads as its test name: `t1` is `00000000-0000-7000-8000-000000000001`.
    fn id_of(name: &str) -> crate::ids::TargetId {
        let number: u64 = name.trim_start_matches('t').parse().expect("tN");
        crate::ids::TargetId::parse(&format!("00000000-0000-7000-8000-{number:012}"))
            .expect("a target id")
    }

    fn name_of(id: &str) -> String {
        format!(
            "t{}",
            id.rsplit('-')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        )
    }

    fn target(id: &str, email: Option<&str>, twitter: Option<&str>) -> TargetView {
        TargetView {
            id: id_of(id),
            name: id.into(),
            email: email.map(str::to_owned),
            twitter_username: twitter.map(str::to_owned),
            instagram_username: None,
            notes: None,
            timezone: None,
            custom_fields: Default::default(),
            active: true,
            last_replied_at: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    fn account(
        id: &str,
        account_type: AccountType,
        provider: Option<&str>,
        connected: bool,
    ) -> AccountItem {
        AccountItem {
            user_id: UserId::from_verified_sub("alice".into()),
            account_id: crate::ids::AccountId::parse(id).unwrap(),
            account_type,
            provider: provider.map(str::to_owned),
            label: None,
            configuration: "{}".into(),
            secret_paths: Vec::new(),
            secrets: None,
            connected,
            status_reason: None,
            created_at: String::new(),
            updated_at: String::new(),
            expires_at: None,
            sender_address: None,
            refresh_lease_until: None,
            refresh_lease_id: None,
            last_checked_at: None,
            version: 1,
        }
    }

    fn pairs(plan: &Plan) -> Vec<(String, Channel, String)> {
        plan.communications
            .iter()
            .map(|c| {
                (
                    name_of(&c.target.id.to_string()),
                    c.channel,
                    c.account_id.to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn each_target_is_reached_on_the_channels_it_has_by_the_first_connected_account() {
        let accounts = [
            account("mail-b", AccountType::Email, None, true),
            account("mail-a", AccountType::Email, None, true),
            account("x", AccountType::Social, Some("twitter"), false),
        ];
        let targets = vec![
            target("t1", Some("ada@example.com"), Some("ada")),
            target("t2", None, Some("grace")),
        ];
        let plan = plan(targets, &accounts, &HashMap::new(), None).unwrap();
        assert_eq!(
            pairs(&plan),
            [("t1".into(), Channel::Email, "mail-a".into())]
        );
        let reasons: Vec<(String, &str)> = plan
            .skipped
            .iter()
            .map(|s| (name_of(&s.target_id.to_string()), s.reason.as_str()))
            .collect();
        // The disconnected X account sends nothing; Instagram is not asked for by default.
        assert_eq!(
            reasons,
            [
                ("t1".to_owned(), "no_connected_account"),
                ("t2".to_owned(), "no_connected_account")
            ]
        );
    }

    #[test]
    fn suppressed_addresses_and_missing_addresses_are_skipped_with_their_reason() {
        let accounts = [account("mail", AccountType::Email, None, true)];
        let suppressed = HashMap::from([(
            "ada@example.com".to_owned(),
            Suppression {
                address: "ada@example.com".into(),
                reason: crate::communications::suppression::SuppressionReason::Complained,
                suppressed_at: String::new(),
            },
        )]);
        let targets = vec![
            target("t1", Some("ada@example.com"), None),
            target("t2", Some("grace@example.com"), None),
            target("t3", None, Some("x_only")),
        ];
        let plan = plan(targets, &accounts, &suppressed, Some(vec![Channel::Email])).unwrap();
        assert_eq!(pairs(&plan), [("t2".into(), Channel::Email, "mail".into())]);
        let reasons: Vec<&str> = plan.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(reasons, ["complained", "target_has_no_address"]);
        let nothing = super::plan(
            vec![target("t1", Some("ada@example.com"), None)],
            &accounts,
            &suppressed,
            None,
        );
        assert!(matches!(
            nothing,
            Err(Error::Unprocessable {
                code: "nothing_deliverable",
                ..
            })
        ));
    }
}
