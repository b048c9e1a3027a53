//! Send windows: a run's `schedule` (time zone, days, start and end of day) says when its
//! messages may go out; a target's own time zone overrides the run's. Times are computed with the
//! bundled tz database (jiff), so a window opens at its wall-clock time across daylight-saving
//! changes (a start inside a skipped hour opens at the first instant after it).

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;

const DAY_NAMES: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

/// A checked send window, as the run keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendWindow {
    /// IANA time zone of the run (a target's own overrides it).
    pub timezone: String,
    /// Days it opens on (`mon` … `sun`).
    pub days: Vec<String>,
    /// Opening, `HH:MM`.
    pub start: String,
    /// Closing, `HH:MM` (after `start`: no window runs past midnight).
    pub end: String,
}

fn clock_time(text: &str) -> Option<Time> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    Time::new(hours.parse().ok()?, minutes.parse().ok()?, 0, 0).ok()
}

impl SendWindow {
    /// A window from the request's fields, or the problems, each named under `schedule.`.
    pub fn parse(
        timezone: Option<&str>,
        days: Option<&[String]>,
        start: &str,
        end: &str,
    ) -> Result<Self, Vec<FieldError>> {
        let mut problems = Vec::new();
        let timezone = match timezone {
            None => Some("UTC".to_owned()),
            Some(name) => crate::targets::personal::time_zone(name),
        };
        if timezone.is_none() {
            problems.push(FieldError::new(
                "schedule.timezone",
                "is not an IANA time zone name",
            ));
        }
        let days: Vec<String> = match days {
            None => DAY_NAMES
                .iter()
                .map(|(name, _)| (*name).to_owned())
                .collect(),
            Some(days) => days
                .iter()
                .map(|day| day.trim().to_ascii_lowercase())
                .collect(),
        };
        if days.is_empty()
            || days
                .iter()
                .any(|day| !DAY_NAMES.iter().any(|(name, _)| name == day))
        {
            problems.push(FieldError::new(
                "schedule.days",
                "must be 1-7 of mon, tue, wed, thu, fri, sat, sun",
            ));
        }
        match (clock_time(start), clock_time(end)) {
            (Some(open), Some(close)) if open < close => {}
            (None, _) => problems.push(FieldError::new("schedule.start", "must be HH:MM")),
            (_, None) => problems.push(FieldError::new("schedule.end", "must be HH:MM")),
            _ => problems.push(FieldError::new("schedule.end", "must be after start")),
        }
        match timezone {
            Some(timezone) if problems.is_empty() => Ok(Self {
                timezone,
                days,
                start: start.to_owned(),
                end: end.to_owned(),
            }),
            _ => Err(problems),
        }
    }

    /// `None` when `now` (epoch seconds) is inside the window in `zone` (the target's, else the
    /// run's), else the epoch second it next opens.
    pub fn next_opening(&self, zone: Option<&str>, now: i64) -> Option<i64> {
        let tz = zone
            .and_then(|name| TimeZone::get(name).ok())
            .or_else(|| TimeZone::get(&self.timezone).ok())
            .unwrap_or(TimeZone::UTC);
        let (Some(start), Some(end)) = (clock_time(&self.start), clock_time(&self.end)) else {
            return None;
        };
        let now_zoned = jiff::Timestamp::from_second(now)
            .ok()?
            .to_zoned_datetime(tz.clone());
        let days: Vec<Weekday> = DAY_NAMES
            .iter()
            .filter(|(name, _)| self.days.iter().any(|day| day == name))
            .map(|(_, weekday)| *weekday)
            .collect();
        for offset in 0..=7 {
            let date = now_zoned
                .date()
                .checked_add(jiff::Span::new().days(offset))
                .ok()?;
            if !days.contains(&date.weekday()) {
                continue;
            }
            let open = date.to_datetime(start).to_zoned_datetime(tz.clone()).ok()?;
            let close = date.to_datetime(end).to_zoned_datetime(tz.clone()).ok()?;
            if now_zoned >= open && now_zoned < close {
                return None;
            }
            if open > now_zoned {
                return Some(open.timestamp().as_second());
            }
        }
        // Unreachable with at least one day; never send outside, try again in a day.
        Some(now.saturating_add(86_400))
    }
}

/// The date (`YYYY-MM-DD`) at `now` in `zone`, and the epoch second its next day starts there;
/// `None` for an unknown zone.
pub fn day_in(zone: &str, now: i64) -> Option<(String, i64)> {
    let tz = TimeZone::get(zone).ok()?;
    let date = jiff::Timestamp::from_second(now)
        .ok()?
        .to_zoned_datetime(tz.clone())
        .date();
    let next = date
        .tomorrow()
        .ok()?
        .to_datetime(Time::midnight())
        .to_zoned_datetime(tz)
        .ok()?
        .timestamp()
        .as_second();
    Some((date.to_string(), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>().unwrap().as_second()
    }

    fn window(zone: &str, days: Option<&[&str]>) -> SendWindow {
        let days: Option<Vec<String>> = days.map(|d| d.iter().map(|s| (*s).to_owned()).collect());
        SendWindow::parse(Some(zone), days.as_deref(), "09:00", "17:00").unwrap()
    }

    #[test]
    fn inside_the_window_sends_now_outside_waits_for_the_next_opening() {
        let weekdays = window("UTC", Some(&["mon", "tue", "wed", "thu", "fri"]));
        // Wednesday 2027-03-03, 10:00 UTC: open.
        assert_eq!(
            weekdays.next_opening(None, at("2027-03-03T10:00:00Z")),
            None
        );
        // 18:00: closed until Thursday 09:00.
        assert_eq!(
            weekdays.next_opening(None, at("2027-03-03T18:00:00Z")),
            Some(at("2027-03-04T09:00:00Z"))
        );
        // Friday evening: Monday morning.
        assert_eq!(
            weekdays.next_opening(None, at("2027-03-05T17:00:00Z")),
            Some(at("2027-03-08T09:00:00Z"))
        );
        // The target's zone wins: 10:00 UTC is 19:00 in Tokyo, closed until Thursday 09:00 JST.
        assert_eq!(
            weekdays.next_opening(Some("Asia/Tokyo"), at("2027-03-03T10:00:00Z")),
            Some(at("2027-03-04T00:00:00Z"))
        );
    }

    #[test]
    fn daylight_saving_changes_keep_the_wall_clock_opening() {
        let paris = window("Europe/Paris", None);
        // Spring forward (Sunday 2027-03-28, 02:00 -> 03:00): Saturday 18:00 CET waits for
        // Sunday 09:00 CEST, 07:00 UTC.
        assert_eq!(
            paris.next_opening(None, at("2027-03-27T17:00:00Z")),
            Some(at("2027-03-28T07:00:00Z"))
        );
        // Fall back (Sunday 2027-10-31, 03:00 -> 02:00): Saturday 20:00 CEST waits for Sunday
        // 09:00 CET, 08:00 UTC.
        assert_eq!(
            paris.next_opening(None, at("2027-10-30T18:00:00Z")),
            Some(at("2027-10-31T08:00:00Z"))
        );
        let new_york = window("America/New_York", None);
        // 2027-03-14 (EST -> EDT) and 2027-11-07 (EDT -> EST).
        assert_eq!(
            new_york.next_opening(None, at("2027-03-14T03:00:00Z")),
            Some(at("2027-03-14T13:00:00Z"))
        );
        assert_eq!(
            new_york.next_opening(None, at("2027-11-07T03:00:00Z")),
            Some(at("2027-11-07T14:00:00Z"))
        );
        // A window that starts inside the skipped hour opens at the first instant after it.
        let early = SendWindow::parse(Some("Europe/Paris"), None, "02:30", "04:00").unwrap();
        assert_eq!(
            early.next_opening(None, at("2027-03-27T23:00:00Z")),
            Some(at("2027-03-28T01:30:00Z"))
        );
    }

    #[test]
    fn a_day_is_the_zones_and_ends_at_its_midnight() {
        // 23:30 UTC on 2027-03-03 is already the 4th in Paris, whose next day starts 23:00 UTC.
        assert_eq!(
            day_in("Europe/Paris", at("2027-03-03T23:30:00Z")),
            Some(("2027-03-04".to_owned(), at("2027-03-04T23:00:00Z")))
        );
        assert_eq!(day_in("Mars/Base", 0), None);
    }

    #[test]
    fn a_window_is_checked_when_given() {
        let problems = |zone, days: Option<&[String]>, start, end| {
            SendWindow::parse(zone, days, start, end)
                .unwrap_err()
                .into_iter()
                .map(|p| p.field)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            problems(Some("Mars/Base"), None, "09:00", "17:00"),
            ["schedule.timezone"]
        );
        assert_eq!(
            problems(None, Some(&["funday".to_owned()]), "09:00", "17:00"),
            ["schedule.days"]
        );
        assert_eq!(problems(None, None, "9am", "17:00"), ["schedule.start"]);
        assert_eq!(problems(None, None, "17:00", "09:00"), ["schedule.end"]);
        assert!(SendWindow::parse(None, None, "00:00", "23:59").is_ok());
    }
}
