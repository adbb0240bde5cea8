//! Every figure of SPEC §4, read back over the users-query gRPC API from one hand-built
//! fixture that went through the real ingest path (split, root-last, duplicated batches).
//!
//! Every expected value below is a literal counted by hand from the fixture table; the
//! comment next to it says how. Nothing here recomputes a figure the way the engine does.
//!
//! Floats: a cost that is a sum or a single value is compared as the exact `f64` of its
//! integer nano-USD (`n as f64 / 1e9`, written `nano(n)`); a mean (an average, the median
//! of an even count, the mean of averages) is compared within 1e-12 (`near`). Ratios of
//! two counts are compared exactly (`a / b` in f64).
//!
//! The fixture, all in March 2026 (UTC). "sN" = session id, "hexN" = trace N's id in
//! lowercase hex (no session id given). Costs in nano-USD. Leaf LLM calls only.
//!
//! | trace | time (start → end)              | user      | email on trace      | session  | errored            | leaf LLM calls (model/provider in/out/cached cost) | tools                    | issues / behaviours |
//! |-------|---------------------------------|-----------|---------------------|----------|--------------------|-----------------------------------------------------|--------------------------|---------------------|
//! | T14   | 01 00:00:00.000 → 00:00:01.000  | o'brien   | –                   | s-o1     | no                 | gpt-4o/openai 30/1/0 100_000_000; gpt-4o/openai 10/1/0 200_000_000 |                          |                     |
//! | T1    | 01 09:00:00.000 → 09:00:02.000  | alice     | z.alice@old.example | s-a1     | no                 | gpt-4o/openai 100/50/0 123_000                       |                          | beh retry           |
//! | T18   | 02 10:05:00.000 → 10:05:01.000  | (anon)    | –                   | s-anon   | yes (root)         |                                                     |                          |                     |
//! | T6    | 02 10:30:00.000 → 10:30:04.000  | bob (late child only) | bob@x.io (child) | s-shared | no          | claude-3-5-sonnet/anthropic 1000/200/400 1_001_000   | search                   |                     |
//! | T2    | 02 11:00:00.000 → 11:00:05.000  | alice     | z.alice@old.example | s-a1     | yes (child tool)   | gpt-4o/openai 200/80/30 456_000                      | search (errored)         | ISS-1 "Slow answer" |
//! | T10   | 02 12:00:00.000 → 12:00:01.000  | carol     | carol\ops@x.io      | s-shared | no                 | claude-3-5-sonnet/anthropic 500/100/0 321_000        |                          |                     |
//! | T7    | 03 08:00:00.000 → 08:00:02.000  | bob       | bob@x.io            | s-b1     | yes (child LLM)    | gpt-4o-mini/openai 50/25/0 33_000                    |                          | ISS-2 "Hallucination", beh frustrated |
//! | T20   | 03 08:30:00.000 → 08:30:01.000  | (anon)    | –                   | s-b1     | no                 |                                                     |                          |                     |
//! | T15   | 03 09:15:00.000 → 09:15:02.000  | MÜLLER    | hm@x.de             | s-m1     | no                 | gpt-4o/openai 120/60/0 300_000 (input+output cost)   |                          |                     |
//! | T3    | 03 14:00:00.000 → 14:00:01.000  | alice     | –                   | s-a2     | no                 | (no model: op chat)/anthropic 10/5/0 7_000           |                          | ISS-0 (no title), beh abandoned |
//! | T19   | 03 15:00:00.000 → 15:00:01.000  | (anon)    | –                   | hex19    | no                 | gpt-4o/openai 9/9/0 999_000                          |                          |                     |
//! | T12   | 03 20:00:00.000 → 20:00:10.000  | 100%_user | pct@x.io            | hex12    | no                 | gpt-4o/openai 1/1/0 1                                |                          |                     |
//! | T13   | 03 20:00:00.000 → 20:00:00.250  | 100%_user | –                   | hex13    | yes (root)         |                                                     |                          |                     |
//! | T8    | 04 05:43:10.000 → 05:43:11.000  | bob       | bob@x.io            | s-b1     | no                 | gpt-4o/openai 10/10/0 10_001                         |                          | ISS-1 "Slow answers (p95)" |
//! |       | (its LLM child arrives first and says user mallory, m@evil.io, s-wrong: the root wins) | | | | | | | |
//! | T9    | 04 05:43:10.001 → 05:43:10.601  | bob       | –                   | s-b2     | no                 | llama-3/– 5/5/0 0; gpt-4o/– 7/3/0 2_000              |                          | ISS-2 (no title)    |
//! | T16   | 04 12:00:00.000 → 12:00:01.000  | MÜLLER    | –                   | s-m1     | yes (child tool)   |                                                     | browse (errored)         | beh abandoned       |
//! | T4    | 05 16:00:00.000 → 16:00:03.000  | alice     | alice@new.example   | s-a3     | no                 | gpt-4o/openai 100/40/0 263_000; gpt-4o-mini/openai 200/80/0 526_000 (wrapper root repeats 300/120 789_000) | | ISS-1 (no title), beh retry+frustrated |
//! | T17   | 05 18:00:00.000 → 18:00:04.000  | MÜLLER (resource) | hm@x.de (resource) | s-m2 | no             | claude-3-5-sonnet/anthropic 80/40/20 45_500          |                          |                     |
//! | T5    | 06 10:00:00.000 → 10:00:00.500  | alice     | –                   | s-a3     | no                 |                                                     | calculator ×2            | ISS-3 "Tool loop" (child says "Loop (child)"), beh frustrated |
//! | T11   | 07 23:59:59.999 → 08 00:00:00.500 | carol   | –                   | s-c1     | yes (child tool)   |                                                     | search (errored), browse |                     |
//!
//! Ranges: R1 = [03-01 00:00, 03-08 00:00) holds all 20 traces. R2 = [03-02 10:17:23.456,
//! 03-04 05:43:10.001) holds T6 T2 T10 T7 T20 T15 T3 T19 T12 T13 T8 (11 traces): T18 is
//! before `from` (in R2's first hourly bucket) and T9 starts exactly at `to`.
//!
//! Arrival (`ingest_fixture`): T6 in three calls (late child with the user, twice; LLM
//! child; root last), T2 children before its root (and the root again at the end), T4 in
//! three calls with the wrapper root last (the middle one twice), T8's child long before
//! its root, the first batch (T14, T1) twice.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost_types::Timestamp;
use tonic::{Code, Request};
use userlens_proto::query::v1::{
    Breakdowns, CostStats, GetBreakdownsRequest, GetUserDetailRequest, GetUsersOverviewRequest,
    ListSessionsRequest, ListSessionsResponse, ListUsersRequest, ListUsersResponse, OrderDirection,
    TimeRange, TokenUsage, UserDetail, UserOrderField, UserRow, UsersOverview,
};
use userlens_tests::for_each_backend;
use userlens_tests::otlp::{
    double, errored, int, kv, request, resource_spans, span, span_id, string, strings, trace_id,
    with_attributes,
};
use userlens_tests::stack::{CacheChoice, Stack};
use userlens_users_query::convert::ns_to_timestamp as ts;

const NS: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
/// 2026-03-01T00:00:00Z.
const MARCH_1: i64 = 1_772_323_200 * NS;
const DAY_NS: i64 = 86_400 * NS;

/// 2026-03-`day` hh:mm:ss.mmm UTC, in Unix nanoseconds.
const fn at(day: i64, h: i64, m: i64, s: i64, ms: i64) -> i64 {
    MARCH_1 + (day - 1) * DAY_NS + ((h * 60 + m) * 60 + s) * NS + ms * MS
}

/// R1: everything.
const R1_FROM: i64 = at(1, 0, 0, 0, 0);
const R1_TO: i64 = at(8, 0, 0, 0, 0);
/// R2: narrower, unaligned ends.
const R2_FROM: i64 = at(2, 10, 17, 23, 456);
const R2_TO: i64 = at(4, 5, 43, 10, 1);

fn range(from_ns: i64, to_ns: i64) -> Option<TimeRange> {
    Some(TimeRange {
        from: Some(ts(from_ns)),
        to: Some(ts(to_ns)),
    })
}

/// The exact f64 of an integer nano-USD amount.
fn nano(n: i64) -> f64 {
    n as f64 / 1e9
}

#[track_caller]
fn near(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= 1e-12,
        "{what}: expected {expected:e} (within 1e-12), got {actual:e}"
    );
}

// ---------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------

/// Span `k` of trace `t` (root is k = 1), child of span `parent` of the same trace.
fn sp(t: u64, k: u64, parent: Option<u64>, start: i64, end: i64, attrs: Vec<KeyValue>) -> Span {
    with_attributes(
        span(
            trace_id(t),
            span_id(t * 100 + k),
            parent.map(|p| span_id(t * 100 + p)),
            start as u64,
            end as u64,
        ),
        attrs,
    )
}

fn s(key: &str, value: &str) -> KeyValue {
    kv(key, string(value))
}

/// An LLM-call span's attributes (`gen_ai.*` aliases). No model → `gen_ai.operation.name`
/// `chat` makes it an LLM call.
fn llm(
    model: Option<&str>,
    provider: Option<&str>,
    input: i64,
    output: i64,
    cached: i64,
    cost: Option<AnyValue>,
) -> Vec<KeyValue> {
    let mut attrs = Vec::new();
    match model {
        Some(model) => attrs.push(s("gen_ai.request.model", model)),
        None => attrs.push(s("gen_ai.operation.name", "chat")),
    }
    if let Some(provider) = provider {
        attrs.push(s("gen_ai.provider.name", provider));
    }
    attrs.push(kv("gen_ai.usage.input_tokens", int(input)));
    attrs.push(kv("gen_ai.usage.output_tokens", int(output)));
    if cached > 0 {
        attrs.push(kv("gen_ai.usage.cache_read.input_tokens", int(cached)));
    }
    if let Some(cost) = cost {
        attrs.push(kv("gen_ai.usage.cost", cost));
    }
    attrs
}

fn tool(name: &str) -> Vec<KeyValue> {
    vec![s("gen_ai.tool.name", name)]
}

const OLD_EMAIL: &str = "z.alice@old.example";
const NEW_EMAIL: &str = "alice@new.example";

fn t14() -> Vec<Span> {
    vec![
        sp(
            14,
            1,
            None,
            at(1, 0, 0, 0, 0),
            at(1, 0, 0, 1, 0),
            vec![s("user.id", "o'brien"), s("session.id", "s-o1")],
        ),
        // 0.1 + 0.2 USD: exactly 0.3 when summed in nano-USD (0.30000000000000004 in f64).
        sp(
            14,
            2,
            Some(1),
            at(1, 0, 0, 0, 100),
            at(1, 0, 0, 0, 500),
            llm(Some("gpt-4o"), Some("openai"), 30, 1, 0, Some(double(0.1))),
        ),
        sp(
            14,
            3,
            Some(1),
            at(1, 0, 0, 0, 500),
            at(1, 0, 0, 0, 900),
            llm(Some("gpt-4o"), Some("openai"), 10, 1, 0, Some(double(0.2))),
        ),
    ]
}

fn t1() -> Vec<Span> {
    vec![
        sp(
            1,
            1,
            None,
            at(1, 9, 0, 0, 0),
            at(1, 9, 0, 2, 0),
            vec![
                s("user.id", "alice"),
                s("user.email", OLD_EMAIL),
                s("session.id", "s-a1"),
                s("userlens.behaviour", "retry"),
            ],
        ),
        // Cost as a numeric string.
        sp(
            1,
            2,
            Some(1),
            at(1, 9, 0, 0, 100),
            at(1, 9, 0, 1, 500),
            llm(
                Some("gpt-4o"),
                Some("openai"),
                100,
                50,
                0,
                Some(string("0.000123")),
            ),
        ),
    ]
}

fn t2_children() -> Vec<Span> {
    vec![
        sp(
            2,
            2,
            Some(1),
            at(2, 11, 0, 0, 500),
            at(2, 11, 0, 3, 0),
            llm(
                Some("gpt-4o"),
                Some("openai"),
                200,
                80,
                30,
                Some(double(0.000456)),
            ),
        ),
        errored(sp(
            2,
            3,
            Some(1),
            at(2, 11, 0, 3, 0),
            at(2, 11, 0, 4, 0),
            tool("search"),
        )),
    ]
}

fn t2_root() -> Vec<Span> {
    vec![sp(
        2,
        1,
        None,
        at(2, 11, 0, 0, 0),
        at(2, 11, 0, 5, 0),
        vec![
            s("user.id", "alice"),
            s("user.email", OLD_EMAIL),
            s("session.id", "s-a1"),
            s("userlens.issue.id", "ISS-1"),
            s("userlens.issue.title", "Slow answer"),
        ],
    )]
}

fn t3() -> Vec<Span> {
    vec![
        sp(
            3,
            1,
            None,
            at(3, 14, 0, 0, 0),
            at(3, 14, 0, 1, 0),
            vec![
                s("user.id", "alice"),
                s("session.id", "s-a2"),
                s("userlens.issue.id", "ISS-0"),
                s("userlens.behaviour", "abandoned"),
            ],
        ),
        sp(
            3,
            2,
            Some(1),
            at(3, 14, 0, 0, 100),
            at(3, 14, 0, 0, 900),
            llm(None, Some("anthropic"), 10, 5, 0, Some(double(0.000007))),
        ),
    ]
}

/// T4's leaf LLM call under the root.
fn t4_llm_a() -> Vec<Span> {
    vec![sp(
        4,
        2,
        Some(1),
        at(5, 16, 0, 0, 100),
        at(5, 16, 0, 1, 0),
        llm(
            Some("gpt-4o"),
            Some("openai"),
            100,
            40,
            0,
            Some(double(0.000263)),
        ),
    )]
}

/// T4's agent step (behaviours) and the leaf LLM call under it.
fn t4_step_and_llm_b() -> Vec<Span> {
    vec![
        sp(
            4,
            3,
            Some(1),
            at(5, 16, 0, 1, 0),
            at(5, 16, 0, 3, 0),
            vec![
                s("gen_ai.agent.name", "planner"),
                kv("userlens.behaviour", strings(&["retry", "frustrated"])),
            ],
        ),
        sp(
            4,
            4,
            Some(3),
            at(5, 16, 0, 1, 100),
            at(5, 16, 0, 3, 0),
            llm(
                Some("gpt-4o-mini"),
                Some("openai"),
                200,
                80,
                0,
                Some(double(0.000526)),
            ),
        ),
    ]
}

/// T4's root: a wrapper repeating its children's model, tokens and cost.
fn t4_root() -> Vec<Span> {
    let mut attrs = vec![
        s("user.id", "alice"),
        s("user.email", NEW_EMAIL),
        s("session.id", "s-a3"),
        s("userlens.issue.id", "ISS-1"),
    ];
    attrs.extend(llm(
        Some("gpt-4o"),
        Some("openai"),
        300,
        120,
        0,
        Some(double(0.000789)),
    ));
    vec![sp(
        4,
        1,
        None,
        at(5, 16, 0, 0, 0),
        at(5, 16, 0, 2, 500),
        attrs,
    )]
}

fn t5() -> Vec<Span> {
    vec![
        sp(
            5,
            1,
            None,
            at(6, 10, 0, 0, 0),
            at(6, 10, 0, 0, 500),
            vec![
                s("user.id", "alice"),
                s("session.id", "s-a3"),
                s("userlens.issue.id", "ISS-3"),
                s("userlens.issue.title", "Tool loop"),
                s("userlens.behaviour", "frustrated"),
            ],
        ),
        sp(5, 2, Some(1), at(6, 10, 0, 0, 100), at(6, 10, 0, 0, 200), {
            let mut attrs = tool("calculator");
            attrs.push(s("userlens.issue.id", "ISS-3"));
            attrs.push(s("userlens.issue.title", "Loop (child)"));
            attrs
        }),
        sp(
            5,
            3,
            Some(1),
            at(6, 10, 0, 0, 250),
            at(6, 10, 0, 0, 400),
            tool("calculator"),
        ),
    ]
}

/// T6's late child: the only span carrying the user (and email).
fn t6_late_child() -> Vec<Span> {
    vec![sp(
        6,
        3,
        Some(1),
        at(2, 10, 30, 2, 0),
        at(2, 10, 30, 3, 0),
        vec![
            s("user.id", "bob"),
            s("user.email", "bob@x.io"),
            s("gen_ai.tool.name", "search"),
        ],
    )]
}

/// T6's LLM call, with the `llm.*` aliases.
fn t6_llm() -> Vec<Span> {
    vec![sp(
        6,
        2,
        Some(1),
        at(2, 10, 30, 0, 500),
        at(2, 10, 30, 1, 0),
        vec![
            s("llm.model_name", "claude-3-5-sonnet"),
            s("llm.provider", "anthropic"),
            kv("llm.token_count.prompt", int(1000)),
            kv("llm.token_count.completion", int(200)),
            kv("llm.token_count.prompt_details.cache_read", int(400)),
            kv("llm.cost.total", double(0.001001)),
        ],
    )]
}

fn t6_root() -> Vec<Span> {
    vec![sp(
        6,
        1,
        None,
        at(2, 10, 30, 0, 0),
        at(2, 10, 30, 4, 0),
        vec![s("session.id", "s-shared")],
    )]
}

fn t7() -> Vec<Span> {
    vec![
        sp(
            7,
            1,
            None,
            at(3, 8, 0, 0, 0),
            at(3, 8, 0, 2, 0),
            vec![
                s("user.id", "bob"),
                s("user.email", "bob@x.io"),
                s("session.id", "s-b1"),
                s("userlens.issue.id", "ISS-2"),
                s("userlens.issue.title", "Hallucination"),
                s("userlens.behaviour", "frustrated"),
            ],
        ),
        errored(sp(
            7,
            2,
            Some(1),
            at(3, 8, 0, 0, 200),
            at(3, 8, 0, 1, 800),
            llm(
                Some("gpt-4o-mini"),
                Some("openai"),
                50,
                25,
                0,
                Some(double(0.000033)),
            ),
        )),
    ]
}

fn t8_root() -> Vec<Span> {
    vec![sp(
        8,
        1,
        None,
        at(4, 5, 43, 10, 0),
        at(4, 5, 43, 11, 0),
        vec![
            s("user.id", "bob"),
            s("user.email", "bob@x.io"),
            s("session.id", "s-b1"),
            s("userlens.issue.id", "ISS-1"),
            s("userlens.issue.title", "Slow answers (p95)"),
        ],
    )]
}

/// T8's LLM call, sent before its root: it names another user, email and session, which
/// the root (arriving later) overrides.
fn t8_child() -> Vec<Span> {
    vec![sp(
        8,
        2,
        Some(1),
        at(4, 5, 43, 10, 100),
        at(4, 5, 43, 10, 900),
        {
            let mut attrs = llm(
                Some("gpt-4o"),
                Some("openai"),
                10,
                10,
                0,
                Some(double(0.000010001)),
            );
            attrs.push(s("user.id", "mallory"));
            attrs.push(s("user.email", "m@evil.io"));
            attrs.push(s("session.id", "s-wrong"));
            attrs
        },
    )]
}

fn t9() -> Vec<Span> {
    vec![
        sp(
            9,
            1,
            None,
            at(4, 5, 43, 10, 1),
            at(4, 5, 43, 10, 601),
            vec![
                s("user.id", "bob"),
                s("session.id", "s-b2"),
                s("userlens.issue.id", "ISS-2"),
            ],
        ),
        sp(
            9,
            2,
            Some(1),
            at(4, 5, 43, 10, 100),
            at(4, 5, 43, 10, 200),
            llm(Some("llama-3"), None, 5, 5, 0, None),
        ),
        sp(
            9,
            3,
            Some(1),
            at(4, 5, 43, 10, 200),
            at(4, 5, 43, 10, 300),
            llm(Some("gpt-4o"), None, 7, 3, 0, Some(double(0.000002))),
        ),
    ]
}

fn t10() -> Vec<Span> {
    vec![
        sp(
            10,
            1,
            None,
            at(2, 12, 0, 0, 0),
            at(2, 12, 0, 1, 0),
            vec![
                s("user.id", "carol"),
                s("user.email", "carol\\ops@x.io"),
                s("session.id", "s-shared"),
            ],
        ),
        sp(
            10,
            2,
            Some(1),
            at(2, 12, 0, 0, 100),
            at(2, 12, 0, 0, 900),
            llm(
                Some("claude-3-5-sonnet"),
                Some("anthropic"),
                500,
                100,
                0,
                Some(double(0.000321)),
            ),
        ),
    ]
}

fn t11() -> Vec<Span> {
    vec![
        sp(
            11,
            1,
            None,
            at(7, 23, 59, 59, 999),
            at(8, 0, 0, 0, 500),
            vec![s("user.id", "carol"), s("session.id", "s-c1")],
        ),
        errored(sp(
            11,
            2,
            Some(1),
            at(8, 0, 0, 0, 0),
            at(8, 0, 0, 0, 200),
            tool("search"),
        )),
        sp(
            11,
            3,
            Some(1),
            at(8, 0, 0, 0, 200),
            at(8, 0, 0, 0, 400),
            tool("browse"),
        ),
    ]
}

fn t12_t13() -> Vec<Span> {
    vec![
        sp(
            12,
            1,
            None,
            at(3, 20, 0, 0, 0),
            at(3, 20, 0, 10, 0),
            vec![s("user.id", "100%_user"), s("user.email", "pct@x.io")],
        ),
        sp(
            12,
            2,
            Some(1),
            at(3, 20, 0, 0, 100),
            at(3, 20, 0, 9, 0),
            llm(
                Some("gpt-4o"),
                Some("openai"),
                1,
                1,
                0,
                Some(double(0.000000001)),
            ),
        ),
        errored(sp(
            13,
            1,
            None,
            at(3, 20, 0, 0, 0),
            at(3, 20, 0, 0, 250),
            vec![s("user.id", "100%_user")],
        )),
    ]
}

fn t15() -> Vec<Span> {
    vec![
        sp(
            15,
            1,
            None,
            at(3, 9, 15, 0, 0),
            at(3, 9, 15, 2, 0),
            vec![
                s("user.id", "MÜLLER"),
                s("user.email", "hm@x.de"),
                s("session.id", "s-m1"),
            ],
        ),
        // Cost given as input + output cost: 100_000 + 200_000 nano.
        sp(15, 2, Some(1), at(3, 9, 15, 0, 100), at(3, 9, 15, 1, 0), {
            let mut attrs = llm(Some("gpt-4o"), Some("openai"), 120, 60, 0, None);
            attrs.push(kv("gen_ai.usage.input_cost", double(0.0001)));
            attrs.push(kv("gen_ai.usage.output_cost", double(0.0002)));
            attrs
        }),
    ]
}

fn t16() -> Vec<Span> {
    vec![
        sp(
            16,
            1,
            None,
            at(4, 12, 0, 0, 0),
            at(4, 12, 0, 1, 0),
            vec![
                s("user.id", "MÜLLER"),
                s("session.id", "s-m1"),
                s("userlens.behaviour", "abandoned"),
            ],
        ),
        errored(sp(
            16,
            2,
            Some(1),
            at(4, 12, 0, 0, 100),
            at(4, 12, 0, 0, 600),
            tool("browse"),
        )),
    ]
}

/// T17's spans; its user and email come from the resource.
fn t17() -> Vec<Span> {
    vec![
        sp(
            17,
            1,
            None,
            at(5, 18, 0, 0, 0),
            at(5, 18, 0, 4, 0),
            vec![s("session.id", "s-m2")],
        ),
        sp(
            17,
            2,
            Some(1),
            at(5, 18, 0, 0, 100),
            at(5, 18, 0, 3, 0),
            llm(
                Some("claude-3-5-sonnet"),
                Some("anthropic"),
                80,
                40,
                20,
                Some(double(0.0000455)),
            ),
        ),
    ]
}

fn anonymous() -> Vec<Span> {
    vec![
        errored(sp(
            18,
            1,
            None,
            at(2, 10, 5, 0, 0),
            at(2, 10, 5, 1, 0),
            vec![s("session.id", "s-anon")],
        )),
        sp(19, 1, None, at(3, 15, 0, 0, 0), at(3, 15, 0, 1, 0), vec![]),
        sp(
            19,
            2,
            Some(1),
            at(3, 15, 0, 0, 100),
            at(3, 15, 0, 0, 900),
            llm(
                Some("gpt-4o"),
                Some("openai"),
                9,
                9,
                0,
                Some(double(0.000999)),
            ),
        ),
        sp(
            20,
            1,
            None,
            at(3, 8, 30, 0, 0),
            at(3, 8, 30, 1, 0),
            vec![s("session.id", "s-b1")],
        ),
    ]
}

async fn send(stack: &Stack, resource: Vec<KeyValue>, spans: Vec<Span>) {
    let count = spans.len();
    let response = stack
        .export(request(vec![resource_spans(resource, spans)]))
        .await;
    if let Some(partial) = response.partial_success {
        assert_eq!(
            partial.rejected_spans, 0,
            "none of the {count} spans is rejected: {}",
            partial.error_message
        );
    }
}

/// Sends the fixture: several traces split across calls with the root last, batches
/// repeated.
async fn ingest_fixture(stack: &Stack) {
    let batch_1 = [t14(), t1()].concat();
    send(stack, vec![], batch_1.clone()).await;
    // T6's user id arrives first, on a late child; sent twice.
    send(stack, vec![], t6_late_child()).await;
    send(stack, vec![], t6_late_child()).await;
    send(stack, vec![], [t2_children(), t6_llm()].concat()).await;
    send(stack, vec![], [t2_root(), t10(), anonymous()].concat()).await;
    send(stack, vec![], batch_1).await; // a duplicate of the first batch
    send(stack, vec![], t6_root()).await; // T6's root, last
    send(stack, vec![], [t7(), t15(), t8_child()].concat()).await;
    // Until T8's root arrives, its only user is the child's.
    let mallory = stack
        .query_client()
        .await
        .get_user_detail(stack.authorized(GetUserDetailRequest {
            user_id: "mallory".into(),
            activity_days: vec![],
        }))
        .await
        .expect("user detail")
        .into_inner();
    assert_eq!(
        mallory.user.map(|u| (u.traces, u.email)),
        Some((1, Some("m@evil.io".to_owned()))),
        "before T8's root arrives, T8 is mallory's"
    );
    send(stack, vec![], [t3(), t12_t13()].concat()).await;
    send(stack, vec![], t4_llm_a()).await;
    let batch_9 = [t4_step_and_llm_b(), t8_root(), t9()].concat();
    send(stack, vec![], batch_9.clone()).await;
    send(stack, vec![], batch_9).await; // sent twice
    send(stack, vec![], [t4_root(), t16(), t5()].concat()).await; // T4's root, last
    send(
        stack,
        vec![s("user.id", "MÜLLER"), s("user.email", "hm@x.de")],
        t17(),
    )
    .await;
    send(stack, vec![], t11()).await;
    send(stack, vec![], t2_root()).await; // T2's root again
}

// ---------------------------------------------------------------------------------------
// Expectations and their checks
// ---------------------------------------------------------------------------------------

/// Median of a per-trace cost list: one middle value, or the mean of two (nano-USD).
#[derive(Debug, Clone, Copy)]
enum Median {
    Exact(f64),
    Mean(f64, f64),
}

#[derive(Debug, Clone, Copy)]
struct Cost {
    /// nano-USD, compared exactly.
    sum: i64,
    /// nano-USD, a mean: compared within 1e-12 USD.
    average: f64,
    median: Median,
}

#[track_caller]
fn check_cost(actual: Option<&CostStats>, expected: Cost, what: &str) {
    let actual = actual.unwrap_or_else(|| panic!("{what}: cost is present"));
    assert_eq!(actual.sum, nano(expected.sum), "{what}: cost.sum");
    near(
        actual.average,
        expected.average / 1e9,
        &format!("{what}: cost.average"),
    );
    match expected.median {
        Median::Exact(n) => assert_eq!(actual.median, n / 1e9, "{what}: cost.median"),
        Median::Mean(a, b) => near(
            actual.median,
            (a + b) / 2.0 / 1e9,
            &format!("{what}: cost.median"),
        ),
    }
}

/// [input, output, cached input, total].
#[track_caller]
fn check_tokens(actual: Option<&TokenUsage>, expected: [i64; 4], what: &str) {
    let actual = actual.unwrap_or_else(|| panic!("{what}: tokens are present"));
    assert_eq!(
        [
            actual.input,
            actual.output,
            actual.cached_input,
            actual.total
        ],
        expected,
        "{what}: tokens [input, output, cached, total]"
    );
}

struct Row {
    id: &'static str,
    email: Option<&'static str>,
    first: i64,
    last: i64,
    traces: i64,
    sessions: i64,
    errored_sessions: i64,
    error_rate: f64,
    cost: Cost,
    tokens: [i64; 4],
    /// (buckets, counts)
    trends: Vec<(u32, Vec<i64>)>,
}

#[track_caller]
fn check_row(actual: &UserRow, expected: &Row, what: &str) {
    let what = format!("{what} / row {}", expected.id);
    assert_eq!(actual.user_id, expected.id, "{what}: user id");
    assert_eq!(actual.email.as_deref(), expected.email, "{what}: email");
    assert_eq!(
        actual.first_seen_at,
        Some(ts(expected.first)),
        "{what}: first seen"
    );
    assert_eq!(
        actual.last_seen_at,
        Some(ts(expected.last)),
        "{what}: last seen"
    );
    assert_eq!(actual.traces, expected.traces, "{what}: traces");
    assert_eq!(actual.sessions, expected.sessions, "{what}: sessions");
    assert_eq!(
        actual.errored_sessions, expected.errored_sessions,
        "{what}: errored sessions"
    );
    assert_eq!(actual.error_rate, expected.error_rate, "{what}: error rate");
    check_cost(actual.cost.as_ref(), expected.cost, &what);
    check_tokens(actual.tokens.as_ref(), expected.tokens, &what);
    let trends: Vec<(u32, Vec<i64>)> = actual
        .trends
        .iter()
        .map(|t| (t.buckets, t.counts.clone()))
        .collect();
    assert_eq!(trends, expected.trends, "{what}: trends");
    assert!(!actual.cursor.is_empty(), "{what}: a cursor");
}

#[track_caller]
fn check_rows(actual: &ListUsersResponse, expected: &[Row], what: &str) {
    let ids: Vec<&str> = actual.users.iter().map(|u| u.user_id.as_str()).collect();
    let expected_ids: Vec<&str> = expected.iter().map(|r| r.id).collect();
    assert_eq!(ids, expected_ids, "{what}: rows in order");
    for (row, expected) in actual.users.iter().zip(expected) {
        check_row(row, expected, what);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    traces: i64,
    traces_with_user: i64,
    active_users: i64,
    sessions: i64,
    errored_sessions: i64,
    errored_traces: i64,
}

/// traces, with user, active users, sessions, errored sessions, errored traces.
const fn b(t: i64, wu: i64, au: i64, se: i64, es: i64, et: i64) -> Bucket {
    Bucket {
        traces: t,
        traces_with_user: wu,
        active_users: au,
        sessions: se,
        errored_sessions: es,
        errored_traces: et,
    }
}

const EMPTY: Bucket = b(0, 0, 0, 0, 0, 0);

struct Overview {
    unique_users: i64,
    new_users: i64,
    traces: i64,
    traces_with_user: i64,
    user_trace_share: f64,
    traces_per_user: f64,
    sessions: i64,
    sessions_with_user: i64,
    /// A mean: within 1e-12.
    sessions_per_user: f64,
    bucket_seconds: i64,
    bucket_count: usize,
    first_start: i64,
    last_start: i64,
    /// (bucket start, figures); every other bucket is empty.
    non_empty: Vec<(i64, Bucket)>,
}

#[track_caller]
fn check_overview(actual: &UsersOverview, expected: &Overview, what: &str) {
    assert_eq!(
        actual.unique_users, expected.unique_users,
        "{what}: unique users"
    );
    assert_eq!(actual.new_users, expected.new_users, "{what}: new users");
    assert_eq!(actual.traces, expected.traces, "{what}: traces");
    assert_eq!(
        actual.traces_with_user, expected.traces_with_user,
        "{what}: traces with user"
    );
    assert_eq!(
        actual.user_trace_share, expected.user_trace_share,
        "{what}: user trace share"
    );
    assert_eq!(
        actual.traces_per_user, expected.traces_per_user,
        "{what}: traces per user"
    );
    assert_eq!(actual.sessions, expected.sessions, "{what}: sessions");
    assert_eq!(
        actual.sessions_with_user, expected.sessions_with_user,
        "{what}: sessions with user"
    );
    near(
        actual.sessions_per_user,
        expected.sessions_per_user,
        &format!("{what}: sessions per user"),
    );
    let histogram = actual.histogram.as_ref().expect("a histogram");
    assert_eq!(
        histogram.bucket_seconds, expected.bucket_seconds,
        "{what}: bucket seconds"
    );
    assert_eq!(
        histogram.buckets.len(),
        expected.bucket_count,
        "{what}: bucket count"
    );
    assert_eq!(
        histogram.buckets[0].start,
        Some(ts(expected.first_start)),
        "{what}: first bucket start"
    );
    assert_eq!(
        histogram.buckets.last().unwrap().start,
        Some(ts(expected.last_start)),
        "{what}: last bucket start"
    );
    let expected_by_start: HashMap<i64, Bucket> = expected.non_empty.iter().copied().collect();
    let mut found = 0;
    for (i, bucket) in histogram.buckets.iter().enumerate() {
        // Consecutive buckets of the stated width.
        let start = expected.first_start + i as i64 * expected.bucket_seconds * NS;
        assert_eq!(bucket.start, Some(ts(start)), "{what}: bucket {i} start");
        let got = b(
            bucket.traces,
            bucket.traces_with_user,
            bucket.active_users,
            bucket.sessions,
            bucket.errored_sessions,
            bucket.errored_traces,
        );
        let want = match expected_by_start.get(&start) {
            Some(want) => {
                found += 1;
                *want
            }
            None => EMPTY,
        };
        assert_eq!(got, want, "{what}: bucket {i} starting {:?}", ts(start));
    }
    assert_eq!(
        found,
        expected.non_empty.len(),
        "{what}: every non-empty bucket is in the histogram"
    );
}

struct Sess {
    id: &'static str,
    start: i64,
    end: i64,
    duration_ms: f64,
    traces: i64,
    errored_traces: i64,
    errored: bool,
    cost: i64,
    tokens: [i64; 4],
}

#[track_caller]
fn check_sessions(actual: &ListSessionsResponse, expected: &[&Sess], what: &str) {
    let ids: Vec<&str> = actual
        .sessions
        .iter()
        .map(|s| s.session_id.as_str())
        .collect();
    let expected_ids: Vec<&str> = expected.iter().map(|s| s.id).collect();
    assert_eq!(ids, expected_ids, "{what}: sessions in order");
    for (got, want) in actual.sessions.iter().zip(expected) {
        let what = format!("{what} / session {}", want.id);
        assert_eq!(got.started_at, Some(ts(want.start)), "{what}: started at");
        assert_eq!(got.ended_at, Some(ts(want.end)), "{what}: ended at");
        assert_eq!(got.duration_ms, want.duration_ms, "{what}: duration ms");
        assert_eq!(got.traces, want.traces, "{what}: traces");
        assert_eq!(
            got.errored_traces, want.errored_traces,
            "{what}: errored traces"
        );
        assert_eq!(got.errored, want.errored, "{what}: errored");
        assert_eq!(got.cost, nano(want.cost), "{what}: cost");
        check_tokens(got.tokens.as_ref(), want.tokens, &what);
        assert!(!got.cursor.is_empty(), "{what}: a cursor");
    }
}

/// (model, provider, calls, traces, tokens, cost nano)
type ModelExp = (&'static str, Option<&'static str>, i64, i64, [i64; 4], i64);
/// (provider, calls, traces, tokens, cost nano)
type ProviderExp = (&'static str, i64, i64, [i64; 4], i64);
/// (tool, calls, errors, traces)
type ToolExp = (&'static str, i64, i64, i64);

#[track_caller]
fn check_breakdowns(
    actual: &Breakdowns,
    models: &[ModelExp],
    providers: &[ProviderExp],
    tools: &[ToolExp],
    what: &str,
) {
    let got: Vec<(String, Option<String>)> = actual
        .models
        .iter()
        .map(|m| (m.model.clone(), m.provider.clone()))
        .collect();
    let want: Vec<(String, Option<String>)> = models
        .iter()
        .map(|m| (m.0.to_owned(), m.1.map(str::to_owned)))
        .collect();
    assert_eq!(got, want, "{what}: models in order");
    for (got, want) in actual.models.iter().zip(models) {
        let what = format!("{what} / model {} {:?}", want.0, want.1);
        assert_eq!(
            (got.calls, got.traces),
            (want.2, want.3),
            "{what}: calls, traces"
        );
        check_tokens(got.tokens.as_ref(), want.4, &what);
        assert_eq!(got.cost, nano(want.5), "{what}: cost");
    }
    let got: Vec<&str> = actual
        .providers
        .iter()
        .map(|p| p.provider.as_str())
        .collect();
    let want: Vec<&str> = providers.iter().map(|p| p.0).collect();
    assert_eq!(got, want, "{what}: providers in order");
    for (got, want) in actual.providers.iter().zip(providers) {
        let what = format!("{what} / provider {}", want.0);
        assert_eq!(
            (got.calls, got.traces),
            (want.1, want.2),
            "{what}: calls, traces"
        );
        check_tokens(got.tokens.as_ref(), want.3, &what);
        assert_eq!(got.cost, nano(want.4), "{what}: cost");
    }
    let got: Vec<(&str, i64, i64, i64)> = actual
        .tools
        .iter()
        .map(|t| (t.tool.as_str(), t.calls, t.errors, t.traces))
        .collect();
    assert_eq!(
        got, tools,
        "{what}: tools (tool, calls, errors, traces) in order"
    );
}

/// (date, traces, errored traces, sessions, errored sessions, cost nano)
type DayExp = (&'static str, i64, i64, i64, i64, i64);
/// (id, title, traces, sessions, first seen, last seen)
type IssueExp = (&'static str, Option<&'static str>, i64, i64, i64, i64);
/// (name, traces, sessions, first seen, last seen)
type BehaviourExp = (&'static str, i64, i64, i64, i64);

struct Detail {
    id: &'static str,
    email: Option<&'static str>,
    first: i64,
    last: i64,
    traces: i64,
    sessions: i64,
    errored_sessions: i64,
    cost: Cost,
    tokens: [i64; 4],
    /// A mean: within 1e-9 ms.
    average_duration_ms: f64,
    active_days: i64,
    days: Vec<DayExp>,
    issues: Vec<IssueExp>,
    behaviours: Vec<BehaviourExp>,
}

/// Days since the Unix epoch → YYYY-MM-DD (proleptic Gregorian, UTC).
fn civil_date(days: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

fn today_days() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    (now.as_secs() / 86_400) as i64
}

#[track_caller]
fn check_detail(
    actual: &UserDetail,
    expected: &Detail,
    requested_days: &[u32],
    today: (i64, i64),
    what: &str,
) {
    let what = format!("{what} / detail {}", expected.id);
    assert_eq!(actual.user_id, expected.id, "{what}: user id");
    assert_eq!(actual.email.as_deref(), expected.email, "{what}: email");
    assert_eq!(
        actual.first_seen_at,
        Some(ts(expected.first)),
        "{what}: first seen"
    );
    assert_eq!(
        actual.last_seen_at,
        Some(ts(expected.last)),
        "{what}: last seen"
    );
    assert_eq!(actual.traces, expected.traces, "{what}: traces");
    assert_eq!(actual.sessions, expected.sessions, "{what}: sessions");
    assert_eq!(
        actual.errored_sessions, expected.errored_sessions,
        "{what}: errored sessions"
    );
    check_cost(actual.cost.as_ref(), expected.cost, &what);
    check_tokens(actual.tokens.as_ref(), expected.tokens, &what);
    assert!(
        (actual.average_trace_duration_ms - expected.average_duration_ms).abs() <= 1e-9,
        "{what}: average trace duration ms: expected {}, got {}",
        expected.average_duration_ms,
        actual.average_trace_duration_ms
    );
    assert_eq!(
        actual.active_days, expected.active_days,
        "{what}: active days"
    );

    // Activity: one series per requested day count, in request order; each ends today
    // (the date before or after the request, in case midnight passed in between).
    assert_eq!(
        actual.activities.len(),
        requested_days.len(),
        "{what}: one series per request"
    );
    let by_date: HashMap<&str, DayExp> = expected.days.iter().map(|d| (d.0, *d)).collect();
    for (series, &days) in actual.activities.iter().zip(requested_days) {
        let what = format!("{what} / activity({days})");
        assert_eq!(series.days, days, "{what}: days");
        assert_eq!(
            series.points.len(),
            days as usize,
            "{what}: one point per day"
        );
        let last = &series.points.last().unwrap().date;
        let today = if *last == civil_date(today.1) {
            today.1
        } else {
            today.0
        };
        assert_eq!(*last, civil_date(today), "{what}: ends today");
        let mut covered = 0;
        for (i, point) in series.points.iter().enumerate() {
            let day = today - (days as i64 - 1) + i as i64;
            assert_eq!(
                point.date,
                civil_date(day),
                "{what}: point {i} date (oldest first)"
            );
            let want = match by_date.get(point.date.as_str()) {
                Some(want) => {
                    covered += 1;
                    *want
                }
                None => ("" /* zero-filled */, 0, 0, 0, 0, 0),
            };
            assert_eq!(
                (
                    point.traces,
                    point.errored_traces,
                    point.sessions,
                    point.errored_sessions
                ),
                (want.1, want.2, want.3, want.4),
                "{what}: {} (traces, errored traces, sessions, errored sessions)",
                point.date
            );
            assert_eq!(point.cost, nano(want.5), "{what}: {} cost", point.date);
        }
        // Every fixture day inside the window is one of its points.
        let first_date = civil_date(today - (days as i64 - 1));
        let inside = expected
            .days
            .iter()
            .filter(|d| d.0 >= first_date.as_str() && d.0 <= last.as_str())
            .count();
        assert_eq!(
            covered, inside,
            "{what}: every active day of the window is present"
        );
    }

    let issues: Vec<IssueExp> = actual
        .issues
        .iter()
        .map(|i| {
            (
                leak(&i.id),
                i.title.as_deref().map(leak),
                i.traces,
                i.sessions,
                ns_of(i.first_seen_at.as_ref()),
                ns_of(i.last_seen_at.as_ref()),
            )
        })
        .collect();
    assert_eq!(
        issues, expected.issues,
        "{what}: issues (id, title, traces, sessions, first, last) in order"
    );
    let behaviours: Vec<BehaviourExp> = actual
        .behaviours
        .iter()
        .map(|b| {
            (
                leak(&b.name),
                b.traces,
                b.sessions,
                ns_of(b.first_seen_at.as_ref()),
                ns_of(b.last_seen_at.as_ref()),
            )
        })
        .collect();
    assert_eq!(
        behaviours, expected.behaviours,
        "{what}: behaviours (name, traces, sessions, first, last) in order"
    );
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

fn ns_of(t: Option<&Timestamp>) -> i64 {
    let t = t.expect("a timestamp");
    t.seconds * NS + i64::from(t.nanos)
}

// ---------------------------------------------------------------------------------------
// Expected figures, counted by hand from the fixture table
// ---------------------------------------------------------------------------------------

const HEX12: &str = "7e00000000000000000000000000000c";
const HEX13: &str = "7e00000000000000000000000000000d";

fn r1_rows() -> Vec<Row> {
    // Default order LAST_SEEN DESC: carol (03-07 23:59:59.999), alice (03-06 10:00),
    // MÜLLER (03-05 18:00), bob (03-04 05:43:10.001), 100%_user (03-03 20:00), o'brien (03-01 00:00).
    // Trends: 7 slices of R1 = one per day (index = day − 1); 14 slices = half days
    // (index = 2 × (day − 1) + [hour ≥ 12]).
    vec![
        Row {
            id: "carol",
            email: Some("carol\\ops@x.io"),
            first: at(2, 12, 0, 0, 0),    // T10
            last: at(7, 23, 59, 59, 999), // T11
            traces: 2,                    // T10, T11
            sessions: 2,                  // s-shared, s-c1
            errored_sessions: 1,          // s-c1 (T11's errored tool)
            error_rate: 1.0 / 2.0,
            // costs [321_000, 0]: sum 321_000, mean 160_500, median (0 + 321_000) / 2
            cost: Cost {
                sum: 321_000,
                average: 160_500.0,
                median: Median::Mean(0.0, 321_000.0),
            },
            tokens: [500, 100, 0, 600], // T10 only
            trends: vec![
                (7, vec![0, 1, 0, 0, 0, 0, 1]),                       // 03-02, 03-07
                (14, vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), // 03-02 pm, 03-07 pm
            ],
        },
        Row {
            id: "alice",
            email: Some(NEW_EMAIL),   // T4's; T5 (later) has none
            first: at(1, 9, 0, 0, 0), // T1
            last: at(6, 10, 0, 0, 0), // T5
            traces: 5,                // T1 T2 T3 T4 T5
            sessions: 3,              // s-a1 s-a2 s-a3
            errored_sessions: 1,      // s-a1 (T2)
            error_rate: 1.0 / 3.0,
            // costs [123_000, 456_000, 7_000, 789_000 (leaves 263_000 + 526_000), 0]:
            // sum 1_375_000, mean 275_000, sorted [0, 7_000, 123_000, 456_000, 789_000] → 123_000
            cost: Cost {
                sum: 1_375_000,
                average: 275_000.0,
                median: Median::Exact(123_000.0),
            },
            // in 100+200+10+100+200 = 610, out 50+80+5+40+80 = 255, cached 30 (T2), total 865
            tokens: [610, 255, 30, 865],
            trends: vec![
                (7, vec![1, 1, 1, 0, 1, 1, 0]), // 03-01 02 03 05 06
                (14, vec![1, 0, 1, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0]), // am, am, pm, pm, am
            ],
        },
        Row {
            id: "MÜLLER",
            email: Some("hm@x.de"),
            first: at(3, 9, 15, 0, 0), // T15
            last: at(5, 18, 0, 0, 0),  // T17
            traces: 3,                 // T15 T16 T17
            sessions: 2,               // s-m1 s-m2
            errored_sessions: 1,       // s-m1 (T16)
            error_rate: 1.0 / 2.0,
            // costs [300_000, 0, 45_500]: sum 345_500, mean 345_500 / 3, median 45_500
            cost: Cost {
                sum: 345_500,
                average: 345_500.0 / 3.0,
                median: Median::Exact(45_500.0),
            },
            tokens: [200, 100, 20, 300], // T15 120/60, T17 80/40/20
            trends: vec![
                (7, vec![0, 0, 1, 1, 1, 0, 0]),                       // 03-03 04 05
                (14, vec![0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0, 0]), // 03-03 am, 04 pm, 05 pm
            ],
        },
        Row {
            id: "bob",
            email: Some("bob@x.io"),    // T8's (T9, later, has none)
            first: at(2, 10, 30, 0, 0), // T6
            last: at(4, 5, 43, 10, 1),  // T9
            traces: 4,                  // T6 T7 T8 T9
            sessions: 3,                // s-shared s-b1 s-b2
            errored_sessions: 1,        // s-b1 (T7)
            error_rate: 1.0 / 3.0,
            // costs [1_001_000, 33_000, 10_001, 2_000]: sum 1_046_001, mean 261_500.25,
            // sorted [2_000, 10_001, 33_000, 1_001_000] → (10_001 + 33_000) / 2
            cost: Cost {
                sum: 1_046_001,
                average: 261_500.25,
                median: Median::Mean(10_001.0, 33_000.0),
            },
            // in 1000+50+10+5+7 = 1072, out 200+25+10+5+3 = 243, cached 400
            tokens: [1072, 243, 400, 1315],
            trends: vec![
                (7, vec![0, 1, 1, 2, 0, 0, 0]), // 03-02, 03, 04 ×2
                (14, vec![0, 0, 1, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0]), // all am
            ],
        },
        Row {
            id: "100%_user",
            email: Some("pct@x.io"),
            first: at(3, 20, 0, 0, 0), // T12 and T13
            last: at(3, 20, 0, 0, 0),
            traces: 2,
            sessions: 2,         // hex12 hex13
            errored_sessions: 1, // hex13
            error_rate: 1.0 / 2.0,
            // costs [1, 0]: sum 1, mean 0.5, median (0 + 1) / 2
            cost: Cost {
                sum: 1,
                average: 0.5,
                median: Median::Mean(0.0, 1.0),
            },
            tokens: [1, 1, 0, 2],
            trends: vec![
                (7, vec![0, 0, 2, 0, 0, 0, 0]),
                (14, vec![0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]),
            ],
        },
        Row {
            id: "o'brien",
            email: None,
            first: at(1, 0, 0, 0, 0), // T14, exactly R1's `from`
            last: at(1, 0, 0, 0, 0),
            traces: 1,
            sessions: 1,
            errored_sessions: 0,
            error_rate: 0.0,
            cost: Cost {
                sum: 300_000_000,
                average: 300_000_000.0,
                median: Median::Exact(300_000_000.0),
            },
            tokens: [40, 2, 0, 42],
            trends: vec![
                (7, vec![1, 0, 0, 0, 0, 0, 0]),
                (14, vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            ],
        },
    ]
}

fn r2_rows() -> Vec<Row> {
    // In R2: bob T6 T7 T8; alice T2 T3; carol T10; MÜLLER T15; 100%_user T12 T13.
    // Default order LAST_SEEN DESC: bob (T8 03-04 05:43:10.000), 100%_user (03-03 20:00),
    // alice (T3 03-03 14:00), MÜLLER (03-03 09:15), carol (03-02 12:00).
    // Trends over R2 (length 156_346_545 ms; offsets from `from` in ms: T6 756_544,
    // T2 2_556_544, T10 6_156_544, T7 78_156_544, T15 82_656_544, T3 99_756_544,
    // T12/T13 121_356_544, T8 156_346_544):
    //   3 slices of 52_115_515 ms: T6 T2 T10 → 0; T7 T15 T3 → 1; T12 T13 T8 → 2.
    //   5 slices of 31_269_309 ms: T6 T2 T10 → 0; T7 T15 → 2 (62.5M–93.8M); T3 T12 T13 → 3
    //   (93.8M–125.1M); T8 → 4.
    vec![
        Row {
            id: "bob",
            email: Some("bob@x.io"),
            first: at(2, 10, 30, 0, 0),
            last: at(4, 5, 43, 10, 0),
            traces: 3,
            sessions: 2,         // s-shared s-b1
            errored_sessions: 1, // s-b1
            error_rate: 1.0 / 2.0,
            // costs [1_001_000, 33_000, 10_001]: sum 1_044_001, mean / 3, median 33_000
            cost: Cost {
                sum: 1_044_001,
                average: 1_044_001.0 / 3.0,
                median: Median::Exact(33_000.0),
            },
            tokens: [1060, 235, 400, 1295],
            trends: vec![(3, vec![1, 1, 1]), (5, vec![1, 0, 1, 0, 1])],
        },
        Row {
            id: "100%_user",
            email: Some("pct@x.io"),
            first: at(3, 20, 0, 0, 0),
            last: at(3, 20, 0, 0, 0),
            traces: 2,
            sessions: 2,
            errored_sessions: 1,
            error_rate: 1.0 / 2.0,
            cost: Cost {
                sum: 1,
                average: 0.5,
                median: Median::Mean(0.0, 1.0),
            },
            tokens: [1, 1, 0, 2],
            trends: vec![(3, vec![0, 0, 2]), (5, vec![0, 0, 0, 2, 0])],
        },
        Row {
            id: "alice",
            // The lifetime email, although T4 (which gave it) is outside R2 and T2 in R2
            // says z.alice@old.example.
            email: Some(NEW_EMAIL),
            first: at(2, 11, 0, 0, 0),
            last: at(3, 14, 0, 0, 0),
            traces: 2,           // T2 T3
            sessions: 2,         // s-a1 s-a2
            errored_sessions: 1, // s-a1 (T2)
            error_rate: 1.0 / 2.0,
            // costs [456_000, 7_000]: sum 463_000, mean 231_500, median (7_000 + 456_000) / 2
            cost: Cost {
                sum: 463_000,
                average: 231_500.0,
                median: Median::Mean(7_000.0, 456_000.0),
            },
            tokens: [210, 85, 30, 295],
            trends: vec![(3, vec![1, 1, 0]), (5, vec![1, 0, 0, 1, 0])],
        },
        Row {
            id: "MÜLLER",
            email: Some("hm@x.de"),
            first: at(3, 9, 15, 0, 0),
            last: at(3, 9, 15, 0, 0),
            traces: 1,
            sessions: 1,
            errored_sessions: 0, // T16, which makes s-m1 errored, is outside R2
            error_rate: 0.0,
            cost: Cost {
                sum: 300_000,
                average: 300_000.0,
                median: Median::Exact(300_000.0),
            },
            tokens: [120, 60, 0, 180],
            trends: vec![(3, vec![0, 1, 0]), (5, vec![0, 0, 1, 0, 0])],
        },
        Row {
            id: "carol",
            email: Some("carol\\ops@x.io"),
            first: at(2, 12, 0, 0, 0),
            last: at(2, 12, 0, 0, 0),
            traces: 1,
            sessions: 1,
            errored_sessions: 0,
            error_rate: 0.0,
            cost: Cost {
                sum: 321_000,
                average: 321_000.0,
                median: Median::Exact(321_000.0),
            },
            tokens: [500, 100, 0, 600],
            trends: vec![(3, vec![1, 0, 0]), (5, vec![1, 0, 0, 0, 0])],
        },
    ]
}

fn r1_overview() -> Overview {
    Overview {
        unique_users: 6,
        new_users: 6, // nobody has a trace before R1
        traces: 20,
        traces_with_user: 17, // all but T18 T19 T20
        user_trace_share: 17.0 / 20.0,
        traces_per_user: 17.0 / 6.0,
        // s-o1 s-a1 s-anon s-shared s-b1 s-m1 s-a2 hex19 hex12 hex13 s-b2 s-a3 s-m2 s-c1
        sessions: 14,
        sessions_with_user: 12, // all but s-anon and hex19 (s-b1 has bob's T7/T8)
        // alice 3 + bob 3 + carol 2 + 100%_user 2 + o'brien 1 + MÜLLER 2 = 13, over 6 users
        sessions_per_user: 13.0 / 6.0,
        // 7 days: 1h would make 168 buckets, 3h makes 56.
        bucket_seconds: 10_800,
        bucket_count: 56,
        first_start: at(1, 0, 0, 0, 0),
        last_start: at(7, 21, 0, 0, 0),
        non_empty: vec![
            (at(1, 0, 0, 0, 0), b(1, 1, 1, 1, 0, 0)), // T14
            (at(1, 9, 0, 0, 0), b(1, 1, 1, 1, 0, 0)), // T1
            // T18 (anon, s-anon, errored), T6 (bob, s-shared), T2 (alice, s-a1, errored)
            (at(2, 9, 0, 0, 0), b(3, 2, 2, 3, 2, 2)),
            (at(2, 12, 0, 0, 0), b(1, 1, 1, 1, 0, 0)), // T10
            // T7 (bob, s-b1, errored), T20 (anon, s-b1): one session, errored
            (at(3, 6, 0, 0, 0), b(2, 1, 1, 1, 1, 1)),
            (at(3, 9, 0, 0, 0), b(1, 1, 1, 1, 0, 0)),  // T15
            (at(3, 12, 0, 0, 0), b(1, 1, 1, 1, 0, 0)), // T3
            (at(3, 15, 0, 0, 0), b(1, 0, 0, 1, 0, 0)), // T19 (anon, hex19)
            // T12 T13 (100%_user, hex12 and hex13; T13 errored)
            (at(3, 18, 0, 0, 0), b(2, 2, 1, 2, 1, 1)),
            // T8 (bob, s-b1) and T9 (bob, s-b2)
            (at(4, 3, 0, 0, 0), b(2, 2, 1, 2, 0, 0)),
            (at(4, 12, 0, 0, 0), b(1, 1, 1, 1, 1, 1)), // T16 (errored)
            (at(5, 15, 0, 0, 0), b(1, 1, 1, 1, 0, 0)), // T4
            (at(5, 18, 0, 0, 0), b(1, 1, 1, 1, 0, 0)), // T17
            (at(6, 9, 0, 0, 0), b(1, 1, 1, 1, 0, 0)),  // T5
            (at(7, 21, 0, 0, 0), b(1, 1, 1, 1, 1, 1)), // T11 (errored)
        ],
    }
}

fn r2_overview() -> Overview {
    Overview {
        unique_users: 5, // bob alice carol MÜLLER 100%_user
        new_users: 4,    // all but alice (T1 on 03-01)
        traces: 11,
        traces_with_user: 9, // all but T20 T19
        user_trace_share: 9.0 / 11.0,
        traces_per_user: 9.0 / 5.0,
        sessions: 8,           // s-shared s-a1 s-b1 s-m1 s-a2 hex19 hex12 hex13
        sessions_with_user: 7, // all but hex19
        // bob 2 (s-shared s-b1) + alice 2 + carol 1 + MÜLLER 1 + 100%_user 2 = 8, over 5
        sessions_per_user: 8.0 / 5.0,
        // 10:00 on 03-02 to 05:00 on 03-04 hourly = 44 buckets; 30m would make 88.
        bucket_seconds: 3_600,
        bucket_count: 44,
        first_start: at(2, 10, 0, 0, 0),
        last_start: at(4, 5, 0, 0, 0),
        non_empty: vec![
            (at(2, 10, 0, 0, 0), b(1, 1, 1, 1, 0, 0)), // T6; T18 (10:05, errored) is before `from`
            (at(2, 11, 0, 0, 0), b(1, 1, 1, 1, 1, 1)), // T2 (errored)
            (at(2, 12, 0, 0, 0), b(1, 1, 1, 1, 0, 0)), // T10
            (at(3, 8, 0, 0, 0), b(2, 1, 1, 1, 1, 1)),  // T7 + T20 in s-b1
            (at(3, 9, 0, 0, 0), b(1, 1, 1, 1, 0, 0)),  // T15
            (at(3, 14, 0, 0, 0), b(1, 1, 1, 1, 0, 0)), // T3
            (at(3, 15, 0, 0, 0), b(1, 0, 0, 1, 0, 0)), // T19
            (at(3, 20, 0, 0, 0), b(2, 2, 1, 2, 1, 1)), // T12 T13
            (at(4, 5, 0, 0, 0), b(1, 1, 1, 1, 0, 0)),  // T8; T9 starts at `to`
        ],
    }
}

// Sessions, lifetime unless noted.
const S_A3: Sess = Sess {
    id: "s-a3",
    start: at(5, 16, 0, 0, 0), // T4
    end: at(6, 10, 0, 0, 500), // T5's end
    duration_ms: 64_800_500.0, // 18 h 0.5 s
    traces: 2,
    errored_traces: 0,
    errored: false,
    cost: 789_000, // T4 263_000 + 526_000, T5 0
    tokens: [300, 120, 0, 420],
};
const S_A2: Sess = Sess {
    id: "s-a2",
    start: at(3, 14, 0, 0, 0),
    end: at(3, 14, 0, 1, 0),
    duration_ms: 1_000.0,
    traces: 1,
    errored_traces: 0,
    errored: false,
    cost: 7_000,
    tokens: [10, 5, 0, 15],
};
const S_A1: Sess = Sess {
    id: "s-a1",
    start: at(1, 9, 0, 0, 0),  // T1
    end: at(2, 11, 0, 5, 0),   // T2's end
    duration_ms: 93_605_000.0, // 26 h 5 s
    traces: 2,
    errored_traces: 1, // T2
    errored: true,
    cost: 579_000, // 123_000 + 456_000
    tokens: [300, 130, 30, 430],
};
/// s-a1 seen through R2: T2 only.
const S_A1_R2: Sess = Sess {
    id: "s-a1",
    start: at(2, 11, 0, 0, 0),
    end: at(2, 11, 0, 5, 0),
    duration_ms: 5_000.0,
    traces: 1,
    errored_traces: 1,
    errored: true,
    cost: 456_000,
    tokens: [200, 80, 30, 280],
};
const S_B2: Sess = Sess {
    id: "s-b2",
    start: at(4, 5, 43, 10, 1),
    end: at(4, 5, 43, 10, 601),
    duration_ms: 600.0,
    traces: 1,
    errored_traces: 0,
    errored: false,
    cost: 2_000,            // llama-3 has no cost
    tokens: [12, 8, 0, 20], // 5+7, 5+3
};
const S_B1: Sess = Sess {
    id: "s-b1",
    start: at(3, 8, 0, 0, 0), // T7 (T20 in the same session is anonymous: not bob's)
    end: at(4, 5, 43, 11, 0), // T8's end
    duration_ms: 78_191_000.0, // 21 h 43 min 11 s
    traces: 2,
    errored_traces: 1,
    errored: true,
    cost: 43_001, // 33_000 + 10_001
    tokens: [60, 35, 0, 95],
};
const S_SHARED_BOB: Sess = Sess {
    id: "s-shared",
    start: at(2, 10, 30, 0, 0),
    end: at(2, 10, 30, 4, 0),
    duration_ms: 4_000.0,
    traces: 1, // T6; carol's T10 is carol's
    errored_traces: 0,
    errored: false,
    cost: 1_001_000,
    tokens: [1000, 200, 400, 1200],
};
const S_HEX12: Sess = Sess {
    id: HEX12,
    start: at(3, 20, 0, 0, 0),
    end: at(3, 20, 0, 10, 0),
    duration_ms: 10_000.0,
    traces: 1,
    errored_traces: 0,
    errored: false,
    cost: 1,
    tokens: [1, 1, 0, 2],
};
const S_HEX13: Sess = Sess {
    id: HEX13,
    start: at(3, 20, 0, 0, 0), // same start as hex12: after it by session id
    end: at(3, 20, 0, 0, 250),
    duration_ms: 250.0,
    traces: 1,
    errored_traces: 1,
    errored: true,
    cost: 0,
    tokens: [0, 0, 0, 0],
};
const S_C1: Sess = Sess {
    id: "s-c1",
    start: at(7, 23, 59, 59, 999),
    end: at(8, 0, 0, 0, 500),
    duration_ms: 501.0,
    traces: 1,
    errored_traces: 1,
    errored: true,
    cost: 0,
    tokens: [0, 0, 0, 0],
};
const S_SHARED_CAROL: Sess = Sess {
    id: "s-shared",
    start: at(2, 12, 0, 0, 0),
    end: at(2, 12, 0, 1, 0),
    duration_ms: 1_000.0,
    traces: 1,
    errored_traces: 0,
    errored: false,
    cost: 321_000,
    tokens: [500, 100, 0, 600],
};
const S_M2: Sess = Sess {
    id: "s-m2",
    start: at(5, 18, 0, 0, 0),
    end: at(5, 18, 0, 4, 0),
    duration_ms: 4_000.0,
    traces: 1,
    errored_traces: 0,
    errored: false,
    cost: 45_500,
    tokens: [80, 40, 20, 120],
};
const S_M1: Sess = Sess {
    id: "s-m1",
    start: at(3, 9, 15, 0, 0), // T15
    end: at(4, 12, 0, 1, 0),   // T16's end
    duration_ms: 96_301_000.0, // 26 h 45 min 1 s
    traces: 2,
    errored_traces: 1, // T16
    errored: true,
    cost: 300_000,
    tokens: [120, 60, 0, 180],
};
const S_O1: Sess = Sess {
    id: "s-o1",
    start: at(1, 0, 0, 0, 0),
    end: at(1, 0, 0, 1, 0),
    duration_ms: 1_000.0,
    traces: 1,
    errored_traces: 0,
    errored: false,
    cost: 300_000_000,
    tokens: [40, 2, 0, 42],
};

fn details() -> Vec<Detail> {
    vec![
        Detail {
            id: "alice",
            email: Some(NEW_EMAIL),
            first: at(1, 9, 0, 0, 0),
            last: at(6, 10, 0, 0, 0),
            traces: 5,
            sessions: 3,
            errored_sessions: 1,
            cost: Cost {
                sum: 1_375_000,
                average: 275_000.0,
                median: Median::Exact(123_000.0),
            },
            tokens: [610, 255, 30, 865],
            // durations 2000 + 5000 + 1000 + 3000 + 500 = 11_500 over 5
            average_duration_ms: 2_300.0,
            active_days: 5, // 03-01 02 03 05 06
            days: vec![
                ("2026-03-01", 1, 0, 1, 0, 123_000), // T1 s-a1
                ("2026-03-02", 1, 1, 1, 1, 456_000), // T2 s-a1 errored
                ("2026-03-03", 1, 0, 1, 0, 7_000),   // T3 s-a2
                ("2026-03-05", 1, 0, 1, 0, 789_000), // T4 s-a3
                ("2026-03-06", 1, 0, 1, 0, 0),       // T5 s-a3
            ],
            issues: vec![
                // T2, T4; title from the project's latest titled trace (bob's T8)
                (
                    "ISS-1",
                    Some("Slow answers (p95)"),
                    2,
                    2,
                    at(2, 11, 0, 0, 0),
                    at(5, 16, 0, 0, 0),
                ),
                // one trace each: by id
                ("ISS-0", None, 1, 1, at(3, 14, 0, 0, 0), at(3, 14, 0, 0, 0)),
                // the root's title wins over the child's "Loop (child)"
                (
                    "ISS-3",
                    Some("Tool loop"),
                    1,
                    1,
                    at(6, 10, 0, 0, 0),
                    at(6, 10, 0, 0, 0),
                ),
            ],
            behaviours: vec![
                ("frustrated", 2, 1, at(5, 16, 0, 0, 0), at(6, 10, 0, 0, 0)), // T4 T5, s-a3
                ("retry", 2, 2, at(1, 9, 0, 0, 0), at(5, 16, 0, 0, 0)),       // T1 T4, s-a1 s-a3
                ("abandoned", 1, 1, at(3, 14, 0, 0, 0), at(3, 14, 0, 0, 0)),  // T3
            ],
        },
        Detail {
            id: "bob",
            email: Some("bob@x.io"),
            first: at(2, 10, 30, 0, 0),
            last: at(4, 5, 43, 10, 1),
            traces: 4,
            sessions: 3,
            errored_sessions: 1,
            cost: Cost {
                sum: 1_046_001,
                average: 261_500.25,
                median: Median::Mean(10_001.0, 33_000.0),
            },
            tokens: [1072, 243, 400, 1315],
            // 4000 + 2000 + 1000 + 600 = 7600 over 4
            average_duration_ms: 1_900.0,
            active_days: 3,
            days: vec![
                ("2026-03-02", 1, 0, 1, 0, 1_001_000), // T6
                ("2026-03-03", 1, 1, 1, 1, 33_000),    // T7 (s-b1, errored)
                ("2026-03-04", 2, 0, 2, 0, 12_001),    // T8 (s-b1) + T9 (s-b2): 10_001 + 2_000
            ],
            issues: vec![
                (
                    "ISS-2",
                    Some("Hallucination"),
                    2,
                    2,
                    at(3, 8, 0, 0, 0),
                    at(4, 5, 43, 10, 1),
                ),
                (
                    "ISS-1",
                    Some("Slow answers (p95)"),
                    1,
                    1,
                    at(4, 5, 43, 10, 0),
                    at(4, 5, 43, 10, 0),
                ),
            ],
            behaviours: vec![("frustrated", 1, 1, at(3, 8, 0, 0, 0), at(3, 8, 0, 0, 0))],
        },
        Detail {
            id: "carol",
            email: Some("carol\\ops@x.io"),
            first: at(2, 12, 0, 0, 0),
            last: at(7, 23, 59, 59, 999),
            traces: 2,
            sessions: 2,
            errored_sessions: 1,
            cost: Cost {
                sum: 321_000,
                average: 160_500.0,
                median: Median::Mean(0.0, 321_000.0),
            },
            tokens: [500, 100, 0, 600],
            average_duration_ms: 750.5, // (1000 + 501) / 2
            active_days: 2,             // T11's time is 03-07 (it ends on 03-08)
            days: vec![
                ("2026-03-02", 1, 0, 1, 0, 321_000),
                ("2026-03-07", 1, 1, 1, 1, 0),
            ],
            issues: vec![],
            behaviours: vec![],
        },
        Detail {
            id: "100%_user",
            email: Some("pct@x.io"),
            first: at(3, 20, 0, 0, 0),
            last: at(3, 20, 0, 0, 0),
            traces: 2,
            sessions: 2,
            errored_sessions: 1,
            cost: Cost {
                sum: 1,
                average: 0.5,
                median: Median::Mean(0.0, 1.0),
            },
            tokens: [1, 1, 0, 2],
            average_duration_ms: 5_125.0, // (10_000 + 250) / 2
            active_days: 1,
            days: vec![("2026-03-03", 2, 1, 2, 1, 1)],
            issues: vec![],
            behaviours: vec![],
        },
        Detail {
            id: "o'brien",
            email: None,
            first: at(1, 0, 0, 0, 0),
            last: at(1, 0, 0, 0, 0),
            traces: 1,
            sessions: 1,
            errored_sessions: 0,
            cost: Cost {
                sum: 300_000_000,
                average: 300_000_000.0,
                median: Median::Exact(300_000_000.0),
            },
            tokens: [40, 2, 0, 42],
            average_duration_ms: 1_000.0,
            active_days: 1,
            days: vec![("2026-03-01", 1, 0, 1, 0, 300_000_000)],
            issues: vec![],
            behaviours: vec![],
        },
        Detail {
            id: "MÜLLER",
            email: Some("hm@x.de"),
            first: at(3, 9, 15, 0, 0),
            last: at(5, 18, 0, 0, 0),
            traces: 3,
            sessions: 2,
            errored_sessions: 1,
            cost: Cost {
                sum: 345_500,
                average: 345_500.0 / 3.0,
                median: Median::Exact(45_500.0),
            },
            tokens: [200, 100, 20, 300],
            average_duration_ms: 7_000.0 / 3.0, // (2000 + 1000 + 4000) / 3
            active_days: 3,
            days: vec![
                ("2026-03-03", 1, 0, 1, 0, 300_000),
                ("2026-03-04", 1, 1, 1, 1, 0),
                ("2026-03-05", 1, 0, 1, 0, 45_500),
            ],
            issues: vec![],
            behaviours: vec![("abandoned", 1, 1, at(4, 12, 0, 0, 0), at(4, 12, 0, 0, 0))],
        },
    ]
}

// ---------------------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------------------

fn users_request(from: i64, to: i64, trends: &[u32]) -> ListUsersRequest {
    ListUsersRequest {
        range: range(from, to),
        trend_buckets: trends.to_vec(),
        ..Default::default()
    }
}

async fn list_users(stack: &Stack, request: ListUsersRequest) -> ListUsersResponse {
    stack
        .query_client()
        .await
        .list_users(stack.authorized(request.clone()))
        .await
        .unwrap_or_else(|e| panic!("list users {request:?}: {e}"))
        .into_inner()
}

async fn ordered_ids(
    stack: &Stack,
    from: i64,
    to: i64,
    field: UserOrderField,
    direction: OrderDirection,
) -> Vec<String> {
    list_users(
        stack,
        ListUsersRequest {
            range: range(from, to),
            order_field: field as i32,
            order_direction: direction as i32,
            ..Default::default()
        },
    )
    .await
    .users
    .into_iter()
    .map(|u| u.user_id)
    .collect()
}

async fn search(stack: &Stack, from: i64, to: i64, text: &str) -> ListUsersResponse {
    list_users(
        stack,
        ListUsersRequest {
            range: range(from, to),
            search: text.to_owned(),
            ..Default::default()
        },
    )
    .await
}

fn ids(response: &ListUsersResponse) -> Vec<&str> {
    response.users.iter().map(|u| u.user_id.as_str()).collect()
}

async fn sessions(stack: &Stack, request: ListSessionsRequest) -> ListSessionsResponse {
    stack
        .query_client()
        .await
        .list_sessions(stack.authorized(request.clone()))
        .await
        .unwrap_or_else(|e| panic!("list sessions {request:?}: {e}"))
        .into_inner()
}

fn sessions_of(user: &str) -> ListSessionsRequest {
    ListSessionsRequest {
        user_id: user.to_owned(),
        ..Default::default()
    }
}

async fn breakdowns(stack: &Stack, user: &str, range: Option<TimeRange>) -> Breakdowns {
    stack
        .query_client()
        .await
        .get_breakdowns(stack.authorized(GetBreakdownsRequest {
            user_id: user.to_owned(),
            range,
        }))
        .await
        .expect("breakdowns")
        .into_inner()
}

async fn overview(stack: &Stack, from: i64, to: i64) -> UsersOverview {
    stack
        .query_client()
        .await
        .get_users_overview(stack.authorized(GetUsersOverviewRequest {
            range: range(from, to),
        }))
        .await
        .expect("overview")
        .into_inner()
}

#[track_caller]
fn check_invalid<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    what: &str,
) {
    match result {
        Ok(answer) => panic!("{what}: expected INVALID_ARGUMENT, got {answer:?}"),
        Err(status) => assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}"),
    }
}

#[track_caller]
fn check_unauthenticated<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    what: &str,
) {
    match result {
        Ok(answer) => panic!("{what}: expected UNAUTHENTICATED, got {answer:?}"),
        Err(status) => assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}"),
    }
}

fn with_key<T>(key: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii key"),
    );
    request
}

// ---------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn every_figure_of_the_users_page_matches_a_hand_count() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        ingest_fixture(&stack).await;
        let (_, other_key) = userlens_storage::keys::create_key(&database.db, "other")
            .await
            .expect("create a second project's key");
        // Twice: the second round may be answered from the result cache.
        for round in 0..2 {
            let what = format!("{:?} round {round}", database.backend);
            check_overviews(&stack, &what).await;
            check_users_tables(&stack, &what).await;
            check_orders(&stack, &what).await;
            check_search(&stack, &what).await;
            check_details(&stack, &what).await;
            check_all_breakdowns(&stack, &what).await;
            check_all_sessions(&stack, &what).await;
            check_unknown_user_and_other_project(&stack, &other_key, &what).await;
            check_errors(&stack, &what).await;
        }
        stack.stop().await;
    });
}

async fn check_overviews(stack: &Stack, what: &str) {
    check_overview(
        &overview(stack, R1_FROM, R1_TO).await,
        &r1_overview(),
        &format!("{what} overview R1"),
    );
    check_overview(
        &overview(stack, R2_FROM, R2_TO).await,
        &r2_overview(),
        &format!("{what} overview R2"),
    );

    // SPEC's own example: a 30-day range not aligned to days. 12 h buckets would run from
    // 03-01 00:00 to 03-31 00:00 = 61, so 1 d: 31 buckets, 03-01 to 03-31. `from` is 1 ms
    // after T14, which drops out (o'brien has no trace in range).
    check_overview(
        &overview(stack, at(1, 0, 0, 0, 1), at(31, 0, 0, 0, 1)).await,
        &Overview {
            unique_users: 5,
            new_users: 5, // everyone's first trace but o'brien's is in range
            traces: 19,
            traces_with_user: 16,
            user_trace_share: 16.0 / 19.0,
            traces_per_user: 16.0 / 5.0,
            sessions: 13,           // all but s-o1
            sessions_with_user: 11, // all but s-o1, s-anon, hex19
            // alice 3 + bob 3 + carol 2 + 100%_user 2 + MÜLLER 2 = 12, over 5
            sessions_per_user: 12.0 / 5.0,
            bucket_seconds: 86_400,
            bucket_count: 31,
            first_start: at(1, 0, 0, 0, 0),
            last_start: at(31, 0, 0, 0, 0),
            non_empty: vec![
                (at(1, 0, 0, 0, 0), b(1, 1, 1, 1, 0, 0)), // T1 (T14 is before `from`)
                // T18 (anon, s-anon, err), T6 (bob, s-shared), T2 (alice, s-a1, err),
                // T10 (carol, s-shared)
                (at(2, 0, 0, 0, 0), b(4, 3, 3, 3, 2, 2)),
                // T7 (bob, s-b1, err), T20 (anon, s-b1), T15 (MÜLLER, s-m1), T3 (alice, s-a2),
                // T19 (anon, hex19), T12 (100%_user, hex12), T13 (100%_user, hex13, err)
                (at(3, 0, 0, 0, 0), b(7, 5, 4, 6, 2, 2)),
                // T8 (bob, s-b1), T9 (bob, s-b2), T16 (MÜLLER, s-m1, err)
                (at(4, 0, 0, 0, 0), b(3, 3, 2, 3, 1, 1)),
                // T4 (alice, s-a3), T17 (MÜLLER, s-m2)
                (at(5, 0, 0, 0, 0), b(2, 2, 2, 2, 0, 0)),
                (at(6, 0, 0, 0, 0), b(1, 1, 1, 1, 0, 0)), // T5
                (at(7, 0, 0, 0, 0), b(1, 1, 1, 1, 1, 1)), // T11 (err)
            ],
        },
        &format!("{what} overview of 30 unaligned days"),
    );

    // A window with no trace at all: zeros, and zero-filled buckets.
    // [03-10 00:00, 03-10 00:30): 30 one-minute buckets.
    let empty = overview(stack, at(10, 0, 0, 0, 0), at(10, 0, 30, 0, 0)).await;
    check_overview(
        &empty,
        &Overview {
            unique_users: 0,
            new_users: 0,
            traces: 0,
            traces_with_user: 0,
            user_trace_share: 0.0,
            traces_per_user: 0.0,
            sessions: 0,
            sessions_with_user: 0,
            sessions_per_user: 0.0,
            bucket_seconds: 60,
            bucket_count: 30,
            first_start: at(10, 0, 0, 0, 0),
            last_start: at(10, 0, 29, 0, 0),
            non_empty: vec![],
        },
        &format!("{what} overview of an empty window"),
    );
}

async fn check_users_tables(stack: &Stack, what: &str) {
    // R1, default order, every column of every row.
    let r1 = list_users(stack, users_request(R1_FROM, R1_TO, &[7, 14])).await;
    let what_r1 = format!("{what} users R1");
    check_rows(&r1, &r1_rows(), &what_r1);
    assert_eq!(r1.total_count, 6, "{what_r1}: total count");
    assert!(!r1.has_next_page, "{what_r1}: one page");
    assert_eq!(r1.end_cursor, r1.users[5].cursor, "{what_r1}: end cursor");
    // Rollup over the 6 users: sum of sums 1_375_000 + 1_046_001 + 321_000 + 1
    // + 300_000_000 + 345_500 = 303_087_502; mean of averages (275_000 + 261_500.25
    // + 160_500 + 0.5 + 300_000_000 + 115_166.67) / 6 = (3_609_746_009 / 12) / 6; median of
    // medians: sorted [0.5, 21_500.5, 45_500, 123_000, 160_500, 300_000_000]
    // → (45_500 + 123_000) / 2.
    let r1_rollup = Cost {
        sum: 303_087_502,
        average: 3_609_746_009.0 / 72.0,
        median: Median::Mean(45_500.0, 123_000.0),
    };
    check_cost(
        r1.cost_rollup.as_ref(),
        r1_rollup,
        &format!("{what_r1}: cost rollup"),
    );

    // Pages of 4: the rollup and total still cover every matching user.
    let mut request = users_request(R1_FROM, R1_TO, &[7, 14]);
    request.first = Some(4);
    let page1 = list_users(stack, request.clone()).await;
    check_rows(&page1, &r1_rows()[..4], &format!("{what_r1} page 1"));
    assert!(page1.has_next_page, "{what_r1} page 1: has next page");
    assert_eq!(page1.total_count, 6, "{what_r1} page 1: total count");
    assert_eq!(
        page1.end_cursor, page1.users[3].cursor,
        "{what_r1} page 1: end cursor"
    );
    check_cost(
        page1.cost_rollup.as_ref(),
        r1_rollup,
        &format!("{what_r1} page 1: cost rollup"),
    );
    request.after = page1.end_cursor.clone();
    let page2 = list_users(stack, request.clone()).await;
    check_rows(&page2, &r1_rows()[4..], &format!("{what_r1} page 2"));
    assert!(!page2.has_next_page, "{what_r1} page 2: last page");
    assert_eq!(page2.total_count, 6, "{what_r1} page 2: total count");
    check_cost(
        page2.cost_rollup.as_ref(),
        r1_rollup,
        &format!("{what_r1} page 2: cost rollup"),
    );
    // Any row's cursor continues right after that row (MÜLLER is the 3rd row).
    request.after = r1.users[2].cursor.clone();
    request.first = Some(2);
    let from_row = list_users(stack, request).await;
    check_rows(
        &from_row,
        &r1_rows()[3..5],
        &format!("{what_r1} after the 3rd row"),
    );
    assert!(
        from_row.has_next_page,
        "{what_r1} after the 3rd row: has next page"
    );

    // R2.
    let r2 = list_users(stack, users_request(R2_FROM, R2_TO, &[3, 5])).await;
    let what_r2 = format!("{what} users R2");
    check_rows(&r2, &r2_rows(), &what_r2);
    assert_eq!(r2.total_count, 5, "{what_r2}: total count");
    assert!(!r2.has_next_page, "{what_r2}: one page");
    // Sums 1_044_001 + 1 + 463_000 + 300_000 + 321_000 = 2_128_002; averages
    // (348_000.33 + 0.5 + 231_500 + 300_000 + 321_000) / 5 = 1_440_601 / 6; medians sorted
    // [0.5, 33_000, 231_500, 300_000, 321_000] → 231_500.
    check_cost(
        r2.cost_rollup.as_ref(),
        Cost {
            sum: 2_128_002,
            average: 1_440_601.0 / 6.0,
            median: Median::Exact(231_500.0),
        },
        &format!("{what_r2}: cost rollup"),
    );

    // The default trend is 14 slices; 1 and 60 slices are accepted.
    let default_trend = list_users(stack, users_request(R1_FROM, R1_TO, &[])).await;
    let trends: Vec<(u32, Vec<i64>)> = default_trend.users[0]
        .trends
        .iter()
        .map(|t| (t.buckets, t.counts.clone()))
        .collect();
    assert_eq!(
        trends,
        vec![(14, vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])],
        "{what}: carol's default trend"
    );
    let extremes = list_users(stack, users_request(R1_FROM, R1_TO, &[1, 60])).await;
    let alice = extremes
        .users
        .iter()
        .find(|u| u.user_id == "alice")
        .expect("alice");
    assert_eq!(alice.trends[0].buckets, 1, "{what}: 1 slice");
    assert_eq!(
        alice.trends[0].counts,
        vec![5],
        "{what}: alice's 1-slice trend"
    );
    assert_eq!(alice.trends[1].buckets, 60, "{what}: 60 slices");
    // 60 slices of 7 days = 2.8 h each: T1 03-01 09:00 → 3 (9 h / 2.8 h = 3.2); T2 03-02
    // 11:00 → 12 (35 h / 2.8 = 12.5); T3 03-03 14:00 → 22 (62 h → 22.1); T4 03-05 16:00 →
    // 40 (112 h / 2.8 h = 40 exactly: the start of slice 40); T5 03-06 10:00 → 46 (130 h → 46.4).
    let mut expected_60 = vec![0i64; 60];
    for slice in [3, 12, 22, 40, 46] {
        expected_60[slice] = 1;
    }
    assert_eq!(
        alice.trends[1].counts, expected_60,
        "{what}: alice's 60-slice trend"
    );
}

/// (range, field, direction, expected user ids)
type OrderCase = (
    (i64, i64),
    UserOrderField,
    OrderDirection,
    &'static [&'static str],
);
const R1: (i64, i64) = (R1_FROM, R1_TO);
const R2: (i64, i64) = (R2_FROM, R2_TO);

async fn check_orders(stack: &Stack, what: &str) {
    use OrderDirection::{Asc, Desc};
    use UserOrderField as F;
    let cases: Vec<OrderCase> = vec![
        // medians: 100%_user 0.5, bob 21_500.5, MÜLLER 45_500, alice 123_000, carol 160_500,
        // o'brien 300_000_000
        (
            R1,
            F::CostMedian,
            Asc,
            &["100%_user", "bob", "MÜLLER", "alice", "carol", "o'brien"],
        ),
        // R2 medians: carol 321_000, MÜLLER 300_000, alice 231_500, bob 33_000, 100%_user 0.5
        (
            R2,
            F::CostMedian,
            Desc,
            &["carol", "MÜLLER", "alice", "bob", "100%_user"],
        ),
        // rates: 0.5 for 100%_user, MÜLLER, carol (by id: '1' < 'M' < 'c'); 1/3 alice, bob; 0 o'brien
        (
            R1,
            F::ErrorRate,
            Desc,
            &["100%_user", "MÜLLER", "carol", "alice", "bob", "o'brien"],
        ),
        (
            R1,
            F::ErrorRate,
            Asc,
            &["o'brien", "alice", "bob", "100%_user", "MÜLLER", "carol"],
        ),
        // R2 rates: bob, 100%_user, alice 0.5; MÜLLER, carol 0
        (
            R2,
            F::ErrorRate,
            Desc,
            &["100%_user", "alice", "bob", "MÜLLER", "carol"],
        ),
        // emails: o'brien "" < alice@new.example < bob@x.io < carol\ops@x.io < hm@x.de < pct@x.io
        (
            R1,
            F::Email,
            Asc,
            &["o'brien", "alice", "bob", "carol", "MÜLLER", "100%_user"],
        ),
        // R2 with the lifetime email: alice sorts as alice@new.example (z.alice@old.example
        // would put her first)
        (
            R2,
            F::Email,
            Desc,
            &["100%_user", "MÜLLER", "carol", "bob", "alice"],
        ),
        (
            R1,
            F::UserId,
            Asc,
            &["100%_user", "MÜLLER", "alice", "bob", "carol", "o'brien"],
        ),
        (
            R1,
            F::UserId,
            Desc,
            &["o'brien", "carol", "bob", "alice", "MÜLLER", "100%_user"],
        ),
        // errored sessions: 1 for everyone but o'brien (0): ties by id
        (
            R1,
            F::ErroredSessions,
            Desc,
            &["100%_user", "MÜLLER", "alice", "bob", "carol", "o'brien"],
        ),
        // traces: o'brien 1; 100%_user, carol 2; MÜLLER 3; bob 4; alice 5
        (
            R1,
            F::Traces,
            Asc,
            &["o'brien", "100%_user", "carol", "MÜLLER", "bob", "alice"],
        ),
        // sessions: alice, bob 3; 100%_user, MÜLLER, carol 2; o'brien 1
        (
            R1,
            F::Sessions,
            Desc,
            &["alice", "bob", "100%_user", "MÜLLER", "carol", "o'brien"],
        ),
        // sums: o'brien 300_000_000, alice 1_375_000, bob 1_046_001, MÜLLER 345_500,
        // carol 321_000, 100%_user 1
        (
            R1,
            F::CostSum,
            Desc,
            &["o'brien", "alice", "bob", "MÜLLER", "carol", "100%_user"],
        ),
        // averages: 100%_user 0.5, MÜLLER 115_166.67, carol 160_500, bob 261_500.25,
        // alice 275_000, o'brien 300_000_000
        (
            R1,
            F::CostAverage,
            Asc,
            &["100%_user", "MÜLLER", "carol", "bob", "alice", "o'brien"],
        ),
        // token totals: bob 1315, alice 865, carol 600, MÜLLER 300, o'brien 42, 100%_user 2
        (
            R1,
            F::Tokens,
            Desc,
            &["bob", "alice", "carol", "MÜLLER", "o'brien", "100%_user"],
        ),
        (
            R1,
            F::FirstSeen,
            Asc,
            &["o'brien", "alice", "bob", "carol", "MÜLLER", "100%_user"],
        ),
        // R2 last seen: carol 03-02 12:00, MÜLLER 03-03 09:15, alice 14:00, 100%_user 20:00, bob 03-04
        (
            R2,
            F::LastSeen,
            Asc,
            &["carol", "MÜLLER", "alice", "100%_user", "bob"],
        ),
        // R2 first seen desc: 100%_user 03-03 20:00, MÜLLER 09:15, carol 03-02 12:00, alice 11:00, bob 10:30
        (
            R2,
            F::FirstSeen,
            Desc,
            &["100%_user", "MÜLLER", "carol", "alice", "bob"],
        ),
    ];
    for ((from, to), field, direction, expected) in cases {
        let ids = ordered_ids(stack, from, to, field, direction).await;
        assert_eq!(
            ids, expected,
            "{what}: order {field:?} {direction:?} from {from}"
        );
    }
    // Walking an order with ties page by page gives the same order.
    let mut walked = Vec::new();
    let mut after = String::new();
    loop {
        let page = list_users(
            stack,
            ListUsersRequest {
                range: range(R1_FROM, R1_TO),
                order_field: F::ErroredSessions as i32,
                order_direction: Desc as i32,
                first: Some(1),
                after: after.clone(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(page.users.len(), 1, "{what}: pages of one");
        walked.push(page.users[0].user_id.clone());
        if !page.has_next_page {
            break;
        }
        after = page.end_cursor;
    }
    assert_eq!(
        walked,
        vec!["100%_user", "MÜLLER", "alice", "bob", "carol", "o'brien"],
        "{what}: errored sessions desc, one per page"
    );
}

async fn check_search(stack: &Stack, what: &str) {
    let zero = Cost {
        sum: 0,
        average: 0.0,
        median: Median::Exact(0.0),
    };
    // `%`, `_` and `\` are literal: only the user whose id or email holds one.
    for (text, expected) in [
        ("%", vec!["100%_user"]),
        ("_", vec!["100%_user"]),
        ("0%_u", vec!["100%_user"]),
        ("\\", vec!["carol"]), // carol\ops@x.io
        ("l\\o", vec!["carol"]),
        ("müller", vec!["MÜLLER"]), // Unicode lowercase
        ("üll", vec!["MÜLLER"]),
        ("  BOB  ", vec!["bob"]), // trimmed, case-insensitive
        ("O'B", vec!["o'brien"]),
        ("PCT@X", vec!["100%_user"]),   // email, case-insensitive
        ("new.example", vec!["alice"]), // the lifetime email
        ("x.io", vec!["carol", "bob", "100%_user"]), // carol\ops@x.io, bob@x.io, pct@x.io
        (
            "",
            vec!["carol", "alice", "MÜLLER", "bob", "100%_user", "o'brien"],
        ), // no filter
        (
            "   ",
            vec!["carol", "alice", "MÜLLER", "bob", "100%_user", "o'brien"],
        ), // trimmed to empty
    ] {
        let found = search(stack, R1_FROM, R1_TO, text).await;
        assert_eq!(ids(&found), expected, "{what}: search {text:?} in R1");
        assert_eq!(
            found.total_count,
            expected.len() as i64,
            "{what}: search {text:?} total count"
        );
    }
    // Matched users' figures count all their in-range traces, whatever email those carry.
    let found = search(stack, R2_FROM, R2_TO, "NEW.EXAMPLE").await;
    let alice_r2: Vec<Row> = r2_rows().into_iter().filter(|r| r.id == "alice").collect();
    let mut request = users_request(R2_FROM, R2_TO, &[3, 5]);
    request.search = "NEW.EXAMPLE".into();
    let found_with_trends = list_users(stack, request).await;
    check_rows(
        &found_with_trends,
        &alice_r2,
        &format!("{what}: search new.example in R2"),
    );
    assert_eq!(found.total_count, 1);
    // Rollup of one user: that user's own figures (T2, T3: 456_000 and 7_000).
    check_cost(
        found.cost_rollup.as_ref(),
        Cost {
            sum: 463_000,
            average: 231_500.0,
            median: Median::Mean(7_000.0, 456_000.0),
        },
        &format!("{what}: search new.example in R2: rollup"),
    );
    let r1_alice = search(stack, R1_FROM, R1_TO, "new.example").await;
    assert_eq!(
        r1_alice.users[0].traces, 5,
        "{what}: alice's every R1 trace counts"
    );

    // Rollup of the x.io users (carol, bob, 100%_user): sums 321_000 + 1_046_001 + 1;
    // averages (160_500 + 261_500.25 + 0.5) / 3 = 1_688_003 / 12; medians sorted
    // [0.5, 21_500.5, 160_500] → 21_500.5.
    let found = search(stack, R1_FROM, R1_TO, "x.io").await;
    check_cost(
        found.cost_rollup.as_ref(),
        Cost {
            sum: 1_367_002,
            average: 1_688_003.0 / 12.0,
            median: Median::Exact(21_500.5),
        },
        &format!("{what}: search x.io: rollup"),
    );

    // The email searched is the lifetime one: the old one finds nobody, in R1 and in R2
    // (where alice's only emails in range are the old one).
    for (from, to, name) in [(R1_FROM, R1_TO, "R1"), (R2_FROM, R2_TO, "R2")] {
        let found = search(stack, from, to, "old.example").await;
        assert!(
            found.users.is_empty(),
            "{what}: search old.example in {name}: {:?}",
            ids(&found)
        );
        assert_eq!(
            found.total_count, 0,
            "{what}: search old.example in {name}: total"
        );
        assert!(!found.has_next_page);
        assert_eq!(found.end_cursor, "", "{what}: empty page, empty end cursor");
        check_cost(
            found.cost_rollup.as_ref(),
            zero,
            &format!("{what}: search old.example in {name}: rollup"),
        );
    }
    // o'brien has no trace in R2.
    let found = search(stack, R2_FROM, R2_TO, "brien").await;
    assert!(found.users.is_empty(), "{what}: o'brien is not in R2");
    // A wildcard reading of `_` or `%` would match these; literal matching finds nothing.
    for text in ["a_i", "b%b", "%%", "__", "mallory", "evil"] {
        let found = search(stack, R1_FROM, R1_TO, text).await;
        assert!(
            found.users.is_empty(),
            "{what}: search {text:?}: {:?}",
            ids(&found)
        );
    }
    // 500 characters are accepted (two bytes each here).
    let found = search(stack, R1_FROM, R1_TO, &"ü".repeat(500)).await;
    assert!(found.users.is_empty(), "{what}: 500-character search");
}

async fn check_details(stack: &Stack, what: &str) {
    // Two series: a year (holds all of March 2026 until 2027-02-28), and one starting on
    // 2026-03-04, which cuts the first days out.
    let today = today_days();
    let march_4 = at(4, 0, 0, 0, 0) / DAY_NS;
    let cut = (today - march_4 + 1).clamp(1, 365) as u32;
    let days = vec![365, cut];
    if today - march_4 + 1 > 365 {
        eprintln!("note: 2026-03 is more than a year ago: activity series only hold zeros");
    }
    for expected in details() {
        let before = today_days();
        let detail = stack
            .query_client()
            .await
            .get_user_detail(stack.authorized(GetUserDetailRequest {
                user_id: expected.id.to_owned(),
                activity_days: days.clone(),
            }))
            .await
            .expect("user detail")
            .into_inner();
        let after = today_days();
        let user = detail
            .user
            .unwrap_or_else(|| panic!("{what}: {} is known", expected.id));
        check_detail(&user, &expected, &days, (before, after), what);
    }
    // The default series is 30 days (all zeros for a fixture in March 2026 seen from later
    // than April).
    let detail = stack
        .query_client()
        .await
        .get_user_detail(stack.authorized(GetUserDetailRequest {
            user_id: "alice".into(),
            activity_days: vec![],
        }))
        .await
        .expect("user detail")
        .into_inner()
        .user
        .expect("alice");
    assert_eq!(detail.activities.len(), 1, "{what}: one default series");
    assert_eq!(detail.activities[0].days, 30, "{what}: default 30 days");
    assert_eq!(
        detail.activities[0].points.len(),
        30,
        "{what}: default 30 points"
    );
}

async fn check_all_breakdowns(stack: &Stack, what: &str) {
    let lifetime = None;
    // alice: gpt-4o/openai T1 100/50 123_000, T2 200/80/30 456_000, T4 100/40 263_000 →
    // 3 calls, 3 traces, 400/170/30, 842_000; gpt-4o-mini/openai T4 200/80 526_000. T3's
    // call has no model: only under anthropic. T4's wrapper root is not a leaf.
    check_breakdowns(
        &breakdowns(stack, "alice", lifetime).await,
        &[
            ("gpt-4o", Some("openai"), 3, 3, [400, 170, 30, 570], 842_000),
            (
                "gpt-4o-mini",
                Some("openai"),
                1,
                1,
                [200, 80, 0, 280],
                526_000,
            ),
        ],
        &[
            ("openai", 4, 3, [600, 250, 30, 850], 1_368_000),
            ("anthropic", 1, 1, [10, 5, 0, 15], 7_000),
        ],
        // calculator ×2 in T5; search errored in T2
        &[("calculator", 2, 0, 1), ("search", 1, 1, 1)],
        &format!("{what} breakdowns alice"),
    );
    // alice in R2: T2 and T3. Providers tie on 1 call: by name.
    check_breakdowns(
        &breakdowns(stack, "alice", range(R2_FROM, R2_TO)).await,
        &[("gpt-4o", Some("openai"), 1, 1, [200, 80, 30, 280], 456_000)],
        &[
            ("anthropic", 1, 1, [10, 5, 0, 15], 7_000),
            ("openai", 1, 1, [200, 80, 30, 280], 456_000),
        ],
        &[("search", 1, 1, 1)],
        &format!("{what} breakdowns alice R2"),
    );
    // bob: every model 1 call, so by model then provider (null first).
    check_breakdowns(
        &breakdowns(stack, "bob", lifetime).await,
        &[
            (
                "claude-3-5-sonnet",
                Some("anthropic"),
                1,
                1,
                [1000, 200, 400, 1200],
                1_001_000,
            ), // T6
            ("gpt-4o", None, 1, 1, [7, 3, 0, 10], 2_000), // T9
            ("gpt-4o", Some("openai"), 1, 1, [10, 10, 0, 20], 10_001), // T8
            ("gpt-4o-mini", Some("openai"), 1, 1, [50, 25, 0, 75], 33_000), // T7
            ("llama-3", None, 1, 1, [5, 5, 0, 10], 0),    // T9
        ],
        &[
            ("openai", 2, 2, [60, 35, 0, 95], 43_001), // T7 + T8; T9's calls have no provider
            ("anthropic", 1, 1, [1000, 200, 400, 1200], 1_001_000),
        ],
        &[("search", 1, 0, 1)],
        &format!("{what} breakdowns bob"),
    );
    check_breakdowns(
        &breakdowns(stack, "bob", range(R2_FROM, R2_TO)).await,
        &[
            (
                "claude-3-5-sonnet",
                Some("anthropic"),
                1,
                1,
                [1000, 200, 400, 1200],
                1_001_000,
            ),
            ("gpt-4o", Some("openai"), 1, 1, [10, 10, 0, 20], 10_001),
            ("gpt-4o-mini", Some("openai"), 1, 1, [50, 25, 0, 75], 33_000),
        ],
        &[
            ("openai", 2, 2, [60, 35, 0, 95], 43_001),
            ("anthropic", 1, 1, [1000, 200, 400, 1200], 1_001_000),
        ],
        &[("search", 1, 0, 1)],
        &format!("{what} breakdowns bob R2"),
    );
    // carol: tools tie on 1 call: by name.
    check_breakdowns(
        &breakdowns(stack, "carol", lifetime).await,
        &[(
            "claude-3-5-sonnet",
            Some("anthropic"),
            1,
            1,
            [500, 100, 0, 600],
            321_000,
        )],
        &[("anthropic", 1, 1, [500, 100, 0, 600], 321_000)],
        &[("browse", 1, 0, 1), ("search", 1, 1, 1)],
        &format!("{what} breakdowns carol"),
    );
    // carol in a range holding only T11: no model, no provider.
    check_breakdowns(
        &breakdowns(stack, "carol", range(at(7, 0, 0, 0, 0), R1_TO)).await,
        &[],
        &[],
        &[("browse", 1, 0, 1), ("search", 1, 1, 1)],
        &format!("{what} breakdowns carol 03-07"),
    );
    check_breakdowns(
        &breakdowns(stack, "MÜLLER", lifetime).await,
        &[
            (
                "claude-3-5-sonnet",
                Some("anthropic"),
                1,
                1,
                [80, 40, 20, 120],
                45_500,
            ),
            ("gpt-4o", Some("openai"), 1, 1, [120, 60, 0, 180], 300_000),
        ],
        &[
            ("anthropic", 1, 1, [80, 40, 20, 120], 45_500),
            ("openai", 1, 1, [120, 60, 0, 180], 300_000),
        ],
        &[("browse", 1, 1, 1)],
        &format!("{what} breakdowns MÜLLER"),
    );
    check_breakdowns(
        &breakdowns(stack, "100%_user", lifetime).await,
        &[("gpt-4o", Some("openai"), 1, 1, [1, 1, 0, 2], 1)],
        &[("openai", 1, 1, [1, 1, 0, 2], 1)],
        &[],
        &format!("{what} breakdowns 100%_user"),
    );
    // o'brien: two leaf calls in one trace, 0.1 + 0.2 USD.
    check_breakdowns(
        &breakdowns(stack, "o'brien", None).await,
        &[("gpt-4o", Some("openai"), 2, 1, [40, 2, 0, 42], 300_000_000)],
        &[("openai", 2, 1, [40, 2, 0, 42], 300_000_000)],
        &[],
        &format!("{what} breakdowns o'brien"),
    );
    check_breakdowns(
        &breakdowns(stack, "nobody", None).await,
        &[],
        &[],
        &[],
        &format!("{what} breakdowns of an unknown user"),
    );
}

async fn check_all_sessions(stack: &Stack, what: &str) {
    // Every user, lifetime: newest start first, same start by session id.
    for (user, expected) in [
        ("alice", vec![&S_A3, &S_A2, &S_A1]),
        ("bob", vec![&S_B2, &S_B1, &S_SHARED_BOB]),
        ("carol", vec![&S_C1, &S_SHARED_CAROL]),
        ("100%_user", vec![&S_HEX12, &S_HEX13]),
        ("o'brien", vec![&S_O1]),
        ("MÜLLER", vec![&S_M2, &S_M1]),
    ] {
        let all = sessions(stack, sessions_of(user)).await;
        let what = format!("{what} sessions {user}");
        check_sessions(&all, &expected, &what);
        assert_eq!(
            all.total_count,
            expected.len() as i64,
            "{what}: total count"
        );
        assert!(!all.has_next_page, "{what}: one page");
        assert_eq!(
            all.end_cursor,
            all.sessions.last().unwrap().cursor,
            "{what}: end cursor"
        );
    }

    // Errored only.
    for (user, expected) in [
        ("alice", vec![&S_A1]),
        ("bob", vec![&S_B1]),
        ("carol", vec![&S_C1]),
        ("100%_user", vec![&S_HEX13]),
        ("o'brien", vec![]),
        ("MÜLLER", vec![&S_M1]),
    ] {
        let errored = sessions(
            stack,
            ListSessionsRequest {
                errored_only: true,
                ..sessions_of(user)
            },
        )
        .await;
        let what = format!("{what} errored sessions {user}");
        check_sessions(&errored, &expected, &what);
        assert_eq!(
            errored.total_count,
            expected.len() as i64,
            "{what}: total count"
        );
    }

    // In R2: only the traces in range count (s-a1 is T2 alone; bob's s-b2 is out).
    let alice_r2 = sessions(
        stack,
        ListSessionsRequest {
            range: range(R2_FROM, R2_TO),
            ..sessions_of("alice")
        },
    )
    .await;
    check_sessions(
        &alice_r2,
        &[&S_A2, &S_A1_R2],
        &format!("{what} sessions alice R2"),
    );
    assert_eq!(alice_r2.total_count, 2);
    let bob_r2 = sessions(
        stack,
        ListSessionsRequest {
            range: range(R2_FROM, R2_TO),
            ..sessions_of("bob")
        },
    )
    .await;
    check_sessions(
        &bob_r2,
        &[&S_B1, &S_SHARED_BOB],
        &format!("{what} sessions bob R2"),
    );
    assert_eq!(bob_r2.total_count, 2);
    let bob_r2_errored = sessions(
        stack,
        ListSessionsRequest {
            range: range(R2_FROM, R2_TO),
            errored_only: true,
            ..sessions_of("bob")
        },
    )
    .await;
    check_sessions(
        &bob_r2_errored,
        &[&S_B1],
        &format!("{what} errored sessions bob R2"),
    );
    assert_eq!(bob_r2_errored.total_count, 1);
    // MÜLLER in R2: s-m1 through T15 alone, not errored there (T16 is outside).
    let muller_r2 = sessions(
        stack,
        ListSessionsRequest {
            range: range(R2_FROM, R2_TO),
            ..sessions_of("MÜLLER")
        },
    )
    .await;
    check_sessions(
        &muller_r2,
        &[&Sess {
            id: "s-m1",
            start: at(3, 9, 15, 0, 0),
            end: at(3, 9, 15, 2, 0),
            duration_ms: 2_000.0,
            traces: 1,
            errored_traces: 0,
            errored: false,
            cost: 300_000,
            tokens: [120, 60, 0, 180],
        }],
        &format!("{what} sessions MÜLLER R2"),
    );
    let muller_r2_errored = sessions(
        stack,
        ListSessionsRequest {
            range: range(R2_FROM, R2_TO),
            errored_only: true,
            ..sessions_of("MÜLLER")
        },
    )
    .await;
    assert!(
        muller_r2_errored.sessions.is_empty(),
        "{what}: MÜLLER has no errored session in R2"
    );
    assert_eq!(muller_r2_errored.total_count, 0);

    // Pagination, one by one, until has_next_page is false.
    for (user, page_size, total, expected) in [
        ("alice", 1, 3, vec![vec![&S_A3], vec![&S_A2], vec![&S_A1]]),
        ("bob", 2, 3, vec![vec![&S_B2, &S_B1], vec![&S_SHARED_BOB]]),
        ("100%_user", 1, 2, vec![vec![&S_HEX12], vec![&S_HEX13]]),
    ] {
        let mut after = String::new();
        for (i, expected_page) in expected.iter().enumerate() {
            let page = sessions(
                stack,
                ListSessionsRequest {
                    first: Some(page_size),
                    after: after.clone(),
                    ..sessions_of(user)
                },
            )
            .await;
            let what = format!("{what} sessions {user} page {i} of {page_size}");
            check_sessions(&page, expected_page, &what);
            assert_eq!(page.total_count, total, "{what}: total count");
            assert_eq!(
                page.has_next_page,
                i + 1 < expected.len(),
                "{what}: has next page"
            );
            assert_eq!(
                page.end_cursor,
                page.sessions.last().unwrap().cursor,
                "{what}: end cursor"
            );
            after = page.end_cursor;
        }
    }
    // A row's cursor continues right after it: after alice's first session (s-a3).
    let all = sessions(stack, sessions_of("alice")).await;
    let rest = sessions(
        stack,
        ListSessionsRequest {
            after: all.sessions[0].cursor.clone(),
            ..sessions_of("alice")
        },
    )
    .await;
    check_sessions(
        &rest,
        &[&S_A2, &S_A1],
        &format!("{what} alice sessions after s-a3"),
    );
    assert_eq!(rest.total_count, 3);
}

async fn check_unknown_user_and_other_project(stack: &Stack, other_key: &str, what: &str) {
    // Unknown users (ids are case-sensitive).
    for user in ["nobody", "ALICE", "müller", "mallory", ""] {
        let detail = stack
            .query_client()
            .await
            .get_user_detail(stack.authorized(GetUserDetailRequest {
                user_id: user.into(),
                activity_days: vec![],
            }))
            .await
            .expect("user detail")
            .into_inner();
        assert!(
            detail.user.is_none(),
            "{what}: {user:?} is unknown: {detail:?}"
        );
        let none = sessions(stack, sessions_of(user)).await;
        assert!(none.sessions.is_empty(), "{what}: {user:?} has no sessions");
        assert_eq!(none.total_count, 0);
        assert!(!none.has_next_page);
        assert_eq!(none.end_cursor, "");
    }

    // Another project's key sees none of it.
    let mut client = stack.query_client().await;
    let users = client
        .list_users(with_key(other_key, users_request(R1_FROM, R1_TO, &[])))
        .await
        .expect("other project's users")
        .into_inner();
    assert!(
        users.users.is_empty(),
        "{what}: other project: {:?}",
        ids(&users)
    );
    assert_eq!(users.total_count, 0);
    check_cost(
        users.cost_rollup.as_ref(),
        Cost {
            sum: 0,
            average: 0.0,
            median: Median::Exact(0.0),
        },
        &format!("{what}: other project rollup"),
    );
    let other_overview = client
        .get_users_overview(with_key(
            other_key,
            GetUsersOverviewRequest {
                range: range(R1_FROM, R1_TO),
            },
        ))
        .await
        .expect("other project's overview")
        .into_inner();
    assert_eq!(
        (
            other_overview.unique_users,
            other_overview.traces,
            other_overview.sessions
        ),
        (0, 0, 0),
        "{what}: other project overview"
    );
    let histogram = other_overview.histogram.expect("histogram");
    assert_eq!(
        histogram.buckets.len(),
        56,
        "{what}: other project: 56 empty buckets"
    );
    assert!(
        histogram
            .buckets
            .iter()
            .all(|b| b.traces == 0 && b.sessions == 0)
    );
    for user in ["alice", "bob", "MÜLLER"] {
        let detail = client
            .get_user_detail(with_key(
                other_key,
                GetUserDetailRequest {
                    user_id: user.into(),
                    activity_days: vec![],
                },
            ))
            .await
            .expect("other project's detail")
            .into_inner();
        assert!(
            detail.user.is_none(),
            "{what}: other project does not know {user}"
        );
        let other_sessions = client
            .list_sessions(with_key(other_key, sessions_of(user)))
            .await
            .expect("other project's sessions")
            .into_inner();
        assert!(other_sessions.sessions.is_empty());
        assert_eq!(other_sessions.total_count, 0);
        let other_breakdowns = client
            .get_breakdowns(with_key(
                other_key,
                GetBreakdownsRequest {
                    user_id: user.into(),
                    range: None,
                },
            ))
            .await
            .expect("other project's breakdowns")
            .into_inner();
        assert_eq!(
            other_breakdowns,
            Breakdowns::default(),
            "{what}: other project's breakdowns of {user}"
        );
    }
}

async fn check_errors(stack: &Stack, what: &str) {
    let mut client = stack.query_client().await;
    let users = |f: &dyn Fn(&mut ListUsersRequest)| {
        let mut request = users_request(R1_FROM, R1_TO, &[]);
        f(&mut request);
        request
    };
    for (name, request) in [
        ("first 0", users(&|r| r.first = Some(0))),
        ("first 201", users(&|r| r.first = Some(201))),
        ("trend 0", users(&|r| r.trend_buckets = vec![0])),
        ("trend 61", users(&|r| r.trend_buckets = vec![61])),
        (
            "trend 14 and 61",
            users(&|r| r.trend_buckets = vec![14, 61]),
        ),
        ("to == from", users(&|r| r.range = range(R1_FROM, R1_FROM))),
        ("to < from", users(&|r| r.range = range(R1_TO, R1_FROM))),
        (
            "501-character search",
            users(&|r| r.search = "x".repeat(501)),
        ),
        (
            "garbage cursor",
            users(&|r| r.after = "not a cursor!".into()),
        ),
    ] {
        check_invalid(
            client.list_users(stack.authorized(request)).await,
            &format!("{what}: list users {name}"),
        );
    }
    // Bounds are accepted.
    for (name, request) in [
        ("first 1", users(&|r| r.first = Some(1))),
        ("first 200", users(&|r| r.first = Some(200))),
        ("trend 1 and 60", users(&|r| r.trend_buckets = vec![1, 60])),
        (
            "500-character search",
            users(&|r| r.search = "x".repeat(500)),
        ),
    ] {
        client
            .list_users(stack.authorized(request))
            .await
            .unwrap_or_else(|e| panic!("{what}: list users {name} is accepted: {e}"));
    }

    for (name, days) in [
        ("0", vec![0]),
        ("366", vec![366]),
        ("30 and 366", vec![30, 366]),
    ] {
        check_invalid(
            client
                .get_user_detail(stack.authorized(GetUserDetailRequest {
                    user_id: "alice".into(),
                    activity_days: days,
                }))
                .await,
            &format!("{what}: activity days {name}"),
        );
    }
    for days in [vec![1], vec![365]] {
        client
            .get_user_detail(stack.authorized(GetUserDetailRequest {
                user_id: "alice".into(),
                activity_days: days,
            }))
            .await
            .unwrap_or_else(|e| panic!("{what}: activity days 1 and 365 are accepted: {e}"));
    }

    for (name, request) in [
        (
            "to == from",
            GetUsersOverviewRequest {
                range: range(R2_FROM, R2_FROM),
            },
        ),
        (
            "to < from",
            GetUsersOverviewRequest {
                range: range(R2_TO, R2_FROM),
            },
        ),
    ] {
        check_invalid(
            client.get_users_overview(stack.authorized(request)).await,
            &format!("{what}: overview {name}"),
        );
    }

    for (name, request) in [
        (
            "first 0",
            ListSessionsRequest {
                first: Some(0),
                ..sessions_of("alice")
            },
        ),
        (
            "first 201",
            ListSessionsRequest {
                first: Some(201),
                ..sessions_of("alice")
            },
        ),
        (
            "to == from",
            ListSessionsRequest {
                range: range(R1_FROM, R1_FROM),
                ..sessions_of("alice")
            },
        ),
        (
            "to < from",
            ListSessionsRequest {
                range: range(R1_TO, R1_FROM),
                ..sessions_of("alice")
            },
        ),
        (
            "garbage cursor",
            ListSessionsRequest {
                after: "garbage".into(),
                ..sessions_of("alice")
            },
        ),
    ] {
        check_invalid(
            client.list_sessions(stack.authorized(request)).await,
            &format!("{what}: sessions {name}"),
        );
    }

    for (name, range) in [
        ("to == from", range(R1_TO, R1_TO)),
        ("to < from", range(R1_TO, R1_FROM)),
    ] {
        check_invalid(
            client
                .get_breakdowns(stack.authorized(GetBreakdownsRequest {
                    user_id: "alice".into(),
                    range,
                }))
                .await,
            &format!("{what}: breakdowns {name}"),
        );
    }

    // No key, or a key nobody issued.
    for key in [None, Some("not-a-key")] {
        let name = format!("{what}: key {key:?}");
        check_unauthenticated(
            client
                .get_users_overview(wrap_any(
                    key,
                    GetUsersOverviewRequest {
                        range: range(R1_FROM, R1_TO),
                    },
                ))
                .await,
            &format!("{name}: overview"),
        );
        check_unauthenticated(
            client
                .list_users(wrap_any(key, users_request(R1_FROM, R1_TO, &[])))
                .await,
            &format!("{name}: users"),
        );
        check_unauthenticated(
            client
                .get_user_detail(wrap_any(
                    key,
                    GetUserDetailRequest {
                        user_id: "alice".into(),
                        activity_days: vec![],
                    },
                ))
                .await,
            &format!("{name}: detail"),
        );
        check_unauthenticated(
            client
                .list_sessions(wrap_any(key, sessions_of("alice")))
                .await,
            &format!("{name}: sessions"),
        );
        check_unauthenticated(
            client
                .get_breakdowns(wrap_any(
                    key,
                    GetBreakdownsRequest {
                        user_id: "alice".into(),
                        range: None,
                    },
                ))
                .await,
            &format!("{name}: breakdowns"),
        );
    }
}

fn wrap_any<T>(key: Option<&str>, message: T) -> Request<T> {
    match key {
        Some(key) => with_key(key, message),
        None => Request::new(message),
    }
}
