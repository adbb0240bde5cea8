//! Conversions from exact integer sums to the floats the API returns.
//!
//! Every float is computed by one fixed formula from exact integers, so the same data always
//! gives bit-identical figures (and sort keys) whatever order the rows were scanned in.

pub(crate) const NS_PER_MS: f64 = 1e6;
pub(crate) const NANO_USD_PER_USD: f64 = 1e9;

pub(crate) fn usd(nano: i128) -> f64 {
    nano as f64 / NANO_USD_PER_USD
}

/// Mean per trace in USD: `(sum / count) / 1e9`; 0 for no traces.
pub(crate) fn average_usd(sum_nano: i128, count: u64) -> f64 {
    if count == 0 {
        return 0.0;
    }
    sum_nano as f64 / count as f64 / NANO_USD_PER_USD
}

/// A median kept as twice its value, so that medians of even counts stay integers.
pub(crate) fn median2_usd(median2_nano: i128) -> f64 {
    median2_nano as f64 / (2.0 * NANO_USD_PER_USD)
}

pub(crate) fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        return 0.0;
    }
    numerator as f64 / denominator as f64
}

/// Twice the exact median of `values` (mean of the two middle values for an even count).
/// Reorders `values`. 0 for an empty slice.
pub(crate) fn median2(values: &mut [i64]) -> i128 {
    let n = values.len();
    if n == 0 {
        return 0;
    }
    let mid = n / 2;
    let (lower, upper_middle, _) = values.select_nth_unstable(mid);
    let upper_middle = i128::from(*upper_middle);
    if n % 2 == 1 {
        return 2 * upper_middle;
    }
    let lower_middle = lower
        .iter()
        .copied()
        .max()
        .expect("an even count of at least two values has a lower half");
    i128::from(lower_middle) + upper_middle
}

/// The exact median, in USD, of medians kept doubled; one rounding from exact integers even
/// when the two middle medians are half-nanos apart. Reorders `values`; 0 for an empty slice.
pub(crate) fn median_of_median2(values: &mut [i128]) -> f64 {
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    let mid = n / 2;
    let (lower, upper_middle, _) = values.select_nth_unstable(mid);
    let upper_middle = *upper_middle;
    if n % 2 == 1 {
        return median2_usd(upper_middle);
    }
    let lower_middle = lower
        .iter()
        .copied()
        .max()
        .expect("an even count of at least two values has a lower half");
    (lower_middle + upper_middle) as f64 / (4.0 * NANO_USD_PER_USD)
}

/// Maps a float onto an integer with the same total order (`f64::total_cmp`), so float sort
/// keys compare numerically and travel exactly inside cursors.
pub(crate) fn float_key(value: f64) -> i128 {
    let bits = value.to_bits() as i64;
    i128::from(bits ^ ((((bits >> 63) as u64) >> 1) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_count_is_mean_of_middles() {
        assert_eq!(median2(&mut [4, 1, 3, 2]), 5);
        assert_eq!(median2(&mut [7]), 14);
        assert_eq!(median2(&mut []), 0);
        assert_eq!(median2(&mut [1, 2]), 3);
    }

    #[test]
    fn median_of_medians_keeps_quarter_nanos() {
        // medians 1.5 and 2 nano → 1.75 nano
        assert_eq!(median_of_median2(&mut [3, 4]), 1.75 / 1e9);
        assert_eq!(median_of_median2(&mut [3, 9, 4]), 2.0 / 1e9);
    }

    #[test]
    fn float_key_orders_like_total_cmp() {
        let values = [-3.5, -0.0, 0.0, 1e-9, 0.5, 1.0, 7.25, f64::MAX];
        for w in values.windows(2) {
            assert!(float_key(w[0]) < float_key(w[1]), "{} < {}", w[0], w[1]);
        }
    }
}
