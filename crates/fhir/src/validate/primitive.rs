//! Lexical checks of FHIR R4 primitive values, hand-written after the regular expressions of the
//! specification (<https://hl7.org/fhir/R4/datatypes.html#primitive>), with the real ranges of
//! months and days that the regular expressions leave out.
//!
//! Each `is_*` function takes the JSON string as written and says whether it is a valid value of
//! that type. Emptiness is checked by the caller for every type, but the functions reject empty
//! input too.

/// `code`: no leading or trailing whitespace and no runs of whitespace inside
/// (`[^\s]+(\s[^\s]+)*`).
pub fn is_code(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut previous_space = true; // rejects leading whitespace
    for c in s.chars() {
        let space = c.is_whitespace();
        if space && previous_space {
            return false;
        }
        previous_space = space;
    }
    !previous_space
}

/// `id`: 1 to 64 of `A-Z a-z 0-9 - .`.
pub fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `uri`, `url` and `canonical`: no whitespace (and, as every FHIR string, not empty).
pub fn is_uri(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_whitespace)
}

/// `oid`: `urn:oid:[0-2](\.(0|[1-9][0-9]*))+`.
pub fn is_oid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:oid:") else {
        return false;
    };
    let mut arcs = rest.split('.');
    let first_ok = matches!(arcs.next(), Some("0" | "1" | "2"));
    let mut count = 0;
    for arc in arcs {
        count += 1;
        let digits = !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit());
        if !digits || (arc.len() > 1 && arc.starts_with('0')) {
            return false;
        }
    }
    first_ok && count >= 1
}

/// `uuid`: `urn:uuid:` and a lower-case UUID (`8-4-4-4-12` hex digits).
pub fn is_uuid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:uuid:") else {
        return false;
    };
    let groups: Vec<&str> = rest.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, len)| {
            g.len() == len && g.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

/// `base64Binary`: standard base64 with padding; whitespace between characters is ignored.
pub fn is_base64(s: &str) -> bool {
    let mut any = false;
    // Position in the current group of four characters.
    let mut position = 0u8;
    let mut padding = 0usize;
    for b in s.bytes() {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            b'=' => padding += 1,
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' if padding == 0 => {}
            _ => return false,
        }
        any = true;
        position = (position + 1) % 4;
    }
    any && position == 0 && padding <= 2
}

/// `date`: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, with a real month and day.
pub fn is_date(s: &str) -> bool {
    matches!(parse_date(s.as_bytes()), Some((_, [])))
}

/// `dateTime`: a `date`, or a full date with `Thh:mm:ss[.fff]` and a mandatory time zone
/// (`Z` or `±hh:mm`).
pub fn is_date_time(s: &str) -> bool {
    match parse_date(s.as_bytes()) {
        Some((_, [])) => true,
        Some((DatePrecision::Day, [b'T', rest @ ..])) => time_and_zone(rest, true),
        _ => false,
    }
}

/// `instant`: a full date and time with seconds and a mandatory time zone.
pub fn is_instant(s: &str) -> bool {
    match parse_date(s.as_bytes()) {
        Some((DatePrecision::Day, [b'T', rest @ ..])) => time_and_zone(rest, true),
        _ => false,
    }
}

/// `time`: `hh:mm:ss[.fff]`, without a time zone.
pub fn is_time(s: &str) -> bool {
    time_and_zone(s.as_bytes(), false)
}

/// A 32-bit signed integer written as a JSON number (no fraction, no exponent).
pub fn parse_integer(text: &str) -> Option<i32> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i32>().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DatePrecision {
    Year,
    Month,
    Day,
}

/// Parses the date at the start of `s`, returning its precision and the unparsed rest.
fn parse_date(s: &[u8]) -> Option<(DatePrecision, &[u8])> {
    let (year, rest) = digits(s, 4)?;
    if year == 0 {
        return None;
    }
    let Some(rest) = rest.strip_prefix(b"-") else {
        return Some((DatePrecision::Year, rest));
    };
    let (month, rest) = digits(rest, 2)?;
    if !(1..=12).contains(&month) {
        return None;
    }
    let Some(rest) = rest.strip_prefix(b"-") else {
        return Some((DatePrecision::Month, rest));
    };
    let (day, rest) = digits(rest, 2)?;
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some((DatePrecision::Day, rest))
}

/// `hh:mm:ss[.f+]`, then a time zone if `zone` (mandatory) or nothing.
fn time_and_zone(s: &[u8], zone: bool) -> bool {
    let Some(rest) = clock(s) else {
        return false;
    };
    let rest = match rest {
        [b'.', fraction @ ..] => {
            let n = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
            if n == 0 {
                return false;
            }
            &fraction[n..]
        }
        _ => rest,
    };
    if !zone {
        return rest.is_empty();
    }
    match rest {
        b"Z" => true,
        [b'+' | b'-', offset @ ..] => match offset {
            [h1, h2, b':', m1, m2] => {
                let hh = digits(&[*h1, *h2], 2).map(|(v, _)| v);
                let mm = digits(&[*m1, *m2], 2).map(|(v, _)| v);
                match (hh, mm) {
                    (Some(14), Some(0)) => true,
                    (Some(h), Some(m)) => h <= 13 && m <= 59,
                    _ => false,
                }
            }
            _ => false,
        },
        _ => false,
    }
}

/// `hh:mm:ss` (seconds up to 60 for leap seconds), returning the rest.
fn clock(s: &[u8]) -> Option<&[u8]> {
    let (hour, rest) = digits(s, 2)?;
    let rest = rest.strip_prefix(b":")?;
    let (minute, rest) = digits(rest, 2)?;
    let rest = rest.strip_prefix(b":")?;
    let (second, rest) = digits(rest, 2)?;
    (hour <= 23 && minute <= 59 && second <= 60).then_some(rest)
}

/// Exactly `n` ASCII digits at the start of `s`, as a number, and the rest.
fn digits(s: &[u8], n: usize) -> Option<(u32, &[u8])> {
    if s.len() < n {
        return None;
    }
    let (head, rest) = s.split_at(n);
    let mut value = 0u32;
    for b in head {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(b - b'0');
    }
    Some((value, rest))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    // Signed arithmetic: `u32::is_multiple_of` needs a newer Rust than the workspace's
    // rust-version.
    let y = i64::from(year);
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        for ok in [
            "2024",
            "2024-02",
            "2024-02-29",
            "2000-02-29",
            "0001-01-01",
            "1999-12-31",
        ] {
            assert!(is_date(ok), "{ok} should be a date");
        }
        for bad in [
            "",
            "0000",
            "24",
            "2024-2",
            "2024-13",
            "2024-00",
            "2023-02-29",
            "1900-02-29",
            "2024-04-31",
            "2024-01-32",
            "2024-01-00",
            "2024-01-01T10:00:00Z",
            "2024-01-01 ",
            "2024/01/01",
            "２０２４",
        ] {
            assert!(!is_date(bad), "{bad:?} should not be a date");
        }
    }

    #[test]
    fn date_times() {
        for ok in [
            "2024",
            "2024-05",
            "2024-05-06",
            "2024-05-06T10:20:30Z",
            "2024-05-06T10:20:30.123+01:00",
            "2024-05-06T23:59:60-13:59",
            "2024-05-06T00:00:00+14:00",
        ] {
            assert!(is_date_time(ok), "{ok} should be a dateTime");
        }
        for bad in [
            "2024-05-06T10:20:30",   // no time zone
            "2024-05-06T10:20Z",     // no seconds
            "2024-05T10:20:30Z",     // time without a full date
            "2024-05-06T24:00:00Z",  // hour
            "2024-05-06T10:60:00Z",  // minute
            "2024-05-06T10:20:30.Z", // empty fraction
            "2024-05-06T10:20:30+14:30",
            "2024-05-06T10:20:30+1:00",
            "2024-05-06T10:20:30z",
            "2024-05-06T",
        ] {
            assert!(!is_date_time(bad), "{bad:?} should not be a dateTime");
        }
    }

    #[test]
    fn instants_and_times() {
        assert!(is_instant("2015-02-07T13:28:17.239+02:00"));
        assert!(is_instant("2015-02-07T13:28:17Z"));
        assert!(!is_instant("2015-02-07"));
        assert!(!is_instant("2015-02-07T13:28:17"));
        assert!(is_time("13:28:17"));
        assert!(is_time("00:00:00.5"));
        assert!(!is_time("13:28"));
        assert!(!is_time("13:28:17Z"));
        assert!(!is_time("25:00:00"));
    }

    #[test]
    fn codes_ids_uris() {
        assert!(is_code("final"));
        assert!(is_code("a b"));
        for bad in ["", " a", "a ", "a  b", "a\tb\t"] {
            assert!(!is_code(bad), "{bad:?} should not be a code");
        }
        assert!(is_id("example-1.a"));
        assert!(is_id(&"a".repeat(64)));
        assert!(!is_id(&"a".repeat(65)));
        assert!(!is_id(""));
        assert!(!is_id("a_b"));
        assert!(!is_id("a/b"));
        assert!(is_uri("http://example.org/a?b=c"));
        assert!(!is_uri("http://example.org/a b"));
        assert!(!is_uri(""));
    }

    #[test]
    fn oids_and_uuids() {
        assert!(is_oid("urn:oid:2.16.840.1.113883"));
        assert!(!is_oid("urn:oid:3.1"));
        assert!(!is_oid("urn:oid:2"));
        assert!(!is_oid("urn:oid:2.01"));
        assert!(!is_oid("2.16.840"));
        assert!(is_uuid("urn:uuid:a76d9bbf-f293-4fb7-ad4c-2851cac77162"));
        assert!(!is_uuid("urn:uuid:A76D9BBF-F293-4FB7-AD4C-2851CAC77162"));
        assert!(!is_uuid("urn:uuid:a76d9bbf-f293-4fb7-ad4c"));
        assert!(!is_uuid("a76d9bbf-f293-4fb7-ad4c-2851cac77162"));
    }

    #[test]
    fn base64() {
        assert!(is_base64("SGVsbG8="));
        assert!(is_base64("SGVs bG8h\nSGk="));
        assert!(is_base64("a+/="));
        assert!(!is_base64("SGVsbG8"));
        assert!(!is_base64("SG=sbG8="));
        assert!(!is_base64("S==="));
        assert!(!is_base64("SGVsbG8*"));
        assert!(!is_base64(""));
    }

    #[test]
    fn integers() {
        assert_eq!(parse_integer("0"), Some(0));
        assert_eq!(parse_integer("-2147483648"), Some(i32::MIN));
        assert_eq!(parse_integer("2147483647"), Some(i32::MAX));
        assert_eq!(parse_integer("2147483648"), None);
        assert_eq!(parse_integer("1.0"), None);
        assert_eq!(parse_integer("1e3"), None);
        assert_eq!(parse_integer("-"), None);
        assert_eq!(parse_integer("+1"), None);
    }
}
