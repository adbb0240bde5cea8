//! Structured spans built from the fuzzer's bytes: keys from the SPEC §3.1 alias list mixed
//! with others, values of every AnyValue kind nested several levels, ids of any length and
//! timestamps anywhere, through the attribute mapping.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use userlens_fuzz::check_mapping;

const KEYS: &[&str] = &[
    "user.id",
    "enduser.id",
    "langfuse.user.id",
    "gen_ai.user.id",
    "ai.telemetry.metadata.userId",
    "user.email",
    "session.id",
    "gen_ai.conversation.id",
    "gen_ai.provider.name",
    "gen_ai.system",
    "gen_ai.response.model",
    "gen_ai.request.model",
    "gen_ai.usage.input_tokens",
    "llm.token_count.prompt",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.total_cost",
    "gen_ai.usage.cost",
    "llm.cost.total",
    "gen_ai.usage.input_cost",
    "llm.cost.completion",
    "gen_ai.tool.name",
    "tool.name",
    "gen_ai.operation.name",
    "userlens.issue.id",
    "userlens.issue.title",
    "userlens.behaviour",
    "",
    "custom",
];

const DOUBLES: &[f64] = &[
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    -0.0,
    -1.0,
    1e6,
    1e6 + 1.0,
    1e12,
    1e12 + 1.0,
    f64::MAX,
];

fn string(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0u8..=5)? {
        0 => "x".repeat(u.int_in_range(4090usize..=4100)?),
        1 => String::new(),
        2 => format!("{}", u.arbitrary::<f64>()?),
        _ => u.arbitrary()?,
    })
}

fn key(u: &mut Unstructured<'_>) -> Result<String> {
    if u.ratio(7u8, 8)? {
        Ok((*u.choose(KEYS)?).to_owned())
    } else {
        u.arbitrary()
    }
}

fn any_value(u: &mut Unstructured<'_>, depth: u32) -> Result<AnyValue> {
    let kinds = if depth >= 8 { 8 } else { 10 };
    let value = match u.int_in_range(0..=kinds - 1)? {
        0 => None,
        1 | 2 => Some(Value::StringValue(string(u)?)),
        3 => Some(Value::BoolValue(u.arbitrary()?)),
        4 => Some(Value::IntValue(u.arbitrary()?)),
        5 => Some(Value::DoubleValue(*u.choose(DOUBLES)?)),
        6 => Some(Value::DoubleValue(u.arbitrary()?)),
        7 => Some(Value::BytesValue(u.arbitrary()?)),
        8 => {
            let n = u.int_in_range(0..=3)?;
            let values = (0..n)
                .map(|_| any_value(u, depth + 1))
                .collect::<Result<_>>()?;
            Some(Value::ArrayValue(ArrayValue { values }))
        }
        _ => {
            let n = u.int_in_range(0..=3)?;
            let values = (0..n)
                .map(|_| attribute(u, depth + 1))
                .collect::<Result<_>>()?;
            Some(Value::KvlistValue(KeyValueList { values }))
        }
    };
    Ok(AnyValue { value })
}

fn attribute(u: &mut Unstructured<'_>, depth: u32) -> Result<KeyValue> {
    Ok(KeyValue {
        key: key(u)?,
        value: if u.ratio(1u8, 16)? {
            None
        } else {
            Some(any_value(u, depth)?)
        },
        ..Default::default()
    })
}

fn attributes(u: &mut Unstructured<'_>) -> Result<Vec<KeyValue>> {
    let n = u.int_in_range(0..=8)?;
    (0..n).map(|_| attribute(u, 0)).collect()
}

fn id(u: &mut Unstructured<'_>, len: usize) -> Result<Vec<u8>> {
    let len = match u.int_in_range(0u8..=7)? {
        0 => *u.choose(&[0usize, 1, 7, 9, 15, 17, 32])?,
        _ => len,
    };
    let mut bytes = vec![0; len];
    u.fill_buffer(&mut bytes)?;
    Ok(bytes)
}

fn timestamp(u: &mut Unstructured<'_>) -> Result<u64> {
    Ok(match u.int_in_range(0u8..=3)? {
        0 => *u.choose(&[0, 1, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX])?,
        1 => u.arbitrary()?,
        _ => 1_767_225_600_000_000_000 + u.int_in_range(0..=86_400_000_000_000)?,
    })
}

fn span(u: &mut Unstructured<'_>) -> Result<Span> {
    let start = timestamp(u)?;
    let end = if u.ratio(3u8, 4)? {
        start.saturating_add(u.int_in_range(0..=10_000_000_000)?)
    } else {
        timestamp(u)?
    };
    Ok(Span {
        trace_id: id(u, 16)?,
        span_id: id(u, 8)?,
        parent_span_id: if u.arbitrary()? {
            Vec::new()
        } else {
            id(u, 8)?
        },
        name: u.arbitrary()?,
        kind: u.arbitrary()?,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: attributes(u)?,
        status: if u.arbitrary()? {
            Some(Status {
                code: u.int_in_range(0..=3)?,
                message: u.arbitrary()?,
            })
        } else {
            None
        },
        ..Default::default()
    })
}

fn request(u: &mut Unstructured<'_>) -> Result<Vec<ResourceSpans>> {
    let resources = u.int_in_range(0..=2)?;
    (0..resources)
        .map(|_| {
            let resource = if u.arbitrary()? {
                Some(Resource {
                    attributes: attributes(u)?,
                    ..Default::default()
                })
            } else {
                None
            };
            let spans = u.int_in_range(0..=6)?;
            Ok(ResourceSpans {
                resource,
                scope_spans: vec![ScopeSpans {
                    spans: (0..spans).map(|_| span(u)).collect::<Result<_>>()?,
                    ..Default::default()
                }],
                ..Default::default()
            })
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    if let Ok(resource_spans) = request(&mut u) {
        check_mapping(&resource_spans);
    }
});
