//! GraphQL types of the users page, and their conversion from users-query messages.

use std::sync::Arc;

use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, SimpleObject};
use userlens_proto::query::v1 as pb;

use crate::analytics::{PeriodOverview, PeriodTotals};
use crate::error::GatewayError;
use crate::scalars::{BigInt, Date, DateTime, saturating_int};

/// Work a `trend` or `activity` series adds to users-query's answer, in complexity points.
pub(crate) const SERIES_COMPLEXITY: usize = 5;
/// A field that issues its own users-query call, in complexity points (see `schema.rs`).
pub(crate) const RPC_COMPLEXITY: usize = 100;

pub(crate) const DEFAULT_TREND_BUCKETS: i32 = 14;
pub(crate) const DEFAULT_ACTIVITY_DAYS: i32 = 30;

/// A half-open time range `[from, to)` on trace time; `to` must be after `from`.
#[derive(InputObject, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeRangeInput {
    pub from: DateTime,
    pub to: DateTime,
}

impl TimeRangeInput {
    /// `argument` names the GraphQL argument in the error.
    pub(crate) fn validated(self, argument: &str) -> Result<Self, GatewayError> {
        if self.to <= self.from {
            return Err(GatewayError::bad_input(
                argument,
                format!("`{argument}.to` must be after `{argument}.from`"),
            ));
        }
        Ok(self)
    }

    pub(crate) fn to_proto(self) -> pb::TimeRange {
        pb::TimeRange {
            from: Some(self.from.to_timestamp()),
            to: Some(self.to.to_timestamp()),
        }
    }
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderDirection {
    Asc,
    Desc,
}

/// What the users table is sorted by; ties are broken by `userId` ascending.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOrderField {
    LastSeen,
    FirstSeen,
    Traces,
    Sessions,
    ErroredSessions,
    ErrorRate,
    CostSum,
    CostAverage,
    CostMedian,
    /// By the token total.
    Tokens,
    UserId,
    /// A user with no email sorts as the empty string.
    Email,
}

#[derive(InputObject, Debug, Clone, Copy)]
pub struct UserOrder {
    pub field: UserOrderField,
    pub direction: OrderDirection,
}

impl UserOrder {
    pub(crate) fn to_proto(order: Option<UserOrder>) -> (pb::UserOrderField, pb::OrderDirection) {
        let order = order.unwrap_or(UserOrder {
            field: UserOrderField::LastSeen,
            direction: OrderDirection::Desc,
        });
        let field = match order.field {
            UserOrderField::LastSeen => pb::UserOrderField::LastSeen,
            UserOrderField::FirstSeen => pb::UserOrderField::FirstSeen,
            UserOrderField::Traces => pb::UserOrderField::Traces,
            UserOrderField::Sessions => pb::UserOrderField::Sessions,
            UserOrderField::ErroredSessions => pb::UserOrderField::ErroredSessions,
            UserOrderField::ErrorRate => pb::UserOrderField::ErrorRate,
            UserOrderField::CostSum => pb::UserOrderField::CostSum,
            UserOrderField::CostAverage => pb::UserOrderField::CostAverage,
            UserOrderField::CostMedian => pb::UserOrderField::CostMedian,
            UserOrderField::Tokens => pb::UserOrderField::Tokens,
            UserOrderField::UserId => pb::UserOrderField::UserId,
            UserOrderField::Email => pb::UserOrderField::Email,
        };
        let direction = match order.direction {
            OrderDirection::Asc => pb::OrderDirection::Asc,
            OrderDirection::Desc => pb::OrderDirection::Desc,
        };
        (field, direction)
    }
}

/// Relay page information.
#[derive(SimpleObject, Debug, Clone)]
pub struct PageInfo {
    pub has_next_page: bool,
    /// The cursor of the last edge; null when the page is empty.
    pub end_cursor: Option<String>,
}

impl PageInfo {
    fn new(has_next_page: bool, end_cursor: String) -> PageInfo {
        PageInfo {
            has_next_page,
            end_cursor: (!end_cursor.is_empty()).then_some(end_cursor),
        }
    }
}

/// Tokens of leaf LLM calls; `cachedInput` is a part of `input`, `total` = input + output.
#[derive(SimpleObject, Debug, Clone, Copy, Default)]
pub struct TokenUsage {
    pub input: BigInt,
    pub output: BigInt,
    pub cached_input: BigInt,
    pub total: BigInt,
}

impl From<Option<pb::TokenUsage>> for TokenUsage {
    fn from(tokens: Option<pb::TokenUsage>) -> Self {
        let tokens = tokens.unwrap_or_default();
        TokenUsage {
            input: BigInt(tokens.input),
            output: BigInt(tokens.output),
            cached_input: BigInt(tokens.cached_input),
            total: BigInt(tokens.total),
        }
    }
}

/// Cost over traces, in USD: total, mean per trace, exact median per trace.
#[derive(SimpleObject, Debug, Clone, Copy, Default)]
pub struct CostStats {
    pub sum: f64,
    pub average: f64,
    pub median: f64,
}

impl From<Option<pb::CostStats>> for CostStats {
    fn from(cost: Option<pb::CostStats>) -> Self {
        let cost = cost.unwrap_or_default();
        CostStats {
            sum: cost.sum,
            average: cost.average,
            median: cost.median,
        }
    }
}

fn required_time(
    timestamp: Option<&prost_types::Timestamp>,
    what: &'static str,
) -> Result<DateTime, GatewayError> {
    timestamp
        .and_then(DateTime::from_timestamp)
        .ok_or_else(|| GatewayError::Internal(format!("users-query sent no valid {what}")))
}

/// Users, traces and sessions in a time range.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(complex)]
pub struct UsersOverview {
    /// Users with at least one trace in range.
    pub unique_users: i32,
    /// Users whose first trace ever falls in range.
    pub new_users: i32,
    /// Users with a trace in range whose first trace ever is before it
    /// (`uniqueUsers = newUsers + returningUsers`).
    pub returning_users: i32,
    /// All traces in range.
    pub traces: i32,
    /// Traces in range that have a user.
    pub traces_with_user: i32,
    /// tracesWithUser / traces (0 when no traces).
    pub user_trace_share: f64,
    /// tracesWithUser / uniqueUsers (0 when no users).
    pub traces_per_user: f64,
    /// Distinct sessions with a trace in range.
    pub sessions: i32,
    /// Sessions with a trace in range that has a user.
    pub sessions_with_user: i32,
    /// Mean over unique users of their session count in range.
    pub sessions_per_user: f64,
    pub histogram: ActivityHistogram,
    /// The range asked for, for `previousPeriod`.
    #[graphql(skip)]
    pub range: TimeRangeInput,
}

#[ComplexObject]
impl UsersOverview {
    /// The same figures, but the histogram, for the equal-length period right before the
    /// range: `[from − (to − from), from)`.
    #[graphql(complexity = "RPC_COMPLEXITY + child_complexity")]
    async fn previous_period(&self, ctx: &Context<'_>) -> async_graphql::Result<PeriodOverview> {
        let (client, credentials) = crate::query::deps(ctx)?;
        let previous = client
            .previous_period_overview(
                credentials,
                pb::GetUsersOverviewRequest {
                    range: Some(self.range.to_proto()),
                },
            )
            .await?;
        Ok(PeriodOverview::try_from(previous)?)
    }
}

impl UsersOverview {
    pub(crate) fn from_proto(
        overview: pb::UsersOverview,
        range: TimeRangeInput,
    ) -> Result<Self, GatewayError> {
        let histogram = overview.histogram.unwrap_or_default();
        Ok(UsersOverview {
            range,
            unique_users: saturating_int(overview.unique_users),
            new_users: saturating_int(overview.new_users),
            returning_users: saturating_int(overview.returning_users),
            traces: saturating_int(overview.traces),
            traces_with_user: saturating_int(overview.traces_with_user),
            user_trace_share: overview.user_trace_share,
            traces_per_user: overview.traces_per_user,
            sessions: saturating_int(overview.sessions),
            sessions_with_user: saturating_int(overview.sessions_with_user),
            sessions_per_user: overview.sessions_per_user,
            histogram: ActivityHistogram {
                bucket_seconds: saturating_int(histogram.bucket_seconds),
                buckets: histogram
                    .buckets
                    .into_iter()
                    .map(ActivityBucket::try_from)
                    .collect::<Result<_, _>>()?,
            },
        })
    }
}

/// Equal-width buckets aligned to multiples of `bucketSeconds` since the Unix epoch, covering
/// the range; at most 60.
#[derive(SimpleObject, Debug, Clone)]
pub struct ActivityHistogram {
    pub bucket_seconds: i32,
    pub buckets: Vec<ActivityBucket>,
}

/// Figures of the traces in range that fall in `[start, start + bucketSeconds)`.
#[derive(SimpleObject, Debug, Clone)]
pub struct ActivityBucket {
    pub start: DateTime,
    pub traces: i32,
    pub traces_with_user: i32,
    pub active_users: i32,
    pub sessions: i32,
    pub errored_sessions: i32,
    pub errored_traces: i32,
}

impl TryFrom<pb::HistogramBucket> for ActivityBucket {
    type Error = GatewayError;

    fn try_from(bucket: pb::HistogramBucket) -> Result<Self, GatewayError> {
        Ok(ActivityBucket {
            start: required_time(bucket.start.as_ref(), "histogram bucket start")?,
            traces: saturating_int(bucket.traces),
            traces_with_user: saturating_int(bucket.traces_with_user),
            active_users: saturating_int(bucket.active_users),
            sessions: saturating_int(bucket.sessions),
            errored_sessions: saturating_int(bucket.errored_sessions),
            errored_traces: saturating_int(bucket.errored_traces),
        })
    }
}

/// One page of the users table.
#[derive(SimpleObject, Debug, Clone)]
pub struct UserConnection {
    pub edges: Vec<UserEdge>,
    pub nodes: Vec<Arc<UserRow>>,
    pub page_info: PageInfo,
    /// Users matching the range and search, over all pages.
    pub total_count: i32,
    /// Over every matching user: the sum of their cost sums, the mean of their per-trace
    /// averages, the median of their per-trace medians.
    pub cost_rollup: CostStats,
}

impl TryFrom<pb::ListUsersResponse> for UserConnection {
    type Error = GatewayError;

    fn try_from(page: pb::ListUsersResponse) -> Result<Self, GatewayError> {
        let mut edges = Vec::with_capacity(page.users.len());
        let mut nodes = Vec::with_capacity(page.users.len());
        for row in page.users {
            let cursor = row.cursor.clone();
            let node = Arc::new(UserRow::try_from(row)?);
            nodes.push(Arc::clone(&node));
            edges.push(UserEdge { cursor, node });
        }
        Ok(UserConnection {
            edges,
            nodes,
            page_info: PageInfo::new(page.has_next_page, page.end_cursor),
            total_count: saturating_int(page.total_count),
            cost_rollup: page.cost_rollup.into(),
        })
    }
}

#[derive(SimpleObject, Debug, Clone)]
pub struct UserEdge {
    /// Opaque; pass it as `after` to continue right after this edge.
    pub cursor: String,
    pub node: Arc<UserRow>,
}

/// A user's figures over the traces of the requested range.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(complex)]
pub struct UserRow {
    pub user_id: String,
    /// The email on the user's most recent trace that has one (lifetime).
    pub email: Option<String>,
    /// Earliest trace in range.
    pub first_seen_at: DateTime,
    /// Latest trace in range.
    pub last_seen_at: DateTime,
    pub traces: i32,
    pub sessions: i32,
    pub errored_sessions: i32,
    /// erroredSessions / sessions.
    pub error_rate: f64,
    pub cost: CostStats,
    pub tokens: TokenUsage,
    #[graphql(skip)]
    pub trends: Vec<pb::Trend>,
    #[graphql(skip)]
    pub previous_period: Option<pb::PeriodTotals>,
}

#[ComplexObject]
impl UserRow {
    /// Trace counts in `buckets` equal slices of the range, oldest first (1–60).
    #[graphql(complexity = "SERIES_COMPLEXITY + child_complexity")]
    async fn trend(
        &self,
        #[graphql(default = 14)] buckets: Option<i32>,
    ) -> async_graphql::Result<Vec<i32>> {
        let buckets = trend_buckets(buckets)?;
        let trend = self
            .trends
            .iter()
            .find(|trend| trend.buckets == buckets)
            .ok_or_else(|| {
                GatewayError::Internal(format!("users-query sent no trend of {buckets} buckets"))
            })?;
        Ok(trend.counts.iter().copied().map(saturating_int).collect())
    }

    /// The user's trace count and cost sum in the equal-length period right before the
    /// range (0 and 0.0 when they had none there).
    async fn previous_period(&self) -> async_graphql::Result<PeriodTotals> {
        let totals = self.previous_period.ok_or_else(|| {
            GatewayError::Internal("users-query sent no previous-period totals".into())
        })?;
        Ok(PeriodTotals::from(totals))
    }
}

impl TryFrom<pb::UserRow> for UserRow {
    type Error = GatewayError;

    fn try_from(row: pb::UserRow) -> Result<Self, GatewayError> {
        Ok(UserRow {
            first_seen_at: required_time(row.first_seen_at.as_ref(), "user first_seen_at")?,
            last_seen_at: required_time(row.last_seen_at.as_ref(), "user last_seen_at")?,
            user_id: row.user_id,
            email: row.email,
            traces: saturating_int(row.traces),
            sessions: saturating_int(row.sessions),
            errored_sessions: saturating_int(row.errored_sessions),
            error_rate: row.error_rate,
            cost: row.cost.into(),
            tokens: row.tokens.into(),
            trends: row.trends,
            previous_period: row.previous_period,
        })
    }
}

/// `buckets` of `trend`, checked; an explicit null means the default.
pub(crate) fn trend_buckets(buckets: Option<i32>) -> Result<u32, GatewayError> {
    let buckets = buckets.unwrap_or(DEFAULT_TREND_BUCKETS);
    match u32::try_from(buckets) {
        Ok(n @ 1..=60) => Ok(n),
        _ => Err(GatewayError::bad_input(
            "buckets",
            format!("`buckets` must be between 1 and 60, got {buckets}"),
        )),
    }
}

/// `days` of `activity`, checked; an explicit null means the default.
pub(crate) fn activity_days(days: Option<i32>) -> Result<u32, GatewayError> {
    let days = days.unwrap_or(DEFAULT_ACTIVITY_DAYS);
    match u32::try_from(days) {
        Ok(n @ 1..=365) => Ok(n),
        _ => Err(GatewayError::bad_input(
            "days",
            format!("`days` must be between 1 and 365, got {days}"),
        )),
    }
}

/// A user's lifetime profile.
#[derive(Debug, Clone)]
pub struct UserDetail {
    pub(crate) user_id: String,
    pub(crate) email: Option<String>,
    pub(crate) first_seen_at: DateTime,
    pub(crate) last_seen_at: DateTime,
    pub(crate) traces: i32,
    pub(crate) sessions: i32,
    pub(crate) errored_sessions: i32,
    pub(crate) cost: CostStats,
    pub(crate) tokens: TokenUsage,
    pub(crate) average_trace_duration_ms: f64,
    pub(crate) active_days: i32,
    pub(crate) activities: Vec<(u32, Vec<DailyActivity>)>,
    pub(crate) issues: Vec<UserIssue>,
    pub(crate) behaviours: Vec<UserBehaviour>,
    /// Fetched up front, one per distinct `breakdowns(range:)` of the selection.
    pub(crate) breakdowns: Vec<(Option<TimeRangeInput>, Breakdowns)>,
}

impl UserDetail {
    pub(crate) fn from_proto(
        user: pb::UserDetail,
        breakdowns: Vec<(Option<TimeRangeInput>, Breakdowns)>,
    ) -> Result<UserDetail, GatewayError> {
        Ok(UserDetail {
            first_seen_at: required_time(user.first_seen_at.as_ref(), "user first_seen_at")?,
            last_seen_at: required_time(user.last_seen_at.as_ref(), "user last_seen_at")?,
            user_id: user.user_id,
            email: user.email,
            traces: saturating_int(user.traces),
            sessions: saturating_int(user.sessions),
            errored_sessions: saturating_int(user.errored_sessions),
            cost: user.cost.into(),
            tokens: user.tokens.into(),
            average_trace_duration_ms: user.average_trace_duration_ms,
            active_days: saturating_int(user.active_days),
            activities: user
                .activities
                .into_iter()
                .map(|activity| {
                    let points = activity
                        .points
                        .into_iter()
                        .map(DailyActivity::try_from)
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((activity.days, points))
                })
                .collect::<Result<_, GatewayError>>()?,
            issues: user
                .issues
                .into_iter()
                .map(UserIssue::try_from)
                .collect::<Result<_, _>>()?,
            behaviours: user
                .behaviours
                .into_iter()
                .map(UserBehaviour::try_from)
                .collect::<Result<_, _>>()?,
            breakdowns,
        })
    }
}

/// A user's lifetime profile.
#[Object]
impl UserDetail {
    async fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The email on the user's most recent trace that has one.
    async fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }

    /// Time of the user's first trace.
    async fn first_seen_at(&self) -> DateTime {
        self.first_seen_at
    }

    /// Time of the user's latest trace.
    async fn last_seen_at(&self) -> DateTime {
        self.last_seen_at
    }

    async fn traces(&self) -> i32 {
        self.traces
    }

    /// Lifetime session count; the sessions themselves are the top-level `sessions` query.
    async fn sessions(&self) -> i32 {
        self.sessions
    }

    async fn errored_sessions(&self) -> i32 {
        self.errored_sessions
    }

    async fn cost(&self) -> CostStats {
        self.cost
    }

    async fn tokens(&self) -> TokenUsage {
        self.tokens
    }

    async fn average_trace_duration_ms(&self) -> f64 {
        self.average_trace_duration_ms
    }

    /// Distinct UTC days with a trace.
    async fn active_days(&self) -> i32 {
        self.active_days
    }

    /// One point per UTC day, the last `days` days ending today (1–365), oldest first,
    /// zero-filled.
    #[graphql(complexity = "SERIES_COMPLEXITY + child_complexity")]
    async fn activity(
        &self,
        #[graphql(default = 30)] days: Option<i32>,
    ) -> async_graphql::Result<&[DailyActivity]> {
        let days = activity_days(days)?;
        let (_, points) = self
            .activities
            .iter()
            .find(|(d, _)| *d == days)
            .ok_or_else(|| {
                GatewayError::Internal(format!("users-query sent no activity of {days} days"))
            })?;
        Ok(points)
    }

    /// Ordered by traces descending, then id.
    async fn issues(&self) -> &[UserIssue] {
        &self.issues
    }

    /// Ordered by traces descending, then name.
    async fn behaviours(&self) -> &[UserBehaviour] {
        &self.behaviours
    }

    /// Models, providers and tools of the user's traces in `range` (lifetime when absent).
    #[graphql(complexity = "RPC_COMPLEXITY + child_complexity")]
    async fn breakdowns(
        &self,
        range: Option<TimeRangeInput>,
    ) -> async_graphql::Result<&Breakdowns> {
        let (_, breakdowns) = self
            .breakdowns
            .iter()
            .find(|(r, _)| *r == range)
            .ok_or_else(|| {
                GatewayError::Internal("breakdowns of a range the selection did not ask for".into())
            })?;
        Ok(breakdowns)
    }
}

/// One UTC day of a user's activity.
#[derive(SimpleObject, Debug, Clone)]
pub struct DailyActivity {
    pub date: Date,
    pub traces: i32,
    pub errored_traces: i32,
    pub sessions: i32,
    pub errored_sessions: i32,
    /// USD.
    pub cost: f64,
}

impl TryFrom<pb::DailyActivity> for DailyActivity {
    type Error = GatewayError;

    fn try_from(point: pb::DailyActivity) -> Result<Self, GatewayError> {
        let date = Date::parse_iso(&point.date).ok_or_else(|| {
            GatewayError::Internal(format!("users-query sent an invalid date {:?}", point.date))
        })?;
        Ok(DailyActivity {
            date,
            traces: saturating_int(point.traces),
            errored_traces: saturating_int(point.errored_traces),
            sessions: saturating_int(point.sessions),
            errored_sessions: saturating_int(point.errored_sessions),
            cost: point.cost,
        })
    }
}

/// A known problem the user's traces are linked to.
#[derive(SimpleObject, Debug, Clone)]
pub struct UserIssue {
    pub id: String,
    /// The title given on the project's most recent trace that gives one.
    pub title: Option<String>,
    /// Traces of this user linked to the issue.
    pub traces: i32,
    pub sessions: i32,
    pub first_seen_at: DateTime,
    pub last_seen_at: DateTime,
}

impl TryFrom<pb::UserIssue> for UserIssue {
    type Error = GatewayError;

    fn try_from(issue: pb::UserIssue) -> Result<Self, GatewayError> {
        Ok(UserIssue {
            first_seen_at: required_time(issue.first_seen_at.as_ref(), "issue first_seen_at")?,
            last_seen_at: required_time(issue.last_seen_at.as_ref(), "issue last_seen_at")?,
            id: issue.id,
            title: issue.title,
            traces: saturating_int(issue.traces),
            sessions: saturating_int(issue.sessions),
        })
    }
}

/// A named pattern the user's traces exhibited.
#[derive(SimpleObject, Debug, Clone)]
pub struct UserBehaviour {
    pub name: String,
    pub traces: i32,
    pub sessions: i32,
    pub first_seen_at: DateTime,
    pub last_seen_at: DateTime,
}

impl TryFrom<pb::UserBehaviour> for UserBehaviour {
    type Error = GatewayError;

    fn try_from(behaviour: pb::UserBehaviour) -> Result<Self, GatewayError> {
        Ok(UserBehaviour {
            first_seen_at: required_time(
                behaviour.first_seen_at.as_ref(),
                "behaviour first_seen_at",
            )?,
            last_seen_at: required_time(behaviour.last_seen_at.as_ref(), "behaviour last_seen_at")?,
            name: behaviour.name,
            traces: saturating_int(behaviour.traces),
            sessions: saturating_int(behaviour.sessions),
        })
    }
}

/// Models, providers and tools a user's traces relied on, by calls descending.
#[derive(SimpleObject, Debug, Clone)]
pub struct Breakdowns {
    pub models: Vec<ModelUsage>,
    pub providers: Vec<ProviderUsage>,
    pub tools: Vec<ToolUsage>,
}

impl From<pb::Breakdowns> for Breakdowns {
    fn from(breakdowns: pb::Breakdowns) -> Self {
        Breakdowns {
            models: breakdowns
                .models
                .into_iter()
                .map(|m| ModelUsage {
                    model: m.model,
                    provider: m.provider,
                    calls: saturating_int(m.calls),
                    traces: saturating_int(m.traces),
                    tokens: m.tokens.into(),
                    cost: m.cost,
                })
                .collect(),
            providers: breakdowns
                .providers
                .into_iter()
                .map(|p| ProviderUsage {
                    provider: p.provider,
                    calls: saturating_int(p.calls),
                    traces: saturating_int(p.traces),
                    tokens: p.tokens.into(),
                    cost: p.cost,
                })
                .collect(),
            tools: breakdowns
                .tools
                .into_iter()
                .map(|t| ToolUsage {
                    tool: t.tool,
                    calls: saturating_int(t.calls),
                    errors: saturating_int(t.errors),
                    traces: saturating_int(t.traces),
                })
                .collect(),
        }
    }
}

/// Usage of one (model, provider) pair.
#[derive(SimpleObject, Debug, Clone)]
pub struct ModelUsage {
    pub model: String,
    /// Null when the spans named no provider.
    pub provider: Option<String>,
    /// Leaf LLM calls.
    pub calls: i32,
    pub traces: i32,
    pub tokens: TokenUsage,
    /// USD.
    pub cost: f64,
}

/// Usage of one provider.
#[derive(SimpleObject, Debug, Clone)]
pub struct ProviderUsage {
    pub provider: String,
    /// Leaf LLM calls.
    pub calls: i32,
    pub traces: i32,
    pub tokens: TokenUsage,
    /// USD.
    pub cost: f64,
}

/// Usage of one tool.
#[derive(SimpleObject, Debug, Clone)]
pub struct ToolUsage {
    pub tool: String,
    /// Tool spans.
    pub calls: i32,
    /// Errored tool spans.
    pub errors: i32,
    pub traces: i32,
}

/// One page of a user's sessions, newest first.
#[derive(SimpleObject, Debug, Clone)]
pub struct SessionConnection {
    pub edges: Vec<SessionEdge>,
    pub nodes: Vec<Arc<Session>>,
    pub page_info: PageInfo,
    /// Matching sessions over all pages.
    pub total_count: i32,
}

impl TryFrom<pb::ListSessionsResponse> for SessionConnection {
    type Error = GatewayError;

    fn try_from(page: pb::ListSessionsResponse) -> Result<Self, GatewayError> {
        let mut edges = Vec::with_capacity(page.sessions.len());
        let mut nodes = Vec::with_capacity(page.sessions.len());
        for session in page.sessions {
            let cursor = session.cursor.clone();
            let node = Arc::new(Session::try_from(session)?);
            nodes.push(Arc::clone(&node));
            edges.push(SessionEdge { cursor, node });
        }
        Ok(SessionConnection {
            edges,
            nodes,
            page_info: PageInfo::new(page.has_next_page, page.end_cursor),
            total_count: saturating_int(page.total_count),
        })
    }
}

#[derive(SimpleObject, Debug, Clone)]
pub struct SessionEdge {
    /// Opaque; pass it as `after` to continue right after this edge.
    pub cursor: String,
    pub node: Arc<Session>,
}

/// A session of the user, over its traces in the requested range.
#[derive(SimpleObject, Debug, Clone)]
pub struct Session {
    pub session_id: String,
    pub started_at: DateTime,
    /// The latest trace end.
    pub ended_at: DateTime,
    /// endedAt − startedAt.
    pub duration_ms: f64,
    pub traces: i32,
    pub errored_traces: i32,
    pub errored: bool,
    /// USD.
    pub cost: f64,
    pub tokens: TokenUsage,
}

impl TryFrom<pb::Session> for Session {
    type Error = GatewayError;

    fn try_from(session: pb::Session) -> Result<Self, GatewayError> {
        Ok(Session {
            started_at: required_time(session.started_at.as_ref(), "session started_at")?,
            ended_at: required_time(session.ended_at.as_ref(), "session ended_at")?,
            session_id: session.session_id,
            duration_ms: session.duration_ms,
            traces: saturating_int(session.traces),
            errored_traces: saturating_int(session.errored_traces),
            errored: session.errored,
            cost: session.cost,
            tokens: session.tokens.into(),
        })
    }
}
