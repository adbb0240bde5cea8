/// Why a query was refused. Every variant is the caller's fault (`BAD_USER_INPUT`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// `field` names the argument: `first`, `buckets`, `days`, `range`, `search` or `after`.
    #[error("invalid {field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
}

impl QueryError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        QueryError::InvalidArgument {
            field,
            message: message.into(),
        }
    }

    /// The argument the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            QueryError::InvalidArgument { field, .. } => field,
        }
    }
}
