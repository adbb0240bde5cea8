//! Protobuf requests → engine requests (with the argument checks of SPEC §5), engine
//! answers → protobuf responses.

use prost_types::Timestamp;
use userlens_proto::query::v1 as pb;
use userlens_query_engine as engine;

use crate::error::QueryServiceError;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const DEFAULT_TREND_BUCKETS: u32 = 14;
pub const DEFAULT_ACTIVITY_DAYS: u32 = 30;

/// Refuses a repeated series field longer than the engine allows, before anything is
/// copied or computed for it.
fn series_field(field: &'static str, values: &[u32]) -> Result<(), QueryServiceError> {
    if values.len() > engine::MAX_SERIES_PER_REQUEST {
        return Err(QueryServiceError::invalid(
            field,
            format!(
                "at most {} values, got {}",
                engine::MAX_SERIES_PER_REQUEST,
                values.len()
            ),
        ));
    }
    Ok(())
}

pub fn timestamp_to_ns(
    timestamp: &Timestamp,
    field: &'static str,
) -> Result<i64, QueryServiceError> {
    let out_of_range = || QueryServiceError::invalid(field, "timestamp out of range (1677–2262)");
    if !(0..1_000_000_000).contains(&timestamp.nanos) {
        return Err(QueryServiceError::invalid(
            field,
            "nanos must be within 0..1e9",
        ));
    }
    timestamp
        .seconds
        .checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(i64::from(timestamp.nanos)))
        .ok_or_else(out_of_range)
}

pub fn ns_to_timestamp(ns: i64) -> Timestamp {
    Timestamp {
        seconds: ns.div_euclid(1_000_000_000),
        nanos: ns.rem_euclid(1_000_000_000) as i32,
    }
}

pub fn time_range(
    range: Option<&pb::TimeRange>,
) -> Result<Option<engine::TimeRange>, QueryServiceError> {
    let Some(range) = range else {
        return Ok(None);
    };
    let from = range
        .from
        .as_ref()
        .ok_or_else(|| QueryServiceError::invalid("range", "from is required"))?;
    let to = range
        .to
        .as_ref()
        .ok_or_else(|| QueryServiceError::invalid("range", "to is required"))?;
    let from_ns = timestamp_to_ns(from, "range")?;
    let to_ns = timestamp_to_ns(to, "range")?;
    if to_ns <= from_ns {
        return Err(QueryServiceError::invalid("range", "to must be after from"));
    }
    Ok(Some(engine::TimeRange::new(from_ns, to_ns)))
}

fn required_range(range: Option<&pb::TimeRange>) -> Result<engine::TimeRange, QueryServiceError> {
    time_range(range)?
        .ok_or_else(|| QueryServiceError::invalid("range", "a time range is required"))
}

pub fn overview_range(
    request: &pb::GetUsersOverviewRequest,
) -> Result<engine::TimeRange, QueryServiceError> {
    required_range(request.range.as_ref())
}

pub fn users_request(
    request: &pb::ListUsersRequest,
) -> Result<engine::UsersRequest, QueryServiceError> {
    use engine::UserOrderField as F;
    use pb::UserOrderField as P;
    series_field("trend_buckets", &request.trend_buckets)?;
    let field = match P::try_from(request.order_field) {
        Ok(P::Unspecified | P::LastSeen) => F::LastSeen,
        Ok(P::FirstSeen) => F::FirstSeen,
        Ok(P::Traces) => F::Traces,
        Ok(P::Sessions) => F::Sessions,
        Ok(P::ErroredSessions) => F::ErroredSessions,
        Ok(P::ErrorRate) => F::ErrorRate,
        Ok(P::CostSum) => F::CostSum,
        Ok(P::CostAverage) => F::CostAverage,
        Ok(P::CostMedian) => F::CostMedian,
        Ok(P::Tokens) => F::Tokens,
        Ok(P::UserId) => F::UserId,
        Ok(P::Email) => F::Email,
        Err(_) => {
            return Err(QueryServiceError::invalid(
                "order_field",
                "unknown order field",
            ));
        }
    };
    let direction = match pb::OrderDirection::try_from(request.order_direction) {
        Ok(pb::OrderDirection::Unspecified | pb::OrderDirection::Desc) => {
            engine::OrderDirection::Desc
        }
        Ok(pb::OrderDirection::Asc) => engine::OrderDirection::Asc,
        Err(_) => {
            return Err(QueryServiceError::invalid(
                "order_direction",
                "unknown direction",
            ));
        }
    };
    Ok(engine::UsersRequest {
        range: required_range(request.range.as_ref())?,
        search: Some(request.search.clone()).filter(|s| !s.is_empty()),
        order: engine::UserOrder::new(field, direction),
        first: request.first.unwrap_or(DEFAULT_PAGE_SIZE),
        after: Some(request.after.clone()).filter(|a| !a.is_empty()),
        trend_buckets: if request.trend_buckets.is_empty() {
            vec![DEFAULT_TREND_BUCKETS]
        } else {
            request.trend_buckets.clone()
        },
        filter: user_filter(request.filter.as_ref()),
        previous_period: request.previous_period,
    })
}

/// An export is a users-table request without paging: `first` and `after` are ignored,
/// and rows carry neither trends nor previous-period totals.
pub fn export_request(
    request: &pb::ListUsersRequest,
) -> Result<engine::UsersRequest, QueryServiceError> {
    let mut users = users_request(request)?;
    users.after = None;
    users.trend_buckets = Vec::new();
    users.previous_period = false;
    Ok(users)
}

fn user_filter(filter: Option<&pb::UserFilter>) -> engine::UserFilter {
    let Some(filter) = filter else {
        return engine::UserFilter::default();
    };
    engine::UserFilter {
        min_cost_sum: filter.min_cost_sum,
        max_cost_sum: filter.max_cost_sum,
        errored_only: filter.errored_only,
        models: filter.models.clone(),
        providers: filter.providers.clone(),
        tools: filter.tools.clone(),
        issue_id: filter.issue_id.clone(),
        behaviour: filter.behaviour.clone(),
        has_email: filter.has_email,
    }
}

fn period_unit(value: i32, field: &'static str) -> Result<engine::PeriodUnit, QueryServiceError> {
    match pb::PeriodUnit::try_from(value) {
        Ok(pb::PeriodUnit::Day) => Ok(engine::PeriodUnit::Day),
        Ok(pb::PeriodUnit::Week) => Ok(engine::PeriodUnit::Week),
        Ok(pb::PeriodUnit::Month) => Ok(engine::PeriodUnit::Month),
        Ok(pb::PeriodUnit::Unspecified) => Err(QueryServiceError::invalid(
            field,
            "DAY, WEEK or MONTH is required",
        )),
        Err(_) => Err(QueryServiceError::invalid(field, "unknown period unit")),
    }
}

pub const DEFAULT_RETENTION_PERIODS: u32 = 8;

pub fn retention_request(
    request: &pb::GetRetentionRequest,
    now_ns: i64,
) -> Result<engine::RetentionRequest, QueryServiceError> {
    Ok(engine::RetentionRequest {
        range: required_range(request.range.as_ref())?,
        cohort: period_unit(request.cohort, "cohort")?,
        periods: request.periods.unwrap_or(DEFAULT_RETENTION_PERIODS),
        now_ns,
    })
}

pub fn active_users_request(
    request: &pb::GetActiveUsersRequest,
) -> Result<(engine::TimeRange, engine::PeriodUnit), QueryServiceError> {
    Ok((
        required_range(request.range.as_ref())?,
        period_unit(request.window, "window")?,
    ))
}

fn range_of(range: engine::TimeRange) -> pb::TimeRange {
    pb::TimeRange {
        from: Some(ns_to_timestamp(range.from_ns)),
        to: Some(ns_to_timestamp(range.to_ns)),
    }
}

pub fn period_overview(o: engine::PeriodOverview) -> pb::PeriodOverview {
    pb::PeriodOverview {
        range: Some(range_of(o.range)),
        unique_users: count(o.unique_users),
        new_users: count(o.new_users),
        returning_users: count(o.returning_users),
        traces: count(o.traces),
        traces_with_user: count(o.traces_with_user),
        user_trace_share: o.user_trace_share,
        traces_per_user: o.traces_per_user,
        sessions: count(o.sessions),
        sessions_with_user: count(o.sessions_with_user),
        sessions_per_user: o.sessions_per_user,
    }
}

pub fn retention(cohorts: Vec<engine::RetentionCohort>) -> pb::Retention {
    pb::Retention {
        cohorts: cohorts
            .into_iter()
            .map(|c| pb::RetentionCohort {
                start: Some(ns_to_timestamp(c.start_ns)),
                users: count(c.users),
                active: c.active.into_iter().map(count).collect(),
            })
            .collect(),
    }
}

pub fn active_users(active: engine::ActiveUsers) -> pb::ActiveUsers {
    pb::ActiveUsers {
        points: active
            .points
            .into_iter()
            .map(|p| pb::ActiveUsersPoint {
                start: Some(ns_to_timestamp(p.start_ns)),
                active_users: count(p.active_users),
            })
            .collect(),
        unique_users: count(active.unique_users),
        stickiness: active.stickiness,
    }
}

pub fn sessions_request(
    request: &pb::ListSessionsRequest,
) -> Result<engine::SessionsRequest, QueryServiceError> {
    Ok(engine::SessionsRequest {
        user_id: request.user_id.clone(),
        range: time_range(request.range.as_ref())?,
        errored_only: request.errored_only,
        first: request.first.unwrap_or(DEFAULT_PAGE_SIZE),
        after: Some(request.after.clone()).filter(|a| !a.is_empty()),
    })
}

pub fn activity_days(request: &pb::GetUserDetailRequest) -> Result<Vec<u32>, QueryServiceError> {
    series_field("activity_days", &request.activity_days)?;
    Ok(if request.activity_days.is_empty() {
        vec![DEFAULT_ACTIVITY_DAYS]
    } else {
        request.activity_days.clone()
    })
}

fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn cost(stats: engine::CostStats) -> pb::CostStats {
    pb::CostStats {
        sum: stats.sum,
        average: stats.average,
        median: stats.median,
    }
}

fn tokens(usage: engine::TokenUsage) -> pb::TokenUsage {
    pb::TokenUsage {
        input: usage.input,
        output: usage.output,
        cached_input: usage.cached_input,
        total: usage.total,
    }
}

pub fn overview(overview: engine::Overview) -> pb::UsersOverview {
    pb::UsersOverview {
        unique_users: count(overview.unique_users),
        new_users: count(overview.new_users),
        returning_users: count(overview.returning_users),
        traces: count(overview.traces),
        traces_with_user: count(overview.traces_with_user),
        user_trace_share: overview.user_trace_share,
        traces_per_user: overview.traces_per_user,
        sessions: count(overview.sessions),
        sessions_with_user: count(overview.sessions_with_user),
        sessions_per_user: overview.sessions_per_user,
        histogram: Some(pb::Histogram {
            bucket_seconds: overview.histogram.bucket_seconds,
            buckets: overview
                .histogram
                .buckets
                .into_iter()
                .map(|b| pb::HistogramBucket {
                    start: Some(ns_to_timestamp(b.start_ns)),
                    traces: count(b.traces),
                    traces_with_user: count(b.traces_with_user),
                    active_users: count(b.active_users),
                    sessions: count(b.sessions),
                    errored_sessions: count(b.errored_sessions),
                    errored_traces: count(b.errored_traces),
                })
                .collect(),
        }),
    }
}

pub fn users(page: engine::UsersPage, trend_buckets: &[u32]) -> pb::ListUsersResponse {
    let end_cursor = page
        .rows
        .last()
        .map(|r| r.cursor.clone())
        .unwrap_or_default();
    pb::ListUsersResponse {
        users: page
            .rows
            .into_iter()
            .map(|row| user_row(row, trend_buckets))
            .collect(),
        has_next_page: page.has_next_page,
        end_cursor,
        total_count: count(page.total_count),
        cost_rollup: Some(cost(page.cost_rollup)),
    }
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01).
pub fn date_of_day(day: i64) -> String {
    chrono::DateTime::from_timestamp(day.saturating_mul(86_400), 0)
        .map(|t| t.date_naive().to_string())
        .unwrap_or_default()
}

pub fn user_detail(detail: engine::UserDetail, activity_days: &[u32]) -> pb::UserDetail {
    pb::UserDetail {
        user_id: detail.user_id,
        email: detail.email,
        first_seen_at: Some(ns_to_timestamp(detail.first_seen_ns)),
        last_seen_at: Some(ns_to_timestamp(detail.last_seen_ns)),
        traces: count(detail.traces),
        sessions: count(detail.sessions),
        errored_sessions: count(detail.errored_sessions),
        cost: Some(cost(detail.cost)),
        tokens: Some(tokens(detail.tokens)),
        average_trace_duration_ms: detail.average_trace_duration_ms,
        active_days: count(detail.active_days),
        activities: detail
            .activities
            .into_iter()
            .zip(activity_days)
            .map(|(points, days)| pb::Activity {
                days: *days,
                points: points
                    .into_iter()
                    .map(|p| pb::DailyActivity {
                        date: date_of_day(p.day),
                        traces: count(p.traces),
                        errored_traces: count(p.errored_traces),
                        sessions: count(p.sessions),
                        errored_sessions: count(p.errored_sessions),
                        cost: p.cost,
                    })
                    .collect(),
            })
            .collect(),
        issues: detail
            .issues
            .into_iter()
            .map(|i| pb::UserIssue {
                id: i.id,
                title: i.title,
                traces: count(i.traces),
                sessions: count(i.sessions),
                first_seen_at: Some(ns_to_timestamp(i.first_seen_ns)),
                last_seen_at: Some(ns_to_timestamp(i.last_seen_ns)),
            })
            .collect(),
        behaviours: detail
            .behaviours
            .into_iter()
            .map(|b| pb::UserBehaviour {
                name: b.name,
                traces: count(b.traces),
                sessions: count(b.sessions),
                first_seen_at: Some(ns_to_timestamp(b.first_seen_ns)),
                last_seen_at: Some(ns_to_timestamp(b.last_seen_ns)),
            })
            .collect(),
    }
}

pub fn sessions(page: engine::SessionsPage) -> pb::ListSessionsResponse {
    let end_cursor = page
        .rows
        .last()
        .map(|r| r.cursor.clone())
        .unwrap_or_default();
    pb::ListSessionsResponse {
        sessions: page
            .rows
            .into_iter()
            .map(|s| pb::Session {
                session_id: s.session_id,
                started_at: Some(ns_to_timestamp(s.started_ns)),
                ended_at: Some(ns_to_timestamp(s.ended_ns)),
                duration_ms: s.duration_ms,
                traces: count(s.traces),
                errored_traces: count(s.errored_traces),
                errored: s.errored,
                cost: s.cost,
                tokens: Some(tokens(s.tokens)),
                cursor: s.cursor,
            })
            .collect(),
        has_next_page: page.has_next_page,
        end_cursor,
        total_count: count(page.total_count),
    }
}

pub fn breakdowns(breakdowns: engine::Breakdowns) -> pb::Breakdowns {
    pb::Breakdowns {
        models: breakdowns
            .models
            .into_iter()
            .map(|m| pb::ModelUsage {
                model: m.model,
                provider: m.provider,
                calls: m.calls,
                traces: count(m.traces),
                tokens: Some(tokens(m.tokens)),
                cost: m.cost,
            })
            .collect(),
        providers: breakdowns
            .providers
            .into_iter()
            .map(|p| pb::ProviderUsage {
                provider: p.provider,
                calls: p.calls,
                traces: count(p.traces),
                tokens: Some(tokens(p.tokens)),
                cost: p.cost,
            })
            .collect(),
        tools: breakdowns
            .tools
            .into_iter()
            .map(|t| pb::ToolUsage {
                tool: t.tool,
                calls: t.calls,
                errors: t.errors,
                traces: count(t.traces),
            })
            .collect(),
    }
}

/// One users-table row; `trend_buckets` names the row's trends in order.
pub fn user_row(row: engine::UserRow, trend_buckets: &[u32]) -> pb::UserRow {
    pb::UserRow {
        user_id: row.user_id,
        email: row.email,
        first_seen_at: Some(ns_to_timestamp(row.first_seen_ns)),
        last_seen_at: Some(ns_to_timestamp(row.last_seen_ns)),
        traces: count(row.traces),
        sessions: count(row.sessions),
        errored_sessions: count(row.errored_sessions),
        error_rate: row.error_rate,
        cost: Some(cost(row.cost)),
        tokens: Some(tokens(row.tokens)),
        trends: row
            .trends
            .into_iter()
            .zip(trend_buckets)
            .map(|(counts, buckets)| pb::Trend {
                buckets: *buckets,
                counts: counts.into_iter().map(count).collect(),
            })
            .collect(),
        cursor: row.cursor,
        previous_period: row.previous_period.map(|p| pb::PeriodTotals {
            traces: count(p.traces),
            cost_sum: p.cost_sum,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_including_before_1970() {
        for ns in [0, 1, -1, 1_700_000_000_123_456_789, -86_400_000_000_001] {
            let ts = ns_to_timestamp(ns);
            assert_eq!(timestamp_to_ns(&ts, "range").ok(), Some(ns));
        }
    }

    #[test]
    fn series_lists_are_capped_naming_the_field() {
        let too_many = vec![7; engine::MAX_SERIES_PER_REQUEST + 1];
        let users = pb::ListUsersRequest {
            trend_buckets: too_many.clone(),
            ..Default::default()
        };
        assert!(matches!(
            users_request(&users),
            Err(QueryServiceError::InvalidArgument {
                field: "trend_buckets",
                ..
            })
        ));
        let detail = pb::GetUserDetailRequest {
            activity_days: too_many,
            ..Default::default()
        };
        assert!(matches!(
            activity_days(&detail),
            Err(QueryServiceError::InvalidArgument {
                field: "activity_days",
                ..
            })
        ));
        let at_limit = pb::GetUserDetailRequest {
            activity_days: vec![30; engine::MAX_SERIES_PER_REQUEST],
            ..Default::default()
        };
        assert_eq!(
            activity_days(&at_limit).ok().map(|d| d.len()),
            Some(engine::MAX_SERIES_PER_REQUEST)
        );
    }

    #[test]
    fn day_numbers_become_dates() {
        assert_eq!(date_of_day(0), "1970-01-01");
        assert_eq!(date_of_day(20_416), "2025-11-24");
    }
}
