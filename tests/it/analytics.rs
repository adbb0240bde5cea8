//! Period comparison, returning users, retention cohorts, active users, users filters and
//! the CSV export (SPEC §4.8), read back over users-query gRPC, GraphQL and HTTP from one
//! hand-built fixture sent through the real ingest path, on every backend.
//!
//! Every expected value is a literal counted by hand from this table (all times UTC, 2026;
//! 2026-03-02 and 2026-03-09 are Mondays). Each trace is one span, a leaf LLM call with
//! 10 input and 5 output tokens unless noted; costs in nano-USD.
//!
//! | trace | time             | user  | email     | session | errored | model / provider       | cost   | extra             |
//! |-------|------------------|-------|-----------|---------|---------|------------------------|--------|-------------------|
//! | A1    | 02-25 10:00      | ann   | ann@x.io  | s-a1    |         | gpt-4o / openai        | 1_000  |                   |
//! | B1    | 03-02 09:00      | bob   | –         | s-b1    |         | gpt-4o-mini / openai   | 500    |                   |
//! | A2    | 03-03 10:00      | ann   | –         | s-a2    |         | gpt-4o / openai        | 2_000  |                   |
//! | C1    | 03-09 08:00      | =cmd  | c,1@x.io  | s-c1    |         | claude / anthropic     | 10_000 | beh frustrated    |
//! | A3    | 03-09 10:00      | ann   | –         | s-a3    | yes     | claude / anthropic     | 4_000  | tool search       |
//! | B2    | 03-10 12:00      | bob   | –         | s-b1    |         | gpt-4o-mini / openai   | 700    | issue ISS-1       |
//! | N1    | 03-11 12:00      | –     | –         | s-n     |         | gpt-4o / openai        | 50     |                   |
//! | D1    | 03-12 23:59:59.999 | dan | dan@x.io  | s-d1    | yes     | claude / anthropic     | –      |                   |
//! | B3    | 03-13 09:00      | bob   | –         | s-b2    |         | gpt-4o / openai        | 300    | tool browse       |
//! | C2    | 03-16 08:00      | =cmd  | –         | s-c2    |         | gpt-4o / openai        | 5      |                   |
//!
//! R = [03-08, 03-15) holds C1 A3 B2 N1 D1 B3; its previous period [03-01, 03-08) holds
//! B1 A2. First traces ever: ann 02-25, bob 03-02, =cmd 03-09, dan 03-12.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use tonic::Code;
use userlens_proto::query::v1::{
    GetActiveUsersRequest, GetRetentionRequest, GetUsersOverviewRequest, ListUsersRequest,
    ListUsersResponse, OrderDirection, PeriodUnit, TimeRange, UserFilter, UserOrderField,
};
use userlens_tests::for_each_backend;
use userlens_tests::gateway::InProcessGateway;
use userlens_tests::otlp::{
    double, errored, int, kv, request, resource_spans, span, span_id, string, trace_id,
    with_attributes,
};
use userlens_tests::stack::{CacheChoice, Stack};
use userlens_users_query::convert::ns_to_timestamp as ts;

const NS: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
const DAY: i64 = 86_400 * NS;
/// 2026-03-01T00:00:00Z.
const MARCH_1: i64 = 1_772_323_200 * NS;

/// 2026-03-`day` hh:mm UTC (day may be ≤ 0 for February: day 0 is 02-28).
const fn at(day: i64, h: i64, m: i64) -> i64 {
    MARCH_1 + (day - 1) * DAY + (h * 60 + m) * 60 * NS
}

const R_FROM: i64 = at(8, 0, 0);
const R_TO: i64 = at(15, 0, 0);

fn range(from: i64, to: i64) -> Option<TimeRange> {
    Some(TimeRange {
        from: Some(ts(from)),
        to: Some(ts(to)),
    })
}

fn nano(n: i64) -> f64 {
    n as f64 / 1e9
}

struct Trace {
    n: u64,
    start: i64,
    user: Option<&'static str>,
    email: Option<&'static str>,
    session: &'static str,
    errored: bool,
    model: &'static str,
    provider: &'static str,
    cost: Option<f64>,
    extra: Vec<KeyValue>,
}

fn s(key: &str, value: &str) -> KeyValue {
    kv(key, string(value))
}

fn to_span(t: &Trace) -> Span {
    let mut attrs = vec![
        s("session.id", t.session),
        s("gen_ai.request.model", t.model),
        s("gen_ai.provider.name", t.provider),
        kv("gen_ai.usage.input_tokens", int(10)),
        kv("gen_ai.usage.output_tokens", int(5)),
    ];
    if let Some(user) = t.user {
        attrs.push(s("user.id", user));
    }
    if let Some(email) = t.email {
        attrs.push(s("user.email", email));
    }
    if let Some(cost) = t.cost {
        attrs.push(kv("gen_ai.usage.cost", double(cost)));
    }
    attrs.extend(t.extra.clone());
    let one = with_attributes(
        span(
            trace_id(t.n),
            span_id(t.n),
            None,
            t.start as u64,
            (t.start + MS) as u64,
        ),
        attrs,
    );
    if t.errored { errored(one) } else { one }
}

#[allow(clippy::too_many_arguments)]
fn trace(
    n: u64,
    start: i64,
    user: Option<&'static str>,
    email: Option<&'static str>,
    session: &'static str,
    errored: bool,
    model: (&'static str, &'static str),
    cost_nano: Option<i64>,
    extra: Vec<KeyValue>,
) -> Trace {
    Trace {
        n,
        start,
        user,
        email,
        session,
        errored,
        model: model.0,
        provider: model.1,
        cost: cost_nano.map(nano),
        extra,
    }
}

const GPT4O: (&str, &str) = ("gpt-4o", "openai");
const MINI: (&str, &str) = ("gpt-4o-mini", "openai");
const CLAUDE: (&str, &str) = ("claude", "anthropic");

fn fixture() -> Vec<Trace> {
    vec![
        trace(
            1,
            at(-3, 10, 0),
            Some("ann"),
            Some("ann@x.io"),
            "s-a1",
            false,
            GPT4O,
            Some(1_000),
            vec![],
        ),
        trace(
            2,
            at(2, 9, 0),
            Some("bob"),
            None,
            "s-b1",
            false,
            MINI,
            Some(500),
            vec![],
        ),
        trace(
            3,
            at(3, 10, 0),
            Some("ann"),
            None,
            "s-a2",
            false,
            GPT4O,
            Some(2_000),
            vec![],
        ),
        trace(
            4,
            at(9, 8, 0),
            Some("=cmd"),
            Some("c,1@x.io"),
            "s-c1",
            false,
            CLAUDE,
            Some(10_000),
            vec![s("userlens.behaviour", "frustrated")],
        ),
        trace(
            5,
            at(9, 10, 0),
            Some("ann"),
            None,
            "s-a3",
            true,
            CLAUDE,
            Some(4_000),
            vec![s("gen_ai.tool.name", "search")],
        ),
        trace(
            6,
            at(10, 12, 0),
            Some("bob"),
            None,
            "s-b1",
            false,
            MINI,
            Some(700),
            vec![s("userlens.issue.id", "ISS-1")],
        ),
        trace(
            7,
            at(11, 12, 0),
            None,
            None,
            "s-n",
            false,
            GPT4O,
            Some(50),
            vec![],
        ),
        trace(
            8,
            at(13, 0, 0) - MS,
            Some("dan"),
            Some("dan@x.io"),
            "s-d1",
            true,
            CLAUDE,
            None,
            vec![],
        ),
        trace(
            9,
            at(13, 9, 0),
            Some("bob"),
            None,
            "s-b2",
            false,
            GPT4O,
            Some(300),
            vec![s("gen_ai.tool.name", "browse")],
        ),
        trace(
            10,
            at(16, 8, 0),
            Some("=cmd"),
            None,
            "s-c2",
            false,
            GPT4O,
            Some(5),
            vec![],
        ),
    ]
}

async fn ingest(stack: &Stack) {
    // Newest first, in two batches, the second sent twice: arrival order must not matter.
    let mut spans: Vec<Span> = fixture().iter().map(to_span).collect();
    spans.reverse();
    let later = spans.split_off(5);
    for batch in [spans, later.clone(), later] {
        let response = stack
            .export(request(vec![resource_spans(vec![], batch)]))
            .await;
        if let Some(partial) = response.partial_success {
            assert_eq!(partial.rejected_spans, 0, "{}", partial.error_message);
        }
    }
}

fn users_request(filter: Option<UserFilter>) -> ListUsersRequest {
    ListUsersRequest {
        range: range(R_FROM, R_TO),
        order_field: UserOrderField::UserId as i32,
        order_direction: OrderDirection::Asc as i32,
        first: Some(200),
        filter,
        ..Default::default()
    }
}

async fn list(stack: &Stack, request: ListUsersRequest) -> ListUsersResponse {
    stack
        .query_client()
        .await
        .list_users(stack.authorized(request.clone()))
        .await
        .unwrap_or_else(|e| panic!("list users {request:?}: {e}"))
        .into_inner()
}

fn ids(page: &ListUsersResponse) -> Vec<&str> {
    page.users.iter().map(|u| u.user_id.as_str()).collect()
}

async fn filtered(stack: &Stack, filter: UserFilter) -> Vec<String> {
    let page = list(stack, users_request(Some(filter.clone()))).await;
    assert_eq!(
        page.total_count as usize,
        page.users.len(),
        "{filter:?}: totalCount follows the filter"
    );
    ids(&page).into_iter().map(str::to_owned).collect()
}

#[track_caller]
fn check_invalid<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    field: &str,
) {
    match result {
        Ok(answer) => panic!("{field}: expected INVALID_ARGUMENT, got {answer:?}"),
        Err(status) => {
            assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
            assert!(status.message().contains(field), "{field}: {status:?}");
        }
    }
}

async fn check_overview_and_previous_period(stack: &Stack, what: &str) {
    let mut client = stack.query_client().await;
    let request = GetUsersOverviewRequest {
        range: range(R_FROM, R_TO),
    };
    let overview = client
        .get_users_overview(stack.authorized(request))
        .await
        .expect("overview")
        .into_inner();
    // ann, bob, =cmd, dan; =cmd and dan are first seen in R; ann and bob before it.
    assert_eq!(
        (
            overview.unique_users,
            overview.new_users,
            overview.returning_users
        ),
        (4, 2, 2),
        "{what}: overview users"
    );
    let previous = client
        .get_previous_period_overview(stack.authorized(request))
        .await
        .expect("previous period")
        .into_inner();
    assert_eq!(previous.range, range(at(1, 0, 0), R_FROM), "{what}");
    // B1 A2: bob (first seen 03-02, new) and ann (returning); sessions s-b1 s-a2.
    assert_eq!(
        (
            previous.unique_users,
            previous.new_users,
            previous.returning_users,
            previous.traces,
            previous.traces_with_user,
            previous.sessions,
            previous.sessions_with_user,
        ),
        (2, 1, 1, 2, 2, 2, 2),
        "{what}: previous period"
    );
    assert_eq!(
        (
            previous.user_trace_share,
            previous.traces_per_user,
            previous.sessions_per_user
        ),
        (1.0, 1.0, 1.0),
        "{what}"
    );
    // A previous period before 1677 cannot be represented.
    let too_early = client
        .get_previous_period_overview(stack.authorized(GetUsersOverviewRequest {
            range: range(i64::MIN / 2 - DAY, 0),
        }))
        .await;
    check_invalid(too_early, "range");

    let rows = list(
        stack,
        ListUsersRequest {
            previous_period: true,
            ..users_request(None)
        },
    )
    .await;
    let totals: Vec<(&str, i64, f64)> = rows
        .users
        .iter()
        .map(|u| {
            let p = u.previous_period.expect("previous period asked for");
            (u.user_id.as_str(), p.traces, p.cost_sum)
        })
        .collect();
    assert_eq!(
        totals,
        [
            ("=cmd", 0, 0.0),
            ("ann", 1, nano(2_000)),
            ("bob", 1, nano(500)),
            ("dan", 0, 0.0)
        ],
        "{what}: rows' previous period"
    );
    let without = list(stack, users_request(None)).await;
    assert!(
        without.users.iter().all(|u| u.previous_period.is_none()),
        "{what}"
    );
}

async fn retention(
    stack: &Stack,
    from: i64,
    to: i64,
    cohort: PeriodUnit,
    periods: Option<u32>,
) -> Result<tonic::Response<userlens_proto::query::v1::Retention>, tonic::Status> {
    stack
        .query_client()
        .await
        .get_retention(stack.authorized(GetRetentionRequest {
            range: range(from, to),
            cohort: cohort as i32,
            periods,
        }))
        .await
}

fn cohorts(retention: userlens_proto::query::v1::Retention) -> Vec<(i64, i64, Vec<i64>)> {
    retention
        .cohorts
        .into_iter()
        .map(|c| {
            let start = c.start.expect("start");
            (
                start.seconds * NS + i64::from(start.nanos),
                c.users,
                c.active,
            )
        })
        .collect()
}

async fn check_retention(stack: &Stack, what: &str) {
    // Weeks starting 02-23, 03-02 and 03-09 start in [02-23, 03-16).
    let weekly = retention(stack, at(-5, 0, 0), at(16, 0, 0), PeriodUnit::Week, Some(4))
        .await
        .expect("weekly retention")
        .into_inner();
    assert_eq!(
        cohorts(weekly),
        [
            // ann: A1 (week 0), A2 (1), A3 (2).
            (at(-5, 0, 0), 1, vec![1, 1, 1, 0]),
            // bob: B1 (0), B2 and B3 (1).
            (at(2, 0, 0), 1, vec![1, 1, 0, 0]),
            // =cmd and dan: C1, D1 (0), C2 (1).
            (at(9, 0, 0), 2, vec![2, 1, 0, 0]),
        ],
        "{what}: weekly cohorts"
    );
    // A range starting mid-week holds only the cohorts whose week starts in it.
    let mid_week = retention(stack, at(-4, 0, 0), at(9, 1, 0), PeriodUnit::Week, Some(2))
        .await
        .expect("retention")
        .into_inner();
    assert_eq!(
        cohorts(mid_week),
        [(at(2, 0, 0), 1, vec![1, 1]), (at(9, 0, 0), 2, vec![2, 1])],
        "{what}: cohorts starting in range"
    );
    // Months: February (ann: A1, then A2 A3 in March) and March (bob, =cmd, dan).
    let monthly = retention(stack, at(-27, 0, 0), at(32, 0, 0), PeriodUnit::Month, None)
        .await
        .expect("monthly retention")
        .into_inner();
    let monthly = cohorts(monthly);
    assert_eq!(monthly.len(), 2, "{what}");
    assert_eq!((monthly[0].0, monthly[0].1), (at(-27, 0, 0), 1), "{what}");
    assert_eq!(&monthly[0].2[..3], [1, 1, 0], "{what}: February cohort");
    assert_eq!(monthly[0].2.len(), 8, "{what}: 8 periods by default");
    assert_eq!((monthly[1].0, monthly[1].1), (at(1, 0, 0), 3), "{what}");
    assert_eq!(&monthly[1].2[..3], [3, 0, 0], "{what}: March cohort");
    // Days: 03-09 holds =cmd's first trace; 03-10 nobody's.
    let daily = retention(stack, at(9, 0, 0), at(11, 0, 0), PeriodUnit::Day, Some(8))
        .await
        .expect("daily retention")
        .into_inner();
    assert_eq!(
        cohorts(daily),
        [
            (at(9, 0, 0), 1, vec![1, 0, 0, 0, 0, 0, 0, 1]),
            (at(10, 0, 0), 0, vec![0; 8]),
        ],
        "{what}: daily cohorts (C2 is 7 days after C1)"
    );

    check_invalid(
        retention(stack, R_FROM, R_TO, PeriodUnit::Week, Some(0)).await,
        "periods",
    );
    check_invalid(
        retention(stack, R_FROM, R_TO, PeriodUnit::Week, Some(61)).await,
        "periods",
    );
    check_invalid(
        retention(stack, R_FROM, R_TO, PeriodUnit::Unspecified, None).await,
        "cohort",
    );
    check_invalid(
        retention(stack, R_FROM, R_FROM + 401 * DAY, PeriodUnit::Day, None).await,
        "range",
    );
    assert!(
        retention(stack, R_FROM, R_FROM + 400 * DAY, PeriodUnit::Day, None)
            .await
            .is_ok(),
        "{what}: 400 cohort periods are allowed"
    );
}

async fn active(
    stack: &Stack,
    from: i64,
    to: i64,
    window: PeriodUnit,
) -> Result<tonic::Response<userlens_proto::query::v1::ActiveUsers>, tonic::Status> {
    stack
        .query_client()
        .await
        .get_active_users(stack.authorized(GetActiveUsersRequest {
            range: range(from, to),
            window: window as i32,
        }))
        .await
}

fn points(active: &userlens_proto::query::v1::ActiveUsers) -> Vec<(i64, i64)> {
    active
        .points
        .iter()
        .map(|p| {
            let start = p.start.expect("start");
            (start.seconds * NS + i64::from(start.nanos), p.active_users)
        })
        .collect()
}

async fn check_active_users(stack: &Stack, what: &str) {
    let daily = active(stack, R_FROM, R_TO, PeriodUnit::Day)
        .await
        .expect("daily active users")
        .into_inner();
    // 03-09: =cmd, ann; 03-10: bob; 03-11: anonymous only; 03-12: dan; 03-13: bob.
    assert_eq!(
        points(&daily),
        [
            (at(8, 0, 0), 0),
            (at(9, 0, 0), 2),
            (at(10, 0, 0), 1),
            (at(11, 0, 0), 0),
            (at(12, 0, 0), 1),
            (at(13, 0, 0), 1),
            (at(14, 0, 0), 0),
        ],
        "{what}: daily points"
    );
    assert_eq!(daily.unique_users, 4, "{what}");
    // Mean daily users 5 / 7 days, over 4 users.
    assert_eq!(daily.stickiness, (5.0 / 7.0) / 4.0, "{what}: stickiness");

    // [03-08 12:00, 03-12 12:00): the week of 03-02 (empty in range) and of 03-09 (C1 A3
    // B2; D1 is after `to`). Days 03-08 … 03-12 (5) hold 2 + 1 user-days.
    let weekly = active(stack, at(8, 12, 0), at(12, 12, 0), PeriodUnit::Week)
        .await
        .expect("weekly active users")
        .into_inner();
    assert_eq!(
        points(&weekly),
        [(at(2, 0, 0), 0), (at(9, 0, 0), 3)],
        "{what}: weekly points"
    );
    assert_eq!(weekly.unique_users, 3, "{what}");
    assert_eq!(
        weekly.stickiness,
        (3.0 / 5.0) / 3.0,
        "{what}: weekly stickiness"
    );

    let monthly = active(stack, at(-3, 0, 0), at(10, 0, 0), PeriodUnit::Month)
        .await
        .expect("monthly active users")
        .into_inner();
    // February: ann (A1); March up to 03-10: bob, ann, =cmd.
    assert_eq!(
        points(&monthly),
        [(at(-27, 0, 0), 1), (at(1, 0, 0), 3)],
        "{what}: monthly points"
    );

    let empty = active(stack, at(20, 0, 0), at(21, 0, 0), PeriodUnit::Day)
        .await
        .expect("empty range")
        .into_inner();
    assert_eq!(
        (points(&empty), empty.unique_users, empty.stickiness),
        (vec![(at(20, 0, 0), 0)], 0, 0.0),
        "{what}"
    );

    check_invalid(
        active(stack, R_FROM, R_TO, PeriodUnit::Unspecified).await,
        "window",
    );
    check_invalid(
        active(stack, R_FROM, R_FROM + 400 * DAY + 1, PeriodUnit::Day).await,
        "range",
    );
    check_invalid(active(stack, R_TO, R_FROM, PeriodUnit::Day).await, "range");
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

async fn check_filters(stack: &Stack, what: &str) {
    let f = UserFilter::default;
    assert_eq!(
        filtered(stack, f()).await,
        ["=cmd", "ann", "bob", "dan"],
        "{what}"
    );
    // Cost sums in R: =cmd 10_000, ann 4_000, bob 1_000 (B2 + B3), dan 0.
    let min = |usd| UserFilter {
        min_cost_sum: Some(usd),
        ..f()
    };
    let max = |usd| UserFilter {
        max_cost_sum: Some(usd),
        ..f()
    };
    assert_eq!(
        filtered(stack, min(nano(4_000))).await,
        ["=cmd", "ann"],
        "{what}: min inclusive"
    );
    assert_eq!(
        filtered(stack, max(nano(1_000))).await,
        ["bob", "dan"],
        "{what}: max inclusive"
    );
    // 0.0000009999999999 USD rounds to 1_000 nano-USD.
    assert_eq!(
        filtered(stack, min(0.000_000_999_999_999_9)).await,
        ["=cmd", "ann", "bob"],
        "{what}: rounded bound"
    );
    assert_eq!(
        filtered(
            stack,
            UserFilter {
                min_cost_sum: Some(nano(1_000)),
                max_cost_sum: Some(nano(4_000)),
                ..f()
            }
        )
        .await,
        ["ann", "bob"],
        "{what}: between"
    );
    assert_eq!(
        filtered(
            stack,
            UserFilter {
                errored_only: true,
                ..f()
            }
        )
        .await,
        ["ann", "dan"],
        "{what}: errored"
    );
    // gpt-4o calls of ann (A1, A2) are outside R; bob's B3 is inside.
    assert_eq!(
        filtered(
            stack,
            UserFilter {
                models: strings(&["gpt-4o"]),
                ..f()
            }
        )
        .await,
        ["bob"],
        "{what}: model in range"
    );
    assert_eq!(
        filtered(
            stack,
            UserFilter {
                models: strings(&["nope", "gpt-4o-mini"]),
                ..f()
            }
        )
        .await,
        ["bob"],
        "{what}: models OR"
    );
    assert_eq!(
        filtered(
            stack,
            UserFilter {
                providers: strings(&["anthropic"]),
                ..f()
            }
        )
        .await,
        ["=cmd", "ann", "dan"],
        "{what}: provider"
    );
    assert_eq!(
        filtered(
            stack,
            UserFilter {
                tools: strings(&["search", "browse"]),
                ..f()
            }
        )
        .await,
        ["ann", "bob"],
        "{what}: tools"
    );
    assert_eq!(
        filtered(
            stack,
            UserFilter {
                issue_id: Some("ISS-1".into()),
                ..f()
            }
        )
        .await,
        ["bob"],
        "{what}: issue"
    );
    assert_eq!(
        filtered(
            stack,
            UserFilter {
                issue_id: Some("ISS-9".into()),
                ..f()
            }
        )
        .await,
        Vec::<String>::new(),
        "{what}: unknown issue"
    );
    assert_eq!(
        filtered(
            stack,
            UserFilter {
                behaviour: Some("frustrated".into()),
                ..f()
            }
        )
        .await,
        ["=cmd"],
        "{what}: behaviour"
    );
    assert_eq!(
        filtered(
            stack,
            UserFilter {
                has_email: Some(false),
                ..f()
            }
        )
        .await,
        ["bob"],
        "{what}: no email"
    );
    assert_eq!(
        filtered(
            stack,
            UserFilter {
                has_email: Some(true),
                ..f()
            }
        )
        .await,
        ["=cmd", "ann", "dan"],
        "{what}: email"
    );
    // AND across conditions.
    let errored_anthropic = UserFilter {
        providers: strings(&["anthropic"]),
        errored_only: true,
        ..f()
    };
    assert_eq!(
        filtered(stack, errored_anthropic.clone()).await,
        ["ann", "dan"],
        "{what}: AND"
    );
    assert_eq!(
        filtered(
            stack,
            UserFilter {
                tools: strings(&["search"]),
                ..errored_anthropic
            }
        )
        .await,
        ["ann"],
        "{what}: AND of three"
    );
    assert_eq!(
        filtered(
            stack,
            UserFilter {
                errored_only: true,
                has_email: Some(false),
                ..f()
            }
        )
        .await,
        Vec::<String>::new(),
        "{what}: AND that nobody meets"
    );

    // A filter selects users; their figures count all their traces in range.
    let page = list(
        stack,
        users_request(Some(UserFilter {
            issue_id: Some("ISS-1".into()),
            ..f()
        })),
    )
    .await;
    let bob = &page.users[0];
    assert_eq!((bob.traces, bob.sessions), (2, 2), "{what}: bob's figures");
    assert_eq!(bob.cost.expect("cost").sum, nano(1_000), "{what}");
    assert_eq!(
        page.cost_rollup.expect("rollup").sum,
        nano(1_000),
        "{what}: rollup follows the filter"
    );

    // With search, order and cursors.
    let anthropic = UserFilter {
        providers: strings(&["anthropic"]),
        ..f()
    };
    let searched = list(
        stack,
        ListUsersRequest {
            search: "N".into(),
            ..users_request(Some(anthropic.clone()))
        },
    )
    .await;
    assert_eq!(ids(&searched), ["ann", "dan"], "{what}: search and filter");
    let by_cost = ListUsersRequest {
        order_field: UserOrderField::CostSum as i32,
        order_direction: OrderDirection::Desc as i32,
        first: Some(2),
        ..users_request(Some(anthropic))
    };
    let first_page = list(stack, by_cost.clone()).await;
    assert_eq!(
        (
            ids(&first_page),
            first_page.has_next_page,
            first_page.total_count
        ),
        (vec!["=cmd", "ann"], true, 3),
        "{what}"
    );
    assert_eq!(
        first_page.cost_rollup.expect("rollup").sum,
        nano(14_000),
        "{what}"
    );
    let second = list(
        stack,
        ListUsersRequest {
            after: first_page.end_cursor.clone(),
            ..by_cost
        },
    )
    .await;
    assert_eq!(
        (ids(&second), second.has_next_page, second.total_count),
        (vec!["dan"], false, 3),
        "{what}"
    );

    // Bad filters name their field.
    let mut client = stack.query_client().await;
    for (filter, field) in [
        (min(-1.0), "filter.min_cost_sum"),
        (max(f64::NAN), "filter.max_cost_sum"),
        (max(f64::INFINITY), "filter.max_cost_sum"),
        (
            UserFilter {
                min_cost_sum: Some(2.0),
                max_cost_sum: Some(1.0),
                ..f()
            },
            "filter.min_cost_sum",
        ),
        (
            UserFilter {
                models: vec!["m".into(); 51],
                ..f()
            },
            "filter.models",
        ),
        (
            UserFilter {
                tools: vec!["t".repeat(1_001)],
                ..f()
            },
            "filter.tools",
        ),
        (
            UserFilter {
                behaviour: Some("b".repeat(1_001)),
                ..f()
            },
            "filter.behaviour",
        ),
    ] {
        check_invalid(
            client
                .list_users(stack.authorized(users_request(Some(filter))))
                .await,
            field,
        );
    }
    assert!(
        client
            .list_users(stack.authorized(users_request(Some(UserFilter {
                models: vec!["m".repeat(1_000); 50],
                ..f()
            }))))
            .await
            .is_ok(),
        "{what}: 50 values of 1,000 bytes are allowed"
    );
}

async fn start_gateway(stack: &Stack) -> InProcessGateway {
    InProcessGateway::start(stack.query, Default::default()).await
}

/// `GET /export/users.csv?query`, under `key` when given.
async fn csv(gateway: &InProcessGateway, key: Option<&str>, query: &str) -> reqwest::Response {
    let mut request =
        reqwest::Client::new().get(format!("http://{}/export/users.csv?{query}", gateway.addr));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.expect("export request")
}

const R_GRAPHQL: &str = r#"{ from: "2026-03-08T00:00:00Z", to: "2026-03-15T00:00:00Z" }"#;

async fn check_graphql(gateway: &InProcessGateway, key: &str, what: &str) {
    let answer = gateway
        .graphql(
            Some(key),
            &format!(
                r#"{{
  usersOverview(range: {R_GRAPHQL}) {{
    uniqueUsers newUsers returningUsers
    previousPeriod {{ from to uniqueUsers newUsers returningUsers traces sessionsPerUser }}
  }}
  users(range: {R_GRAPHQL}, orderBy: {{ field: USER_ID, direction: ASC }},
        filter: {{ models: ["gpt-4o-mini", "claude"], hasEmail: false }}) {{
    totalCount costRollup {{ sum }}
    nodes {{ userId traces previousPeriod {{ traces costSum }} }}
  }}
  retention(range: {{ from: "2026-02-23T00:00:00Z", to: "2026-03-16T00:00:00Z" }},
            cohort: WEEK, periods: 3) {{
    cohorts {{ start users active }}
  }}
  activeUsers(range: {R_GRAPHQL}, window: DAY) {{
    uniqueUsers stickiness points {{ start activeUsers }}
  }}
}}"#
            ),
        )
        .await;
    let expected = serde_json::json!({
        "data": {
            "usersOverview": {
                "uniqueUsers": 4, "newUsers": 2, "returningUsers": 2,
                "previousPeriod": {
                    "from": "2026-03-01T00:00:00.000Z", "to": "2026-03-08T00:00:00.000Z",
                    "uniqueUsers": 2, "newUsers": 1, "returningUsers": 1, "traces": 2,
                    "sessionsPerUser": 1.0
                }
            },
            "users": {
                "totalCount": 1,
                "costRollup": { "sum": nano(1_000) },
                "nodes": [
                    { "userId": "bob", "traces": 2, "previousPeriod": { "traces": 1, "costSum": nano(500) } }
                ]
            },
            "retention": {
                "cohorts": [
                    { "start": "2026-02-23T00:00:00.000Z", "users": 1, "active": [1, 1, 1] },
                    { "start": "2026-03-02T00:00:00.000Z", "users": 1, "active": [1, 1, 0] },
                    { "start": "2026-03-09T00:00:00.000Z", "users": 2, "active": [2, 1, 0] }
                ]
            },
            "activeUsers": {
                "uniqueUsers": 4,
                "stickiness": (5.0 / 7.0) / 4.0,
                "points": [
                    { "start": "2026-03-08T00:00:00.000Z", "activeUsers": 0 },
                    { "start": "2026-03-09T00:00:00.000Z", "activeUsers": 2 },
                    { "start": "2026-03-10T00:00:00.000Z", "activeUsers": 1 },
                    { "start": "2026-03-11T00:00:00.000Z", "activeUsers": 0 },
                    { "start": "2026-03-12T00:00:00.000Z", "activeUsers": 1 },
                    { "start": "2026-03-13T00:00:00.000Z", "activeUsers": 1 },
                    { "start": "2026-03-14T00:00:00.000Z", "activeUsers": 0 }
                ]
            }
        }
    });
    assert_eq!(answer, expected, "{what}: GraphQL");

    for (query, field) in [
        (format!("{{ users(range: {R_GRAPHQL}, filter: {{ minCostSum: -1 }}) {{ totalCount }} }}"), "filter.minCostSum"),
        (format!("{{ retention(range: {R_GRAPHQL}, cohort: DAY, periods: 0) {{ cohorts {{ users }} }} }}"), "periods"),
        (
            r#"{ activeUsers(range: { from: "2026-01-01T00:00:00Z", to: "2027-03-01T00:00:00Z" }, window: DAY) { stickiness } }"#.to_owned(),
            "range",
        ),
    ] {
        let answer = gateway.graphql(Some(key), &query).await;
        assert_eq!(answer["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{what}: {query}: {answer}");
        assert!(answer["errors"][0]["message"].as_str().is_some_and(|m| m.contains(field)), "{what}: {answer}");
    }
}

const CSV_HEADER: &str = "user_id,email,first_seen_at,last_seen_at,traces,sessions,errored_sessions,error_rate,cost_sum_usd,cost_average_usd,cost_median_usd,tokens_input,tokens_output,tokens_cached_input,tokens_total\r\n";
const R_QUERY: &str = "from=2026-03-08T00:00:00Z&to=2026-03-15T00:00:00Z";

async fn check_csv(gateway: &InProcessGateway, key: &str, what: &str) {
    let response = csv(
        gateway,
        Some(key),
        &format!("{R_QUERY}&orderBy=USER_ID&direction=ASC"),
    )
    .await;
    assert_eq!(response.status(), 200, "{what}");
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8",
        "{what}"
    );
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .is_ok_and(|d| d.starts_with("attachment")),
        "{what}"
    );
    let body = response.text().await.expect("csv body");
    let expected = [
        CSV_HEADER,
        "'=cmd,\"c,1@x.io\",2026-03-09T08:00:00.000Z,2026-03-09T08:00:00.000Z,1,1,0,0,0.000010000,0.00001,0.00001,10,5,0,15\r\n",
        "ann,ann@x.io,2026-03-09T10:00:00.000Z,2026-03-09T10:00:00.000Z,1,1,1,1,0.000004000,0.000004,0.000004,10,5,0,15\r\n",
        "bob,,2026-03-10T12:00:00.000Z,2026-03-13T09:00:00.000Z,2,2,0,0,0.000001000,0.0000005,0.0000005,20,10,0,30\r\n",
        "dan,dan@x.io,2026-03-12T23:59:59.999Z,2026-03-12T23:59:59.999Z,1,1,1,1,0.000000000,0,0,10,5,0,15\r\n",
    ]
    .concat();
    assert_eq!(body, expected, "{what}: CSV");

    // The filter, search and order of `users`; the default order is LAST_SEEN DESC.
    let body = csv(
        gateway,
        Some(key),
        &format!("{R_QUERY}&providers=anthropic&providers=none&erroredOnly=true&search=%20A%20"),
    )
    .await
    .text()
    .await
    .expect("csv body");
    let users: Vec<&str> = body
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap_or_default())
        .collect();
    assert_eq!(users, ["dan", "ann"], "{what}: filtered CSV: {body}");
    let body = csv(gateway, Some(key), &format!("{R_QUERY}&issueId=nope"))
        .await
        .text()
        .await
        .expect("csv");
    assert_eq!(body, CSV_HEADER, "{what}: nobody matches");

    for query in [
        "from=2026-03-08T00:00:00Z".to_owned(),
        format!("{R_QUERY}&minCostSum=-1"),
        format!("{R_QUERY}&orderBy=NAME"),
        format!("{R_QUERY}&tools={}", "t".repeat(1_001)),
        format!("{R_QUERY}&first=5"),
    ] {
        let response = csv(gateway, Some(key), &query).await;
        assert_eq!(response.status(), 400, "{what}: {query}");
        let body: serde_json::Value = response.json().await.expect("json error body");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{what}: {query}"
        );
    }
    assert_eq!(
        csv(gateway, None, R_QUERY).await.status(),
        401,
        "{what}: no key"
    );
    assert_eq!(
        csv(gateway, Some("ul_not_a_key"), R_QUERY).await.status(),
        401,
        "{what}: unknown key"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn period_retention_active_users_filters_and_export_match_a_hand_count() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        ingest(&stack).await;
        let gateway = start_gateway(&stack).await;
        let (_, other_key) = userlens_storage::keys::create_key(&database.db, "other")
            .await
            .expect("create a second project's key");
        // Twice: the second round may be answered from the result cache.
        for round in 0..2 {
            let what = format!("{:?} round {round}", database.backend);
            check_overview_and_previous_period(&stack, &what).await;
            check_retention(&stack, &what).await;
            check_active_users(&stack, &what).await;
            check_filters(&stack, &what).await;
            check_graphql(&gateway, &stack.key, &what).await;
            check_csv(&gateway, &stack.key, &what).await;
        }
        // Another project's key sees none of it.
        let other = csv(&gateway, Some(&other_key), R_QUERY)
            .await
            .text()
            .await
            .expect("csv");
        assert_eq!(other, CSV_HEADER, "other project's export");
        let answer = gateway
            .graphql(Some(&other_key), &format!("{{ activeUsers(range: {R_GRAPHQL}, window: WEEK) {{ uniqueUsers }} retention(range: {R_GRAPHQL}, cohort: DAY) {{ cohorts {{ users }} }} }}"))
            .await;
        assert_eq!(answer["data"]["activeUsers"]["uniqueUsers"], 0, "{answer}");
        let cohorts = answer["data"]["retention"]["cohorts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(cohorts.iter().all(|c| c["users"] == 0), "{answer}");
        gateway.stop().await;
        stack.stop().await;
    });
}

// ---- CSV export of more than one 500-row chunk ----

/// Users of the multi-chunk export: `u0000` … `u1199`, one trace each on 2026-03-10, user
/// i at 00:00:00 + i seconds with cost i nano-USD and, for even i, an email.
const EXPORT_USERS: u64 = 1_200;
const EXPORT_DAY: i64 = at(10, 0, 0);
const EXPORT_QUERY: &str = "from=2026-03-10T00:00:00Z&to=2026-03-11T00:00:00Z";

fn export_user(i: u64) -> String {
    format!("u{i:04}")
}

async fn ingest_export_users(stack: &Stack) {
    let spans: Vec<Span> = (0..EXPORT_USERS)
        .map(|i| {
            let start = EXPORT_DAY + i as i64 * NS;
            let mut attrs = vec![
                s("user.id", &export_user(i)),
                s("session.id", &format!("s-{i}")),
                s("gen_ai.request.model", "gpt-4o"),
                kv("gen_ai.usage.input_tokens", int(10)),
                kv("gen_ai.usage.output_tokens", int(5)),
                kv("gen_ai.usage.cost", double(nano(i as i64))),
            ];
            if i.is_multiple_of(2) {
                attrs.push(s("user.email", &format!("{}@x.io", export_user(i))));
            }
            // Trace numbers far above the hand-counted fixture's.
            let n = 10_000 + i;
            with_attributes(
                span(
                    trace_id(n),
                    span_id(n),
                    None,
                    start as u64,
                    (start + MS) as u64,
                ),
                attrs,
            )
        })
        .collect();
    for batch in spans.chunks(400) {
        let response = stack
            .export(request(vec![resource_spans(vec![], batch.to_vec())]))
            .await;
        if let Some(partial) = response.partial_success {
            assert_eq!(partial.rejected_spans, 0, "{}", partial.error_message);
        }
    }
}

/// The row user i's figures make.
fn export_row(i: u64) -> String {
    let user = export_user(i);
    let email = if i.is_multiple_of(2) {
        format!("{user}@x.io")
    } else {
        String::new()
    };
    let at = format!("2026-03-10T00:{:02}:{:02}.000Z", i / 60, i % 60);
    let usd = nano(i as i64);
    format!("{user},{email},{at},{at},1,1,0,0,0.{i:09},{usd},{usd},10,5,0,15\r\n")
}

async fn check_export(
    gateway: &InProcessGateway,
    key: &str,
    query: &str,
    users: &[u64],
    what: &str,
) {
    let response = csv(gateway, Some(key), query).await;
    assert_eq!(response.status(), 200, "{what}: {query}");
    let body = response.text().await.expect("csv body");
    let lines: Vec<&str> = body.split_inclusive("\r\n").collect();
    assert_eq!(
        lines.first().copied(),
        Some(CSV_HEADER),
        "{what}: {query}: header"
    );
    assert_eq!(
        lines.len() - 1,
        users.len(),
        "{what}: {query}: one row per user"
    );
    let mut seen = std::collections::HashSet::new();
    for (at, (line, &i)) in lines[1..].iter().zip(users).enumerate() {
        assert_eq!(*line, export_row(i), "{what}: {query}: row {at}");
        assert!(seen.insert(i), "{what}: {query}: user {i} twice");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_export_of_several_chunks_has_every_row_once_in_order() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        ingest_export_users(&stack).await;
        let gateway = start_gateway(&stack).await;
        let what = format!("{:?}", database.backend);
        let all: Vec<u64> = (0..EXPORT_USERS).collect();
        let newest_first: Vec<u64> = all.iter().rev().copied().collect();
        // 1,200 rows: chunks of 500, 500 and 200.
        check_export(
            &gateway,
            &stack.key,
            &format!("{EXPORT_QUERY}&orderBy=USER_ID&direction=ASC"),
            &all,
            &what,
        )
        .await;
        // The default order, LAST_SEEN DESC.
        check_export(&gateway, &stack.key, EXPORT_QUERY, &newest_first, &what).await;
        // A filter selecting 700 users (cost ≥ 500 nano-USD), highest cost first, and one
        // selecting exactly 500 (the even users with an email and cost ≥ 200 nano-USD).
        check_export(
            &gateway,
            &stack.key,
            &format!("{EXPORT_QUERY}&minCostSum=0.0000005&orderBy=COST_SUM&direction=DESC"),
            &newest_first[..700],
            &what,
        )
        .await;
        // (`direction` defaults to DESC.)
        let even: Vec<u64> = (200..EXPORT_USERS)
            .rev()
            .filter(|i| i.is_multiple_of(2))
            .collect();
        assert_eq!(even.len(), 500);
        check_export(
            &gateway,
            &stack.key,
            &format!("{EXPORT_QUERY}&hasEmail=true&minCostSum=0.0000002&orderBy=USER_ID"),
            &even,
            &what,
        )
        .await;
        gateway.stop().await;
        stack.stop().await;
    });
}
