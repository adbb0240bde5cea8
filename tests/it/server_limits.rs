//! Server hardening: slow and idle HTTP clients cannot hold connections or stop real
//! clients, SIGTERM returns within the shutdown grace whatever clients do, the result cache
//! never crosses deployments or survives a restored database, repeated series fields are
//! capped, and corrupt storage is `INTERNAL`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Statement};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Code;
use userlens_proto::query::v1::users_query_service_client::UsersQueryServiceClient;
use userlens_proto::query::v1::{GetUserDetailRequest, ListUsersRequest, TimeRange};
use userlens_storage::{DbBackend, read};
use userlens_tests::otlp::{kv, request, resource_spans, span, span_id, string, trace_id};
use userlens_tests::process::{self, UserlensProcess};
use userlens_tests::stack::{CacheChoice, Stack, redis_url};
use userlens_tests::{TestDatabase, for_each_backend};
use userlens_users_query::ResultCache;
use userlens_users_query::convert::ns_to_timestamp as ts;

const NS: i64 = 1_000_000_000;
/// 2026-03-01T00:00:00Z.
const MARCH_1: i64 = 1_772_323_200 * NS;
const KEY: &str = "server-limits-test-key-0123456789";

fn march() -> Option<TimeRange> {
    Some(TimeRange {
        from: Some(ts(MARCH_1)),
        to: Some(ts(MARCH_1 + 86_400 * NS)),
    })
}

fn one_trace(
    n: u64,
    user: &str,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    let start = (MARCH_1 + n as i64 * NS) as u64;
    let root = userlens_tests::otlp::with_attributes(
        span(trace_id(n), span_id(n), None, start, start + 1_000),
        vec![kv("user.id", string(user))],
    );
    request(vec![resource_spans(vec![], vec![root])])
}

fn authorized<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii key"),
    );
    request
}

async fn users_at(query: SocketAddr, key: &str, first: u32) -> Vec<String> {
    let mut client = UsersQueryServiceClient::connect(format!("http://{query}"))
        .await
        .expect("connect to users-query");
    let mut users: Vec<String> = client
        .list_users(authorized(
            key,
            ListUsersRequest {
                range: march(),
                first: Some(first),
                ..Default::default()
            },
        ))
        .await
        .expect("list users")
        .into_inner()
        .users
        .into_iter()
        .map(|u| u.user_id)
        .collect();
    users.sort();
    users
}

/// A users-query server over `database` using `cache` (shared with other servers).
struct QueryServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl QueryServer {
    async fn start(database: &TestDatabase, cache: ResultCache) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, mut stopped) = watch::channel(false);
        let db = database.db.clone();
        let task = tokio::spawn(async move {
            userlens_users_query::serve(db, cache, listener, None, async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await
            .expect("users-query serves");
        });
        Self { addr, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_deployments_sharing_one_cache_and_prefix_never_read_each_others_answers() {
    for_each_backend!(|database_a| {
        let database_b = TestDatabase::create(database_a.backend).await;
        // One cache for both deployments: one Redis under one key prefix when configured,
        // else one in-process cache handed to both servers.
        let cache = match redis_url() {
            Some(url) => {
                let prefix = format!("userlens-test-shared-{:016x}:", rand::random::<u64>());
                ResultCache::redis(&url, &prefix).expect("redis url")
            }
            None => ResultCache::in_process(),
        };
        let stack_a = Stack::start(&database_a, CacheChoice::InProcess).await;
        let stack_b = Stack::start(&database_b, CacheChoice::InProcess).await;
        assert_eq!(stack_a.project_id, stack_b.project_id, "same project id");
        stack_a.export(one_trace(1, "alice")).await;
        stack_b.export(one_trace(1, "bob")).await;
        assert_eq!(
            read::project_generation(&database_a.db, stack_a.project_id)
                .await
                .expect("generation"),
            read::project_generation(&database_b.db, stack_b.project_id)
                .await
                .expect("generation"),
            "both deployments at the same generation, so only the deployment tells them apart"
        );

        let query_a = QueryServer::start(&database_a, cache.clone()).await;
        let query_b = QueryServer::start(&database_b, cache.clone()).await;
        for _ in 0..2 {
            assert_eq!(users_at(query_a.addr, &stack_a.key, 50).await, ["alice"]);
            assert_eq!(users_at(query_b.addr, &stack_b.key, 50).await, ["bob"]);
        }
        query_a.stop().await;
        query_b.stop().await;
        stack_a.stop().await;
        stack_b.stop().await;
        database_b.finish().await;
    });
}

/// `?` or `$n` placeholders, as the backend wants them.
fn statement(backend: DbBackend, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    let sql = match backend {
        DbBackend::Postgres => {
            let mut numbered = String::new();
            let mut n = 0;
            for c in sql.chars() {
                if c == '?' {
                    n += 1;
                    numbered.push_str(&format!("${n}"));
                } else {
                    numbered.push(c);
                }
            }
            numbered
        }
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// What a backup holds of a project's history: its generation and token, with the marks.
struct Backup {
    state: read::ProjectGeneration,
}

async fn take_backup(db: &sea_orm::DatabaseConnection, project_id: i64) -> Backup {
    Backup {
        state: read::generation_and_deployment(db, project_id)
            .await
            .expect("generation"),
    }
}

/// Restores what `backup` saw, as restoring a database backup would: the rows of the given
/// traces written since are gone, and the project's generation, token and marks go back.
async fn restore(
    db: &sea_orm::DatabaseConnection,
    project_id: i64,
    backup: &Backup,
    traces_written_since: &[u64],
) {
    let backend = db.get_database_backend();
    for trace in traces_written_since {
        for table in ["spans", "traces", "trace_annotations"] {
            db.execute_raw(statement(
                backend,
                &format!("DELETE FROM {table} WHERE trace_id = ?"),
                vec![trace_id(*trace).to_vec().into()],
            ))
            .await
            .expect("delete rows written since the backup");
        }
    }
    db.execute_raw(statement(
        backend,
        "DELETE FROM generation_marks WHERE project_id = ? AND generation > ?",
        vec![project_id.into(), backup.state.generation.into()],
    ))
    .await
    .expect("marks of the backup");
    db.execute_raw(statement(
        backend,
        "UPDATE projects SET data_generation = ?, generation_token = ? WHERE id = ?",
        vec![
            backup.state.generation.into(),
            backup.state.token.into(),
            project_id.into(),
        ],
    ))
    .await
    .expect("set the generation back");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generation_going_backwards_rebuilds_the_snapshot_and_the_cache_namespace() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let db = &database.db;
        stack.export(one_trace(1, "alice")).await;
        let backup = take_backup(db, stack.project_id).await;
        assert_eq!(users_at(stack.query, &stack.key, 50).await, ["alice"]);
        stack.export(one_trace(2, "bob")).await;
        let later_generation = read::project_generation(db, stack.project_id)
            .await
            .expect("generation");
        assert_eq!(
            users_at(stack.query, &stack.key, 50).await,
            ["alice", "bob"]
        );
        let deployment_before = read::generation_and_deployment(db, stack.project_id)
            .await
            .expect("deployment")
            .deployment_id;

        // Restore the backup taken before bob's trace: his rows and the generation go back.
        restore(db, stack.project_id, &backup, &[2]).await;

        // A page size never asked before: answered from the snapshot, not the cache.
        assert_eq!(users_at(stack.query, &stack.key, 49).await, ["alice"]);
        assert_eq!(users_at(stack.query, &stack.key, 50).await, ["alice"]);
        let deployment_after = read::generation_and_deployment(db, stack.project_id)
            .await
            .expect("deployment")
            .deployment_id;
        assert_ne!(
            deployment_before, deployment_after,
            "a fresh cache namespace"
        );

        // New writes bring the generation back to where bob's answer was cached.
        stack.export(one_trace(3, "carol")).await;
        assert_eq!(
            read::project_generation(db, stack.project_id)
                .await
                .expect("generation"),
            later_generation,
            "the generation bob's answer was cached at"
        );
        assert_eq!(
            users_at(stack.query, &stack.key, 50).await,
            ["alice", "carol"]
        );
        assert_eq!(
            users_at(stack.query, &stack.key, 48).await,
            ["alice", "carol"]
        );
        stack.stop().await;
    });
}

/// The case no process can see as a generation going backwards: the restored database is
/// written again up to (and past) the generation the old snapshot and cached answers hold
/// before anyone queries it.
#[tokio::test(flavor = "multi_thread")]
async fn a_restored_database_written_again_before_any_query_serves_nothing_of_the_old_history() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let db = &database.db;
        stack.export(one_trace(1, "alice")).await;
        assert_eq!(users_at(stack.query, &stack.key, 50).await, ["alice"]);
        let backup = take_backup(db, stack.project_id).await;
        stack.export(one_trace(2, "bob")).await;
        let bob_generation = read::project_generation(db, stack.project_id)
            .await
            .expect("generation");
        // The snapshot and the cache (Redis on PostgreSQL) hold alice and bob.
        assert_eq!(
            users_at(stack.query, &stack.key, 50).await,
            ["alice", "bob"]
        );

        restore(db, stack.project_id, &backup, &[2]).await;
        // Written again before any query: the generation is bob's again, with other data.
        stack.export(one_trace(3, "carol")).await;
        assert_eq!(
            read::project_generation(db, stack.project_id)
                .await
                .expect("generation"),
            bob_generation
        );
        // The same page as the one cached with bob: not served from the cache.
        assert_eq!(
            users_at(stack.query, &stack.key, 50).await,
            ["alice", "carol"]
        );
        // Another page size: from a snapshot rebuilt, not the one holding bob.
        assert_eq!(
            users_at(stack.query, &stack.key, 47).await,
            ["alice", "carol"]
        );

        // Once more, now written past bob's generation before the next query: the snapshot
        // holds carol's state, which the restore below takes away again.
        let backup = take_backup(db, stack.project_id).await;
        stack.export(one_trace(4, "dave")).await;
        assert_eq!(
            users_at(stack.query, &stack.key, 46).await,
            ["alice", "carol", "dave"]
        );
        restore(db, stack.project_id, &backup, &[4]).await;
        stack.export(one_trace(5, "erin")).await;
        stack.export(one_trace(6, "frank")).await;
        assert_eq!(
            users_at(stack.query, &stack.key, 46).await,
            ["alice", "carol", "erin", "frank"]
        );
        assert_eq!(
            users_at(stack.query, &stack.key, 45).await,
            ["alice", "carol", "erin", "frank"]
        );
        stack.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_series_fields_are_capped_naming_the_field() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        stack.export(one_trace(1, "alice")).await;
        let mut client = stack.query_client().await;
        let million = vec![7u32; 1_000_000];
        let status = client
            .list_users(stack.authorized(ListUsersRequest {
                range: march(),
                trend_buckets: million.clone(),
                ..Default::default()
            }))
            .await
            .expect_err("a million trend series are refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("trend_buckets"), "{status:?}");
        let status = client
            .get_user_detail(stack.authorized(GetUserDetailRequest {
                user_id: "alice".into(),
                activity_days: million,
            }))
            .await
            .expect_err("a million activity series are refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("activity_days"), "{status:?}");

        let at_limit = (1..=DOCUMENTED_MAX_SERIES).collect::<Vec<_>>();
        let users = client
            .list_users(stack.authorized(ListUsersRequest {
                range: march(),
                trend_buckets: at_limit.clone(),
                ..Default::default()
            }))
            .await
            .expect("the documented number of series is served")
            .into_inner()
            .users;
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].trends.len(), at_limit.len());
        stack.stop().await;
    });
}

/// The documented cap (docs/reliability.md), written out so the test fails if it changes
/// without the docs.
const DOCUMENTED_MAX_SERIES: u32 = 16;

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_stored_data_is_internal_not_retryable() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        stack.export(one_trace(1, "alice")).await;
        let db = &database.db;
        db.execute_raw(statement(
            db.get_database_backend(),
            "UPDATE traces SET details = ?",
            vec![vec![0xffu8; 4].into()],
        ))
        .await
        .expect("corrupt the trace details");
        let status = stack
            .query_client()
            .await
            .list_users(stack.authorized(ListUsersRequest {
                range: march(),
                ..Default::default()
            }))
            .await
            .expect_err("corrupt rows cannot be answered");
        assert_eq!(status.code(), Code::Internal, "{status:?}");
        stack.stop().await;
    });
}

// ---------------------------------------------------------------------------------------
// HTTP limits, against the real binary
// ---------------------------------------------------------------------------------------

async fn all_in_one(database: &TestDatabase, env: &[(&str, &str)]) -> UserlensProcess {
    let mut environment = vec![("USERLENS_API_KEY", KEY)];
    environment.extend_from_slice(env);
    process::start_all_in_one(database, &environment, &[])
        .await
        .0
}

/// One HTTP/1.1 request on a fresh connection; the status code of the answer.
async fn http_status(addr: SocketAddr, request: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

fn healthz(addr: SocketAddr) -> String {
    format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
}

/// A real OTLP/HTTP export (JSON) of one trace; the status code of the answer.
async fn export_over_http(addr: SocketAddr, n: u64) -> u16 {
    let body = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{}","spanId":"{}","name":"s","startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":[{{"key":"user.id","value":{{"stringValue":"real-client"}}}}]}}]}}]}}]}}"#,
        hex::encode(trace_id(n)),
        hex::encode(span_id(n)),
        MARCH_1 + n as i64,
        MARCH_1 + n as i64 + 1_000,
    );
    let request = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    http_status(addr, &request).await
}

/// Opens `count` connections to `addr` that send a request head one byte at a time, every
/// `period`, for ever. Each task ends when the server closes its connection; `closed`
/// counts them.
async fn slow_clients(
    addr: SocketAddr,
    count: usize,
    period: Duration,
    closed: Arc<AtomicUsize>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = match TcpStream::connect(addr).await {
            Ok(stream) => stream,
            Err(error) => panic!("open a slow connection: {error}"),
        };
        let closed = Arc::clone(&closed);
        tasks.push(tokio::spawn(async move {
            let head = b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Padding: ";
            let mut sent = 0usize;
            let mut buffer = [0u8; 512];
            loop {
                let byte = head.get(sent).copied().unwrap_or(b'a');
                if stream.write_all(&[byte]).await.is_err() {
                    break;
                }
                sent += 1;
                tokio::select! {
                    read = stream.read(&mut buffer) => match read {
                        Ok(0) | Err(_) => break,
                        // A timeout answer may come before the close.
                        Ok(_) => {}
                    },
                    () = tokio::time::sleep(period) => {}
                }
            }
            closed.fetch_add(1, Ordering::Relaxed);
        }));
    }
    tasks
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_clients_are_cut_off_and_real_clients_still_answered() {
    // 2,000 sockets in this process and as many in the server by default, far under
    // `ulimit -n` (20,000 here); `USERLENS_TEST_SLOW_SOCKETS_PER_PORT=2500` runs the 5,000
    // of docs/reliability.md.
    let slow_per_port: usize = std::env::var("USERLENS_TEST_SLOW_SOCKETS_PER_PORT")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(1_000);
    for_each_backend!(|database| {
        let userlens = all_in_one(
            &database,
            &[
                ("USERLENS_HTTP_HEADER_TIMEOUT_MS", "3000"),
                ("USERLENS_HTTP_BODY_TIMEOUT_MS", "3000"),
            ],
        )
        .await;
        let otlp_http = userlens.addr("otlp-http");
        let graphql = userlens.addr("graphql");
        let closed = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut slow = slow_clients(
            otlp_http,
            slow_per_port,
            Duration::from_secs(1),
            Arc::clone(&closed),
        )
        .await;
        slow.extend(
            slow_clients(
                graphql,
                slow_per_port,
                Duration::from_secs(1),
                Arc::clone(&closed),
            )
            .await,
        );

        // Real clients are answered while the slow ones trickle.
        let real_started = Instant::now();
        for n in 0..5u64 {
            assert_eq!(http_status(otlp_http, &healthz(otlp_http)).await, 200);
            assert_eq!(http_status(graphql, &healthz(graphql)).await, 200);
            assert_eq!(export_over_http(otlp_http, 100 + n).await, 200);
        }
        eprintln!(
            "15 real requests answered in {:?} beside the slow connections",
            real_started.elapsed()
        );
        // A body trickling for longer than the body timeout is refused.
        let body_started = Instant::now();
        let mut trickle = TcpStream::connect(otlp_http).await.expect("connect");
        trickle
            .write_all(
                format!(
                    "POST /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
                     Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{"
                )
                .as_bytes(),
            )
            .await
            .expect("write head");
        let mut answer = Vec::new();
        let mut buffer = [0u8; 1024];
        loop {
            tokio::select! {
                read = trickle.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buffer[..n]),
                },
                () = tokio::time::sleep(Duration::from_millis(500)) => {
                    if trickle.write_all(b" ").await.is_err() {
                        break;
                    }
                }
            }
            assert!(
                body_started.elapsed() < Duration::from_secs(20),
                "a trickled body was still being read after 20 s"
            );
        }
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        eprintln!("trickled body refused after {:?}", body_started.elapsed());

        // Every slow connection is closed by the server soon after the header timeout.
        let all_closed = tokio::time::timeout(Duration::from_secs(30), async {
            for task in slow {
                let _ = task.await;
            }
        })
        .await;
        assert!(
            all_closed.is_ok(),
            "{} of {} slow connections still open after {:?}",
            2 * slow_per_port - closed.load(Ordering::Relaxed),
            2 * slow_per_port,
            started.elapsed()
        );
        eprintln!(
            "{} slow connections closed {:?} after they opened",
            closed.load(Ordering::Relaxed),
            started.elapsed()
        );
        userlens.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_make_room_at_the_connection_cap() {
    for_each_backend!(|database| {
        let userlens = all_in_one(&database, &[("USERLENS_HTTP_MAX_CONNECTIONS", "20")]).await;
        let graphql = userlens.addr("graphql");
        // Twenty keep-alive connections that made one request each and now sit idle.
        let mut idle = Vec::new();
        for _ in 0..20 {
            let mut stream = TcpStream::connect(graphql).await.expect("connect");
            stream
                .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {graphql}\r\n\r\n").as_bytes())
                .await
                .expect("write");
            let mut buffer = [0u8; 1024];
            let read = stream.read(&mut buffer).await.expect("answer");
            assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"));
            idle.push(stream);
        }
        // The next client is answered long before the idle ones would time out (10 s).
        let answered = tokio::time::timeout(
            Duration::from_secs(5),
            http_status(graphql, &healthz(graphql)),
        )
        .await;
        assert_eq!(answered.ok(), Some(200));
        userlens.stop().await;
        drop(idle);
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_returns_within_the_grace_whatever_clients_do() {
    const GRACE: Duration = Duration::from_secs(3);
    for_each_backend!(|database| {
        let userlens = all_in_one(&database, &[("USERLENS_SHUTDOWN_GRACE_MS", "3000")]).await;
        let otlp_http = userlens.addr("otlp-http");
        let graphql = userlens.addr("graphql");
        let query = userlens.addr("query-grpc");
        let closed = Arc::new(AtomicUsize::new(0));
        // Slow heads (the header timeout, 10 s, is longer than the grace) …
        let mut clients =
            slow_clients(otlp_http, 100, Duration::from_secs(1), Arc::clone(&closed)).await;
        clients
            .extend(slow_clients(graphql, 100, Duration::from_secs(1), Arc::clone(&closed)).await);
        // … a body that never ends, idle keep-alive connections, silent TCP connections to
        // every port.
        let mut held = Vec::new();
        let mut body = TcpStream::connect(otlp_http).await.expect("connect");
        body.write_all(
            format!(
                "POST /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .expect("write head");
        held.push(body);
        for addr in [otlp_http, graphql] {
            for _ in 0..20 {
                let mut stream = TcpStream::connect(addr).await.expect("connect");
                stream
                    .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
                    .await
                    .expect("write");
                let mut buffer = [0u8; 1024];
                let _ = stream.read(&mut buffer).await;
                held.push(stream);
            }
        }
        for addr in [otlp_http, graphql, query] {
            for _ in 0..20 {
                held.push(TcpStream::connect(addr).await.expect("connect"));
            }
        }
        assert_eq!(export_over_http(otlp_http, 7).await, 200);

        let stopping = Instant::now();
        userlens.stop().await;
        let took = stopping.elapsed();
        eprintln!("SIGTERM to exit: {took:?} (grace {GRACE:?})");
        assert!(
            took < GRACE + Duration::from_secs(5),
            "userlens took {took:?} to stop after SIGTERM (grace {GRACE:?})"
        );
        // The acknowledged export is stored.
        let spans = read::span_count(&database.db, 1).await.expect("span count");
        assert_eq!(spans, 1);
        for client in clients {
            client.abort();
        }
        drop(held);
    });
}
