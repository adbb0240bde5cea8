//! The queries, one module per view of SPEC §4.

mod breakdowns;
mod detail;
mod overview;
mod sessions;
mod users;
