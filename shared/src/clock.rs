//! Time as the domain reads it: the system clock in production, a clock that tests move
//! (a day turning for a sender's daily cap) without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

/// Seconds in a day.
pub const DAY_SECONDS: i64 = 86_400;

/// A source of the current time.
#[derive(Clone, Default)]
pub struct Clock {
    /// Seconds added to the system time; moved by [`Clock::advance`] (tests only).
    offset: Option<Arc<AtomicI64>>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Clock")
            .field("offset_seconds", &self.offset_seconds())
            .finish()
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that starts at the system time and moves only forward, by [`Clock::advance`].
    /// Clones share the offset, so the worker a test built sees the test's advances.
    pub fn adjustable() -> Self {
        Self {
            offset: Some(Arc::new(AtomicI64::new(0))),
        }
    }

    /// Moves an adjustable clock forward (a no-op on the system clock).
    pub fn advance(&self, seconds: i64) {
        if let Some(offset) = &self.offset {
            offset.fetch_add(seconds, Ordering::SeqCst);
        }
    }

    fn offset_seconds(&self) -> i64 {
        self.offset
            .as_ref()
            .map_or(0, |offset| offset.load(Ordering::SeqCst))
    }

    /// The current instant as this clock tells it (UTC plus its offset).
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::seconds(self.offset_seconds())
    }

    /// Now, in seconds since the Unix epoch.
    pub fn epoch_seconds(&self) -> i64 {
        self.now().unix_timestamp()
    }

    /// Now as RFC 3339 (UTC, seconds plus fraction), the form stored timestamps take.
    pub fn now_rfc3339(&self) -> String {
        self.now()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    }
}

/// An epoch second as RFC 3339 (UTC); the epoch itself for one out of range.
pub fn rfc3339(epoch_seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(epoch_seconds)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// The UTC day of an instant, `YYYY-MM-DD`.
pub fn utc_day(epoch_seconds: i64) -> String {
    let date = OffsetDateTime::from_unix_timestamp(epoch_seconds)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// The first second of the UTC day after the one `epoch_seconds` falls in.
pub fn next_utc_midnight(epoch_seconds: i64) -> i64 {
    (epoch_seconds.div_euclid(DAY_SECONDS) + 1) * DAY_SECONDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_turn_at_utc_midnight() {
        // 2026-11-26T23:59:59Z and the second after it.
        let last_second = 1_795_737_599;
        assert_eq!(utc_day(last_second), "2026-11-26");
        assert_eq!(utc_day(last_second + 1), "2026-11-27");
        assert_eq!(next_utc_midnight(last_second), last_second + 1);
        assert_eq!(
            next_utc_midnight(last_second + 1),
            last_second + 1 + DAY_SECONDS
        );
    }

    #[test]
    fn an_adjustable_clock_moves_every_clone() {
        let clock = Clock::adjustable();
        let seen_by_worker = clock.clone();
        let before = seen_by_worker.epoch_seconds();
        clock.advance(DAY_SECONDS);
        assert!(seen_by_worker.epoch_seconds() - before >= DAY_SECONDS);
        let system = Clock::system();
        system.advance(DAY_SECONDS);
        assert!(system.epoch_seconds() - before < 60);
    }
}
