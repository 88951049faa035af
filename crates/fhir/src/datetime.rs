//! FHIR date, dateTime and instant values as ranges of time.
//!
//! A FHIR date or time stands for the whole interval its precision covers: `2015` is the year
//! 2015, `2015-02-07T13:28Z` is that minute, `2015-02-07T13:28:17.239Z` that millisecond. Values
//! without a time zone (dates, and times in search input) are taken as UTC. The civil-calendar
//! arithmetic is done here (no date crate), for years 0001–9999.

/// A range of time, both ends inclusive, in milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DateRange {
    pub low: i64,
    pub high: i64,
}

impl DateRange {
    /// Whether the two ranges share at least one millisecond.
    pub fn overlaps(&self, other: &DateRange) -> bool {
        self.low <= other.high && other.low <= self.high
    }

    /// Whether `other` lies entirely within `self`.
    pub fn contains(&self, other: &DateRange) -> bool {
        self.low <= other.low && other.high <= self.high
    }
}

const MS_PER_SECOND: i64 = 1_000;
const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// The first millisecond of 0001-01-01T00:00:00Z, the earliest instant [`format_instant`] writes.
pub const MIN_INSTANT_MS: i64 = -62_135_596_800_000;
/// The last millisecond of 9999-12-31T23:59:59.999Z, the latest instant [`format_instant`] writes.
pub const MAX_INSTANT_MS: i64 = 253_402_300_799_999;

/// Days since 1970-01-01 of the civil (proleptic Gregorian) date `y-m-d`.
///
/// `m` is 1–12 and `d` 1–31; the caller validates them. (H. Hinnant's `days_from_civil`.)
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let m = i64::from(m);
    let d = i64::from(d);
    let mp = (m + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + d - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month, day)` of a count of days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    // `d` and `m` are within 1..=31 and 1..=12 by construction.
    (y, m as u32, d as u32)
}

/// Whether `y` is a Gregorian leap year.
pub fn is_leap_year(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// The number of days of month `m` (1–12) in year `y`; 0 for an invalid month.
pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A cursor over the ASCII bytes of a date text.
struct Cursor<'s> {
    bytes: &'s [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Consumes `b` if it is the next byte.
    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Reads exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let end = self.pos.checked_add(n)?;
        let slice = self.bytes.get(self.pos..end)?;
        let mut v: u32 = 0;
        for &b in slice {
            if !b.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(b - b'0');
        }
        self.pos = end;
        Some(v)
    }
}

/// Parses a FHIR `date`, `dateTime` or `instant` (or a search value of that form) into the range of
/// time its precision covers.
///
/// Accepted forms: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, and `YYYY-MM-DDThh:mm[:ss[.f+]][Z|±hh:mm]`.
/// A missing time zone means UTC. Invalid calendar dates (`2015-02-30`), out-of-range fields and
/// any trailing text give `None`.
pub fn parse_date_range(s: &str) -> Option<DateRange> {
    let mut c = Cursor {
        bytes: s.as_bytes(),
        pos: 0,
    };
    let year = c.digits(4)?;
    if year == 0 {
        return None;
    }
    let year = i64::from(year);
    if c.at_end() {
        let low = days_from_civil(year, 1, 1) * MS_PER_DAY;
        let high = days_from_civil(year + 1, 1, 1) * MS_PER_DAY - 1;
        return Some(DateRange { low, high });
    }
    if !c.eat(b'-') {
        return None;
    }
    let month = c.digits(2)?;
    if !(1..=12).contains(&month) {
        return None;
    }
    if c.at_end() {
        let low = days_from_civil(year, month, 1) * MS_PER_DAY;
        let high = low + i64::from(days_in_month(year, month)) * MS_PER_DAY - 1;
        return Some(DateRange { low, high });
    }
    if !c.eat(b'-') {
        return None;
    }
    let day = c.digits(2)?;
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let day_start = days_from_civil(year, month, day) * MS_PER_DAY;
    if c.at_end() {
        return Some(DateRange {
            low: day_start,
            high: day_start + MS_PER_DAY - 1,
        });
    }
    if !c.eat(b'T') {
        return None;
    }
    let hour = c.digits(2)?;
    if !c.eat(b':') {
        return None;
    }
    let minute = c.digits(2)?;
    if hour > 23 || minute > 59 {
        return None;
    }
    let mut local = day_start + i64::from(hour) * MS_PER_HOUR + i64::from(minute) * MS_PER_MINUTE;
    let mut width = MS_PER_MINUTE;
    if c.eat(b':') {
        let second = c.digits(2)?;
        // FHIR allows a leap second (`:60`); it is folded into the last second of the minute.
        if second > 60 {
            return None;
        }
        local += i64::from(second.min(59)) * MS_PER_SECOND;
        width = MS_PER_SECOND;
        if c.eat(b'.') {
            let mut n_digits = 0u32;
            let mut ms: i64 = 0;
            while let Some(b) = c.peek() {
                if !b.is_ascii_digit() {
                    break;
                }
                if n_digits < 3 {
                    ms = ms * 10 + i64::from(b - b'0');
                }
                n_digits += 1;
                c.pos += 1;
            }
            if n_digits == 0 {
                return None;
            }
            let scale = match n_digits {
                1 => 100,
                2 => 10,
                _ => 1,
            };
            local += ms * scale;
            width = scale;
        }
    }
    let offset_ms = match c.peek() {
        None => 0,
        Some(b'Z') => {
            c.pos += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            c.pos += 1;
            let oh = c.digits(2)?;
            if !c.eat(b':') {
                return None;
            }
            let om = c.digits(2)?;
            if oh > 14 || om > 59 {
                return None;
            }
            let off = i64::from(oh) * MS_PER_HOUR + i64::from(om) * MS_PER_MINUTE;
            if sign == b'-' { -off } else { off }
        }
        Some(_) => return None,
    };
    if !c.at_end() {
        return None;
    }
    let low = local - offset_ms;
    Some(DateRange {
        low,
        high: low + width - 1,
    })
}

/// Formats milliseconds since the epoch as an RFC 3339 UTC instant with milliseconds
/// (`2024-01-02T03:04:05.678Z`).
///
/// Values outside 0001-01-01 – 9999-12-31 (such as the `i64::MIN`/`i64::MAX` open ends of a
/// period) are clamped to the first or last millisecond of that range.
pub fn format_instant(ms: i64) -> String {
    let ms = ms.clamp(MIN_INSTANT_MS, MAX_INSTANT_MS);
    let days = ms.div_euclid(MS_PER_DAY);
    let rem = ms.rem_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let hour = rem / MS_PER_HOUR;
    let minute = rem % MS_PER_HOUR / MS_PER_MINUTE;
    let second = rem % MS_PER_MINUTE / MS_PER_SECOND;
    let milli = rem % MS_PER_SECOND;
    format!("{y:04}-{m:02}-{d:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}

/// A point in time: milliseconds since the Unix epoch, UTC (a FHIR `instant`). Every "now",
/// expiry and version time in ironchart is one of these; the store keeps its milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Instant(i64);

impl Instant {
    /// The Unix epoch (also what a clock before it reads as).
    pub const EPOCH: Instant = Instant(0);
    /// Later than any real time: what never expires.
    pub const NEVER: Instant = Instant(i64::MAX);

    /// Now, by the system clock. Code that decides by time takes its "now" from a clock it was
    /// given (the records service's), so that tests can move it; this is that clock's source.
    pub fn now() -> Instant {
        Instant(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    pub const fn from_millis(ms: i64) -> Instant {
        Instant(ms)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// `d` earlier (saturating).
    pub fn minus(self, d: std::time::Duration) -> Instant {
        Instant(
            self.0
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }
}

impl std::fmt::Display for Instant {
    /// The FHIR form: `2024-01-02T03:04:05.678Z` (see [`format_instant`]).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_instant(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds of a UTC civil time, for building expected values.
    fn utc(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64, ms: i64) -> i64 {
        days_from_civil(y, mo, d) * MS_PER_DAY
            + h * MS_PER_HOUR
            + mi * MS_PER_MINUTE
            + s * MS_PER_SECOND
            + ms
    }

    #[test]
    fn civil_round_trip_and_known_points() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(1, 1, 1) * MS_PER_DAY, MIN_INSTANT_MS);
        assert_eq!(
            days_from_civil(10000, 1, 1) * MS_PER_DAY - 1,
            MAX_INSTANT_MS
        );
        // Every day from 0001-01-01 to 9999-12-31 round-trips, in calendar order.
        let first = days_from_civil(1, 1, 1);
        let last = days_from_civil(9999, 12, 31);
        let mut expected = (1i64, 1u32, 1u32);
        for z in first..=last {
            let got = civil_from_days(z);
            assert_eq!(got, expected, "day {z}");
            assert_eq!(days_from_civil(got.0, got.1, got.2), z);
            let (y, m, d) = expected;
            expected = if d < days_in_month(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }

    #[test]
    fn leap_years() {
        for (y, leap) in [
            (1900, false),
            (2000, true),
            (2004, true),
            (2023, false),
            (2400, true),
        ] {
            assert_eq!(is_leap_year(y), leap, "{y}");
        }
    }

    #[test]
    fn parse_table() {
        let day = MS_PER_DAY;
        let cases: &[(&str, Option<(i64, i64)>)] = &[
            // Partial dates cover the whole period, in UTC.
            (
                "2015",
                Some((utc(2015, 1, 1, 0, 0, 0, 0), utc(2016, 1, 1, 0, 0, 0, 0) - 1)),
            ),
            (
                "2016-02",
                Some((utc(2016, 2, 1, 0, 0, 0, 0), utc(2016, 3, 1, 0, 0, 0, 0) - 1)),
            ),
            (
                "2015-02",
                Some((utc(2015, 2, 1, 0, 0, 0, 0), utc(2015, 3, 1, 0, 0, 0, 0) - 1)),
            ),
            (
                "2015-12",
                Some((
                    utc(2015, 12, 1, 0, 0, 0, 0),
                    utc(2016, 1, 1, 0, 0, 0, 0) - 1,
                )),
            ),
            (
                "2015-02-07",
                Some((
                    utc(2015, 2, 7, 0, 0, 0, 0),
                    utc(2015, 2, 7, 0, 0, 0, 0) + day - 1,
                )),
            ),
            ("1970-01-01", Some((0, day - 1))),
            (
                "2016-02-29",
                Some((
                    utc(2016, 2, 29, 0, 0, 0, 0),
                    utc(2016, 3, 1, 0, 0, 0, 0) - 1,
                )),
            ),
            (
                "0001-01-01",
                Some((MIN_INSTANT_MS, MIN_INSTANT_MS + day - 1)),
            ),
            (
                "9999-12-31",
                Some((MAX_INSTANT_MS - day + 1, MAX_INSTANT_MS)),
            ),
            // Times: the precision given.
            (
                "2015-02-07T13:28:17-05:00",
                Some((
                    utc(2015, 2, 7, 18, 28, 17, 0),
                    utc(2015, 2, 7, 18, 28, 17, 999),
                )),
            ),
            (
                "2015-02-07T13:28:17+05:30",
                Some((
                    utc(2015, 2, 7, 7, 58, 17, 0),
                    utc(2015, 2, 7, 7, 58, 17, 999),
                )),
            ),
            (
                "2015-02-07T13:28Z",
                Some((
                    utc(2015, 2, 7, 13, 28, 0, 0),
                    utc(2015, 2, 7, 13, 28, 59, 999),
                )),
            ),
            (
                "2015-02-07T13:28",
                Some((
                    utc(2015, 2, 7, 13, 28, 0, 0),
                    utc(2015, 2, 7, 13, 28, 59, 999),
                )),
            ),
            (
                "2015-02-07T13:28:17.239+02:00",
                Some((
                    utc(2015, 2, 7, 11, 28, 17, 239),
                    utc(2015, 2, 7, 11, 28, 17, 239),
                )),
            ),
            (
                "2015-02-07T13:28:17.5Z",
                Some((
                    utc(2015, 2, 7, 13, 28, 17, 500),
                    utc(2015, 2, 7, 13, 28, 17, 599),
                )),
            ),
            (
                "2015-02-07T13:28:17.23Z",
                Some((
                    utc(2015, 2, 7, 13, 28, 17, 230),
                    utc(2015, 2, 7, 13, 28, 17, 239),
                )),
            ),
            (
                "2017-01-01T00:00:00.000123456Z",
                Some((utc(2017, 1, 1, 0, 0, 0, 0), utc(2017, 1, 1, 0, 0, 0, 0))),
            ),
            (
                "2015-02-07T13:28:17Z",
                Some((
                    utc(2015, 2, 7, 13, 28, 17, 0),
                    utc(2015, 2, 7, 13, 28, 17, 999),
                )),
            ),
            // A time zone may move the value across a day, month or year.
            (
                "2015-01-01T01:00:00+14:00",
                Some((
                    utc(2014, 12, 31, 11, 0, 0, 0),
                    utc(2014, 12, 31, 11, 0, 0, 999),
                )),
            ),
            // A leap second is folded into :59.
            (
                "2016-12-31T23:59:60Z",
                Some((
                    utc(2016, 12, 31, 23, 59, 59, 0),
                    utc(2016, 12, 31, 23, 59, 59, 999),
                )),
            ),
            // Invalid values.
            ("", None),
            ("0000", None),
            ("15", None),
            ("201", None),
            ("20150", None),
            ("2015-2", None),
            ("2015-13", None),
            ("2015-00", None),
            ("2015-02-30", None),
            ("2015-02-29", None),
            ("2015-04-31", None),
            ("2015-01-00", None),
            ("2015-01-32", None),
            ("2015-01-01T", None),
            ("2015-01-01T24:00", None),
            ("2015-01-01T10:60", None),
            ("2015-01-01T10", None),
            ("2015-01-01T10:00:61Z", None),
            ("2015-01-01T10:00:00.Z", None),
            ("2015-01-01T10:00:00+15:00", None),
            ("2015-01-01T10:00:00+05", None),
            ("2015-01-01T10:00:00+0500", None),
            ("2015-01-01T10:00:00+05:60", None),
            ("2015-01-01T10:00:00ZZ", None),
            ("2015-01-01 10:00:00Z", None),
            ("2015-01-01t10:00:00z", None),
            ("-2015", None),
            ("+2015", None),
            ("2015-01-01x", None),
            ("２０１５", None),
            ("2015-01-0١", None),
        ];
        for (input, expected) in cases {
            let got = parse_date_range(input).map(|r| (r.low, r.high));
            assert_eq!(got, *expected, "input {input:?}");
        }
    }

    #[test]
    fn format_table() {
        let cases: &[(i64, &str)] = &[
            (0, "1970-01-01T00:00:00.000Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (utc(2024, 1, 2, 3, 4, 5, 678), "2024-01-02T03:04:05.678Z"),
            (
                utc(2000, 2, 29, 23, 59, 59, 999),
                "2000-02-29T23:59:59.999Z",
            ),
            (MIN_INSTANT_MS, "0001-01-01T00:00:00.000Z"),
            (MAX_INSTANT_MS, "9999-12-31T23:59:59.999Z"),
            (i64::MIN, "0001-01-01T00:00:00.000Z"),
            (i64::MAX, "9999-12-31T23:59:59.999Z"),
        ];
        for (ms, expected) in cases {
            assert_eq!(format_instant(*ms), *expected, "ms {ms}");
        }
    }

    #[test]
    fn format_then_parse_round_trips() {
        let mut ms = MIN_INSTANT_MS;
        // About 20 000 points spread over the whole supported range, with odd remainders.
        let step = (MAX_INSTANT_MS - MIN_INSTANT_MS) / 19_997;
        while ms <= MAX_INSTANT_MS {
            let text = format_instant(ms);
            assert_eq!(
                parse_date_range(&text),
                Some(DateRange { low: ms, high: ms }),
                "{text}"
            );
            ms += step;
        }
    }

    #[test]
    fn range_relations() {
        let (Some(year), Some(day), Some(other)) = (
            parse_date_range("2015"),
            parse_date_range("2015-06-01"),
            parse_date_range("2016-01-01"),
        ) else {
            panic!("test inputs parse");
        };
        assert!(year.contains(&day));
        assert!(!day.contains(&year));
        assert!(year.overlaps(&day));
        assert!(!year.overlaps(&other));
    }
}
