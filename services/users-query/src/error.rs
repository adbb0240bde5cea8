//! Errors of the users-query role, mapped once to gRPC status codes.

use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

#[derive(Debug, thiserror::Error)]
pub enum QueryServiceError {
    #[error("missing or unknown API key")]
    Unauthenticated,
    #[error("invalid {field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    #[error("the database is unavailable")]
    Unavailable(#[source] userlens_storage::StorageError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl QueryServiceError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            message: message.into(),
        }
    }
}

impl From<userlens_query_engine::QueryError> for QueryServiceError {
    fn from(error: userlens_query_engine::QueryError) -> Self {
        match error {
            userlens_query_engine::QueryError::InvalidArgument { field, message } => {
                Self::InvalidArgument { field, message }
            }
        }
    }
}

impl From<userlens_storage::StorageError> for QueryServiceError {
    /// Only a failure to reach or run a statement on the database is worth retrying; stored
    /// data that does not decode (corruption) or a failed task stays failed on retry.
    fn from(error: userlens_storage::StorageError) -> Self {
        use sea_orm::DbErr;
        use userlens_storage::StorageError as E;
        match error {
            E::Database(DbErr::Conn(_) | DbErr::ConnectionAcquire(_))
            | E::Database(DbErr::Exec(_) | DbErr::Query(_)) => Self::Unavailable(error),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<QueryServiceError> for tonic::Status {
    fn from(error: QueryServiceError) -> Self {
        match &error {
            QueryServiceError::Unauthenticated => tonic::Status::unauthenticated(error.to_string()),
            QueryServiceError::InvalidArgument { field, message } => {
                // The field also travels as a BadRequest detail for clients that read it.
                let mut details = ErrorDetails::new();
                details.add_bad_request_violation(*field, message.clone());
                tonic::Status::with_error_details(Code::InvalidArgument, error.to_string(), details)
            }
            QueryServiceError::Unavailable(source) => {
                tracing::error!(error = %source, detail = ?source, "query failed on the database");
                tonic::Status::unavailable("the database is unavailable, retry later")
            }
            QueryServiceError::Internal(detail) => {
                tracing::error!(%detail, "query failed");
                tonic::Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{DbErr, RuntimeErr};
    use userlens_storage::StorageError;

    fn code_of(error: StorageError) -> Code {
        tonic::Status::from(QueryServiceError::from(error)).code()
    }

    #[test]
    fn corruption_and_failed_tasks_are_internal_not_retryable() {
        assert_eq!(
            code_of(StorageError::Corrupt("bad row".into())),
            Code::Internal
        );
        assert_eq!(
            code_of(StorageError::Corrupt("snapshot update panicked".into())),
            Code::Internal
        );
        assert_eq!(
            code_of(StorageError::Database(DbErr::Type("not an i64".into()))),
            Code::Internal
        );
        assert_eq!(
            code_of(StorageError::Database(DbErr::Json("bad json".into()))),
            Code::Internal
        );
    }

    #[test]
    fn an_unreachable_database_is_unavailable() {
        assert_eq!(
            code_of(StorageError::Database(DbErr::Conn(RuntimeErr::Internal(
                "connection refused".into()
            )))),
            Code::Unavailable
        );
        assert_eq!(
            code_of(StorageError::Database(DbErr::Query(RuntimeErr::Internal(
                "timeout".into()
            )))),
            Code::Unavailable
        );
    }
}
