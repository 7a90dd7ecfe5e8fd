//! Sizes (`64KiB`, `1GiB`, `4096`) and durations (`10s`, `500ms`) as flags
//! take them, and the same units for printing.

use std::time::Duration;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// Parses a byte size: a number with an optional binary (`KiB`, `MiB`,
/// `GiB`) or decimal (`KB`, `MB`, `GB`) suffix; `K`, `M`, `G` are binary.
pub fn parse_size(raw: &str) -> Result<u64, String> {
    let s = raw.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("'{raw}' is not a size (try 64KiB, 16MiB, 1GiB)"))?;
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => KIB,
        "m" | "mib" => MIB,
        "g" | "gib" => GIB,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(format!("unknown size unit '{other}' in '{raw}'")),
    };
    let bytes = number * multiplier as f64;
    if !(bytes.is_finite() && bytes >= 0.0) {
        return Err(format!("'{raw}' is not a size"));
    }
    Ok(bytes.round() as u64)
}

/// Parses a duration: a number with `ms`, `s` or `m`; a bare number is seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("'{raw}' is not a duration (try 10s, 500ms)"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" | "min" => number * 60.0,
        other => return Err(format!("unknown duration unit '{other}' in '{raw}'")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("'{raw}': {e}"))
}

/// A size for people: the largest binary unit that keeps the number ≥ 1.
pub fn format_size(bytes: u64) -> String {
    match bytes {
        b if b >= GIB && b % GIB == 0 => format!("{}GiB", b / GIB),
        b if b >= MIB && b % MIB == 0 => format!("{}MiB", b / MIB),
        b if b >= KIB && b % KIB == 0 => format!("{}KiB", b / KIB),
        b if b >= GIB => format!("{:.2}GiB", b as f64 / GIB as f64),
        b if b >= MIB => format!("{:.2}MiB", b as f64 / MIB as f64),
        b => format!("{b}B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB"), Ok(GIB));
        assert_eq!(parse_size("16MiB"), Ok(16 * MIB));
        assert_eq!(parse_size("64k"), Ok(64 * KIB));
        assert_eq!(parse_size("1.5MiB"), Ok(3 * MIB / 2));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("1TiB").is_err());
        assert_eq!(format_size(GIB), "1GiB");
        assert_eq!(format_size(64 * KIB), "64KiB");
        assert_eq!(format_size(100), "100B");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("soon").is_err());
    }
}
