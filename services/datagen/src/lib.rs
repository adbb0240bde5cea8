//! Synthetic LLM-application traces, deterministic per (seed, trace index) so any trace can
//! be produced on its own and a dataset is the same on every run.
//!
//! The shape follows real agent traffic: users with Zipf-like activity (the busiest user
//! makes ≈ 9 % of traces at 50k users, the median user a handful), ≈ 8 % anonymous traces,
//! sessions of a few traces close together in time, a root span carrying the user, email
//! and session, 1–3 LLM calls (sometimes under a wrapper span that repeats their usage), 0–2
//! tool calls, 5–12 % errored traces, occasional issues and behaviours.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, status::StatusCode,
};

const NS_PER_SECOND: i64 = 1_000_000_000;
const NS_PER_DAY: i64 = 86_400 * NS_PER_SECOND;

/// Models with their provider and USD per input / output token.
const MODELS: &[(&str, &str, f64, f64)] = &[
    ("gpt-4o", "openai", 2.5e-6, 10e-6),
    ("gpt-4o-mini", "openai", 0.15e-6, 0.6e-6),
    ("claude-sonnet-4", "anthropic", 3e-6, 15e-6),
    ("claude-haiku-3.5", "anthropic", 0.8e-6, 4e-6),
    ("gemini-2.0-flash", "gcp.gemini", 0.1e-6, 0.4e-6),
];
const TOOLS: &[&str] = &[
    "web_search",
    "lookup_order",
    "send_email",
    "calculator",
    "retrieve_docs",
];
const ISSUES: &[(&str, &str)] = &[
    ("iss-refund-policy", "Hallucinated refund policy"),
    ("iss-slow-search", "Search tool times out"),
    ("iss-wrong-language", "Answers in the wrong language"),
];
const BEHAVIOURS: &[&str] = &[
    "rephrased-question",
    "asked-for-human",
    "frustrated",
    "thanked",
];

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetSpec {
    pub traces: u64,
    pub users: u64,
    /// Traces spread over this many days before `end_ns`.
    pub days: u32,
    pub seed: u64,
    /// End of the time span (Unix ns).
    pub end_ns: i64,
}

impl DatasetSpec {
    pub fn new(traces: u64, users: u64, days: u32, seed: u64, end_ns: i64) -> Self {
        Self {
            traces,
            users: users.max(1),
            days: days.max(1),
            seed,
            end_ns,
        }
    }
}

/// splitmix64: a tiny, well-mixed deterministic hash.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Deterministic random numbers for one trace.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 = mix(self.0);
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The generator: cumulative Zipf weights over users, built once.
pub struct Dataset {
    spec: DatasetSpec,
    cumulative: Vec<f64>,
}

impl Dataset {
    pub fn new(spec: DatasetSpec) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=spec.users)
            .map(|rank| {
                total += 1.0 / rank as f64;
                total
            })
            .collect::<Vec<_>>();
        let cumulative = cumulative.into_iter().map(|c| c / total).collect();
        Self { spec, cumulative }
    }

    pub fn spec(&self) -> DatasetSpec {
        self.spec
    }

    fn pick_user(&self, unit: f64) -> u64 {
        self.cumulative.partition_point(|&c| c < unit) as u64
    }

    /// The user's expected share of traces → how many sessions they have.
    fn sessions_of(&self, user: u64) -> u64 {
        let index = user as usize;
        let share = self.cumulative[index]
            - if index == 0 {
                0.0
            } else {
                self.cumulative[index - 1]
            };
        ((share * self.spec.traces as f64) / 4.0).ceil().max(1.0) as u64
    }

    /// The spans of trace `index`, as one `ResourceSpans` (service resource attributes).
    pub fn trace(&self, index: u64) -> ResourceSpans {
        let spec = &self.spec;
        let mut draws = Draws(mix(spec.seed ^ mix(index)));
        let trace_id = {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&mix(spec.seed ^ index.wrapping_mul(31)).to_be_bytes());
            id[8..].copy_from_slice(&index.to_be_bytes());
            id[0] |= 0x10;
            id
        };
        let span_id = |n: u64| {
            let mut id = mix((index.wrapping_mul(1_000) + n) ^ spec.seed).to_be_bytes();
            id[0] |= 0x01;
            id
        };
        let window_ns = i64::from(spec.days) * NS_PER_DAY;
        let anonymous = draws.chance(8);
        let user = (!anonymous).then(|| self.pick_user(draws.unit()));
        let (session_id, start_ns) = match user {
            Some(user) => {
                let session = draws.below(self.sessions_of(user));
                let mut session_draws = Draws(mix(spec.seed ^ mix(user) ^ mix(session + 7)));
                let session_start = spec.end_ns - window_ns
                    + (session_draws.unit() * (window_ns - 3_600 * NS_PER_SECOND) as f64) as i64;
                let offset = (draws.unit() * (30 * 60 * NS_PER_SECOND) as f64) as i64;
                (
                    Some(format!("sess-{user}-{session}")),
                    session_start + offset,
                )
            }
            None => (
                draws
                    .chance(50)
                    .then(|| format!("anon-{}", draws.below(1_000_000))),
                spec.end_ns - window_ns
                    + (draws.unit() * (window_ns - NS_PER_SECOND) as f64) as i64,
            ),
        };

        let errored_percent = 5 + (index % 8);
        let mut spans = Vec::new();
        let mut cursor = start_ns;
        let root_id = span_id(0);
        let mut root_attributes = vec![];
        if let Some(user) = user {
            root_attributes.push(string("user.id", &format!("user-{user:05}")));
            // Every 40th user changed their email half-way through the window.
            let email = if user % 40 == 0 && start_ns > spec.end_ns - window_ns / 2 {
                format!("user-{user:05}@new.example.com")
            } else {
                format!("user-{user:05}@example.com")
            };
            root_attributes.push(string("user.email", &email));
        }
        if let Some(session_id) = &session_id {
            root_attributes.push(string("session.id", session_id));
        }
        if draws.chance(4) {
            let (id, title) = ISSUES[draws.below(ISSUES.len() as u64) as usize];
            root_attributes.push(string("userlens.issue.id", id));
            root_attributes.push(string("userlens.issue.title", title));
        }
        if draws.chance(6) {
            let behaviour = BEHAVIOURS[draws.below(BEHAVIOURS.len() as u64) as usize];
            root_attributes.push(KeyValue {
                key: "userlens.behaviour".into(),
                value: Some(AnyValue {
                    value: Some(Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(Value::StringValue(behaviour.into())),
                        }],
                    })),
                }),
                ..Default::default()
            });
        }

        let llm_calls = 1 + draws.below(3);
        let tool_calls = draws.below(3);
        let wrapper = draws.chance(20);
        let llm_parent = if wrapper { span_id(1) } else { root_id };
        let error_at = draws
            .chance(errored_percent)
            .then(|| draws.below(llm_calls + tool_calls));
        let mut wrapper_usage = (0i64, 0i64, 0.0f64, MODELS[0]);
        for call in 0..(llm_calls + tool_calls) {
            let n = call + 2;
            let duration = (200 + draws.below(4_000)) as i64 * 1_000_000;
            let start = cursor + 5_000_000;
            cursor = start + duration;
            let errored = error_at == Some(call);
            if call < llm_calls {
                let model = MODELS[draws.below(MODELS.len() as u64) as usize];
                let input = 200 + draws.below(3_000) as i64;
                let output = 20 + draws.below(800) as i64;
                let cached = if draws.chance(30) { input / 2 } else { 0 };
                let cost = input as f64 * model.2 + output as f64 * model.3;
                wrapper_usage = (
                    wrapper_usage.0 + input,
                    wrapper_usage.1 + output,
                    wrapper_usage.2 + cost,
                    model,
                );
                spans.push(span(
                    trace_id,
                    span_id(n),
                    Some(llm_parent),
                    &format!("chat {}", model.0),
                    start,
                    cursor,
                    errored,
                    vec![
                        string("gen_ai.operation.name", "chat"),
                        string("gen_ai.request.model", model.0),
                        string("gen_ai.system", model.1),
                        int("gen_ai.usage.input_tokens", input),
                        int("gen_ai.usage.output_tokens", output),
                        int("gen_ai.usage.cache_read.input_tokens", cached),
                        double("gen_ai.usage.cost", cost),
                    ],
                ));
            } else {
                let tool = TOOLS[draws.below(TOOLS.len() as u64) as usize];
                spans.push(span(
                    trace_id,
                    span_id(n),
                    Some(root_id),
                    &format!("execute_tool {tool}"),
                    start,
                    cursor,
                    errored,
                    vec![
                        string("gen_ai.operation.name", "execute_tool"),
                        string("gen_ai.tool.name", tool),
                    ],
                ));
            }
        }
        let end_ns = cursor + 2_000_000;
        if wrapper {
            // An SDK wrapper that repeats its children's model and usage: it must not count twice.
            let (input, output, cost, model) = wrapper_usage;
            spans.push(span(
                trace_id,
                span_id(1),
                Some(root_id),
                "llm.generate",
                start_ns + 1_000_000,
                end_ns - 1_000_000,
                false,
                vec![
                    string("gen_ai.request.model", model.0),
                    string("gen_ai.system", model.1),
                    int("gen_ai.usage.input_tokens", input),
                    int("gen_ai.usage.output_tokens", output),
                    double("gen_ai.usage.cost", cost),
                ],
            ));
        }
        spans.insert(
            0,
            span(
                trace_id,
                root_id,
                None,
                "agent.turn",
                start_ns,
                end_ns,
                false,
                root_attributes,
            ),
        );
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    string("service.name", "support-agent"),
                    string("deployment.environment", "demo"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// Traces `range` as one OTLP export request.
    pub fn request(&self, range: std::ops::Range<u64>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: range.map(|i| self.trace(i)).collect(),
        }
    }
}

/// Spans in an export request.
pub fn span_count(request: &ExportTraceServiceRequest) -> u64 {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum()
}

#[allow(clippy::too_many_arguments)]
fn span(
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: &str,
    start_ns: i64,
    end_ns: i64,
    errored: bool,
    attributes: Vec<KeyValue>,
) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: name.into(),
        kind: 1,
        start_time_unix_nano: u64::try_from(start_ns).unwrap_or(0),
        end_time_unix_nano: u64::try_from(end_ns).unwrap_or(0),
        attributes,
        status: errored.then(|| Status {
            code: StatusCode::Error as i32,
            message: "upstream failed".into(),
        }),
        ..Default::default()
    }
}

fn string(key: &str, value: &str) -> KeyValue {
    attribute(key, Value::StringValue(value.into()))
}

fn int(key: &str, value: i64) -> KeyValue {
    attribute(key, Value::IntValue(value))
}

fn double(key: &str, value: f64) -> KeyValue {
    attribute(key, Value::DoubleValue(value))
}

fn attribute(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_index_gives_the_same_trace() {
        let dataset = Dataset::new(DatasetSpec::new(
            1_000,
            100,
            30,
            42,
            1_800_000_000 * NS_PER_SECOND,
        ));
        assert_eq!(dataset.trace(17), dataset.trace(17));
        assert_ne!(dataset.trace(17), dataset.trace(18));
    }

    #[test]
    fn activity_is_skewed_and_some_traces_are_anonymous() {
        let spec = DatasetSpec::new(20_000, 1_000, 30, 7, 1_800_000_000 * NS_PER_SECOND);
        let dataset = Dataset::new(spec);
        let mut per_user = std::collections::HashMap::new();
        let mut anonymous = 0;
        for i in 0..spec.traces {
            let trace = dataset.trace(i);
            let root = &trace.scope_spans[0].spans[0];
            assert!(root.parent_span_id.is_empty());
            assert!(root.start_time_unix_nano as i64 >= spec.end_ns - 30 * NS_PER_DAY);
            assert!(root.end_time_unix_nano as i64 <= spec.end_ns + NS_PER_DAY);
            match root.attributes.iter().find(|a| a.key == "user.id") {
                Some(user) => *per_user.entry(format!("{:?}", user.value)).or_insert(0u64) += 1,
                None => anonymous += 1,
            }
        }
        let top = per_user.values().copied().max().unwrap_or(0);
        assert!(anonymous > 1_000 && anonymous < 2_200, "{anonymous}");
        assert!(top > 1_000, "busiest user has {top} traces");
    }
}
