//! Accounts by who issued their credentials: the accounts table's `by_provider` index
//! (template.yaml), which the background jobs read instead of scanning every item of every user
//! (sender claims, counters, mailbox cursors and accounts of no platform are not in it or not
//! asked for). The index is eventually consistent: an account connected a moment ago is read on
//! the next run.

use aws_sdk_dynamodb::types::AttributeValue;

use super::{AccountItem, AccountStore};
use crate::aws::dependency_error;
use crate::error::Error;
use crate::platforms::Provider;
use crate::storage::{decode_item, text};

/// The accounts table's index by `provider` (template.yaml).
const PROVIDER_INDEX: &str = "by_provider";

impl AccountStore {
    /// Every item of `providers` (each under every name it is stored by) that passes `filter`
    /// with its `values`: a Query of the index per name, page by page.
    pub(super) async fn of_providers(
        &self,
        providers: impl IntoIterator<Item = Provider>,
        filter: &str,
        values: &[(&str, AttributeValue)],
    ) -> Result<Vec<AccountItem>, Error> {
        let mut accounts = Vec::new();
        for name in providers.into_iter().flat_map(Provider::names) {
            let mut query = self
                .dynamodb
                .query()
                .table_name(&self.table)
                .index_name(PROVIDER_INDEX)
                .key_condition_expression("provider = :provider")
                .filter_expression(filter)
                .expression_attribute_values(":provider", text(*name));
            for (placeholder, value) in values {
                query = query.expression_attribute_values(*placeholder, value.clone());
            }
            let mut items = query.into_paginator().items().send();
            while let Some(item) = items.next().await {
                accounts.push(decode_item(item.map_err(dependency_error)?)?);
            }
        }
        Ok(accounts)
    }

    /// Every account of a platform whose tokens have an expiry (the ones a provider refreshes):
    /// the scheduled keeper's work list, growing with those accounts, not with the table.
    pub async fn with_expiring_tokens(&self) -> Result<Vec<AccountItem>, Error> {
        self.of_providers(Provider::ALL, "attribute_exists(expires_at)", &[])
            .await
    }
}
