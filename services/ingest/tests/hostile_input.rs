//! Hostile input against the OTLP/HTTP decode path and the attribute mapping: arbitrary bytes,
//! mutated OTLP JSON, gzip streams, and arbitrary `ResourceSpans` with every kind of odd
//! value. Nothing may panic; every span is accepted or rejected with a reason; accepted spans
//! hold the invariants the storage relies on.
//!
//! The default case counts keep this file well under 30 s in a debug build. For a longer run
//! set `PROPTEST_CASES`, e.g. `PROPTEST_CASES=20000 cargo test -p userlens-ingest --test
//! hostile_input --release`.

use std::io::Write;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, header};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use proptest::prelude::*;
use prost::Message;
use userlens_ingest::IngestError;
use userlens_ingest::http::{Encoding, decode_body};
use userlens_ingest::mapping::{ConvertedSpans, MAX_FACT_BYTES, convert_resource_spans};

/// SPEC §3.1, every key read, in alias order per fact. Written out here rather than taken
/// from the crate, so the test checks the crate against the specification.
const USER_ID: &[&str] = &[
    "user.id",
    "enduser.id",
    "langfuse.user.id",
    "gen_ai.user.id",
    "traceloop.association.properties.user_id",
    "lmnr.association.properties.user_id",
    "langsmith.metadata.user_id",
    "ai.telemetry.metadata.userId",
];
const USER_EMAIL: &[&str] = &["user.email", "enduser.email", "langfuse.user.email"];
const SESSION_ID: &[&str] = &[
    "session.id",
    "gen_ai.session.id",
    "langfuse.session.id",
    "traceloop.association.properties.session_id",
    "lmnr.association.properties.session_id",
    "langsmith.trace.session_id",
    "ai.telemetry.metadata.sessionId",
    "gen_ai.conversation.id",
];
const PROVIDER: &[&str] = &[
    "gen_ai.provider.name",
    "gen_ai.system",
    "llm.provider",
    "llm.system",
    "ai.model.provider",
];
const MODEL: &[&str] = &[
    "gen_ai.response.model",
    "gen_ai.request.model",
    "llm.model_name",
    "embedding.model_name",
    "ai.model.id",
];
const INPUT_TOKENS: &[&str] = &[
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "ai.usage.inputTokens",
    "ai.usage.promptTokens",
];
const OUTPUT_TOKENS: &[&str] = &[
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "ai.usage.outputTokens",
    "ai.usage.completionTokens",
];
const CACHED_TOKENS: &[&str] = &[
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
];
const TOTAL_COST: &[&str] = &[
    "gen_ai.usage.total_cost",
    "gen_ai.usage.cost",
    "llm.cost.total",
];
const INPUT_COST: &[&str] = &["gen_ai.usage.input_cost", "llm.cost.prompt"];
const OUTPUT_COST: &[&str] = &["gen_ai.usage.output_cost", "llm.cost.completion"];
const TOOL: &[&str] = &["gen_ai.tool.name", "ai.toolCall.name", "tool.name"];
const OTHER_KEYS: &[&str] = &[
    "gen_ai.operation.name",
    "userlens.issue.id",
    "userlens.issue.title",
    "userlens.behaviour",
];

/// Largest cost (USD) and token count one span may carry.
const MAX_SPAN_COST_NANO: i64 = 1_000_000 * 1_000_000_000;
const MAX_SPAN_TOKENS: i64 = 1_000_000_000_000;
const BODY_LIMIT: usize = 1 << 20;

/// The default case count, unless `PROPTEST_CASES` asks for another.
fn config(default_cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig {
        // A failure prints its minimal input; nothing is written next to the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    config
}

fn every_alias() -> Vec<&'static str> {
    [
        USER_ID,
        USER_EMAIL,
        SESSION_ID,
        PROVIDER,
        MODEL,
        INPUT_TOKENS,
        OUTPUT_TOKENS,
        CACHED_TOKENS,
        TOTAL_COST,
        INPUT_COST,
        OUTPUT_COST,
        TOOL,
        OTHER_KEYS,
    ]
    .concat()
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(every_alias()).prop_map(str::to_owned),
        1 => "[a-z._]{0,12}",
        1 => any::<String>(),
        1 => Just(String::new()),
    ]
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9@.-]{0,10}",
        1 => Just(String::new()),
        // Numeric strings, well-formed and not: costs and tokens may arrive as text.
        2 => any::<f64>().prop_map(|f| f.to_string()),
        1 => prop::sample::select(vec![
            " 12 ", "NaN", "nan", "inf", "-inf", "Infinity", "-1", "-0", "1e400", "1e-400",
            "0x10", "1_000", "", " ", "1e6", "1000000.0000001", "1e12", "1000000000001",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z]{0,3}\\x00[a-z]{0,3}",
        // Around the longest fact kept, in one- and two-byte characters.
        1 => (MAX_FACT_BYTES - 2..MAX_FACT_BYTES + 3).prop_map(|n| "x".repeat(n)),
        1 => (MAX_FACT_BYTES / 2 - 1..MAX_FACT_BYTES / 2 + 2).prop_map(|n| "é".repeat(n)),
        1 => (20_000usize..70_000).prop_map(|n| "y".repeat(n)),
        2 => any::<String>(),
    ]
}

fn double() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => any::<f64>(),
        3 => 0.0..10.0f64,
        4 => prop::sample::select(vec![
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            -1.0,
            -1e-300,
            f64::MIN_POSITIVE,
            1e300,
            f64::MAX,
            1e6,
            1e6 + 1.0,
            1e12,
            1e12 + 1.0,
            9.3e18,
        ]),
    ]
}

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => any::<i64>(),
        3 => 0i64..10_000,
        2 => prop::sample::select(vec![
            0,
            -1,
            i64::MIN,
            i64::MAX,
            1_000_000,
            1_000_001,
            1_000_000_000_000,
            1_000_000_000_001,
        ]),
    ]
}

fn scalar() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => string().prop_map(|s| Some(Value::StringValue(s))),
        1 => any::<bool>().prop_map(|b| Some(Value::BoolValue(b))),
        3 => int().prop_map(|i| Some(Value::IntValue(i))),
        3 => double().prop_map(|d| Some(Value::DoubleValue(d))),
        1 => prop::collection::vec(any::<u8>(), 0..24).prop_map(|b| Some(Value::BytesValue(b))),
        1 => any::<i32>().prop_map(|i| Some(Value::StringValueStrindex(i))),
        1 => Just(None),
    ]
}

/// Any value, arrays and key-value lists nested up to 6 levels.
fn any_value() -> impl Strategy<Value = AnyValue> {
    scalar()
        .prop_map(|value| AnyValue { value })
        .prop_recursive(6, 48, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|values| AnyValue {
                    value: Some(Value::ArrayValue(ArrayValue { values })),
                }),
                prop::collection::vec((key(), inner), 0..4).prop_map(|entries| AnyValue {
                    value: Some(Value::KvlistValue(KeyValueList {
                        values: entries
                            .into_iter()
                            .map(|(key, value)| KeyValue {
                                key,
                                value: Some(value),
                                ..Default::default()
                            })
                            .collect(),
                    })),
                }),
            ]
        })
}

fn attribute() -> impl Strategy<Value = KeyValue> {
    (key(), prop::option::weighted(0.95, any_value())).prop_map(|(key, value)| KeyValue {
        key,
        value,
        ..Default::default()
    })
}

/// An alias with a value of a type it may carry, so that many spans are accepted and their
/// facts can be checked.
fn typed_attribute() -> impl Strategy<Value = KeyValue> {
    let text = [USER_EMAIL, PROVIDER, MODEL, TOOL].concat();
    let ids = [USER_ID, SESSION_ID].concat();
    let numbers = [
        INPUT_TOKENS,
        OUTPUT_TOKENS,
        CACHED_TOKENS,
        TOTAL_COST,
        INPUT_COST,
        OUTPUT_COST,
    ]
    .concat();
    let number = prop_oneof![
        (0.0..1000.0f64).prop_map(Value::DoubleValue),
        (0i64..100_000).prop_map(Value::IntValue),
        (0.0..1000.0f64).prop_map(|d| Value::StringValue(format!(" {d} "))),
    ];
    prop_oneof![
        (prop::sample::select(text), "[a-z0-9.-]{0,8}")
            .prop_map(|(k, v)| (k, Value::StringValue(v))),
        (
            prop::sample::select(ids),
            prop_oneof![
                "[a-z0-9]{0,8}".prop_map(Value::StringValue),
                any::<i64>().prop_map(Value::IntValue)
            ]
        ),
        (prop::sample::select(numbers), number),
    ]
    .prop_map(|(key, value)| KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    })
}

fn attributes(max: usize) -> impl Strategy<Value = Vec<KeyValue>> {
    prop_oneof![
        prop::collection::vec(attribute(), 0..max),
        prop::collection::vec(typed_attribute(), 0..max),
        (
            prop::collection::vec(typed_attribute(), 0..max),
            prop::collection::vec(attribute(), 0..2)
        )
            .prop_map(|(mut typed, odd)| {
                typed.extend(odd);
                typed
            }),
    ]
}

/// Mostly valid ids; sometimes all zeros or of a wrong length (0, 1, 7, 9, 15, 17, 32).
fn id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        16 => prop::collection::vec(any::<u8>(), len),
        1 => Just(vec![0; len]),
        2 => prop::sample::select(vec![0usize, 1, 7, 9, 15, 17, 32])
            .prop_flat_map(|n| prop::collection::vec(any::<u8>(), n)),
    ]
}

fn parent_id() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => Just(Vec::new()),
        4 => prop::collection::vec(any::<u8>(), 8),
        1 => Just(vec![0; 8]),
        1 => prop::sample::select(vec![1usize, 7, 9, 16])
            .prop_flat_map(|n| prop::collection::vec(any::<u8>(), n)),
    ]
}

const EARLY_2026_NS: u64 = 1_767_225_600_000_000_000;

fn timestamp() -> impl Strategy<Value = u64> {
    prop_oneof![
        10 => EARLY_2026_NS..EARLY_2026_NS + 86_400_000_000_000,
        1 => any::<u64>(),
        2 => prop::sample::select(vec![
            0,
            1,
            i64::MAX as u64,
            i64::MAX as u64 + 1,
            u64::MAX,
        ]),
    ]
}

/// (start, end): mostly in order, sometimes reversed, sometimes unrelated.
fn times() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        12 => (timestamp(), 0u64..10_000_000_000).prop_map(|(s, d)| (s, s.saturating_add(d))),
        1 => (timestamp(), 1u64..10_000_000_000).prop_map(|(s, d)| (s, s.saturating_sub(d))),
        1 => Just((0, 0)),
        2 => (timestamp(), timestamp()),
    ]
}

fn span() -> impl Strategy<Value = Span> {
    (
        id(16),
        id(8),
        parent_id(),
        times(),
        prop_oneof![4 => "[a-z ]{0,12}", 1 => any::<String>()],
        attributes(8),
        prop::option::of((0i32..4, any::<String>())),
        any::<i32>(),
    )
        .prop_map(
            |(trace_id, span_id, parent_span_id, (start, end), name, attributes, status, kind)| {
                Span {
                    trace_id,
                    span_id,
                    parent_span_id,
                    name,
                    kind,
                    start_time_unix_nano: start,
                    end_time_unix_nano: end,
                    attributes,
                    status: status.map(|(code, message)| Status { code, message }),
                    ..Default::default()
                }
            },
        )
}

fn resource_spans() -> impl Strategy<Value = ResourceSpans> {
    (
        prop::option::weighted(0.9, attributes(6)),
        prop::collection::vec(prop::collection::vec(span(), 0..5), 0..3),
    )
        .prop_map(|(resource, scopes)| ResourceSpans {
            resource: resource.map(|attributes| Resource {
                attributes,
                ..Default::default()
            }),
            scope_spans: scopes
                .into_iter()
                .map(|spans| ScopeSpans {
                    spans,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
}

fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    prop::collection::vec(resource_spans(), 0..3)
        .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

// ---------------------------------------------------------------------------------------
// Oracles
// ---------------------------------------------------------------------------------------

fn span_count(resource_spans: &[ResourceSpans]) -> usize {
    resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

/// Accounting and the invariants of every accepted span.
fn check_converted(resource_spans: &[ResourceSpans], converted: &ConvertedSpans) {
    let input = span_count(resource_spans);
    assert_eq!(
        converted.accepted.len() as u64 + converted.rejected,
        input as u64,
        "accepted + rejected must be the input count"
    );
    assert_eq!(
        converted.rejected > 0,
        converted.first_rejection.is_some(),
        "a rejection always names its reason: {:?}",
        converted.first_rejection
    );
    if let Some(reason) = &converted.first_rejection {
        assert!(!reason.trim().is_empty());
    }
    for record in &converted.accepted {
        let stored = &record.stored;
        assert_ne!(record.trace_id, [0; 16], "trace id is not all zeros");
        assert_ne!(stored.span_id, [0; 8], "span id is not all zeros");
        assert_ne!(stored.parent_span_id, Some([0; 8]));
        assert!(stored.start_ns >= 0, "start {}", stored.start_ns);
        assert!(
            stored.end_ns >= stored.start_ns,
            "{} < {}",
            stored.end_ns,
            stored.start_ns
        );
        let facts = &stored.facts;
        if let Some(cost) = facts.cost_nano {
            // A total and the input + output fallback obey the same per-span maximum.
            assert!((0..=MAX_SPAN_COST_NANO).contains(&cost), "cost {cost}");
        }
        for tokens in [
            facts.input_tokens,
            facts.output_tokens,
            facts.cached_input_tokens,
        ]
        .into_iter()
        .flatten()
        {
            assert!((0..=MAX_SPAN_TOKENS).contains(&tokens), "tokens {tokens}");
        }
        for text in [
            &facts.user_id,
            &facts.user_email,
            &facts.session_id,
            &facts.provider,
            &facts.model,
            &facts.tool_name,
            &facts.issue_id,
            &facts.issue_title,
        ]
        .into_iter()
        .flatten()
        .chain(&facts.behaviours)
        {
            assert!(!text.is_empty(), "an empty fact is absent");
            assert!(text.len() <= MAX_FACT_BYTES, "{} bytes", text.len());
            assert!(!text.contains('\0'));
        }
        assert!(
            facts.behaviours.windows(2).all(|w| w[0] < w[1]),
            "behaviours are sorted and distinct: {:?}",
            facts.behaviours
        );
        // What PostgreSQL text columns cannot hold never reaches the writer.
        assert!(!record.name.contains('\0'));
        assert!(
            !record
                .status_message
                .as_deref()
                .is_some_and(|m| m.contains('\0') || m.is_empty())
        );
        for json in [&record.attributes_json, &record.resource.attributes_json] {
            let parsed: serde_json::Value =
                serde_json::from_str(json).expect("attributes are stored as JSON");
            assert!(parsed.is_object(), "{json}");
            // Stored as text: a NUL inside is escaped (PostgreSQL text cannot hold a raw one).
            assert!(!json.contains('\0'), "{json}");
        }
    }
}

fn is_present(value: Option<&AnyValue>) -> Option<&Value> {
    match value.and_then(|v| v.value.as_ref()) {
        None => None,
        Some(Value::StringValue(s)) if s.is_empty() => None,
        Some(value) => Some(value),
    }
}

/// SPEC §3.1: the first alias present on the span wins; only when none is are the
/// resource's attributes searched.
fn winner<'a>(
    aliases: &[&str],
    span: &'a [KeyValue],
    resource: &'a [KeyValue],
) -> Option<&'a Value> {
    [span, resource].into_iter().find_map(|attributes| {
        aliases.iter().find_map(|alias| {
            attributes
                .iter()
                .filter(|kv| kv.key == *alias)
                .find_map(|kv| is_present(kv.value.as_ref()))
        })
    })
}

/// Why the specification says this span must be rejected, if it says so for sure.
fn must_reject(span: &Span, resource: &[KeyValue]) -> Option<&'static str> {
    if span.trace_id.len() != 16 || span.trace_id.iter().all(|b| *b == 0) {
        return Some("trace_id");
    }
    if span.span_id.len() != 8 || span.span_id.iter().all(|b| *b == 0) {
        return Some("span_id");
    }
    if !matches!(span.parent_span_id.len(), 0 | 8) {
        return Some("parent_span_id");
    }
    if span.start_time_unix_nano > i64::MAX as u64 || span.end_time_unix_nano > i64::MAX as u64 {
        return Some("timestamp");
    }
    if span.end_time_unix_nano < span.start_time_unix_nano {
        return Some("end before start");
    }
    let attributes = &span.attributes;
    for aliases in [USER_ID, SESSION_ID] {
        match winner(aliases, attributes, resource) {
            Some(Value::StringValue(s)) if s.len() > MAX_FACT_BYTES || s.contains('\0') => {
                return Some("id too long or with NUL");
            }
            Some(Value::StringValue(_) | Value::IntValue(_)) | None => {}
            Some(_) => return Some("id of the wrong type"),
        }
    }
    for aliases in [USER_EMAIL, PROVIDER, MODEL, TOOL] {
        match winner(aliases, attributes, resource) {
            Some(Value::StringValue(s)) if s.len() > MAX_FACT_BYTES || s.contains('\0') => {
                return Some("string too long or with NUL");
            }
            Some(Value::StringValue(_)) | None => {}
            Some(_) => return Some("string fact of the wrong type"),
        }
    }
    for aliases in [INPUT_TOKENS, OUTPUT_TOKENS, CACHED_TOKENS, TOTAL_COST] {
        // Token counts are whole numbers; a cost may have a fraction.
        let whole = aliases != TOTAL_COST;
        let bad_double = |d: f64| !d.is_finite() || d < 0.0 || (whole && d.fract() != 0.0);
        let bad = match winner(aliases, attributes, resource) {
            Some(Value::DoubleValue(d)) => bad_double(*d),
            Some(Value::IntValue(i)) => *i < 0,
            Some(Value::StringValue(s)) => s.trim().parse::<f64>().map_or(true, bad_double),
            None => false,
            Some(_) => true,
        };
        if bad {
            return Some("number of the wrong type, negative or not finite");
        }
    }
    None
}

/// What the specification says the user id is, for a span that is accepted.
fn expected_user_id(span: &Span, resource: &[KeyValue]) -> Option<String> {
    match winner(USER_ID, &span.attributes, resource) {
        Some(Value::StringValue(s)) => Some(s.clone()),
        Some(Value::IntValue(i)) => Some(i.to_string()),
        _ => None,
    }
}

/// A total cost given as a finite double in range is read exactly, in nano-USD.
fn expected_total_cost(span: &Span, resource: &[KeyValue]) -> Option<Option<i64>> {
    match winner(TOTAL_COST, &span.attributes, resource) {
        Some(Value::DoubleValue(d)) if d.is_finite() && (0.0..=1e6).contains(d) => {
            Some(Some((d * 1e9).round() as i64))
        }
        Some(Value::IntValue(i)) if (0..=1_000_000).contains(i) => Some(Some(i * 1_000_000_000)),
        _ => None,
    }
}

/// Converts `request`, checks every invariant and, span by span, that the verdict is the one
/// the span gets on its own (a bad span never affects a good one) and agrees with the spec.
fn check_mapping(resource_spans: &[ResourceSpans]) {
    let converted = convert_resource_spans(resource_spans);
    check_converted(resource_spans, &converted);

    let mut accepted = converted.accepted.iter();
    for resource_span in resource_spans {
        let resource: &[KeyValue] = resource_span
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        for scope in &resource_span.scope_spans {
            for span in &scope.spans {
                let single = [ResourceSpans {
                    resource: resource_span.resource.clone(),
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span.clone()],
                        ..Default::default()
                    }],
                    ..Default::default()
                }];
                let alone = convert_resource_spans(&single);
                check_converted(&single, &alone);
                match alone.accepted.as_slice() {
                    [] => {
                        assert_eq!(alone.rejected, 1);
                    }
                    [record] => {
                        if let Some(reason) = must_reject(span, resource) {
                            panic!("accepted a span the spec rejects ({reason}): {span:?}");
                        }
                        let in_batch = accepted.next().expect("the span is accepted in the batch");
                        assert_eq!(in_batch, record, "the batch changed a span's record");
                        let facts = &record.stored.facts;
                        assert_eq!(facts.user_id, expected_user_id(span, resource));
                        if let Some(cost) = expected_total_cost(span, resource) {
                            assert_eq!(facts.cost_nano, cost);
                        }
                        assert_eq!(record.trace_id.as_slice(), span.trace_id.as_slice());
                        assert_eq!(record.stored.span_id.as_slice(), span.span_id.as_slice());
                        assert_eq!(record.stored.start_ns as u64, span.start_time_unix_nano);
                        assert_eq!(record.stored.end_ns as u64, span.end_time_unix_nano);
                    }
                    more => panic!("one span became {} records", more.len()),
                }
            }
        }
    }
    assert!(
        accepted.next().is_none(),
        "the batch accepted a span that is rejected on its own"
    );
}

fn headers(content_encoding: Option<&'static str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(encoding) = content_encoding {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    headers
}

/// Decodes like the HTTP handler; a decoded request then goes through the mapping.
fn decode_and_map(
    encoding: Encoding,
    content_encoding: Option<&'static str>,
    body: Vec<u8>,
    limit: usize,
) -> Result<ExportTraceServiceRequest, IngestError> {
    let decoded = decode_body(
        &headers(content_encoding),
        encoding,
        Bytes::from(body),
        limit,
    );
    match &decoded {
        Ok(request) => check_mapping(&request.resource_spans),
        Err(IngestError::Malformed(message)) => assert!(!message.is_empty()),
        Err(IngestError::TooLarge { limit: reported }) => assert_eq!(*reported, limit),
        Err(other) => panic!("a body is malformed or too large, not {other:?}"),
    }
    decoded
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

/// A byte-level edit of an encoded body.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Delete(usize),
    Insert(usize, u8),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, bits)| Mutation::Flip(at, bits)),
        any::<usize>().prop_map(Mutation::Delete),
        (
            any::<usize>(),
            prop::sample::select(b"{}[]\",:0123456789-eE.\\ntfau \x00\xff".to_vec())
        )
            .prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let len = bytes.len();
        match *mutation {
            Mutation::Flip(at, bits) if len > 0 => bytes[at % len] ^= bits,
            Mutation::Delete(at) if len > 0 => {
                bytes.remove(at % len);
            }
            Mutation::Insert(at, byte) => bytes.insert(at % (len + 1), byte),
            Mutation::Truncate(at) => bytes.truncate(at % (len + 1)),
            _ => {}
        }
    }
    bytes
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary structured requests: every span accepted or rejected with a reason, the
    /// verdict per span, the invariants of accepted spans.
    #[test]
    fn arbitrary_resource_spans_map_without_panic(request in request()) {
        check_mapping(&request.resource_spans);
    }

    /// Protobuf over HTTP loses nothing: encode, (optionally gzip), decode, same request.
    #[test]
    fn protobuf_bodies_round_trip_through_the_decoder(request in request(), gzipped in any::<bool>()) {
        let encoded = request.encode_to_vec();
        let (body, content_encoding) = if gzipped {
            (gzip(&encoded), Some("gzip"))
        } else {
            (encoded.clone(), None)
        };
        let decoded = decode_and_map(Encoding::Protobuf, content_encoding, body, BODY_LIMIT.max(encoded.len()))
            .expect("an encoded request decodes");
        prop_assert_eq!(decoded.encode_to_vec(), encoded);
    }

    /// The limit applies to the inflated body: just under decodes, just over is 413.
    #[test]
    fn the_limit_applies_to_the_inflated_body(request in request()) {
        let encoded = request.encode_to_vec();
        if encoded.is_empty() {
            // Nothing to inflate: an empty body is a valid, empty request.
            return Ok(());
        }
        let compressed = gzip(&encoded);
        let fits = decode_body(&headers(Some("gzip")), Encoding::Protobuf, Bytes::from(compressed.clone()), encoded.len());
        prop_assert!(fits.is_ok());
        let over = decode_body(&headers(Some("gzip")), Encoding::Protobuf, Bytes::from(compressed), encoded.len() - 1);
        prop_assert!(matches!(over, Err(IngestError::TooLarge { .. })), "{:?}", over.err());
    }
}

proptest! {
    #![proptest_config(config(768))]

    #[test]
    fn arbitrary_bytes_as_protobuf(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode_and_map(Encoding::Protobuf, None, body, BODY_LIMIT);
    }

    #[test]
    fn arbitrary_bytes_as_json(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode_and_map(Encoding::Json, None, body, BODY_LIMIT);
    }

    #[test]
    fn arbitrary_bytes_as_gzip(
        body in prop::collection::vec(any::<u8>(), 0..2048),
        json in any::<bool>(),
        with_header in any::<bool>(),
    ) {
        // Behind a valid gzip magic number, the decoder reads further.
        let body = if with_header { [vec![0x1f, 0x8b, 0x08, 0x00], body].concat() } else { body };
        let encoding = if json { Encoding::Json } else { Encoding::Protobuf };
        let _ = decode_and_map(encoding, Some("gzip"), body, BODY_LIMIT);
    }

    /// Protobuf of a real request with bytes flipped, deleted, inserted, cut.
    #[test]
    fn mutated_protobuf(request in request(), mutations in prop::collection::vec(mutation(), 1..6)) {
        let body = mutate(request.encode_to_vec(), &mutations);
        let _ = decode_and_map(Encoding::Protobuf, None, body, BODY_LIMIT);
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// OTLP JSON of a real request, then edited: the JSON decoder's deeper paths (hex ids,
    /// string-encoded int64, every AnyValue kind) meet broken input.
    #[test]
    fn mutated_json(request in request(), mutations in prop::collection::vec(mutation(), 0..6)) {
        let json = serde_json::to_vec(&request).expect("OTLP JSON");
        let body = mutate(json, &mutations);
        let _ = decode_and_map(Encoding::Json, None, body, BODY_LIMIT);
    }
}

// ---------------------------------------------------------------------------------------
// Fixed cases
// ---------------------------------------------------------------------------------------

fn nested(depth: usize) -> AnyValue {
    let mut value = AnyValue {
        value: Some(Value::StringValue("leaf".into())),
    };
    for level in 0..depth {
        value = if level % 2 == 0 {
            AnyValue {
                value: Some(Value::ArrayValue(ArrayValue {
                    values: vec![value],
                })),
            }
        } else {
            AnyValue {
                value: Some(Value::KvlistValue(KeyValueList {
                    values: vec![KeyValue {
                        key: "k".into(),
                        value: Some(value),
                        ..Default::default()
                    }],
                })),
            }
        };
    }
    value
}

fn one_span_request(attributes: Vec<KeyValue>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![7; 16],
                    span_id: vec![9; 8],
                    start_time_unix_nano: EARLY_2026_NS,
                    end_time_unix_nano: EARLY_2026_NS + 1,
                    attributes,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn wrap(tag: u8, inner: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    prost::encoding::encode_varint(inner.len() as u64, &mut out);
    out.extend_from_slice(inner);
    out
}

/// Nesting within the decoders' recursion limits is read; beyond it the body is malformed
/// (400), never a stack overflow.
#[test]
fn deep_nesting_is_bounded_by_the_decoders() {
    // (depth, decodes as protobuf, decodes as JSON); None: either, as long as nothing breaks.
    let cases = [
        (10, Some(true), Some(true)),
        (20, Some(true), Some(true)),
        (30, None, None),
        (60, Some(false), Some(false)),
        (500, Some(false), Some(false)),
    ];
    for (depth, protobuf_decodes, json_decodes) in cases {
        for key in ["custom", "userlens.behaviour"] {
            let request = one_span_request(vec![KeyValue {
                key: key.into(),
                value: Some(nested(depth)),
                ..Default::default()
            }]);
            let protobuf = decode_and_map(
                Encoding::Protobuf,
                None,
                request.encode_to_vec(),
                BODY_LIMIT,
            );
            let json = serde_json::to_vec(&request).expect("OTLP JSON");
            let json = decode_and_map(Encoding::Json, None, json, BODY_LIMIT);
            for (decoded, expected, what) in [
                (protobuf, protobuf_decodes, "protobuf"),
                (json, json_decodes, "JSON"),
            ] {
                match decoded {
                    Ok(request) => {
                        assert_ne!(expected, Some(false), "{what} decoded depth {depth}");
                        let converted = convert_resource_spans(&request.resource_spans);
                        // Any attribute is kept; a behaviour must be strings.
                        let accepted = usize::from(key == "custom");
                        assert_eq!(converted.accepted.len(), accepted, "{what} {key} {depth}");
                    }
                    Err(error) => {
                        assert_ne!(expected, Some(true), "{what} depth {depth}: {error}");
                        assert!(matches!(error, IngestError::Malformed(_)), "{error:?}");
                    }
                }
            }
        }
    }
    // Raw nesting far past every limit, as bytes no encoder would write.
    let deep_json = format!(
        "{{\"resourceSpans\":{}{}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(matches!(
        decode_and_map(Encoding::Json, None, deep_json.into_bytes(), BODY_LIMIT),
        Err(IngestError::Malformed(_))
    ));
    // AnyValue.array_value (5) → ArrayValue.values (1) → AnyValue …, 5 000 deep, inside a span
    // attribute (Span.attributes 9, KeyValue.value 2) of a well-formed request.
    let mut value = Vec::new();
    for _ in 0..2_500 {
        value = wrap(0x2a, &wrap(0x0a, &value));
    }
    let attribute = [wrap(0x0a, b"k"), wrap(0x12, &value)].concat();
    let span = [
        wrap(0x0a, &[7; 16]),
        wrap(0x12, &[9; 8]),
        wrap(0x4a, &attribute),
    ]
    .concat();
    let body = wrap(0x0a, &wrap(0x12, &wrap(0x12, &span)));
    assert!(matches!(
        decode_and_map(Encoding::Protobuf, None, body, BODY_LIMIT),
        Err(IngestError::Malformed(_))
    ));
}

/// A gzip bomb stops at the limit, quickly, with 413: one member inflating to 24 MiB, and
/// 1 024 concatenated members of 1 MiB each (the limit counts members together).
#[test]
fn a_gzip_bomb_stops_at_the_limit() {
    let limit = 16 * 1024 * 1024;
    let best = |bytes: &[u8]| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(bytes).expect("gzip in memory");
        encoder.finish().expect("gzip in memory")
    };
    let members = best(&vec![0u8; 1024 * 1024]).repeat(1024);
    let single = best(&vec![0u8; 24 * 1024 * 1024]);
    for body in [single, members] {
        assert!(body.len() < 2 * 1024 * 1024, "{} bytes", body.len());
        let started = Instant::now();
        let decoded = decode_body(
            &headers(Some("gzip")),
            Encoding::Protobuf,
            Bytes::from(body),
            limit,
        );
        assert!(
            matches!(decoded, Err(IngestError::TooLarge { limit: l }) if l == limit),
            "{:?}",
            decoded.err()
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "took {:?}",
            started.elapsed()
        );
    }
}

/// Values the mapping reads at their edges, one span each.
#[test]
fn edge_values_get_their_verdict() {
    let kv = |key: &str, value: Value| KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    };
    let cases: Vec<(Vec<KeyValue>, Result<(), &str>)> = vec![
        (
            vec![kv("gen_ai.usage.cost", Value::DoubleValue(1e6))],
            Ok(()),
        ),
        (
            vec![kv("gen_ai.usage.cost", Value::DoubleValue(1e6 + 1.0))],
            Err("finite"),
        ),
        (
            vec![kv("gen_ai.usage.cost", Value::DoubleValue(-0.0))],
            Ok(()),
        ),
        (
            vec![kv("gen_ai.usage.cost", Value::StringValue("NaN".into()))],
            Err("finite"),
        ),
        (
            vec![kv("gen_ai.usage.cost", Value::StringValue("1e400".into()))],
            Err("finite"),
        ),
        (
            vec![kv("gen_ai.usage.cost", Value::IntValue(i64::MIN))],
            Err("finite"),
        ),
        (
            vec![kv(
                "gen_ai.usage.input_cost",
                Value::DoubleValue(f64::NEG_INFINITY),
            )],
            Err("finite"),
        ),
        (
            vec![kv("gen_ai.usage.input_tokens", Value::IntValue(i64::MAX))],
            Err("finite"),
        ),
        (
            vec![kv("gen_ai.usage.input_tokens", Value::DoubleValue(1e12))],
            Ok(()),
        ),
        (
            vec![kv("gen_ai.usage.input_tokens", Value::DoubleValue(2.5))],
            Err("whole number"),
        ),
        (
            vec![kv(
                "gen_ai.usage.output_tokens",
                Value::StringValue("7.25".into()),
            )],
            Err("whole number"),
        ),
        (
            vec![
                kv("gen_ai.usage.input_cost", Value::DoubleValue(6e5)),
                kv("gen_ai.usage.output_cost", Value::DoubleValue(6e5)),
            ],
            Err("input + output cost"),
        ),
        (
            vec![kv(
                "userlens.behaviour",
                Value::ArrayValue(ArrayValue {
                    values: (0..65)
                        .map(|i| AnyValue {
                            value: Some(Value::StringValue(format!("b{i}"))),
                        })
                        .collect(),
                }),
            )],
            Err("more than 64 behaviours"),
        ),
        (
            vec![kv(
                "userlens.behaviour",
                Value::StringValue("b".repeat(1001)),
            )],
            Err("longer than 1000"),
        ),
        (
            vec![kv(
                "userlens.issue.id",
                Value::StringValue("i".repeat(1001)),
            )],
            Err("longer than 1000"),
        ),
        (
            vec![kv("gen_ai.usage.input_tokens", Value::BytesValue(vec![1]))],
            Err("wrong type"),
        ),
        (
            vec![kv(
                "user.id",
                Value::StringValue("x".repeat(MAX_FACT_BYTES)),
            )],
            Ok(()),
        ),
        (
            vec![kv(
                "user.id",
                Value::StringValue("x".repeat(MAX_FACT_BYTES + 1)),
            )],
            Err("longer"),
        ),
        (
            vec![kv(
                "user.id",
                Value::StringValue("x".repeat(8 * 1024 * 1024)),
            )],
            Err("longer"),
        ),
        (
            vec![kv("user.id", Value::DoubleValue(f64::NAN))],
            Err("wrong type"),
        ),
        (
            vec![kv("user.id", Value::StringValueStrindex(3))],
            Err("wrong type"),
        ),
        (
            vec![kv("session.id", Value::ArrayValue(ArrayValue::default()))],
            Err("wrong type"),
        ),
        (
            vec![kv(
                "custom",
                Value::StringValue("x".repeat(8 * 1024 * 1024)),
            )],
            Ok(()),
        ),
        (
            vec![kv("custom", Value::DoubleValue(f64::NEG_INFINITY))],
            Ok(()),
        ),
        (
            vec![kv(
                "userlens.behaviour",
                Value::ArrayValue(ArrayValue {
                    values: vec![nested(3)],
                }),
            )],
            Err("wrong type"),
        ),
    ];
    for (attributes, verdict) in cases {
        let request = one_span_request(attributes.clone());
        let converted = convert_resource_spans(&request.resource_spans);
        check_converted(&request.resource_spans, &converted);
        match verdict {
            Ok(()) => assert_eq!(
                converted.accepted.len(),
                1,
                "{:?}",
                converted.first_rejection
            ),
            Err(reason) => {
                let message = converted.first_rejection.unwrap_or_default();
                assert!(message.contains(reason), "{message} lacks {reason}");
            }
        }
    }
}

/// OTLP JSON spells non-finite doubles "NaN", "Infinity", "-Infinity" and may quote any
/// double: such values decode wherever an AnyValue can be, and only the span whose cost is
/// not finite is rejected.
#[test]
fn quoted_doubles_in_otlp_json_reject_only_their_span() {
    let span = |id: u8, attributes: &str| {
        format!(
            r#"{{"traceId":"{id:02x}{rest}","spanId":"00000000000000{id:02x}","name":"s",
                "startTimeUnixNano":"1767225600000000000","endTimeUnixNano":"1767225601000000000",
                "attributes":[{attributes}],
                "events":[{{"timeUnixNano":"1767225600000000000","name":"e","attributes":[{{"key":"ev","value":{{"doubleValue":"-Infinity"}}}}]}}]}}"#,
            rest = "0".repeat(30)
        )
    };
    let body = format!(
        r#"{{"resourceSpans":[{{
            "resource":{{"attributes":[{{"key":"r","value":{{"doubleValue":"Infinity"}}}}]}},
            "scopeSpans":[{{"scope":{{"name":"x","attributes":[{{"key":"sc","value":{{"doubleValue":"1.5"}}}}]}},"spans":[{},{},{},{}]}}]
        }}]}}"#,
        span(
            1,
            r#"{"key":"gen_ai.usage.cost","value":{"doubleValue":"NaN"}}"#
        ),
        span(
            2,
            r#"{"key":"gen_ai.usage.cost","value":{"doubleValue":"0.5"}}"#
        ),
        span(
            3,
            r#"{"key":"nested","value":{"arrayValue":{"values":[{"kvlistValue":{"values":[{"key":"k","value":{"doubleValue":"NaN"}}]}}]}}}"#
        ),
        span(
            4,
            r#"{"key":"gen_ai.usage.cost","value":{"doubleValue":"Infinity"}}"#
        ),
    );
    let request = decode_and_map(Encoding::Json, None, body.into_bytes(), BODY_LIMIT)
        .expect("quoted doubles decode");
    let resource_spans = &request.resource_spans[0];
    let double = |value: &Option<AnyValue>| match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::DoubleValue(d)) => *d,
        other => panic!("not a double: {other:?}"),
    };
    let resource = resource_spans.resource.as_ref().expect("resource");
    assert_eq!(double(&resource.attributes[0].value), f64::INFINITY);
    let scope = &resource_spans.scope_spans[0];
    assert_eq!(
        double(&scope.scope.as_ref().expect("scope").attributes[0].value),
        1.5
    );
    assert_eq!(
        double(&scope.spans[0].events[0].attributes[0].value),
        f64::NEG_INFINITY
    );
    assert!(double(&scope.spans[0].attributes[0].value).is_nan());
    let Some(Value::ArrayValue(array)) = scope.spans[2].attributes[0]
        .value
        .as_ref()
        .and_then(|v| v.value.as_ref())
    else {
        panic!("an array");
    };
    let Some(Value::KvlistValue(list)) = array.values[0].value.as_ref() else {
        panic!("a kvlist");
    };
    assert!(double(&list.values[0].value).is_nan());

    let converted = convert_resource_spans(&request.resource_spans);
    assert_eq!(converted.rejected, 2, "{:?}", converted.first_rejection);
    assert_eq!(converted.accepted.len(), 2);
    assert_eq!(
        converted.accepted[0].stored.facts.cost_nano,
        Some(500_000_000)
    );
    assert!(
        converted
            .first_rejection
            .is_some_and(|m| m.contains("gen_ai.usage.cost"))
    );
    // A quoted double that is not a number still makes the body malformed.
    let bad = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"r","value":{"doubleValue":"lots"}}]}}]}"#;
    assert!(matches!(
        decode_body(
            &HeaderMap::new(),
            Encoding::Json,
            Bytes::from(bad),
            BODY_LIMIT
        ),
        Err(IngestError::Malformed(_))
    ));
}
