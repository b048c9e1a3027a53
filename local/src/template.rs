//! Reading `template.yaml`: its routes, its resources and its functions' environment, with the
//! intrinsic functions (`!Ref`, `!GetAtt`, `!Sub`, `!Join`, `!Split`, `!If`, and `!Equals` in
//! conditions) the template uses resolved against locally created resources.

use std::collections::{BTreeMap, HashMap};

use serde_yaml::Value;

/// The project's SAM template, embedded at build time so tests always see the current file.
pub const TEMPLATE_YAML: &str = include_str!("../../template.yaml");

/// A failure to read or resolve the template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Not YAML.
    #[error("template.yaml is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// A construct the local stack does not understand.
    #[error("template.yaml: {0}")]
    Unsupported(String),
}

/// One HTTP route declared as an `HttpApi` event of a function.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TemplateRoute {
    /// Upper-case method.
    pub method: String,
    /// Path with `{param}` segments.
    pub path: String,
    /// Logical id of the function answering it.
    pub function: String,
}

/// A resolved template value: a string or a list (`CommaDelimitedList`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A string.
    Text(String),
    /// A list of strings.
    List(Vec<String>),
}

impl Resolved {
    fn into_text(self) -> String {
        match self {
            Self::Text(text) => text,
            Self::List(items) => items.join(","),
        }
    }
}

/// What `!Ref` and `!GetAtt` of each logical id resolve to.
#[derive(Debug, Default, Clone)]
pub struct Bindings {
    refs: HashMap<String, Resolved>,
    attributes: HashMap<(String, String), String>,
    conditions: HashMap<String, bool>,
}

impl Bindings {
    /// Binds `!Ref name`.
    pub fn bind_ref(&mut self, name: impl Into<String>, value: Resolved) {
        self.refs.insert(name.into(), value);
    }

    /// Evaluates the template's `Conditions` (`!Equals` of parameters) with the refs bound so far.
    pub fn evaluate_conditions(&mut self, template: &Template) -> Result<(), TemplateError> {
        let Some(conditions) = template
            .document
            .get("Conditions")
            .and_then(Value::as_mapping)
        else {
            return Ok(());
        };
        for (name, condition) in conditions {
            let name = name
                .as_str()
                .ok_or_else(|| TemplateError::Unsupported("a condition name is not text".into()))?;
            let value = match condition {
                Value::Tagged(tagged) if tagged.tag == "!Equals" => match &tagged.value {
                    Value::Sequence(pair) if pair.len() == 2 => {
                        resolve(&pair[0], self)? == resolve(&pair[1], self)?
                    }
                    _ => return Err(TemplateError::Unsupported(format!("condition {name}"))),
                },
                _ => {
                    return Err(TemplateError::Unsupported(format!(
                        "condition {name}: only !Equals is supported locally"
                    )));
                }
            };
            self.conditions.insert(name.to_owned(), value);
        }
        Ok(())
    }

    /// Whether a resource exists under the evaluated conditions.
    pub fn includes(&self, resource: &Value) -> bool {
        resource
            .get("Condition")
            .and_then(Value::as_str)
            .is_none_or(|name| self.conditions.get(name).copied().unwrap_or(false))
    }

    /// Binds `!GetAtt name.attribute`.
    pub fn bind_attribute(
        &mut self,
        name: impl Into<String>,
        attribute: impl Into<String>,
        value: impl Into<String>,
    ) {
        self.attributes
            .insert((name.into(), attribute.into()), value.into());
    }
}

/// One `Allow` statement of a function's policy ([`Template::policy_statements`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyStatement {
    /// `service:Action`, as written.
    pub actions: std::collections::BTreeSet<String>,
    /// Logical ids (`Table`, `Table/index/name`), `*`, or the text as written.
    pub resources: Vec<String>,
}

/// A policy resource by the logical id it names.
fn resource_name(resource: &Value) -> String {
    match resource {
        Value::String(text) => text.clone(),
        Value::Tagged(tagged) => {
            let text = tagged.value.as_str().unwrap_or_default();
            match tagged.tag.to_string().as_str() {
                "!GetAtt" => text.trim_end_matches(".Arn").to_owned(),
                "!Sub" => text.replacen("${", "", 1).replacen(".Arn}", "", 1),
                _ => text.to_owned(),
            }
        }
        other => format!("{other:?}"),
    }
}

/// The parsed template.
pub struct Template {
    document: Value,
}

impl Template {
    /// The project's own template.
    pub fn project() -> Result<Self, TemplateError> {
        Self::parse(TEMPLATE_YAML)
    }

    /// Parses a template.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        Ok(Self {
            document: serde_yaml::from_str(text)?,
        })
    }

    /// Resources of one type, as (logical id, resource), in template order.
    pub fn resources_of_type(&self, resource_type: &str) -> Vec<(String, &Value)> {
        let Some(resources) = self.document.get("Resources").and_then(Value::as_mapping) else {
            return Vec::new();
        };
        resources
            .iter()
            .filter(|(_, resource)| {
                resource.get("Type").and_then(Value::as_str) == Some(resource_type)
            })
            .filter_map(|(name, resource)| Some((name.as_str()?.to_owned(), resource)))
            .collect()
    }

    /// Every `HttpApi` event route of every function.
    pub fn routes(&self) -> Vec<TemplateRoute> {
        let mut routes = Vec::new();
        for (function, resource) in self.resources_of_type("AWS::Serverless::Function") {
            let Some(events) = resource
                .get("Properties")
                .and_then(|p| p.get("Events"))
                .and_then(Value::as_mapping)
            else {
                continue;
            };
            for event in events.values() {
                if event.get("Type").and_then(Value::as_str) != Some("HttpApi") {
                    continue;
                }
                let properties = event.get("Properties");
                let field = |name: &str| {
                    properties
                        .and_then(|p| p.get(name))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                routes.push(TemplateRoute {
                    method: field("Method").to_ascii_uppercase(),
                    path: field("Path"),
                    function: function.clone(),
                });
            }
        }
        routes.sort();
        routes
    }

    /// The `Allow` statements of a function's `Policies`: their actions, and their resources
    /// named by logical id (`!GetAtt RunsTable.Arn` -> `RunsTable`, `!Sub
    /// ${RunsTable.Arn}/index/scheduled` -> `RunsTable/index/scheduled`, `!Ref X` -> `X`, `*`).
    pub fn policy_statements(&self, function: &str) -> Vec<PolicyStatement> {
        let policies = self
            .document
            .get("Resources")
            .and_then(|resources| resources.get(function))
            .and_then(|resource| resource.get("Properties"))
            .and_then(|properties| properties.get("Policies"))
            .and_then(Value::as_sequence);
        let listed = |value: Option<&Value>| -> Vec<Value> {
            match value {
                Some(Value::Sequence(list)) => list.clone(),
                Some(single) => vec![single.clone()],
                None => Vec::new(),
            }
        };
        let mut statements = Vec::new();
        for policy in policies.into_iter().flatten() {
            let listed_statements = policy.get("Statement").and_then(Value::as_sequence);
            for statement in listed_statements.into_iter().flatten() {
                if statement.get("Effect").and_then(Value::as_str) != Some("Allow") {
                    continue;
                }
                statements.push(PolicyStatement {
                    actions: listed(statement.get("Action"))
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect(),
                    resources: listed(statement.get("Resource"))
                        .iter()
                        .map(resource_name)
                        .collect(),
                });
            }
        }
        statements
    }

    /// Default values of the template's parameters.
    pub fn parameter_defaults(&self) -> HashMap<String, Resolved> {
        let Some(parameters) = self.document.get("Parameters").and_then(Value::as_mapping) else {
            return HashMap::new();
        };
        parameters
            .iter()
            .filter_map(|(name, parameter)| {
                let default = parameter.get("Default")?;
                let text = match default {
                    Value::String(text) => text.clone(),
                    Value::Number(number) => number.to_string(),
                    _ => return None,
                };
                let is_list =
                    parameter.get("Type").and_then(Value::as_str) == Some("CommaDelimitedList");
                let value = if is_list {
                    Resolved::List(text.split(',').map(|item| item.trim().to_owned()).collect())
                } else {
                    Resolved::Text(text)
                };
                Some((name.as_str()?.to_owned(), value))
            })
            .collect()
    }

    /// The environment of every function (globals, then each function's own), resolved. All
    /// functions run in one local process, so their variables share one map; a variable two
    /// functions set differently is an error.
    pub fn environment(
        &self,
        bindings: &Bindings,
    ) -> Result<BTreeMap<String, String>, TemplateError> {
        let mut environment = BTreeMap::new();
        let globals = self
            .document
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .and_then(|f| f.get("Environment"))
            .and_then(|e| e.get("Variables"));
        let functions = self.resources_of_type("AWS::Serverless::Function");
        let own = functions.iter().filter_map(|(_, resource)| {
            resource
                .get("Properties")
                .and_then(|p| p.get("Environment"))
                .and_then(|e| e.get("Variables"))
        });
        for variables in globals.into_iter().chain(own) {
            let Some(variables) = variables.as_mapping() else {
                continue;
            };
            for (name, value) in variables {
                let name = name.as_str().ok_or_else(|| {
                    TemplateError::Unsupported("a variable name is not text".into())
                })?;
                let value = resolve(value, bindings)?.into_text();
                if let Some(previous) = environment.insert(name.to_owned(), value.clone())
                    && previous != value
                {
                    return Err(TemplateError::Unsupported(format!(
                        "variable {name} has different values in different functions"
                    )));
                }
            }
        }
        Ok(environment)
    }
}

/// A property of a resource as text, resolved.
pub fn property_text(
    resource: &Value,
    name: &str,
    bindings: &Bindings,
) -> Result<Option<String>, TemplateError> {
    resource
        .get("Properties")
        .and_then(|p| p.get(name))
        .map(|value| resolve(value, bindings).map(Resolved::into_text))
        .transpose()
}

/// Resolves a value with intrinsic functions.
pub fn resolve(value: &Value, bindings: &Bindings) -> Result<Resolved, TemplateError> {
    match value {
        Value::String(text) => Ok(Resolved::Text(text.clone())),
        Value::Number(number) => Ok(Resolved::Text(number.to_string())),
        Value::Bool(flag) => Ok(Resolved::Text(flag.to_string())),
        Value::Sequence(items) => items
            .iter()
            .map(|item| resolve(item, bindings).map(Resolved::into_text))
            .collect::<Result<_, _>>()
            .map(Resolved::List),
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            match (tag.trim_start_matches('!'), &tagged.value) {
                ("Ref", Value::String(name)) => bindings.refs.get(name).cloned().ok_or_else(|| {
                    TemplateError::Unsupported(format!("!Ref {name} has no local value"))
                }),
                ("GetAtt", Value::String(target)) => {
                    let (name, attribute) = target.split_once('.').ok_or_else(|| {
                        TemplateError::Unsupported(format!("!GetAtt {target} has no attribute"))
                    })?;
                    get_attribute(bindings, name, attribute).map(Resolved::Text)
                }
                ("Sub", Value::String(pattern)) => {
                    substitute(pattern, bindings).map(Resolved::Text)
                }
                ("If", Value::Sequence(args)) if args.len() == 3 => {
                    let condition = args[0].as_str().unwrap_or_default();
                    let holds = bindings.conditions.get(condition).copied().ok_or_else(|| {
                        TemplateError::Unsupported(format!("!If {condition}: no such condition"))
                    })?;
                    resolve(&args[if holds { 1 } else { 2 }], bindings)
                }
                ("Split", Value::Sequence(args)) if args.len() == 2 => {
                    let separator = args[0].as_str().unwrap_or(",");
                    let text = resolve(&args[1], bindings)?.into_text();
                    Ok(Resolved::List(
                        text.split(separator)
                            .map(str::trim)
                            .filter(|item| !item.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    ))
                }
                ("Join", Value::Sequence(args)) if args.len() == 2 => {
                    let separator = args[0].as_str().unwrap_or_default();
                    let items = match resolve(&args[1], bindings)? {
                        Resolved::List(items) => items,
                        Resolved::Text(text) => vec![text],
                    };
                    Ok(Resolved::Text(items.join(separator)))
                }
                (other, _) => Err(TemplateError::Unsupported(format!(
                    "intrinsic !{other} is not supported locally"
                ))),
            }
        }
        _ => Err(TemplateError::Unsupported(
            "a value the local stack cannot resolve".into(),
        )),
    }
}

fn get_attribute(
    bindings: &Bindings,
    name: &str,
    attribute: &str,
) -> Result<String, TemplateError> {
    bindings
        .attributes
        .get(&(name.to_owned(), attribute.to_owned()))
        .cloned()
        .ok_or_else(|| {
            TemplateError::Unsupported(format!("!GetAtt {name}.{attribute} has no local value"))
        })
}

fn substitute(pattern: &str, bindings: &Bindings) -> Result<String, TemplateError> {
    let mut output = String::new();
    let mut rest = pattern;
    while let Some(start) = rest.find("${") {
        output.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| TemplateError::Unsupported(format!("unclosed ${{ in !Sub {pattern}")))?;
        let name = &after[..end];
        let value = match name.split_once('.') {
            Some((resource, attribute)) => get_attribute(bindings, resource, attribute)?,
            None => bindings
                .refs
                .get(name)
                .cloned()
                .map(Resolved::into_text)
                .ok_or_else(|| {
                    TemplateError::Unsupported(format!("${{{name}}} has no local value"))
                })?,
        };
        output.push_str(&value);
        rest = &after[end + 1..];
    }
    output.push_str(rest);
    Ok(output)
}
