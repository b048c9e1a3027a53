//! What an AI agent can do for a user, and doing it: the tools the MCP server offers
//! ([`catalog`]) and their calls, each through the same service an HTTP route uses (targets,
//! accounts, outreach), so suppression, caps, the unsubscribe link, quotas and idempotency apply
//! to an agent exactly as to the frontend. No tool returns a credential.

pub mod arguments;
pub mod catalog;
mod schema;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::accounts::AccountService;
use crate::accounts::tools::tools;
use crate::channel::Channel;
use crate::communications::Outreach;
use crate::communications::idempotency::IdempotencyKey;
use crate::communications::model::InitiateRequest;
use crate::config::{ConfigError, ConfigSource};
use crate::error::{Error, FieldError};
use crate::ids::{AccountId, RunId, UserId};
use crate::json_input::from_json_value;
use crate::paging::PageLimit;
use crate::targets::TargetService;
use crate::targets::model::{CreateTargetRequest, DEFAULT_PAGE_SIZE};

use arguments::{
    AccountArguments, AccountSummary, AccountSummaryList, ListTargetsArguments, NoArguments,
    RunArguments, SendEmailArguments, SendMessageArguments, SendResult,
};
pub use catalog::{ToolHints, ToolSpec};

/// Why a tool call did not run or did not succeed.
#[derive(Debug)]
pub enum ToolCallError {
    /// No tool of this name is offered to this user.
    UnknownTool,
    /// The arguments do not fit the tool's input schema (the problems name fields, never values).
    InvalidArguments(Error),
    /// The service refused or failed, with the API's error.
    Refused(Error),
}

impl From<Error> for ToolCallError {
    fn from(error: Error) -> Self {
        Self::Refused(error)
    }
}

/// The agents' service: the tools over the targets, accounts and outreach services.
#[derive(Clone)]
pub struct Agents {
    accounts: AccountService,
    targets: TargetService,
    outreach: Outreach,
}

impl Agents {
    /// The service over the three services the HTTP functions use.
    pub fn new(accounts: AccountService, targets: TargetService, outreach: Outreach) -> Self {
        Self {
            accounts,
            targets,
            outreach,
        }
    }

    /// The service from the MCP function's settings (those of the accounts, targets and
    /// orchestrator functions together) and one SDK configuration; built once per cold start.
    pub fn from_config(
        source: &ConfigSource<'_>,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, ConfigError> {
        Ok(Self::new(
            AccountService::from_config(source, sdk)?,
            TargetService::from_config(source, sdk)?,
            Outreach::from_config(source, sdk)?,
        ))
    }

    /// The tools this user is offered now: the fixed ones and a send tool per kind of
    /// connected account (none for an account that needs reconnecting or is not verified).
    pub async fn tools(&self, user: &UserId) -> Result<Vec<ToolSpec>, Error> {
        let accounts = self.accounts.list(user, None).await?;
        Ok(catalog::catalog(&tools(&accounts).tools))
    }

    /// Runs the tool `name` for `user`; its result is the JSON its output schema describes.
    pub async fn call(
        &self,
        user: &UserId,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<Value, ToolCallError> {
        match name {
            "list_targets" => {
                let arguments: ListTargetsArguments = parse(arguments)?;
                let limit = PageLimit::or(arguments.limit, DEFAULT_PAGE_SIZE);
                let cursor = arguments.cursor.as_deref().filter(|c| !c.is_empty());
                result(self.targets.page(user, limit, cursor).await?)
            }
            "add_target" => {
                let request: CreateTargetRequest = parse(arguments)?;
                result(self.targets.create(user, request).await?)
            }
            "list_accounts" => {
                let _: NoArguments = parse(arguments)?;
                result(self.account_summaries(user).await?)
            }
            "test_account" => {
                let arguments: AccountArguments = parse(arguments)?;
                let account_id = AccountId::parse(&arguments.account_id)
                    .map_err(|_| invalid("account_id", "is not an account id"))?;
                result(self.accounts.test_connection(user, &account_id).await?)
            }
            "start_outreach" => self.start_outreach(user, arguments).await,
            "get_run" => {
                let run_id = run_id(parse(arguments)?)?;
                result(self.outreach.run(user, &run_id).await?)
            }
            "cancel_run" => {
                let run_id = run_id(parse(arguments)?)?;
                result(self.outreach.cancel(user, &run_id).await?)
            }
            _ => match catalog::send_channel(name) {
                Some(channel) => self.send(user, name, channel, arguments).await,
                None => Err(ToolCallError::UnknownTool),
            },
        }
    }

    async fn account_summaries(&self, user: &UserId) -> Result<AccountSummaryList, Error> {
        let accounts = self.accounts.list(user, None).await?;
        let offered = tools(&accounts).tools;
        let summaries = accounts
            .iter()
            .map(|account| {
                let names = offered
                    .iter()
                    .filter(|tool| tool.account_id == account.account_id)
                    .map(|tool| tool.name.to_owned())
                    .collect();
                AccountSummary::of(account, names)
            })
            .collect();
        Ok(AccountSummaryList {
            accounts: summaries,
        })
    }

    /// `start_outreach`: the initiate body plus its idempotency key, through the orchestrator's
    /// own use case (the key shares the HTTP header's namespace: the same key and body are the
    /// same run by either door).
    async fn start_outreach(
        &self,
        user: &UserId,
        mut arguments: Map<String, Value>,
    ) -> Result<Value, ToolCallError> {
        let key = match arguments.remove("idempotency_key") {
            Some(Value::String(key)) => idempotency_key(&key)?,
            Some(_) => return Err(invalid("idempotency_key", "must be a string")),
            None => return Err(invalid("idempotency_key", "is required")),
        };
        let body = Value::Object(arguments);
        let _: InitiateRequest =
            from_json_value(body.clone()).map_err(ToolCallError::InvalidArguments)?;
        result(
            self.outreach
                .initiate_communications(user, Some(&key), body)
                .await?,
        )
    }

    /// A send tool: one communication to one target through the chosen account, as a one-pair
    /// run of the orchestrator.
    async fn send(
        &self,
        user: &UserId,
        name: &str,
        channel: Channel,
        arguments: Map<String, Value>,
    ) -> Result<Value, ToolCallError> {
        let (account_id, target_id, message, key) = if channel == Channel::Email {
            let arguments: SendEmailArguments = parse(arguments)?;
            let mut message = json!({"body": arguments.body});
            if let Some(subject) = arguments.subject {
                message["subject"] = Value::String(subject);
            }
            (
                arguments.account_id,
                arguments.target_id,
                message,
                arguments.idempotency_key,
            )
        } else {
            let arguments: SendMessageArguments = parse(arguments)?;
            (
                arguments.account_id,
                arguments.target_id,
                json!({"body": arguments.text}),
                arguments.idempotency_key,
            )
        };
        let key = idempotency_key(&key)?;
        let accounts = self.accounts.list(user, None).await?;
        let backing: Vec<String> = tools(&accounts)
            .tools
            .into_iter()
            .filter(|tool| tool.name == name)
            .map(|tool| tool.account_id)
            .collect();
        if backing.is_empty() {
            return Err(ToolCallError::UnknownTool);
        }
        if !backing.contains(&account_id) {
            return Err(ToolCallError::Refused(Error::Unprocessable {
                code: "account_not_usable",
                message: "This account cannot send with this tool: it is not one of the user's connected accounts of this kind (see list_accounts).".into(),
                details: vec![FieldError::new("account_id", "is not a connected account this tool sends from")],
            }));
        }
        let body = json!({
            "target_ids": [target_id],
            "channels": [channel],
            "account_ids": [account_id],
            "message": message,
        });
        let response = self
            .outreach
            .initiate_communications(user, Some(&key), body)
            .await?;
        let run_id = RunId::parse(&response.run_id)
            .ok_or_else(|| Error::internal("initiate answered a run id that is not one"))?;
        let run = self.outreach.run(user, &run_id).await?;
        let communication = run
            .communications
            .and_then(|communications| communications.into_iter().next())
            .ok_or_else(|| Error::internal("a one-communication run without its communication"))?;
        result(SendResult {
            communication_id: communication.communication_id,
            run_id: response.run_id,
            target_id,
            channel,
            account_id,
            status: communication.status,
        })
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    arguments: Map<String, Value>,
) -> Result<T, ToolCallError> {
    from_json_value(Value::Object(arguments)).map_err(ToolCallError::InvalidArguments)
}

fn result(value: impl Serialize) -> Result<Value, ToolCallError> {
    serde_json::to_value(value).map_err(|error| ToolCallError::Refused(Error::internal(error)))
}

fn invalid(field: &str, problem: &str) -> ToolCallError {
    ToolCallError::InvalidArguments(Error::Validation(vec![FieldError::new(field, problem)]))
}

fn idempotency_key(key: &str) -> Result<IdempotencyKey, ToolCallError> {
    IdempotencyKey::parse(key)
        .map_err(|_| invalid("idempotency_key", "must be 1-255 visible ASCII characters"))
}

fn run_id(arguments: RunArguments) -> Result<RunId, ToolCallError> {
    RunId::parse(&arguments.run_id).ok_or_else(|| invalid("run_id", "is not a run id"))
}
