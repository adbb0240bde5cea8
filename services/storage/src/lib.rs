//! The userlens storage model, shared by ingest and users-query.
//!
//! Raw spans are kept as received (latest copy of each span wins); every write re-derives
//! the traces it touches into one row per trace (`traces`), and advances the project's data
//! generation in the same transaction. `docs/storage.md` describes the tables.

pub mod auth;
pub mod db;
pub mod derive;
pub mod details;
pub mod entities;
pub mod erase;
pub mod error;
pub mod keys;
pub mod read;
pub mod retention;
pub mod span;
pub mod write;

pub use auth::{KeyCacheSettings, KeyResolver, ResolvedKey};
pub use db::{DatabaseSettings, connect, group_or_other_permissions, migrate, private_dir_builder};
pub use erase::{ErasureSummary, erase_user};
pub use error::StorageError;
pub use sea_orm::{DatabaseConnection, DbBackend};
pub use span::{Annotation, ResourceRecord, SpanFacts, SpanRecord, StoredSpan};
/// The schema migrations, for tools and tests that step through them.
pub use userlens_migrations::{Migrator, MigratorTrait};
pub use userlens_query_engine::TraceRow;
pub use write::{WriteSummary, annotate_trace, write_spans};
