//! Which platform an account is on: a stored account's `provider`, read once as a
//! [`Provider`] (each platform's module is in `crate::platforms`). Social accounts on X or
//! Instagram, and email accounts that are Google or Microsoft mailboxes, are on a platform.

use super::model::AccountType;
use super::store::AccountItem;
pub use crate::platforms::Provider;

impl Provider {
    /// The platform of a social account or a mailbox; `None` for other account types and for
    /// providers this service has no client for.
    pub fn of_account(account_type: AccountType, provider: Option<&str>) -> Option<Self> {
        let provider = provider.and_then(Self::parse)?;
        match account_type {
            AccountType::Social if !provider.is_mailbox() => Some(provider),
            AccountType::Email if provider.is_mailbox() => Some(provider),
            _ => None,
        }
    }

    /// The platform of a stored account.
    pub fn of(account: &AccountItem) -> Option<Self> {
        Self::of_account(account.account_type, account.provider.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Channel;

    #[test]
    fn a_provider_is_parsed_once_with_its_channel_and_tools() {
        assert_eq!(Provider::parse("twitter"), Some(Provider::X));
        assert_eq!(Provider::parse("x"), Some(Provider::X));
        assert_eq!(Provider::parse("instagram"), Some(Provider::Instagram));
        assert_eq!(Provider::parse("linkedin"), None);
        assert_eq!(
            Provider::of_account(AccountType::Email, Some("x")),
            None,
            "only social accounts are on a platform"
        );
        assert_eq!(
            Provider::of_account(AccountType::Email, Some("google")),
            Some(Provider::Google)
        );
        assert_eq!(
            Provider::of_account(AccountType::Social, Some("google")),
            None
        );
        assert_eq!(Provider::X.channel(), Channel::Twitter);
        assert_eq!(Provider::Instagram.tools()[0].0, "send_instagram_reply");
    }
}
