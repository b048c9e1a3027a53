//! The stack's Cognito user pools, resource servers and app clients.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_cognitoidentityprovider::types::{ExplicitAuthFlowsType, OAuthFlowType};
use serde_yaml::Value;

use super::StackError;
use super::properties::{property_list, text_of};
use crate::template::{Bindings, Resolved, Template, property_text};

/// The template's Cognito user pool, resource server and app clients (when their condition
/// holds), created in the emulator with the template's OAuth settings; a pool's `!Ref` is its
/// id, a client's its client id.
pub(super) async fn create_user_pools(
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
