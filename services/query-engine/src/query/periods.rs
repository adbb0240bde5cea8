//! Period-over-period figures (SPEC §4.8): the overview of the equal-length range right
//! before a range, and a user's totals there.

use crate::api::{PeriodOverview, PeriodTotals, TimeRange};
use crate::error::QueryError;
use crate::numbers::usd;
use crate::snapshot::{Snapshot, window};
use crate::validate;

/// `[from − (to − from), from)`: the equal-length range immediately before `range`.
pub fn previous_period(range: TimeRange) -> Result<TimeRange, QueryError> {
    let range = validate::range(range)?;
    let span = i128::from(range.to_ns) - i128::from(range.from_ns);
    let from = i128::from(range.from_ns) - span;
    let from_ns = i64::try_from(from).map_err(|_| {
        QueryError::invalid(
            "range",
            "the previous period would start before the earliest representable time (1677)",
        )
    })?;
    Ok(TimeRange::new(from_ns, range.from_ns))
}

impl Snapshot {
    /// Every overview figure but the histogram for the period before `range`.
    pub fn previous_period_overview(&self, range: TimeRange) -> Result<PeriodOverview, QueryError> {
        let previous = previous_period(range)?;
        let o = self.overview(previous)?;
        Ok(PeriodOverview {
            range: previous,
            unique_users: o.unique_users,
            new_users: o.new_users,
            returning_users: o.returning_users,
            traces: o.traces,
            traces_with_user: o.traces_with_user,
            user_trace_share: o.user_trace_share,
            traces_per_user: o.traces_per_user,
            sessions: o.sessions,
            sessions_with_user: o.sessions_with_user,
            sessions_per_user: o.sessions_per_user,
        })
    }

    /// A user's trace count and exact cost sum in `range`: two binary searches and a sum.
    pub(crate) fn period_totals(&self, user: u32, range: TimeRange) -> PeriodTotals {
        let traces = window(self.user_traces(user), range);
        let cost: i128 = traces.iter().map(|t| i128::from(t.cost)).sum();
        PeriodTotals {
            traces: traces.len() as u64,
            cost_sum: usd(cost),
        }
    }
}
