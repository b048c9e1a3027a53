//! The recipients' opt-outs as use cases of the orchestrator: the signed unsubscribe link (check,
//! unsubscribe, undo) and the user's view of the suppression list (list, lift a bounce). The
//! rules are in [`crate::communications::suppression`].

use super::super::suppression::{SuppressionList, SuppressionReason};
use super::super::unsubscribe::Unsubscription;
use crate::error::Error;
use crate::ids::UserId;
use crate::webhooks::{EventType, WebhookEvent};

use super::Outreach;

impl Outreach {
    /// What an unsubscribe token names; `None` for a token that is not ours or was altered.
    pub async fn unsubscription(&self, token: &str) -> Result<Option<Unsubscription>, Error> {
        self.unsubscribe.verify(token).await
    }

    /// Unsubscribes the address a token names (idempotent); `Ok(false)` for a bad token.
    pub async fn unsubscribe(&self, token: &str) -> Result<bool, Error> {
        let Some(unsubscription) = self.unsubscribe.verify(token).await? else {
            return Ok(false);
        };
        let user = unsubscription.user_id;
        let suppressed = self
            .suppressions
            .suppress(
                &user,
                &unsubscription.address,
                SuppressionReason::Unsubscribed,
            )
            .await?;
        tracing::info!(user_id = %user, target_id = %unsubscription.target_id, "a recipient unsubscribed");
        // Once per unsubscribe: a second click changes nothing and tells nobody again.
        if suppressed {
            let now = self.clock.now_rfc3339();
            let event = WebhookEvent::new(
                &user,
                EventType::CommunicationUnsubscribed,
                &format!("{}\n{now}", unsubscription.target_id),
                serde_json::json!({
                    "target_id": unsubscription.target_id,
                    "channel": "email",
                    "status": "unsubscribed",
                }),
                &self.clock,
            );
            self.runs.events().publish(event).await;
        }
        Ok(true)
    }

    /// The user's suppressed addresses, by address.
    pub async fn suppressions(&self, user: &UserId) -> Result<SuppressionList, Error> {
        let mut suppressions: Vec<_> = self.suppressions.all(user).await?.into_values().collect();
        suppressions.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(SuppressionList { suppressions })
    }

    /// Lifts a bounce at the user's request; an unsubscribe or a complaint is the
    /// recipient's (409 `suppression_owned_by_recipient`).
    pub async fn lift_suppression(&self, user: &UserId, address: &str) -> Result<(), Error> {
        self.suppressions.lift_by_sender(user, address).await
    }

    /// Whether the address a token names is unsubscribed now; `None` for a bad token.
    pub async fn unsubscribed(&self, token: &str) -> Result<Option<bool>, Error> {
        let Some(unsubscription) = self.unsubscribe.verify(token).await? else {
            return Ok(None);
        };
        let suppression = self
            .suppressions
            .of_address(&unsubscription.user_id, &unsubscription.address)
            .await?;
        Ok(Some(suppression.is_some_and(|s| {
            s.reason == SuppressionReason::Unsubscribed
        })))
    }

    /// The recipient undoes its unsubscribe from the same signed page (idempotent; a bounce
    /// or a complaint stays); `Ok(false)` for a bad token.
    pub async fn resubscribe(&self, token: &str) -> Result<bool, Error> {
        let Some(unsubscription) = self.unsubscribe.verify(token).await? else {
            return Ok(false);
        };
        if self
            .suppressions
            .lift_unsubscribe(&unsubscription.user_id, &unsubscription.address)
            .await?
        {
            tracing::info!(user_id = %unsubscription.user_id, target_id = %unsubscription.target_id, "a recipient undid an unsubscribe");
        }
        Ok(true)
    }
}
