//! The platforms this service talks to, a module each: where its API lives (overridable, so
//! tests and `make dev` point at a local stand-in), how its tokens are refreshed and what its
//! refusals mean, its refresh margin and the tools it offers agents. [`Provider`] dispatches to
//! them; nothing outside this module matches on a provider. Adding a platform: docs/architecture.md,
//! "Add a provider".

pub mod connect;
pub mod direct;
pub mod google;
pub mod instagram;
pub mod mailbox;
pub mod microsoft;
pub mod oauth;
pub mod tokens;
pub mod x;

use crate::channel::Channel;
use crate::config::ConfigSource;

/// A platform whose OAuth tokens this service holds: it connects accounts there (hosted
/// OAuth), refreshes their tokens and sends through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// X (Twitter), OAuth 2.0 user context.
    X,
    /// Instagram, long-lived Instagram User token.
    Instagram,
    /// Google (a Gmail mailbox), OAuth 2.0 with a refresh token.
    Google,
    /// Microsoft (an Outlook / Microsoft 365 mailbox), identity platform v2.0.
    Microsoft,
}

impl Provider {
    /// Every provider, in the order the API documents them.
    pub const ALL: [Provider; 4] = [Self::X, Self::Instagram, Self::Google, Self::Microsoft];

    /// The platform an account's `provider` names: `x` (or its old name `twitter`),
    /// `instagram`, `google` (or `gmail`), `microsoft`, as the API documents them.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|provider| provider.names().contains(&name))
    }

    /// Every `provider` value that names it (its name first, then older names still accepted):
    /// what a stored account may hold.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Self::X => &["x", "twitter"],
            Self::Instagram => &["instagram"],
            Self::Google => &["google", "gmail"],
            Self::Microsoft => &["microsoft"],
        }
    }

    /// The channel its accounts send on.
    pub fn channel(self) -> Channel {
        match self {
            Self::X => Channel::Twitter,
            Self::Instagram => Channel::Instagram,
            Self::Google | Self::Microsoft => Channel::Email,
        }
    }

    /// The platform that carries direct messages on `channel`; `None` for email.
    pub fn of_direct_channel(channel: Channel) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|provider| !provider.is_mailbox() && provider.channel() == channel)
    }

    /// Whether its accounts are mailboxes (email accounts) rather than social accounts.
    pub fn is_mailbox(self) -> bool {
        matches!(self, Self::Google | Self::Microsoft)
    }

    /// What an agent can do through one of its accounts, as `(name, description)`.
    pub fn tools(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::X => x::TOOLS,
            Self::Instagram => instagram::TOOLS,
            // A mailbox offers what every email account offers (`accounts::tools`).
            Self::Google | Self::Microsoft => &[],
        }
    }

    /// The sends a day the platform allows one of its mailboxes (`address` tells a Gmail
    /// consumer account from a Workspace one); `None` for a platform that is no mailbox.
    pub fn mailbox_daily_limit(self, address: Option<&str>) -> Option<u32> {
        match self {
            Self::Google => Some(google::daily_limit(address)),
            Self::Microsoft => Some(microsoft::DAILY_LIMIT),
            Self::X | Self::Instagram => None,
        }
    }

    /// A mailbox's send call for a whole RFC 5322 message (Gmail `messages.send`, into
    /// `thread_id` for a follow-up; Graph `sendMail`, which threads by the message's
    /// `In-Reply-To`); `None` for a platform that is no mailbox.
    pub fn mailbox_send_request(
        self,
        http: &reqwest::Client,
        apis: &PlatformApis,
        token: &str,
        mime: &str,
        thread_id: Option<&str>,
    ) -> Option<reqwest::RequestBuilder> {
        match self {
            Self::Google => Some(google::send_request(
                http,
                &apis.gmail,
                token,
                mime,
                thread_id,
            )),
            Self::Microsoft => Some(microsoft::send_mime_request(
                http,
                &apis.microsoft_graph,
                token,
                mime,
            )),
            Self::X | Self::Instagram => None,
        }
    }

    /// The sent message's and its thread's ids in a mailbox's answer to the send (Gmail names
    /// both; Graph answers 202 with neither).
    pub fn sent_ids(self, answer: &serde_json::Value) -> Option<(&str, &str)> {
        match self {
            Self::Google => google::sent_ids(answer),
            Self::X | Self::Instagram | Self::Microsoft => None,
        }
    }

    /// Whether a 403 of the platform means "slow down" rather than "not allowed" (Gmail's
    /// `rateLimitExceeded`).
    pub fn is_rate_limit_refusal(self, answer: &serde_json::Value) -> bool {
        match self {
            Self::Google => google::is_rate_limit(answer),
            Self::X | Self::Instagram | Self::Microsoft => false,
        }
    }

    /// How the platform tells what is new in a mailbox: Gmail's history or Graph's delta query;
    /// `None` for a platform that is no mailbox.
    pub fn mailbox_feed(self) -> Option<mailbox::MailboxFeed> {
        match self {
            Self::Google => Some(mailbox::MailboxFeed::GmailHistory),
            Self::Microsoft => Some(mailbox::MailboxFeed::GraphDelta),
            Self::X | Self::Instagram => None,
        }
    }

    /// Its name in logs and stored fields (`x`, `instagram`, `google`, `microsoft`).
    pub fn name(self) -> &'static str {
        self.names()[0]
    }

    /// Refresh when the token expires within this many seconds.
    pub fn refresh_margin_seconds(self) -> i64 {
        match self {
            Self::X => x::REFRESH_MARGIN_SECONDS,
            Self::Instagram => instagram::REFRESH_MARGIN_SECONDS,
            Self::Google => google::REFRESH_MARGIN_SECONDS,
            Self::Microsoft => microsoft::REFRESH_MARGIN_SECONDS,
        }
    }
}

/// Where the platforms' endpoints live: each defaults to the real one and is overridable (tests
/// and `make dev` point them at a local stand-in).
#[derive(Debug, Clone)]
pub struct PlatformApis {
    /// X API v2 base (`X_API_BASE_URL`), default `https://api.x.com`; its token endpoint and
    /// `/2/users/me` are under it.
    pub x: String,
    /// X's authorization page (`X_AUTHORIZE_URL`).
    pub x_authorize: String,
    /// Instagram Graph API base (`INSTAGRAM_API_BASE_URL`), default
    /// `https://graph.instagram.com/v21.0`.
    pub instagram: String,
    /// Instagram's authorization page (`INSTAGRAM_AUTHORIZE_URL`).
    pub instagram_authorize: String,
    /// Base of Instagram's code exchange (`INSTAGRAM_OAUTH_BASE_URL`).
    pub instagram_oauth: String,
    /// Google's authorization page (`GOOGLE_AUTHORIZE_URL`).
    pub google_authorize: String,
    /// Google's token endpoint (`GOOGLE_TOKEN_URL`).
    pub google_token: String,
    /// Gmail API base (`GMAIL_API_BASE_URL`).
    pub gmail: String,
    /// Microsoft identity platform base (`MICROSOFT_LOGIN_BASE_URL`).
    pub microsoft_login: String,
    /// Microsoft Graph base (`MICROSOFT_GRAPH_BASE_URL`).
    pub microsoft_graph: String,
}

impl PlatformApis {
    /// Reads each platform's variables, with the platforms' own defaults.
    pub fn from_source(source: &ConfigSource<'_>) -> Self {
        use crate::config::vars;
        let read = |name: &str, default: &str| {
            source
                .optional(name)
                .map(|url| url.trim_end_matches('/').to_owned())
                .unwrap_or_else(|| default.to_owned())
        };
        Self {
            x: read(vars::X_API_BASE_URL, x::DEFAULT_API_BASE_URL),
            x_authorize: read(vars::X_AUTHORIZE_URL, x::DEFAULT_AUTHORIZE_URL),
            instagram: read(
                vars::INSTAGRAM_API_BASE_URL,
                instagram::DEFAULT_API_BASE_URL,
            ),
            instagram_authorize: read(
                vars::INSTAGRAM_AUTHORIZE_URL,
                instagram::DEFAULT_AUTHORIZE_URL,
            ),
            instagram_oauth: read(
                vars::INSTAGRAM_OAUTH_BASE_URL,
                instagram::DEFAULT_OAUTH_BASE_URL,
            ),
            google_authorize: read(vars::GOOGLE_AUTHORIZE_URL, google::DEFAULT_AUTHORIZE_URL),
            google_token: read(vars::GOOGLE_TOKEN_URL, google::DEFAULT_TOKEN_URL),
            gmail: read(vars::GMAIL_API_BASE_URL, google::DEFAULT_GMAIL_API_BASE_URL),
            microsoft_login: read(
                vars::MICROSOFT_LOGIN_BASE_URL,
                microsoft::DEFAULT_LOGIN_BASE_URL,
            ),
            microsoft_graph: read(
                vars::MICROSOFT_GRAPH_BASE_URL,
                microsoft::DEFAULT_GRAPH_BASE_URL,
            ),
        }
    }
}
