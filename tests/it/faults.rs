//! Fault injection: the reliability promises of SPEC §1, §3 and §7 under a database that
//! kills connections or restarts, a Redis that stops, is flushed or hangs, a users-query that
//! goes away, and a SIGTERM in the middle of a stream. The shared PostgreSQL and Redis
//! servers are never touched: their faults are simulated with a TCP proxy between the
//! service and the server, `pg_terminate_backend` on the test's own database, and `FLUSHDB`
//! on a Redis logical database of this file's own.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use serde_json::{Value, json};
use userlens_datagen::{Dataset, DatasetSpec};
use userlens_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use userlens_proto::ingest::v1::{BatchOutcome, SpanBatch};
use userlens_proto::query::v1::{
    GetUserDetailRequest, GetUserDetailResponse, GetUsersOverviewRequest, ListUsersRequest,
    ListUsersResponse, OrderDirection, TimeRange, UserOrderField, UsersOverview,
};
use userlens_storage::entities::{spans, traces};
use userlens_storage::keys;
use userlens_tests::faults_support::{
    Batch, StreamOptions, counter, postgres_database_name, redis_command, redis_key_count,
    stream_until_acknowledged, terminate_backends,
};
use userlens_tests::process::UserlensProcess;
use userlens_tests::proxy::{Proxy, address_of, with_address};
use userlens_tests::stack::{CacheChoice, Stack, redis_url};
use userlens_tests::{Backend, TestDatabase, for_each_backend};
use userlens_users_query::convert::ns_to_timestamp as ts;

const KEY: &str = "ul_faults_key_0123456789";
const NS: i64 = 1_000_000_000;
const DAY: i64 = 86_400 * NS;
/// 2026-03-01T00:00:00Z.
const MARCH_1: i64 = 1_772_323_200 * NS;
const DAYS: u32 = 14;
const END_NS: i64 = MARCH_1 + DAYS as i64 * DAY;
/// The Redis logical database these tests use (and flush); no other test uses it.
const REDIS_DB: u8 = 11;

fn full_range() -> Option<TimeRange> {
    Some(TimeRange {
        from: Some(ts(MARCH_1 - DAY)),
        to: Some(ts(END_NS + DAY)),
    })
}

fn dataset(traces: u64, seed: u64) -> Dataset {
    Dataset::new(DatasetSpec::new(traces, traces / 12, DAYS, seed, END_NS))
}

// ---------------------------------------------------------------------------------------
// Figures and stored spans

/// What the users page shows for the whole range: the overview, the users table in two
/// orders, and the busiest user's detail.
#[derive(Debug, Clone, PartialEq)]
struct Figures {
    overview: UsersOverview,
    users: ListUsersResponse,
    users_by_cost: ListUsersResponse,
    detail: GetUserDetailResponse,
}

async fn figures(stack: &Stack) -> Figures {
    let mut client = stack.query_client().await;
    let overview = client
        .get_users_overview(stack.authorized(GetUsersOverviewRequest {
            range: full_range(),
        }))
        .await
        .expect("users overview")
        .into_inner();
    let users = client
        .list_users(stack.authorized(ListUsersRequest {
            range: full_range(),
            first: Some(100),
            ..Default::default()
        }))
        .await
        .expect("users")
        .into_inner();
    let users_by_cost = client
        .list_users(stack.authorized(ListUsersRequest {
            range: full_range(),
            first: Some(100),
            order_field: UserOrderField::CostMedian as i32,
            order_direction: OrderDirection::Desc as i32,
            ..Default::default()
        }))
        .await
        .expect("users by cost")
        .into_inner();
    let busiest = users
        .users
        .first()
        .map(|u| u.user_id.clone())
        .unwrap_or_default();
    let detail = client
        .get_user_detail(stack.authorized(GetUserDetailRequest {
            user_id: busiest,
            activity_days: vec![7, 30],
        }))
        .await
        .expect("user detail")
        .into_inner();
    Figures {
        overview,
        users,
        users_by_cost,
        detail,
    }
}

/// Queries `figures` answers: how many users-query calls one `figures` makes.
const CALLS_PER_FIGURES: u64 = 4;

fn trace_span_counts(dataset: &Dataset, traces: u64) -> BTreeMap<Vec<u8>, i64> {
    (0..traces)
        .map(|i| {
            let trace = dataset.trace(i);
            let spans: Vec<_> = trace.scope_spans.iter().flat_map(|s| &s.spans).collect();
            (spans[0].trace_id.clone(), spans.len() as i64)
        })
        .collect()
}

/// Raw spans stored per trace (`spans` table) and the derived span count per trace
/// (`traces` table).
async fn stored_span_counts(
    db: &DatabaseConnection,
    project_id: i64,
) -> (BTreeMap<Vec<u8>, i64>, BTreeMap<Vec<u8>, i64>) {
    use sea_orm::sea_query::ExprTrait;
    let raw: Vec<(Vec<u8>, i64)> = spans::Entity::find()
        .select_only()
        .column(spans::Column::TraceId)
        .column_as(Expr::col(spans::Column::SpanId).count(), "n")
        .filter(spans::Column::ProjectId.eq(project_id))
        .group_by(spans::Column::TraceId)
        .into_tuple()
        .all(db)
        .await
        .expect("count spans per trace");
    let derived: Vec<(Vec<u8>, i32)> = traces::Entity::find()
        .select_only()
        .column(traces::Column::TraceId)
        .column(traces::Column::SpanCount)
        .filter(traces::Column::ProjectId.eq(project_id))
        .into_tuple()
        .all(db)
        .await
        .expect("read trace rows");
    (
        raw.into_iter().collect(),
        derived
            .into_iter()
            .map(|(id, n)| (id, i64::from(n)))
            .collect(),
    )
}

async fn stored_span_ids(db: &DatabaseConnection, project_id: i64) -> HashSet<(Vec<u8>, Vec<u8>)> {
    spans::Entity::find()
        .select_only()
        .column(spans::Column::TraceId)
        .column(spans::Column::SpanId)
        .filter(spans::Column::ProjectId.eq(project_id))
        .into_tuple::<(Vec<u8>, Vec<u8>)>()
        .all(db)
        .await
        .expect("read span ids")
        .into_iter()
        .collect()
}

fn span_ids(resource_spans: &[ResourceSpans]) -> Vec<(Vec<u8>, Vec<u8>)> {
    resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| (s.trace_id.clone(), s.span_id.clone()))
        .collect()
}

/// The traces of `dataset` in groups of `per_batch`, each trace cut in two (alternate
/// spans): batch `b` carries one half of group `b`'s traces and the other half of group
/// `b − 1`'s, so every trace arrives over two batches.
fn split_batches(dataset: &Dataset, traces: u64, per_batch: u64) -> Vec<Batch> {
    let halves = |i: u64| {
        let trace = dataset.trace(i);
        let half = |parity: usize| ResourceSpans {
            scope_spans: trace
                .scope_spans
                .iter()
                .map(|scope| ScopeSpans {
                    spans: scope
                        .spans
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| k % 2 == parity)
                        .map(|(_, s)| s.clone())
                        .collect(),
                    ..scope.clone()
                })
                .filter(|scope| !scope.spans.is_empty())
                .collect(),
            ..trace.clone()
        };
        (half(0), half(1))
    };
    let groups = traces.div_ceil(per_batch);
    let group = |g: u64| g * per_batch..((g + 1) * per_batch).min(traces);
    (0..=groups)
        .map(|b| {
            let mut resource_spans = Vec::new();
            if b < groups {
                resource_spans.extend(group(b).map(|i| halves(i).0));
            }
            if b > 0 {
                resource_spans.extend(group(b - 1).map(|i| halves(i).1));
            }
            resource_spans.retain(|r| !r.scope_spans.is_empty());
            Batch::new(resource_spans)
        })
        .collect()
}

/// Ingests `dataset` with no fault through `stack`.
async fn ingest_cleanly(stack: &Stack, dataset: &Dataset, traces: u64) {
    for start in (0..traces).step_by(200) {
        stack
            .export(dataset.request(start..(start + 200).min(traces)))
            .await;
    }
}

// ---------------------------------------------------------------------------------------
// An OTLP/HTTP client that retries

#[derive(Debug, Default)]
struct HttpReport {
    acked: BTreeSet<usize>,
    resent: u64,
    /// Answers by HTTP status, and `connect` for requests that got no answer.
    failures: BTreeMap<String, u64>,
}

/// Posts every batch (OTLP/HTTP protobuf), one after another `pace` apart, and posts again
/// each one answered 503 / 429 or whose connection failed, until each is answered 200.
async fn post_until_acknowledged(
    url: &str,
    batches: &[Batch],
    pace: Duration,
    deadline: Duration,
) -> HttpReport {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    let started = Instant::now();
    let mut report = HttpReport::default();
    for (index, batch) in batches.iter().enumerate() {
        let body = ExportTraceServiceRequest {
            resource_spans: batch.resource_spans.clone(),
        }
        .encode_to_vec();
        let mut attempt = 0;
        loop {
            assert!(
                started.elapsed() < deadline,
                "batches not all acknowledged within {deadline:?}: {report:?}"
            );
            if attempt > 0 {
                report.resent += 1;
            }
            attempt += 1;
            let sent = client
                .post(url)
                .header("content-type", "application/x-protobuf")
                .header("authorization", format!("Bearer {KEY}"))
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().as_u16() == 200 => {
                    let bytes = response.bytes().await.expect("response body");
                    let answer =
                        ExportTraceServiceResponse::decode(bytes).expect("an OTLP response");
                    assert!(
                        answer
                            .partial_success
                            .as_ref()
                            .is_none_or(|p| p.rejected_spans == 0),
                        "{answer:?}"
                    );
                    report.acked.insert(index);
                    break;
                }
                Ok(response) if matches!(response.status().as_u16(), 503 | 429) => {
                    *report
                        .failures
                        .entry(response.status().as_u16().to_string())
                        .or_default() += 1;
                }
                Ok(response) => panic!("batch {index} answered {}", response.status()),
                Err(_) => *report.failures.entry("connect".into()).or_default() += 1,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(pace).await;
    }
    report
}

// ---------------------------------------------------------------------------------------
// 1. PostgreSQL connections killed, PostgreSQL restarted

const PG_TRACES: u64 = 1_200;
const PG_TRACES_PER_BATCH: u64 = 10;

/// What the fault schedule did.
#[derive(Debug, Default)]
struct FaultLog {
    terminate_rounds: u64,
    backends_terminated: u64,
    restart_cut: u64,
    restart_down: Duration,
    reject_cut: u64,
    reject_down: Duration,
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(userlens_test_postgres),
    ignore = "needs PostgreSQL: set USERLENS_TEST_DATABASE_URL and build the tests again"
)]
async fn acknowledged_spans_survive_killed_connections_and_a_postgres_restart() {
    assert!(
        userlens_tests::backends().contains(&Backend::Postgres),
        "built for PostgreSQL, but {} is not set now",
        userlens_tests::DATABASE_URL_ENV
    );
    let faulty = TestDatabase::create(Backend::Postgres).await;
    let reference = TestDatabase::create(Backend::Postgres).await;
    let data = dataset(PG_TRACES, 21);
    let batches = split_batches(&data, PG_TRACES, PG_TRACES_PER_BATCH);
    let total_spans: u64 = batches.iter().map(|b| b.spans).sum();

    // The same data with no fault, for the expected figures.
    let clean = Stack::start(&reference, CacheChoice::InProcess).await;
    ingest_cleanly(&clean, &data, PG_TRACES).await;
    let expected = figures(&clean).await;
    clean.stop().await;

    // `userlens ingest` reaches PostgreSQL through the proxy only.
    let proxy = Proxy::start(address_of(&faulty.url, 5432).await).await;
    let proxied_url = with_address(&faulty.url, proxy.addr());
    let ingest = UserlensProcess::start(
        &[
            "ingest",
            "--otlp-grpc-addr",
            "127.0.0.1:0",
            "--otlp-http-addr",
            "127.0.0.1:0",
        ],
        &[
            ("USERLENS_DATABASE_URL", &proxied_url),
            ("USERLENS_API_KEY", KEY),
        ],
        &["otlp-grpc", "otlp-http"],
    )
    .await;
    let project_id = keys::resolve_key(&faulty.db, KEY)
        .await
        .expect("keys")
        .expect("the ingest process created the project");

    // Stream the even batches, post the odd ones, both retrying, while the schedule below
    // kills connections and restarts the "server".
    let streamed: Vec<Batch> = batches.iter().step_by(2).cloned().collect();
    let posted: Vec<Batch> = batches.iter().skip(1).step_by(2).cloned().collect();
    let started = Instant::now();
    let stream_client = tokio::spawn({
        let addr = ingest.addr("otlp-grpc");
        let streamed = streamed.clone();
        async move {
            stream_until_acknowledged(
                addr,
                KEY,
                &streamed,
                StreamOptions {
                    window: 8,
                    pace: Duration::from_millis(90),
                    deadline: Duration::from_secs(60),
                },
            )
            .await
        }
    });
    let http_client = tokio::spawn({
        let url = format!("http://{}/v1/traces", ingest.addr("otlp-http"));
        let posted = posted.clone();
        async move {
            post_until_acknowledged(
                &url,
                &posted,
                Duration::from_millis(60),
                Duration::from_secs(60),
            )
            .await
        }
    });

    let admin = faulty.connect_again().await;
    let database_name = postgres_database_name(&faulty.url);
    let mut log = FaultLog::default();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Connections killed, one round every 150 ms for 2 s.
    let kill_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < kill_until {
        log.terminate_rounds += 1;
        log.backends_terminated += terminate_backends(&admin, &database_name).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // A restart: every connection cut, connections refused for 1.2 s.
    log.restart_down = Duration::from_millis(1_200);
    log.restart_cut = proxy.restart(log.restart_down).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    // A restart that answers new connections and drops them (a server still starting up).
    log.reject_down = Duration::from_millis(1_000);
    proxy.reject().await;
    log.reject_cut = proxy.cut_all();
    tokio::time::sleep(log.reject_down).await;
    proxy.resume().await;
    let faults_ended = started.elapsed();

    let stream_report = stream_client.await.expect("stream client");
    let http_report = http_client.await.expect("HTTP client");
    let clients_done = started.elapsed();
    let _ = admin.close().await;
    eprintln!(
        "postgres faults: {log:?}, faults over after {faults_ended:?}, clients done after \
         {clients_done:?}\nstream client: {}\nHTTP client: resent {} \
         failures {:?}\nproxy: {:?}",
        stream_report.summary(),
        http_report.resent,
        http_report.failures,
        proxy.stats()
    );
    assert!(
        clients_done > faults_ended.saturating_sub(Duration::from_secs(1)),
        "the clients were still sending while the faults happened"
    );
    assert!(
        log.backends_terminated > 0,
        "pg_terminate_backend hit the ingest's connections"
    );
    assert!(
        log.restart_cut + log.reject_cut > 0,
        "the restart cut live connections"
    );
    assert_eq!(stream_report.acked.len(), streamed.len());
    assert_eq!(http_report.acked.len(), posted.len());
    let client_retries = stream_report.resent + http_report.resent;
    assert!(
        client_retries > 0,
        "the faults reached the clients (some batch had to be sent again)"
    );

    // Every acknowledged span is stored exactly once, each trace whole.
    let expected_per_trace = trace_span_counts(&data, PG_TRACES);
    let (raw, derived) = stored_span_counts(&faulty.db, project_id).await;
    assert_eq!(
        userlens_storage::read::span_count(&faulty.db, project_id)
            .await
            .expect("span count"),
        total_spans
    );
    assert_eq!(raw, expected_per_trace, "raw spans per trace");
    assert_eq!(derived, expected_per_trace, "derived span count per trace");
    ingest.stop().await;

    // And the users page is the one of the same data ingested with no fault.
    let query = Stack::start(&faulty, CacheChoice::InProcess).await;
    let after_faults = figures(&query).await;
    assert!(expected.overview.traces > 0);
    assert_eq!(after_faults.overview, expected.overview);
    assert_eq!(after_faults.users, expected.users);
    assert_eq!(after_faults.users_by_cost, expected.users_by_cost);
    assert_eq!(after_faults.detail, expected.detail);
    eprintln!(
        "postgres faults: {total_spans} spans in {} batches acknowledged and stored once; \
         {client_retries} batch sends repeated",
        batches.len()
    );
    query.stop().await;
    faulty.finish().await;
    reference.finish().await;
}

// ---------------------------------------------------------------------------------------
// 2. Redis stopped, flushed, hung, back

struct CacheCounters {
    hits: u64,
    misses: u64,
    errors: u64,
}

async fn cache_counters(stack: &Stack) -> CacheCounters {
    let metrics = stack.query_metrics().await;
    CacheCounters {
        hits: counter(&metrics, "userlens_query_cache_hits_total"),
        misses: counter(&metrics, "userlens_query_cache_misses_total"),
        errors: counter(&metrics, "userlens_query_cache_errors_total"),
    }
}

/// One more trace of `user` inside the range, under a trace id no dataset uses.
fn extra_trace(n: u64, user: &str) -> ExportTraceServiceRequest {
    use userlens_tests::otlp::{
        double, kv, request, resource_spans, span, string, with_attributes,
    };
    let start = (MARCH_1 + 3 * DAY) as u64 + n * 1_000;
    let root = with_attributes(
        span(
            userlens_tests::otlp::trace_id(900_000 + n),
            userlens_tests::otlp::span_id(900_000 + n),
            None,
            start,
            start + 5_000_000,
        ),
        vec![
            kv("user.id", string(user)),
            kv("gen_ai.request.model", string("gpt-4o")),
            kv("gen_ai.usage.cost", double(0.25)),
        ],
    );
    request(vec![resource_spans(vec![], vec![root])])
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(userlens_test_redis),
    ignore = "needs Redis: set USERLENS_TEST_REDIS_URL and build the tests again"
)]
async fn queries_stay_correct_while_redis_stops_is_flushed_hangs_and_returns() {
    let redis = redis_url().unwrap_or_else(|| {
        panic!(
            "built for Redis, but {} is not set now",
            userlens_tests::REDIS_URL_ENV
        )
    });
    let redis_addr = address_of(&redis, 6379).await;
    for_each_backend!(|database| {
        let proxy = Proxy::start(redis_addr).await;
        let cache_url = format!("redis://{}/{REDIS_DB}", proxy.addr());
        let stack = Stack::start(&database, CacheChoice::Redis(cache_url)).await;
        let prefix = stack.redis_prefix.clone().expect("a Redis key prefix");
        // Answers straight from the database, for the expected figures.
        let reference = Stack::start(&database, CacheChoice::InProcess).await;
        let data = dataset(300, 5);
        ingest_cleanly(&stack, &data, 300).await;

        // Healthy: the second round is answered from Redis.
        let expected = figures(&reference).await;
        assert!(expected.overview.traces > 0);
        assert_eq!(figures(&stack).await, expected);
        let filled = cache_counters(&stack).await;
        assert_eq!(figures(&stack).await, expected);
        let healthy = cache_counters(&stack).await;
        assert_eq!(healthy.hits, filled.hits + CALLS_PER_FIGURES, "cache used");
        assert_eq!(healthy.errors, 0);
        assert!(redis_key_count(redis_addr, REDIS_DB, &prefix).await >= CALLS_PER_FIGURES);

        // Flushed: answered from the database (misses, not errors), then cached again.
        assert_eq!(
            redis_command(redis_addr, REDIS_DB, &["FLUSHDB"]).await,
            "+OK"
        );
        assert_eq!(redis_key_count(redis_addr, REDIS_DB, &prefix).await, 0);
        assert_eq!(figures(&stack).await, expected);
        let flushed = cache_counters(&stack).await;
        assert_eq!(flushed.misses, healthy.misses + CALLS_PER_FIGURES);
        assert_eq!(flushed.hits, healthy.hits);
        assert_eq!(flushed.errors, 0, "a flush is not a failure");
        assert_eq!(figures(&stack).await, expected);
        let refilled = cache_counters(&stack).await;
        assert_eq!(refilled.hits, flushed.hits + CALLS_PER_FIGURES);
        let entries_before_outage = redis_key_count(redis_addr, REDIS_DB, &prefix).await;
        assert!(entries_before_outage >= CALLS_PER_FIGURES);

        // Stopped: connections cut and refused. Answers come from the database, quickly,
        // and an acknowledged write is in the very next answer.
        proxy.refuse().await;
        proxy.cut_all();
        let outage = Instant::now();
        assert_eq!(figures(&stack).await, expected);
        let stopped = cache_counters(&stack).await;
        assert!(stopped.errors >= CALLS_PER_FIGURES, "failures are counted");
        let busiest = expected.users.users[0].user_id.clone();
        stack.export(extra_trace(1, &busiest)).await;
        let after_write = figures(&reference).await;
        assert_ne!(after_write, expected, "the write changes the figures");
        assert_eq!(figures(&stack).await, after_write);
        let stopped_answer = outage.elapsed();
        assert!(
            stopped_answer < Duration::from_secs(5),
            "answers while Redis is down took {stopped_answer:?}"
        );

        // Hung: connections accepted, never answered. Same again, within the timeout.
        proxy.blackhole().await;
        let hung_at = Instant::now();
        assert_eq!(figures(&stack).await, after_write);
        stack.export(extra_trace(2, &busiest)).await;
        let after_second_write = figures(&reference).await;
        assert_ne!(after_second_write, after_write);
        assert_eq!(figures(&stack).await, after_second_write);
        let hung_answer = hung_at.elapsed();
        assert!(
            hung_answer < Duration::from_secs(5),
            "answers while Redis hangs took {hung_answer:?}"
        );
        let hung = cache_counters(&stack).await;
        assert!(hung.errors > stopped.errors, "timeouts are counted");

        // Back, still holding the entries of the generation before the writes: they are
        // never served; the cache fills and serves again.
        proxy.cut_all();
        proxy.resume().await;
        assert_eq!(
            redis_key_count(redis_addr, REDIS_DB, &prefix).await,
            entries_before_outage,
            "the old entries survived the outage"
        );
        let back_at = Instant::now();
        let recovered = loop {
            assert_eq!(figures(&stack).await, after_second_write);
            let now = cache_counters(&stack).await;
            if now.hits > hung.hits {
                break now;
            }
            assert!(
                back_at.elapsed() < Duration::from_secs(15),
                "the cache is not used again 15 s after Redis came back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let recovery = back_at.elapsed();
        assert!(redis_key_count(redis_addr, REDIS_DB, &prefix).await > entries_before_outage);
        eprintln!(
            "redis faults: stopped answers {stopped_answer:?}, hung answers {hung_answer:?}, \
             cache used again after {recovery:?}; errors counted {}, hits {} → {}, \
             proxy {:?}",
            recovered.errors,
            hung.hits,
            recovered.hits,
            proxy.stats()
        );
        stack.stop().await;
        reference.stop().await;
    });
}

// ---------------------------------------------------------------------------------------
// 3. users-query down, hung, back

async fn graphql(url: &str, key: &str, query: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header("authorization", format!("Bearer {key}"))
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("POST /graphql");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

fn error_code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_answers_unavailable_fast_while_users_query_is_down_and_recovers() {
    let database = TestDatabase::create(Backend::Sqlite).await;
    let stack = Stack::start(&database, CacheChoice::InProcess).await;
    let data = dataset(120, 9);
    ingest_cleanly(&stack, &data, 120).await;
    let expected = figures(&stack).await.overview;
    let proxy = Proxy::start(stack.query).await;
    let gateway = UserlensProcess::start(
        &[
            "gateway",
            "--graphql-addr",
            "127.0.0.1:0",
            "--query-url",
            &format!("http://{}", proxy.addr()),
            "--query-timeout-ms",
            "2000",
        ],
        &[],
        &["graphql"],
    )
    .await;
    let url = format!("http://{}/graphql", gateway.addr("graphql"));
    let healthz = format!("http://{}/healthz", gateway.addr("graphql"));
    let query = concat!(
        r#"{ usersOverview(range: { from: "2026-02-28T00:00:00Z", to: "2026-03-16T00:00:00Z" }) "#,
        "{ uniqueUsers traces sessions } }"
    );
    let check = |body: &Value| {
        assert_eq!(
            body["data"]["usersOverview"],
            json!({
                "uniqueUsers": expected.unique_users,
                "traces": expected.traces,
                "sessions": expected.sessions,
            }),
            "{body}"
        );
    };
    let (status, body) = graphql(&url, &stack.key, query).await;
    assert_eq!(status, 200);
    check(&body);

    let unavailable = async |what: &str| {
        for _ in 0..2 {
            let asked = Instant::now();
            let (status, body) = graphql(&url, &stack.key, query).await;
            let took = asked.elapsed();
            assert_eq!(status, 200, "{body}");
            assert_eq!(error_code(&body), Some("UNAVAILABLE"), "{what}: {body}");
            assert!(
                took < Duration::from_secs(5),
                "{what}: answered in {took:?}"
            );
            eprintln!("users-query {what}: UNAVAILABLE in {took:?}");
        }
        let health = reqwest::get(&healthz).await.expect("healthz");
        assert_eq!(health.status().as_u16(), 503, "{what}");
    };

    // Restarted in a blink: the live connection cut, new ones accepted. A query racing the
    // cut is answered or refused as UNAVAILABLE, never reported as an internal error.
    let mut raced = 0;
    for _ in 0..10 {
        proxy.cut_all();
        let (status, body) = graphql(&url, &stack.key, query).await;
        assert_eq!(status, 200, "{body}");
        if body["errors"].is_null() {
            check(&body);
        } else {
            assert_eq!(error_code(&body), Some("UNAVAILABLE"), "restart: {body}");
            raced += 1;
        }
    }
    eprintln!("users-query restarted 10 times: {raced} queries answered UNAVAILABLE");

    // Down: the live connection cut, new ones refused.
    proxy.refuse().await;
    proxy.cut_all();
    unavailable("down").await;
    // Hung: connections accepted, never answered (bounded by the 2 s query timeout).
    proxy.blackhole().await;
    unavailable("hung").await;

    // Back: the next queries are answered again.
    proxy.cut_all();
    proxy.resume().await;
    let back_at = Instant::now();
    loop {
        let (status, body) = graphql(&url, &stack.key, query).await;
        assert_eq!(status, 200);
        if body["errors"].is_null() {
            check(&body);
            break;
        }
        assert_eq!(error_code(&body), Some("UNAVAILABLE"), "{body}");
        assert!(
            back_at.elapsed() < Duration::from_secs(15),
            "the gateway did not recover within 15 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("users-query back: answered after {:?}", back_at.elapsed());
    let health = reqwest::get(&healthz).await.expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    gateway.stop().await;
    stack.stop().await;
    database.finish().await;
}

// ---------------------------------------------------------------------------------------
// 4. SIGTERM with batches in flight

const SHUTDOWN_TRACES_PER_BATCH: u64 = 4;
const SHUTDOWN_BATCHES: u64 = 3_000;

#[derive(Debug, Default)]
struct ShutdownStream {
    sent: BTreeSet<usize>,
    acked: BTreeSet<usize>,
    retry_acks: u64,
    /// How the stream ended.
    end: String,
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stores_every_acknowledged_batch_and_exits_cleanly() {
    for_each_backend!(|database| {
        let ingest = UserlensProcess::start(
            &[
                "ingest",
                "--otlp-grpc-addr",
                "127.0.0.1:0",
                "--otlp-http-addr",
                "127.0.0.1:0",
            ],
            &[
                ("USERLENS_DATABASE_URL", &database.url),
                ("USERLENS_API_KEY", KEY),
            ],
            &["otlp-grpc", "otlp-http"],
        )
        .await;
        let project_id = keys::resolve_key(&database.db, KEY)
            .await
            .expect("keys")
            .expect("project");
        let data = dataset(SHUTDOWN_BATCHES * SHUTDOWN_TRACES_PER_BATCH, 17);
        let batch = |b: usize| {
            let b = b as u64;
            data.request(b * SHUTDOWN_TRACES_PER_BATCH..(b + 1) * SHUTDOWN_TRACES_PER_BATCH)
                .resource_spans
        };
        let batches_streamed = (SHUTDOWN_BATCHES as usize).div_ceil(2);
        let terminate = Arc::new(tokio::sync::Notify::new());
        let terminated = Arc::new(AtomicBool::new(false));

        // One long-lived stream with up to 32 batches in flight, as an SDK keeps it: it
        // sends until the server ends it and never closes its side first.
        let stream_client = tokio::spawn({
            let addr = ingest.addr("otlp-grpc");
            let terminate = Arc::clone(&terminate);
            let batches: Vec<Vec<ResourceSpans>> = (0..SHUTDOWN_BATCHES as usize)
                .step_by(2)
                .map(batch)
                .collect();
            async move {
                let mut report = ShutdownStream::default();
                let mut client = IngestServiceClient::connect(format!("http://{addr}"))
                    .await
                    .expect("connect");
                let (sender, outbound) = futures::channel::mpsc::unbounded::<SpanBatch>();
                let mut request = tonic::Request::new(outbound);
                request.metadata_mut().insert(
                    "authorization",
                    format!("Bearer {KEY}").parse().expect("ascii"),
                );
                let mut acks = client
                    .stream_spans(request)
                    .await
                    .expect("stream opens")
                    .into_inner();
                let mut next = 0;
                loop {
                    let in_flight =
                        report.sent.len() - report.acked.len() - report.retry_acks as usize;
                    let can_send = in_flight < 32 && next < batches.len();
                    tokio::select! {
                        () = std::future::ready(()), if can_send => {
                            let sent = sender.unbounded_send(SpanBatch {
                                sequence: next as u64,
                                resource_spans: batches[next].clone(),
                            });
                            if sent.is_err() {
                                report.end = "send failed".into();
                                break;
                            }
                            report.sent.insert(next);
                            next += 1;
                        }
                        message = acks.message() => match message {
                            Ok(Some(ack)) => {
                                let index = ack.sequence as usize;
                                match BatchOutcome::try_from(ack.outcome) {
                                    Ok(BatchOutcome::Durable) => {
                                        report.acked.insert(index);
                                        if report.acked.len() == 40 {
                                            terminate.notify_one();
                                        }
                                    }
                                    Ok(BatchOutcome::Retry) => report.retry_acks += 1,
                                    other => panic!("batch {index} answered {other:?}"),
                                }
                            }
                            Ok(None) => {
                                report.end = "ended".into();
                                break;
                            }
                            Err(status) => {
                                report.end = format!("{:?}: {}", status.code(), status.message());
                                break;
                            }
                        },
                    }
                }
                report
            }
        });

        // Four OTLP/HTTP senders posting the other batches until refused.
        let next_post = Arc::new(AtomicUsize::new(0));
        let mut http_clients = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let url = format!("http://{}/v1/traces", ingest.addr("otlp-http"));
            let next_post = Arc::clone(&next_post);
            let terminated = Arc::clone(&terminated);
            let data_batches: Vec<usize> = (1..SHUTDOWN_BATCHES as usize).step_by(2).collect();
            let data = dataset(SHUTDOWN_BATCHES * SHUTDOWN_TRACES_PER_BATCH, 17);
            http_clients.spawn(async move {
                let client = reqwest::Client::new();
                let mut acked = Vec::new();
                let mut refused = Vec::new();
                loop {
                    let slot = next_post.fetch_add(1, Ordering::SeqCst);
                    let Some(&b) = data_batches.get(slot) else {
                        break;
                    };
                    let b = b as u64;
                    let body = data
                        .request(b * SHUTDOWN_TRACES_PER_BATCH..(b + 1) * SHUTDOWN_TRACES_PER_BATCH)
                        .encode_to_vec();
                    let answer = client
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .header("authorization", format!("Bearer {KEY}"))
                        .body(body)
                        .send()
                        .await;
                    match answer {
                        Ok(response) if response.status().as_u16() == 200 => acked.push(b as usize),
                        Ok(response) => {
                            assert!(
                                matches!(response.status().as_u16(), 503 | 429),
                                "batch {b} answered {}",
                                response.status()
                            );
                            refused.push(b as usize);
                            if terminated.load(Ordering::SeqCst) {
                                break;
                            }
                        }
                        Err(_) => {
                            refused.push(b as usize);
                            if terminated.load(Ordering::SeqCst) {
                                break;
                            }
                        }
                    }
                }
                (acked, refused)
            });
        }

        tokio::time::timeout(Duration::from_secs(30), terminate.notified())
            .await
            .expect("40 batches acknowledged within 30 s");
        terminated.store(true, Ordering::SeqCst);
        let signalled = Instant::now();
        let stop = tokio::spawn(ingest.stop());

        let stream = tokio::time::timeout(Duration::from_secs(15), stream_client)
            .await
            .expect("the server ends an open stream within 15 s of SIGTERM")
            .expect("stream client");
        let stream_ended = signalled.elapsed();
        assert!(
            stream.sent.len() < batches_streamed,
            "SIGTERM came before the client ran out of batches"
        );
        let mut http_acked = BTreeSet::new();
        let mut http_refused = BTreeSet::new();
        let http_done = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(result) = http_clients.join_next().await {
                let (acked, refused) = result.expect("HTTP client");
                http_acked.extend(acked);
                http_refused.extend(refused);
            }
        })
        .await;
        assert!(
            http_done.is_ok(),
            "the HTTP senders stop within 20 s of SIGTERM"
        );
        stop.await.expect("userlens exits 0");
        let exited = signalled.elapsed();
        assert!(exited < Duration::from_secs(20), "exit took {exited:?}");

        // Every acknowledged batch is stored; nothing outside the data set is.
        let stored = stored_span_ids(&database.db, project_id).await;
        let all_acked: BTreeSet<usize> = stream
            .acked
            .iter()
            .map(|i| i * 2)
            .chain(http_acked.iter().copied())
            .collect();
        for &b in &all_acked {
            for id in span_ids(&batch(b)) {
                assert!(
                    stored.contains(&id),
                    "batch {b} was acknowledged but is not stored"
                );
            }
        }
        let mut sent_ids = HashSet::new();
        for b in stream
            .sent
            .iter()
            .map(|i| i * 2)
            .chain(http_acked.iter().copied())
            .chain(http_refused.iter().copied())
        {
            sent_ids.extend(span_ids(&batch(b)));
        }
        assert!(stored.is_subset(&sent_ids), "only sent spans are stored");
        let unacked_stream: Vec<usize> = stream
            .sent
            .difference(&stream.acked)
            .map(|i| i * 2)
            .collect();
        let unacked_stored = unacked_stream
            .iter()
            .chain(http_refused.iter())
            .filter(|&&b| span_ids(&batch(b)).iter().all(|id| stored.contains(id)))
            .count();
        eprintln!(
            "shutdown ({:?}): stream sent {} acked {} retry-acks {} ended {:?} after \
             {stream_ended:?}; HTTP acked {} refused {}; not acknowledged but stored \
             {unacked_stored}; exit 0 after {exited:?}",
            database.backend,
            stream.sent.len(),
            stream.acked.len(),
            stream.retry_acks,
            stream.end,
            http_acked.len(),
            http_refused.len(),
        );
        assert!(stream.acked.len() >= 40);
    });
}
