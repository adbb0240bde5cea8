//! The queries, one module per view of SPEC §4.

mod active_users;
mod breakdowns;
mod calendar;
mod detail;
mod filter;
mod overview;
mod periods;
mod retention;
mod sessions;
mod users;

pub use periods::previous_period;
pub use users::UsersExport;
