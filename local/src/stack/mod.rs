//! Creates the emulator's resources (tables, KMS keys and aliases, queues, user pools, secrets)
//! from `template.yaml`
//! and resolves the functions' environment against them. Used by `make dev` and by every test.
//! Resource types without a local meaning are left out: the functions' log groups (their
//! retention is CloudWatch's business; locally logs go to the terminal) and SES's event
//! destination (below).

mod email_feedback;
mod properties;
mod queues;
mod tables;
mod user_pools;

use std::collections::{BTreeMap, HashMap};

use aws_config::SdkConfig;

use crate::template::{Bindings, Resolved, Template, property_text};
use email_feedback::create_email_feedback;
use properties::has_property;
use queues::create_queue;
use tables::create_table;
use user_pools::create_user_pools;

/// Account id the emulator (moto) reports.
pub const EMULATOR_ACCOUNT_ID: &str = "123456789012";

/// Any failure while bootstrapping.
pub type StackError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The answer of a create whose name is this stack's own: "already exists" means the SDK retried
/// a first attempt whose answer it never got (a busy emulator), so the resource is ours and
/// stands (`None`); any other failure is one.
fn created_or_retried<T, E, R>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
    already_exists: &[&str],
) -> Result<Option<T>, StackError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(output) => Ok(Some(output)),
        Err(error)
            if pipewise::aws::error_code(&error)
                .is_some_and(|code| already_exists.contains(&code)) =>
        {
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

/// The resources created for one stack, and the environment the functions run with.
#[derive(Debug, Clone)]
pub struct LocalStack {
    /// Stack name; prefixes every physical name.
    pub name: String,
    /// The functions' environment variables, resolved (before local overrides).
    pub environment: BTreeMap<String, String>,
    /// Physical name (tables), ARN (keys) or URL (queues) of each logical id.
    pub physical: HashMap<String, String>,
}

impl LocalStack {
    /// Creates every table, key, alias and queue of the template under `name`, with the given
    /// parameter values (missing ones take the template's defaults).
    pub async fn create(
        sdk: &SdkConfig,
        name: &str,
        parameters: &HashMap<String, Resolved>,
    ) -> Result<Self, StackError> {
        let template = Template::project()?;
        let mut bindings = Bindings::default();
        let region = sdk
            .region()
            .map(ToString::to_string)
            .unwrap_or_else(|| "us-east-1".into());
        for (pseudo, value) in [
            ("AWS::StackName", name.to_owned()),
            ("AWS::Region", region.clone()),
            ("AWS::AccountId", EMULATOR_ACCOUNT_ID.to_owned()),
            ("AWS::Partition", "aws".to_owned()),
            ("AWS::URLSuffix", "amazonaws.com".to_owned()),
        ] {
            bindings.bind_ref(pseudo, Resolved::Text(value));
        }
        for (parameter, value) in template
            .parameter_defaults()
            .into_iter()
            .chain(parameters.clone())
        {
            bindings.bind_ref(parameter, value);
        }
        bindings.evaluate_conditions(&template)?;
        let mut physical = HashMap::new();

        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        for (logical, resource) in template.resources_of_type("AWS::DynamoDB::Table") {
            let table = format!("{name}-{logical}");
            create_table(&dynamodb, &table, resource).await?;
            bindings.bind_ref(&logical, Resolved::Text(table.clone()));
            bindings.bind_attribute(
                &logical,
                "Arn",
                format!("arn:aws:dynamodb:{region}:{EMULATOR_ACCOUNT_ID}:table/{table}"),
            );
            physical.insert(logical, table);
        }

        let kms = aws_sdk_kms::Client::new(sdk);
        for (logical, resource) in template.resources_of_type("AWS::KMS::Key") {
            let description =
                property_text(resource, "Description", &bindings)?.unwrap_or_default();
            let key = kms.create_key().description(description).send().await?;
            let metadata = key.key_metadata.ok_or("CreateKey returned no metadata")?;
            let arn = metadata.arn.ok_or("CreateKey returned no ARN")?;
            bindings.bind_ref(&logical, Resolved::Text(metadata.key_id));
            bindings.bind_attribute(&logical, "Arn", arn.clone());
            physical.insert(logical, arn);
        }
        for (logical, resource) in template.resources_of_type("AWS::KMS::Alias") {
            let alias = property_text(resource, "AliasName", &bindings)?
                .ok_or("an alias has no AliasName")?;
            let target = property_text(resource, "TargetKeyId", &bindings)?
                .ok_or("an alias has no TargetKeyId")?;
            let created = kms
                .create_alias()
                .alias_name(&alias)
                .target_key_id(target)
                .send()
                .await;
            created_or_retried(created, &["AlreadyExistsException"])?;
            bindings.bind_ref(&logical, Resolved::Text(alias.clone()));
            physical.insert(logical, alias);
        }

        let sqs = aws_sdk_sqs::Client::new(sdk);
        let mut queues = template.resources_of_type("AWS::SQS::Queue");
        // Dead-letter queues first: the others refer to their ARNs.
        queues.sort_by_key(|(_, resource)| has_property(resource, "RedrivePolicy"));
        for (logical, resource) in queues {
            let queue = format!("{name}-{logical}");
            let (url, arn) = create_queue(&sqs, &queue, resource, &bindings).await?;
            bindings.bind_ref(&logical, Resolved::Text(url.clone()));
            bindings.bind_attribute(&logical, "Arn", arn);
            bindings.bind_attribute(&logical, "QueueName", queue);
            bindings.bind_attribute(&logical, "QueueUrl", url.clone());
            physical.insert(logical, url);
        }

        create_user_pools(sdk, &template, &mut bindings, &mut physical).await?;
        create_email_feedback(sdk, name, &template, &mut bindings, &mut physical).await?;

        let secrets = aws_sdk_secretsmanager::Client::new(sdk);
        for (logical, resource) in template.resources_of_type("AWS::SecretsManager::Secret") {
            // A generated secret gets 64 random URL-safe characters, as GenerateSecretString would.
            let value = match property_text(resource, "SecretString", &bindings)? {
                Some(text) => text,
                None => {
                    let mut random = [0u8; 48];
                    aws_lc_rs::rand::fill(&mut random).map_err(|_| "no randomness")?;
                    base64::Engine::encode(
                        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                        random,
                    )
                }
            };
            let secret_name = format!("{name}-{logical}");
            let created = secrets
                .create_secret()
                .name(&secret_name)
                .secret_string(value)
                .send()
                .await;
            let arn = match created_or_retried(created, &["ResourceExistsException"])? {
                Some(secret) => secret.arn,
                None => {
                    secrets
                        .describe_secret()
                        .secret_id(&secret_name)
                        .send()
                        .await?
                        .arn
                }
            }
            .ok_or("CreateSecret returned no ARN")?;
            bindings.bind_ref(&logical, Resolved::Text(arn.clone()));
            physical.insert(logical, arn);
        }

        Ok(Self {
            name: name.to_owned(),
            environment: template.environment(&bindings)?,
            physical,
        })
    }
}
