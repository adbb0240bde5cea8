use sea_orm::DbErr;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database could not be reached or failed the statement; nothing was written.
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    #[error("unknown project {0}")]
    UnknownProject(i64),
    #[error("project name {0:?} is already taken")]
    ProjectExists(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("invalid database url: {0}")]
    InvalidUrl(String),
}
