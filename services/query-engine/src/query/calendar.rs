//! Calendar periods on nanosecond timestamps (UTC): days, ISO weeks starting Monday
//! 00:00 UTC, and calendar months, each numbered from the one holding the Unix epoch.

use crate::api::{PeriodUnit, TimeRange};
use crate::time::{NS_PER_DAY, day_of};

/// 1970-01-01 was a Thursday: the Monday of its ISO week is day −3.
const EPOCH_WEEK_MONDAY: i64 = -3;

/// The number of the period holding `t_ns` (period 0 holds the epoch).
pub(crate) fn period_of(unit: PeriodUnit, t_ns: i64) -> i64 {
    let day = day_of(t_ns);
    match unit {
        PeriodUnit::Day => day,
        PeriodUnit::Week => (day - EPOCH_WEEK_MONDAY).div_euclid(7),
        PeriodUnit::Month => {
            let (year, month, _) = civil_from_days(day);
            (year - 1970) * 12 + i64::from(month) - 1
        }
    }
}

/// The first instant of period `period`, in nanoseconds; i128 so no period overflows.
pub(crate) fn period_start(unit: PeriodUnit, period: i64) -> i128 {
    let day = match unit {
        PeriodUnit::Day => period,
        PeriodUnit::Week => period * 7 + EPOCH_WEEK_MONDAY,
        PeriodUnit::Month => {
            let year = 1970 + period.div_euclid(12);
            let month = period.rem_euclid(12) as u32 + 1;
            days_from_civil(year, month, 1)
        }
    };
    i128::from(day) * i128::from(NS_PER_DAY)
}

/// The numbers of the first and last period intersecting `range`.
pub(crate) fn periods_touching(unit: PeriodUnit, range: TimeRange) -> (i64, i64) {
    (
        period_of(unit, range.from_ns),
        period_of(unit, range.to_ns - 1),
    )
}

/// The numbers of the first and last period that start in `range`; `first > last` when
/// none does.
pub(crate) fn periods_starting_in(unit: PeriodUnit, range: TimeRange) -> (i64, i64) {
    let (mut first, last) = periods_touching(unit, range);
    if period_start(unit, first) < i128::from(range.from_ns) {
        first += 1;
    }
    (first, last)
}

/// Saturates an i128 instant to the i64 nanosecond scale.
pub(crate) fn clamp_ns(t: i128) -> i64 {
    t.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian (year, month, day) of a day number.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: i64 = NS_PER_DAY;

    #[test]
    fn civil_dates_round_trip() {
        for day in [
            -800_000, -719_468, -1, 0, 1, 59, 60, 10_957, 20_513, 2_932_896,
        ] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day, "{day}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        // 2026-03-01 is day 20,513; 2024-02-29 exists.
        assert_eq!(days_from_civil(2026, 3, 1), 20_513);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn weeks_start_on_monday() {
        // 1970-01-05 was a Monday: week 1 starts then, week 0 on 1969-12-29.
        assert_eq!(period_of(PeriodUnit::Week, 0), 0);
        assert_eq!(period_of(PeriodUnit::Week, 4 * D - 1), 0);
        assert_eq!(period_of(PeriodUnit::Week, 4 * D), 1);
        assert_eq!(period_start(PeriodUnit::Week, 0), i128::from(-3 * D));
        assert_eq!(period_start(PeriodUnit::Week, 1), i128::from(4 * D));
        // 2026-03-02 (day 20,514) is a Monday.
        let monday = 20_514 * D;
        let week = period_of(PeriodUnit::Week, monday);
        assert_eq!(period_start(PeriodUnit::Week, week), i128::from(monday));
        assert_eq!(period_of(PeriodUnit::Week, monday - 1), week - 1);
    }

    #[test]
    fn months_follow_the_calendar() {
        let march_2026 = 20_513 * D;
        let month = period_of(PeriodUnit::Month, march_2026);
        assert_eq!(month, (2026 - 1970) * 12 + 2);
        assert_eq!(
            period_start(PeriodUnit::Month, month),
            i128::from(march_2026)
        );
        assert_eq!(
            period_start(PeriodUnit::Month, month + 1),
            i128::from(march_2026 + 31 * D)
        );
        assert_eq!(period_of(PeriodUnit::Month, march_2026 - 1), month - 1);
        assert_eq!(period_of(PeriodUnit::Month, -1), -1);
        assert_eq!(period_start(PeriodUnit::Month, -1), i128::from(-31 * D));
    }

    #[test]
    fn periods_starting_in_a_range_skip_a_partial_first() {
        let range = TimeRange::new(D + 1, 3 * D);
        assert_eq!(periods_starting_in(PeriodUnit::Day, range), (2, 2));
        assert_eq!(periods_touching(PeriodUnit::Day, range), (1, 2));
        let range = TimeRange::new(D, D + 1);
        assert_eq!(periods_starting_in(PeriodUnit::Day, range), (1, 1));
        let range = TimeRange::new(D + 1, D + 2);
        let (first, last) = periods_starting_in(PeriodUnit::Day, range);
        assert!(first > last);
    }
}
