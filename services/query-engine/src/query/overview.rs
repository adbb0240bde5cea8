//! Users overview for a range (SPEC §4.1): one pass over the range's contiguous rows.

use crate::api::{Histogram, HistogramBucket, Overview, TimeRange};
use crate::error::QueryError;
use crate::numbers::ratio;
use crate::scratch::{Scratch, with_scratch};
use crate::snapshot::{ANONYMOUS, Snapshot};
use crate::time::{NS_PER_SECOND, bucket_count, histogram_width_ns};
use crate::validate;

/// Range-level distinct counts gathered while filling the buckets.
#[derive(Debug, Default)]
struct RangeCounts {
    unique_users: u64,
    traces_with_user: u64,
    sessions: u64,
    sessions_with_user: u64,
    /// Distinct (user, session) pairs: the numerator of `sessions_per_user`.
    user_sessions: u64,
}

impl Snapshot {
    /// Totals, new users and the activity histogram for `range`.
    ///
    /// O(rows in range): each bucket is a contiguous run of rows, and every distinct count
    /// uses per-id stamps instead of hash sets.
    pub fn overview(&self, range: TimeRange) -> Result<Overview, QueryError> {
        let range = validate::range(range)?;
        let (lo, hi) = self.positions(range);
        let width = histogram_width_ns(range);
        let (counts, buckets) =
            with_scratch(|scratch| self.fill_histogram(scratch, range, width, lo, hi));

        let first_seen = &self.by_user.first_seen_sorted;
        let new_users = first_seen.partition_point(|&t| t < range.to_ns)
            - first_seen.partition_point(|&t| t < range.from_ns);
        let traces = (hi - lo) as u64;
        Ok(Overview {
            unique_users: counts.unique_users,
            new_users: new_users as u64,
            // A user first seen in range has a trace in range, so the rest are returning.
            returning_users: counts.unique_users.saturating_sub(new_users as u64),
            traces,
            traces_with_user: counts.traces_with_user,
            user_trace_share: ratio(counts.traces_with_user, traces),
            traces_per_user: ratio(counts.traces_with_user, counts.unique_users),
            sessions: counts.sessions,
            sessions_with_user: counts.sessions_with_user,
            sessions_per_user: ratio(counts.user_sessions, counts.unique_users),
            histogram: Histogram {
                bucket_seconds: width / NS_PER_SECOND,
                buckets,
            },
        })
    }

    fn fill_histogram(
        &self,
        scratch: &mut Scratch,
        range: TimeRange,
        width: i64,
        lo: usize,
        hi: usize,
    ) -> (RangeCounts, Vec<HistogramBucket>) {
        let rows = &self.rows;
        let bucket_total = bucket_count(range, width) as usize;
        let width = i128::from(width);
        let first_bucket_start = i128::from(range.from_ns).div_euclid(width) * width;

        // Bucket k of this query stamps `base + 1 + k`: "== stamp" means already counted in
        // this bucket, "> base" means already counted in the range.
        let base = scratch.begin(bucket_total as u32);
        let sessions_len = self.sessions.len();
        scratch.size_stamps([
            self.users.len(),
            sessions_len,
            sessions_len,
            sessions_len,
            self.pair_count(),
        ]);
        let [
            user_stamp,
            session_stamp,
            errored_session_stamp,
            session_with_user_stamp,
            pair_stamp,
        ] = &mut scratch.stamps;

        let mut counts = RangeCounts::default();
        let mut buckets = Vec::with_capacity(bucket_total);
        let mut at = lo;
        for k in 0..bucket_total {
            let stamp = base + 1 + k as u32;
            let bucket_start = first_bucket_start + k as i128 * width;
            let bucket_end = (bucket_start + width).min(i128::from(range.to_ns));
            let end = at + rows.start[at..hi].partition_point(|&s| i128::from(s) < bucket_end);
            let mut bucket = HistogramBucket {
                start_ns: bucket_start.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
                traces: (end - at) as u64,
                traces_with_user: 0,
                active_users: 0,
                sessions: 0,
                errored_sessions: 0,
                errored_traces: 0,
            };
            for p in at..end {
                let session = rows.session[p] as usize;
                if session_stamp[session] != stamp {
                    counts.sessions += u64::from(session_stamp[session] <= base);
                    session_stamp[session] = stamp;
                    bucket.sessions += 1;
                }
                if rows.errored[p] {
                    bucket.errored_traces += 1;
                    if errored_session_stamp[session] != stamp {
                        errored_session_stamp[session] = stamp;
                        bucket.errored_sessions += 1;
                    }
                }
                let user = rows.user[p];
                if user == ANONYMOUS {
                    continue;
                }
                bucket.traces_with_user += 1;
                let user = user as usize;
                if user_stamp[user] != stamp {
                    counts.unique_users += u64::from(user_stamp[user] <= base);
                    user_stamp[user] = stamp;
                    bucket.active_users += 1;
                }
                if session_with_user_stamp[session] <= base {
                    session_with_user_stamp[session] = stamp;
                    counts.sessions_with_user += 1;
                }
                let pair = rows.pair[p] as usize;
                if pair_stamp[pair] <= base {
                    pair_stamp[pair] = stamp;
                    counts.user_sessions += 1;
                }
            }
            counts.traces_with_user += bucket.traces_with_user;
            buckets.push(bucket);
            at = end;
        }
        (counts, buckets)
    }
}
