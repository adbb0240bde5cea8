//! Per-span limits, resource attributes stored once per resource, and the numbers rules,
//! end to end through ingest on every backend.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, any_value::Value};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tonic::Code;
use userlens_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use userlens_proto::ingest::v1::{AnnotateTraceRequest, IssueAnnotation};
use userlens_storage::{
    Migrator, MigratorTrait, ResourceRecord, SpanFacts, SpanRecord, StoredSpan, read, write_spans,
};
use userlens_tests::otlp::{
    double, int, kv, request, resource_spans, span, span_id, string, trace_id, with_attributes,
};
use userlens_tests::stack::{CacheChoice, Stack};
use userlens_tests::{Backend, TestDatabase, for_each_backend};

async fn scalar_i64(database: &TestDatabase, sql: &str) -> i64 {
    let backend = database.db.get_database_backend();
    let row = database
        .db
        .query_one_raw(Statement::from_string(backend, sql.to_owned()))
        .await
        .expect("query")
        .expect("a row");
    row.try_get_by_index::<i64>(0).expect("an integer")
}

/// Bytes the `spans` table (with its indexes and TOAST) occupies, or the SQLite file size.
async fn spans_bytes(database: &TestDatabase) -> i64 {
    match database.backend {
        Backend::Postgres => scalar_i64(database, "SELECT pg_total_relation_size('spans')").await,
        Backend::Sqlite => {
            scalar_i64(
                database,
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            )
            .await
        }
    }
}

fn behaviours(n: usize) -> AnyValue {
    AnyValue {
        value: Some(Value::ArrayValue(ArrayValue {
            values: (0..n).map(|i| string(&format!("behaviour-{i}"))).collect(),
        })),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn annotate_trace_refuses_values_past_the_index_bound_on_every_backend() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let mut client = IngestServiceClient::connect(format!("http://{}", stack.ingest_grpc))
            .await
            .expect("connect");
        let trace = hex::encode(trace_id(1));
        let annotate = |issues: Vec<IssueAnnotation>, behaviours: Vec<String>| {
            stack.authorized(AnnotateTraceRequest {
                trace_id: trace.clone(),
                issues,
                behaviours,
            })
        };
        // 3,000 bytes: past PostgreSQL's btree entry bound. Refused as the caller's error,
        // the same on both backends, naming the field.
        let status = client
            .annotate_trace(annotate(vec![], vec!["b".repeat(3000)]))
            .await
            .expect_err("a 3,000-byte behaviour is refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("behaviours"), "{status:?}");
        let status = client
            .annotate_trace(annotate(
                vec![IssueAnnotation {
                    id: "i".repeat(3000),
                    title: String::new(),
                }],
                vec![],
            ))
            .await
            .expect_err("a 3,000-byte issue id is refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("issues.id"), "{status:?}");
        let status = client
            .annotate_trace(annotate(
                vec![],
                (0..65).map(|i| format!("behaviour-{i}")).collect(),
            ))
            .await
            .expect_err("65 behaviours are refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

        // At the limit: stored on both backends.
        client
            .annotate_trace(annotate(
                vec![IssueAnnotation {
                    id: "i".repeat(1000),
                    title: "t".repeat(4096),
                }],
                (0..64)
                    .map(|i| format!("{i:02}{}", "b".repeat(998)))
                    .collect(),
            ))
            .await
            .expect("values at the limit are stored");
        let annotations = scalar_i64(&database, "SELECT count(*) FROM trace_annotations").await;
        assert_eq!(annotations, 65);
        stack.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn span_limits_reject_or_count_what_exceeds_them() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let t = trace_id(2);
        let root = with_attributes(
            span(t, span_id(1), None, 1_000, 2_000),
            // 200 attributes: 128 kept, 72 dropped and counted; the user id is read even so.
            (0..200)
                .map(|i| kv(&format!("custom.{i:03}"), int(i)))
                .chain([kv("user.id", string("limits-user"))])
                .collect(),
        );
        let many_behaviours = with_attributes(
            span(t, span_id(2), Some(span_id(1)), 1_100, 1_200),
            vec![kv("userlens.behaviour", behaviours(200))],
        );
        let long_behaviour = with_attributes(
            span(t, span_id(3), Some(span_id(1)), 1_100, 1_200),
            vec![kv("userlens.behaviour", string(&"b".repeat(3000)))],
        );
        let fractional_tokens = with_attributes(
            span(t, span_id(4), Some(span_id(1)), 1_100, 1_200),
            vec![
                kv("gen_ai.request.model", string("m")),
                kv("gen_ai.usage.input_tokens", double(2.5)),
            ],
        );
        let costly_parts = with_attributes(
            span(t, span_id(5), Some(span_id(1)), 1_100, 1_200),
            vec![
                kv("gen_ai.request.model", string("m")),
                kv("gen_ai.usage.input_cost", double(600_000.0)),
                kv("gen_ai.usage.output_cost", double(600_000.0)),
            ],
        );
        let answer = stack
            .export(request(vec![resource_spans(
                vec![],
                vec![
                    root,
                    many_behaviours,
                    long_behaviour,
                    fractional_tokens,
                    costly_parts,
                ],
            )]))
            .await;
        let partial = answer.partial_success.expect("partial success");
        assert_eq!(partial.rejected_spans, 4, "{}", partial.error_message);
        assert!(
            partial.error_message.contains("behaviours"),
            "{}",
            partial.error_message
        );

        let stored = scalar_i64(&database, "SELECT count(*) FROM spans").await;
        assert_eq!(stored, 1, "only the root span is stored");
        let dropped = scalar_i64(
            &database,
            "SELECT CAST(dropped_attributes_count AS BIGINT) FROM spans",
        )
        .await;
        assert_eq!(dropped, 72);
        let traces = read::traces_changed_since(&database.db, stack.project_id, -1)
            .await
            .expect("traces");
        assert_eq!(traces[0].user_id.as_deref(), Some("limits-user"));
        stack.stop().await;
    });
}

/// A 256 KiB resource attribute on 20,000 spans: one `resources` row, and a spans table
/// that holds no copy of it (it would be 5 GB with one copy per span).
#[tokio::test(flavor = "multi_thread")]
async fn resource_attributes_are_stored_once_per_resource() {
    const SPANS: u64 = 20_000;
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let big = "r".repeat(256 * 1024);
        let resource = vec![
            kv("service.name", string("checkout")),
            kv("deployment.notes", string(&big)),
        ];
        let spans: Vec<_> = (0..SPANS)
            .map(|i| {
                span(
                    trace_id(1_000 + i / 4),
                    span_id(i + 1),
                    None,
                    1_000 + i,
                    2_000 + i,
                )
            })
            .collect();
        let body = request(vec![resource_spans(resource, spans)]);
        for _ in 0..2 {
            // Sent twice: the second delivery changes nothing (idempotent).
            let answer = stack.export(body.clone()).await;
            assert!(
                answer.partial_success.is_none(),
                "{:?}",
                answer.partial_success
            );
        }
        assert_eq!(
            scalar_i64(&database, "SELECT count(*) FROM spans").await,
            SPANS as i64
        );
        assert_eq!(
            scalar_i64(&database, "SELECT count(*) FROM resources").await,
            1
        );
        let size = spans_bytes(&database).await;
        eprintln!(
            "{:?}: spans take {size} bytes for {SPANS} spans",
            database.backend
        );
        // ~100-300 bytes per span of ids, times, facts and indexes; a copy of the resource
        // per span would be 256 KiB each.
        assert!(size < 40 << 20, "spans take {size} bytes for {SPANS} spans");

        // The span and its resource row give back what was received.
        let backend = database.db.get_database_backend();
        let row = database
            .db
            .query_one_raw(Statement::from_string(
                backend,
                "SELECT r.attributes FROM spans s JOIN resources r \
                 ON r.project_id = s.project_id AND r.resource_hash = s.resource_hash \
                 ORDER BY s.span_id LIMIT 1"
                    .to_owned(),
            ))
            .await
            .expect("join")
            .expect("a row");
        let json: String = row.try_get_by_index(0).expect("attributes");
        let attributes: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(attributes["service.name"], "checkout");
        assert_eq!(attributes["deployment.notes"].as_str(), Some(big.as_str()));
        stack.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_forming_a_parent_cycle_keep_their_cost() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let t = trace_id(3);
        let llm = |id: u64, parent: u64, cost: f64| {
            with_attributes(
                span(t, span_id(id), Some(span_id(parent)), 1_000, 2_000),
                vec![
                    kv("gen_ai.request.model", string("m")),
                    kv("gen_ai.usage.cost", double(cost)),
                    kv("gen_ai.usage.input_tokens", int(7)),
                ],
            )
        };
        // 1 → 2 → 1, sent in two requests (order must not matter).
        stack
            .export(request(vec![resource_spans(vec![], vec![llm(2, 1, 0.5)])]))
            .await;
        stack
            .export(request(vec![resource_spans(vec![], vec![llm(1, 2, 0.25)])]))
            .await;
        let traces = read::traces_changed_since(&database.db, stack.project_id, -1)
            .await
            .expect("traces");
        assert_eq!(traces.len(), 1);
        // Span 1 (the smaller id) is taken as the cycle's root; span 2 is the leaf call.
        assert_eq!(traces[0].cost_nano, 500_000_000);
        assert_eq!(traces[0].input_tokens, 7);
        stack.stop().await;
    });
}

/// A database written before resources had a table of their own migrates: each distinct
/// resource JSON moves to `resources` once, spans point at it, and new writes of the same
/// resource find it.
#[tokio::test(flavor = "multi_thread")]
async fn existing_span_rows_migrate_to_resources() {
    for_each_backend!(|database| {
        let db = &database.db;
        // Undo the resources migration and every one after it.
        let steps = Migrator::migrations()
            .iter()
            .rev()
            .position(|m| m.name() == "m20261202_000002_resources_once")
            .expect("the resources migration")
            + 1;
        Migrator::down(db, Some(steps as u32))
            .await
            .expect("back to the schema before resources");
        let backend = db.get_database_backend();
        db.execute_unprepared(
            "INSERT INTO projects (id, name, data_generation, created_at_ns) VALUES (7, 'old', 0, 0)",
        )
        .await
        .expect("project");
        let blob = |n: u8, len: usize| match backend {
            DbBackend::Postgres => format!("'\\x{}'::bytea", hex::encode(vec![n; len])),
            _ => format!("x'{}'", hex::encode(vec![n; len])),
        };
        for (span, resource) in [
            (1u8, "{\"service.name\":\"a\"}"),
            (2, "{\"service.name\":\"a\"}"),
            (3, "{\"service.name\":\"b\"}"),
        ] {
            db.execute_unprepared(&format!(
                "INSERT INTO spans (project_id, trace_id, span_id, name, kind, start_ns, end_ns, \
                 status_code, is_llm_call, attributes, resource_attributes) VALUES \
                 (7, {}, {}, 'old', 1, 10, 20, 0, false, '{{}}', '{resource}')",
                blob(9, 16),
                blob(span, 8),
            ))
            .await
            .expect("old span row");
        }
        Migrator::up(db, None).await.expect("migrate");
        assert_eq!(
            scalar_i64(&database, "SELECT count(*) FROM resources").await,
            2
        );
        assert_eq!(
            scalar_i64(
                &database,
                "SELECT count(*) FROM spans s JOIN resources r \
                 ON r.project_id = s.project_id AND r.resource_hash = s.resource_hash"
            )
            .await,
            3
        );
        // A new write of resource "a" finds the migrated row (same hash for the same text).
        let record = SpanRecord {
            trace_id: [9; 16],
            name: "new".into(),
            kind: 1,
            status_message: None,
            stored: StoredSpan {
                span_id: [4; 8],
                parent_span_id: None,
                start_ns: 10,
                end_ns: 20,
                status_code: 0,
                facts: SpanFacts::default(),
            },
            attributes_json: "{}".into(),
            dropped_attributes_count: 0,
            resource: Arc::new(ResourceRecord::new("{\"service.name\":\"a\"}".into(), 0)),
        };
        write_spans(db, 7, [&record]).await.expect("write");
        assert_eq!(
            scalar_i64(&database, "SELECT count(*) FROM resources").await,
            2
        );
        assert_eq!(scalar_i64(&database, "SELECT count(*) FROM spans").await, 4);
    });
}
