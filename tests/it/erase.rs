//! Erasing a user (SPEC §9) over users-query gRPC and the GraphQL gateway, on every
//! backend and through Redis next to PostgreSQL: every read stops showing the user, cached
//! answers from before are not served, anonymous traces of the user's session stay, a
//! second erasure removes nothing, a later span makes a new user, another process's
//! snapshot follows, another project's key can neither erase nor see, and an erasure
//! racing ingest leaves exactly what a fresh snapshot of the database shows.
//!
//! Fixture (2026-03, UTC; one span per trace unless noted):
//!
//! | trace | time       | spans                                              | user | session |
//! |-------|------------|----------------------------------------------------|------|---------|
//! | 1     | 03-02 10:00| root ann (ann@x.io), child anonymous LLM call 0.5$ | ann  | s-ann   |
//! | 2     | 03-03 10:00| root ann, issue ISS-1 (+ an `AnnotateTrace` behaviour) | ann | s-ann |
//! | 3     | 03-03 11:00| anonymous                                          | –    | s-ann   |
//! | 4     | 03-04 12:00| root bob, child carrying `user.id` ann             | bob  | s-bob   |
//! | 5     | 03-05 12:00| root bob, LLM call 0.25$                           | bob  | s-bob   |

use std::time::Duration;

use futures::StreamExt;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tonic::Code;
use tonic_types::StatusExt;
use userlens_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use userlens_proto::ingest::v1::{AnnotateTraceRequest, IssueAnnotation};
use userlens_proto::query::v1::users_query_service_client::UsersQueryServiceClient;
use userlens_proto::query::v1::{
    EraseUserRequest, EraseUserResponse, GetBreakdownsRequest, GetUserDetailRequest,
    GetUsersOverviewRequest, ListSessionsRequest, ListUsersRequest, TimeRange,
};
use userlens_storage::keys;
use userlens_tests::gateway::InProcessGateway;
use userlens_tests::otlp::{
    double, kv, request, resource_spans, span, span_id, string, trace_id, with_attributes,
};
use userlens_tests::stack::{CacheChoice, Stack};
use userlens_tests::{Backend, for_each_backend};
use userlens_users_query::QueryServerSettings;
use userlens_users_query::convert::ns_to_timestamp as ts;

const NS: i64 = 1_000_000_000;
const HOUR: i64 = 3_600 * NS;
const DAY: i64 = 24 * HOUR;
/// 2026-03-01T00:00:00Z.
const MARCH_1: i64 = 1_772_323_200 * NS;

const fn at(day: i64, hour: i64) -> i64 {
    MARCH_1 + (day - 1) * DAY + hour * HOUR
}

fn march() -> Option<TimeRange> {
    Some(TimeRange {
        from: Some(ts(MARCH_1)),
        to: Some(ts(MARCH_1 + 31 * DAY)),
    })
}

fn one_span(
    trace: u64,
    id: u64,
    parent: Option<u64>,
    start: i64,
    attributes: Vec<(&str, &str)>,
) -> Span {
    with_attributes(
        span(
            trace_id(trace),
            span_id(id),
            parent.map(span_id),
            start as u64,
            (start + NS) as u64,
        ),
        attributes
            .into_iter()
            .map(|(key, value)| kv(key, string(value)))
            .collect(),
    )
}

fn llm_call(mut span: Span, cost: f64) -> Span {
    span.attributes
        .push(kv("gen_ai.request.model", string("gpt-4o")));
    span.attributes
        .push(kv("gen_ai.provider.name", string("openai")));
    span.attributes.push(kv("gen_ai.usage.cost", double(cost)));
    span
}

fn export(spans: Vec<Span>) -> ExportTraceServiceRequest {
    request(vec![resource_spans(
        vec![kv("service.name", string("erase-test"))],
        spans,
    )])
}

fn fixture() -> ExportTraceServiceRequest {
    export(vec![
        one_span(
            1,
            10,
            None,
            at(2, 10),
            vec![
                ("user.id", "ann"),
                ("user.email", "ann@x.io"),
                ("session.id", "s-ann"),
            ],
        ),
        llm_call(one_span(1, 11, Some(10), at(2, 10), vec![]), 0.5),
        one_span(
            2,
            20,
            None,
            at(3, 10),
            vec![
                ("user.id", "ann"),
                ("session.id", "s-ann"),
                ("userlens.issue.id", "ISS-1"),
            ],
        ),
        one_span(3, 30, None, at(3, 11), vec![("session.id", "s-ann")]),
        one_span(
            4,
            40,
            None,
            at(4, 12),
            vec![("user.id", "bob"), ("session.id", "s-bob")],
        ),
        one_span(
            4,
            41,
            Some(40),
            at(4, 12),
            vec![("user.id", "ann"), ("user.email", "ann@x.io")],
        ),
        llm_call(
            one_span(
                5,
                50,
                None,
                at(5, 12),
                vec![("user.id", "bob"), ("session.id", "s-bob")],
            ),
            0.25,
        ),
    ])
}

/// A request to users-query with `key`.
fn with_key<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii key"),
    );
    request
}

async fn annotate(stack: &Stack) {
    let mut client = IngestServiceClient::connect(format!("http://{}", stack.ingest_grpc))
        .await
        .expect("connect to ingest");
    client
        .annotate_trace(stack.authorized(AnnotateTraceRequest {
            trace_id: hex::encode(trace_id(2)),
            issues: vec![IssueAnnotation {
                id: "ISS-2".into(),
                title: "Refund loop".into(),
            }],
            behaviours: vec!["frustrated".into()],
        }))
        .await
        .expect("annotation accepted");
}

async fn erase(
    client: &mut UsersQueryServiceClient<tonic::transport::Channel>,
    key: &str,
    user_id: &str,
) -> Result<EraseUserResponse, tonic::Status> {
    client
        .erase_user(with_key(
            key,
            EraseUserRequest {
                user_id: user_id.into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Every read of the users page, as one comparable text.
#[derive(Debug, PartialEq)]
struct Reads {
    overview: String,
    users: Vec<String>,
    export: Vec<String>,
    details: Vec<Option<String>>,
    sessions: Vec<Vec<String>>,
    breakdowns: Vec<String>,
}

async fn reads(
    client: &mut UsersQueryServiceClient<tonic::transport::Channel>,
    key: &str,
) -> Reads {
    let overview = client
        .get_users_overview(with_key(key, GetUsersOverviewRequest { range: march() }))
        .await
        .expect("overview")
        .into_inner();
    let list = ListUsersRequest {
        range: march(),
        ..Default::default()
    };
    let users = client
        .list_users(with_key(key, list.clone()))
        .await
        .expect("users")
        .into_inner();
    let mut export = Vec::new();
    let mut stream = client
        .export_users(with_key(key, list))
        .await
        .expect("export")
        .into_inner();
    while let Some(chunk) = stream.next().await {
        for row in chunk.expect("export chunk").users {
            export.push(format!("{} {:?} {}", row.user_id, row.email, row.traces));
        }
    }
    let mut details = Vec::new();
    let mut sessions = Vec::new();
    let mut breakdowns = Vec::new();
    for user in ["ann", "bob"] {
        let detail = client
            .get_user_detail(with_key(
                key,
                GetUserDetailRequest {
                    user_id: user.into(),
                    activity_days: vec![],
                },
            ))
            .await
            .expect("detail")
            .into_inner();
        details.push(detail.user.map(|d| {
            format!(
                "{} {:?} first {:?} traces {} sessions {} cost {:?} issues {:?}",
                d.user_id,
                d.email,
                d.first_seen_at.map(|t| t.seconds),
                d.traces,
                d.sessions,
                d.cost.map(|c| c.sum),
                d.issues.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
            )
        }));
        let listed = client
            .list_sessions(with_key(
                key,
                ListSessionsRequest {
                    user_id: user.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("sessions")
            .into_inner();
        sessions.push(
            listed
                .sessions
                .iter()
                .map(|s| format!("{} {}", s.session_id, s.traces))
                .collect(),
        );
        let broken_down = client
            .get_breakdowns(with_key(
                key,
                GetBreakdownsRequest {
                    user_id: user.into(),
                    range: None,
                },
            ))
            .await
            .expect("breakdowns")
            .into_inner();
        breakdowns.push(format!(
            "models {:?} tools {}",
            broken_down
                .models
                .iter()
                .map(|m| (m.model.clone(), m.traces))
                .collect::<Vec<_>>(),
            broken_down.tools.len()
        ));
    }
    Reads {
        overview: format!(
            "users {} new {} traces {} with user {} sessions {} with user {}",
            overview.unique_users,
            overview.new_users,
            overview.traces,
            overview.traces_with_user,
            overview.sessions,
            overview.sessions_with_user
        ),
        users: users
            .users
            .iter()
            .map(|u| format!("{} {:?} {}", u.user_id, u.email, u.traces))
            .collect(),
        export,
        details,
        sessions,
        breakdowns,
    }
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("count query")
        .expect("a row");
    row.try_get_by_index::<i64>(0).expect("a count")
}

/// Monitor rows of the user and of someone else, written directly (disabled monitors,
/// so the evaluator leaves them alone).
async fn insert_monitor_rows(db: &DatabaseConnection, project_id: i64) {
    for (id, user) in [(9001, "NULL"), (9002, "'ann'")] {
        db.execute_unprepared(&format!(
            "INSERT INTO monitors (id, project_id, name, user_id, condition, threshold, \
             min_sessions, window_seconds, webhook_url, secret, enabled, evaluated_generation, \
             created_at_ns, updated_at_ns) VALUES ({id}, {project_id}, 'm{id}', {user}, \
             'TRACES_ABOVE', 1000, 1, 3600, 'http://127.0.0.1:9/hook', 'secret', false, 0, 0, 0)"
        ))
        .await
        .expect("monitor row");
    }
    for (monitor, user) in [(9001, "ann"), (9001, "bob"), (9002, "ann")] {
        db.execute_unprepared(&format!(
            "INSERT INTO monitor_states (monitor_id, user_id, firing, episode, changed_at_ns) \
             VALUES ({monitor}, '{user}', true, 1, 0)"
        ))
        .await
        .expect("monitor state row");
        db.execute_unprepared(&format!(
            "INSERT INTO monitor_events (project_id, monitor_id, user_id, kind, episode, \
             idempotency_key, body, created_at_ns, delivery, attempts, next_attempt_ns) VALUES \
             ({project_id}, {monitor}, '{user}', 'ALERT', 1, 'k-{monitor}-{user}', '{{}}', 0, \
             'DELIVERED', 1, 0)"
        ))
        .await
        .expect("monitor event row");
    }
}

/// Keys under `prefix` in Redis that belong to `project_id`, over a raw RESP exchange.
async fn redis_keys_of_project(url: &str, prefix: &str, project_id: i64) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect to Redis");
    let pattern = format!("{prefix}*:{project_id}:*");
    let command = format!("*2\r\n$4\r\nKEYS\r\n${}\r\n{pattern}\r\n", pattern.len());
    stream
        .write_all(command.as_bytes())
        .await
        .expect("send KEYS");
    let mut reply = Vec::new();
    let mut buffer = [0u8; 65_536];
    // The reply is an array header `*N\r\n` followed by N bulk strings; N is all we need.
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("Redis answers")
            .expect("read reply");
        reply.extend_from_slice(&buffer[..n]);
        if n == 0 || reply.windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&reply);
    let header = text.split("\r\n").next().unwrap_or_default();
    header
        .trim_start_matches('*')
        .parse()
        .unwrap_or_else(|_| panic!("unexpected Redis reply {header:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_erased_user_is_gone_from_every_read_and_cache() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let key = stack.key.clone();
        stack.export(fixture()).await;
        annotate(&stack).await;
        insert_monitor_rows(&database.db, stack.project_id).await;
        let mut client = stack.query_client().await;

        let before = reads(&mut client, &key).await;
        assert_eq!(
            before.overview,
            "users 2 new 2 traces 5 with user 4 sessions 2 with user 2"
        );
        assert_eq!(
            before.users,
            // bob's trace 4 takes its email from ann's span in it (§4 trace-level rule).
            [r#"bob Some("ann@x.io") 2"#, r#"ann Some("ann@x.io") 2"#]
        );
        // Asked twice: the second answers come from the result cache.
        assert_eq!(reads(&mut client, &key).await, before);
        if let (Some(url), Some(prefix)) = (userlens_tests::stack::redis_url(), &stack.redis_prefix)
            && database.backend == Backend::Postgres
        {
            assert!(redis_keys_of_project(&url, prefix, stack.project_id).await > 0);
        }

        let erased = erase(&mut client, &key, "ann").await.expect("erased");
        assert_eq!(
            erased,
            EraseUserResponse {
                traces_removed: 2,
                // Traces 1 (two spans) and 2, and ann's span in bob's trace 4.
                spans_removed: 4,
                // ISS-2 and `frustrated` on trace 2.
                annotations_removed: 2,
                traces_rederived: 1,
                // Her two states and two events, and the monitor watching only her.
                monitor_records_removed: 5,
            }
        );
        if let (Some(url), Some(prefix)) = (userlens_tests::stack::redis_url(), &stack.redis_prefix)
            && database.backend == Backend::Postgres
        {
            // The answers cached before the erasure were deleted, not only bypassed.
            assert_eq!(
                redis_keys_of_project(&url, prefix, stack.project_id).await,
                0
            );
        }

        let after = reads(&mut client, &key).await;
        assert_eq!(
            after,
            Reads {
                // The anonymous trace of her session stays; bob's traces stay.
                overview: "users 1 new 1 traces 3 with user 2 sessions 2 with user 1".into(),
                users: vec!["bob None 2".into()],
                export: vec!["bob None 2".into()],
                details: vec![
                    None,
                    Some(format!(
                        "bob None first Some({}) traces 2 sessions 1 cost Some(0.25) issues []",
                        at(4, 12) / NS
                    )),
                ],
                sessions: vec![vec![], vec!["s-bob 2".into()]],
                breakdowns: vec![
                    "models [] tools 0".into(),
                    r#"models [("gpt-4o", 1)] tools 0"#.into(),
                ],
            }
        );
        let db = &database.db;
        let p = stack.project_id;
        assert_eq!(
            count(
                db,
                &format!("SELECT count(*) FROM spans WHERE project_id = {p} AND user_id = 'ann'")
            )
            .await,
            0
        );
        assert_eq!(
            count(
                db,
                &format!(
                    "SELECT count(*) FROM spans WHERE project_id = {p} AND user_email = 'ann@x.io'"
                )
            )
            .await,
            0
        );
        assert_eq!(
            count(db, &format!("SELECT count(*) FROM traces WHERE project_id = {p} AND (user_id = 'ann' OR email = 'ann@x.io')")).await,
            0
        );
        assert_eq!(
            count(
                db,
                &format!("SELECT count(*) FROM trace_annotations WHERE project_id = {p}")
            )
            .await,
            0
        );
        assert_eq!(
            count(
                db,
                "SELECT count(*) FROM monitor_states WHERE user_id = 'ann'"
            )
            .await,
            0
        );
        assert_eq!(
            count(
                db,
                "SELECT count(*) FROM monitor_events WHERE user_id = 'ann'"
            )
            .await,
            0
        );
        assert_eq!(
            count(
                db,
                "SELECT count(*) FROM monitor_states WHERE user_id = 'bob'"
            )
            .await,
            1
        );
        assert_eq!(
            count(db, "SELECT count(*) FROM monitors WHERE id = 9002").await,
            0
        );

        // Idempotent: nothing of her is left to remove.
        assert_eq!(
            erase(&mut client, &key, "ann").await.expect("erased again"),
            EraseUserResponse::default()
        );
        assert_eq!(
            erase(&mut client, &key, "nobody")
                .await
                .expect("unknown user"),
            EraseUserResponse::default()
        );
        assert_eq!(reads(&mut client, &key).await, after);

        // A later span of hers makes a new user, first seen at that span.
        stack
            .export(export(vec![one_span(
                6,
                60,
                None,
                at(20, 8),
                vec![("user.id", "ann"), ("session.id", "s-new")],
            )]))
            .await;
        let again = reads(&mut client, &key).await;
        assert_eq!(
            again.details[0],
            Some(format!(
                "ann None first Some({}) traces 1 sessions 1 cost Some(0.0) issues []",
                at(20, 8) / NS
            ))
        );
        assert_eq!(again.sessions[0], ["s-new 1"]);
        assert_eq!(
            again.overview,
            "users 2 new 2 traces 4 with user 3 sessions 3 with user 2"
        );
        stack.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn another_query_process_drops_the_erased_user_on_its_next_query() {
    for_each_backend!(|database| {
        let first = Stack::start(&database, CacheChoice::ForBackend).await;
        let key = first.key.clone();
        // A second users-query (and ingest) over the same database, with its own snapshot
        // and in-process cache.
        let second = Stack::start_for_key(
            &database,
            CacheChoice::InProcess,
            QueryServerSettings::default(),
            first.project_id,
            key.clone(),
        )
        .await;
        first.export(fixture()).await;
        let mut client_one = first.query_client().await;
        let mut client_two = second.query_client().await;
        let before = reads(&mut client_two, &key).await;
        assert_eq!(before, reads(&mut client_one, &key).await);
        assert_eq!(before.users.len(), 2);

        erase(&mut client_one, &key, "ann").await.expect("erased");
        let after_two = reads(&mut client_two, &key).await;
        assert_eq!(after_two.users, ["bob None 2"]);
        assert_eq!(after_two.details[0], None);
        assert_eq!(after_two, reads(&mut client_one, &key).await);
        second.stop().await;
        first.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn erasure_needs_the_project_s_key_and_a_user_id() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        stack.export(fixture()).await;
        let (_, other_key) = keys::create_key(&database.db, "other")
            .await
            .expect("a second project");
        let mut client = stack.query_client().await;
        let before = reads(&mut client, &stack.key).await;

        let unknown = erase(&mut client, "ul_not_a_key_0123456789", "ann")
            .await
            .expect_err("unknown key");
        assert_eq!(unknown.code(), Code::Unauthenticated);
        let missing = client
            .erase_user(tonic::Request::new(EraseUserRequest {
                user_id: "ann".into(),
            }))
            .await
            .expect_err("no key");
        assert_eq!(missing.code(), Code::Unauthenticated);
        let empty = erase(&mut client, &stack.key, "")
            .await
            .expect_err("empty user id");
        assert_eq!(empty.code(), Code::InvalidArgument);
        let violations = empty
            .get_details_bad_request()
            .expect("a BadRequest detail")
            .field_violations;
        assert_eq!(violations[0].field, "user_id");

        // Another project's key erases nothing here and sees nothing of it.
        assert_eq!(
            erase(&mut client, &other_key, "ann").await.expect("erased"),
            EraseUserResponse::default()
        );
        let other = reads(&mut client, &other_key).await;
        assert_eq!(other.users, Vec::<String>::new());
        assert_eq!(other.details, [None, None]);
        assert_eq!(reads(&mut client, &stack.key).await, before);
        stack.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_user_over_graphql() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        stack.export(fixture()).await;
        let gateway = start_gateway(&stack).await;
        let detail = r#"{ userDetail(userId: "ann") { userId traces } }"#;
        let answer = gateway.graphql(Some(&stack.key), detail).await;
        assert_eq!(answer["data"]["userDetail"]["traces"], 2, "{answer}");

        let mutation = r#"mutation { deleteUser(userId: "ann") { userId tracesRemoved spansRemoved annotationsRemoved tracesRederived monitorRecordsRemoved } }"#;
        let answer = gateway.graphql(Some(&stack.key), mutation).await;
        assert_eq!(
            answer["data"]["deleteUser"],
            serde_json::json!({
                "userId": "ann", "tracesRemoved": 2, "spansRemoved": 4,
                "annotationsRemoved": 0, "tracesRederived": 1, "monitorRecordsRemoved": 0
            }),
            "{answer}"
        );
        let answer = gateway.graphql(Some(&stack.key), detail).await;
        assert_eq!(
            answer["data"]["userDetail"],
            serde_json::Value::Null,
            "{answer}"
        );
        let answer = gateway.graphql(Some(&stack.key), mutation).await;
        assert_eq!(answer["data"]["deleteUser"]["spansRemoved"], 0, "{answer}");

        let empty = gateway
            .graphql(
                Some(&stack.key),
                r#"mutation { deleteUser(userId: "") { userId } }"#,
            )
            .await;
        assert_eq!(
            empty["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{empty}"
        );
        let anonymous = gateway.graphql(None, mutation).await;
        assert_eq!(
            anonymous["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{anonymous}"
        );
        gateway.stop().await;
        stack.stop().await;
    });
}

/// An erasure while bob's and ann's spans keep arriving: afterwards the serving process
/// answers exactly what a process that never saw the data before answers, and none of
/// bob's traces is lost.
#[tokio::test(flavor = "multi_thread")]
async fn an_erasure_racing_ingest_leaves_the_answers_a_fresh_snapshot_gives() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let key = stack.key.clone();
        stack.export(fixture()).await;
        let mut client = stack.query_client().await;
        reads(&mut client, &key).await;

        let writer = {
            let addr = stack.ingest_grpc;
            let key = key.clone();
            tokio::spawn(async move {
                let mut client = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(format!("http://{addr}"))
                    .await
                    .expect("connect to ingest");
                for n in 0..40u64 {
                    let trace = 100 + n;
                    // ann's spans go into traces of bob as well as her own.
                    let spans = vec![
                        one_span(
                            trace,
                            1000 + n,
                            None,
                            at(10, 0) + n as i64 * NS,
                            vec![("user.id", if n % 2 == 0 { "bob" } else { "ann" })],
                        ),
                        one_span(
                            trace,
                            2000 + n,
                            Some(1000 + n),
                            at(10, 0) + n as i64 * NS,
                            vec![("user.id", "ann")],
                        ),
                    ];
                    client
                        .export(with_key(&key, export(spans)))
                        .await
                        .expect("export accepted");
                }
            })
        };
        for _ in 0..5 {
            erase(&mut client, &key, "ann").await.expect("erased");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        writer.await.expect("writer");
        erase(&mut client, &key, "ann").await.expect("erased");
        let served = reads(&mut client, &key).await;

        let fresh = Stack::start_for_key(
            &database,
            CacheChoice::InProcess,
            QueryServerSettings::default(),
            stack.project_id,
            key.clone(),
        )
        .await;
        let mut fresh_client = fresh.query_client().await;
        assert_eq!(served, reads(&mut fresh_client, &key).await);
        assert_eq!(served.users, ["bob None 22"]);
        let p = stack.project_id;
        assert_eq!(
            count(
                &database.db,
                &format!("SELECT count(*) FROM spans WHERE project_id = {p} AND user_id = 'ann'")
            )
            .await,
            0
        );
        fresh.stop().await;
        stack.stop().await;
    });
}

async fn start_gateway(stack: &Stack) -> InProcessGateway {
    InProcessGateway::start(stack.query, Default::default()).await
}

/// A monitor verdict computed before an erasure (at an older generation) cannot write the
/// erased user back into the monitor tables; one computed after it can.
#[tokio::test(flavor = "multi_thread")]
async fn a_monitor_verdict_from_before_an_erasure_writes_nothing() {
    use userlens_monitors::store::{self, NewEvent};
    use userlens_monitors::{Condition, MonitorSpec};
    for_each_backend!(|database| {
        let db = &database.db;
        let stack = Stack::start(&database, CacheChoice::InProcess).await;
        stack.export(fixture()).await;
        // Disabled: the running evaluator leaves it alone; the transitions below are the
        // evaluator's own calls.
        let monitor = store::create(
            db,
            stack.project_id,
            MonitorSpec {
                name: "busy".into(),
                user_id: None,
                condition: Condition::TracesAbove,
                threshold: 0.0,
                min_sessions: 1,
                window_seconds: 3_600,
                webhook_url: "http://127.0.0.1:9/hook".into(),
                enabled: false,
            },
        )
        .await
        .expect("a monitor");
        let before = userlens_storage::read::generation_and_deployment(db, stack.project_id)
            .await
            .expect("generation")
            .generation;
        let mut client = stack.query_client().await;
        erase(&mut client, &stack.key, "ann").await.expect("erased");
        let after = userlens_storage::read::generation_and_deployment(db, stack.project_id)
            .await
            .expect("generation");
        assert!(after.erased_generation > before);

        let body = |_: i64, _: &str| "{}".to_owned();
        let transition = |generation: i64| NewEvent {
            monitor: &monitor,
            user_id: "ann",
            kind: "ALERT",
            body: &body,
            generation,
        };
        let stale = store::transition(db, transition(before))
            .await
            .expect("a stale transition");
        assert!(!stale, "a verdict from before the erasure was written");
        let states = "SELECT count(*) FROM monitor_states WHERE user_id = 'ann'";
        assert_eq!(count(db, states).await, 0);
        let current = store::transition(db, transition(after.generation))
            .await
            .expect("a current transition");
        assert!(current);
        assert_eq!(count(db, states).await, 1);
        stack.stop().await;
    });
}

/// Retention by age: traces older than the limit go with their spans and annotations,
/// except each user's first trace, so first seen and new users keep their meaning; the
/// answers follow at once, from the cache and the snapshot.
#[tokio::test(flavor = "multi_thread")]
async fn retention_deletes_old_traces_but_each_user_s_first() {
    use userlens_storage::retention;
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let key = stack.key.clone();
        stack.export(fixture()).await;
        // A recent trace of bob and of a new user, cy, on 03-20.
        stack
            .export(export(vec![
                one_span(
                    7,
                    70,
                    None,
                    at(20, 9),
                    vec![("user.id", "bob"), ("session.id", "s-bob")],
                ),
                one_span(
                    8,
                    80,
                    None,
                    at(20, 10),
                    vec![("user.id", "cy"), ("session.id", "s-cy")],
                ),
            ]))
            .await;
        let mut client = stack.query_client().await;
        let before = reads(&mut client, &key).await;
        assert_eq!(
            before.overview,
            "users 3 new 3 traces 7 with user 6 sessions 3 with user 3"
        );

        // Everything before 03-10 is older than the limit.
        let removed = retention::delete_older_than(&database.db, at(10, 0))
            .await
            .expect("retention pass");
        // ann's trace 2, the anonymous trace 3 and bob's trace 5; ann's trace 1 and bob's
        // trace 4 are their first traces.
        assert_eq!(removed.traces_removed, 3);
        assert_eq!(removed.spans_removed, 3);
        assert_eq!(removed.annotations_removed, 0);
        let after = reads(&mut client, &key).await;
        assert_eq!(
            after.overview,
            "users 3 new 3 traces 4 with user 4 sessions 3 with user 3"
        );
        assert_eq!(
            after.details[0],
            Some(format!(
                "ann Some(\"ann@x.io\") first Some({}) traces 1 sessions 1 cost Some(0.5) issues []",
                at(2, 10) / NS
            ))
        );
        // A second pass finds nothing more.
        assert_eq!(
            retention::delete_older_than(&database.db, at(10, 0))
                .await
                .expect("retention pass")
                .traces_removed,
            0
        );

        // The background job, against the clock: the fixture is months old, so at 30 days
        // only the first trace of each user is left (bob's 03-20 trace goes too).
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let job = tokio::spawn(retention::run(
            database.db.clone(),
            retention::RetentionSettings {
                days: 30,
                interval: Duration::from_millis(50),
            },
            async move {
                let _ = stopped.await;
            },
        ));
        let p = stack.project_id;
        let traces = format!("SELECT count(*) FROM traces WHERE project_id = {p}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while count(&database.db, &traces).await != 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the job did not delete"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = stop.send(());
        job.await.expect("retention job");
        let last = reads(&mut client, &key).await;
        assert_eq!(
            last.overview,
            "users 3 new 3 traces 3 with user 3 sessions 3 with user 3"
        );
        stack.stop().await;
    });
}
