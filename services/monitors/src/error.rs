//! The monitors' one error type; mapped to a gRPC status once, in `service`.

use userlens_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// `field` names the request field at fault (proto spelling).
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no monitor {0} in this project")]
    NotFound(i64),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("query failed: {0}")]
    Query(#[from] userlens_query_engine::QueryError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sea_orm::DbErr> for MonitorError {
    fn from(error: sea_orm::DbErr) -> Self {
        MonitorError::Storage(StorageError::Database(error))
    }
}

impl MonitorError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        MonitorError::Invalid {
            field,
            message: message.into(),
        }
    }
}
