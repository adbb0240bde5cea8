//! Integration tests of userlens: real servers on ephemeral ports, real databases.

mod aliases;
mod compose;
mod derivation;
mod gateway_e2e;
mod ingest_e2e;
mod ingest_errors;
mod ingest_overload;
mod query_figures;
mod query_service;
