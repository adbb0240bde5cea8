//! Integration tests of userlens: real servers on ephemeral ports, real databases.

mod derivation;
mod ingest_e2e;
mod ingest_errors;
mod query_service;
