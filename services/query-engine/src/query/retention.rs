//! Retention cohorts (SPEC §4.8): users grouped by the period of their first trace ever,
//! and for each cohort how many were active in each following period.

use crate::api::{RetentionCohort, RetentionRequest};
use crate::error::QueryError;
use crate::query::calendar::{clamp_ns, period_of, period_start, periods_starting_in};
use crate::snapshot::Snapshot;
use crate::validate;

pub(crate) const MAX_RETENTION_PERIODS: u32 = 60;
/// Most cohort periods (or active-user windows) one range may hold.
pub(crate) const MAX_PERIODS_IN_RANGE: i64 = 400;

impl Snapshot {
    /// The cohorts whose period starts in the range, oldest first. Periods that start after
    /// `now_ns` are left out (a cohort that starts after it too).
    ///
    /// O(users) to place users in cohorts, plus, per cohort user, one binary search over
    /// their own traces for each period they were active in.
    pub fn retention(
        &self,
        request: &RetentionRequest,
    ) -> Result<Vec<RetentionCohort>, QueryError> {
        let range = validate::range(request.range)?;
        let periods = request.periods;
        if !(1..=MAX_RETENTION_PERIODS).contains(&periods) {
            return Err(QueryError::invalid(
                "periods",
                format!("must be between 1 and {MAX_RETENTION_PERIODS}, got {periods}"),
            ));
        }
        let unit = request.cohort;
        let (first, last) = periods_starting_in(unit, range);
        let cohort_count = (last - first + 1).max(0);
        if cohort_count > MAX_PERIODS_IN_RANGE {
            return Err(QueryError::invalid(
                "range",
                format!(
                    "holds {cohort_count} cohort periods, at most {MAX_PERIODS_IN_RANGE} are allowed"
                ),
            ));
        }
        let now_period = period_of(unit, request.now_ns);
        let last = last.min(now_period);
        if last < first {
            return Ok(Vec::new());
        }

        let mut cohorts: Vec<RetentionCohort> = (first..=last)
            .map(|cohort| {
                let followed = (now_period - cohort + 1).min(i64::from(periods));
                RetentionCohort {
                    start_ns: clamp_ns(period_start(unit, cohort)),
                    users: 0,
                    active: vec![0; followed as usize],
                }
            })
            .collect();
        let cohorts_from = period_start(unit, first);
        let cohorts_to = period_start(unit, last + 1);
        for (user, &first_seen) in self.by_user.first_seen.iter().enumerate() {
            let first_seen_at = i128::from(first_seen);
            if first_seen == i64::MAX || first_seen_at < cohorts_from || first_seen_at >= cohorts_to
            {
                continue;
            }
            let own_period = period_of(unit, first_seen);
            let cohort = &mut cohorts[(own_period - first) as usize];
            cohort.users += 1;
            let followed = cohort.active.len() as i64;
            let traces = self.user_traces(user as u32);
            let mut at = 0;
            while let Some(trace) = traces.get(at) {
                let k = period_of(unit, trace.start) - own_period;
                if k >= followed {
                    break;
                }
                cohort.active[k as usize] += 1;
                let next_start = period_start(unit, own_period + k + 1);
                at += traces[at..].partition_point(|t| i128::from(t.start) < next_start);
            }
        }
        Ok(cohorts)
    }
}
