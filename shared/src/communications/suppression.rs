//! Per-user suppression list: addresses outreach must not write to again, and why. Kept in the
//! targets table, in the user's partition (sort key `S#<address>`), beside the targets it
//! protects. Complaints and hard bounces are permanent; an unsubscribe can be lifted only when
//! the user asks (`DELETE /api/user/suppressions/{address}`).

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::aws::dependency_error;
use crate::error::Error;
use crate::ids::UserId;
use crate::storage::{conditional, user_key};

const SUPPRESSION_PREFIX: &str = "S#";

/// Why an address is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    /// The person unsubscribed (one click, or the unsubscribe page).
    Unsubscribed,
    /// A permanent bounce.
    Bounced,
    /// A spam complaint.
    Complained,
}

impl SuppressionReason {
    /// The wire name (also the `skipped` reason of initiate).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unsubscribed => "unsubscribed",
            Self::Bounced => "bounced",
            Self::Complained => "complained",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Unsubscribed, Self::Bounced, Self::Complained]
            .into_iter()
            .find(|reason| reason.as_str() == text)
    }
}

/// One suppressed address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Suppression {
    /// The address, lower-case.
    pub address: String,
    /// Why.
    pub reason: SuppressionReason,
    /// RFC 3339.
    pub suppressed_at: String,
}

/// Answer of `GET /api/user/suppressions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressionList {
    /// Every suppressed address of the user.
    pub suppressions: Vec<Suppression>,
}

/// Suppressions in the targets table.
#[derive(Clone)]
pub struct SuppressionStore {
    dynamodb: Client,
    table: String,
}

impl SuppressionStore {
    /// A store over the targets table.
    pub fn new(dynamodb: Client, table: impl Into<String>) -> Self {
        Self {
            dynamodb,
            table: table.into(),
        }
    }

    /// Suppresses an address; idempotent. A stronger reason replaces an unsubscribe, never
    /// the other way round.
    pub async fn suppress(
        &self,
        user: &UserId,
        address: &str,
        reason: SuppressionReason,
    ) -> Result<(), Error> {
        let address = address.trim().to_lowercase();
        let mut key = user_key(
            user.as_str(),
            "sk",
            &format!("{SUPPRESSION_PREFIX}{address}"),
        );
        let result = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .set_item(Some({
                key.insert("address".into(), AttributeValue::S(address.clone()));
                key.insert("reason".into(), AttributeValue::S(reason.as_str().into()));
                key.insert(
                    "suppressed_at".into(),
                    AttributeValue::S(crate::now_rfc3339()),
                );
                key
            }))
            // Keep the first record of the same reason (its time), and never weaken a
            // complaint or bounce into an unsubscribe.
            .condition_expression("attribute_not_exists(sk) OR (reason = :weak AND :new <> :weak)")
            .expression_attribute_values(":weak", AttributeValue::S("unsubscribed".into()))
            .expression_attribute_values(":new", AttributeValue::S(reason.as_str().into()))
            .send()
            .await;
        conditional(result).map(|_| ())
    }

    /// Whether one address of a user is suppressed (read consistently, before each send).
    pub async fn is_suppressed(&self, user: &UserId, address: &str) -> Result<bool, Error> {
        let key = user_key(
            user.as_str(),
            "sk",
            &format!("{SUPPRESSION_PREFIX}{}", address.trim().to_lowercase()),
        );
        Ok(crate::storage::read_item(&self.dynamodb, &self.table, key)
            .await?
            .is_some())
    }

    /// Every suppression of a user, by address.
    pub async fn all(&self, user: &UserId) -> Result<HashMap<String, Suppression>, Error> {
        let mut found = HashMap::new();
        let mut start = None;
        loop {
            let page = self
                .dynamodb
                .query()
                .table_name(&self.table)
                .key_condition_expression("user_id = :user AND begins_with(sk, :prefix)")
                .expression_attribute_values(":user", AttributeValue::S(user.as_str().into()))
                .expression_attribute_values(
                    ":prefix",
                    AttributeValue::S(SUPPRESSION_PREFIX.into()),
                )
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(dependency_error)?;
            for item in page.items() {
                let text = |name: &str| match item.get(name) {
                    Some(AttributeValue::S(value)) => Some(value.clone()),
                    _ => None,
                };
                if let (Some(address), Some(reason), Some(at)) =
                    (text("address"), text("reason"), text("suppressed_at"))
                    && let Some(reason) = SuppressionReason::parse(&reason)
                {
                    found.insert(
                        address.clone(),
                        Suppression {
                            address,
                            reason,
                            suppressed_at: at,
                        },
                    );
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(found);
            }
        }
    }

    /// Lifts an unsubscribe the user asked to lift: 404 when none, 409 for a bounce or a
    /// complaint (permanent).
    pub async fn lift(&self, user: &UserId, address: &str) -> Result<(), Error> {
        let address = address.trim().to_lowercase();
        let result = self
            .dynamodb
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(user_key(
                user.as_str(),
                "sk",
                &format!("{SUPPRESSION_PREFIX}{address}"),
            )))
            .condition_expression("attribute_exists(sk) AND reason = :weak")
            .expression_attribute_values(":weak", AttributeValue::S("unsubscribed".into()))
            .send()
            .await;
        if conditional(result)? {
            return Ok(());
        }
        match self.all(user).await?.get(&address) {
            None => Err(Error::NotFound),
            Some(_) => Err(Error::Conflict {
                code: "suppression_permanent",
                message: "Bounced and complained addresses stay suppressed.".into(),
                existing_id: None,
            }),
        }
    }
}
