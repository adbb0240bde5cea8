use sea_orm::{DbErr, RuntimeErr};

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

impl StorageError {
    /// A deadlock or serialisation failure: the transaction was rolled back and may be
    /// retried as it is.
    pub fn is_write_conflict(&self) -> bool {
        let StorageError::Database(
            DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error)),
        ) = self
        else {
            return false;
        };
        error
            .as_database_error()
            .and_then(|e| e.code())
            .is_some_and(|code| code == "40P01" || code == "40001")
    }
}
