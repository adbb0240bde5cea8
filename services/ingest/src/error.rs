//! Errors of the ingest role, mapped once to HTTP and once to gRPC.

use std::time::Duration;

use axum::http::StatusCode;
use tonic::Code;

#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    #[error("missing or unknown API key")]
    Unauthenticated,
    #[error("request body does not decode: {0}")]
    Malformed(String),
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("unsupported content type {0:?}: use application/x-protobuf or application/json")]
    UnsupportedMediaType(String),
    #[error("unsupported content encoding {0:?}: use gzip or none")]
    UnsupportedEncoding(String),
    #[error("invalid {field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    #[error("ingest is overloaded, retry later")]
    Overloaded { retry_after: Duration },
    #[error("the database is unavailable, retry later")]
    Unavailable {
        retry_after: Duration,
        detail: String,
    },
}

impl IngestError {
    pub fn unavailable(detail: String) -> Self {
        Self::Unavailable {
            retry_after: Duration::from_secs(1),
            detail,
        }
    }

    pub fn http_status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Malformed(_) | Self::InvalidArgument { .. } | Self::UnsupportedEncoding(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Overloaded { retry_after } | Self::Unavailable { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }

    /// The gRPC status; retryable errors carry `RetryInfo`, which OTLP exporters honour.
    pub fn to_status(&self) -> tonic::Status {
        use tonic_types::{ErrorDetails, StatusExt};
        let code = match self {
            Self::Unauthenticated => Code::Unauthenticated,
            Self::Malformed(_)
            | Self::InvalidArgument { .. }
            | Self::UnsupportedMediaType(_)
            | Self::UnsupportedEncoding(_) => Code::InvalidArgument,
            Self::TooLarge { .. } | Self::Overloaded { .. } => Code::ResourceExhausted,
            Self::Unavailable { .. } => Code::Unavailable,
        };
        match self.retry_after() {
            Some(delay) => tonic::Status::with_error_details(
                code,
                self.to_string(),
                ErrorDetails::with_retry_info(Some(delay)),
            ),
            None => tonic::Status::new(code, self.to_string()),
        }
    }
}

impl From<crate::writer::WriteError> for IngestError {
    fn from(error: crate::writer::WriteError) -> Self {
        match error {
            crate::writer::WriteError::Overloaded { retry_after } => {
                Self::Overloaded { retry_after }
            }
            crate::writer::WriteError::Unavailable { retry_after } => Self::Unavailable {
                retry_after,
                detail: "write failed".into(),
            },
        }
    }
}
