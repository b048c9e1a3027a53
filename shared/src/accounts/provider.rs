//! The platforms a social account can be on, parsed once from the account's `provider`: each
//! knows the channel it sends on, the tools it offers agents, and how early its tokens are
//! refreshed. Adding a platform starts with a variant here (docs/architecture.md, "Add a
//! provider").

use super::model::AccountType;
use super::store::AccountItem;
use crate::channel::Channel;

/// A social platform this service sends on and refreshes tokens for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// X (Twitter), OAuth 2.0 user context.
    X,
    /// Instagram, long-lived Instagram User token.
    Instagram,
}

impl Provider {
    /// The platform an account's `provider` names: `x` (or its old name `twitter`) or
    /// `instagram`, as the API documents them.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "x" | "twitter" => Some(Self::X),
            "instagram" => Some(Self::Instagram),
            _ => None,
        }
    }

    /// The platform of a social account; `None` for other account types and for providers
    /// this service has no client for.
    pub fn of_account(account_type: AccountType, provider: Option<&str>) -> Option<Self> {
        match account_type {
            AccountType::Social => provider.and_then(Self::parse),
            _ => None,
        }
    }

    /// The platform of a stored account.
    pub fn of(account: &AccountItem) -> Option<Self> {
        Self::of_account(account.account_type, account.provider.as_deref())
    }

    /// The channel its accounts send on.
    pub fn channel(self) -> Channel {
        match self {
            Self::X => Channel::Twitter,
            Self::Instagram => Channel::Instagram,
        }
    }

    /// What an agent can do through one of its accounts, as `(name, description)`.
    pub fn tools(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::X => &[("send_twitter_dm", "Send a direct message on X (Twitter).")],
            Self::Instagram => &[(
                "send_instagram_dm",
                "Reply on Instagram to a person who messaged the business in the last 24 hours (Instagram allows no cold messages; others fail with instagram_window_closed).",
            )],
        }
    }

    /// Its name in logs and stored fields (`x`, `instagram`).
    pub fn name(self) -> &'static str {
        match self {
            Self::X => "x",
            Self::Instagram => "instagram",
        }
    }

    /// Refresh when the token expires within this many seconds.
    pub fn refresh_margin_seconds(self) -> i64 {
        match self {
            Self::X => 5 * 60,
            Self::Instagram => 7 * 24 * 3600,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(Provider::X.channel(), Channel::Twitter);
        assert_eq!(Provider::Instagram.tools()[0].0, "send_instagram_dm");
    }
}
