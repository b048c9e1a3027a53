//! The `communications-worker` Lambda function: drains the communications queue.
//!
//! The batch logic lives in `pipewise::communications::worker`; this crate wires it to its
//! configuration and clients.

use aws_config::SdkConfig;
use pipewise::accounts::sender::SenderVerification;
use pipewise::accounts::tokens::TokenEndpoints;
use pipewise::accounts::{AccountService, AccountStore};
use pipewise::communications::delivery::{Delivery, SocialApis, ses_sending_client};
use pipewise::communications::queue::CommunicationQueue;
use pipewise::communications::suppression::SuppressionStore;
use pipewise::communications::unsubscribe::UnsubscribeTokens;
use pipewise::communications::{CommunicationsWorker, RunStore};
use pipewise::config::{ConfigError, ConfigSource, vars};
use pipewise::envelope::EnvelopeCipher;

pub use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};

/// Builds the worker from its settings and one SDK configuration (once per cold start).
pub fn worker_from_config(
    source: &ConfigSource<'_>,
    sdk: &SdkConfig,
) -> Result<CommunicationsWorker, ConfigError> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let accounts = AccountService::new(
        AccountStore::new(dynamodb.clone(), source.required(vars::ACCOUNTS_TABLE)?),
        EnvelopeCipher::new(
            aws_sdk_kms::Client::new(sdk),
            source.required(vars::SECRETS_KMS_KEY_ID)?,
        ),
        SenderVerification::new(aws_sdk_sesv2::Client::new(sdk)),
        TokenEndpoints::new(
            SocialApis::from_source(source),
            aws_sdk_secretsmanager::Client::new(sdk),
            source.optional(vars::OAUTH_CLIENTS_SECRET_ARN),
        ),
    );
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
