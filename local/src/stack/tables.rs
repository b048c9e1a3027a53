//! The stack's DynamoDB tables: key schemas, attribute definitions and global secondary
//! indexes as the template gives them.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use serde_yaml::Value;

use super::StackError;
use super::properties::text_of;

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

pub(super) async fn create_table(
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
