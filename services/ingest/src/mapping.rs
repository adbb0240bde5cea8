//! OTLP spans → `SpanRecord`s: validation and the attribute mapping of SPEC §3.1.
//!
//! For each fact the first alias present among the span's attributes wins; only when none
//! is present are the resource's attributes searched the same way. Empty strings (and
//! values with no content) count as absent. A present value of a type we cannot read for
//! that fact rejects the span.
//!
//! Limits (`docs/spec.md` §3.2): attributes beyond the count, key or value-size limits are
//! dropped and counted in the stored `dropped_attributes_count`, as OpenTelemetry SDKs do;
//! facts are read from the attributes kept, so the stored span gives them back. Facts out of
//! their own bounds (too long, too many behaviours, a non-integral token count, a cost above
//! the cap) reject the span with a reason.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use userlens_storage::{ResourceRecord, SpanFacts, SpanRecord, StoredSpan};

/// Longest string we keep for a fact (ids, names, titles); longer values reject the span.
pub const MAX_FACT_BYTES: usize = 4096;

/// Longest issue id or behaviour name (on a span or in `AnnotateTrace`). These values are
/// keys of a btree index on PostgreSQL, whose entries must stay under about 2,700 bytes; the
/// same bound applies on SQLite so that both backends accept the same input.
pub const MAX_LINK_VALUE_BYTES: usize = 1000;

/// Most behaviours one span may name (`userlens.behaviour` array); more reject the span.
pub const MAX_BEHAVIOURS_PER_SPAN: usize = 64;

/// Most attributes kept per span and per resource: the OpenTelemetry SDK default span
/// attribute count limit (`OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT` = 128). Later ones are dropped
/// and counted.
pub const MAX_ATTRIBUTES: usize = 128;

/// Longest attribute key kept; longer keys are dropped and counted.
pub const MAX_ATTRIBUTE_KEY_BYTES: usize = 1024;

/// Largest attribute value kept, in bytes of content (string and byte lengths, 8 per
/// scalar, plus keys of nested maps). OpenTelemetry sets no value length limit by default;
/// 1 MiB keeps long prompts and completions while bounding one stored row.
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1 << 20;

/// Largest cost we accept for one span, in USD: keeps nano-USD sums far from `i64::MAX`.
/// Applies to a total cost and to the input + output fallback alike.
const MAX_SPAN_COST_USD: f64 = 1.0e6;
const MAX_SPAN_COST_NANO: i64 = 1_000_000 * 1_000_000_000;

/// Largest token count we accept for one span.
const MAX_SPAN_TOKENS: f64 = 1.0e12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fact {
    UserId,
    UserEmail,
    SessionId,
    Provider,
    Model,
    InputTokens,
    OutputTokens,
    CachedInputTokens,
    TotalCost,
    InputCost,
    OutputCost,
    Tool,
    Operation,
    IssueId,
    IssueTitle,
    Behaviour,
}

const FACT_COUNT: usize = 16;

/// Every attribute key we read, in alias order per fact.
const ALIASES: &[(Fact, &[&str])] = &[
    (
        Fact::UserId,
        &[
            "user.id",
            "enduser.id",
            "langfuse.user.id",
            "gen_ai.user.id",
            "traceloop.association.properties.user_id",
            "lmnr.association.properties.user_id",
            "langsmith.metadata.user_id",
            "ai.telemetry.metadata.userId",
        ],
    ),
    (
        Fact::UserEmail,
        &["user.email", "enduser.email", "langfuse.user.email"],
    ),
    (
        Fact::SessionId,
        &[
            "session.id",
            "gen_ai.session.id",
            "langfuse.session.id",
            "traceloop.association.properties.session_id",
            "lmnr.association.properties.session_id",
            "langsmith.trace.session_id",
            "ai.telemetry.metadata.sessionId",
            "gen_ai.conversation.id",
        ],
    ),
    (
        Fact::Provider,
        &[
            "gen_ai.provider.name",
            "gen_ai.system",
            "llm.provider",
            "llm.system",
            "ai.model.provider",
        ],
    ),
    (
        Fact::Model,
        &[
            "gen_ai.response.model",
            "gen_ai.request.model",
            "llm.model_name",
            "embedding.model_name",
            "ai.model.id",
        ],
    ),
    (
        Fact::InputTokens,
        &[
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.prompt_tokens",
            "llm.token_count.prompt",
            "ai.usage.inputTokens",
            "ai.usage.promptTokens",
        ],
    ),
    (
        Fact::OutputTokens,
        &[
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
            "llm.token_count.completion",
            "ai.usage.outputTokens",
            "ai.usage.completionTokens",
        ],
    ),
    (
        Fact::CachedInputTokens,
        &[
            "gen_ai.usage.cache_read.input_tokens",
            "gen_ai.usage.cache_read_input_tokens",
            "llm.token_count.prompt_details.cache_read",
        ],
    ),
    (
        Fact::TotalCost,
        &[
            "gen_ai.usage.total_cost",
            "gen_ai.usage.cost",
            "llm.cost.total",
        ],
    ),
    (
        Fact::InputCost,
        &["gen_ai.usage.input_cost", "llm.cost.prompt"],
    ),
    (
        Fact::OutputCost,
        &["gen_ai.usage.output_cost", "llm.cost.completion"],
    ),
    (
        Fact::Tool,
        &["gen_ai.tool.name", "ai.toolCall.name", "tool.name"],
    ),
    (Fact::Operation, &["gen_ai.operation.name"]),
    (Fact::IssueId, &["userlens.issue.id"]),
    (Fact::IssueTitle, &["userlens.issue.title"]),
    (Fact::Behaviour, &["userlens.behaviour"]),
];

/// `gen_ai.operation.name` values that make a span an LLM call.
const LLM_OPERATIONS: &[&str] = &[
    "chat",
    "text_completion",
    "generate_content",
    "embeddings",
    "reranker",
];

/// Attribute key → (fact, rank among its aliases).
static ALIAS_INDEX: LazyLock<HashMap<&'static str, (Fact, usize)>> = LazyLock::new(|| {
    ALIASES
        .iter()
        .flat_map(|(fact, keys)| {
            keys.iter()
                .enumerate()
                .map(move |(rank, key)| (*key, (*fact, rank)))
        })
        .collect()
});

fn fact_slot(fact: Fact) -> usize {
    fact as usize
}

/// Why a span was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanRejection {
    #[error("trace_id must be 16 bytes, got {0}")]
    TraceIdLength(usize),
    #[error("trace_id must not be all zeros")]
    TraceIdZero,
    #[error("span_id must be 8 bytes, got {0}")]
    SpanIdLength(usize),
    #[error("span_id must not be all zeros")]
    SpanIdZero,
    #[error("parent_span_id must be empty or 8 bytes, got {0}")]
    ParentSpanIdLength(usize),
    #[error("{0} is beyond the year 2262")]
    TimestampOutOfRange(&'static str),
    #[error("end_time_unix_nano is before start_time_unix_nano")]
    EndBeforeStart,
    #[error("attribute {key} has the wrong type: expected {expected}")]
    WrongType { key: String, expected: &'static str },
    #[error("attribute {key} must be a finite, non-negative number")]
    BadNumber { key: String },
    #[error("attribute {key} must be a whole number of tokens")]
    NotInteger { key: String },
    #[error("input + output cost is more than {MAX_SPAN_COST_USD} USD")]
    CostTooLarge,
    #[error("attribute {key} is longer than {limit} bytes")]
    TooLong { key: String, limit: usize },
    #[error("attribute {key} names more than {MAX_BEHAVIOURS_PER_SPAN} behaviours")]
    TooManyBehaviours { key: String },
    #[error("attribute {key} contains a NUL character")]
    NulCharacter { key: String },
}

/// The outcome of converting one request's spans.
#[derive(Debug, Default)]
pub struct ConvertedSpans {
    pub accepted: Vec<SpanRecord>,
    pub rejected: u64,
    /// The first rejection, for the OTLP `partial_success.error_message`.
    pub first_rejection: Option<String>,
}

/// Converts every span of an OTLP request, rejecting bad spans one by one.
pub fn convert_resource_spans(resource_spans: &[ResourceSpans]) -> ConvertedSpans {
    let mut out = ConvertedSpans::sized_for(resource_spans);
    for resource_span in resource_spans {
        let spans = resource_span
            .scope_spans
            .iter()
            .flat_map(|s| s.spans.iter());
        out.convert_resource(resource_span.resource.as_ref(), spans);
    }
    out
}

/// [`convert_resource_spans`] consuming the request: each span is dropped once converted,
/// so the decoded request shrinks while its records grow and the two are not both held
/// whole (a request may decode into tens of MiB).
pub fn convert_owned_resource_spans(resource_spans: Vec<ResourceSpans>) -> ConvertedSpans {
    let mut out = ConvertedSpans::sized_for(&resource_spans);
    for resource_span in resource_spans {
        let ResourceSpans {
            resource,
            scope_spans,
            ..
        } = resource_span;
        let spans = scope_spans.into_iter().flat_map(|s| s.spans.into_iter());
        out.convert_resource(resource.as_ref(), spans);
    }
    out
}

impl ConvertedSpans {
    /// Empty, with room for every span of the request. Sized once: growing by doubling
    /// would hold up to twice the records (and, while it moves them, both copies) of a
    /// request that may be tens of MiB.
    fn sized_for(resource_spans: &[ResourceSpans]) -> Self {
        let span_count = resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        Self {
            accepted: Vec::with_capacity(span_count),
            ..Self::default()
        }
    }

    /// Converts the spans of one resource.
    fn convert_resource<S: Borrow<Span>>(
        &mut self,
        resource: Option<&Resource>,
        spans: impl Iterator<Item = S>,
    ) {
        let (all_resource_attributes, sender_dropped) = resource
            .map(|r| (r.attributes.as_slice(), r.dropped_attributes_count))
            .unwrap_or_default();
        // A resource whose attributes cannot be kept rejects each of its spans.
        let resource = KeptAttributes::of(all_resource_attributes, sender_dropped).map(|kept| {
            let found = find_aliases(&kept.kept);
            // One record per resource, shared by all of its spans.
            let record = Arc::new(ResourceRecord::new(
                attributes_json(&kept.kept),
                kept.dropped,
            ));
            (kept.kept, found, record)
        });
        for span in spans {
            let span = span.borrow();
            let converted = match &resource {
                Ok((attributes, found, record)) => convert_span(span, attributes, found, record),
                Err(rejection) => Err(rejection.clone()),
            };
            match converted {
                Ok(record) => self.accepted.push(record),
                Err(rejection) => {
                    self.rejected += 1;
                    if self.first_rejection.is_none() {
                        self.first_rejection = Some(format!(
                            "span {} of trace {}: {rejection}",
                            hex::encode(&span.span_id),
                            hex::encode(&span.trace_id)
                        ));
                    }
                }
            }
        }
    }
}

/// Index of the best-ranked alias found per fact: (rank, attribute index).
type FoundAliases = [Option<(usize, usize)>; FACT_COUNT];

/// The attributes kept under the limits, and how many were dropped (by the sender, as it
/// reports, plus by us).
struct KeptAttributes<'a> {
    kept: Vec<&'a KeyValue>,
    dropped: u32,
}

impl<'a> KeptAttributes<'a> {
    /// Keeps attributes in order: one with an over-long key or value is dropped, and once
    /// `MAX_ATTRIBUTES` distinct keys are kept, attributes with a new key are dropped. (A
    /// repeated key adds nothing to the stored object: its first occurrence is stored.)
    /// An attribute we read a fact from is never dropped, so a fact cannot silently go
    /// missing: it is kept whatever the count (there are few such keys), and one too large
    /// to keep rejects the span like any other bad fact.
    fn of(attributes: &'a [KeyValue], sender_dropped: u32) -> Result<Self, SpanRejection> {
        let mut kept = Vec::with_capacity(attributes.len().min(MAX_ATTRIBUTES));
        let mut keys: HashSet<&str> = HashSet::with_capacity(attributes.len().min(MAX_ATTRIBUTES));
        let mut dropped: u32 = 0;
        for attribute in attributes {
            let key = attribute.key.as_str();
            let fits = key.len() <= MAX_ATTRIBUTE_KEY_BYTES
                && value_size(attribute.value.as_ref(), MAX_ATTRIBUTE_VALUE_BYTES)
                    <= MAX_ATTRIBUTE_VALUE_BYTES;
            let admitted = if ALIAS_INDEX.contains_key(key) {
                if !fits {
                    return Err(SpanRejection::TooLong {
                        key: key.to_owned(),
                        limit: MAX_ATTRIBUTE_VALUE_BYTES,
                    });
                }
                true
            } else {
                fits && (keys.contains(key) || keys.len() < MAX_ATTRIBUTES)
            };
            if admitted {
                keys.insert(key);
                kept.push(attribute);
            } else {
                dropped = dropped.saturating_add(1);
            }
        }
        Ok(Self {
            kept,
            dropped: dropped.saturating_add(sender_dropped),
        })
    }
}

/// The content size of a value as `MAX_ATTRIBUTE_VALUE_BYTES` counts it; the walk stops
/// once it passes `stop_above`, so a huge array costs no more than the limit to measure.
fn value_size(value: Option<&AnyValue>, stop_above: usize) -> usize {
    const SCALAR_BYTES: usize = 8;
    let mut size = 0usize;
    let mut pending: Vec<&AnyValue> = value.into_iter().collect();
    while let Some(value) = pending.pop() {
        size = size.saturating_add(match &value.value {
            None => 1,
            Some(Value::StringValue(s)) => s.len(),
            Some(Value::BytesValue(b)) => b.len().saturating_mul(2),
            Some(Value::ArrayValue(array)) => {
                pending.extend(&array.values);
                1
            }
            Some(Value::KvlistValue(list)) => {
                for entry in &list.values {
                    size = size.saturating_add(entry.key.len());
                    match &entry.value {
                        Some(v) => pending.push(v),
                        None => size = size.saturating_add(1),
                    }
                }
                1
            }
            Some(_) => SCALAR_BYTES,
        });
        if size > stop_above {
            break;
        }
    }
    size
}

fn find_aliases(attributes: &[&KeyValue]) -> FoundAliases {
    let mut found: FoundAliases = [None; FACT_COUNT];
    for (index, attribute) in attributes.iter().enumerate() {
        let Some(&(fact, rank)) = ALIAS_INDEX.get(attribute.key.as_str()) else {
            continue;
        };
        if is_absent(attribute.value.as_ref()) {
            continue;
        }
        let slot = &mut found[fact_slot(fact)];
        // Duplicate keys: the first occurrence of the best-ranked alias wins.
        if slot.is_none_or(|(best, _)| rank < best) {
            *slot = Some((rank, index));
        }
    }
    found
}

fn is_absent(value: Option<&AnyValue>) -> bool {
    match value.and_then(|v| v.value.as_ref()) {
        None => true,
        Some(Value::StringValue(s)) => s.is_empty(),
        Some(_) => false,
    }
}

fn convert_span(
    span: &Span,
    resource_attributes: &[&KeyValue],
    resource_found: &FoundAliases,
    resource: &Arc<ResourceRecord>,
) -> Result<SpanRecord, SpanRejection> {
    let trace_id: [u8; 16] = span
        .trace_id
        .as_slice()
        .try_into()
        .map_err(|_| SpanRejection::TraceIdLength(span.trace_id.len()))?;
    if trace_id == [0; 16] {
        return Err(SpanRejection::TraceIdZero);
    }
    let span_id: [u8; 8] = span
        .span_id
        .as_slice()
        .try_into()
        .map_err(|_| SpanRejection::SpanIdLength(span.span_id.len()))?;
    if span_id == [0; 8] {
        return Err(SpanRejection::SpanIdZero);
    }
    let parent_span_id = match span.parent_span_id.len() {
        0 => None,
        8 => {
            let mut parent = [0u8; 8];
            parent.copy_from_slice(&span.parent_span_id);
            (parent != [0; 8]).then_some(parent)
        }
        n => return Err(SpanRejection::ParentSpanIdLength(n)),
    };
    let start_ns = i64::try_from(span.start_time_unix_nano)
        .map_err(|_| SpanRejection::TimestampOutOfRange("start_time_unix_nano"))?;
    let end_ns = i64::try_from(span.end_time_unix_nano)
        .map_err(|_| SpanRejection::TimestampOutOfRange("end_time_unix_nano"))?;
    if end_ns < start_ns {
        return Err(SpanRejection::EndBeforeStart);
    }

    let span_attributes = KeptAttributes::of(&span.attributes, span.dropped_attributes_count)?;
    let span_found = find_aliases(&span_attributes.kept);
    let reader = FactReader {
        span_attributes: &span_attributes.kept,
        span_found: &span_found,
        resource_attributes,
        resource_found,
    };
    let facts = reader.facts()?;
    let status = span.status.as_ref();
    Ok(SpanRecord {
        trace_id,
        name: without_nul(&span.name),
        kind: span.kind,
        status_message: status
            .map(|s| without_nul(&s.message))
            .filter(|m| !m.is_empty()),
        stored: StoredSpan {
            span_id,
            parent_span_id,
            start_ns,
            end_ns,
            status_code: status.map(|s| s.code).unwrap_or(0),
            facts,
        },
        attributes_json: attributes_json(&span_attributes.kept),
        dropped_attributes_count: span_attributes.dropped,
        resource: Arc::clone(resource),
    })
}

struct FactReader<'a> {
    span_attributes: &'a [&'a KeyValue],
    span_found: &'a FoundAliases,
    resource_attributes: &'a [&'a KeyValue],
    resource_found: &'a FoundAliases,
}

impl<'a> FactReader<'a> {
    /// The winning attribute for a fact: span first, then resource.
    fn lookup(&self, fact: Fact) -> Option<(&'a str, &'a Value)> {
        let slot = fact_slot(fact);
        let attribute: &'a KeyValue = match (self.span_found[slot], self.resource_found[slot]) {
            (Some((_, index)), _) => self.span_attributes[index],
            (None, Some((_, index))) => self.resource_attributes[index],
            (None, None) => return None,
        };
        let value = attribute.value.as_ref()?.value.as_ref()?;
        Some((attribute.key.as_str(), value))
    }

    fn string(&self, fact: Fact) -> Result<Option<String>, SpanRejection> {
        let Some((key, value)) = self.lookup(fact) else {
            return Ok(None);
        };
        match value {
            Value::StringValue(s) => checked_fact_string(key, s).map(Some),
            _ => Err(SpanRejection::WrongType {
                key: key.to_owned(),
                expected: "string",
            }),
        }
    }

    /// Ids may arrive as strings or integers (read as their decimal string).
    fn id(&self, fact: Fact) -> Result<Option<String>, SpanRejection> {
        let Some((key, value)) = self.lookup(fact) else {
            return Ok(None);
        };
        match value {
            Value::StringValue(s) => checked_fact_string(key, s).map(Some),
            Value::IntValue(i) => Ok(Some(i.to_string())),
            _ => Err(SpanRejection::WrongType {
                key: key.to_owned(),
                expected: "string or int",
            }),
        }
    }

    /// An id that is also an index key (issue id): at most `MAX_LINK_VALUE_BYTES`.
    fn link_id(&self, fact: Fact) -> Result<Option<String>, SpanRejection> {
        let id = self.id(fact)?;
        if let (Some(id), Some((key, _))) = (&id, self.lookup(fact))
            && id.len() > MAX_LINK_VALUE_BYTES
        {
            return Err(SpanRejection::TooLong {
                key: key.to_owned(),
                limit: MAX_LINK_VALUE_BYTES,
            });
        }
        Ok(id)
    }

    fn number(&self, fact: Fact) -> Result<Option<(&'a str, f64)>, SpanRejection> {
        let Some((key, value)) = self.lookup(fact) else {
            return Ok(None);
        };
        let number = match value {
            Value::IntValue(i) => *i as f64,
            Value::DoubleValue(d) => *d,
            Value::StringValue(s) => {
                s.trim()
                    .parse::<f64>()
                    .map_err(|_| SpanRejection::WrongType {
                        key: key.to_owned(),
                        expected: "number or numeric string",
                    })?
            }
            _ => {
                return Err(SpanRejection::WrongType {
                    key: key.to_owned(),
                    expected: "number or numeric string",
                });
            }
        };
        if !number.is_finite() || number < 0.0 {
            return Err(SpanRejection::BadNumber {
                key: key.to_owned(),
            });
        }
        Ok(Some((key, number)))
    }

    fn tokens(&self, fact: Fact) -> Result<Option<i64>, SpanRejection> {
        match self.number(fact)? {
            None => Ok(None),
            Some((key, n)) if n > MAX_SPAN_TOKENS => Err(SpanRejection::BadNumber {
                key: key.to_owned(),
            }),
            // A token is a unit: 2.5 tokens is a sender's bug, not something to round.
            Some((key, n)) if n.fract() != 0.0 => Err(SpanRejection::NotInteger {
                key: key.to_owned(),
            }),
            Some((_, n)) => Ok(Some(n as i64)),
        }
    }

    fn cost_nano(&self, fact: Fact) -> Result<Option<i64>, SpanRejection> {
        match self.number(fact)? {
            None => Ok(None),
            Some((key, usd)) if usd > MAX_SPAN_COST_USD => Err(SpanRejection::BadNumber {
                key: key.to_owned(),
            }),
            Some((_, usd)) => Ok(Some((usd * 1e9).round() as i64)),
        }
    }

    fn behaviours(&self) -> Result<Vec<String>, SpanRejection> {
        let Some((key, value)) = self.lookup(Fact::Behaviour) else {
            return Ok(Vec::new());
        };
        let wrong_type = || SpanRejection::WrongType {
            key: key.to_owned(),
            expected: "string or array of strings",
        };
        match value {
            Value::StringValue(s) => Ok(vec![checked_link_value(key, s)?]),
            Value::ArrayValue(array) => {
                let mut names = Vec::with_capacity(array.values.len().min(MAX_BEHAVIOURS_PER_SPAN));
                for item in &array.values {
                    match item.value.as_ref() {
                        Some(Value::StringValue(s)) if s.is_empty() => {}
                        Some(Value::StringValue(s)) => names.push(checked_link_value(key, s)?),
                        None => {}
                        Some(_) => return Err(wrong_type()),
                    }
                }
                names.sort();
                names.dedup();
                if names.len() > MAX_BEHAVIOURS_PER_SPAN {
                    return Err(SpanRejection::TooManyBehaviours {
                        key: key.to_owned(),
                    });
                }
                Ok(names)
            }
            _ => Err(wrong_type()),
        }
    }

    fn facts(&self) -> Result<SpanFacts, SpanRejection> {
        let model = self.string(Fact::Model)?;
        let operation = self.string(Fact::Operation)?;
        let is_llm_call = model.is_some()
            || operation
                .as_deref()
                .is_some_and(|op| LLM_OPERATIONS.contains(&op));
        let cost_nano = match self.cost_nano(Fact::TotalCost)? {
            Some(total) => Some(total),
            None => match (
                self.cost_nano(Fact::InputCost)?,
                self.cost_nano(Fact::OutputCost)?,
            ) {
                (None, None) => None,
                // Each part is at most the cap, so the sum cannot overflow; the sum obeys
                // the same cap as a total.
                (input, output) => {
                    let sum = input.unwrap_or(0) + output.unwrap_or(0);
                    if sum > MAX_SPAN_COST_NANO {
                        return Err(SpanRejection::CostTooLarge);
                    }
                    Some(sum)
                }
            },
        };
        Ok(SpanFacts {
            user_id: self.id(Fact::UserId)?,
            user_email: self.string(Fact::UserEmail)?,
            session_id: self.id(Fact::SessionId)?,
            provider: self.string(Fact::Provider)?,
            model,
            is_llm_call,
            input_tokens: self.tokens(Fact::InputTokens)?,
            output_tokens: self.tokens(Fact::OutputTokens)?,
            cached_input_tokens: self.tokens(Fact::CachedInputTokens)?,
            cost_nano,
            tool_name: self.string(Fact::Tool)?,
            issue_id: self.link_id(Fact::IssueId)?,
            issue_title: self.string(Fact::IssueTitle)?,
            behaviours: self.behaviours()?,
        })
    }
}

/// An issue id or behaviour name: a fact string that also fits the index bound.
fn checked_link_value(key: &str, value: &str) -> Result<String, SpanRejection> {
    if value.len() > MAX_LINK_VALUE_BYTES {
        return Err(SpanRejection::TooLong {
            key: key.to_owned(),
            limit: MAX_LINK_VALUE_BYTES,
        });
    }
    checked_fact_string(key, value)
}

fn checked_fact_string(key: &str, value: &str) -> Result<String, SpanRejection> {
    if value.len() > MAX_FACT_BYTES {
        return Err(SpanRejection::TooLong {
            key: key.to_owned(),
            limit: MAX_FACT_BYTES,
        });
    }
    if value.contains('\0') {
        return Err(SpanRejection::NulCharacter {
            key: key.to_owned(),
        });
    }
    Ok(value.to_owned())
}

/// PostgreSQL text cannot hold NUL; names and messages are kept with it replaced.
fn without_nul(value: &str) -> String {
    value.replace('\0', "\u{FFFD}")
}

/// The attributes as a JSON object, for the raw span row.
pub fn attributes_json(attributes: &[&KeyValue]) -> String {
    let mut object = serde_json::Map::with_capacity(attributes.len());
    for attribute in attributes {
        object
            .entry(without_nul(&attribute.key))
            .or_insert_with(|| any_value_json(attribute.value.as_ref()));
    }
    serde_json::Value::Object(object).to_string()
}

fn any_value_json(value: Option<&AnyValue>) -> serde_json::Value {
    use serde_json::Value as Json;
    match value.and_then(|v| v.value.as_ref()) {
        None => Json::Null,
        Some(Value::StringValue(s)) => Json::String(s.clone()),
        Some(Value::BoolValue(b)) => Json::Bool(*b),
        Some(Value::IntValue(i)) => Json::from(*i),
        Some(Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(Json::Number)
            .unwrap_or_else(|| Json::String(d.to_string())),
        Some(Value::BytesValue(b)) => Json::String(hex::encode(b)),
        // A string-table index only means something inside an OTLP profile.
        Some(Value::StringValueStrindex(index)) => Json::from(*index),
        Some(Value::ArrayValue(a)) => {
            Json::Array(a.values.iter().map(|v| any_value_json(Some(v))).collect())
        }
        Some(Value::KvlistValue(kv)) => {
            let mut object = serde_json::Map::with_capacity(kv.values.len());
            for entry in &kv.values {
                object
                    .entry(entry.key.clone())
                    .or_insert_with(|| any_value_json(entry.value.as_ref()));
            }
            Json::Object(object)
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::ArrayValue;
    use opentelemetry_proto::tonic::trace::v1::ScopeSpans;

    use super::*;

    fn value(v: Value) -> AnyValue {
        AnyValue { value: Some(v) }
    }
    fn s(v: &str) -> AnyValue {
        value(Value::StringValue(v.into()))
    }
    fn kv(key: &str, v: AnyValue) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(v),
            ..Default::default()
        }
    }

    fn span_with(attributes: Vec<KeyValue>) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            start_time_unix_nano: 10,
            end_time_unix_nano: 20,
            attributes,
            ..Default::default()
        }
    }

    /// Converts one span both ways, borrowed and consuming, which must agree.
    fn convert(span: Span, resource: Vec<KeyValue>) -> ConvertedSpans {
        let request = vec![ResourceSpans {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }];
        let borrowed = convert_resource_spans(&request);
        let owned = convert_owned_resource_spans(request);
        assert_eq!(borrowed.accepted, owned.accepted);
        assert_eq!(borrowed.rejected, owned.rejected);
        assert_eq!(borrowed.first_rejection, owned.first_rejection);
        borrowed
    }

    fn facts(attributes: Vec<KeyValue>) -> SpanFacts {
        let converted = convert(span_with(attributes), vec![]);
        assert_eq!(converted.rejected, 0, "{:?}", converted.first_rejection);
        converted.accepted[0].stored.facts.clone()
    }

    fn rejection(attributes: Vec<KeyValue>) -> String {
        let converted = convert(span_with(attributes), vec![]);
        assert_eq!(converted.rejected, 1);
        converted.first_rejection.unwrap_or_default()
    }

    fn string_fact(fact: Fact, f: &SpanFacts) -> Option<String> {
        match fact {
            Fact::UserId => f.user_id.clone(),
            Fact::UserEmail => f.user_email.clone(),
            Fact::SessionId => f.session_id.clone(),
            Fact::Provider => f.provider.clone(),
            Fact::Model => f.model.clone(),
            Fact::Tool => f.tool_name.clone(),
            Fact::IssueId => f.issue_id.clone(),
            Fact::IssueTitle => f.issue_title.clone(),
            _ => None,
        }
    }

    #[test]
    fn every_string_alias_is_read_and_earlier_aliases_win() {
        let string_facts = [
            Fact::UserId,
            Fact::UserEmail,
            Fact::SessionId,
            Fact::Provider,
            Fact::Model,
            Fact::Tool,
        ];
        for (fact, keys) in ALIASES.iter().filter(|(f, _)| string_facts.contains(f)) {
            for (rank, key) in keys.iter().enumerate() {
                let read = facts(vec![kv(key, s("v"))]);
                assert_eq!(string_fact(*fact, &read).as_deref(), Some("v"), "{key}");
                // Every later alias loses to this one, whatever the attribute order.
                let mut attributes: Vec<KeyValue> =
                    keys[rank + 1..].iter().map(|k| kv(k, s("later"))).collect();
                attributes.push(kv(key, s("first")));
                let read = facts(attributes);
                assert_eq!(string_fact(*fact, &read).as_deref(), Some("first"), "{key}");
            }
        }
    }

    #[test]
    fn every_token_alias_is_read_as_int_double_or_string() {
        for (fact, keys) in ALIASES.iter().filter(|(f, _)| {
            matches!(
                f,
                Fact::InputTokens | Fact::OutputTokens | Fact::CachedInputTokens
            )
        }) {
            for key in keys.iter() {
                for v in [
                    value(Value::IntValue(42)),
                    value(Value::DoubleValue(42.0)),
                    s("42"),
                ] {
                    let read = facts(vec![kv(key, v)]);
                    let got = match fact {
                        Fact::InputTokens => read.input_tokens,
                        Fact::OutputTokens => read.output_tokens,
                        _ => read.cached_input_tokens,
                    };
                    assert_eq!(got, Some(42), "{key}");
                }
            }
        }
    }

    #[test]
    fn every_cost_alias_is_read_in_nano_usd() {
        for key in [
            "gen_ai.usage.total_cost",
            "gen_ai.usage.cost",
            "llm.cost.total",
        ] {
            for v in [value(Value::DoubleValue(0.000_000_123)), s("0.000000123")] {
                assert_eq!(facts(vec![kv(key, v)]).cost_nano, Some(123), "{key}");
            }
            assert_eq!(
                facts(vec![kv(key, value(Value::IntValue(2)))]).cost_nano,
                Some(2_000_000_000)
            );
        }
        for input in ["gen_ai.usage.input_cost", "llm.cost.prompt"] {
            for output in ["gen_ai.usage.output_cost", "llm.cost.completion"] {
                let read = facts(vec![
                    kv(input, value(Value::DoubleValue(0.25))),
                    kv(output, s("0.5")),
                ]);
                assert_eq!(read.cost_nano, Some(750_000_000), "{input} + {output}");
            }
            assert_eq!(
                facts(vec![kv(input, value(Value::DoubleValue(0.25)))]).cost_nano,
                Some(250_000_000)
            );
        }
        // A total wins over its parts.
        let read = facts(vec![
            kv("gen_ai.usage.input_cost", value(Value::DoubleValue(1.0))),
            kv("llm.cost.total", value(Value::DoubleValue(0.5))),
        ]);
        assert_eq!(read.cost_nano, Some(500_000_000));
    }

    #[test]
    fn ids_given_as_int_are_their_decimal_string() {
        let read = facts(vec![
            kv("user.id", value(Value::IntValue(1234))),
            kv("session.id", value(Value::IntValue(-7))),
        ]);
        assert_eq!(read.user_id.as_deref(), Some("1234"));
        assert_eq!(read.session_id.as_deref(), Some("-7"));
    }

    #[test]
    fn empty_strings_count_as_absent() {
        let read = facts(vec![kv("user.id", s("")), kv("enduser.id", s("u2"))]);
        assert_eq!(read.user_id.as_deref(), Some("u2"));
        let read = facts(vec![kv("user.id", s(""))]);
        assert_eq!(read.user_id, None);
    }

    #[test]
    fn span_attributes_win_over_resource_attributes_per_fact() {
        let converted = convert(
            span_with(vec![kv("enduser.id", s("from-span"))]),
            vec![
                kv("user.id", s("from-resource")),
                kv("session.id", s("resource-session")),
            ],
        );
        let f = &converted.accepted[0].stored.facts;
        // A later alias on the span beats the first alias on the resource.
        assert_eq!(f.user_id.as_deref(), Some("from-span"));
        // A fact absent from the span is read from the resource.
        assert_eq!(f.session_id.as_deref(), Some("resource-session"));
    }

    #[test]
    fn llm_calls_are_spans_with_a_model_or_an_llm_operation() {
        assert!(facts(vec![kv("llm.model_name", s("m"))]).is_llm_call);
        for op in LLM_OPERATIONS {
            assert!(facts(vec![kv("gen_ai.operation.name", s(op))]).is_llm_call);
        }
        assert!(!facts(vec![kv("gen_ai.operation.name", s("execute_tool"))]).is_llm_call);
        assert!(!facts(vec![kv("gen_ai.system", s("openai"))]).is_llm_call);
    }

    #[test]
    fn issues_and_behaviours_are_read() {
        let read = facts(vec![
            kv("userlens.issue.id", s("iss-1")),
            kv("userlens.issue.title", s("Hallucinated refund policy")),
            kv(
                "userlens.behaviour",
                value(Value::ArrayValue(ArrayValue {
                    values: vec![s("rephrased"), s("angry"), s("rephrased")],
                })),
            ),
        ]);
        assert_eq!(read.issue_id.as_deref(), Some("iss-1"));
        assert_eq!(
            read.issue_title.as_deref(),
            Some("Hallucinated refund policy")
        );
        assert_eq!(read.behaviours, vec!["angry", "rephrased"]);
        assert_eq!(
            facts(vec![kv("userlens.behaviour", s("angry"))]).behaviours,
            vec!["angry"]
        );
    }

    #[test]
    fn bad_spans_are_rejected_with_a_reason() {
        assert!(rejection(vec![kv("user.id", value(Value::BoolValue(true)))]).contains("user.id"));
        assert!(
            rejection(vec![kv("gen_ai.request.model", value(Value::IntValue(4)))])
                .contains("wrong type")
        );
        assert!(
            rejection(vec![kv(
                "gen_ai.usage.cost",
                value(Value::DoubleValue(f64::NAN))
            )])
            .contains("finite")
        );
        assert!(
            rejection(vec![kv(
                "gen_ai.usage.cost",
                value(Value::DoubleValue(f64::INFINITY))
            )])
            .contains("finite")
        );
        assert!(
            rejection(vec![kv(
                "gen_ai.usage.cost",
                value(Value::DoubleValue(-0.5))
            )])
            .contains("non-negative")
        );
        assert!(rejection(vec![kv("gen_ai.usage.input_tokens", s("many"))]).contains("numeric"));
        assert!(
            rejection(vec![kv("user.id", s(&"x".repeat(MAX_FACT_BYTES + 1)))]).contains("longer")
        );
        assert!(rejection(vec![kv("user.id", s("a\0b"))]).contains("NUL"));

        let mut bad = span_with(vec![]);
        bad.trace_id = vec![1; 15];
        assert!(
            convert(bad, vec![])
                .first_rejection
                .unwrap_or_default()
                .contains("trace_id")
        );
        let mut bad = span_with(vec![]);
        bad.span_id = vec![1; 7];
        assert!(
            convert(bad, vec![])
                .first_rejection
                .unwrap_or_default()
                .contains("span_id")
        );
        let mut bad = span_with(vec![]);
        bad.end_time_unix_nano = 5;
        assert!(
            convert(bad, vec![])
                .first_rejection
                .unwrap_or_default()
                .contains("before")
        );
        let mut bad = span_with(vec![]);
        bad.start_time_unix_nano = u64::MAX;
        bad.end_time_unix_nano = u64::MAX;
        assert!(
            convert(bad, vec![])
                .first_rejection
                .unwrap_or_default()
                .contains("2262")
        );
    }

    #[test]
    fn unread_attributes_of_any_type_are_kept_and_ignored() {
        let read = facts(vec![kv("custom", value(Value::BoolValue(true)))]);
        assert_eq!(read, SpanFacts::default());
        let converted = convert(
            span_with(vec![kv("custom", value(Value::DoubleValue(f64::NAN)))]),
            vec![],
        );
        assert_eq!(converted.accepted[0].attributes_json, r#"{"custom":"NaN"}"#);
    }

    #[test]
    fn attributes_past_the_count_limit_are_dropped_and_counted() {
        let mut attributes: Vec<KeyValue> =
            (0..200).map(|i| kv(&format!("k{i}"), s("v"))).collect();
        // A fact alias after the limit is still kept and read.
        attributes.push(kv("user.id", s("u1")));
        let mut span = span_with(attributes);
        span.dropped_attributes_count = 3;
        let converted = convert(span, vec![]);
        let record = &converted.accepted[0];
        let stored: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&record.attributes_json).expect("json");
        assert_eq!(stored.len(), MAX_ATTRIBUTES + 1);
        assert!(stored.contains_key("k127") && !stored.contains_key("k128"));
        assert_eq!(record.dropped_attributes_count, 200 - 128 + 3);
        assert_eq!(record.stored.facts.user_id.as_deref(), Some("u1"));
    }

    #[test]
    fn over_long_keys_and_values_are_dropped_unless_read_as_facts() {
        let converted = convert(
            span_with(vec![
                kv(&"k".repeat(MAX_ATTRIBUTE_KEY_BYTES + 1), s("v")),
                kv("prompt", s(&"p".repeat(MAX_ATTRIBUTE_VALUE_BYTES + 1))),
                kv(
                    "nested",
                    value(Value::ArrayValue(ArrayValue {
                        values: vec![s(&"p".repeat(MAX_ATTRIBUTE_VALUE_BYTES / 2)); 3],
                    })),
                ),
                kv("prompt.ok", s(&"p".repeat(MAX_ATTRIBUTE_VALUE_BYTES))),
            ]),
            vec![],
        );
        let record = &converted.accepted[0];
        assert_eq!(record.dropped_attributes_count, 3);
        assert!(record.attributes_json.contains("prompt.ok"));
        assert!(
            rejection(vec![
                kv("gen_ai.prompt.ignored", s("x")),
                kv("user.id", s(&"u".repeat(MAX_ATTRIBUTE_VALUE_BYTES + 1)))
            ])
            .contains("user.id is longer")
        );
    }

    #[test]
    fn resource_record_is_shared_and_limited() {
        let mut resource: Vec<KeyValue> = (0..150).map(|i| kv(&format!("r{i}"), s("v"))).collect();
        resource.push(kv("service.name", s("svc")));
        let spans: Vec<Span> = (1..=3u8)
            .map(|i| {
                let mut span = span_with(vec![]);
                span.span_id = vec![i; 8];
                span
            })
            .collect();
        let converted = convert_resource_spans(&[ResourceSpans {
            resource: Some(Resource {
                attributes: resource,
                dropped_attributes_count: 1,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }]);
        assert_eq!(converted.accepted.len(), 3);
        let first = &converted.accepted[0].resource;
        assert!(
            converted
                .accepted
                .iter()
                .all(|r| Arc::ptr_eq(&r.resource, first))
        );
        assert_eq!(first.dropped_attributes_count, 150 + 1 - 128 + 1);
        let stored: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&first.attributes_json).expect("json");
        assert_eq!(stored.len(), MAX_ATTRIBUTES);
        assert_eq!(
            **first,
            ResourceRecord::new(
                first.attributes_json.clone(),
                first.dropped_attributes_count
            )
        );
    }

    #[test]
    fn token_counts_must_be_whole_numbers() {
        for v in [value(Value::DoubleValue(2.5)), s("2.5"), s("0.1")] {
            assert!(rejection(vec![kv("gen_ai.usage.input_tokens", v)]).contains("whole number"),);
        }
        assert_eq!(
            facts(vec![kv(
                "gen_ai.usage.output_tokens",
                value(Value::DoubleValue(3.0))
            )])
            .output_tokens,
            Some(3)
        );
    }

    #[test]
    fn input_plus_output_cost_obeys_the_per_span_cap() {
        let read = facts(vec![
            kv("gen_ai.usage.input_cost", value(Value::DoubleValue(5.0e5))),
            kv("gen_ai.usage.output_cost", value(Value::DoubleValue(5.0e5))),
        ]);
        assert_eq!(read.cost_nano, Some(MAX_SPAN_COST_NANO));
        assert!(
            rejection(vec![
                kv("gen_ai.usage.input_cost", value(Value::DoubleValue(6.0e5))),
                kv("gen_ai.usage.output_cost", value(Value::DoubleValue(6.0e5))),
            ])
            .contains("input + output cost")
        );
    }

    #[test]
    fn behaviours_and_issue_ids_are_bounded() {
        let many = |n: usize| {
            value(Value::ArrayValue(ArrayValue {
                values: (0..n).map(|i| s(&format!("b{i}"))).collect(),
            }))
        };
        assert_eq!(
            facts(vec![kv(
                "userlens.behaviour",
                many(MAX_BEHAVIOURS_PER_SPAN)
            )])
            .behaviours
            .len(),
            MAX_BEHAVIOURS_PER_SPAN
        );
        assert!(
            rejection(vec![kv("userlens.behaviour", many(200))])
                .contains("more than 64 behaviours")
        );
        let long = "b".repeat(MAX_LINK_VALUE_BYTES + 1);
        assert!(rejection(vec![kv("userlens.behaviour", s(&long))]).contains("longer than 1000"));
        assert!(rejection(vec![kv("userlens.issue.id", s(&long))]).contains("longer than 1000"));
        let at_limit = "b".repeat(MAX_LINK_VALUE_BYTES);
        assert_eq!(
            facts(vec![kv("userlens.issue.id", s(&at_limit))])
                .issue_id
                .as_deref(),
            Some(at_limit.as_str())
        );
    }
}
