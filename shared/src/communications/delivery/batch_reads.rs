//! What the deliveries of one worker batch read once and share: each account, its decrypted
//! configuration and its sender's owner (read on first use, once per batch); the suppressions
//! of the batch's addresses (one `BatchGetItem` per user, before anything is sent); and each
//! sender's daily-cap slots, taken for all of the batch's emails of that sender in one
//! conditional update. A batch lasts seconds: what is read at its start is what a send right
//! after would have read (docs/benchmarks.md, "AWS calls per email").

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value};

use super::super::model::Channel;
use super::super::read_once::ReadOnce;
use super::super::store::CommunicationItem;
use super::super::suppression::{Suppression, SuppressionStore};
use crate::accounts::store::{AccountItem, SenderClaim};
use crate::ids::{AccountId, UserId};

type AccountKey = (UserId, AccountId);
type AddressKey = (UserId, String);

/// Reads shared by the deliveries of one batch (see the module's documentation).
#[derive(Default)]
pub struct BatchReads {
    pub(super) accounts: ReadOnce<AccountKey, Option<AccountItem>>,
    pub(super) sender_owners: ReadOnce<String, Option<SenderClaim>>,
    pub(super) configurations: ReadOnce<AccountKey, (AccountItem, Map<String, Value>)>,
    suppressions: BatchSuppressions,
    pub(super) slots: DailySlots,
}

impl BatchReads {
    /// Reads the suppressions of the addresses of `items` (emails only), one `BatchGetItem`
    /// per user; a user whose read fails is left unread, and each of their sends reads its own
    /// address as before.
    pub async fn for_items(suppressions: &SuppressionStore, items: &[&CommunicationItem]) -> Self {
        let mut by_user: HashMap<&UserId, Vec<String>> = HashMap::new();
        for item in items {
            if item.channel == Channel::Email
                && let Some(address) = item.recipient.email.as_deref()
            {
                by_user
                    .entry(&item.user_id)
                    .or_default()
                    .push(normalized(address));
            }
        }
        let mut read = BatchSuppressions::default();
        // The users' reads side by side: a batch's wait is its slowest user's, not their sum.
        let reads =
            futures::future::join_all(by_user.into_iter().map(|(user, addresses)| async move {
                let found = suppressions.of_addresses(user, &addresses).await;
                (user, addresses, found)
            }))
            .await;
        for (user, addresses, found) in reads {
            match found {
                Ok(found) => {
                    for address in addresses {
                        read.looked_up.insert((user.clone(), address));
                    }
                    for (address, suppression) in found {
                        read.found.insert((user.clone(), address), suppression);
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %crate::error::ErrorChain(&error), "suppressions not read for the batch; each send reads its own");
                }
            }
        }
        Self {
            suppressions: read,
            ..Self::default()
        }
    }

    /// The suppression of `address`, when it was read with the batch: `Some(None)` when it is
    /// not suppressed, `None` when it was not read (the caller reads it itself).
    pub fn suppression_of(&self, user: &UserId, address: &str) -> Option<Option<&Suppression>> {
        let key = (user.clone(), normalized(address));
        self.suppressions
            .looked_up
            .contains(&key)
            .then(|| self.suppressions.found.get(&key))
    }

    /// Says which communications of the batch will be delivered, with the zone whose days
    /// their sender's cap counts: each sender's first send takes the cap's slots for all of its
    /// emails among them that can go out (an address, not suppressed) in one update.
    pub fn expect_sends<'a>(
        &mut self,
        sends: impl IntoIterator<Item = (&'a CommunicationItem, Option<&'a str>)>,
    ) {
        for (item, zone) in sends {
            let Some(address) = item.recipient.email.as_deref() else {
                continue;
            };
            if item.channel != Channel::Email
                || matches!(self.suppression_of(&item.user_id, address), Some(Some(_)))
            {
                continue;
            }
            *self
                .slots
                .wanted
                .entry(slot_key(&item.user_id, &item.account_id, zone))
                .or_default() += 1;
        }
    }
}

fn normalized(address: &str) -> String {
    address.trim().to_lowercase()
}

#[derive(Default)]
struct BatchSuppressions {
    looked_up: HashSet<AddressKey>,
    found: HashMap<AddressKey, Suppression>,
}

/// Which sender, and whose days count (the run window's zone, UTC without one).
type SlotKey = (UserId, AccountId, Option<String>);

fn slot_key(user: &UserId, account: &AccountId, zone: Option<&str>) -> SlotKey {
    (user.clone(), account.clone(), zone.map(str::to_owned))
}

/// The daily-cap slots of one batch: how many of each sender's emails are expected, and the
/// slots already taken for them.
#[derive(Default)]
pub(crate) struct DailySlots {
    wanted: HashMap<SlotKey, u32>,
    pools: Mutex<HashMap<(SlotKey, String), SharedPool>>,
}

type SharedPool = Arc<tokio::sync::Mutex<SlotPool>>;

/// One sender's slots on one day.
#[derive(Default)]
pub(crate) struct SlotPool {
    /// Slots taken and not used yet.
    pub prepaid: u32,
    /// Whether the batch already tried to take all of its slots at once.
    pub bulk_tried: bool,
}

impl DailySlots {
    /// How many emails of this sender the batch expects to send (at least the one asking).
    pub fn wanted(&self, user: &UserId, account: &AccountId, zone: Option<&str>) -> u32 {
        self.wanted
            .get(&slot_key(user, account, zone))
            .copied()
            .unwrap_or(1)
            .max(1)
    }

    /// The pool of this sender's slots on `day` (one lock per sender and day: its takes are
    /// made one at a time).
    pub fn pool(
        &self,
        user: &UserId,
        account: &AccountId,
        zone: Option<&str>,
        day: &str,
    ) -> SharedPool {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            pools
                .entry((slot_key(user, account, zone), day.to_owned()))
                .or_default(),
        )
    }
}
