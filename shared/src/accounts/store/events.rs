//! The webhook events of accounts: `account.connected`, `account.reauth_required` and
//! `account.recovered`, published by the store after a write that changed the account's state
//! committed. Each is derived from the state before and after the write, so a write that
//! leaves the state as it was (a second failed refresh, a label edit) tells nobody.

use serde_json::json;

use super::{AccountItem, AccountStore, REAUTH_REQUIRED};
use crate::webhooks::{EventType, WebhookEvent};

/// An account's state as events see it: connected, and why not.
pub type AccountState<'a> = (bool, Option<&'a str>);

/// The event a write from `before` (`None`: the account is new) to `after` makes, if any.
pub fn account_transition(
    before: Option<AccountState<'_>>,
    after: AccountState<'_>,
) -> Option<EventType> {
    let needs_reauth =
        |(connected, reason): AccountState<'_>| !connected && reason == Some(REAUTH_REQUIRED);
    match before {
        Some(before) if after.0 && needs_reauth(before) => Some(EventType::AccountRecovered),
        Some(before) if after.0 && !before.0 => Some(EventType::AccountConnected),
        None if after.0 => Some(EventType::AccountConnected),
        _ if needs_reauth(after) && !before.is_some_and(needs_reauth) => {
            Some(EventType::AccountReauthRequired)
        }
        _ => None,
    }
}

impl AccountStore {
    /// Publishes the event of a committed write of `item` from `before` to `after`, stored as
    /// version `version` (which makes the event's id).
    pub(crate) async fn announce(
        &self,
        item: &AccountItem,
        before: Option<AccountState<'_>>,
        after: AccountState<'_>,
        version: u64,
    ) {
        let Some(event_type) = account_transition(before, after) else {
            return;
        };
        let data = json!({
            "account_id": item.account_id.as_str(),
            "account_type": item.account_type,
            "provider": item.provider,
            "connected": after.0,
            "status_reason": after.1,
        });
        let occurrence = format!("{}\n{version}", item.account_id.as_str());
        self.events
            .publish(WebhookEvent::new(
                &item.user_id,
                event_type,
                &occurrence,
                data,
                &self.clock,
            ))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAUTH: AccountState<'static> = (false, Some(REAUTH_REQUIRED));
    const CONNECTED: AccountState<'static> = (true, None);
    const PENDING: AccountState<'static> = (false, Some("sender_pending_verification"));

    #[test]
    fn each_state_change_makes_its_event_once() {
        assert_eq!(
            account_transition(None, CONNECTED),
            Some(EventType::AccountConnected)
        );
        assert_eq!(account_transition(None, PENDING), None);
        assert_eq!(
            account_transition(Some(PENDING), CONNECTED),
            Some(EventType::AccountConnected)
        );
        assert_eq!(account_transition(Some(CONNECTED), CONNECTED), None);
        assert_eq!(
            account_transition(Some(CONNECTED), REAUTH),
            Some(EventType::AccountReauthRequired)
        );
        // Once per transition: still needing reauth is no news.
        assert_eq!(account_transition(Some(REAUTH), REAUTH), None);
        assert_eq!(
            account_transition(Some(REAUTH), CONNECTED),
            Some(EventType::AccountRecovered)
        );
        assert_eq!(account_transition(Some(CONNECTED), PENDING), None);
    }
}
