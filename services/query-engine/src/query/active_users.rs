//! Active users per day, week or month, and stickiness (SPEC §4.8): one pass over the
//! range's contiguous rows.

use crate::api::{ActiveUsers, ActiveUsersPoint, PeriodUnit, TimeRange};
use crate::error::QueryError;
use crate::query::calendar::{clamp_ns, period_of, period_start, periods_touching};
use crate::query::retention::MAX_PERIODS_IN_RANGE;
use crate::scratch::{Scratch, with_scratch};
use crate::snapshot::{ANONYMOUS, Snapshot};
use crate::validate;

impl Snapshot {
    /// One point per window from the one holding `from` to the one holding the last instant
    /// before `to`, zero-filled, and the range's stickiness. O(rows in range).
    pub fn active_users(
        &self,
        range: TimeRange,
        window: PeriodUnit,
    ) -> Result<ActiveUsers, QueryError> {
        let range = validate::range(range)?;
        let (first_window, last_window) = periods_touching(window, range);
        let window_count = last_window - first_window + 1;
        if window_count > MAX_PERIODS_IN_RANGE {
            return Err(QueryError::invalid(
                "range",
                format!("holds {window_count} windows, at most {MAX_PERIODS_IN_RANGE} are allowed"),
            ));
        }
        let (first_day, last_day) = periods_touching(PeriodUnit::Day, range);
        let day_count = last_day - first_day + 1;
        let mut points: Vec<ActiveUsersPoint> = (first_window..=last_window)
            .map(|w| ActiveUsersPoint {
                start_ns: clamp_ns(period_start(window, w)),
                active_users: 0,
            })
            .collect();
        let (unique_users, user_days) = with_scratch(|scratch| {
            self.count_active(
                scratch,
                range,
                window,
                first_window,
                &mut points,
                first_day,
                day_count,
            )
        });
        let mean_daily_users = user_days as f64 / day_count as f64;
        let stickiness = if unique_users == 0 {
            0.0
        } else {
            mean_daily_users / unique_users as f64
        };
        Ok(ActiveUsers {
            points,
            unique_users,
            stickiness,
        })
    }

    /// Fills the windows' distinct users; returns the range's distinct users and the sum
    /// over days of each day's distinct users.
    #[allow(clippy::too_many_arguments)]
    fn count_active(
        &self,
        scratch: &mut Scratch,
        range: TimeRange,
        window: PeriodUnit,
        first_window: i64,
        points: &mut [ActiveUsersPoint],
        first_day: i64,
        day_count: i64,
    ) -> (u64, u64) {
        let (lo, hi) = self.positions(range);
        // Stamps: window k is `base + 1 + k`, day d is `base + 1 + windows + d`, and the
        // range is `base + 1 + windows + days`; each kind in its own array.
        let windows = points.len() as u32;
        let days = day_count as u32;
        let base = scratch.begin(windows + days + 1);
        let users = self.users.len();
        scratch.size_stamps([users, users, users, 0, 0]);
        let [window_stamp, day_stamp, range_stamp, ..] = &mut scratch.stamps;
        let range_mark = base + 1 + windows + days;

        let mut unique_users = 0u64;
        let mut user_days = 0u64;
        let mut window_index = 0usize;
        let mut window_end = i128::MIN;
        let mut window_mark = 0;
        let mut day_end = i128::MIN;
        let mut day_mark = 0;
        for p in lo..hi {
            let user = self.rows.user[p];
            if user == ANONYMOUS {
                continue;
            }
            let start = self.rows.start[p];
            if i128::from(start) >= window_end {
                let w = period_of(window, start);
                window_index = (w - first_window) as usize;
                window_end = period_start(window, w + 1);
                window_mark = base + 1 + window_index as u32;
            }
            if i128::from(start) >= day_end {
                let d = period_of(PeriodUnit::Day, start);
                day_end = period_start(PeriodUnit::Day, d + 1);
                day_mark = base + 1 + windows + (d - first_day) as u32;
            }
            let user = user as usize;
            if window_stamp[user] != window_mark {
                window_stamp[user] = window_mark;
                points[window_index].active_users += 1;
            }
            if day_stamp[user] != day_mark {
                day_stamp[user] = day_mark;
                user_days += 1;
            }
            if range_stamp[user] != range_mark {
                range_stamp[user] = range_mark;
                unique_users += 1;
            }
        }
        (unique_users, user_days)
    }
}
