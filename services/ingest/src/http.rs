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
use userlens_proto::bounded_codec::MAX_DECODED_REQUEST_BYTES;
use userlens_proto::decoded_size::EstimateDecodedSize;

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

/// How an OTLP/HTTP request body is encoded, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
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
                    | IngestError::DecodedTooLarge { .. }
                    | IngestError::UnsupportedEncoding(_)
            ) {
                state.ingestor.metrics.record_malformed();
            }
            let mut response = error_response(&error, encoding);
            if matches!(
                error,
                IngestError::TooLarge { .. } | IngestError::Unauthenticated
            ) {
                // The rest of the body is never read (a request without a known key is
                // refused from its headers): the connection cannot carry another request,
                // and a client must not reuse it.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
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
    // A body declared over the limit is refused before any of it is read, so a client cannot
    // hold the request open by promising gigabytes it never sends.
    if declared_length(headers).is_some_and(|length| length > limit as u64) {
        return Err(IngestError::TooLarge { limit });
    }
    let raw = Limited::new(body, limit).collect().await.map_err(|e| {
        if e.downcast_ref::<LengthLimitError>().is_some() {
            IngestError::TooLarge { limit }
        } else {
            IngestError::Malformed(format!("reading the body failed: {e}"))
        }
    })?;
    // The body is read whole (so the connection stays usable) but not decoded when the
    // request would be refused anyway.
    state.ingestor.refuse_when_queue_nearly_full()?;
    // The body is read before a decode slot is taken, so a slow client holds none; one
    // waiting for a slot holds its body only (16 MiB at most).
    let slot = state.ingestor.decode_slot().await?;
    let request = decode_body(headers, encoding, raw.to_bytes(), limit)?;
    state
        .ingestor
        .export(project_id, request.resource_spans, Some(slot))
        .await
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Inflates (when `Content-Encoding` asks for it) and decodes one OTLP/HTTP request body,
/// with `limit` applied to the decompressed body. Any input gives a request or an error:
/// `Malformed` (400), `TooLarge` (413) or `UnsupportedEncoding` (400).
pub fn decode_body(
    headers: &HeaderMap,
    encoding: Encoding,
    raw: Bytes,
    limit: usize,
) -> Result<ExportTraceServiceRequest, IngestError> {
    let body = decompress(headers, raw, limit)?;
    match encoding {
        Encoding::Protobuf => {
            // The decoded size is bounded before decoding: empty spans are 2 bytes each.
            let estimate = ExportTraceServiceRequest::estimate_decoded_size(&body)
                .map_err(|e| IngestError::Malformed(e.to_string()))?;
            if estimate.bytes > MAX_DECODED_REQUEST_BYTES {
                return Err(IngestError::DecodedTooLarge {
                    estimated_bytes: estimate.bytes,
                });
            }
            ExportTraceServiceRequest::decode(body.as_ref())
                .map_err(|e| IngestError::Malformed(e.to_string()))
        }
        Encoding::Json => decode_json(&body),
    }
}

fn decode_json(body: &[u8]) -> Result<ExportTraceServiceRequest, IngestError> {
    let estimate = crate::json_size::estimate(body)
        .ok_or_else(|| IngestError::Malformed("JSON nested too deeply".into()))?;
    if estimate.typed_bytes > MAX_DECODED_REQUEST_BYTES {
        return Err(IngestError::DecodedTooLarge {
            estimated_bytes: estimate.typed_bytes,
        });
    }
    let error = match serde_json::from_slice::<ExportTraceServiceRequest>(body) {
        Ok(request) => return Ok(request),
        Err(error) => error,
    };
    // The fallback below holds the body as a `serde_json::Value` tree as well.
    if estimate
        .value_tree_bytes
        .saturating_add(estimate.typed_bytes)
        > MAX_DECODED_REQUEST_BYTES
    {
        return Err(IngestError::DecodedTooLarge {
            estimated_bytes: estimate
                .value_tree_bytes
                .saturating_add(estimate.typed_bytes),
        });
    }
    // OTLP JSON follows the protobuf JSON mapping, where a double may be written as a string:
    // "NaN", "Infinity", "-Infinity", or a number in quotes. The generated decoder takes JSON
    // numbers only, so such a body is decoded again with those values set aside and put back:
    // a span with a non-finite cost is then rejected on its own, not the whole request.
    let mentions_doubles = body
        .windows(DOUBLE_VALUE_KEY.len())
        .any(|w| w == DOUBLE_VALUE_KEY.as_bytes());
    mentions_doubles
        .then(|| quoted_doubles::decode(body))
        .flatten()
        .ok_or_else(|| IngestError::Malformed(error.to_string()))
}

const DOUBLE_VALUE_KEY: &str = "\"doubleValue\"";

/// Decoding of OTLP JSON whose `AnyValue.doubleValue`s are strings.
mod quoted_doubles {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
    use serde_json::Value as Json;

    enum Segment {
        Key(String),
        Index(usize),
    }

    /// The request, or None when the body does not decode even with its quoted doubles read.
    pub(super) fn decode(body: &[u8]) -> Option<ExportTraceServiceRequest> {
        // serde_json's recursion limit bounds the walk below.
        let mut document: Json = serde_json::from_slice(body).ok()?;
        let mut quoted = Vec::new();
        collect(&mut document, &mut Vec::new(), &mut quoted);
        if quoted.is_empty() {
            return None;
        }
        let mut request: ExportTraceServiceRequest = serde_json::from_value(document).ok()?;
        for (path, number) in quoted {
            // A path the decoder did not read (an unknown field) has nothing to put back.
            if let Some(value) = in_request(&mut request, &path)
                && matches!(value.value, Some(Value::DoubleValue(_)))
            {
                value.value = Some(Value::DoubleValue(number));
            }
        }
        Some(request)
    }

    /// Replaces every string `doubleValue` that reads as a number by 0, noting where it was.
    fn collect(json: &mut Json, path: &mut Vec<Segment>, quoted: &mut Vec<(Vec<Segment>, f64)>) {
        match json {
            Json::Object(object) => {
                if let Some(Json::String(text)) = object.get("doubleValue")
                    && let Some(number) = parse(text)
                {
                    object.insert("doubleValue".to_owned(), Json::from(0));
                    quoted.push((
                        path.iter()
                            .map(|segment| match segment {
                                Segment::Key(key) => Segment::Key(key.clone()),
                                Segment::Index(index) => Segment::Index(*index),
                            })
                            .collect(),
                        number,
                    ));
                }
                for (key, value) in object.iter_mut() {
                    path.push(Segment::Key(key.clone()));
                    collect(value, path, quoted);
                    path.pop();
                }
            }
            Json::Array(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    path.push(Segment::Index(index));
                    collect(item, path, quoted);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    fn parse(text: &str) -> Option<f64> {
        match text {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => text.trim().parse().ok(),
        }
    }

    fn key<'p>(path: &'p [Segment], name: &str) -> Option<&'p [Segment]> {
        match path.split_first()? {
            (Segment::Key(key), rest) if key == name => Some(rest),
            _ => None,
        }
    }

    fn index(path: &[Segment]) -> Option<(usize, &[Segment])> {
        match path.split_first()? {
            (Segment::Index(index), rest) => Some((*index, rest)),
            _ => None,
        }
    }

    fn in_request<'a>(
        request: &'a mut ExportTraceServiceRequest,
        path: &[Segment],
    ) -> Option<&'a mut AnyValue> {
        let (i, rest) = index(key(path, "resourceSpans")?)?;
        let resource_spans = request.resource_spans.get_mut(i)?;
        in_resource_spans(resource_spans, rest)
    }

    fn in_resource_spans<'a>(
        resource_spans: &'a mut ResourceSpans,
        path: &[Segment],
    ) -> Option<&'a mut AnyValue> {
        if let Some(rest) = key(path, "resource") {
            let (i, rest) = index(key(rest, "attributes")?)?;
            let attribute = resource_spans.resource.as_mut()?.attributes.get_mut(i)?;
            return in_key_value(attribute, rest);
        }
        let (i, rest) = index(key(path, "scopeSpans")?)?;
        let scope_spans = resource_spans.scope_spans.get_mut(i)?;
        if let Some(rest) = key(rest, "scope") {
            let (i, rest) = index(key(rest, "attributes")?)?;
            let attribute = scope_spans.scope.as_mut()?.attributes.get_mut(i)?;
            return in_key_value(attribute, rest);
        }
        let (i, rest) = index(key(rest, "spans")?)?;
        in_span(scope_spans.spans.get_mut(i)?, rest)
    }

    fn in_span<'a>(span: &'a mut Span, path: &[Segment]) -> Option<&'a mut AnyValue> {
        let attributes = if let Some(rest) = key(path, "events") {
            let (i, rest) = index(rest)?;
            (&mut span.events.get_mut(i)?.attributes, rest)
        } else if let Some(rest) = key(path, "links") {
            let (i, rest) = index(rest)?;
            (&mut span.links.get_mut(i)?.attributes, rest)
        } else {
            (&mut span.attributes, path)
        };
        let (attributes, rest) = attributes;
        let (i, rest) = index(key(rest, "attributes")?)?;
        in_key_value(attributes.get_mut(i)?, rest)
    }

    fn in_key_value<'a>(attribute: &'a mut KeyValue, path: &[Segment]) -> Option<&'a mut AnyValue> {
        in_any_value(attribute.value.as_mut()?, key(path, "value")?)
    }

    fn in_any_value<'a>(value: &'a mut AnyValue, path: &[Segment]) -> Option<&'a mut AnyValue> {
        if path.is_empty() {
            return Some(value);
        }
        match &mut value.value {
            Some(Value::ArrayValue(array)) => {
                let (i, rest) = index(key(key(path, "arrayValue")?, "values")?)?;
                in_any_value(array.values.get_mut(i)?, rest)
            }
            Some(Value::KvlistValue(list)) => {
                let (i, rest) = index(key(key(path, "kvlistValue")?, "values")?)?;
                in_key_value(list.values.get_mut(i)?, rest)
            }
            _ => None,
        }
    }
}

/// The body's encoding from `Content-Type`: protobuf when absent, `UnsupportedMediaType`
/// (415) for anything but protobuf or JSON.
pub fn request_encoding(headers: &HeaderMap) -> Result<Encoding, IngestError> {
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
    // The body OTLP/HTTP error responses carry.
    let status = tonic_types::Status {
        code: error.to_status().code() as i32,
        message: error.to_string(),
        details: Vec::new(),
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
    let mut text = state.ingestor.metrics.render(
        state.ingestor.writer.queued_spans(),
        state.ingestor.writer.queued_bytes(),
    );
    let lookups = state.ingestor.keys.database_lookups();
    text.push_str(&format!(
        "# HELP userlens_ingest_key_lookups_total API key lookups sent to the database (cache misses).\n# TYPE userlens_ingest_key_lookups_total counter\nuserlens_ingest_key_lookups_total {lookups}\n"
    ));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}
