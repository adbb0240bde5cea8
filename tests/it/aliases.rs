//! Every attribute alias of SPEC §3.1 is read end to end: sent over OTLP, stored, derived
//! into the trace row, on every backend. The alias lists are written out here from the
//! specification, independently of the ingest code.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use userlens_storage::{TraceRow, read};
use userlens_tests::for_each_backend;
use userlens_tests::otlp::{
    double, int, kv, request, resource_spans, span, span_id, string, trace_id, with_attributes,
};
use userlens_tests::stack::{CacheChoice, Stack};

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
const EMAIL: &[&str] = &["user.email", "enduser.email", "langfuse.user.email"];
const SESSION: &[&str] = &[
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

/// One case: attributes on a single root span, and a check of the derived trace.
struct Case {
    attributes: Vec<KeyValue>,
    resource: Vec<KeyValue>,
    check: Box<dyn Fn(&TraceRow) -> bool>,
    what: String,
}

fn llm(mut attributes: Vec<KeyValue>) -> Vec<KeyValue> {
    attributes.push(kv("gen_ai.operation.name", string("chat")));
    attributes
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |what: String,
                   attributes: Vec<KeyValue>,
                   resource: Vec<KeyValue>,
                   check: Box<dyn Fn(&TraceRow) -> bool>| {
        cases.push(Case {
            attributes,
            resource,
            check,
            what,
        });
    };
    for key in USER_ID {
        add(
            format!("{key} (string)"),
            vec![kv(key, string("u-str"))],
            vec![],
            Box::new(|t| t.user_id.as_deref() == Some("u-str")),
        );
        add(
            format!("{key} (int)"),
            vec![kv(key, int(9001))],
            vec![],
            Box::new(|t| t.user_id.as_deref() == Some("9001")),
        );
        add(
            format!("{key} (resource)"),
            vec![],
            vec![kv(key, string("u-res"))],
            Box::new(|t| t.user_id.as_deref() == Some("u-res")),
        );
    }
    for key in EMAIL {
        add(
            key.to_string(),
            vec![kv(key, string("e@x.io"))],
            vec![],
            Box::new(|t| t.email.as_deref() == Some("e@x.io")),
        );
    }
    for key in SESSION {
        add(
            format!("{key} (string)"),
            vec![kv(key, string("s-1"))],
            vec![],
            Box::new(|t| t.session_id == "s-1"),
        );
        add(
            format!("{key} (int)"),
            vec![kv(key, int(77))],
            vec![],
            Box::new(|t| t.session_id == "77"),
        );
    }
    for key in PROVIDER {
        add(
            key.to_string(),
            llm(vec![kv(key, string("prov"))]),
            vec![],
            Box::new(|t| {
                t.models.len() == 1
                    && t.models[0].provider.as_deref() == Some("prov")
                    && t.models[0].model.is_none()
            }),
        );
    }
    for key in MODEL {
        // A model alone makes the span an LLM call.
        add(
            key.to_string(),
            vec![kv(key, string("m-1"))],
            vec![],
            Box::new(|t| {
                t.models.len() == 1
                    && t.models[0].model.as_deref() == Some("m-1")
                    && t.models[0].calls == 1
            }),
        );
    }
    for (keys, pick) in [
        (
            INPUT_TOKENS,
            (|t: &TraceRow| t.input_tokens) as fn(&TraceRow) -> i64,
        ),
        (OUTPUT_TOKENS, |t: &TraceRow| t.output_tokens),
        (CACHED_TOKENS, |t: &TraceRow| t.cached_input_tokens),
    ] {
        for key in keys {
            for (form, value) in [
                ("int", int(321)),
                ("double", double(321.0)),
                ("string", string("321")),
            ] {
                add(
                    format!("{key} ({form})"),
                    llm(vec![kv(key, value)]),
                    vec![],
                    Box::new(move |t| pick(t) == 321),
                );
            }
        }
    }
    for key in TOTAL_COST {
        for (form, value) in [
            ("int", int(3)),
            ("double", double(0.000_000_123)),
            ("string", string("0.000000123")),
        ] {
            let expected = if form == "int" { 3_000_000_000 } else { 123 };
            add(
                format!("{key} ({form})"),
                llm(vec![kv(key, value)]),
                vec![],
                Box::new(move |t| t.cost_nano == expected),
            );
        }
    }
    for input in INPUT_COST {
        for output in OUTPUT_COST {
            add(
                format!("{input} + {output}"),
                llm(vec![kv(input, double(0.25)), kv(output, string("0.5"))]),
                vec![],
                Box::new(|t| t.cost_nano == 750_000_000),
            );
        }
    }
    for key in TOOL {
        add(
            key.to_string(),
            vec![kv(key, string("search"))],
            vec![],
            Box::new(|t| t.tool_calls == 1 && t.tools.len() == 1 && t.tools[0].tool == "search"),
        );
    }
    add(
        "userlens.issue.id + title, userlens.behaviour".into(),
        vec![
            kv("userlens.issue.id", string("iss")),
            kv("userlens.issue.title", string("Title")),
            kv(
                "userlens.behaviour",
                userlens_tests::otlp::strings(&["b2", "b1"]),
            ),
        ],
        vec![],
        Box::new(|t| {
            t.issues.len() == 1
                && t.issues[0].title.as_deref() == Some("Title")
                && t.behaviours == ["b1", "b2"]
        }),
    );
    cases
}

#[tokio::test(flavor = "multi_thread")]
async fn every_alias_is_read_end_to_end() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::InProcess).await;
        let cases = cases();
        let all: Vec<_> = cases
            .iter()
            .enumerate()
            .map(|(i, case)| {
                let n = i as u64 + 1;
                let root = with_attributes(
                    span(trace_id(n), span_id(n), None, 1_000 * n, 1_000 * n + 500),
                    case.attributes.clone(),
                );
                resource_spans(case.resource.clone(), vec![root])
            })
            .collect();
        let response = stack.export(request(all)).await;
        assert_eq!(response.partial_success, None);
        let traces = read::traces_changed_since(&database.db, stack.project_id, -1)
            .await
            .expect("traces");
        assert_eq!(traces.len(), cases.len());
        for (i, case) in cases.iter().enumerate() {
            let trace = traces
                .iter()
                .find(|t| t.trace_id == trace_id(i as u64 + 1))
                .expect("trace stored");
            assert!((case.check)(trace), "{} not read: {trace:?}", case.what);
        }
        stack.stop().await;
    });
}
