//! The `communications-worker` Lambda function: drains the communications queue.
//!
//! The batch logic lives in `pipewise::communications::worker`; this crate wires it to its
//! configuration and clients.

use aws_config::SdkConfig;
use pipewise::accounts::AccountService;
use pipewise::communications::delivery::{Delivery, SocialApis, ses_sending_client};
use pipewise::communications::queue::CommunicationQueue;
use pipewise::communications::suppression::SuppressionStore;
use pipewise::communications::unsubscribe::UnsubscribeTokens;
use pipewise::communications::{CommunicationsWorker, RunStore};
use pipewise::config::{ConfigError, ConfigSource, vars};

pub use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};

/// Builds the worker from its settings and one SDK configuration (once per cold start).
pub fn worker_from_config(
    source: &ConfigSource<'_>,
    sdk: &SdkConfig,
) -> Result<CommunicationsWorker, ConfigError> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let accounts = AccountService::from_config(source, sdk)?;
    let delivery = Delivery::new(
        accounts,
        ses_sending_client(sdk),
        SocialApis::from_source(source),
        UnsubscribeTokens::from_source(source, sdk),
        SuppressionStore::new(dynamodb.clone(), source.required(vars::TARGETS_TABLE)?),
    );
    Ok(CommunicationsWorker::new(
        RunStore::new(dynamodb, source.required(vars::RUNS_TABLE)?),
        delivery,
        CommunicationQueue::new(
            aws_sdk_sqs::Client::new(sdk),
            source.required(vars::COMMUNICATIONS_QUEUE_URL)?,
        ),
    ))
}
