//! JSON Schemas for the tools, from the same `utoipa` derivations the OpenAPI document uses: the
//! types the HTTP routes parse describe the tools' arguments too, so the two cannot disagree.
//! OpenAPI 3.1 schemas are JSON Schema 2020-12; only the references move from
//! `#/components/schemas/…` to the document's own `#/$defs/…`.

use serde_json::{Map, Value};
use utoipa::ToSchema;

const OPENAPI_REFS: &str = "#/components/schemas/";
const JSON_SCHEMA_REFS: &str = "#/$defs/";

/// A self-contained JSON Schema object of `T`: its nested types under `$defs`.
pub fn json_schema<T: ToSchema>() -> Map<String, Value> {
    let mut nested = Vec::new();
    T::schemas(&mut nested);
    let mut root = match serde_json::to_value(T::schema()) {
        Ok(Value::Object(object)) => object,
        _ => Map::new(),
    };
    let mut defs = Map::new();
    for (name, schema) in nested {
        if let Ok(mut value) = serde_json::to_value(schema) {
            move_refs(&mut value);
            defs.insert(name, value);
        }
    }
    let mut root_value = Value::Object(std::mem::take(&mut root));
    move_refs(&mut root_value);
    if let Value::Object(object) = root_value {
        root = object;
    }
    if !defs.is_empty() {
        root.insert("$defs".into(), Value::Object(defs));
    }
    root
}

/// Adds a property to an object schema (`required` when asked).
pub fn with_property(
    mut schema: Map<String, Value>,
    name: &str,
    property: Value,
    required: bool,
) -> Map<String, Value> {
    if let Value::Object(properties) = schema
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()))
    {
        properties.insert(name.to_owned(), property);
    }
    if required
        && let Value::Array(names) = schema
            .entry("required")
            .or_insert_with(|| Value::Array(Vec::new()))
    {
        names.push(Value::String(name.to_owned()));
    }
    schema
}

fn move_refs(value: &mut Value) {
    match value {
        Value::Object(object) => {
            for (key, entry) in object.iter_mut() {
                if key == "$ref"
                    && let Value::String(target) = entry
                    && let Some(name) = target.strip_prefix(OPENAPI_REFS)
                {
                    *target = format!("{JSON_SCHEMA_REFS}{name}");
                } else {
                    move_refs(entry);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(move_refs),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::communications::model::InitiateRequest;

    #[test]
    fn nested_types_are_defined_in_the_document_and_referenced_there() {
        let schema = json_schema::<InitiateRequest>();
        assert_eq!(schema["type"], "object");
        let text = serde_json::to_string(&schema).unwrap();
        assert!(!text.contains("#/components/"), "{text}");
        assert!(text.contains("#/$defs/MessageTemplate"), "{text}");
        assert!(schema["$defs"]["MessageTemplate"]["properties"]["body"].is_object());
    }

    #[test]
    fn an_added_property_is_listed_and_required() {
        let schema = with_property(
            json_schema::<InitiateRequest>(),
            "idempotency_key",
            serde_json::json!({"type": "string"}),
            true,
        );
        assert_eq!(schema["properties"]["idempotency_key"]["type"], "string");
        assert!(
            schema["required"]
                .as_array()
                .unwrap()
                .contains(&"idempotency_key".into())
        );
    }
}
