//! OTLP/HTTP: `POST /v1/traces` (protobuf or JSON, optionally gzip), `GET /healthz`,
//! `GET /metrics`.

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use crate::error::IngestError;
use crate::pipeline::{ExportOutcome, Ingestor};

#[derive(Clone)]
struct HttpState {
    ingestor: Arc<Ingestor>,
    max_body_bytes: usize,
}

/// The OTLP/HTTP router.
pub fn router(ingestor: Arc<Ingestor>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/traces", post(export_traces))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        // The body limit is applied by the handler, to the compressed and the decompressed body.
        .layer(DefaultBodyLimit::disable())
        .with_state(HttpState {
            ingestor,
            max_body_bytes,
        })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

/// google.rpc.Status, the body OTLP/HTTP error responses carry.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

async fn export_traces(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let encoding = match request_encoding(&headers) {
        Ok(encoding) => encoding,
        Err(error) => return error_response(&error, Encoding::Json),
    };
    match export(&state, &headers, encoding, body).await {
        Ok(outcome) => success_response(outcome, encoding),
        Err(error) => {
            if matches!(
                error,
                IngestError::Malformed(_)
                    | IngestError::TooLarge { .. }
                    | IngestError::UnsupportedEncoding(_)
            ) {
                state.ingestor.metrics.record_malformed();
            }
            error_response(&error, encoding)
        }
    }
}

async fn export(
    state: &HttpState,
    headers: &HeaderMap,
    encoding: Encoding,
    body: Body,
) -> Result<ExportOutcome, IngestError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let project_id = state.ingestor.authenticate(authorization).await?;
    let limit = state.max_body_bytes;
    let raw = Limited::new(body, limit).collect().await.map_err(|e| {
        if e.downcast_ref::<LengthLimitError>().is_some() {
            IngestError::TooLarge { limit }
        } else {
            IngestError::Malformed(format!("reading the body failed: {e}"))
        }
    })?;
    let raw = raw.to_bytes();
    let body = decompress(headers, raw, limit)?;
    let request = match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body.as_ref())
            .map_err(|e| IngestError::Malformed(e.to_string()))?,
        Encoding::Json => serde_json::from_slice::<ExportTraceServiceRequest>(&body)
            .map_err(|e| IngestError::Malformed(e.to_string()))?,
    };
    state
        .ingestor
        .export(project_id, &request.resource_spans)
        .await
}

fn request_encoding(headers: &HeaderMap) -> Result<Encoding, IngestError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Encoding::Protobuf);
    };
    let content_type = value.to_str().unwrap_or_default();
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match media_type.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(IngestError::UnsupportedMediaType(content_type.to_owned())),
    }
}

/// Inflates a gzip body, refusing more than `limit` bytes of output (a gzip bomb stops at
/// the limit instead of filling memory).
fn decompress(headers: &HeaderMap, raw: Bytes, limit: usize) -> Result<Bytes, IngestError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" | "none" => Ok(raw),
        "gzip" | "x-gzip" => {
            let mut inflated = Vec::with_capacity(raw.len().saturating_mul(4).min(limit));
            let mut decoder =
                flate2::read::MultiGzDecoder::new(raw.as_ref()).take(limit as u64 + 1);
            decoder
                .read_to_end(&mut inflated)
                .map_err(|e| IngestError::Malformed(format!("gzip body does not inflate: {e}")))?;
            if inflated.len() > limit {
                return Err(IngestError::TooLarge { limit });
            }
            Ok(Bytes::from(inflated))
        }
        other => Err(IngestError::UnsupportedEncoding(other.to_owned())),
    }
}

fn success_response(outcome: ExportOutcome, encoding: Encoding) -> Response {
    let rejected = i64::try_from(outcome.rejected).unwrap_or(i64::MAX);
    let error_message = outcome.first_rejection.unwrap_or_default();
    match encoding {
        Encoding::Protobuf => {
            let response = ExportTraceServiceResponse {
                partial_success: (rejected > 0).then_some(ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message,
                }),
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                response.encode_to_vec(),
            )
                .into_response()
        }
        Encoding::Json => {
            // OTLP JSON writes int64 as a decimal string.
            let body = if rejected > 0 {
                serde_json::json!({
                    "partialSuccess": {
                        "rejectedSpans": rejected.to_string(),
                        "errorMessage": error_message,
                    }
                })
            } else {
                serde_json::json!({})
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}

fn error_response(error: &IngestError, encoding: Encoding) -> Response {
    let status = RpcStatus {
        code: error.to_status().code() as i32,
        message: error.to_string(),
    };
    let mut response = match encoding {
        Encoding::Protobuf => (
            error.http_status(),
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            status.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => (
            error.http_status(),
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "code": status.code, "message": status.message }).to_string(),
        )
            .into_response(),
    };
    if let Some(delay) = error.retry_after() {
        let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
        if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}

async fn healthz(State(state): State<HttpState>) -> Response {
    match state.ingestor.db.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response(),
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state
            .ingestor
            .metrics
            .render(state.ingestor.writer.queued_spans()),
    )
        .into_response()
}
