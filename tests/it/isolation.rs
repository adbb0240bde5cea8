//! Security promises: a key reads and writes its own project only, on every API and with
//! colliding user, session, trace and span ids; missing, unknown and malformed keys are
//! refused everywhere; keys are stored hashed and never logged; searches cannot alter SQL.
//!
//! Two projects, A and B, hold data under the SAME user ids, session ids, trace ids and
//! span ids; what differs per project (costs, tokens, models, tools, emails, errors,
//! durations, issues) makes every figure tell the projects apart.

use std::collections::BTreeSet;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Statement};
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use userlens_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use userlens_proto::ingest::v1::{AnnotateTraceRequest, BatchOutcome, IssueAnnotation, SpanBatch};
use userlens_proto::query::v1 as pb;
use userlens_proto::query::v1::users_query_service_client::UsersQueryServiceClient;
use userlens_storage::entities::{api_keys, projects, spans, trace_annotations, traces};
use userlens_storage::{keys, read};
use userlens_tests::otlp::{
    double, errored, int, kv, request, resource_spans, span, span_id, string, trace_id,
    with_attributes,
};
use userlens_tests::process::{self, UserlensProcess};
use userlens_tests::stack::{CacheChoice, Stack};
use userlens_tests::{Backend, TestDatabase, for_each_backend};
use userlens_users_query::convert::ns_to_timestamp;

const NS: u64 = 1_000_000_000;
const HOUR: u64 = 3_600 * NS;
const DAY: u64 = 86_400 * NS;
/// 2026-03-01T00:00:00Z.
const MARCH_1: u64 = 1_772_323_200 * NS;
const RANGE: &str = r#"{ from: "2026-03-01T00:00:00Z", to: "2026-03-08T00:00:00Z" }"#;
const INJECTION: &str = "'; DROP TABLE traces; --";

// ---------------------------------------------------------------------------------------
// The two projects' data.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tenant {
    A,
    B,
}

impl Tenant {
    fn tag(self) -> &'static str {
        match self {
            Tenant::A => "a",
            Tenant::B => "b",
        }
    }

    fn other(self) -> Tenant {
        match self {
            Tenant::A => Tenant::B,
            Tenant::B => Tenant::A,
        }
    }

    /// Trace numbers of the project: 1–4 exist in both with the same ids.
    fn traces(self) -> &'static [u64] {
        match self {
            Tenant::A => &[1, 2, 3, 4, 7],
            Tenant::B => &[1, 2, 3, 4, 5, 6],
        }
    }

    /// The user only this project has.
    fn own_user(self) -> &'static str {
        match self {
            Tenant::A => "u-a-only",
            Tenant::B => "u-b-only",
        }
    }

    fn errored(self, trace: u64) -> bool {
        match self {
            Tenant::A => trace == 2,
            Tenant::B => trace == 3 || trace == 5,
        }
    }

    fn cost(self) -> f64 {
        match self {
            Tenant::A => 0.25,
            Tenant::B => 1.5,
        }
    }

    fn tokens(self) -> (i64, i64) {
        match self {
            Tenant::A => (10, 5),
            Tenant::B => (100, 50),
        }
    }

    fn duration_s(self) -> u64 {
        match self {
            Tenant::A => 2,
            Tenant::B => 4,
        }
    }

    fn model(self) -> String {
        format!("model-{}", self.tag())
    }

    fn provider(self) -> String {
        format!("prov-{}", self.tag())
    }

    fn tool(self) -> String {
        format!("tool-{}", self.tag())
    }

    fn email(self, user: &str) -> String {
        format!("{user}@{}.example", self.tag())
    }

    fn issue(self) -> String {
        format!("iss-{}", self.tag())
    }

    fn behaviour(self) -> String {
        format!("beh-{}", self.tag())
    }
}

/// User, session and start time of trace `n`: the same in both projects.
fn shape(n: u64) -> (Option<&'static str>, Option<&'static str>, u64) {
    match n {
        1 => (Some("u1"), Some("s1"), MARCH_1 + DAY + 9 * HOUR),
        2 => (Some("u1"), Some("s1"), MARCH_1 + DAY + 10 * HOUR),
        3 => (Some("u2"), Some("s2"), MARCH_1 + 2 * DAY + 12 * HOUR),
        4 => (Some("u2"), None, MARCH_1 + 3 * DAY + 8 * HOUR),
        5 => (Some("u-b-only"), Some("s5"), MARCH_1 + 4 * DAY),
        6 => (None, None, MARCH_1 + 4 * DAY + HOUR),
        7 => (Some("u-a-only"), Some("s7"), MARCH_1 + 4 * DAY + 2 * HOUR),
        _ => unreachable!("no trace {n}"),
    }
}

/// Trace `n` of `tenant`: a root with the user, an LLM call, a tool call (errored in the
/// project's errored traces). Span ids are `10n`, `10n + 1`, `10n + 2` in both projects.
fn trace_spans(tenant: Tenant, n: u64) -> Vec<Span> {
    let (user, session, start) = shape(n);
    let end = start + tenant.duration_s() * NS;
    let mut root_attributes = Vec::new();
    if let Some(user) = user {
        root_attributes.push(kv("user.id", string(user)));
        root_attributes.push(kv("user.email", string(&tenant.email(user))));
    }
    if let Some(session) = session {
        root_attributes.push(kv("session.id", string(session)));
    }
    let root = with_attributes(
        span(trace_id(n), span_id(n * 10), None, start, end),
        root_attributes,
    );
    let (input, output) = tenant.tokens();
    let llm = with_attributes(
        span(
            trace_id(n),
            span_id(n * 10 + 1),
            Some(span_id(n * 10)),
            start,
            start + NS,
        ),
        vec![
            kv("gen_ai.request.model", string(&tenant.model())),
            kv("gen_ai.system", string(&tenant.provider())),
            kv("gen_ai.usage.input_tokens", int(input)),
            kv("gen_ai.usage.output_tokens", int(output)),
            kv("gen_ai.usage.cost", double(tenant.cost())),
        ],
    );
    let tool = with_attributes(
        span(
            trace_id(n),
            span_id(n * 10 + 2),
            Some(span_id(n * 10)),
            start + NS,
            end,
        ),
        vec![kv("gen_ai.tool.name", string(&tenant.tool()))],
    );
    let tool = if tenant.errored(n) {
        errored(tool)
    } else {
        tool
    };
    vec![root, llm, tool]
}

fn traces_request(tenant: Tenant, traces: &[u64]) -> ExportTraceServiceRequest {
    let spans = traces
        .iter()
        .flat_map(|n| trace_spans(tenant, *n))
        .collect();
    request(vec![resource_spans(
        vec![kv("service.name", string(tenant.tag()))],
        spans,
    )])
}

fn full_request(tenant: Tenant) -> ExportTraceServiceRequest {
    traces_request(tenant, tenant.traces())
}

/// The project's issue and behaviour on trace 1; A also names trace 5, which only B has.
fn annotations(tenant: Tenant) -> Vec<AnnotateTraceRequest> {
    let mut requests = vec![AnnotateTraceRequest {
        trace_id: hex::encode(trace_id(1)),
        issues: vec![IssueAnnotation {
            id: tenant.issue(),
            title: format!("Issue of {}", tenant.tag()),
        }],
        behaviours: vec![tenant.behaviour()],
    }];
    if tenant == Tenant::A {
        requests.push(AnnotateTraceRequest {
            trace_id: hex::encode(trace_id(5)),
            issues: vec![IssueAnnotation {
                id: "iss-a-on-b-trace".into(),
                title: "not for B".into(),
            }],
            behaviours: vec!["beh-a-on-b-trace".into()],
        });
    }
    requests
}

// ---------------------------------------------------------------------------------------
// The figures each project must show (SPEC §4), over the week from 2026-03-01.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct OverviewFigures {
    unique_users: i64,
    new_users: i64,
    traces: i64,
    traces_with_user: i64,
    sessions: i64,
    sessions_with_user: i64,
    /// Summed over the histogram.
    errored_traces: i64,
}

fn expected_overview(tenant: Tenant) -> OverviewFigures {
    match tenant {
        // u1, u2, u-a-only; sessions s1, s2, trace 4's own, s7.
        Tenant::A => OverviewFigures {
            unique_users: 3,
            new_users: 3,
            traces: 5,
            traces_with_user: 5,
            sessions: 4,
            sessions_with_user: 4,
            errored_traces: 1,
        },
        // u1, u2, u-b-only and an anonymous trace; sessions s1, s2, trace 4's, s5, trace 6's.
        Tenant::B => OverviewFigures {
            unique_users: 3,
            new_users: 3,
            traces: 6,
            traces_with_user: 5,
            sessions: 5,
            sessions_with_user: 4,
            errored_traces: 2,
        },
    }
}

#[derive(Debug, Clone, PartialEq)]
struct UserFigures {
    user_id: String,
    email: String,
    traces: i64,
    sessions: i64,
    errored_sessions: i64,
    cost_sum: f64,
    tokens_total: i64,
}

/// Rows of the users table, by user id.
fn expected_users(tenant: Tenant) -> Vec<UserFigures> {
    let (input, output) = tenant.tokens();
    let row = |user: &str, traces: i64, sessions: i64, errored_sessions: i64| UserFigures {
        user_id: user.to_owned(),
        email: tenant.email(user),
        traces,
        sessions,
        errored_sessions,
        cost_sum: tenant.cost() * traces as f64,
        tokens_total: (input + output) * traces,
    };
    match tenant {
        Tenant::A => vec![
            row("u-a-only", 1, 1, 0),
            row("u1", 2, 1, 1),
            row("u2", 2, 2, 0),
        ],
        Tenant::B => vec![
            row("u-b-only", 1, 1, 1),
            row("u1", 2, 1, 0),
            row("u2", 2, 2, 1),
        ],
    }
}

fn expected_cost_rollup_sum(tenant: Tenant) -> f64 {
    expected_users(tenant).iter().map(|u| u.cost_sum).sum()
}

#[derive(Debug, Clone, PartialEq)]
struct DetailFigures {
    email: String,
    traces: i64,
    sessions: i64,
    errored_sessions: i64,
    cost_sum: f64,
    tokens: (i64, i64, i64, i64),
    average_trace_duration_ms: f64,
    active_days: i64,
    issues: Vec<(String, i64)>,
    behaviours: Vec<(String, i64)>,
}

/// Lifetime detail of `user` in `tenant`'s project, with its annotations applied.
fn expected_detail(tenant: Tenant, user: &str) -> Option<DetailFigures> {
    let (input, output) = tenant.tokens();
    let detail = |traces: i64, sessions: i64, errored_sessions: i64, active_days: i64| {
        Some(DetailFigures {
            email: tenant.email(user),
            traces,
            sessions,
            errored_sessions,
            cost_sum: tenant.cost() * traces as f64,
            tokens: (
                input * traces,
                output * traces,
                0,
                (input + output) * traces,
            ),
            average_trace_duration_ms: (tenant.duration_s() * 1_000) as f64,
            active_days,
            issues: Vec::new(),
            behaviours: Vec::new(),
        })
    };
    match (tenant, user) {
        (_, "u1") => detail(2, 1, i64::from(tenant == Tenant::A), 1).map(|mut d| {
            d.issues = vec![(tenant.issue(), 1)];
            d.behaviours = vec![(tenant.behaviour(), 1)];
            d
        }),
        (_, "u2") => detail(2, 2, i64::from(tenant == Tenant::B), 2),
        (Tenant::A, "u-a-only") => detail(1, 1, 0, 1),
        (Tenant::B, "u-b-only") => detail(1, 1, 1, 1),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq)]
struct SessionFigures {
    session_id: String,
    traces: i64,
    errored_traces: i64,
    errored: bool,
    cost: f64,
    tokens_total: i64,
    duration_ms: f64,
}

/// Lifetime sessions of `user`, newest first.
fn expected_sessions(tenant: Tenant, user: &str) -> Vec<SessionFigures> {
    let (input, output) = tenant.tokens();
    let session = |id: String, traces: &[u64]| {
        let errored_traces = traces.iter().filter(|n| tenant.errored(**n)).count() as i64;
        let first = shape(traces[0]).2;
        let last = shape(traces[traces.len() - 1]).2;
        SessionFigures {
            session_id: id,
            traces: traces.len() as i64,
            errored_traces,
            errored: errored_traces > 0,
            cost: tenant.cost() * traces.len() as f64,
            tokens_total: (input + output) * traces.len() as i64,
            duration_ms: ((last + tenant.duration_s() * NS - first) / 1_000_000) as f64,
        }
    };
    match (tenant, user) {
        (_, "u1") => vec![session("s1".into(), &[1, 2])],
        (_, "u2") => vec![
            session(hex::encode(trace_id(4)), &[4]),
            session("s2".into(), &[3]),
        ],
        (Tenant::A, "u-a-only") => vec![session("s7".into(), &[7])],
        (Tenant::B, "u-b-only") => vec![session("s5".into(), &[5])],
        _ => Vec::new(),
    }
}

#[derive(Debug, Clone, PartialEq)]
struct BreakdownFigures {
    /// (model, provider, calls, traces, cost)
    models: Vec<(String, Option<String>, i64, i64, f64)>,
    /// (provider, calls, traces, cost)
    providers: Vec<(String, i64, i64, f64)>,
    /// (tool, calls, errors, traces)
    tools: Vec<(String, i64, i64, i64)>,
}

fn expected_breakdowns(tenant: Tenant, user: &str) -> BreakdownFigures {
    let traces: Vec<u64> = tenant
        .traces()
        .iter()
        .copied()
        .filter(|n| shape(*n).0 == Some(user))
        .collect();
    if traces.is_empty() {
        return BreakdownFigures {
            models: Vec::new(),
            providers: Vec::new(),
            tools: Vec::new(),
        };
    }
    let count = traces.len() as i64;
    let cost = tenant.cost() * count as f64;
    let errors = traces.iter().filter(|n| tenant.errored(**n)).count() as i64;
    BreakdownFigures {
        models: vec![(tenant.model(), Some(tenant.provider()), count, count, cost)],
        providers: vec![(tenant.provider(), count, count, cost)],
        tools: vec![(tenant.tool(), count, errors, count)],
    }
}

/// Every user id that appears in either project.
const ALL_USERS: [&str; 4] = ["u1", "u2", "u-a-only", "u-b-only"];

// ---------------------------------------------------------------------------------------
// Clients.
// ---------------------------------------------------------------------------------------

fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii key"),
    );
    request
}

/// A request with a raw `authorization` value, or none.
fn with_authorization<T>(message: T, authorization: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().expect("ascii value"));
    }
    request
}

fn week() -> Option<pb::TimeRange> {
    Some(pb::TimeRange {
        from: Some(ns_to_timestamp(MARCH_1 as i64)),
        to: Some(ns_to_timestamp((MARCH_1 + 7 * DAY) as i64)),
    })
}

fn list_users_request(search: &str) -> pb::ListUsersRequest {
    pb::ListUsersRequest {
        range: week(),
        search: search.to_owned(),
        order_field: pb::UserOrderField::UserId as i32,
        order_direction: pb::OrderDirection::Asc as i32,
        first: Some(200),
        ..Default::default()
    }
}

async fn query_client(addr: std::net::SocketAddr) -> UsersQueryServiceClient<Channel> {
    UsersQueryServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to users-query")
}

async fn export_grpc(addr: std::net::SocketAddr, key: &str, request: ExportTraceServiceRequest) {
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to ingest");
    let answer = client
        .export(with_key(request, key))
        .await
        .expect("export accepted")
        .into_inner();
    assert_eq!(answer.partial_success, None);
}

async fn annotate(addr: std::net::SocketAddr, key: &str, requests: Vec<AnnotateTraceRequest>) {
    let mut client = IngestServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to ingest");
    for request in requests {
        client
            .annotate_trace(with_key(request, key))
            .await
            .expect("annotation accepted");
    }
}

/// Both projects' data and annotations, written over OTLP/gRPC and `AnnotateTrace`.
async fn load_both(ingest_grpc: std::net::SocketAddr, key_a: &str, key_b: &str) {
    export_grpc(ingest_grpc, key_b, full_request(Tenant::B)).await;
    export_grpc(ingest_grpc, key_a, full_request(Tenant::A)).await;
    annotate(ingest_grpc, key_a, annotations(Tenant::A)).await;
    annotate(ingest_grpc, key_b, annotations(Tenant::B)).await;
}

fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() < 1e-9
}

fn tokens_of(tokens: Option<&pb::TokenUsage>) -> (i64, i64, i64, i64) {
    tokens
        .map(|t| (t.input, t.output, t.cached_input, t.total))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// users-query figures, read with one project's key.
// ---------------------------------------------------------------------------------------

async fn grpc_overview(
    client: &mut UsersQueryServiceClient<Channel>,
    key: &str,
) -> pb::UsersOverview {
    client
        .get_users_overview(with_key(pb::GetUsersOverviewRequest { range: week() }, key))
        .await
        .expect("GetUsersOverview")
        .into_inner()
}

fn overview_figures(overview: &pb::UsersOverview) -> OverviewFigures {
    OverviewFigures {
        unique_users: overview.unique_users,
        new_users: overview.new_users,
        traces: overview.traces,
        traces_with_user: overview.traces_with_user,
        sessions: overview.sessions,
        sessions_with_user: overview.sessions_with_user,
        errored_traces: overview
            .histogram
            .iter()
            .flat_map(|h| &h.buckets)
            .map(|b| b.errored_traces)
            .sum(),
    }
}

fn user_figures(row: &pb::UserRow) -> UserFigures {
    UserFigures {
        user_id: row.user_id.clone(),
        email: row.email.clone().unwrap_or_default(),
        traces: row.traces,
        sessions: row.sessions,
        errored_sessions: row.errored_sessions,
        cost_sum: row.cost.as_ref().map(|c| c.sum).unwrap_or_default(),
        tokens_total: tokens_of(row.tokens.as_ref()).3,
    }
}

fn detail_figures(detail: &pb::UserDetail) -> DetailFigures {
    DetailFigures {
        email: detail.email.clone().unwrap_or_default(),
        traces: detail.traces,
        sessions: detail.sessions,
        errored_sessions: detail.errored_sessions,
        cost_sum: detail.cost.as_ref().map(|c| c.sum).unwrap_or_default(),
        tokens: tokens_of(detail.tokens.as_ref()),
        average_trace_duration_ms: detail.average_trace_duration_ms,
        active_days: detail.active_days,
        issues: detail
            .issues
            .iter()
            .map(|i| (i.id.clone(), i.traces))
            .collect(),
        behaviours: detail
            .behaviours
            .iter()
            .map(|b| (b.name.clone(), b.traces))
            .collect(),
    }
}

fn session_figures(session: &pb::Session) -> SessionFigures {
    SessionFigures {
        session_id: session.session_id.clone(),
        traces: session.traces,
        errored_traces: session.errored_traces,
        errored: session.errored,
        cost: session.cost,
        tokens_total: tokens_of(session.tokens.as_ref()).3,
        duration_ms: session.duration_ms,
    }
}

fn breakdown_figures(breakdowns: &pb::Breakdowns) -> BreakdownFigures {
    BreakdownFigures {
        models: breakdowns
            .models
            .iter()
            .map(|m| {
                (
                    m.model.clone(),
                    m.provider.clone(),
                    m.calls,
                    m.traces,
                    m.cost,
                )
            })
            .collect(),
        providers: breakdowns
            .providers
            .iter()
            .map(|p| (p.provider.clone(), p.calls, p.traces, p.cost))
            .collect(),
        tools: breakdowns
            .tools
            .iter()
            .map(|t| (t.tool.clone(), t.calls, t.errors, t.traces))
            .collect(),
    }
}

/// Every users-query RPC with `key` answers exactly `tenant`'s figures, and nothing of
/// the other project: its own user is unknown, its emails match no search.
async fn assert_grpc_figures(query: std::net::SocketAddr, key: &str, tenant: Tenant) {
    let mut client = query_client(query).await;
    let overview = grpc_overview(&mut client, key).await;
    assert_eq!(
        overview_figures(&overview),
        expected_overview(tenant),
        "GetUsersOverview of {tenant:?}"
    );

    let users = client
        .list_users(with_key(list_users_request(""), key))
        .await
        .expect("ListUsers")
        .into_inner();
    assert_eq!(
        users.users.iter().map(user_figures).collect::<Vec<_>>(),
        expected_users(tenant),
        "ListUsers of {tenant:?}"
    );
    assert_eq!(users.total_count, 3);
    let rollup = users.cost_rollup.as_ref().map(|c| c.sum).unwrap_or(-1.0);
    assert!(
        close(rollup, expected_cost_rollup_sum(tenant)),
        "cost rollup of {tenant:?}: {rollup}"
    );
    // The other project's emails and own user match nothing.
    let other = tenant.other();
    for search in [format!("@{}.example", other.tag()), other.own_user().into()] {
        let found = client
            .list_users(with_key(list_users_request(&search), key))
            .await
            .expect("ListUsers with a search")
            .into_inner();
        assert_eq!(
            (found.total_count, found.users.len()),
            (0, 0),
            "{tenant:?} searched {search:?}"
        );
    }

    for user in ALL_USERS {
        let detail = client
            .get_user_detail(with_key(
                pb::GetUserDetailRequest {
                    user_id: user.into(),
                    ..Default::default()
                },
                key,
            ))
            .await
            .expect("GetUserDetail")
            .into_inner();
        assert_eq!(
            detail.user.as_ref().map(detail_figures),
            expected_detail(tenant, user),
            "GetUserDetail {user} of {tenant:?}"
        );

        let sessions = client
            .list_sessions(with_key(
                pb::ListSessionsRequest {
                    user_id: user.into(),
                    ..Default::default()
                },
                key,
            ))
            .await
            .expect("ListSessions")
            .into_inner();
        let expected = expected_sessions(tenant, user);
        assert_eq!(
            sessions
                .sessions
                .iter()
                .map(session_figures)
                .collect::<Vec<_>>(),
            expected,
            "ListSessions {user} of {tenant:?}"
        );
        assert_eq!(sessions.total_count, expected.len() as i64);

        let breakdowns = client
            .get_breakdowns(with_key(
                pb::GetBreakdownsRequest {
                    user_id: user.into(),
                    range: None,
                },
                key,
            ))
            .await
            .expect("GetBreakdowns")
            .into_inner();
        assert_eq!(
            breakdown_figures(&breakdowns),
            expected_breakdowns(tenant, user),
            "GetBreakdowns {user} of {tenant:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// What a project holds in the database, row by row.
// ---------------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
struct ProjectRows {
    generation: i64,
    spans: Vec<spans::Model>,
    traces: Vec<traces::Model>,
    annotations: Vec<trace_annotations::Model>,
}

async fn project_rows(database: &TestDatabase, project_id: i64) -> ProjectRows {
    let db = &database.db;
    ProjectRows {
        generation: read::project_generation(db, project_id)
            .await
            .expect("generation"),
        spans: spans::Entity::find()
            .filter(spans::Column::ProjectId.eq(project_id))
            .order_by_asc(spans::Column::TraceId)
            .order_by_asc(spans::Column::SpanId)
            .all(db)
            .await
            .expect("spans"),
        traces: traces::Entity::find()
            .filter(traces::Column::ProjectId.eq(project_id))
            .order_by_asc(traces::Column::TraceId)
            .all(db)
            .await
            .expect("traces"),
        annotations: trace_annotations::Entity::find()
            .filter(trace_annotations::Column::ProjectId.eq(project_id))
            .order_by_asc(trace_annotations::Column::TraceId)
            .order_by_asc(trace_annotations::Column::Kind)
            .order_by_asc(trace_annotations::Column::Value)
            .all(db)
            .await
            .expect("annotations"),
    }
}

/// Every answer users-query gives `key`, as the bytes of the responses.
async fn every_grpc_answer(query: std::net::SocketAddr, key: &str) -> Vec<Vec<u8>> {
    let mut client = query_client(query).await;
    let mut answers = vec![
        grpc_overview(&mut client, key).await.encode_to_vec(),
        client
            .list_users(with_key(list_users_request(""), key))
            .await
            .expect("ListUsers")
            .into_inner()
            .encode_to_vec(),
    ];
    for user in ALL_USERS {
        answers.push(
            client
                .get_user_detail(with_key(
                    pb::GetUserDetailRequest {
                        user_id: user.into(),
                        ..Default::default()
                    },
                    key,
                ))
                .await
                .expect("GetUserDetail")
                .into_inner()
                .encode_to_vec(),
        );
        answers.push(
            client
                .list_sessions(with_key(
                    pb::ListSessionsRequest {
                        user_id: user.into(),
                        ..Default::default()
                    },
                    key,
                ))
                .await
                .expect("ListSessions")
                .into_inner()
                .encode_to_vec(),
        );
        answers.push(
            client
                .get_breakdowns(with_key(
                    pb::GetBreakdownsRequest {
                        user_id: user.into(),
                        range: None,
                    },
                    key,
                ))
                .await
                .expect("GetBreakdowns")
                .into_inner()
                .encode_to_vec(),
        );
    }
    answers
}

async fn traces_of(query: std::net::SocketAddr, key: &str) -> i64 {
    let mut client = query_client(query).await;
    grpc_overview(&mut client, key).await.traces
}

async fn post_http(
    url: &str,
    authorization: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut post = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body);
    if let Some(value) = authorization {
        post = post.header("authorization", value);
    }
    post.send().await.expect("POST /v1/traces")
}

// ---------------------------------------------------------------------------------------
// Writes.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_key_writes_only_its_own_project_on_every_ingest_api() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let key_a = stack.key.clone();
        let project_a = stack.project_id;
        let (project_b, key_b) = keys::create_key(&database.db, "tenant-b")
            .await
            .expect("project B");
        assert_ne!(project_a, project_b);

        // B's data first, then a baseline of everything B has and sees.
        export_grpc(stack.ingest_grpc, &key_b, full_request(Tenant::B)).await;
        annotate(stack.ingest_grpc, &key_b, annotations(Tenant::B)).await;
        assert_grpc_figures(stack.query, &key_b, Tenant::B).await;
        let b_rows = project_rows(&database, project_b).await;
        let b_answers = every_grpc_answer(stack.query, &key_b).await;
        assert_eq!(b_rows.spans.len(), 18);
        let b_unchanged = |step: &'static str| {
            let database = &database;
            let b_rows = &b_rows;
            let b_answers = &b_answers;
            let key_b = &key_b;
            let query = stack.query;
            async move {
                assert!(
                    project_rows(database, project_b).await == *b_rows,
                    "{step}: B's rows (or its data generation) changed"
                );
                assert!(
                    every_grpc_answer(query, key_b).await == *b_answers,
                    "{step}: B's answers changed"
                );
            }
        };

        // A writes the same trace and span ids, one transport at a time.
        let url = format!("http://{}/v1/traces", stack.ingest_http);
        let bearer_a = format!("Bearer {key_a}");
        let response = post_http(
            &url,
            Some(&bearer_a),
            "application/x-protobuf",
            traces_request(Tenant::A, &[1]).encode_to_vec(),
        )
        .await;
        assert_eq!(response.status(), 200);
        b_unchanged("OTLP/HTTP protobuf").await;
        assert_eq!(traces_of(stack.query, &key_a).await, 1);

        let response = post_http(
            &url,
            Some(&bearer_a),
            "application/json",
            serde_json::to_vec(&traces_request(Tenant::A, &[2])).expect("OTLP JSON"),
        )
        .await;
        assert_eq!(response.status(), 200);
        b_unchanged("OTLP/HTTP JSON").await;
        assert_eq!(traces_of(stack.query, &key_a).await, 2);

        export_grpc(stack.ingest_grpc, &key_a, traces_request(Tenant::A, &[3])).await;
        b_unchanged("OTLP/gRPC").await;
        assert_eq!(traces_of(stack.query, &key_a).await, 3);

        let mut native = IngestServiceClient::connect(format!("http://{}", stack.ingest_grpc))
            .await
            .expect("connect to ingest");
        let batches = vec![
            SpanBatch {
                sequence: 1,
                resource_spans: traces_request(Tenant::A, &[4]).resource_spans,
            },
            SpanBatch {
                sequence: 2,
                resource_spans: traces_request(Tenant::A, &[7]).resource_spans,
            },
        ];
        let mut acks = native
            .stream_spans(with_key(futures::stream::iter(batches), &key_a))
            .await
            .expect("open the stream")
            .into_inner();
        let mut acked = Vec::new();
        while let Some(ack) = acks.message().await.expect("ack") {
            assert_eq!(ack.outcome, BatchOutcome::Durable as i32, "{ack:?}");
            acked.push((ack.sequence, ack.accepted_spans));
        }
        acked.sort();
        assert_eq!(acked, vec![(1, 3), (2, 3)]);
        b_unchanged("StreamSpans").await;
        assert_eq!(traces_of(stack.query, &key_a).await, 5);

        // A annotates trace 1 (B has one with that id) and trace 5 (only B has it).
        annotate(stack.ingest_grpc, &key_a, annotations(Tenant::A)).await;
        b_unchanged("AnnotateTrace").await;

        assert_grpc_figures(stack.query, &key_a, Tenant::A).await;
        assert_grpc_figures(stack.query, &key_b, Tenant::B).await;
        assert_eq!(project_rows(&database, project_a).await.spans.len(), 15);

        // The other way round: B re-sends all of its spans and annotations; A is untouched.
        let a_rows = project_rows(&database, project_a).await;
        let a_answers = every_grpc_answer(stack.query, &key_a).await;
        export_grpc(stack.ingest_grpc, &key_b, full_request(Tenant::B)).await;
        annotate(stack.ingest_grpc, &key_b, annotations(Tenant::B)).await;
        assert!(project_rows(&database, project_a).await == a_rows);
        assert!(every_grpc_answer(stack.query, &key_a).await == a_answers);

        // Both projects at once, many times over: the writer commits concurrent requests of
        // several projects together, and must keep each request in its own project.
        let mut writes = Vec::new();
        for round in 0..6 {
            for (tenant, key) in [(Tenant::A, key_a.clone()), (Tenant::B, key_b.clone())] {
                let url = url.clone();
                writes.push(tokio::spawn(async move {
                    let (content_type, body) = if round % 2 == 0 {
                        (
                            "application/x-protobuf",
                            full_request(tenant).encode_to_vec(),
                        )
                    } else {
                        (
                            "application/json",
                            serde_json::to_vec(&full_request(tenant)).expect("OTLP JSON"),
                        )
                    };
                    post_http(&url, Some(&format!("Bearer {key}")), content_type, body)
                        .await
                        .status()
                }));
            }
        }
        for write in writes {
            assert_eq!(write.await.expect("join"), 200);
        }
        assert_grpc_figures(stack.query, &key_a, Tenant::A).await;
        assert_grpc_figures(stack.query, &key_b, Tenant::B).await;
        assert!(project_rows(&database, project_a).await.spans == a_rows.spans);
        assert!(project_rows(&database, project_b).await.spans == b_rows.spans);
        stack.stop().await;
    });
}

// ---------------------------------------------------------------------------------------
// Reads.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn every_query_rpc_answers_from_the_callers_project_only() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let key_a = stack.key.clone();
        let (_, key_b) = keys::create_key(&database.db, "tenant-b")
            .await
            .expect("project B");
        load_both(stack.ingest_grpc, &key_a, &key_b).await;
        // Twice each: the second answers come from the result cache, keyed by project.
        for _ in 0..2 {
            assert_grpc_figures(stack.query, &key_a, Tenant::A).await;
            assert_grpc_figures(stack.query, &key_b, Tenant::B).await;
        }
        // A cursor of B's users table used with A's key positions in A's table only.
        let mut client = stack.query_client().await;
        let mut first_page = list_users_request("");
        first_page.first = Some(1);
        let b_page = client
            .list_users(with_key(first_page, &key_b))
            .await
            .expect("B's first page")
            .into_inner();
        assert_eq!(b_page.users[0].user_id, "u-b-only");
        let mut next = list_users_request("");
        next.after = b_page.end_cursor.clone();
        let a_rest = client
            .list_users(with_key(next, &key_a))
            .await
            .expect("A's page after B's cursor")
            .into_inner();
        assert_eq!(
            a_rest
                .users
                .iter()
                .map(|u| (u.user_id.as_str(), u.email.as_deref()))
                .collect::<Vec<_>>(),
            vec![("u1", Some("u1@a.example")), ("u2", Some("u2@a.example"))]
        );
        stack.stop().await;
    });
}

// ---------------------------------------------------------------------------------------
// GraphQL through the gateway, with the real binary.
// ---------------------------------------------------------------------------------------

const KEY_A: &str = "ul_isolation_key_of_project_a_0123456789abcdef";
const SHORT_KEY: &str = "short-key-1";

async fn start_all_in_one(
    database: &TestDatabase,
    api_key: Option<&str>,
    rust_log: &str,
) -> (UserlensProcess, std::path::PathBuf) {
    let mut env = vec![("RUST_LOG", rust_log)];
    if let Some(key) = api_key {
        env.push(("USERLENS_API_KEY", key));
    }
    process::start_all_in_one(database, &env, &[]).await
}

async fn graphql(url: &str, authorization: Option<&str>, query: &str) -> (u16, Value) {
    let mut post = reqwest::Client::new()
        .post(url)
        .json(&json!({ "query": query }));
    if let Some(value) = authorization {
        post = post.header("authorization", value);
    }
    let response = post.send().await.expect("POST /graphql");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

fn error_code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

fn as_f64(value: &Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

fn as_i64(value: &Value) -> i64 {
    value.as_i64().unwrap_or(i64::MIN)
}

const USER_FIELDS: &str = "userId email traces sessions erroredSessions cost { sum } \
                           tokens { input output cachedInput total }";

/// Every GraphQL query with `key` answers exactly `tenant`'s figures.
async fn assert_graphql_figures(url: &str, key: &str, tenant: Tenant) {
    let bearer = format!("Bearer {key}");
    let page = format!(
        r#"{{
          usersOverview(range: {RANGE}) {{
            uniqueUsers newUsers traces tracesWithUser sessions sessionsWithUser
            histogram {{ buckets {{ erroredTraces }} }}
          }}
          users(range: {RANGE}, orderBy: {{ field: USER_ID, direction: ASC }}) {{
            totalCount costRollup {{ sum }} nodes {{ {USER_FIELDS} }}
          }}
          other: users(range: {RANGE}, search: "@{}.example") {{ totalCount nodes {{ userId }} }}
        }}"#,
        tenant.other().tag()
    );
    let (status, body) = graphql(url, Some(&bearer), &page).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_null(), "{body}");
    let overview = &body["data"]["usersOverview"];
    let figures = OverviewFigures {
        unique_users: as_i64(&overview["uniqueUsers"]),
        new_users: as_i64(&overview["newUsers"]),
        traces: as_i64(&overview["traces"]),
        traces_with_user: as_i64(&overview["tracesWithUser"]),
        sessions: as_i64(&overview["sessions"]),
        sessions_with_user: as_i64(&overview["sessionsWithUser"]),
        errored_traces: overview["histogram"]["buckets"]
            .as_array()
            .map(|b| b.iter().map(|b| as_i64(&b["erroredTraces"])).sum())
            .unwrap_or(-1),
    };
    assert_eq!(
        figures,
        expected_overview(tenant),
        "usersOverview of {tenant:?}"
    );
    let users = &body["data"]["users"];
    let rows: Vec<UserFigures> = users["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|row| UserFigures {
            user_id: row["userId"].as_str().unwrap_or_default().to_owned(),
            email: row["email"].as_str().unwrap_or_default().to_owned(),
            traces: as_i64(&row["traces"]),
            sessions: as_i64(&row["sessions"]),
            errored_sessions: as_i64(&row["erroredSessions"]),
            cost_sum: as_f64(&row["cost"]["sum"]),
            tokens_total: as_i64(&row["tokens"]["total"]),
        })
        .collect();
    assert_eq!(rows, expected_users(tenant), "users of {tenant:?}");
    assert_eq!(users["totalCount"], 3);
    assert!(close(
        as_f64(&users["costRollup"]["sum"]),
        expected_cost_rollup_sum(tenant)
    ));
    assert_eq!(body["data"]["other"]["totalCount"], 0, "{body}");

    for user in ALL_USERS {
        let query = format!(
            r#"{{
              userDetail(userId: "{user}") {{
                {USER_FIELDS} averageTraceDurationMs activeDays
                issues {{ id traces }} behaviours {{ name traces }}
              }}
              sessions(userId: "{user}") {{
                totalCount
                nodes {{ sessionId traces erroredTraces errored cost durationMs tokens {{ total }} }}
              }}
              breakdowns(userId: "{user}") {{
                models {{ model provider calls traces cost }}
                providers {{ provider calls traces cost }}
                tools {{ tool calls errors traces }}
              }}
            }}"#
        );
        let (status, body) = graphql(url, Some(&bearer), &query).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["errors"].is_null(), "{body}");
        let detail = &body["data"]["userDetail"];
        let detail = (!detail.is_null()).then(|| DetailFigures {
            email: detail["email"].as_str().unwrap_or_default().to_owned(),
            traces: as_i64(&detail["traces"]),
            sessions: as_i64(&detail["sessions"]),
            errored_sessions: as_i64(&detail["erroredSessions"]),
            cost_sum: as_f64(&detail["cost"]["sum"]),
            tokens: (
                as_i64(&detail["tokens"]["input"]),
                as_i64(&detail["tokens"]["output"]),
                as_i64(&detail["tokens"]["cachedInput"]),
                as_i64(&detail["tokens"]["total"]),
            ),
            average_trace_duration_ms: as_f64(&detail["averageTraceDurationMs"]),
            active_days: as_i64(&detail["activeDays"]),
            issues: pairs(&detail["issues"], "id"),
            behaviours: pairs(&detail["behaviours"], "name"),
        });
        assert_eq!(
            detail,
            expected_detail(tenant, user),
            "userDetail {user} of {tenant:?}"
        );

        let sessions = &body["data"]["sessions"];
        let nodes: Vec<SessionFigures> = sessions["nodes"]
            .as_array()
            .expect("session nodes")
            .iter()
            .map(|s| SessionFigures {
                session_id: s["sessionId"].as_str().unwrap_or_default().to_owned(),
                traces: as_i64(&s["traces"]),
                errored_traces: as_i64(&s["erroredTraces"]),
                errored: s["errored"].as_bool().unwrap_or_default(),
                cost: as_f64(&s["cost"]),
                tokens_total: as_i64(&s["tokens"]["total"]),
                duration_ms: as_f64(&s["durationMs"]),
            })
            .collect();
        let expected = expected_sessions(tenant, user);
        assert_eq!(nodes, expected, "sessions {user} of {tenant:?}");
        assert_eq!(as_i64(&sessions["totalCount"]), expected.len() as i64);

        let breakdowns = &body["data"]["breakdowns"];
        let list = |field: &str| breakdowns[field].as_array().cloned().unwrap_or_default();
        let figures = BreakdownFigures {
            models: list("models")
                .iter()
                .map(|m| {
                    (
                        m["model"].as_str().unwrap_or_default().to_owned(),
                        m["provider"].as_str().map(str::to_owned),
                        as_i64(&m["calls"]),
                        as_i64(&m["traces"]),
                        as_f64(&m["cost"]),
                    )
                })
                .collect(),
            providers: list("providers")
                .iter()
                .map(|p| {
                    (
                        p["provider"].as_str().unwrap_or_default().to_owned(),
                        as_i64(&p["calls"]),
                        as_i64(&p["traces"]),
                        as_f64(&p["cost"]),
                    )
                })
                .collect(),
            tools: list("tools")
                .iter()
                .map(|t| {
                    (
                        t["tool"].as_str().unwrap_or_default().to_owned(),
                        as_i64(&t["calls"]),
                        as_i64(&t["errors"]),
                        as_i64(&t["traces"]),
                    )
                })
                .collect(),
        };
        assert_eq!(
            figures,
            expected_breakdowns(tenant, user),
            "breakdowns {user} of {tenant:?}"
        );
    }
}

fn pairs(list: &Value, name: &str) -> Vec<(String, i64)> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    (
                        i[name].as_str().unwrap_or_default().to_owned(),
                        as_i64(&i["traces"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_graphql_query_answers_from_the_callers_project_only() {
    for_each_backend!(|database| {
        let (aio, key_file) = start_all_in_one(&database, Some(KEY_A), "info").await;
        let (_, key_b) = keys::create_key(&database.db, "tenant-b")
            .await
            .expect("project B");
        load_both(aio.addr("otlp-grpc"), KEY_A, &key_b).await;
        let url = format!("http://{}/graphql", aio.addr("graphql"));
        for _ in 0..2 {
            assert_graphql_figures(&url, KEY_A, Tenant::A).await;
            assert_graphql_figures(&url, &key_b, Tenant::B).await;
        }
        // users-query of the same process agrees, per key.
        assert_grpc_figures(aio.addr("query-grpc"), KEY_A, Tenant::A).await;
        assert_grpc_figures(aio.addr("query-grpc"), &key_b, Tenant::B).await;

        // A search shaped like SQL is a plain string: nothing matches, nothing changes.
        let (status, body) = graphql(
            &url,
            Some(&format!("Bearer {KEY_A}")),
            &format!(
                "{{ users(range: {RANGE}, search: {}) {{ totalCount }} }}",
                serde_json::to_string(INJECTION).expect("a JSON string")
            ),
        )
        .await;
        assert_eq!(
            (status, &body["data"]["users"]["totalCount"]),
            (200, &json!(0))
        );
        assert_graphql_figures(&url, KEY_A, Tenant::A).await;
        aio.stop().await;
        let _ = std::fs::remove_file(key_file);
    });
}

// ---------------------------------------------------------------------------------------
// Missing, unknown and malformed keys.
// ---------------------------------------------------------------------------------------

/// `authorization` values that name no project: missing, blank, unknown, a key of a
/// deleted project, and near misses of a real key (its stored hash, its prefix, another
/// scheme, changed case, one character more or less, two keys).
fn refused_credentials(valid: &str, deleted: &str) -> Vec<Option<String>> {
    let mut upper = valid.to_uppercase();
    if upper == valid {
        upper = valid.to_lowercase();
    }
    vec![
        None,
        Some(String::new()),
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some(format!("Bearer ul_{:064x}", rand::random::<u128>())),
        Some(format!("Bearer {deleted}")),
        Some(deleted.to_owned()),
        Some(format!("Bearer {}", keys::hash_key(valid))),
        Some(format!("Bearer {}", &valid[..10])),
        Some(format!("Basic {valid}")),
        Some(format!("Token {valid}")),
        Some(format!("Bearer {upper}")),
        Some(format!("Bearer {}", &valid[..valid.len() - 1])),
        Some(format!("Bearer {valid}x")),
        Some(format!("Bearer {valid} {valid}")),
        Some(format!("Bearer {valid},{valid}")),
        Some("Bearer ' OR '1'='1".into()),
        Some(format!("Bearer {INJECTION}")),
    ]
}

/// A project with a key, deleted again before the key is ever used.
async fn deleted_key(database: &TestDatabase) -> String {
    let (project, key) = keys::create_key(&database.db, "deleted")
        .await
        .expect("a project to delete");
    api_keys::Entity::delete_many()
        .filter(api_keys::Column::ProjectId.eq(project))
        .exec(&database.db)
        .await
        .expect("delete its keys");
    projects::Entity::delete_by_id(project)
        .exec(&database.db)
        .await
        .expect("delete the project");
    key
}

fn assert_unauthenticated<T: std::fmt::Debug>(
    result: Result<T, Status>,
    api: &str,
    credential: &Option<String>,
) {
    match result {
        Err(status) => assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{api} with {credential:?}: {status:?}"
        ),
        Ok(answer) => panic!("{api} accepted {credential:?}: {answer:?}"),
    }
}

/// Calls every API with `authorization`; each must refuse with UNAUTHENTICATED / 401.
async fn assert_every_api_refuses(aio: &UserlensProcess, authorization: Option<String>) {
    let value = authorization.as_deref();
    let http = format!("http://{}/v1/traces", aio.addr("otlp-http"));
    let grpc = aio.addr("otlp-grpc");
    let query = aio.addr("query-grpc");
    let graphql_url = format!("http://{}/graphql", aio.addr("graphql"));

    let protobuf = full_request(Tenant::A).encode_to_vec();
    let response = post_http(&http, value, "application/x-protobuf", protobuf).await;
    assert_eq!(response.status(), 401, "OTLP/HTTP protobuf with {value:?}");
    let json_body = serde_json::to_vec(&full_request(Tenant::A)).expect("OTLP JSON");
    let response = post_http(&http, value, "application/json", json_body).await;
    assert_eq!(response.status(), 401, "OTLP/HTTP JSON with {value:?}");

    let mut otlp = TraceServiceClient::connect(format!("http://{grpc}"))
        .await
        .expect("connect");
    assert_unauthenticated(
        otlp.export(with_authorization(full_request(Tenant::A), value))
            .await,
        "OTLP/gRPC Export",
        &authorization,
    );
    let mut native = IngestServiceClient::connect(format!("http://{grpc}"))
        .await
        .expect("connect");
    let batch = SpanBatch {
        sequence: 1,
        resource_spans: full_request(Tenant::A).resource_spans,
    };
    let opened = native
        .stream_spans(with_authorization(
            futures::stream::iter(vec![batch]),
            value,
        ))
        .await;
    let stream_result = match opened {
        // Refused at the start, or at the latest instead of the first ack.
        Ok(response) => response
            .into_inner()
            .message()
            .await
            .map(|ack| ack.is_some()),
        Err(status) => Err(status),
    };
    assert_unauthenticated(stream_result, "StreamSpans", &authorization);
    for annotation in annotations(Tenant::A) {
        assert_unauthenticated(
            native
                .annotate_trace(with_authorization(annotation, value))
                .await,
            "AnnotateTrace",
            &authorization,
        );
    }

    let mut client = query_client(query).await;
    assert_unauthenticated(
        client
            .get_users_overview(with_authorization(
                pb::GetUsersOverviewRequest { range: week() },
                value,
            ))
            .await,
        "GetUsersOverview",
        &authorization,
    );
    assert_unauthenticated(
        client
            .list_users(with_authorization(list_users_request(""), value))
            .await,
        "ListUsers",
        &authorization,
    );
    assert_unauthenticated(
        client
            .get_user_detail(with_authorization(
                pb::GetUserDetailRequest {
                    user_id: "u1".into(),
                    ..Default::default()
                },
                value,
            ))
            .await,
        "GetUserDetail",
        &authorization,
    );
    assert_unauthenticated(
        client
            .list_sessions(with_authorization(
                pb::ListSessionsRequest {
                    user_id: "u1".into(),
                    ..Default::default()
                },
                value,
            ))
            .await,
        "ListSessions",
        &authorization,
    );
    assert_unauthenticated(
        client
            .get_breakdowns(with_authorization(
                pb::GetBreakdownsRequest {
                    user_id: "u1".into(),
                    range: None,
                },
                value,
            ))
            .await,
        "GetBreakdowns",
        &authorization,
    );

    for query in [
        format!("{{ usersOverview(range: {RANGE}) {{ traces }} }}"),
        format!("{{ users(range: {RANGE}) {{ totalCount nodes {{ userId }} }} }}"),
        r#"{ userDetail(userId: "u1") { userId traces } }"#.to_owned(),
        r#"{ sessions(userId: "u1") { totalCount } }"#.to_owned(),
        r#"{ breakdowns(userId: "u1") { models { model } } }"#.to_owned(),
    ] {
        let (status, body) = graphql(&graphql_url, value, &query).await;
        assert_eq!(
            (status, error_code(&body)),
            (401, Some("UNAUTHENTICATED")),
            "GraphQL {query} with {value:?}: {body}"
        );
        assert!(body["data"].is_null(), "no data with {value:?}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_unknown_and_malformed_keys_are_refused_by_every_api() {
    for_each_backend!(|database| {
        let (aio, key_file) = start_all_in_one(&database, Some(KEY_A), "info").await;
        let project_a = keys::resolve_key(&database.db, KEY_A)
            .await
            .expect("read keys")
            .expect("the bootstrap key");
        let (project_b, key_b) = keys::create_key(&database.db, "tenant-b")
            .await
            .expect("project B");
        let deleted = deleted_key(&database).await;
        let before_a = project_rows(&database, project_a).await;
        let before_b = project_rows(&database, project_b).await;

        for valid in [KEY_A, key_b.as_str()] {
            for authorization in refused_credentials(valid, &deleted) {
                assert_every_api_refuses(&aio, authorization).await;
            }
        }
        // Nothing of any refused request was written.
        assert!(project_rows(&database, project_a).await == before_a);
        assert!(project_rows(&database, project_b).await == before_b);
        assert_eq!(before_a.generation, 0);
        assert_eq!(before_b.generation, 0);

        // The same calls with the real keys pass: the refusals above are the keys' doing.
        load_both(aio.addr("otlp-grpc"), KEY_A, &key_b).await;
        let url = format!("http://{}/graphql", aio.addr("graphql"));
        assert_graphql_figures(&url, KEY_A, Tenant::A).await;
        assert_graphql_figures(&url, &key_b, Tenant::B).await;
        // The bare key (no scheme) is accepted too, as documented in the key resolver.
        let (status, body) = graphql(
            &url,
            Some(KEY_A),
            &format!("{{ usersOverview(range: {RANGE}) {{ traces }} }}"),
        )
        .await;
        assert_eq!(
            (status, &body["data"]["usersOverview"]["traces"]),
            (200, &json!(5))
        );
        aio.stop().await;
        let _ = std::fs::remove_file(key_file);
    });
}

// ---------------------------------------------------------------------------------------
// Keys at rest and in logs.
// ---------------------------------------------------------------------------------------

/// Every table's rows, as text, on PostgreSQL; on SQLite the database files' bytes, WAL
/// included (whatever SQLite keeps anywhere).
async fn everything_stored(database: &TestDatabase) -> Vec<u8> {
    match database.backend {
        Backend::Sqlite => {
            let file = database
                .url
                .strip_prefix("sqlite://")
                .expect("a sqlite url")
                .to_owned();
            let path = std::path::Path::new(&file);
            let dir = path.parent().expect("the database directory");
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("a file name")
                .to_owned();
            let mut bytes = Vec::new();
            for entry in std::fs::read_dir(dir).expect("list the database directory") {
                let entry = entry.expect("a directory entry");
                if entry.file_name().to_string_lossy().starts_with(&name) {
                    bytes.extend(std::fs::read(entry.path()).expect("read a database file"));
                }
            }
            bytes
        }
        Backend::Postgres => {
            let tables = database
                .db
                .query_all_raw(Statement::from_string(
                    database.db.get_database_backend(),
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = 'public'",
                ))
                .await
                .expect("list tables");
            let mut text = Vec::new();
            for table in tables {
                let table: String = table.try_get_by_index(0).expect("a table name");
                let rows = database
                    .db
                    .query_all_raw(Statement::from_string(
                        database.db.get_database_backend(),
                        format!("SELECT CAST(t AS text) FROM \"{table}\" t"),
                    ))
                    .await
                    .expect("read a table");
                for row in rows {
                    let row: String = row.try_get_by_index(0).expect("a row as text");
                    text.extend(row.into_bytes());
                    text.push(b'\n');
                }
            }
            text
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_holds_key_hashes_and_no_key() {
    for_each_backend!(|database| {
        // A key from `keys create`'s code path, the all-in-one key created on first start,
        // and a bootstrap key given in USERLENS_API_KEY.
        let (_, created) = keys::create_key(&database.db, "created")
            .await
            .expect("create a key");
        let (aio, key_file) = start_all_in_one(&database, None, "info").await;
        let generated = std::fs::read_to_string(&key_file)
            .expect("the key file")
            .trim()
            .to_owned();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_file)
                .expect("key file metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key file is private: {mode:o}");
        }
        load_both(aio.addr("otlp-grpc"), &generated, &created).await;
        aio.stop().await;
        let (aio, other_key_file) = start_all_in_one(&database, Some(KEY_A), "info").await;
        export_grpc(aio.addr("otlp-grpc"), KEY_A, full_request(Tenant::A)).await;
        aio.stop().await;

        // A short key an operator might choose: most of it must not be kept in clear.
        let project = keys::ensure_project(&database.db, "default")
            .await
            .expect("project default");
        keys::add_key(&database.db, project, SHORT_KEY)
            .await
            .expect("add a short key");

        let stored = api_keys::Entity::find()
            .all(&database.db)
            .await
            .expect("keys");
        assert_eq!(stored.len(), 4);
        let everything = everything_stored(&database).await;
        for key in [created.as_str(), generated.as_str(), KEY_A, SHORT_KEY] {
            let row = stored
                .iter()
                .find(|k| k.key_hash == keys::hash_key(key))
                .unwrap_or_else(|| panic!("{key}'s hash is stored"));
            assert!(
                !contains(&everything, key),
                "the database holds the key {key} in plaintext"
            );
            // What is kept in clear to tell keys apart is a small part of the key.
            let half: String = key.chars().take(key.chars().count() / 2).collect();
            assert!(
                !contains(&everything, &half),
                "the database holds half of the key {key}"
            );
            assert!(key.starts_with(&row.key_prefix));
            assert!(row.key_prefix.chars().count() <= (key.chars().count() / 4).min(10));
            assert_eq!(row.key_hash.len(), 64);
            assert!(row.key_hash.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        let _ = std::fs::remove_file(key_file);
        let _ = std::fs::remove_file(other_key_file);
    });
}

/// Sends valid and refused requests on every transport: OTLP/HTTP protobuf and JSON,
/// OTLP/gRPC, StreamSpans, AnnotateTrace, every users-query RPC and GraphQL; also a
/// request that fails after authentication, so error paths log too.
async fn exercise_every_api(aio: &UserlensProcess, valid: &[&str], refused: &[String]) {
    for key in valid {
        load_both(aio.addr("otlp-grpc"), key, key).await;
        let http = format!("http://{}/v1/traces", aio.addr("otlp-http"));
        let bearer = format!("Bearer {key}");
        let ok = post_http(
            &http,
            Some(&bearer),
            "application/json",
            serde_json::to_vec(&full_request(Tenant::A)).expect("OTLP JSON"),
        )
        .await;
        assert_eq!(ok.status(), 200);
        let bad = post_http(
            &http,
            Some(&bearer),
            "application/x-protobuf",
            vec![0xff; 8],
        )
        .await;
        assert_eq!(bad.status(), 400);
        let mut native = IngestServiceClient::connect(format!("http://{}", aio.addr("otlp-grpc")))
            .await
            .expect("connect");
        let batch = SpanBatch {
            sequence: 1,
            resource_spans: full_request(Tenant::B).resource_spans,
        };
        let mut acks = native
            .stream_spans(with_key(futures::stream::iter(vec![batch]), key))
            .await
            .expect("stream")
            .into_inner();
        while acks.message().await.expect("ack").is_some() {}
        let status = native
            .annotate_trace(with_key(
                AnnotateTraceRequest {
                    trace_id: "not hex".into(),
                    ..Default::default()
                },
                key,
            ))
            .await
            .expect_err("a bad trace id");
        assert_eq!(status.code(), Code::InvalidArgument);
        let _ = every_grpc_answer(aio.addr("query-grpc"), key).await;
        let url = format!("http://{}/graphql", aio.addr("graphql"));
        let (status, _) = graphql(
            &url,
            Some(&bearer),
            &format!("{{ users(range: {RANGE}) {{ totalCount }} userDetail(userId: \"u1\") {{ traces }} }}"),
        )
        .await;
        assert_eq!(status, 200);
        let (status, body) = graphql(
            &url,
            Some(&bearer),
            &format!("{{ users(range: {RANGE}, first: 0) {{ totalCount }} }}"),
        )
        .await;
        assert_eq!((status, error_code(&body)), (200, Some("BAD_USER_INPUT")));
    }
    for value in refused {
        assert_every_api_refuses(aio, Some(value.clone())).await;
    }
}

/// Lines of `lines` that contain any of `secrets`.
fn leaks<'a>(lines: &'a [String], secrets: &[&str]) -> Vec<&'a String> {
    lines
        .iter()
        .filter(|line| secrets.iter().any(|secret| line.contains(secret)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_key_is_ever_logged() {
    for_each_backend!(|database| {
        let refused_keys = [
            format!("ul_refused_{:032x}", rand::random::<u128>()),
            format!("refused-{:032x}", rand::random::<u128>()),
        ];
        let refused: Vec<String> = refused_keys
            .iter()
            .map(|k| format!("Bearer {k}"))
            .chain([format!("Basic {}", refused_keys[0])])
            .collect();
        let (_, other_key) = keys::create_key(&database.db, "other")
            .await
            .expect("a second project");

        // 1. No USERLENS_API_KEY: all-in-one creates a key and prints it, on stdout, once
        //    per start, and nowhere else. Debug logging on, as an operator chasing a
        //    problem would run it.
        let (aio, key_file) = start_all_in_one(&database, None, "debug").await;
        let generated = std::fs::read_to_string(&key_file)
            .expect("the key file")
            .trim()
            .to_owned();
        exercise_every_api(&aio, &[&generated, &other_key], &refused).await;
        let graphql_addr = aio.addr("graphql");
        let output = aio.stop_and_collect().await;
        let secrets: Vec<&str> = [generated.as_str(), other_key.as_str()]
            .into_iter()
            .chain(refused_keys.iter().map(String::as_str))
            .collect();
        assert!(
            output.log.len() > 20,
            "the log was collected: {:?}",
            output.log
        );
        assert_eq!(leaks(&output.log, &secrets), Vec::<&String>::new());
        assert_eq!(
            output.stdout,
            vec![
                format!("userlens API key (project default): {generated}"),
                format!("Users page: http://{graphql_addr}/"),
                format!("GraphiQL: http://{graphql_addr}/graphql"),
            ],
            "stdout holds the key line and nothing else secret"
        );

        // 2. USERLENS_API_KEY set: the key is printed nowhere, even at the most verbose level.
        let (aio, other_key_file) = start_all_in_one(&database, Some(KEY_A), "trace").await;
        exercise_every_api(&aio, &[KEY_A, &other_key], &refused).await;
        let output = aio.stop_and_collect().await;
        let secrets: Vec<&str> = [KEY_A, other_key.as_str(), generated.as_str()]
            .into_iter()
            .chain(refused_keys.iter().map(String::as_str))
            .collect();
        assert!(output.log.len() > 20);
        assert_eq!(leaks(&output.log, &secrets), Vec::<&String>::new());
        assert_eq!(leaks(&output.stdout, &secrets), Vec::<&String>::new());
        let _ = std::fs::remove_file(key_file);
        let _ = std::fs::remove_file(other_key_file);
    });
}

// ---------------------------------------------------------------------------------------
// Searches are strings, never SQL.
// ---------------------------------------------------------------------------------------

async fn count_rows(database: &TestDatabase, table: &str) -> i64 {
    let row = database
        .db
        .query_one_raw(Statement::from_string(
            database.db.get_database_backend(),
            format!("SELECT COUNT(*) FROM {table}"),
        ))
        .await
        .expect("the table is still there")
        .expect("a count");
    row.try_get_by_index(0).expect("a count")
}

async fn table_counts(database: &TestDatabase) -> Vec<(&'static str, i64)> {
    let mut counts = Vec::new();
    for table in [
        "projects",
        "api_keys",
        "spans",
        "traces",
        "trace_annotations",
    ] {
        counts.push((table, count_rows(database, table).await));
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn searches_and_ids_shaped_like_sql_are_plain_strings() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let long = "z".repeat(500);
        let users: Vec<(String, Option<&str>)> = vec![
            (INJECTION.to_owned(), Some("robert@tables.example")),
            ("o'brien".to_owned(), Some("o'brien@x.example")),
            ("100%_done".to_owned(), None),
            ("under_score".to_owned(), None),
            ("back\\slash".to_owned(), None),
            ("müller".to_owned(), Some("MÜLLER@x.example")),
            ("名前".to_owned(), None),
            ("plain".to_owned(), Some("plain@x.example")),
            (long.clone(), None),
        ];
        let spans: Vec<Span> = users
            .iter()
            .enumerate()
            .map(|(i, (user, email))| {
                let n = i as u64 + 1;
                let mut attributes = vec![kv("user.id", string(user))];
                if let Some(email) = email {
                    attributes.push(kv("user.email", string(email)));
                }
                attributes.push(kv("session.id", string(INJECTION)));
                let start = MARCH_1 + n * HOUR;
                with_attributes(
                    span(trace_id(n), span_id(n), None, start, start + NS),
                    attributes,
                )
            })
            .collect();
        stack
            .export(request(vec![resource_spans(vec![], spans)]))
            .await;
        let mut ingest = IngestServiceClient::connect(format!("http://{}", stack.ingest_grpc))
            .await
            .expect("connect");
        ingest
            .annotate_trace(stack.authorized(AnnotateTraceRequest {
                trace_id: hex::encode(trace_id(1)),
                issues: vec![IssueAnnotation {
                    id: INJECTION.into(),
                    title: INJECTION.into(),
                }],
                behaviours: vec![INJECTION.into()],
            }))
            .await
            .expect("annotate");
        let status = ingest
            .annotate_trace(stack.authorized(AnnotateTraceRequest {
                trace_id: INJECTION.into(),
                ..Default::default()
            }))
            .await
            .expect_err("not a trace id");
        assert_eq!(status.code(), Code::InvalidArgument);
        let before = table_counts(&database).await;
        assert_eq!(
            before,
            vec![
                ("projects", 1),
                ("api_keys", 1),
                ("spans", 9),
                ("traces", 9),
                ("trace_annotations", 2)
            ]
        );

        let mut client = stack.query_client().await;
        let all: BTreeSet<String> = users.iter().map(|(u, _)| u.clone()).collect();
        let only = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
        let cases: Vec<(String, BTreeSet<String>)> = vec![
            (INJECTION.into(), only(&[INJECTION])),
            ("drop table".into(), only(&[INJECTION])),
            ("'".into(), only(&[INJECTION, "o'brien"])),
            ("' OR '1'='1".into(), BTreeSet::new()),
            ("%".into(), only(&["100%_done"])),
            ("%_".into(), only(&["100%_done"])),
            ("%%".into(), BTreeSet::new()),
            ("_".into(), only(&["100%_done", "under_score"])),
            ("\\".into(), only(&["back\\slash"])),
            ("\\%".into(), BTreeSet::new()),
            ("MÜLLER".into(), only(&["müller"])),
            ("müller@".into(), only(&["müller"])),
            ("名".into(), only(&["名前"])),
            ("x.example".into(), only(&["o'brien", "müller", "plain"])),
            ("--".into(), only(&[INJECTION])),
            (";".into(), only(&[INJECTION])),
            ("\0".into(), BTreeSet::new()),
            (String::new(), all.clone()),
            ("   ".into(), all.clone()),
            (long.clone(), only(&[long.as_str()])),
            (format!("  {long}\t"), only(&[long.as_str()])),
            (long[..499].to_owned(), only(&[long.as_str()])),
            ("é".repeat(500), BTreeSet::new()),
        ];
        for (search, expected) in &cases {
            let answer = client
                .list_users(stack.authorized(list_users_request(search)))
                .await
                .unwrap_or_else(|status| panic!("search {search:?}: {status:?}"))
                .into_inner();
            let found: BTreeSet<String> = answer.users.iter().map(|u| u.user_id.clone()).collect();
            assert_eq!(&found, expected, "search {search:?}");
            assert_eq!(
                answer.total_count,
                expected.len() as i64,
                "search {search:?}"
            );
        }
        for too_long in [format!("{long}z"), "é".repeat(501)] {
            let status = client
                .list_users(stack.authorized(list_users_request(&too_long)))
                .await
                .expect_err("over 500 characters");
            assert_eq!(status.code(), Code::InvalidArgument);
        }
        // Ids shaped like SQL in the other reads are ids too.
        let detail = client
            .get_user_detail(stack.authorized(pb::GetUserDetailRequest {
                user_id: INJECTION.into(),
                ..Default::default()
            }))
            .await
            .expect("detail")
            .into_inner()
            .user
            .expect("the user named like SQL");
        assert_eq!(detail.user_id, INJECTION);
        assert_eq!(detail.issues.len(), 1);
        assert_eq!(detail.issues[0].id, INJECTION);
        assert_eq!(detail.issues[0].title.as_deref(), Some(INJECTION));
        assert_eq!(detail.behaviours.len(), 1);
        let sessions = client
            .list_sessions(stack.authorized(pb::ListSessionsRequest {
                user_id: INJECTION.into(),
                ..Default::default()
            }))
            .await
            .expect("sessions")
            .into_inner();
        assert_eq!(sessions.total_count, 1);
        assert_eq!(sessions.sessions[0].session_id, INJECTION);
        for user in ["' OR '1'='1", "%", "_"] {
            let detail = client
                .get_user_detail(stack.authorized(pb::GetUserDetailRequest {
                    user_id: user.into(),
                    ..Default::default()
                }))
                .await
                .expect("detail")
                .into_inner();
            assert!(detail.user.is_none(), "{user:?} is not a user");
            let breakdowns = client
                .get_breakdowns(stack.authorized(pb::GetBreakdownsRequest {
                    user_id: user.into(),
                    range: None,
                }))
                .await
                .expect("breakdowns")
                .into_inner();
            assert_eq!(breakdowns, pb::Breakdowns::default(), "{user:?}");
        }

        // Every table is still there with every row; the id is stored as sent.
        assert_eq!(table_counts(&database).await, before);
        let stored = traces::Entity::find()
            .filter(traces::Column::UserId.eq(INJECTION))
            .all(&database.db)
            .await
            .expect("traces");
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].session_id, INJECTION);
        let overview = grpc_overview(&mut client, &stack.key).await;
        assert_eq!(overview.traces, 9);
        stack.stop().await;
    });
}
