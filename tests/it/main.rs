//! Integration tests of userlens: real servers on ephemeral ports, real databases.

mod aliases;
mod analytics;
mod auth_first;
mod compose;
mod derivation;
mod erase;
mod faults;
mod gateway_e2e;
mod graphql_abuse;
mod hostile_input;
mod ingest_e2e;
mod ingest_errors;
mod ingest_memory;
mod ingest_overload;
mod isolation;
mod mcp;
mod monitors;
mod query_figures;
mod query_service;
mod server_limits;
mod span_limits;
mod subscriptions;
