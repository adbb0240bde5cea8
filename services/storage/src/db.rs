//! Connecting to PostgreSQL or SQLite and applying migrations.

use std::path::Path;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use sea_orm_migration::MigratorTrait;
use userlens_migrations::Migrator;

use crate::error::StorageError;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite://path` (the file is created when missing).
    pub url: String,
    /// Pool size; SQLite serialises writers anyway, readers share the pool.
    pub max_connections: u32,
}

impl DatabaseSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 10,
        }
    }
}

/// Opens a pool. A SQLite file and its directory are created when missing; SQLite runs in
/// WAL mode with full fsync on commit (an acknowledged batch survives a crash).
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, StorageError> {
    let url = settings.url.trim();
    let mut options = if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let file = path.split('?').next().unwrap_or_default();
        if file.is_empty() || file == ":memory:" {
            return Err(StorageError::InvalidUrl(
                "a SQLite url must name a file, e.g. sqlite://./data/userlens.db".into(),
            ));
        }
        if let Some(dir) = Path::new(file)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StorageError::InvalidUrl(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut options = ConnectOptions::new(format!("sqlite://{file}?mode=rwc"));
        options.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
        options
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        ConnectOptions::new(url.to_owned())
    } else {
        return Err(StorageError::InvalidUrl(
            "expected postgres://… or sqlite://…".into(),
        ));
    };
    options
        .max_connections(settings.max_connections.max(1))
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    Ok(Database::connect(options).await?)
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), StorageError> {
    Migrator::up(db, None).await?;
    Ok(())
}
