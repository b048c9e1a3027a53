//! Follow-ups, checked again right before they go out: what stops one (the person replied since
//! the sequence started, their address was suppressed, the target was deleted), the batch's
//! read of its follow-ups' targets (step 2 of a batch) and the decision for each claimed
//! communication (step 3: stopped, put off to the run's window, or delivered).

use std::collections::HashMap;

use super::CommunicationsWorker;
use super::batch::{Claimed, Next};
use crate::communications::delivery::BatchReads;
use crate::communications::reason::StopReason;
use crate::communications::store::{CommunicationItem, RunItem};
use crate::error::{Error, ErrorChain};
use crate::ids::{TargetId, UserId};
use crate::targets::model::TargetView;

/// What stops a follow-up before it goes out: the person replied (any channel, any run) since
/// the sequence started, or their address is suppressed (unsubscribed, bounced, complained).
#[derive(Clone)]
pub struct FollowUpStops {
    targets: crate::targets::TargetStore,
    suppressions: crate::communications::suppression::SuppressionStore,
}

impl FollowUpStops {
    /// The checks over the targets and their suppression list.
    pub fn new(
        targets: crate::targets::TargetStore,
        suppressions: crate::communications::suppression::SuppressionStore,
    ) -> Self {
        Self {
            targets,
            suppressions,
        }
    }

    /// Why `item` (a follow-up of `run`, to `target`) must not go out, if it must not; its
    /// address's suppression as the batch read it (or read now when the batch did not).
    async fn reason(
        &self,
        item: &CommunicationItem,
        run: &RunItem,
        target: &crate::targets::model::TargetView,
        reads: &BatchReads,
    ) -> Result<Option<StopReason>, Error> {
        // RFC 3339 in UTC with the same precision sorts as time does.
        if target
            .last_replied_at
            .as_deref()
            .is_some_and(|replied| replied >= run.created_at.as_str())
        {
            return Ok(Some(StopReason::Replied));
        }
        if item.channel != crate::communications::model::Channel::Email {
            return Ok(None);
        }
        let Some(address) = item.recipient.email.as_deref() else {
            return Ok(None);
        };
        let suppression = match reads.suppression_of(&item.user_id, address) {
            Some(found) => found.cloned(),
            None => self.suppressions.of_address(&item.user_id, address).await?,
        };
        Ok(suppression.map(|suppression| StopReason::Suppressed(suppression.reason)))
    }
}

impl CommunicationsWorker {
    /// Step 2: the targets of the batch's follow-ups, one `BatchGetItem` per user (a user whose
    /// read fails is left out: each of their follow-ups reads its own target).
    pub(super) async fn follow_up_targets(
        &self,
        items: &[&CommunicationItem],
    ) -> HashMap<(UserId, TargetId), Option<TargetView>> {
        let mut found = HashMap::new();
        let Some(stops) = &self.stops else {
            return found;
        };
        let mut by_user: HashMap<&UserId, Vec<TargetId>> = HashMap::new();
        for item in items.iter().filter(|item| item.step > 1) {
            by_user
                .entry(&item.user_id)
                .or_default()
                .push(item.target_id);
        }
        // The users' reads side by side: a batch's wait is its slowest user's, not their sum.
        let reads = futures::future::join_all(by_user.into_iter().map(|(user, ids)| async move {
            let views = stops.targets.active_by_ids(user, &ids).await;
            (user, ids, views)
        }))
        .await;
        for (user, ids, views) in reads {
            match views {
                Ok(views) => {
                    for (id, view) in ids.into_iter().zip(views) {
                        found.insert((user.clone(), id), view);
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %ErrorChain(&error), "follow-ups' targets not read for the batch; each reads its own");
                }
            }
        }
        found
    }

    /// Step 3's decision for one claimed communication.
    pub(super) async fn next_step(
        &self,
        one: &Claimed,
        targets: &HashMap<(UserId, TargetId), Option<TargetView>>,
        reads: &BatchReads,
    ) -> Result<Next, Error> {
        let (item, run) = (&one.item, &one.run);
        // A follow-up: checked again right before it goes out, whatever was true when it was
        // scheduled.
        if item.step > 1
            && let Some(stops) = &self.stops
        {
            let target = match targets.get(&(item.user_id.clone(), item.target_id)) {
                Some(view) => view.clone(),
                None => stops
                    .targets
                    .get(&item.user_id, item.target_id)
                    .await?
                    .map(|stored| stored.target),
            };
            let Some(target) = target else {
                return Ok(Next::Stop(StopReason::TargetDeleted));
            };
            if let Some(reason) = stops.reason(item, run, &target, reads).await? {
                return Ok(Next::Stop(reason));
            }
        }
        // Outside the run's send window (in the target's zone when it has one): it waits,
        // scheduled, for the next opening; claimed first so two deliveries never both decide.
        if let Some(window) = &run.window
            && let Some(opening) = window.next_opening(
                item.recipient.timezone.as_deref(),
                self.clock.epoch_seconds(),
            )
        {
            return Ok(Next::Wait(opening));
        }
        Ok(Next::Deliver)
    }
}
