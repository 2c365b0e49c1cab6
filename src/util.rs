//! Small helpers shared by every module: wall-clock time as RFC 3339 text (the inventory's and
//! the API's timestamp format), with `jiff` doing the calendar.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn now_rfc3339() -> String {
    rfc3339(unix_now())
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (UTC); instants beyond jiff's range (years
/// -9999..=9999) are clamped to it.
pub fn rfc3339(unix: i64) -> String {
    let (min, max) = (
        jiff::Timestamp::MIN.as_second() + 1,
        jiff::Timestamp::MAX.as_second() - 1,
    );
    let t = jiff::Timestamp::from_second(unix.clamp(min, max)).unwrap_or_default();
    // Whole seconds print without a fraction; jiff's RFC 3339 printer needs no format string
    // (this runs for every API call).
    t.to_string()
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` (exactly the form [`rfc3339`] writes: UTC, no fraction, no
/// offset) into Unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 20 || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    text.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

/// The 1-based line and column (in characters) of byte `offset` in `text`, for errors about
/// TOML files (site files, the configuration).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::{parse_rfc3339, rfc3339};

    #[test]
    fn parses_what_it_formats() {
        for t in [0, 951_782_400, 1_276_131_723, 4_107_542_399] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(parse_rfc3339("2010-06-10T01:02:03+09:00"), None);
        assert_eq!(parse_rfc3339("2010-13-10T01:02:03Z"), None);
        assert_eq!(parse_rfc3339("2010-06-10 01:02:03Z"), None);
        assert_eq!(parse_rfc3339("2010-06-10T01:02:03.5Z"), None);
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_276_131_723), "2010-06-10T01:02:03Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
        let far = rfc3339(i64::MAX);
        assert!(
            far.starts_with("9999-") && far.ends_with('Z') && !far.contains('.'),
            "{far}"
        );
    }
}
