//! Creates the emulator's resources (tables, KMS keys and aliases, queues, user pools, secrets)
//! from `template.yaml`
//! and resolves the functions' environment against them. Used by `make dev` and by every test.
//! Resource types without a local meaning are left out: the functions' log groups (their
//! retention is CloudWatch's business; locally logs go to the terminal) and SES's event
//! destination (below).

use std::collections::{BTreeMap, HashMap};

use aws_config::SdkConfig;
use aws_sdk_cognitoidentityprovider::types::{ExplicitAuthFlowsType, OAuthFlowType};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_yaml::Value;

use crate::template::{Bindings, Resolved, Template, property_text};

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

/// The SES feedback path: topics, their SQS subscriptions (raw delivery as the template
/// says) and the SES configuration sets. A topic's `!Ref` is its ARN, a configuration set's its
/// name. moto keeps no SES v2 event destinations and never publishes SES events, so the
/// `AWS::SES::ConfigurationSetEventDestination` is not created: tests publish SES-shaped
/// events to the topic, as SES would (docs/deliverability.md).
async fn create_email_feedback(
    sdk: &SdkConfig,
    name: &str,
    template: &Template,
    bindings: &mut Bindings,
    physical: &mut HashMap<String, String>,
) -> Result<(), StackError> {
    let sns = aws_sdk_sns::Client::new(sdk);
    for (logical, _) in template.resources_of_type("AWS::SNS::Topic") {
        let topic = sns
            .create_topic()
            .name(format!("{name}-{logical}"))
            .send()
            .await?;
        let arn = topic.topic_arn.ok_or("CreateTopic returned no ARN")?;
        bindings.bind_ref(&logical, Resolved::Text(arn.clone()));
        bindings.bind_attribute(&logical, "TopicArn", arn.clone());
        physical.insert(logical, arn);
    }
    for (_, resource) in template.resources_of_type("AWS::SNS::Subscription") {
        let topic = property_text(resource, "TopicArn", bindings)?
            .ok_or("a subscription has no TopicArn")?;
        let protocol = property_text(resource, "Protocol", bindings)?
            .ok_or("a subscription has no Protocol")?;
        let endpoint = property_text(resource, "Endpoint", bindings)?
            .ok_or("a subscription has no Endpoint")?;
        let raw = resource
            .get("Properties")
            .and_then(|properties| properties.get("RawMessageDelivery"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        sns.subscribe()
            .topic_arn(topic)
            .protocol(protocol)
            .endpoint(endpoint)
            .attributes("RawMessageDelivery", raw.to_string())
            .send()
            .await?;
    }
    let ses = aws_sdk_sesv2::Client::new(sdk);
    for (logical, resource) in template.resources_of_type("AWS::SES::ConfigurationSet") {
        let set = property_text(resource, "Name", bindings)?
            .unwrap_or_else(|| format!("{name}-{logical}"));
        let created = ses
            .create_configuration_set()
            .configuration_set_name(&set)
            .send()
            .await;
        // SES v2 says AlreadyExistsException; moto answers with SES v1's name.
        created_or_retried(
            created,
            &[
                "AlreadyExistsException",
                "ConfigurationSetAlreadyExistsException",
            ],
        )?;
        bindings.bind_ref(&logical, Resolved::Text(set.clone()));
        physical.insert(logical, set);
    }
    Ok(())
}

/// The template's Cognito user pool, resource server and app clients (when their condition
/// holds), created in the emulator with the template's OAuth settings; a pool's `!Ref` is its
/// id, a client's its client id.
async fn create_user_pools(
    sdk: &SdkConfig,
    template: &Template,
    bindings: &mut Bindings,
    physical: &mut HashMap<String, String>,
) -> Result<(), StackError> {
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(sdk);
    for (logical, resource) in template.resources_of_type("AWS::Cognito::UserPool") {
        if !bindings.includes(resource) {
            continue;
        }
        let pool_name = property_text(resource, "UserPoolName", bindings)?
            .ok_or("a user pool has no UserPoolName")?;
        let pool = cognito
            .create_user_pool()
            .pool_name(pool_name)
            .send()
            .await?;
        let id = pool
            .user_pool
            .and_then(|pool| pool.id)
            .ok_or("CreateUserPool returned no id")?;
        bindings.bind_ref(&logical, Resolved::Text(id.clone()));
        physical.insert(logical, id);
    }
    for (logical, resource) in template.resources_of_type("AWS::Cognito::UserPoolResourceServer") {
        if !bindings.includes(resource) {
            continue;
        }
        let text = |name: &str| -> Result<String, StackError> {
            Ok(property_text(resource, name, bindings)?
                .ok_or_else(|| format!("a resource server has no {name}"))?)
        };
        let identifier = text("Identifier")?;
        let mut request = cognito
            .create_resource_server()
            .user_pool_id(text("UserPoolId")?)
            .identifier(&identifier)
            .name(text("Name")?);
        for scope in resource
            .get("Properties")
            .and_then(|p| p.get("Scopes"))
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            request = request.scopes(
                aws_sdk_cognitoidentityprovider::types::ResourceServerScopeType::builder()
                    .scope_name(text_of(scope, "ScopeName")?)
                    .scope_description(text_of(scope, "ScopeDescription")?)
                    .build()?,
            );
        }
        request.send().await?;
        bindings.bind_ref(&logical, Resolved::Text(identifier.clone()));
        physical.insert(logical, identifier);
    }
    for (logical, resource) in template.resources_of_type("AWS::Cognito::UserPoolClient") {
        if !bindings.includes(resource) {
            continue;
        }
        let pool_id = property_text(resource, "UserPoolId", bindings)?
            .ok_or("an app client has no UserPoolId")?;
        let client_name = property_text(resource, "ClientName", bindings)?
            .ok_or("an app client has no ClientName")?;
        let flag = |name: &str| {
            resource
                .get("Properties")
                .and_then(|p| p.get(name))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        // The client's OAuth settings as the template gives them: which flows and scopes it may
        // request (the agents' client alone holds the secrets scope), read back by the local
        // stand-in for Cognito's token endpoint (`crate::cognito::authorized_access_token`).
        let list = |name: &str| property_list(resource, name, bindings);
        let client = cognito
            .create_user_pool_client()
            .user_pool_id(pool_id)
            .client_name(client_name)
            .generate_secret(flag("GenerateSecret"))
            .allowed_o_auth_flows_user_pool_client(flag("AllowedOAuthFlowsUserPoolClient"))
            .set_allowed_o_auth_flows(Some(
                list("AllowedOAuthFlows")?
                    .iter()
                    .map(|flow| OAuthFlowType::from(flow.as_str()))
                    .collect(),
            ))
            .set_allowed_o_auth_scopes(Some(list("AllowedOAuthScopes")?))
            .set_explicit_auth_flows(Some(
                list("ExplicitAuthFlows")?
                    .iter()
                    .map(|flow| ExplicitAuthFlowsType::from(flow.as_str()))
                    .collect(),
            ))
            .set_callback_urls(Some(list("CallbackURLs")?))
            .set_supported_identity_providers(Some(list("SupportedIdentityProviders")?))
            .send()
            .await?;
        let id = client
            .user_pool_client
            .and_then(|client| client.client_id)
            .ok_or("CreateUserPoolClient returned no client id")?;
        bindings.bind_ref(&logical, Resolved::Text(id.clone()));
        physical.insert(logical, id);
    }
    Ok(())
}

/// A list property of a resource, resolved (absent: empty).
fn property_list(
    resource: &Value,
    name: &str,
    bindings: &Bindings,
) -> Result<Vec<String>, StackError> {
    let Some(value) = resource.get("Properties").and_then(|p| p.get(name)) else {
        return Ok(Vec::new());
    };
    Ok(match crate::template::resolve(value, bindings)? {
        Resolved::List(items) => items,
        Resolved::Text(text) => vec![text],
    })
}

fn has_property(resource: &Value, name: &str) -> bool {
    resource
        .get("Properties")
        .and_then(|p| p.get(name))
        .is_some()
}

fn text_of(value: &Value, field: &str) -> Result<String, StackError> {
    value
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("table definition lacks {field}").into())
}

fn key_schema(value: Option<&Value>) -> Result<Vec<KeySchemaElement>, StackError> {
    value
        .and_then(Value::as_sequence)
        .ok_or("a KeySchema is missing")?
        .iter()
        .map(|element| {
            Ok(KeySchemaElement::builder()
                .attribute_name(text_of(element, "AttributeName")?)
                .key_type(KeyType::from(text_of(element, "KeyType")?.as_str()))
                .build()?)
        })
        .collect()
}

async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    resource: &Value,
) -> Result<(), StackError> {
    let properties = resource
        .get("Properties")
        .ok_or("a table has no Properties")?;
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(properties.get("KeySchema"))?));
    for definition in properties
        .get("AttributeDefinitions")
        .and_then(Value::as_sequence)
        .ok_or("a table has no AttributeDefinitions")?
    {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(text_of(definition, "AttributeName")?)
                .attribute_type(ScalarAttributeType::from(
                    text_of(definition, "AttributeType")?.as_str(),
                ))
                .build()?,
        );
    }
    for index in properties
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let projection = index
            .get("Projection")
            .and_then(|p| p.get("ProjectionType"))
            .and_then(Value::as_str)
            .unwrap_or("ALL");
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(text_of(index, "IndexName")?)
                .set_key_schema(Some(key_schema(index.get("KeySchema"))?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(projection))
                        .build(),
                )
                .build()?,
        );
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(error) if pipewise::aws::error_code(&error) == Some("ResourceInUseException") => Ok(()),
        Err(error) => Err(error.into()),
    }
}

async fn create_queue(
    client: &aws_sdk_sqs::Client,
    queue: &str,
    resource: &Value,
    bindings: &Bindings,
) -> Result<(String, String), StackError> {
    let mut attributes = HashMap::new();
    for (property, attribute) in [
        ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
        (
            "MessageRetentionPeriod",
            QueueAttributeName::MessageRetentionPeriod,
        ),
        (
            "ReceiveMessageWaitTimeSeconds",
            QueueAttributeName::ReceiveMessageWaitTimeSeconds,
        ),
    ] {
        if let Some(value) = property_text(resource, property, bindings)? {
            attributes.insert(attribute, value);
        }
    }
    if let Some(redrive) = resource
        .get("Properties")
        .and_then(|p| p.get("RedrivePolicy"))
    {
        let target = redrive
            .get("deadLetterTargetArn")
            .ok_or("RedrivePolicy lacks deadLetterTargetArn")?;
        let target = match crate::template::resolve(target, bindings)? {
            Resolved::Text(text) => text,
            Resolved::List(_) => return Err("deadLetterTargetArn is a list".into()),
        };
        let max_receives = redrive
            .get("maxReceiveCount")
            .and_then(Value::as_u64)
            .ok_or("RedrivePolicy lacks maxReceiveCount")?;
        attributes.insert(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": target, "maxReceiveCount": max_receives})
                .to_string(),
        );
    }
    let created = client
        .create_queue()
        .queue_name(queue)
        .set_attributes(Some(attributes))
        .send()
        .await?;
    let url = created.queue_url.ok_or("CreateQueue returned no URL")?;
    let attributes = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?;
    let arn = attributes
        .attributes
        .and_then(|mut map| map.remove(&QueueAttributeName::QueueArn))
        .ok_or("GetQueueAttributes returned no ARN")?;
    Ok((url, arn))
}
