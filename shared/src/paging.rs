//! Page sizes of list queries: one type, one range, one error for every list route.

use serde::{Deserialize, Deserializer};

/// A page size from a query string: 1-[`PageLimit::MAX`]. Out of range it is refused while the
/// query is read (a 422 naming `limit`), so handlers only ever see a valid size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    /// Largest page.
    pub const MAX: u32 = 100;

    /// The size, or `default` when the query gave none.
    pub fn or(limit: Option<Self>, default: u32) -> u32 {
        limit.map_or(default, |limit| limit.0)
    }
}

impl<'de> Deserialize<'de> for PageLimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u32::deserialize(deserializer)?;
        if (1..=Self::MAX).contains(&value) {
            Ok(Self(value))
        } else {
            Err(serde::de::Error::invalid_value(
                serde::de::Unexpected::Unsigned(u64::from(value)),
                &"a number from 1 to 100",
            ))
        }
    }
}
