//! The wall clock as Unix time, and RFC 3339 text for Unix times.
//!
//! Code that needs a controllable clock takes the instant as a parameter;
//! these are for the places that read the real one.

use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Seconds since the Unix epoch (0 if the system clock is before it).
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch (0 if the system clock is before it).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A Unix time in seconds as RFC 3339 in UTC, `2026-03-01T12:00:00Z`. A
/// time RFC 3339 cannot write (a year past 9999) comes out as the number.
pub fn rfc3339(unix_s: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix_s)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix_s.to_string())
}

/// A Unix time in milliseconds as RFC 3339 with milliseconds,
/// `2026-03-01T12:00:00.500Z` (events, whose order within a second matters).
pub fn rfc3339_ms(unix_ms: i64) -> String {
    let seconds = rfc3339(unix_ms.div_euclid(1000));
    match seconds.strip_suffix('Z') {
        Some(base) => format!("{base}.{:03}Z", unix_ms.rem_euclid(1000)),
        None => seconds,
    }
}

/// An RFC 3339 time (any offset) as Unix milliseconds.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_reads_the_present_in_both_units() {
        // 2020-01-01: any machine running this is later.
        let (s, ms) = (now(), now_ms());
        assert!(s > 1_577_836_800, "{s}");
        assert!((ms / 1000 - s).abs() <= 1, "{ms} ms against {s} s");
    }

    #[test]
    fn seconds_are_written_in_utc_without_a_fraction() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_772_366_400), "2026-03-01T12:00:00Z");
        // Leap day, and the last second of a day.
        assert_eq!(rfc3339(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn times_rfc3339_cannot_write_come_out_as_numbers() {
        // RFC 3339 has four-digit years: 10000-01-01T00:00:00Z is a number.
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_800), "253402300800");
        assert_eq!(rfc3339(i64::MAX), i64::MAX.to_string());
    }

    #[test]
    fn milliseconds_are_written_as_three_digits() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(999), "1970-01-01T00:00:00.999Z");
        assert_eq!(rfc3339_ms(1_000), "1970-01-01T00:00:01.000Z");
        assert_eq!(rfc3339_ms(1_772_366_400_500), "2026-03-01T12:00:00.500Z");
        // Before the epoch: the earlier second, and what is left of it.
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn parsing_reads_any_offset_back_to_the_same_instant() {
        for ms in [0, 999, 1_772_366_400_500] {
            assert_eq!(parse_rfc3339_ms(&rfc3339_ms(ms)), Some(ms));
        }
        assert_eq!(
            parse_rfc3339_ms("2026-03-01T13:00:00+01:00"),
            Some(1_772_366_400_000)
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
        assert_eq!(parse_rfc3339_ms("2026-03-01"), None);
    }
}
