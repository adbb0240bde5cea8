//! The gateway's one error type, and its single mapping to GraphQL error codes.

use async_graphql::ErrorExtensionValues;
use tonic::Code;
use tonic_types::StatusExt;

/// `extensions.code` of every GraphQL error the gateway returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthenticated,
    BadUserInput,
    Unavailable,
    Internal,
    /// A subscription over the per-key or per-connection limit.
    TooManySubscriptions,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 5] = [
        ErrorCode::Unauthenticated,
        ErrorCode::BadUserInput,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::TooManySubscriptions,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::TooManySubscriptions => "TOO_MANY_SUBSCRIPTIONS",
        }
    }

    pub fn parse(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No `Authorization` header, or users-query did not accept the key.
    #[error("missing or unknown API key")]
    Unauthenticated,
    /// `field` is the GraphQL argument at fault, when known.
    #[error("{message}")]
    BadUserInput {
        field: Option<String>,
        message: String,
    },
    /// users-query unreachable, overloaded or too slow; the detail is logged, not sent.
    #[error("users-query is unavailable, retry later")]
    Unavailable(String),
    /// The detail is logged, not sent.
    #[error("internal error")]
    Internal(String),
    /// `scope` is `key` or `connection`: which limit the subscription is over.
    #[error("too many subscriptions: at most {limit} open per {scope}")]
    TooManySubscriptions { scope: &'static str, limit: usize },
    #[error("invalid users-query url {url:?}: {source}")]
    InvalidQueryUrl {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("invalid CORS origin {0:?}: an origin is scheme://host[:port]")]
    InvalidCorsOrigin(String),
    #[error("the gateway must be built inside a tokio runtime")]
    NoRuntime,
    #[error("the gateway stopped serving: {0}")]
    Serve(#[source] std::io::Error),
}

impl GatewayError {
    pub fn bad_input(field: &str, message: impl Into<String>) -> Self {
        GatewayError::BadUserInput {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            GatewayError::Unauthenticated => ErrorCode::Unauthenticated,
            GatewayError::BadUserInput { .. } => ErrorCode::BadUserInput,
            GatewayError::Unavailable(_) => ErrorCode::Unavailable,
            GatewayError::TooManySubscriptions { .. } => ErrorCode::TooManySubscriptions,
            GatewayError::Internal(_)
            | GatewayError::InvalidQueryUrl { .. }
            | GatewayError::InvalidCorsOrigin(_)
            | GatewayError::NoRuntime
            | GatewayError::Serve(_) => ErrorCode::Internal,
        }
    }

    /// Maps a users-query answer; `rpc` names the call in the logs.
    pub fn from_status(rpc: &'static str, status: tonic::Status) -> Self {
        match status.code() {
            Code::Unauthenticated | Code::PermissionDenied => GatewayError::Unauthenticated,
            Code::InvalidArgument => {
                let field = status
                    .get_details_bad_request()
                    .and_then(|details| details.field_violations.into_iter().next())
                    .map(|violation| graphql_argument_name(&violation.field).to_owned());
                GatewayError::BadUserInput {
                    field,
                    message: status.message().to_owned(),
                }
            }
            // A monitor id of no monitor of the caller's project.
            Code::NotFound => GatewayError::BadUserInput {
                field: Some("id".to_owned()),
                message: status.message().to_owned(),
            },
            // A call whose connection broke (users-query stopped or restarted while the
            // call was on the wire) comes back from tonic as UNKNOWN with the transport error
            // as its source; a status users-query sent never has a source.
            Code::Unknown if std::error::Error::source(&status).is_some() => {
                let detail = status.message();
                GatewayError::Unavailable(format!("{rpc}: connection failed: {detail}"))
            }
            // The gateway never cancels a call itself: tonic reports its own client-side
            // timeout as CANCELLED.
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::ResourceExhausted => GatewayError::Unavailable(format!(
                "{rpc}: {:?}: {}",
                status.code(),
                status.message()
            )),
            code => GatewayError::Internal(format!("{rpc}: {code:?}: {}", status.message())),
        }
    }
}

/// users-query names request fields as in the proto; clients know the GraphQL arguments.
fn graphql_argument_name(proto_field: &str) -> &str {
    match proto_field {
        "order_field" | "order_direction" => "orderBy",
        "trend_buckets" => "buckets",
        "activity_days" => "days",
        "user_id" => "userId",
        "errored_only" => "erroredOnly",
        "webhook_url" => "webhookUrl",
        "window_seconds" => "windowSeconds",
        "min_sessions" => "minSessions",
        other => other,
    }
}

impl From<GatewayError> for async_graphql::Error {
    fn from(error: GatewayError) -> Self {
        match &error {
            GatewayError::Unavailable(detail) => {
                tracing::warn!(%detail, "users-query unavailable");
            }
            GatewayError::Internal(detail) => {
                tracing::error!(%detail, "request failed");
            }
            GatewayError::InvalidQueryUrl { .. }
            | GatewayError::InvalidCorsOrigin(_)
            | GatewayError::NoRuntime
            | GatewayError::Serve(_) => {
                tracing::error!(error = %error, "request failed");
            }
            GatewayError::Unauthenticated
            | GatewayError::BadUserInput { .. }
            | GatewayError::TooManySubscriptions { .. } => {}
        }
        let mut extensions = ErrorExtensionValues::default();
        extensions.set("code", error.code().as_str());
        if let GatewayError::BadUserInput {
            field: Some(field), ..
        } = &error
        {
            extensions.set("field", field.as_str());
        }
        let message = match error.code() {
            // Configuration errors carry local detail that is no business of a client.
            ErrorCode::Internal => "internal error".to_owned(),
            _ => error.to_string(),
        };
        async_graphql::Error {
            message,
            source: None,
            extensions: Some(extensions),
        }
    }
}

impl From<GatewayError> for async_graphql::ServerError {
    fn from(error: GatewayError) -> Self {
        let error = async_graphql::Error::from(error);
        let mut server_error = async_graphql::ServerError::new(error.message, None);
        server_error.extensions = error.extensions;
        server_error
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::ErrorDetails;

    use super::*;

    fn graphql(error: GatewayError) -> (String, Option<String>, Option<String>) {
        let error = async_graphql::Error::from(error);
        let extension = |name: &str| match error.extensions.as_ref().and_then(|e| e.get(name)) {
            Some(async_graphql::Value::String(value)) => Some(value.clone()),
            _ => None,
        };
        (error.message.clone(), extension("code"), extension("field"))
    }

    #[test]
    fn users_query_statuses_map_to_graphql_codes() {
        let cases = [
            (
                tonic::Status::unauthenticated("unknown key"),
                "UNAUTHENTICATED",
            ),
            (
                tonic::Status::permission_denied("not yours"),
                "UNAUTHENTICATED",
            ),
            (
                tonic::Status::invalid_argument("bad cursor"),
                "BAD_USER_INPUT",
            ),
            (tonic::Status::unavailable("database down"), "UNAVAILABLE"),
            (tonic::Status::deadline_exceeded("slow"), "UNAVAILABLE"),
            (tonic::Status::cancelled("timeout expired"), "UNAVAILABLE"),
            (
                tonic::Status::resource_exhausted("overloaded"),
                "UNAVAILABLE",
            ),
            (tonic::Status::internal("secret detail"), "INTERNAL"),
            (tonic::Status::unknown("secret detail"), "INTERNAL"),
            (
                tonic::Status::from_error(Box::new(std::io::Error::other("connection reset"))),
                "UNAVAILABLE",
            ),
            (tonic::Status::unimplemented("secret detail"), "INTERNAL"),
        ];
        for (status, code) in cases {
            let (message, mapped, _) = graphql(GatewayError::from_status("ListUsers", status));
            assert_eq!(mapped.as_deref(), Some(code));
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[test]
    fn an_undecodable_cursor_names_the_argument() {
        let details = ErrorDetails::with_bad_request_violation("after", "cursor does not decode");
        let status = tonic::Status::with_error_details(
            Code::InvalidArgument,
            "invalid after: cursor does not decode",
            details,
        );
        let (message, code, field) = graphql(GatewayError::from_status("ListUsers", status));
        assert_eq!(code.as_deref(), Some("BAD_USER_INPUT"));
        assert_eq!(field.as_deref(), Some("after"));
        assert_eq!(message, "invalid after: cursor does not decode");

        let details = ErrorDetails::with_bad_request_violation("trend_buckets", "too many");
        let status = tonic::Status::with_error_details(Code::InvalidArgument, "invalid", details);
        let (_, _, field) = graphql(GatewayError::from_status("ListUsers", status));
        assert_eq!(field.as_deref(), Some("buckets"));
    }

    #[test]
    fn configuration_errors_do_not_leak_to_clients() {
        let (message, code, _) = graphql(GatewayError::InvalidCorsOrigin("x".into()));
        assert_eq!(code.as_deref(), Some("INTERNAL"));
        assert_eq!(message, "internal error");
    }
}
