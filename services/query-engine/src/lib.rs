//! The users-page query engine.
//!
//! Holds one row per trace of a project (the `traces` table of the storage crate, decoded)
//! in memory, sorted by trace time, and answers every figure of the users page exactly from
//! it. The database stays the source of truth: the users-query service keeps each snapshot
//! current by applying the trace rows changed since the data generation it last saw.
//!
//! Layout, formulas and measured costs: `docs/query-engine.md` at the repository root.

mod api;
mod cursor;
mod error;
mod extras;
mod hash;
mod intern;
mod numbers;
mod query;
mod row;
mod scratch;
mod snapshot;
mod time;
mod trace_index;
mod validate;

pub use api::{
    ActiveUsers, ActiveUsersPoint, Breakdowns, CostStats, DailyActivity, Histogram,
    HistogramBucket, ModelBreakdown, OrderDirection, Overview, PeriodOverview, PeriodTotals,
    PeriodUnit, ProviderBreakdown, RetentionCohort, RetentionRequest, SessionRow, SessionsPage,
    SessionsRequest, TimeRange, TokenUsage, ToolBreakdown, UserBehaviour, UserDetail, UserFilter,
    UserIssue, UserOrder, UserOrderField, UserRow, UsersPage, UsersRequest,
};
pub use error::QueryError;
pub use query::{UsersExport, previous_period};
pub use row::{IssueLink, ModelUsage, ToolUsage, TraceRow};
pub use snapshot::Snapshot;
pub use validate::MAX_SERIES_PER_REQUEST;
