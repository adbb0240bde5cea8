//! How much memory a protobuf message takes once `prost` has decoded it, estimated from its
//! wire bytes without decoding it. Protobuf lets a 2-byte record (`0x12 0x00`, an empty
//! span) become a struct of a few hundred bytes, so a 16 MiB body can decode into gigabytes;
//! the ingest services refuse such a body before decoding it.
//!
//! The walk follows the OTLP trace schema (and the native ingest messages): every element of
//! a repeated message or string field costs the `size_of` of its decoded type, every string
//! or bytes field its length. Singular sub-messages live inline in their parent and cost
//! nothing extra. Fields the decoder skips (unknown numbers) cost nothing, as they allocate
//! nothing. Growth slack of `Vec`s is not counted: the estimate is of what the message
//! holds, and `prost` grows vectors by doubling, so the real footprint is at most about
//! twice the estimate for the element arrays.
//!
//! The walk allocates nothing and reads each byte once per nesting level at most; it refuses
//! what `prost` would refuse too (bad varints, truncated fields, wrong wire types on known
//! fields, nesting deeper than prost's recursion limit), so a body cannot pass the walk with
//! a cheap estimate and then decode into something large.

use std::mem::size_of;

use opentelemetry_proto::tonic::common::v1::{AnyValue, EntityRef, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};

/// Why a body's decoded size could not be estimated: it is not valid protobuf for its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(&'static str);

/// What a message would take in memory once decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodedSize {
    /// Bytes of the decoded structs and of their strings.
    pub bytes: usize,
    /// Spans the message carries.
    pub spans: usize,
}

/// Messages whose decoded size can be estimated from their wire bytes.
pub trait EstimateDecodedSize {
    fn estimate_decoded_size(wire: &[u8]) -> Result<DecodedSize, WireError>;
}

impl EstimateDecodedSize
    for opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest
{
    fn estimate_decoded_size(wire: &[u8]) -> Result<DecodedSize, WireError> {
        estimate(wire, Kind::ExportRequest)
    }
}

impl EstimateDecodedSize for crate::ingest::v1::SpanBatch {
    fn estimate_decoded_size(wire: &[u8]) -> Result<DecodedSize, WireError> {
        estimate(wire, Kind::SpanBatch)
    }
}

impl EstimateDecodedSize for crate::ingest::v1::AnnotateTraceRequest {
    fn estimate_decoded_size(wire: &[u8]) -> Result<DecodedSize, WireError> {
        estimate(wire, Kind::AnnotateTraceRequest)
    }
}

/// The estimate for one encoded message of the given kind.
fn estimate(wire: &[u8], kind: Kind) -> Result<DecodedSize, WireError> {
    let mut size = DecodedSize {
        bytes: kind.struct_size(),
        spans: 0,
    };
    walk(wire, kind, 0, &mut size)?;
    Ok(size)
}

/// `prost`'s recursion limit: a message nested deeper does not decode.
const RECURSION_LIMIT: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ExportRequest,
    SpanBatch,
    AnnotateTraceRequest,
    IssueAnnotation,
    ResourceSpans,
    Resource,
    EntityRef,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

/// What a known field holds.
#[derive(Debug, Clone, Copy)]
enum Field {
    /// A sub-message; `repeated` ones cost an element of their type each.
    Message { kind: Kind, repeated: bool },
    /// A string or bytes value; `repeated` ones cost a `String` each besides their bytes.
    Bytes { repeated: bool },
    /// A varint, fixed32 or fixed64 scalar, inline in its struct.
    Scalar,
}

const fn message(kind: Kind) -> Field {
    Field::Message {
        kind,
        repeated: false,
    }
}

const fn repeated(kind: Kind) -> Field {
    Field::Message {
        kind,
        repeated: true,
    }
}

const BYTES: Field = Field::Bytes { repeated: false };

impl Kind {
    fn struct_size(self) -> usize {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::common::v1::{
            ArrayValue, InstrumentationScope, KeyValueList,
        };
        use opentelemetry_proto::tonic::resource::v1::Resource;
        match self {
            Self::ExportRequest => size_of::<ExportTraceServiceRequest>(),
            Self::SpanBatch => size_of::<crate::ingest::v1::SpanBatch>(),
            Self::AnnotateTraceRequest => size_of::<crate::ingest::v1::AnnotateTraceRequest>(),
            Self::IssueAnnotation => size_of::<crate::ingest::v1::IssueAnnotation>(),
            Self::ResourceSpans => size_of::<ResourceSpans>(),
            Self::Resource => size_of::<Resource>(),
            Self::EntityRef => size_of::<EntityRef>(),
            Self::ScopeSpans => size_of::<ScopeSpans>(),
            Self::Scope => size_of::<InstrumentationScope>(),
            Self::Span => size_of::<Span>(),
            Self::Event => size_of::<span::Event>(),
            Self::Link => size_of::<span::Link>(),
            Self::Status => size_of::<opentelemetry_proto::tonic::trace::v1::Status>(),
            Self::KeyValue => size_of::<KeyValue>(),
            Self::AnyValue => size_of::<AnyValue>(),
            Self::ArrayValue => size_of::<ArrayValue>(),
            Self::KeyValueList => size_of::<KeyValueList>(),
        }
    }

    /// The field `number` of this message, or None for a field the decoder skips.
    fn field(self, number: u32) -> Option<Field> {
        use Kind::*;
        let field = match (self, number) {
            (ExportRequest, 1) | (SpanBatch, 2) => repeated(ResourceSpans),
            (SpanBatch, 1) => Field::Scalar,
            (AnnotateTraceRequest, 1) => BYTES,
            (AnnotateTraceRequest, 2) => repeated(IssueAnnotation),
            (AnnotateTraceRequest, 3) => Field::Bytes { repeated: true },
            (IssueAnnotation, 1 | 2) => BYTES,
            (ResourceSpans, 1) => message(Resource),
            (ResourceSpans, 2) => repeated(ScopeSpans),
            (ResourceSpans, 3) => BYTES,
            (Resource, 1) => repeated(KeyValue),
            (Resource, 2) => Field::Scalar,
            (Resource, 3) => repeated(EntityRef),
            (EntityRef, 1 | 2) => BYTES,
            (EntityRef, 3 | 4) => Field::Bytes { repeated: true },
            (ScopeSpans, 1) => message(Scope),
            (ScopeSpans, 2) => repeated(Span),
            (ScopeSpans, 3) => BYTES,
            (Scope, 1 | 2) => BYTES,
            (Scope, 3) => repeated(KeyValue),
            (Scope, 4) => Field::Scalar,
            (Span, 1..=5) => BYTES,
            (Span, 6..=8 | 10 | 12 | 14 | 16) => Field::Scalar,
            (Span, 9) => repeated(KeyValue),
            (Span, 11) => repeated(Event),
            (Span, 13) => repeated(Link),
            (Span, 15) => message(Status),
            (Event, 1 | 4) => Field::Scalar,
            (Event, 2) => BYTES,
            (Event, 3) => repeated(KeyValue),
            (Link, 1..=3) => BYTES,
            (Link, 4) => repeated(KeyValue),
            (Link, 5 | 6) => Field::Scalar,
            (Status, 2) => BYTES,
            (Status, 3) => Field::Scalar,
            (KeyValue, 1) => BYTES,
            (KeyValue, 2) => message(AnyValue),
            (KeyValue, 3) => Field::Scalar,
            (AnyValue, 1 | 7) => BYTES,
            (AnyValue, 2..=4 | 8) => Field::Scalar,
            (AnyValue, 5) => message(ArrayValue),
            (AnyValue, 6) => message(KeyValueList),
            (ArrayValue, 1) => repeated(AnyValue),
            (KeyValueList, 1) => repeated(KeyValue),
            _ => return None,
        };
        Some(field)
    }
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// Adds what the fields of one message of `kind` (its struct itself excluded) cost.
fn walk(
    mut wire: &[u8],
    kind: Kind,
    depth: usize,
    size: &mut DecodedSize,
) -> Result<(), WireError> {
    if depth >= RECURSION_LIMIT {
        return Err(WireError("message nested too deeply"));
    }
    while !wire.is_empty() {
        let key = read_varint(&mut wire)?;
        let wire_type = (key & 0x7) as u8;
        let number = u32::try_from(key >> 3).map_err(|_| WireError("invalid field number"))?;
        if number == 0 {
            return Err(WireError("invalid field number 0"));
        }
        match kind.field(number) {
            None => skip(&mut wire, wire_type, number, depth)?,
            Some(Field::Scalar) => {
                if wire_type == LENGTH_DELIMITED
                    || wire_type == START_GROUP
                    || wire_type == END_GROUP
                {
                    // Packed repeated scalars do not occur in these messages.
                    return Err(WireError("invalid wire type for a scalar field"));
                }
                skip(&mut wire, wire_type, number, depth)?;
            }
            Some(Field::Bytes { repeated }) => {
                let value = length_delimited(&mut wire, wire_type)?;
                size.bytes = size.bytes.saturating_add(value.len());
                if repeated {
                    size.bytes = size.bytes.saturating_add(size_of::<String>());
                }
            }
            Some(Field::Message {
                kind: inner,
                repeated,
            }) => {
                let value = length_delimited(&mut wire, wire_type)?;
                if repeated {
                    size.bytes = size.bytes.saturating_add(inner.struct_size());
                }
                if inner == Kind::Span {
                    size.spans = size.spans.saturating_add(1);
                }
                walk(value, inner, depth + 1, size)?;
            }
        }
    }
    Ok(())
}

fn read_varint(wire: &mut &[u8]) -> Result<u64, WireError> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let (&byte, rest) = wire.split_first().ok_or(WireError("truncated varint"))?;
        *wire = rest;
        // The tenth byte may carry the top bit of a u64 only.
        if i == 9 && byte > 1 {
            return Err(WireError("invalid varint"));
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(WireError("invalid varint"))
}

fn take<'a>(wire: &mut &'a [u8], len: usize) -> Result<&'a [u8], WireError> {
    if wire.len() < len {
        return Err(WireError("truncated field"));
    }
    let (value, rest) = wire.split_at(len);
    *wire = rest;
    Ok(value)
}

fn length_delimited<'a>(wire: &mut &'a [u8], wire_type: u8) -> Result<&'a [u8], WireError> {
    if wire_type != LENGTH_DELIMITED {
        return Err(WireError("invalid wire type for a length-delimited field"));
    }
    let len = usize::try_from(read_varint(wire)?).map_err(|_| WireError("truncated field"))?;
    take(wire, len)
}

/// Skips one field the way `prost` does, groups included.
fn skip(wire: &mut &[u8], wire_type: u8, number: u32, depth: usize) -> Result<(), WireError> {
    match wire_type {
        VARINT => {
            read_varint(wire)?;
        }
        FIXED64 => {
            take(wire, 8)?;
        }
        FIXED32 => {
            take(wire, 4)?;
        }
        LENGTH_DELIMITED => {
            length_delimited(wire, wire_type)?;
        }
        START_GROUP => {
            if depth + 1 >= RECURSION_LIMIT {
                return Err(WireError("message nested too deeply"));
            }
            loop {
                let key = read_varint(wire)?;
                let inner_type = (key & 0x7) as u8;
                let inner_number =
                    u32::try_from(key >> 3).map_err(|_| WireError("invalid field number"))?;
                if inner_type == END_GROUP {
                    if inner_number != number {
                        return Err(WireError("unexpected end group tag"));
                    }
                    break;
                }
                skip(wire, inner_type, inner_number, depth + 1)?;
            }
        }
        _ => return Err(WireError("invalid wire type")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use prost::Message;

    /// What the decoded request holds, counted from the decoded structs.
    fn counted(request: &ExportTraceServiceRequest) -> usize {
        fn key_values(values: &[KeyValue]) -> usize {
            values
                .iter()
                .map(|kv| {
                    size_of::<KeyValue>()
                        + kv.key.len()
                        + kv.value.as_ref().map_or(0, |v| match &v.value {
                            Some(Value::StringValue(s)) => s.len(),
                            _ => 0,
                        })
                })
                .sum()
        }
        size_of::<ExportTraceServiceRequest>()
            + request
                .resource_spans
                .iter()
                .map(|rs| {
                    size_of::<ResourceSpans>()
                        + rs.resource
                            .as_ref()
                            .map_or(0, |r| key_values(&r.attributes))
                        + rs.scope_spans
                            .iter()
                            .map(|ss| {
                                size_of::<ScopeSpans>()
                                    + ss.spans
                                        .iter()
                                        .map(|s| {
                                            size_of::<Span>()
                                                + s.trace_id.len()
                                                + s.span_id.len()
                                                + s.name.len()
                                                + key_values(&s.attributes)
                                        })
                                        .sum::<usize>()
                            })
                            .sum::<usize>()
                })
                .sum::<usize>()
    }

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_estimate_matches_what_the_decoded_request_holds() {
        let spans = (0..50)
            .map(|i| Span {
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                name: format!("span {i}"),
                attributes: vec![kv("user.id", "u-1"), kv("gen_ai.request.model", "gpt")],
                ..Default::default()
            })
            .collect();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                    attributes: vec![kv("service.name", "svc")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let wire = request.encode_to_vec();
        let estimate = ExportTraceServiceRequest::estimate_decoded_size(&wire).expect("valid");
        assert_eq!(estimate.spans, 50);
        assert_eq!(estimate.bytes, counted(&request));
    }

    #[test]
    fn empty_spans_are_charged_their_struct_size() {
        // ResourceSpans { ScopeSpans { 1000 × Span {} } }
        let mut scope = Vec::new();
        for _ in 0..1000 {
            scope.extend_from_slice(&[0x12, 0x00]);
        }
        let mut resource = vec![0x12];
        prost::encoding::encode_varint(scope.len() as u64, &mut resource);
        resource.extend_from_slice(&scope);
        let mut wire = vec![0x0a];
        prost::encoding::encode_varint(resource.len() as u64, &mut wire);
        wire.extend_from_slice(&resource);
        let estimate = ExportTraceServiceRequest::estimate_decoded_size(&wire).expect("valid");
        assert_eq!(estimate.spans, 1000);
        assert!(estimate.bytes >= 1000 * size_of::<Span>());
        let decoded = ExportTraceServiceRequest::decode(wire.as_slice()).expect("decodes");
        assert_eq!(decoded.resource_spans[0].scope_spans[0].spans.len(), 1000);
    }

    #[test]
    fn what_prost_refuses_the_walk_refuses() {
        for wire in [
            &[0x0a, 0x05, 0x12][..],       // truncated
            &[0x08, 0x01][..],             // resource_spans as a varint
            &[0x0a, 0x02, 0x12, 0x80][..], // truncated inner length
            &[0x00][..],                   // field 0
        ] {
            assert!(ExportTraceServiceRequest::estimate_decoded_size(wire).is_err());
            assert!(ExportTraceServiceRequest::decode(wire).is_err());
        }
        // An unknown group is skipped by both.
        let wire = [0x7b, 0x08, 0x01, 0x7c];
        assert!(ExportTraceServiceRequest::estimate_decoded_size(&wire).is_ok());
        assert!(ExportTraceServiceRequest::decode(&wire[..]).is_ok());
    }
}
