//! RFC 3339 timestamps for the policy's dates (client expiry, partner contract end, review dates).
//!
//! Only the full form is accepted (`2027-03-31T23:59:59Z` or with an offset): a bare date leaves
//! open whether a contract ends at the start or the end of that day, and a bank should say which.

/// Parses an RFC 3339 date-time into Unix seconds. Fractions are truncated.
// Every field is at most four digits (the year) and checked for range before use: no sum or
// product here comes near i64's limits.
#[allow(clippy::arithmetic_side_effects)]
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        let mut v: i64 = 0;
        for &c in part {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    let sep = |at: usize, expected: &[u8]| b.get(at).is_some_and(|c| expected.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = b.get(19..)?;
    if rest.first() == Some(&b'.') {
        let digits = rest.iter().skip(1).take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = rest.get(1 + digits..)?;
    }
    let offset = match rest {
        [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let h = i64::from(h1 - b'0') * 10 + i64::from(h2 - b'0');
            let m = i64::from(m1 - b'0') * 10 + i64::from(m2 - b'0');
            if h > 23 || m > 59 {
                return None;
            }
            let o = h * 3600 + m * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset)
}

/// The instants RFC 3339's four-digit years can spell: 0000-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const FORMATTABLE: std::ops::RangeInclusive<i64> = -62_167_219_200..=253_402_300_799;

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (clamped to the four-digit years).
pub fn format_rfc3339(unix: i64) -> String {
    let unix = unix.clamp(*FORMATTABLE.start(), *FORMATTABLE.end());
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", y, m, d, secs / 3600, (secs / 60) % 60, secs % 60)
}

/// Formats Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_ms(unix_ms: i64) -> String {
    let secs = format_rfc3339(unix_ms.div_euclid(1000));
    // rem_euclid(1000) is below 1000: the only arithmetic left is in the format string.
    format!("{}.{:03}Z", secs.trim_end_matches('Z'), unix_ms.rem_euclid(1000))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil-date algorithms: exact for the proleptic Gregorian calendar. Their inputs
// are bounded (four-digit years from the parser, clamped instants from the formatter), so the
// arithmetic stays far inside i64.
#[allow(clippy::arithmetic_side_effects)]
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[allow(clippy::arithmetic_side_effects)] // see days_from_civil
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn parses_known_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-11-24T06:18:28Z"), Some(1_795_501_108));
        assert_eq!(parse_rfc3339("2026-11-24T07:18:28+01:00"), Some(1_795_501_108));
        assert_eq!(parse_rfc3339("2024-02-29T12:00:00.999Z"), Some(1_709_208_000));
        assert_eq!(format_rfc3339(1_795_501_108), "2026-11-24T06:18:28Z");
    }

    #[test]
    fn refuses_ambiguous_or_impossible_dates() {
        for bad in [
            "2026-11-24",
            "2026-11-24 06:18:28Z",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-24T24:00:00Z",
            "2026-11-24T06:18:28",
            "2026-11-24T06:18:28.Z",
            "2026-11-24T06:18:28+0100",
            "２026-11-24T06:18:28Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn round_trips() {
        for t in [0, 86_399, 951_782_400, 1_795_501_108, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
        }
    }
}
