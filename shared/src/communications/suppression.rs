//! Per-user suppression list: addresses outreach must not write to again, and why. Kept in the
//! targets table, in the user's partition (sort key `S#<address>`), beside the targets it
//! protects. Who may lift one depends on whose decision it was:
//! - an unsubscribe or a complaint is the recipient's: the user cannot lift it (409
//!   `suppression_owned_by_recipient`); the recipient can undo an unsubscribe from the same
//!   signed page it was made on (a complaint stays: it came through the mailbox provider);
//! - a bounce is the mailbox's answer, not a person's choice: the user may lift it
//!   (`DELETE /api/user/suppressions/{address}`), e.g. after the address was fixed.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::aws::dependency_error;
use crate::error::Error;
use crate::ids::UserId;
use crate::storage::{conditional, text, user_key};

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

    /// Whether the user (the sender) may lift it: only a bounce.
    pub fn liftable_by_sender(self) -> bool {
        self == Self::Bounced
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
    /// What suppressed it: an unsubscribe, a bounce or a complaint.
    pub reason: SuppressionReason,
    /// When the address was suppressed (RFC 3339, UTC).
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
    /// What `suppressed_at` reads.
    clock: crate::clock::Clock,
}

impl SuppressionStore {
    /// A store over the targets table.
    pub fn new(dynamodb: Client, table: impl Into<String>) -> Self {
        Self {
            dynamodb,
            table: table.into(),
            clock: crate::clock::Clock::system(),
        }
    }

    /// The same store, telling time by `clock`.
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Suppresses an address; idempotent: `true` when this call suppressed it (or strengthened
    /// the reason), `false` when it already was. A stronger reason replaces an unsubscribe,
    /// never the other way round.
    pub async fn suppress(
        &self,
        user: &UserId,
        address: &str,
        reason: SuppressionReason,
    ) -> Result<bool, Error> {
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
                key.insert("address".into(), text(address.clone()));
                key.insert("reason".into(), text(reason.as_str()));
                key.insert("suppressed_at".into(), text(self.clock.now_rfc3339()));
                key
            }))
            // Keep the first record of the same reason (its time), and never weaken a
            // complaint or bounce into an unsubscribe.
            .condition_expression("attribute_not_exists(sk) OR (reason = :weak AND :new <> :weak)")
            .expression_attribute_values(":weak", text("unsubscribed"))
            .expression_attribute_values(":new", text(reason.as_str()))
            .send()
            .await;
        conditional(result)
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
        let mut items = self
            .dynamodb
            .query()
            .table_name(&self.table)
            .key_condition_expression("user_id = :user AND begins_with(sk, :prefix)")
            .expression_attribute_values(":user", text(user.as_str()))
            .expression_attribute_values(":prefix", text(SUPPRESSION_PREFIX))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = items.next().await {
            if let Some(suppression) = suppression_of(&item.map_err(dependency_error)?) {
                found.insert(suppression.address.clone(), suppression);
            }
        }
        Ok(found)
    }

    /// Suppressions of the given addresses only (lower-case), 100 per BatchGetItem: what
    /// initiate checks, instead of reading the user's whole list.
    pub async fn of_addresses(
        &self,
        user: &UserId,
        addresses: &[String],
    ) -> Result<HashMap<String, Suppression>, Error> {
        let keys = addresses
            .iter()
            .map(|address| {
                let address = address.trim().to_lowercase();
                let key = user_key(
                    user.as_str(),
                    "sk",
                    &format!("{SUPPRESSION_PREFIX}{address}"),
                );
                (address, key)
            })
            .collect();
        Ok(
            crate::storage::batch_get_by(&self.dynamodb, &self.table, keys)
                .await?
                .into_iter()
                .filter_map(|(address, item)| Some((address, suppression_of(&item)?)))
                .collect(),
        )
    }

    /// One address's suppression, if any (read consistently).
    pub async fn of_address(
        &self,
        user: &UserId,
        address: &str,
    ) -> Result<Option<Suppression>, Error> {
        let key = user_key(
            user.as_str(),
            "sk",
            &format!("{SUPPRESSION_PREFIX}{}", address.trim().to_lowercase()),
        );
        Ok(crate::storage::read_item(&self.dynamodb, &self.table, key)
            .await?
            .as_ref()
            .and_then(suppression_of))
    }

    /// Lifts a suppression the user asked to lift: only a bounce (204); an unsubscribe or a
    /// complaint is the recipient's (409 `suppression_owned_by_recipient`); 404 when none.
    pub async fn lift_by_sender(&self, user: &UserId, address: &str) -> Result<(), Error> {
        if self
            .lift_if(user, address, SuppressionReason::Bounced)
            .await?
        {
            return Ok(());
        }
        match self.of_address(user, address).await? {
            None => Err(Error::NotFound),
            Some(_) => Err(Error::Conflict {
                code: "suppression_owned_by_recipient",
                message:
                    "The recipient unsubscribed or complained; only the recipient can undo it."
                        .into(),
                existing_id: None,
            }),
        }
    }

    /// Undoes an unsubscribe at the recipient's request (from its signed page); `false` when
    /// the address is not unsubscribed (never suppressed, or a bounce or a complaint, which
    /// stay).
    pub async fn lift_unsubscribe(&self, user: &UserId, address: &str) -> Result<bool, Error> {
        self.lift_if(user, address, SuppressionReason::Unsubscribed)
            .await
    }

    /// Deletes an address's suppression if it is for `reason`.
    async fn lift_if(
        &self,
        user: &UserId,
        address: &str,
        reason: SuppressionReason,
    ) -> Result<bool, Error> {
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
            .condition_expression("attribute_exists(sk) AND reason = :reason")
            .expression_attribute_values(":reason", text(reason.as_str()))
            .send()
            .await;
        conditional(result)
    }
}

/// A suppression item read back; `None` for an item of another shape.
fn suppression_of(item: &HashMap<String, AttributeValue>) -> Option<Suppression> {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value.clone()),
        _ => None,
    };
    Some(Suppression {
        address: text("address")?,
        reason: SuppressionReason::parse(&text("reason")?)?,
        suppressed_at: text("suppressed_at")?,
    })
}
