//! Requests and answers of the engine's queries (SPEC §4, shaped for SPEC §5).
//!
//! Times are Unix nanoseconds (UTC), costs are USD computed from exact nano-USD integer sums,
//! counts are exact integers.

/// A half-open window `[from_ns, to_ns)` on trace time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeRange {
    pub from_ns: i64,
    pub to_ns: i64,
}

impl TimeRange {
    pub fn new(from_ns: i64, to_ns: i64) -> Self {
        Self { from_ns, to_ns }
    }

    pub fn contains(&self, t_ns: i64) -> bool {
        self.from_ns <= t_ns && t_ns < self.to_ns
    }
}

/// The sortable columns of the users table (SPEC §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    Tokens,
    UserId,
    Email,
}

impl UserOrderField {
    pub const ALL: [UserOrderField; 12] = [
        UserOrderField::LastSeen,
        UserOrderField::FirstSeen,
        UserOrderField::Traces,
        UserOrderField::Sessions,
        UserOrderField::ErroredSessions,
        UserOrderField::ErrorRate,
        UserOrderField::CostSum,
        UserOrderField::CostAverage,
        UserOrderField::CostMedian,
        UserOrderField::Tokens,
        UserOrderField::UserId,
        UserOrderField::Email,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderDirection {
    Asc,
    Desc,
}

/// Order of the users table; ties are always broken by user id ascending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserOrder {
    pub field: UserOrderField,
    pub direction: OrderDirection,
}

impl UserOrder {
    pub fn new(field: UserOrderField, direction: OrderDirection) -> Self {
        Self { field, direction }
    }
}

impl Default for UserOrder {
    fn default() -> Self {
        Self {
            field: UserOrderField::LastSeen,
            direction: OrderDirection::Desc,
        }
    }
}

/// Sum, mean per trace and exact median per trace of a set of trace costs, in USD.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CostStats {
    pub sum: f64,
    pub average: f64,
    pub median: f64,
}

/// Token totals; `total` = `input` + `output` (`cached_input` is a part of `input`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenUsage {
    pub input: i64,
    pub output: i64,
    pub cached_input: i64,
    pub total: i64,
}

impl TokenUsage {
    pub fn new(input: i64, output: i64, cached_input: i64) -> Self {
        Self {
            input,
            output,
            cached_input,
            total: input.saturating_add(output),
        }
    }
}

/// A page of the users table (SPEC §4.2).
#[derive(Debug, Clone, PartialEq)]
pub struct UsersRequest {
    pub range: TimeRange,
    /// Case-insensitive substring of the user id or lifetime email; trimmed, ≤ 500 chars.
    pub search: Option<String>,
    pub order: UserOrder,
    /// Page size, 1–200.
    pub first: u32,
    /// A row's `cursor` from a previous page of the same order.
    pub after: Option<String>,
    /// One trend per entry (each 1–60 slices), in the same order in every row.
    pub trend_buckets: Vec<u32>,
    /// Conditions a user must meet to be listed (SPEC §4.8); the default lists every user.
    pub filter: UserFilter,
    /// Whether each row carries its user's totals in the previous period (SPEC §4.8).
    pub previous_period: bool,
}

impl UsersRequest {
    /// The request the GraphQL defaults describe: `LAST_SEEN DESC`, 50 rows, one 14-slice trend.
    pub fn new(range: TimeRange) -> Self {
        Self {
            range,
            search: None,
            order: UserOrder::default(),
            first: 50,
            after: None,
            trend_buckets: vec![14],
            filter: UserFilter::default(),
            previous_period: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsersPage {
    pub rows: Vec<UserRow>,
    pub has_next_page: bool,
    /// Every user matching the search with a trace in range, not just this page.
    pub total_count: u64,
    /// Over every matching user: sum of sums, mean of averages, median of medians.
    pub cost_rollup: CostStats,
}

/// One user's figures over their traces in range.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub user_id: String,
    /// Lifetime email: the one on the user's most recent trace that has one.
    pub email: Option<String>,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    pub traces: u64,
    pub sessions: u64,
    pub errored_sessions: u64,
    pub error_rate: f64,
    pub cost: CostStats,
    pub tokens: TokenUsage,
    /// One trace-count series per requested trend, oldest slice first.
    pub trends: Vec<Vec<u64>>,
    /// The user's totals in the previous period, when the request asked for them.
    pub previous_period: Option<PeriodTotals>,
    pub cursor: String,
}

/// A user's trace count and cost sum in one window (0 and 0.0 when they had none there).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PeriodTotals {
    pub traces: u64,
    pub cost_sum: f64,
}

/// Conditions on the users of a users table (SPEC §4.8). They combine with AND, the values
/// of one list with OR; an empty list or `None` is no condition.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserFilter {
    /// Inclusive lower bound on the user's cost sum in range, USD.
    pub min_cost_sum: Option<f64>,
    /// Inclusive upper bound on the user's cost sum in range, USD.
    pub max_cost_sum: Option<f64>,
    /// At least one errored session in range.
    pub errored_only: bool,
    /// A leaf LLM call in range with one of these models.
    pub models: Vec<String>,
    /// A leaf LLM call in range with one of these providers.
    pub providers: Vec<String>,
    /// A tool span in range with one of these tools.
    pub tools: Vec<String>,
    /// A trace in range linked to this issue.
    pub issue_id: Option<String>,
    /// A trace in range that exhibited this behaviour.
    pub behaviour: Option<String>,
    /// The user's lifetime email is (`true`) or is not (`false`) present.
    pub has_email: Option<bool>,
}

impl UserFilter {
    /// Whether the filter lets every user through.
    pub fn is_empty(&self) -> bool {
        self == &UserFilter::default()
    }
}

/// Calendar periods of cohorts and active-user windows: UTC days, ISO weeks (Monday 00:00
/// UTC) or calendar months.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeriodUnit {
    Day,
    Week,
    Month,
}

/// Retention cohorts (SPEC §4.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionRequest {
    pub range: TimeRange,
    pub cohort: PeriodUnit,
    /// Periods followed per cohort, 1–60; period 0 is the cohort's own.
    pub periods: u32,
    /// The moment the request is served: later periods are left out.
    pub now_ns: i64,
}

/// The users whose first trace ever falls in one period, and how many of them were active
/// in each period from that one on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionCohort {
    pub start_ns: i64,
    pub users: u64,
    /// `active[k]`: the cohort's users with a trace in the k-th period after its own.
    pub active: Vec<u64>,
}

/// Distinct active users per window, and stickiness (SPEC §4.8).
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveUsers {
    pub points: Vec<ActiveUsersPoint>,
    /// Users with a trace in range.
    pub unique_users: u64,
    /// Mean over the UTC days intersecting the range of that day's distinct users, divided
    /// by `unique_users`; 0 when the range has no user.
    pub stickiness: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveUsersPoint {
    pub start_ns: i64,
    /// Distinct users with a trace in this window and in range.
    pub active_users: u64,
}

/// Users overview for a range (SPEC §4.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    pub unique_users: u64,
    pub new_users: u64,
    /// Users with a trace in range whose first trace ever is before it.
    pub returning_users: u64,
    pub traces: u64,
    pub traces_with_user: u64,
    pub user_trace_share: f64,
    pub traces_per_user: f64,
    pub sessions: u64,
    pub sessions_with_user: u64,
    pub sessions_per_user: f64,
    pub histogram: Histogram,
}

/// The overview figures of a range without its histogram: what `previousPeriod` holds.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodOverview {
    /// The window these figures are for.
    pub range: TimeRange,
    pub unique_users: u64,
    pub new_users: u64,
    pub returning_users: u64,
    pub traces: u64,
    pub traces_with_user: u64,
    pub user_trace_share: f64,
    pub traces_per_user: f64,
    pub sessions: u64,
    pub sessions_with_user: u64,
    pub sessions_per_user: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub bucket_seconds: i64,
    pub buckets: Vec<HistogramBucket>,
}

/// Figures over the traces in range that fall in `[start_ns, start_ns + bucket width)`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramBucket {
    pub start_ns: i64,
    pub traces: u64,
    pub traces_with_user: u64,
    pub active_users: u64,
    pub sessions: u64,
    pub errored_sessions: u64,
    pub errored_traces: u64,
}

/// A user's lifetime profile (SPEC §4.3).
#[derive(Debug, Clone, PartialEq)]
pub struct UserDetail {
    pub user_id: String,
    pub email: Option<String>,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    pub traces: u64,
    pub sessions: u64,
    pub errored_sessions: u64,
    pub cost: CostStats,
    pub tokens: TokenUsage,
    pub average_trace_duration_ms: f64,
    pub active_days: u64,
    /// One series per requested day count, oldest day first, ending on the day of `now_ns`.
    pub activities: Vec<Vec<DailyActivity>>,
    pub issues: Vec<UserIssue>,
    pub behaviours: Vec<UserBehaviour>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DailyActivity {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    pub traces: u64,
    pub errored_traces: u64,
    pub sessions: u64,
    pub errored_sessions: u64,
    pub cost: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserIssue {
    pub id: String,
    /// The title on the project's most recent trace that gives one for this issue.
    pub title: Option<String>,
    pub traces: u64,
    pub sessions: u64,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserBehaviour {
    pub name: String,
    pub traces: u64,
    pub sessions: u64,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
}

/// Models, providers and tools of one user's traces (SPEC §4.5).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Breakdowns {
    pub models: Vec<ModelBreakdown>,
    pub providers: Vec<ProviderBreakdown>,
    pub tools: Vec<ToolBreakdown>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelBreakdown {
    pub model: String,
    pub provider: Option<String>,
    pub calls: i64,
    pub traces: u64,
    pub tokens: TokenUsage,
    pub cost: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProviderBreakdown {
    pub provider: String,
    pub calls: i64,
    pub traces: u64,
    pub tokens: TokenUsage,
    pub cost: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolBreakdown {
    pub tool: String,
    pub calls: i64,
    pub errors: i64,
    pub traces: u64,
}

/// A page of one user's sessions (SPEC §4.6).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionsRequest {
    pub user_id: String,
    pub range: Option<TimeRange>,
    pub errored_only: bool,
    /// Page size, 1–200.
    pub first: u32,
    pub after: Option<String>,
}

impl SessionsRequest {
    /// The request the GraphQL defaults describe: lifetime, every session, 50 rows.
    pub fn new(user_id: impl Into<String>) -> Self {
        Self {
            user_id: user_id.into(),
            range: None,
            errored_only: false,
            first: 50,
            after: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionsPage {
    pub rows: Vec<SessionRow>,
    pub has_next_page: bool,
    pub total_count: u64,
}

/// One (user, session) pair over that user's traces in the window.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub session_id: String,
    pub started_ns: i64,
    pub ended_ns: i64,
    pub duration_ms: f64,
    pub traces: u64,
    pub errored_traces: u64,
    pub errored: bool,
    pub cost: f64,
    pub tokens: TokenUsage,
    pub cursor: String,
}
