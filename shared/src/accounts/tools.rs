//! What an agent can do with a user's connected accounts (`GET /api/user/integrations/tools`).

use serde::Serialize;
use utoipa::ToSchema;

use super::model::{AccountType, AccountView};
use super::provider::Provider;

/// One capability an agent may use, through one connected account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Tool {
    /// Stable tool name, e.g. `send_email`.
    pub name: &'static str,
    /// What the tool does.
    pub description: &'static str,
    /// The account that backs it (several accounts of one kind give several entries).
    pub account_id: String,
    /// The account's type.
    pub account_type: AccountType,
    /// The account's provider, when known.
    pub provider: Option<String>,
    /// The user's name for the account, to tell two of one kind apart.
    pub label: Option<String>,
}

/// Answer of `GET /api/user/integrations/tools`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolList {
    /// The tools, by account id then tool name.
    pub tools: Vec<Tool>,
}

/// The tools of one account type and provider, as `(name, description)`.
pub fn tools_for(
    account_type: AccountType,
    provider: Option<&str>,
) -> &'static [(&'static str, &'static str)] {
    match (account_type, provider) {
        (AccountType::Email, _) => &[("send_email", "Send an email from this account.")],
        (AccountType::Calendar, _) => &[
            ("list_calendar_events", "List events of this calendar."),
            ("create_calendar_event", "Create an event in this calendar."),
        ],
        (AccountType::Crm, _) => &[
            ("search_crm_contacts", "Search contacts in this CRM."),
            (
                "log_crm_activity",
                "Record an activity against a CRM contact.",
            ),
        ],
        // A social account of a provider we have no client for offers nothing to call.
        (AccountType::Social, provider) => provider
            .and_then(Provider::parse)
            .map_or(&[], Provider::tools),
    }
}

/// The tools offered by the connected ones among `accounts`.
pub fn tools(accounts: &[AccountView]) -> ToolList {
    let tools = accounts
        .iter()
        .filter(|account| account.connected)
        .flat_map(|account| {
            tools_for(account.account_type, account.provider.as_deref())
                .iter()
                .map(|(name, description)| Tool {
                    name,
                    description,
                    account_id: account.account_id.clone(),
                    account_type: account.account_type,
                    provider: account.provider.clone(),
                    label: account.label.clone(),
                })
        })
        .collect();
    ToolList { tools }
}
