//! Reading values out of a template resource's YAML: a resolved list property, whether a
//! property is present, and a required text field.

use serde_yaml::Value;

use super::StackError;
use crate::template::{Bindings, Resolved};

/// A list property of a resource, resolved (absent: empty).
pub(super) fn property_list(
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

pub(super) fn has_property(resource: &Value, name: &str) -> bool {
    resource
        .get("Properties")
        .and_then(|p| p.get(name))
        .is_some()
}

pub(super) fn text_of(value: &Value, field: &str) -> Result<String, StackError> {
    value
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("table definition lacks {field}").into())
}
