//! Which tools an agent is offered and how each is described: the fixed ones every user has,
//! and one send tool per kind of connected, healthy account. Which accounts back which send
//! tool is [`crate::accounts::tools`]'s answer, the same one `GET /integrations/tools` gives.

use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use super::arguments::{
    AccountArguments, AccountSummaryList, ListTargetsArguments, NoArguments, RunArguments,
    SendEmailArguments, SendMessageArguments, SendResult,
};
use super::schema::{json_schema, with_property};
use crate::accounts::connect::ConnectionTest;
use crate::accounts::tools::Tool;
use crate::channel::Channel;
use crate::communications::model::{InitiateRequest, InitiateResponse, RunView};
use crate::targets::model::{CreateTargetRequest, TargetPage, TargetView};

/// What a tool's annotations tell the client about it (all hints, as MCP defines them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolHints {
    /// It changes nothing.
    pub read_only: bool,
    /// It may undo or end something (only meaningful when not read-only).
    pub destructive: bool,
    /// Calling it again with the same arguments changes nothing more.
    pub idempotent: bool,
    /// It reaches outside PipeWise (a person, a platform).
    pub open_world: bool,
}

/// Reads only.
const READ: ToolHints = ToolHints {
    read_only: true,
    destructive: false,
    idempotent: true,
    open_world: false,
};
/// Adds something each time it is called.
const CREATE: ToolHints = ToolHints {
    read_only: false,
    destructive: false,
    idempotent: false,
    open_world: false,
};
/// Reaches a platform or a person; repeating it (same key) changes nothing more.
const REACH_OUT: ToolHints = ToolHints {
    read_only: false,
    destructive: false,
    idempotent: true,
    open_world: true,
};
/// Ends something; repeating it changes nothing more.
const END: ToolHints = ToolHints {
    read_only: false,
    destructive: true,
    idempotent: true,
    open_world: false,
};

/// One tool as `tools/list` describes it.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    /// Its name, e.g. `send_email`.
    pub name: &'static str,
    /// A short title for people.
    pub title: &'static str,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of its arguments.
    pub input_schema: Map<String, Value>,
    /// JSON Schema of its `structuredContent`.
    pub output_schema: Map<String, Value>,
    /// Its annotations.
    pub hints: ToolHints,
}

/// The send tools: each sends one communication on its channel through one account.
pub const SEND_TOOLS: [(&str, Channel); 3] = [
    ("send_email", Channel::Email),
    ("send_x_dm", Channel::Twitter),
    ("send_instagram_reply", Channel::Instagram),
];

/// The channel a send tool sends on; `None` for every other name.
pub fn send_channel(name: &str) -> Option<Channel> {
    SEND_TOOLS
        .iter()
        .find(|(tool, _)| *tool == name)
        .map(|(_, channel)| *channel)
}

static FIXED_TOOLS: LazyLock<Vec<ToolSpec>> = LazyLock::new(fixed_tools);

fn fixed_tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "list_targets",
            title: "List targets",
            description: "The people the user wants to reach (active targets), newest first, a page at a time.".into(),
            input_schema: json_schema::<ListTargetsArguments>(),
            output_schema: json_schema::<TargetPage>(),
            hints: READ,
        },
        ToolSpec {
            name: "add_target",
            title: "Add a target",
            description: "Adds a person to reach: a name and at least one of email, X handle or Instagram username. An email already on an active target is refused (`target_exists`).".into(),
            input_schema: json_schema::<CreateTargetRequest>(),
            output_schema: json_schema::<TargetView>(),
            hints: CREATE,
        },
        ToolSpec {
            name: "list_accounts",
            title: "List accounts",
            description: "The user's connected accounts (email, X, Instagram, …): which work, which need reconnecting, and the tools each backs. No credentials.".into(),
            input_schema: json_schema::<NoArguments>(),
            output_schema: json_schema::<AccountSummaryList>(),
            hints: READ,
        },
        ToolSpec {
            name: "test_account",
            title: "Check an account",
            description: "Asks the account's provider whether it still works and who it is (refreshing its token when due); the result is stored on the account.".into(),
            input_schema: json_schema::<AccountArguments>(),
            output_schema: json_schema::<ConnectionTest>(),
            hints: REACH_OUT,
        },
        ToolSpec {
            name: "start_outreach",
            title: "Start outreach",
            description: "Sends a message (or a sequence: `steps` with follow-ups that stop when the person replies) to targets on every channel they have and the user has a connected account for (or the given `target_ids` and `channels`), inside an optional `schedule` window, skipping unsubscribed, bounced and complained addresses. Placeholders: {{name}}, {{first_name}}, {{email}}, {{twitter_username}}, {{instagram_username}}, any custom field, with fallbacks ({{company | default: \"your team\"}}). The same `idempotency_key` and arguments answer the same run.".into(),
            input_schema: with_property(
                json_schema::<InitiateRequest>(),
                "idempotency_key",
                idempotency_key_schema(),
                true,
            ),
            output_schema: json_schema::<InitiateResponse>(),
            hints: REACH_OUT,
        },
        ToolSpec {
            name: "get_run",
            title: "Get a run",
            description: "A run's status, counts and each communication's outcome (queued, sent, failed, replied, …).".into(),
            input_schema: json_schema::<RunArguments>(),
            output_schema: json_schema::<RunView>(),
            hints: READ,
        },
        ToolSpec {
            name: "cancel_run",
            title: "Cancel a run",
            description: "Cancels the run's communications that are not sent yet; sent ones stay sent.".into(),
            input_schema: json_schema::<RunArguments>(),
            output_schema: json_schema::<RunView>(),
            hints: END,
        },
    ]
}

fn idempotency_key_schema() -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": "^[!-~]{1,255}$",
        "description": "Your id for this request: the same key and arguments answer the same run and send nothing twice. 1-255 visible ASCII characters."
    })
}

/// The tools offered to a user whose accounts offer `account_tools`: the fixed ones, then each
/// send tool that at least one connected account backs, its `account_id` limited to those.
pub fn catalog(account_tools: &[Tool]) -> Vec<ToolSpec> {
    let mut specs = FIXED_TOOLS.clone();
    for (name, channel) in SEND_TOOLS {
        let backing: Vec<&Tool> = account_tools
            .iter()
            .filter(|tool| tool.name == name)
            .collect();
        if let Some(first) = backing.first() {
            specs.push(send_tool(name, channel, first.description, &backing));
        }
    }
    specs
}

fn send_tool(name: &'static str, channel: Channel, what: &str, backing: &[&Tool]) -> ToolSpec {
    let (title, mut input_schema) = match channel {
        Channel::Email => ("Send an email", json_schema::<SendEmailArguments>()),
        Channel::Twitter => (
            "Send an X direct message",
            json_schema::<SendMessageArguments>(),
        ),
        Channel::Instagram => ("Reply on Instagram", json_schema::<SendMessageArguments>()),
    };
    let ids: Vec<Value> = backing
        .iter()
        .map(|tool| Value::String(tool.account_id.clone()))
        .collect();
    if let Some(Value::Object(properties)) = input_schema.get_mut("properties") {
        properties.insert(
            "account_id".into(),
            json!({"type": "string", "enum": ids, "description": "The account that sends it (from list_accounts)."}),
        );
    }
    let accounts: Vec<String> = backing
        .iter()
        .map(|tool| match &tool.label {
            Some(label) => format!("`{}` ({label})", tool.account_id),
            None => format!("`{}`", tool.account_id),
        })
        .collect();
    ToolSpec {
        name,
        title,
        description: format!(
            "{what} One communication to one target, through PipeWise's outreach: unsubscribed, bounced and complained addresses are refused, daily caps and the unsubscribe link apply, and the same `idempotency_key` never sends twice. Accounts: {}.",
            accounts.join(", ")
        ),
        input_schema,
        output_schema: json_schema::<SendResult>(),
        hints: REACH_OUT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::model::AccountType;

    fn tool(name: &'static str, account_id: &str) -> Tool {
        Tool {
            name,
            description: "Send.",
            account_id: account_id.into(),
            account_type: AccountType::Email,
            provider: None,
            label: None,
        }
    }

    #[test]
    fn every_fixed_tool_takes_and_gives_an_object() {
        for spec in catalog(&[]) {
            assert_eq!(spec.input_schema["type"], "object", "{}", spec.name);
            assert_eq!(spec.output_schema["type"], "object", "{}", spec.name);
        }
    }

    #[test]
    fn a_send_tool_is_offered_only_with_an_account_behind_it_and_names_only_those() {
        let names = |specs: &[ToolSpec]| specs.iter().map(|s| s.name).collect::<Vec<_>>();
        assert!(!names(&catalog(&[])).contains(&"send_email"));
        let specs = catalog(&[tool("send_email", "work"), tool("send_email", "home")]);
        let send = specs.iter().find(|s| s.name == "send_email").unwrap();
        assert_eq!(
            send.input_schema["properties"]["account_id"]["enum"],
            json!(["work", "home"])
        );
        assert!(!names(&specs).contains(&"send_x_dm"));
        let required = send.input_schema["required"].as_array().unwrap();
        assert!(required.contains(&"idempotency_key".into()));
    }
}
