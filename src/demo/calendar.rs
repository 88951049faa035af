//! Civil dates and clinic-local times for the demo data: day numbers, FHIR `date`/`dateTime`
//! text, and the US Pacific time-zone offset (the demo clinic is in Portland, Oregon).

/// A calendar day, counted from 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i32);

impl Day {
    /// The day of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
    pub const fn from_ymd(year: i32, month: u32, day: u32) -> Day {
        let y = if month <= 2 { year - 1 } else { year };
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let mp = (month as i32 + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day as i32 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Day(era * 146_097 + doe - 719_468)
    }

    /// Year, month (1–12) and day of month.
    pub fn ymd(self) -> (i32, u32, u32) {
        let z = self.0 + 719_468;
        let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i32::from(month <= 2);
        (year, month, day)
    }

    pub fn year(self) -> i32 {
        self.ymd().0
    }

    /// 0 = Monday … 6 = Sunday.
    pub fn weekday(self) -> u32 {
        (self.0 + 3).rem_euclid(7) as u32
    }

    pub fn plus(self, days: i32) -> Day {
        Day(self.0 + days)
    }

    pub fn days_since(self, earlier: Day) -> i32 {
        self.0 - earlier.0
    }

    /// Fractional years from `earlier` to `self`.
    pub fn years_since(self, earlier: Day) -> f64 {
        f64::from(self.0 - earlier.0) / 365.25
    }

    /// The same day of the month `months` later (clamped to the month's last day).
    pub fn add_months(self, months: i32) -> Day {
        let (y, m, d) = self.ymd();
        let total = y * 12 + (m as i32 - 1) + months;
        let (ny, nm) = (total.div_euclid(12), total.rem_euclid(12) as u32 + 1);
        Day::from_ymd(ny, nm, d.min(days_in_month(ny, nm)))
    }

    /// The nearest weekday: Saturday goes back to Friday, Sunday forward to Monday.
    pub fn weekday_near(self) -> Day {
        match self.weekday() {
            5 => self.plus(-1),
            6 => self.plus(1),
            _ => self,
        }
    }

    /// FHIR `date`: `YYYY-MM-DD`.
    pub fn date(self) -> String {
        let (y, m, d) = self.ymd();
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// FHIR `date` with month precision: `YYYY-MM`.
    pub fn year_month(self) -> String {
        let (y, m, _) = self.ymd();
        format!("{y:04}-{m:02}")
    }

    /// The `nth` (1-based) Sunday of a month.
    fn nth_sunday(year: i32, month: u32, nth: i32) -> Day {
        let first = Day::from_ymd(year, month, 1);
        let to_sunday = (6 + 7 - first.weekday()) % 7;
        first.plus(to_sunday as i32 + 7 * (nth - 1))
    }

    /// The UTC offset of US Pacific time on this day (daylight time from the second Sunday of
    /// March to the first Sunday of November; clinic hours never straddle the 02:00 switch).
    pub fn pacific_offset(self) -> &'static str {
        let year = self.year();
        let dst = self >= Day::nth_sunday(year, 3, 2) && self < Day::nth_sunday(year, 11, 1);
        if dst { "-07:00" } else { "-08:00" }
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A clinic-local time: a day and the minute after local midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Moment {
    pub day: Day,
    pub minute: u32,
}

impl Moment {
    pub fn new(day: Day, minute: u32) -> Moment {
        Moment { day, minute }.normalized()
    }

    fn normalized(self) -> Moment {
        Moment {
            day: self.day.plus((self.minute / 1440) as i32),
            minute: self.minute % 1440,
        }
    }

    pub fn plus_minutes(self, minutes: u32) -> Moment {
        Moment::new(self.day, self.minute + minutes)
    }

    /// FHIR `dateTime` (and `instant`): `YYYY-MM-DDThh:mm:ss±hh:mm`.
    pub fn date_time(self) -> String {
        let (y, m, d) = self.day.ymd();
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:00{}",
            self.minute / 60,
            self.minute % 60,
            self.day.pacific_offset()
        )
    }
}
