//! GraphQL types of period comparison, retention, active users and users filters
//! (SPEC §4.8), and their conversion from users-query messages.

use async_graphql::{Enum, InputObject, SimpleObject};
use userlens_proto::query::v1 as pb;

use crate::error::GatewayError;
use crate::scalars::{DateTime, saturating_int};

/// At most this many values in one list of a `UserFilter`, each at most
/// `MAX_FILTER_VALUE_BYTES`; users-query checks the same.
const MAX_FILTER_VALUES: usize = 50;
const MAX_FILTER_VALUE_BYTES: usize = 1_000;
pub(crate) const DEFAULT_RETENTION_PERIODS: i32 = 8;
const MAX_RETENTION_PERIODS: i32 = 60;

fn required_time(
    timestamp: Option<&prost_types::Timestamp>,
    what: &'static str,
) -> Result<DateTime, GatewayError> {
    timestamp
        .and_then(DateTime::from_timestamp)
        .ok_or_else(|| GatewayError::Internal(format!("users-query sent no valid {what}")))
}

/// UTC days, ISO weeks (starting Monday 00:00 UTC) or calendar months.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodUnit {
    Day,
    Week,
    Month,
}

impl PeriodUnit {
    pub(crate) fn to_proto(self) -> pb::PeriodUnit {
        match self {
            PeriodUnit::Day => pb::PeriodUnit::Day,
            PeriodUnit::Week => pb::PeriodUnit::Week,
            PeriodUnit::Month => pb::PeriodUnit::Month,
        }
    }
}

/// Conditions on the users of the users table, combined with AND (the values of one list
/// with OR; an empty list or a null is no condition). A filter selects users; their figures
/// still count all their traces in range.
#[derive(InputObject, Debug, Clone, Default, PartialEq)]
pub struct UserFilter {
    /// Inclusive lower bound on the user's cost sum in range (USD, rounded to nano-USD).
    pub min_cost_sum: Option<f64>,
    /// Inclusive upper bound on the user's cost sum in range (USD, rounded to nano-USD).
    pub max_cost_sum: Option<f64>,
    /// Only users with at least one errored session in range.
    pub errored_only: Option<bool>,
    /// A leaf LLM call in range with one of these models (at most 50).
    pub models: Option<Vec<String>>,
    /// A leaf LLM call in range with one of these providers (at most 50).
    pub providers: Option<Vec<String>>,
    /// A tool span in range with one of these tools (at most 50).
    pub tools: Option<Vec<String>>,
    /// A trace in range linked to this issue.
    pub issue_id: Option<String>,
    /// A trace in range that exhibited this behaviour.
    pub behaviour: Option<String>,
    /// The user's email is (true) or is not (false) present.
    pub has_email: Option<bool>,
}

fn check_names(argument: &str, values: &[String]) -> Result<(), GatewayError> {
    if values.len() > MAX_FILTER_VALUES {
        return Err(GatewayError::bad_input(
            argument,
            format!(
                "`{argument}` takes at most {MAX_FILTER_VALUES} values, got {}",
                values.len()
            ),
        ));
    }
    check_name_lengths(argument, values.iter().map(String::as_str))
}

fn check_name_lengths<'a>(
    argument: &str,
    values: impl IntoIterator<Item = &'a str>,
) -> Result<(), GatewayError> {
    for value in values {
        if value.len() > MAX_FILTER_VALUE_BYTES {
            return Err(GatewayError::bad_input(
                argument,
                format!(
                    "each `{argument}` value must be at most {MAX_FILTER_VALUE_BYTES} bytes, got {}",
                    value.len()
                ),
            ));
        }
    }
    Ok(())
}

fn check_cost(argument: &str, usd: Option<f64>) -> Result<(), GatewayError> {
    match usd {
        Some(usd) if !usd.is_finite() || usd < 0.0 => Err(GatewayError::bad_input(
            argument,
            format!("`{argument}` must be a finite, non-negative amount of USD, got {usd}"),
        )),
        _ => Ok(()),
    }
}

impl UserFilter {
    /// Checks the filter (the same rules as users-query) and converts it.
    pub(crate) fn to_proto(&self) -> Result<pb::UserFilter, GatewayError> {
        check_cost("filter.minCostSum", self.min_cost_sum)?;
        check_cost("filter.maxCostSum", self.max_cost_sum)?;
        if let (Some(min), Some(max)) = (self.min_cost_sum, self.max_cost_sum)
            && (min * 1e9).round() > (max * 1e9).round()
        {
            return Err(GatewayError::bad_input(
                "filter.minCostSum",
                "`filter.minCostSum` must not be greater than `filter.maxCostSum`",
            ));
        }
        let models = self.models.clone().unwrap_or_default();
        let providers = self.providers.clone().unwrap_or_default();
        let tools = self.tools.clone().unwrap_or_default();
        check_names("filter.models", &models)?;
        check_names("filter.providers", &providers)?;
        check_names("filter.tools", &tools)?;
        check_name_lengths("filter.issueId", self.issue_id.as_deref())?;
        check_name_lengths("filter.behaviour", self.behaviour.as_deref())?;
        Ok(pb::UserFilter {
            min_cost_sum: self.min_cost_sum,
            max_cost_sum: self.max_cost_sum,
            errored_only: self.errored_only.unwrap_or(false),
            models,
            providers,
            tools,
            issue_id: self.issue_id.clone(),
            behaviour: self.behaviour.clone(),
            has_email: self.has_email,
        })
    }
}

/// `periods` of `retention`, checked; a null means the default.
pub(crate) fn retention_periods(periods: Option<i32>) -> Result<u32, GatewayError> {
    let periods = periods.unwrap_or(DEFAULT_RETENTION_PERIODS);
    match u32::try_from(periods) {
        Ok(n) if (1..=MAX_RETENTION_PERIODS.unsigned_abs()).contains(&n) => Ok(n),
        _ => Err(GatewayError::bad_input(
            "periods",
            format!("`periods` must be between 1 and {MAX_RETENTION_PERIODS}, got {periods}"),
        )),
    }
}

/// The overview figures (no histogram) of the equal-length period right before a range.
#[derive(SimpleObject, Debug, Clone)]
pub struct PeriodOverview {
    /// The previous period: `[from − (to − from), from)`.
    pub from: DateTime,
    pub to: DateTime,
    pub unique_users: i32,
    /// Users whose first trace ever falls in the previous period.
    pub new_users: i32,
    /// Users with a trace in the previous period whose first trace ever is before it.
    pub returning_users: i32,
    pub traces: i32,
    pub traces_with_user: i32,
    pub user_trace_share: f64,
    pub traces_per_user: f64,
    pub sessions: i32,
    pub sessions_with_user: i32,
    pub sessions_per_user: f64,
}

impl TryFrom<pb::PeriodOverview> for PeriodOverview {
    type Error = GatewayError;

    fn try_from(o: pb::PeriodOverview) -> Result<Self, GatewayError> {
        let range = o.range.unwrap_or_default();
        Ok(PeriodOverview {
            from: required_time(range.from.as_ref(), "previous period start")?,
            to: required_time(range.to.as_ref(), "previous period end")?,
            unique_users: saturating_int(o.unique_users),
            new_users: saturating_int(o.new_users),
            returning_users: saturating_int(o.returning_users),
            traces: saturating_int(o.traces),
            traces_with_user: saturating_int(o.traces_with_user),
            user_trace_share: o.user_trace_share,
            traces_per_user: o.traces_per_user,
            sessions: saturating_int(o.sessions),
            sessions_with_user: saturating_int(o.sessions_with_user),
            sessions_per_user: o.sessions_per_user,
        })
    }
}

/// A user's trace count and cost sum (USD) in the previous period; 0 when they had none.
#[derive(SimpleObject, Debug, Clone, Copy, Default)]
pub struct PeriodTotals {
    pub traces: i32,
    pub cost_sum: f64,
}

impl From<pb::PeriodTotals> for PeriodTotals {
    fn from(totals: pb::PeriodTotals) -> Self {
        PeriodTotals {
            traces: saturating_int(totals.traces),
            cost_sum: totals.cost_sum,
        }
    }
}

/// Retention cohorts, oldest first.
#[derive(SimpleObject, Debug, Clone)]
pub struct Retention {
    pub cohorts: Vec<RetentionCohort>,
}

/// The users whose first trace ever falls in the period starting at `start`.
#[derive(SimpleObject, Debug, Clone)]
pub struct RetentionCohort {
    pub start: DateTime,
    /// The cohort's size.
    pub users: i32,
    /// `active[k]`: the cohort's users with a trace in the k-th period after its own
    /// (`active[0] = users`); periods that have not started yet are left out.
    pub active: Vec<i32>,
}

impl TryFrom<pb::Retention> for Retention {
    type Error = GatewayError;

    fn try_from(retention: pb::Retention) -> Result<Self, GatewayError> {
        Ok(Retention {
            cohorts: retention
                .cohorts
                .into_iter()
                .map(|c| {
                    Ok(RetentionCohort {
                        start: required_time(c.start.as_ref(), "cohort start")?,
                        users: saturating_int(c.users),
                        active: c.active.into_iter().map(saturating_int).collect(),
                    })
                })
                .collect::<Result<_, GatewayError>>()?,
        })
    }
}

/// Distinct active users per window, and stickiness.
#[derive(SimpleObject, Debug, Clone)]
pub struct ActiveUsers {
    /// One per window from the one holding `from` to the one holding the last instant
    /// before `to`, zero-filled.
    pub points: Vec<ActiveUsersPoint>,
    /// Users with a trace in range.
    pub unique_users: i32,
    /// Mean over the UTC days intersecting the range of that day's distinct users, divided
    /// by `uniqueUsers` (DAU / MAU for a 30-day range); 0 when the range has no user.
    pub stickiness: f64,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct ActiveUsersPoint {
    pub start: DateTime,
    /// Distinct users with a trace in this window and in range.
    pub active_users: i32,
}

impl TryFrom<pb::ActiveUsers> for ActiveUsers {
    type Error = GatewayError;

    fn try_from(active: pb::ActiveUsers) -> Result<Self, GatewayError> {
        Ok(ActiveUsers {
            points: active
                .points
                .into_iter()
                .map(|p| {
                    Ok(ActiveUsersPoint {
                        start: required_time(p.start.as_ref(), "window start")?,
                        active_users: saturating_int(p.active_users),
                    })
                })
                .collect::<Result<_, GatewayError>>()?,
            unique_users: saturating_int(active.unique_users),
            stickiness: active.stickiness,
        })
    }
}
