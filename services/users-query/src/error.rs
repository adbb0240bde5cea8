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
    fn from(error: userlens_storage::StorageError) -> Self {
        Self::Unavailable(error)
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
                tracing::error!(error = %source, "query failed on the database");
                tonic::Status::unavailable("the database is unavailable, retry later")
            }
            QueryServiceError::Internal(detail) => {
                tracing::error!(%detail, "query failed");
                tonic::Status::internal("internal error")
            }
        }
    }
}
