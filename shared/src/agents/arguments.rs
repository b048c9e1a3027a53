//! The tools' own argument and result shapes. Where a tool does what a route does, it takes the
//! route's own type instead (`add_target` takes [`crate::targets::model::CreateTargetRequest`],
//! `start_outreach` the initiate body).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::model::{AccountType, AccountView};
use crate::channel::Channel;
use crate::communications::model::CommunicationStatus;

/// Arguments of `list_targets`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTargetsArguments {
    /// Page size, 1-100 (default 50).
    #[serde(default)]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<crate::paging::PageLimit>,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// Arguments of a tool that takes nothing.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArguments {}

/// Arguments of `test_account`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountArguments {
    /// The account's id (from `list_accounts`).
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    pub account_id: String,
}

/// Arguments of `get_run` and `cancel_run`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunArguments {
    /// The run's id (from `start_outreach` or a send tool).
    #[schema(format = Uuid)]
    pub run_id: String,
}

/// Arguments of `send_email`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendEmailArguments {
    /// The email account that sends it.
    pub account_id: String,
    /// The person to write to: one of the user's targets (`list_targets`, `add_target`).
    #[schema(format = Uuid)]
    pub target_id: String,
    /// Subject (default `Hello {{name}}`); placeholders as in outreach.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub subject: Option<String>,
    /// The text, 1-10,000 characters; `{{name}}`, `{{first_name}}` and the target's other fields
    /// are filled in.
    #[schema(min_length = 1, max_length = 10000)]
    pub body: String,
    /// Your id for this send: calling again with the same key and arguments answers the same
    /// communication and sends nothing twice. 1-255 visible ASCII characters.
    #[schema(min_length = 1, max_length = 255, pattern = "^[!-~]{1,255}$")]
    pub idempotency_key: String,
}

/// Arguments of `send_x_dm` and `send_instagram_reply`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageArguments {
    /// The account that sends it.
    pub account_id: String,
    /// The person to write to: one of the user's targets with a handle on this platform.
    #[schema(format = Uuid)]
    pub target_id: String,
    /// The message, 1-10,000 characters; placeholders as in outreach.
    #[schema(min_length = 1, max_length = 10000)]
    pub text: String,
    /// Your id for this send: calling again with the same key and arguments answers the same
    /// communication and sends nothing twice. 1-255 visible ASCII characters.
    #[schema(min_length = 1, max_length = 255, pattern = "^[!-~]{1,255}$")]
    pub idempotency_key: String,
}

/// Result of a send tool: the one communication it queued (the worker sends it; `get_run`
/// follows it).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SendResult {
    /// The communication (`get_run` lists it under this id).
    pub communication_id: String,
    /// The run that holds it.
    pub run_id: String,
    /// The person.
    pub target_id: String,
    /// The channel it travels on.
    pub channel: Channel,
    /// The account that sends it.
    pub account_id: String,
    /// Its status now: `queued` until the worker sends it (within seconds), then `sent` or
    /// `failed` with a reason.
    pub status: CommunicationStatus,
}

/// One account as an agent sees it: no configuration, so nothing secret, masked or not.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccountSummary {
    /// The account's id.
    pub account_id: String,
    /// `calendar`, `crm`, `email` or `social`.
    pub account_type: AccountType,
    /// Who provides it (`google`, `microsoft`, `x`, `instagram`, …).
    pub provider: Option<String>,
    /// The user's name for it.
    pub label: Option<String>,
    /// Whether it works now.
    pub connected: bool,
    /// Why it does not (`reauth_required`: the user must connect it again).
    pub status_reason: Option<String>,
    /// The tools it backs (empty when it is not connected).
    pub tools: Vec<String>,
}

impl AccountSummary {
    /// The summary of an account, with the names of the tools it backs.
    pub fn of(account: &AccountView, tools: Vec<String>) -> Self {
        Self {
            account_id: account.account_id.clone(),
            account_type: account.account_type,
            provider: account.provider.clone(),
            label: account.label.clone(),
            connected: account.connected,
            status_reason: account.status_reason.clone(),
            tools,
        }
    }
}

/// Result of `list_accounts`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccountSummaryList {
    /// The accounts, by id.
    pub accounts: Vec<AccountSummary>,
}
