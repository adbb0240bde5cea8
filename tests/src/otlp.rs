//! Builders for OTLP spans and requests.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

pub const STATUS_ERROR: i32 = 2;

pub fn string(value: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(value.to_owned())),
    }
}

pub fn int(value: i64) -> AnyValue {
    AnyValue {
        value: Some(Value::IntValue(value)),
    }
}

pub fn double(value: f64) -> AnyValue {
    AnyValue {
        value: Some(Value::DoubleValue(value)),
    }
}

pub fn boolean(value: bool) -> AnyValue {
    AnyValue {
        value: Some(Value::BoolValue(value)),
    }
}

pub fn strings(values: &[&str]) -> AnyValue {
    AnyValue {
        value: Some(Value::ArrayValue(ArrayValue {
            values: values.iter().map(|v| string(v)).collect(),
        })),
    }
}

pub fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..Default::default()
    }
}

/// A span with the given ids and times (nanoseconds) and attributes.
pub fn span(
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    start_ns: u64,
    end_ns: u64,
) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: "span".into(),
        start_time_unix_nano: start_ns,
        end_time_unix_nano: end_ns,
        ..Default::default()
    }
}

pub fn with_attributes(mut span: Span, attributes: Vec<KeyValue>) -> Span {
    span.attributes = attributes;
    span
}

pub fn errored(mut span: Span) -> Span {
    span.status = Some(Status {
        code: STATUS_ERROR,
        message: "failed".into(),
    });
    span
}

/// One `ResourceSpans` with the given resource attributes and spans.
pub fn resource_spans(resource_attributes: Vec<KeyValue>, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: resource_attributes,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn request(resource_spans: Vec<ResourceSpans>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest { resource_spans }
}

/// Deterministic ids for tests.
pub fn trace_id(n: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[0] = 0x7e;
    id[8..].copy_from_slice(&n.to_be_bytes());
    id
}

pub fn span_id(n: u64) -> [u8; 8] {
    let mut id = n.to_be_bytes();
    id[0] |= 0x40;
    id
}
