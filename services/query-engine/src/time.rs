//! Calendar and histogram arithmetic on nanosecond timestamps (UTC).

use crate::api::TimeRange;

pub(crate) const NS_PER_SECOND: i64 = 1_000_000_000;
pub(crate) const SECONDS_PER_DAY: i64 = 86_400;
pub(crate) const NS_PER_DAY: i64 = SECONDS_PER_DAY * NS_PER_SECOND;

/// Histogram bucket widths in seconds, smallest first (SPEC §4.1).
const BUCKET_WIDTHS_SECONDS: [i64; 11] = [
    60,
    5 * 60,
    15 * 60,
    30 * 60,
    3_600,
    3 * 3_600,
    6 * 3_600,
    12 * 3_600,
    SECONDS_PER_DAY,
    7 * SECONDS_PER_DAY,
    30 * SECONDS_PER_DAY,
];
pub(crate) const MAX_HISTOGRAM_BUCKETS: i128 = 60;

/// UTC day number (days since 1970-01-01) of an instant.
pub(crate) fn day_of(t_ns: i64) -> i64 {
    t_ns.div_euclid(NS_PER_DAY)
}

/// Number of epoch-aligned buckets of `width_ns` from the one holding `from` to the one
/// holding the last instant before `to`.
pub(crate) fn bucket_count(range: TimeRange, width_ns: i64) -> i128 {
    let width = i128::from(width_ns);
    let first = i128::from(range.from_ns).div_euclid(width);
    let last = (i128::from(range.to_ns) - 1).div_euclid(width);
    last - first + 1
}

/// The histogram width in nanoseconds: the smallest listed width giving at most 60 buckets;
/// past 30 days, the smallest whole multiple of 30 days that does.
pub(crate) fn histogram_width_ns(range: TimeRange) -> i64 {
    for seconds in BUCKET_WIDTHS_SECONDS {
        let width = seconds * NS_PER_SECOND;
        if bucket_count(range, width) <= MAX_HISTOGRAM_BUCKETS {
            return width;
        }
    }
    let month = 30 * NS_PER_DAY;
    // The span of an i64 range is below 2^64 ns ≈ 7,120 × 30 days, so 120 months always fit
    // in 60 buckets; start near the answer and walk up.
    let span = i128::from(range.to_ns) - i128::from(range.from_ns);
    let mut months = (span / (i128::from(month) * MAX_HISTOGRAM_BUCKETS)).max(2) as i64;
    while months > 2 && bucket_count(range, (months - 1) * month) <= MAX_HISTOGRAM_BUCKETS {
        months -= 1;
    }
    while bucket_count(range, months * month) > MAX_HISTOGRAM_BUCKETS {
        months += 1;
    }
    months * month
}

/// Trend slice of an instant in range: floor((t − from) × buckets / (to − from)), exact.
pub(crate) fn trend_slice(range: TimeRange, buckets: u32, t_ns: i64) -> usize {
    let offset = i128::from(t_ns) - i128::from(range.from_ns);
    let span = i128::from(range.to_ns) - i128::from(range.from_ns);
    (offset * i128::from(buckets) / span) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600 * NS_PER_SECOND;
    const D: i64 = NS_PER_DAY;

    #[test]
    fn thirty_days_not_aligned_to_days_uses_one_day() {
        let from = 10 * D + 5 * H;
        let range = TimeRange::new(from, from + 30 * D);
        assert_eq!(bucket_count(range, 12 * H), 61);
        assert_eq!(histogram_width_ns(range), D);
        assert_eq!(bucket_count(range, D), 31);
    }

    #[test]
    fn thirty_aligned_days_use_twelve_hours() {
        let range = TimeRange::new(10 * D, 40 * D);
        assert_eq!(histogram_width_ns(range), 12 * H);
    }

    #[test]
    fn one_hour_uses_one_minute_and_tiny_ranges_one_bucket() {
        let range = TimeRange::new(7 * H, 8 * H);
        assert_eq!(histogram_width_ns(range), 60 * NS_PER_SECOND);
        assert_eq!(bucket_count(range, 60 * NS_PER_SECOND), 60);
        let tiny = TimeRange::new(7 * H + 1, 7 * H + 2);
        assert_eq!(histogram_width_ns(tiny), 60 * NS_PER_SECOND);
        assert_eq!(bucket_count(tiny, 60 * NS_PER_SECOND), 1);
    }

    #[test]
    fn beyond_thirty_day_buckets_uses_multiples_of_thirty_days() {
        let month = 30 * D;
        let range = TimeRange::new(0, 60 * month);
        assert_eq!(histogram_width_ns(range), month);
        let range = TimeRange::new(0, 60 * month + 1);
        assert_eq!(histogram_width_ns(range), 2 * month);
        let range = TimeRange::new(1, 120 * month + 1);
        assert_eq!(histogram_width_ns(range), 3 * month);
        let widest = TimeRange::new(i64::MIN, i64::MAX);
        let width = histogram_width_ns(widest);
        assert!(bucket_count(widest, width) <= 60);
        assert!(bucket_count(widest, width - month) > 60);
    }

    #[test]
    fn days_before_the_epoch_round_down() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of(D), 1);
    }

    #[test]
    fn trend_slices_split_the_range_exactly() {
        let range = TimeRange::new(100, 114);
        assert_eq!(trend_slice(range, 14, 100), 0);
        assert_eq!(trend_slice(range, 14, 113), 13);
        let range = TimeRange::new(0, 10);
        // 3 slices of 10ns: [0, 3.33) [3.33, 6.67) [6.67, 10)
        let slices: Vec<usize> = (0..10).map(|t| trend_slice(range, 3, t)).collect();
        assert_eq!(slices, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]);
    }
}
