//! The users-page query engine.
//!
//! Holds one row per trace of a project (the `traces` table of the storage crate, decoded)
//! in memory, sorted by trace time, and answers every figure of the users page exactly from
//! it. The database stays the source of truth: the users-query service keeps each snapshot
//! current by applying the trace rows changed since the data generation it last saw.

mod row;

pub use row::{IssueLink, ModelUsage, ToolUsage, TraceRow};
