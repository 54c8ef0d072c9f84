//! Time arithmetic of the core in one place. History keeps its instants as [`Stamp`]s
//! (nanoseconds since the Unix epoch), so the cut-offs and durations of a tick are integer
//! arithmetic; chrono's calendar arithmetic on `DateTime<Utc>` cost about a quarter of a
//! decision. A tick's `now` is converted once. Stamps serialize as RFC 3339 instants, like
//! `DateTime<Utc>`, so stored histories read the same either way.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const NANOS: i64 = 1_000_000_000;

/// An instant: nanoseconds since 1970-01-01T00:00:00Z, saturating at the ends of the `i64`
/// range (years 1677 and 2262).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(i64);

/// The earliest instant capstan accepts as a tick's time: 1678-01-01T00:00:00Z. Stamps
/// saturate before 1677-09-21, where every window and rate-limit period would collapse
/// onto one instant; the inputs (`capstan decide`, `capstan simulate`) refuse times
/// outside [`EARLIEST_SECS`, `LATEST_SECS`) instead, with months of margin for windows.
pub const EARLIEST_SECS: i64 = -9_214_560_000;
/// The first instant after the accepted range: 2262-01-01T00:00:00Z.
pub const LATEST_SECS: i64 = 9_214_646_400;

/// `Err` with a message when `t` (Unix seconds) is outside the times capstan accepts.
pub fn check_time_secs(t: i64) -> Result<(), String> {
    if (EARLIEST_SECS..LATEST_SECS).contains(&t) {
        Ok(())
    } else {
        Err(format!(
            "time {} is outside the years 1678 to 2261 that capstan handles",
            DateTime::from_timestamp(t, 0)
                .map_or_else(|| format!("{t} (Unix seconds)"), |d| d.to_rfc3339())
        ))
    }
}

/// [`check_time_secs`] for an instant.
pub fn check_time(t: DateTime<Utc>) -> Result<(), String> {
    check_time_secs(t.timestamp())
}

impl Stamp {
    /// The earliest instant a stamp holds (1677-09-21).
    pub const MIN: Stamp = Stamp(i64::MIN);
    /// The latest instant a stamp holds (2262-04-11): "never" for windows that do not end.
    pub const MAX: Stamp = Stamp(i64::MAX);

    pub fn from_datetime(t: DateTime<Utc>) -> Stamp {
        match t.timestamp_nanos_opt() {
            Some(n) => Stamp(n),
            None if t.timestamp() < 0 => Stamp::MIN,
            None => Stamp::MAX,
        }
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.0)
    }

    /// `self + secs`, saturating.
    pub fn shift(self, secs: i64) -> Stamp {
        match secs.checked_mul(NANOS) {
            Some(d) => Stamp(self.0.saturating_add(d)),
            None if secs < 0 => Stamp::MIN,
            None => Stamp::MAX,
        }
    }

    /// Whole seconds from `earlier` to `self`, truncated toward zero.
    pub fn secs_since(self, earlier: Stamp) -> i64 {
        self.0.saturating_sub(earlier.0) / NANOS
    }
}

impl From<DateTime<Utc>> for Stamp {
    fn from(t: DateTime<Utc>) -> Self {
        Stamp::from_datetime(t)
    }
}

impl From<Stamp> for DateTime<Utc> {
    fn from(s: Stamp) -> Self {
        s.to_datetime()
    }
}

impl fmt::Debug for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_datetime())
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_datetime())
    }
}

impl Serialize for Stamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_datetime().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Stamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DateTime::<Utc>::deserialize(d).map(Stamp::from_datetime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_and_saturates() {
        let t = Stamp::from(DateTime::from_timestamp(1_700_000_000, 5).unwrap());
        assert_eq!(t.shift(-90).to_datetime().timestamp(), 1_699_999_910);
        assert_eq!(t.shift(-90).to_datetime().timestamp_subsec_nanos(), 5);
        assert_eq!(t.secs_since(t.shift(-90)), 90);
        assert_eq!(t.shift(-90).secs_since(t), -90);
        assert_eq!(Stamp::MAX.shift(10), Stamp::MAX);
        assert_eq!(Stamp::MIN.shift(-10), Stamp::MIN);
        assert_eq!(t.shift(i64::MAX), Stamp::MAX);
        assert_eq!(t.shift(i64::MIN), Stamp::MIN);
        assert_eq!(Stamp::MAX.secs_since(Stamp::MIN), i64::MAX / NANOS);
    }

    #[test]
    fn agrees_with_chrono_and_truncates_toward_zero() {
        let a: DateTime<Utc> = "2026-11-27T10:00:00.750Z".parse().unwrap();
        let b: DateTime<Utc> = "2026-11-27T10:00:02.250Z".parse().unwrap();
        let (sa, sb) = (Stamp::from(a), Stamp::from(b));
        assert_eq!(sb.secs_since(sa), (b - a).num_seconds());
        assert_eq!(sa.secs_since(sb), (a - b).num_seconds());
        assert_eq!(sa.to_datetime(), a);
        assert!(sa < sb);
    }

    #[test]
    fn the_accepted_range_is_inside_the_stamps_and_named() {
        let first = DateTime::from_timestamp(EARLIEST_SECS, 0).unwrap();
        let end = DateTime::from_timestamp(LATEST_SECS, 0).unwrap();
        assert_eq!(first.to_rfc3339(), "1678-01-01T00:00:00+00:00");
        assert_eq!(end.to_rfc3339(), "2262-01-01T00:00:00+00:00");
        assert!(Stamp::MIN < Stamp::from(first) && Stamp::from(end) < Stamp::MAX);
        assert!(check_time(first).is_ok());
        assert!(check_time(end - chrono::Duration::seconds(1)).is_ok());
        let e = check_time(end).unwrap_err();
        assert!(
            e.contains("2262-01-01") && e.contains("1678 to 2261"),
            "{e}"
        );
        assert!(check_time_secs(i64::MIN)
            .unwrap_err()
            .contains("Unix seconds"));
        assert!(check_time(first - chrono::Duration::seconds(1)).is_err());
    }

    #[test]
    fn saturates_outside_the_nanosecond_range() {
        assert_eq!(Stamp::from(DateTime::<Utc>::MAX_UTC), Stamp::MAX);
        assert_eq!(Stamp::from(DateTime::<Utc>::MIN_UTC), Stamp::MIN);
    }

    #[test]
    fn serializes_as_a_datetime() {
        let t: DateTime<Utc> = "2026-11-27T10:00:00.123456789Z".parse().unwrap();
        let s = Stamp::from(t);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            serde_json::to_string(&t).unwrap()
        );
        let back: Stamp = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
