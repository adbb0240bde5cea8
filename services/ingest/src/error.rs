//! Errors of the ingest role, mapped once to HTTP and once to gRPC.

use std::time::Duration;

use axum::http::StatusCode;
use tonic::Code;
use userlens_storage::StorageError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    #[error("missing or unknown API key")]
    Unauthenticated,
    #[error("request body does not decode: {0}")]
    Malformed(String),
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The request would take more memory decoded than one request may (its wire size can
    /// be far smaller: an empty span is 2 bytes on the wire and hundreds decoded).
    #[error("{}", userlens_proto::bounded_codec::too_large_message(*estimated_bytes))]
    DecodedTooLarge { estimated_bytes: usize },
    /// The request's spans would take more than the whole write queue: it can never be
    /// admitted, so retrying it as it is would not help.
    #[error(
        "request holds about {bytes} bytes of spans, more than the whole write queue \
         ({limit} bytes, USERLENS_MAX_QUEUED_BYTES): send fewer spans per request"
    )]
    LargerThanQueue { bytes: usize, limit: usize },
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
    /// Storage corruption, a constraint violation or a panic: retrying will not help. The
    /// detail is logged, never sent.
    #[error("internal error")]
    Internal { detail: String },
}

impl IngestError {
    /// A retryable outage; its detail is logged here, at warn, and kept from the client.
    pub fn unavailable(detail: String) -> Self {
        tracing::warn!(error = %detail, "ingest answered UNAVAILABLE");
        Self::Unavailable {
            retry_after: Duration::from_secs(1),
            detail,
        }
    }

    /// A failure retrying will not fix; its detail is logged here and kept from the client.
    pub fn internal(detail: String) -> Self {
        tracing::error!(error = %detail, "ingest answered INTERNAL");
        Self::Internal { detail }
    }

    /// `Unavailable` for what may pass (a lost connection, a timeout, a busy database),
    /// `Internal` for anything else.
    pub fn from_storage(error: &StorageError) -> Self {
        if is_transient(error) {
            Self::unavailable(error.to_string())
        } else {
            Self::internal(error.to_string())
        }
    }

    pub fn http_status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Malformed(_) | Self::InvalidArgument { .. } | Self::UnsupportedEncoding(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::TooLarge { .. } | Self::DecodedTooLarge { .. } | Self::LargerThanQueue { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
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
            Self::TooLarge { .. }
            | Self::DecodedTooLarge { .. }
            | Self::LargerThanQueue { .. }
            | Self::Overloaded { .. } => Code::ResourceExhausted,
            Self::Unavailable { .. } => Code::Unavailable,
            Self::Internal { .. } => Code::Internal,
        };
        let mut status = match self.retry_after() {
            Some(delay) => tonic::Status::with_error_details(
                code,
                self.to_string(),
                ErrorDetails::with_retry_info(Some(delay)),
            ),
            None => tonic::Status::new(code, self.to_string()),
        };
        if code == Code::Internal {
            // Tells `grpc_status::ClientErrorCodes` this INTERNAL is the server's own, not
            // tonic's report of a request body it could not read.
            status.metadata_mut().insert(
                crate::grpc_status::SERVER_ERROR_METADATA,
                tonic::metadata::MetadataValue::from_static("1"),
            );
        }
        status
    }
}

impl From<crate::writer::WriteError> for IngestError {
    fn from(error: crate::writer::WriteError) -> Self {
        use crate::writer::WriteError;
        match error {
            WriteError::Overloaded { retry_after } => Self::Overloaded { retry_after },
            // The writer logged the storage error with its detail already.
            WriteError::Unavailable { retry_after } => Self::Unavailable {
                retry_after,
                detail: "write failed".into(),
            },
            WriteError::LargerThanQueue { bytes, limit } => Self::LargerThanQueue { bytes, limit },
            WriteError::Failed => Self::Internal {
                detail: "write failed".into(),
            },
        }
    }
}

/// True for a storage error that may pass if the request is sent again: the database could
/// not be reached, timed out, was busy, shutting down or out of resources, or the
/// transaction lost a conflict. A row that does not decode, a constraint violation or a
/// value the database refuses fails the same way every time.
pub fn is_transient(error: &StorageError) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    let StorageError::Database(error) = error else {
        return false;
    };
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error)) => {
            is_transient_sqlx(error)
        }
        _ => false,
    }
}

fn is_transient_sqlx(error: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error;
    match error {
        Error::Io(_)
        | Error::Tls(_)
        | Error::Protocol(_)
        | Error::PoolTimedOut
        | Error::PoolClosed
        | Error::WorkerCrashed => true,
        Error::Database(error) => error.code().is_some_and(|code| is_transient_code(&code)),
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs are five characters: classes 08 (connection), 53 (insufficient
/// resources), 57 (operator intervention: shutdown, statement timeout), serialisation
/// failures, deadlocks and lock timeouts. SQLite result codes are numbers whose low byte is
/// the primary code: BUSY (5), LOCKED (6), IOERR (10), FULL (13).
fn is_transient_code(code: &str) -> bool {
    // SQLite's extended codes stay below 10,000, so five characters mean PostgreSQL.
    if code.len() == 5 {
        return ["08", "53", "57"]
            .iter()
            .any(|class| code.starts_with(class))
            || matches!(code, "40001" | "40P01" | "55P03");
    }
    code.parse::<i32>()
        .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 10 | 13))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_codes_that_may_pass_are_transient() {
        for code in [
            "08006", "57P01", "57014", "53300", "40001", "40P01", "5", "517", "6", "13",
        ] {
            assert!(is_transient_code(code), "{code}");
        }
        for code in [
            "23505", "23514", "22021", "54000", "XX001", "19", "2067", "1",
        ] {
            assert!(!is_transient_code(code), "{code}");
        }
    }

    #[test]
    fn corruption_is_internal_and_keeps_its_detail_from_the_client() {
        let error = IngestError::from_storage(&StorageError::Corrupt("span behaviours".into()));
        assert_eq!(error.to_status().code(), Code::Internal);
        assert!(!error.to_status().message().contains("behaviours"));
        assert_eq!(error.http_status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
