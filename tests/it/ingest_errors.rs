//! Bad input and failures get the documented statuses over OTLP/HTTP, OTLP/gRPC and the
//! native stream, and never lose or half-write what was accepted.

use std::io::Write;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use sea_orm::{ConnectionTrait, TransactionTrait};
use tonic::{Code, Request, Status};
use userlens_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use userlens_proto::ingest::v1::{AnnotateTraceRequest, BatchOutcome, IssueAnnotation, SpanBatch};
use userlens_storage::{keys, read};
use userlens_tests::otlp::{
    errored, int, kv, request, resource_spans, span, span_id, string, trace_id, with_attributes,
};
use userlens_tests::process::UserlensProcess;
use userlens_tests::raw_grpc::RawCodec;
use userlens_tests::{TestDatabase, for_each_backend};

const KEY: &str = "ul_errors_test_key_0123456789";
const BODY_LIMIT: usize = 65_536;

/// The estimated queue bytes of `request`'s spans, as the writer counts them.
fn queued_bytes(request: &ExportTraceServiceRequest) -> usize {
    let converted = userlens_ingest::mapping::convert_resource_spans(&request.resource_spans);
    userlens_ingest::writer::queued_request_bytes(&converted.accepted)
}

async fn start(database: &TestDatabase, max_queued_bytes: usize) -> UserlensProcess {
    UserlensProcess::start(
        &[
            "ingest",
            "--otlp-grpc-addr",
            "127.0.0.1:0",
            "--otlp-http-addr",
            "127.0.0.1:0",
            "--max-body-bytes",
            &BODY_LIMIT.to_string(),
            "--max-queued-bytes",
            &max_queued_bytes.to_string(),
        ],
        &[
            ("USERLENS_DATABASE_URL", &database.url),
            ("USERLENS_API_KEY", KEY),
        ],
        &["otlp-grpc", "otlp-http"],
    )
    .await
}

/// `spans` good spans of trace `trace`, the first one the root carrying the user.
fn good_request(trace: u64, spans: u64, user: &str) -> ExportTraceServiceRequest {
    let root = span_id(trace * 100);
    let all = (0..spans)
        .map(|i| {
            let parent = (i > 0).then_some(root);
            let s = span(
                trace_id(trace),
                span_id(trace * 100 + i),
                parent,
                1_000 + i,
                2_000 + i,
            );
            if i == 0 {
                with_attributes(s, vec![kv("user.id", string(user))])
            } else {
                s
            }
        })
        .collect();
    request(vec![resource_spans(vec![], all)])
}

/// One good span and five bad ones.
fn mixed_request(trace: u64) -> ExportTraceServiceRequest {
    let good = with_attributes(
        span(trace_id(trace), span_id(1), None, 10, 20),
        vec![kv("user.id", string("mixed-user"))],
    );
    let mut short_trace = span(trace_id(trace), span_id(2), None, 10, 20);
    short_trace.trace_id.pop();
    let mut short_span = span(trace_id(trace), span_id(3), None, 10, 20);
    short_span.span_id.pop();
    let backwards = span(trace_id(trace), span_id(4), None, 30, 20);
    let wrong_type = with_attributes(
        span(trace_id(trace), span_id(5), None, 10, 20),
        vec![kv("session.id", userlens_tests::otlp::boolean(true))],
    );
    let negative_cost = with_attributes(
        span(trace_id(trace), span_id(6), None, 10, 20),
        vec![kv("gen_ai.usage.cost", userlens_tests::otlp::double(-1.0))],
    );
    request(vec![resource_spans(
        vec![],
        vec![
            short_trace,
            good,
            short_span,
            backwards,
            wrong_type,
            negative_cost,
        ],
    )])
}

fn http_url(process: &UserlensProcess) -> String {
    format!("http://{}/v1/traces", process.addr("otlp-http"))
}

async fn project_id(database: &TestDatabase) -> i64 {
    keys::resolve_key(&database.db, KEY)
        .await
        .expect("read keys")
        .expect("bootstrap key")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

#[tokio::test(flavor = "multi_thread")]
async fn http_bad_input_gets_its_documented_status() {
    for_each_backend!(|database| {
        let ingest = start(&database, userlens_ingest::writer::DEFAULT_MAX_QUEUED_BYTES).await;
        let url = http_url(&ingest);
        let client = reqwest::Client::new();
        let protobuf = |body: Vec<u8>| {
            client
                .post(&url)
                .header("content-type", "application/x-protobuf")
                .header("authorization", format!("Bearer {KEY}"))
                .body(body)
        };

        let body = good_request(1, 2, "u1").encode_to_vec();
        let no_key = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(body.clone());
        assert_eq!(no_key.send().await.expect("send").status(), 401);
        let wrong_key = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .header("authorization", "Bearer ul_not_a_key")
            .body(body.clone());
        assert_eq!(wrong_key.send().await.expect("send").status(), 401);

        let text = client
            .post(&url)
            .header("content-type", "text/plain")
            .header("authorization", format!("Bearer {KEY}"))
            .body("hello");
        assert_eq!(text.send().await.expect("send").status(), 415);

        assert_eq!(
            protobuf(vec![0xff; 16])
                .send()
                .await
                .expect("send")
                .status(),
            400
        );
        let bad_json = client
            .post(&url)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {KEY}"))
            .body("{\"resourceSpans\": [");
        assert_eq!(bad_json.send().await.expect("send").status(), 400);

        assert_eq!(
            protobuf(vec![0; BODY_LIMIT + 1])
                .send()
                .await
                .expect("send")
                .status(),
            413
        );
        let bomb = protobuf(gzip(&vec![0; 8 * 1024 * 1024])).header("content-encoding", "gzip");
        assert_eq!(bomb.send().await.expect("send").status(), 413);

        // Nothing was written by any refused request.
        let project = project_id(&database).await;
        assert_eq!(
            read::span_count(&database.db, project)
                .await
                .expect("count"),
            0
        );

        let ok = protobuf(gzip(&body))
            .header("content-encoding", "gzip")
            .send()
            .await
            .expect("send");
        assert_eq!(ok.status(), 200);
        let answer = ExportTraceServiceResponse::decode(ok.bytes().await.expect("body"))
            .expect("OTLP response");
        assert_eq!(answer.partial_success, None);

        let mixed = protobuf(mixed_request(2).encode_to_vec())
            .send()
            .await
            .expect("send");
        assert_eq!(mixed.status(), 200);
        let answer = ExportTraceServiceResponse::decode(mixed.bytes().await.expect("body"))
            .expect("OTLP response");
        let partial = answer.partial_success.expect("partial success");
        assert_eq!(partial.rejected_spans, 5);
        assert!(
            partial.error_message.contains("trace_id"),
            "{}",
            partial.error_message
        );

        let mixed_json = client
            .post(&url)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {KEY}"))
            .body(serde_json::to_vec(&mixed_request(3)).expect("OTLP JSON"))
            .send()
            .await
            .expect("send");
        assert_eq!(mixed_json.status(), 200);
        let answer: serde_json::Value = mixed_json.json().await.expect("JSON body");
        assert_eq!(
            answer["partialSuccess"]["rejectedSpans"],
            serde_json::json!("5")
        );

        // The example request of the OTLP specification, as JSON.
        let example = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/otlp-example-trace.json"
        ))
        .expect("fixture");
        let example = client
            .post(&url)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {KEY}"))
            .body(example)
            .send()
            .await
            .expect("send");
        assert_eq!(example.status(), 200);

        // 2 good spans, 1 + 1 good of the mixed requests, 1 of the example.
        assert_eq!(
            read::span_count(&database.db, project)
                .await
                .expect("count"),
            5
        );
        ingest.stop().await;
    });
}

async fn raw_export(addr: std::net::SocketAddr, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let channel = tonic::transport::Endpoint::new(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let mut request = Request::new(body);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {KEY}").parse().expect("ascii"),
    );
    let path = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        .parse()
        .expect("path");
    grpc.unary(request, path, RawCodec::default())
        .await
        .map(|r| r.into_inner())
}

fn authorized<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii"),
    );
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_bad_input_gets_its_documented_status() {
    for_each_backend!(|database| {
        let ingest = start(&database, userlens_ingest::writer::DEFAULT_MAX_QUEUED_BYTES).await;
        let addr = ingest.addr("otlp-grpc");
        let mut client = TraceServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");

        let status = client
            .export(Request::new(good_request(1, 1, "u")))
            .await
            .expect_err("no key");
        assert_eq!(status.code(), Code::Unauthenticated);
        let status = client
            .export(authorized(good_request(1, 1, "u"), "ul_wrong"))
            .await
            .expect_err("bad key");
        assert_eq!(status.code(), Code::Unauthenticated);

        let status = raw_export(addr, vec![0xff; 16]).await.expect_err("garbage");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let status = raw_export(addr, vec![0; BODY_LIMIT + 1])
            .await
            .expect_err("too large");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

        let answer = client
            .export(authorized(mixed_request(2), KEY))
            .await
            .expect("export")
            .into_inner();
        assert_eq!(answer.partial_success.map(|p| p.rejected_spans), Some(5));

        // The native stream: three batches in flight, one ack each, after commit.
        let mut native = IngestServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let batches: Vec<SpanBatch> = (0..3)
            .map(|i| SpanBatch {
                sequence: 10 + i,
                resource_spans: good_request(100 + i, 2 + i, "stream-user").resource_spans,
            })
            .collect();
        let mut acks = native
            .stream_spans(authorized(futures::stream::iter(batches), KEY))
            .await
            .expect("open stream")
            .into_inner();
        let mut seen = Vec::new();
        while let Some(ack) = acks.message().await.expect("ack") {
            assert_eq!(ack.outcome, BatchOutcome::Durable as i32);
            seen.push((ack.sequence, ack.accepted_spans));
        }
        seen.sort();
        assert_eq!(seen, vec![(10, 2), (11, 3), (12, 4)]);

        let status = native
            .annotate_trace(authorized(
                AnnotateTraceRequest {
                    trace_id: "xyz".into(),
                    ..Default::default()
                },
                KEY,
            ))
            .await
            .expect_err("bad trace id");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("trace_id"));
        native
            .annotate_trace(authorized(
                AnnotateTraceRequest {
                    trace_id: hex::encode(trace_id(100)),
                    issues: vec![IssueAnnotation {
                        id: "iss-9".into(),
                        title: "Refund loop".into(),
                    }],
                    behaviours: vec!["asked-for-human".into()],
                },
                KEY,
            ))
            .await
            .expect("annotate");

        let project = project_id(&database).await;
        let traces = read::traces_changed_since(&database.db, project, -1)
            .await
            .expect("traces");
        let annotated = traces
            .iter()
            .find(|t| t.trace_id == trace_id(100))
            .expect("trace 100");
        assert_eq!(annotated.issues.len(), 1);
        assert_eq!(annotated.issues[0].title.as_deref(), Some("Refund loop"));
        assert_eq!(annotated.behaviours, vec!["asked-for-human"]);
        // 1 good span of the mixed request, 2 + 3 + 4 streamed.
        assert_eq!(
            read::span_count(&database.db, project)
                .await
                .expect("count"),
            10
        );
        ingest.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn overload_is_shed_and_a_broken_database_writes_nothing() {
    for_each_backend!(|database| {
        let ingest = start(&database, queued_bytes(&good_request(1, 10, "first"))).await;
        let url = http_url(&ingest);
        let metrics_url = format!("http://{}/metrics", ingest.addr("otlp-http"));
        let client = reqwest::Client::new();
        let project = project_id(&database).await;
        let post = |body: Vec<u8>| {
            client
                .post(&url)
                .header("content-type", "application/x-protobuf")
                .header("authorization", format!("Bearer {KEY}"))
                .body(body)
                .send()
        };

        // Hold the project's row lock so the writer waits inside its first transaction.
        let blocker = database.connect_again().await;
        let lock = blocker.begin().await.expect("begin");
        lock.execute_unprepared(&format!(
            "UPDATE projects SET name = name WHERE id = {project}"
        ))
        .await
        .expect("lock the project row");

        let first = tokio::spawn(post(good_request(1, 10, "first").encode_to_vec()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let metrics = client
                .get(&metrics_url)
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text");
            if metrics.contains("userlens_ingest_queued_spans 10") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the first request never queued:\n{metrics}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let shed = post(good_request(2, 3, "second").encode_to_vec())
            .await
            .expect("send");
        assert_eq!(shed.status(), 429);
        assert!(shed.headers().get("retry-after").is_some());
        let mut grpc = TraceServiceClient::connect(format!("http://{}", ingest.addr("otlp-grpc")))
            .await
            .expect("connect");
        let status = grpc
            .export(authorized(good_request(3, 1, "third"), KEY))
            .await
            .expect_err("shed");
        assert_eq!(status.code(), Code::ResourceExhausted);

        lock.rollback().await.expect("release the lock");
        let first = first.await.expect("join").expect("send");
        assert_eq!(first.status(), 200);
        assert_eq!(
            read::span_count(&database.db, project)
                .await
                .expect("count"),
            10
        );

        // The database fails mid-batch (the spans insert works, the trace upsert cannot, its
        // table is gone): retrying cannot help, so 500 / INTERNAL without Retry-After, and
        // none of the batch's spans stay behind.
        database
            .db
            .execute_unprepared("DROP TABLE traces")
            .await
            .expect("drop traces");
        let failed = post(errored_request(4)).await.expect("send");
        assert_eq!(failed.status(), 500);
        assert!(failed.headers().get("retry-after").is_none());
        let status = grpc
            .export(authorized(good_request(5, 2, "fifth"), KEY))
            .await
            .expect_err("internal");
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(
            read::span_count(&database.db, project)
                .await
                .expect("count"),
            10
        );
        ingest.stop().await;
    });
}

fn errored_request(trace: u64) -> Vec<u8> {
    let root = with_attributes(
        errored(span(trace_id(trace), span_id(1), None, 5, 6)),
        vec![kv("user.id", int(42))],
    );
    request(vec![resource_spans(vec![], vec![root])]).encode_to_vec()
}
