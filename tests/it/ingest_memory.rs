//! Ingest memory is bounded by bytes: a body that would decode into far more than it weighs
//! on the wire is refused before it is decoded, the write queue admits by bytes and refuses
//! a request larger than all of it; errors say what they are; a `StreamSpans` client that
//! reads no acks holds up neither other clients nor the shutdown.

use std::io::Write;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use sea_orm::{ConnectionTrait, TransactionTrait};
use tonic::codec::CompressionEncoding;
use tonic::{Code, Request, Status};
use userlens_datagen::{Dataset, DatasetSpec, span_count};
use userlens_proto::ingest::v1::{BatchAck, BatchOutcome, SpanBatch};
use userlens_storage::{keys, read};
use userlens_tests::otlp::{
    kv, request, resource_spans, span, span_id, string, trace_id, with_attributes,
};
use userlens_tests::process::UserlensProcess;
use userlens_tests::raw_grpc::RawCodec;
use userlens_tests::{Backend, TestDatabase, for_each_backend};

const KEY: &str = "ul_memory_test_key_0123";
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const STREAM_PATH: &str = "/userlens.ingest.v1.IngestService/StreamSpans";
const MIB: u64 = 1024 * 1024;

async fn start(database: &TestDatabase, extra: &[&str]) -> UserlensProcess {
    let mut args = vec![
        "ingest",
        "--otlp-grpc-addr",
        "127.0.0.1:0",
        "--otlp-http-addr",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    UserlensProcess::start(
        &args,
        &[
            ("USERLENS_DATABASE_URL", &database.url),
            ("USERLENS_API_KEY", KEY),
        ],
        &["otlp-grpc", "otlp-http"],
    )
    .await
}

async fn project_id(database: &TestDatabase) -> i64 {
    keys::resolve_key(&database.db, KEY)
        .await
        .expect("keys")
        .expect("project")
}

/// A field of `/proc/<pid>/status` in bytes (`VmHWM`: peak resident set, `VmRSS`: now).
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a number of kB");
    kib * 1024
}

fn peak_rss(ingest: &UserlensProcess) -> u64 {
    proc_status_bytes(ingest.pid().expect("running"), "VmHWM:")
}

fn length_delimited(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    prost::encoding::encode_varint(content.len() as u64, &mut out);
    out.extend_from_slice(content);
    out
}

/// `ResourceSpans { ScopeSpans { spans × Span {} } }` on the wire, built without decoding
/// (8M `Span` structs would take 2 GB in the test as well).
fn empty_spans_resource(spans: usize) -> Vec<u8> {
    let scope = [0x12u8, 0x00].repeat(spans);
    length_delimited(0x12, &length_delimited(0x12, &scope))
}

/// `ExportTraceServiceRequest` of 8,000,000 empty spans: 16 MB.
fn eight_million_empty_spans() -> Vec<u8> {
    let resource = empty_spans_resource(8_000_000);
    // resource_spans = 1: the tag of ResourceSpans inside the request.
    let mut request = resource;
    request[0] = 0x0a;
    request
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body).expect("gzip");
    encoder.finish().expect("gzip")
}

async fn raw_grpc(addr: std::net::SocketAddr) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::new(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    tonic::client::Grpc::new(channel)
        .send_compressed(CompressionEncoding::Gzip)
        .max_encoding_message_size(usize::MAX)
}

fn authorized<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {KEY}").parse().expect("ascii"),
    );
    request
}

async fn raw_export(addr: std::net::SocketAddr, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = raw_grpc(addr).await;
    grpc.ready().await.expect("ready");
    grpc.unary(
        authorized(body),
        EXPORT_PATH.parse().expect("path"),
        RawCodec::default(),
    )
    .await
    .map(|r| r.into_inner())
}

fn post(url: &str, content_type: &str, gzipped: bool, body: Vec<u8>) -> reqwest::RequestBuilder {
    let request = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .header("authorization", format!("Bearer {KEY}"));
    if gzipped {
        request.header("content-encoding", "gzip").body(gzip(&body))
    } else {
        request.body(body)
    }
}

/// One span of trace `trace` with a user, encoded.
fn small_request(trace: u64) -> ExportTraceServiceRequest {
    request(vec![resource_spans(
        vec![],
        vec![with_attributes(
            span(trace_id(trace), span_id(trace * 10 + 1), None, 1_000, 2_000),
            vec![kv("user.id", string("memory-user"))],
        )],
    )])
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_million_empty_spans_with_a_valid_key_are_refused_before_decoding() {
    for_each_backend!(|database| {
        let ingest = start(&database, &[]).await;
        let grpc_addr = ingest.addr("otlp-grpc");
        let http_url = format!("http://{}/v1/traces", ingest.addr("otlp-http"));
        let body = eight_million_empty_spans();
        assert_eq!(body.len(), 16_000_010);
        let before = peak_rss(&ingest);

        // OTLP/gRPC, gzip: 16 KB on the wire, 16 MB inflated, ≈ 2 GB if decoded.
        let status = raw_export(grpc_addr, body.clone())
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(
            status.message().contains("decoded bytes per request"),
            "the refusal names the limit: {}",
            status.message()
        );
        let growth = peak_rss(&ingest).saturating_sub(before);
        eprintln!(
            "one 8M-empty-span export: peak RSS grew by {} KiB",
            growth / 1024
        );
        assert!(growth <= 64 * MIB, "peak RSS grew by {growth} bytes");

        // Four at once stay bounded too.
        let exports: Vec<_> = (0..4)
            .map(|_| tokio::spawn(raw_export(grpc_addr, body.clone())))
            .collect();
        for export in exports {
            let status = export.await.expect("task").expect_err("refused");
            assert_eq!(status.code(), Code::ResourceExhausted);
        }
        let peak = peak_rss(&ingest);
        eprintln!(
            "four concurrent 8M-empty-span exports: peak RSS {} MiB (grew by {} MiB)",
            peak / MIB,
            peak.saturating_sub(before) / MIB
        );
        assert!(peak < 300 * MIB, "peak RSS {peak} bytes");

        // OTLP/HTTP protobuf, gzip and plain: 413 naming the limit.
        for gzipped in [true, false] {
            let response = post(&http_url, "application/x-protobuf", gzipped, body.clone())
                .send()
                .await
                .expect("send");
            assert_eq!(response.status(), 413);
        }
        // OTLP/HTTP JSON: `{}` is a whole span in 2 bytes.
        let json_spans = vec!["{}"; 5_000_000].join(",");
        let json =
            format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{json_spans}]}}]}}]}}"#);
        let response = post(&http_url, "application/json", true, json.into_bytes())
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 413);
        let text = response.text().await.expect("body");
        assert!(text.contains("decoded bytes per request"), "{text}");

        // A `StreamSpans` batch of them ends the stream with RESOURCE_EXHAUSTED.
        let mut batch = empty_spans_resource(8_000_000);
        batch.splice(0..0, [0x08, 0x07]); // sequence = 7
        let mut grpc = raw_grpc(grpc_addr).await;
        grpc.ready().await.expect("ready");
        let outbound = futures::stream::iter(vec![batch]);
        let mut acks = grpc
            .streaming(
                authorized(outbound),
                STREAM_PATH.parse().expect("path"),
                RawCodec::default(),
            )
            .await
            .expect("stream opens")
            .into_inner();
        let status = acks.message().await.expect_err("the stream ends");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

        let peak = peak_rss(&ingest);
        eprintln!("after every transport: peak RSS {} MiB", peak / MIB);
        assert!(peak < 300 * MIB, "peak RSS {peak} bytes");

        // Nothing was stored, and ingest still takes real requests.
        raw_export(grpc_addr, small_request(1).encode_to_vec())
            .await
            .expect("a small export is stored");
        let project = project_id(&database).await;
        assert_eq!(
            read::span_count(&database.db, project)
                .await
                .expect("count"),
            1
        );
        ingest.stop().await;
    });
}

/// `requests` datagen exports of about `target_bytes` each on the wire.
fn large_requests(target_bytes: usize) -> Vec<Vec<u8>> {
    let dataset = Dataset::new(DatasetSpec::new(
        40_000,
        200,
        13,
        4,
        1_790_000_000_000_000_000,
    ));
    let mut requests = Vec::new();
    let mut next = 0;
    for _ in 0..4 {
        let mut traces = 50;
        loop {
            let body = dataset.request(next..next + traces).encode_to_vec();
            if body.len() >= target_bytes || next + traces * 2 >= 40_000 {
                next += traces;
                requests.push(body);
                break;
            }
            traces = traces * 3 / 2 + 1;
        }
    }
    requests
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_at_the_documented_limits_keep_peak_rss_under_300_mb() {
    for_each_backend!(|database| {
        let ingest = start(&database, &[]).await;
        let grpc_addr = ingest.addr("otlp-grpc");
        let http_url = format!("http://{}/v1/traces", ingest.addr("otlp-http"));
        // Real spans, each request just under the 16 MiB body limit.
        let requests = large_requests(14 * MIB as usize);
        let spans: u64 = requests
            .iter()
            .map(|body| {
                span_count(&ExportTraceServiceRequest::decode(body.as_slice()).expect("decodes"))
            })
            .sum();
        let mut sent = Vec::new();
        for (i, body) in requests.into_iter().enumerate() {
            let http_url = http_url.clone();
            sent.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    raw_export(grpc_addr, body)
                        .await
                        .map(|_| ())
                        .map_err(|s| s.code())
                } else {
                    let response = post(&http_url, "application/x-protobuf", true, body)
                        .send()
                        .await
                        .expect("send");
                    match response.status().as_u16() {
                        200 => Ok(()),
                        429 => Err(Code::ResourceExhausted),
                        other => panic!("HTTP {other}"),
                    }
                }
            }));
        }
        let mut stored = 0;
        for request in sent {
            match request.await.expect("task") {
                Ok(()) => stored += 1,
                // Shed while the queue was full: retryable, and allowed here.
                Err(Code::ResourceExhausted) => {}
                Err(code) => panic!("unexpected {code:?}"),
            }
        }
        assert!(stored > 0, "some of the large requests were stored");
        let peak = peak_rss(&ingest);
        eprintln!(
            "four concurrent ≈14 MiB exports ({spans} spans), {stored} stored: peak RSS {} MiB",
            peak / MIB
        );
        // The target is 300 MB on every backend. Since requests are consumed as they are
        // converted, both meet it here (SQLite 212–216 MiB, PostgreSQL 200–202 MiB); on
        // PostgreSQL the test keeps the 384 MiB line until a release run at the very edge of
        // the limits confirms the target there too (docs/reliability.md, "Hardening: ingest
        // memory").
        let ceiling = match database.backend {
            Backend::Sqlite => 300 * MIB,
            Backend::Postgres => 384 * MIB,
        };
        assert!(peak < ceiling, "peak RSS {peak} bytes");
        ingest.stop().await;
    });
}

/// The estimated queue bytes of `request`'s spans, as the writer counts them.
fn queued_bytes(request: &ExportTraceServiceRequest) -> usize {
    let converted = userlens_ingest::mapping::convert_resource_spans(&request.resource_spans);
    userlens_ingest::writer::queued_request_bytes(&converted.accepted)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_larger_than_the_whole_queue_is_refused_not_admitted_alone() {
    for_each_backend!(|database| {
        let dataset = Dataset::new(DatasetSpec::new(20, 10, 5, 2, 1_790_000_000_000_000_000));
        let large = dataset.request(0..20);
        let small = dataset.request(0..1);
        let queue = queued_bytes(&large) / 2;
        assert!(queued_bytes(&small) < queue, "the small request fits");
        let queue = queue.to_string();
        let ingest = start(&database, &["--max-queued-bytes", &queue]).await;
        let http_url = format!("http://{}/v1/traces", ingest.addr("otlp-http"));
        let project = project_id(&database).await;

        let response = post(
            &http_url,
            "application/x-protobuf",
            false,
            large.encode_to_vec(),
        )
        .send()
        .await
        .expect("send");
        assert_eq!(response.status(), 413);
        assert!(
            response.headers().get("retry-after").is_none(),
            "retrying as it is cannot help"
        );
        let status = raw_export(ingest.addr("otlp-grpc"), large.encode_to_vec())
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status.message().contains("USERLENS_MAX_QUEUED_BYTES"),
            "{}",
            status.message()
        );
        assert!(
            status
                .metadata()
                .get_bin("grpc-status-details-bin")
                .is_none(),
            "no RetryInfo: the request can never be admitted"
        );
        assert_eq!(
            read::span_count(&database.db, project)
                .await
                .expect("count"),
            0
        );

        let response = post(
            &http_url,
            "application/x-protobuf",
            false,
            small.encode_to_vec(),
        )
        .send()
        .await
        .expect("send");
        assert_eq!(response.status(), 200);
        assert_eq!(
            read::span_count(&database.db, project)
                .await
                .expect("count"),
            span_count(&small)
        );
        ingest.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_stored_data_is_internal_not_retryable() {
    for_each_backend!(|database| {
        let ingest = start(&database, &[]).await;
        let http_url = format!("http://{}/v1/traces", ingest.addr("otlp-http"));
        let project = project_id(&database).await;
        let response = post(
            &http_url,
            "application/x-protobuf",
            false,
            small_request(9).encode_to_vec(),
        )
        .send()
        .await
        .expect("send");
        assert_eq!(response.status(), 200);
        // A stored span whose behaviours no longer decode: re-deriving its trace fails the
        // same way every time.
        database
            .db
            .execute_unprepared("UPDATE spans SET behaviours = 'not json'")
            .await
            .expect("corrupt the stored span");
        let mut second = small_request(9);
        second.resource_spans[0].scope_spans[0].spans[0].span_id = span_id(92).to_vec();
        let response = post(
            &http_url,
            "application/x-protobuf",
            false,
            second.encode_to_vec(),
        )
        .send()
        .await
        .expect("send");
        assert_eq!(response.status(), 500);
        assert!(response.headers().get("retry-after").is_none());
        let status = raw_export(ingest.addr("otlp-grpc"), second.encode_to_vec())
            .await
            .expect_err("internal");
        assert_eq!(status.code(), Code::Internal, "{status:?}");
        assert!(
            !status.message().contains("behaviours"),
            "the detail stays in the log: {}",
            status.message()
        );
        assert_eq!(
            read::span_count(&database.db, project)
                .await
                .expect("count"),
            1
        );
        let output = ingest.stop_and_collect().await;
        assert!(
            output
                .log
                .iter()
                .any(|line| line.contains("span behaviours")),
            "the detail is logged"
        );
    });
}

fn batch(sequence: u64, trace: u64) -> Vec<u8> {
    SpanBatch {
        sequence,
        resource_spans: small_request(trace).resource_spans,
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_batch_ends_the_stream_after_the_acks_of_the_batches_being_written() {
    for_each_backend!(|database| {
        let ingest = start(&database, &[]).await;
        let project = project_id(&database).await;
        // The writer stalls on the project's row lock, so the good batches are still being
        // written when the bad one arrives.
        let blocker = database.connect_again().await;
        let lock = blocker.begin().await.expect("begin");
        lock.execute_unprepared(&format!(
            "UPDATE projects SET name = name WHERE id = {project}"
        ))
        .await
        .expect("lock the project row");

        let (sender, outbound) = futures::channel::mpsc::unbounded::<Vec<u8>>();
        let mut grpc = raw_grpc(ingest.addr("otlp-grpc")).await;
        grpc.ready().await.expect("ready");
        let mut acks = grpc
            .streaming(
                authorized(outbound),
                STREAM_PATH.parse().expect("path"),
                RawCodec::default(),
            )
            .await
            .expect("stream opens")
            .into_inner();
        for sequence in 1..=5 {
            sender
                .unbounded_send(batch(sequence, 100 + sequence))
                .expect("send");
        }
        // resource_spans (2) as a varint: does not decode.
        sender.unbounded_send(vec![0x10, 0x01]).expect("send");
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        lock.rollback().await.expect("release the lock");

        let mut acked = Vec::new();
        let status = loop {
            match tokio::time::timeout(Duration::from_secs(20), acks.message())
                .await
                .expect("the stream answers")
            {
                Ok(Some(raw)) => {
                    let ack = BatchAck::decode(raw.as_slice()).expect("an ack");
                    assert_eq!(ack.outcome, BatchOutcome::Durable as i32);
                    acked.push(ack.sequence);
                }
                Ok(None) => panic!("the stream ended without the error"),
                Err(status) => break status,
            }
        };
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        acked.sort_unstable();
        assert_eq!(
            acked,
            vec![1, 2, 3, 4, 5],
            "every batch being written was acknowledged"
        );
        assert_eq!(
            read::span_count(&database.db, project)
                .await
                .expect("count"),
            5
        );
        drop(sender);
        ingest.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_reads_no_acks_blocks_neither_other_clients_nor_shutdown() {
    for_each_backend!(|database| {
        let ingest = start(&database, &[]).await;
        let project = project_id(&database).await;
        let grpc_addr = ingest.addr("otlp-grpc");
        let http_url = format!("http://{}/v1/traces", ingest.addr("otlp-http"));

        // A client whose receive window holds a few acks only and which never reads them.
        let channel = tonic::transport::Endpoint::new(format!("http://{grpc_addr}"))
            .expect("endpoint")
            .initial_stream_window_size(Some(64))
            .connect()
            .await
            .expect("connect");
        let mut stalled = tonic::client::Grpc::new(channel);
        stalled.ready().await.expect("ready");
        let (sender, outbound) = futures::channel::mpsc::unbounded::<Vec<u8>>();
        let unread_acks = stalled
            .streaming(
                authorized(outbound),
                STREAM_PATH.parse().expect("path"),
                RawCodec::default(),
            )
            .await
            .expect("stream opens");
        for sequence in 0..400 {
            sender
                .unbounded_send(batch(sequence, 1_000 + sequence))
                .expect("send");
        }
        // Let the server fill the window, its ack queue and its batches in flight.
        tokio::time::sleep(Duration::from_secs(3)).await;

        // Other clients still ingest, over both transports.
        for trace in 1..=3 {
            raw_export(grpc_addr, small_request(trace).encode_to_vec())
                .await
                .expect("gRPC export stored");
            let response = post(
                &http_url,
                "application/x-protobuf",
                false,
                small_request(10 + trace).encode_to_vec(),
            )
            .send()
            .await
            .expect("send");
            assert_eq!(response.status(), 200);
        }
        let stored_by_others = 6;
        assert!(
            read::span_count(&database.db, project)
                .await
                .expect("count")
                >= stored_by_others
        );

        // SIGTERM: the process exits cleanly within the documented bound although the
        // stalled client keeps its stream and connection open.
        let stopping = Instant::now();
        let output = ingest.stop_and_collect().await;
        let took = stopping.elapsed();
        eprintln!("exited {} ms after SIGTERM", took.as_millis());
        assert!(
            took < userlens_ingest::GRPC_SHUTDOWN_GRACE + Duration::from_secs(10),
            "exit took {took:?}"
        );
        // Every acknowledged request is stored; the stalled stream's batches that were
        // written are stored whole (one span each) and nothing else.
        let stored = read::span_count(&database.db, project)
            .await
            .expect("count");
        assert!(stored >= stored_by_others);
        assert!(stored <= stored_by_others + 400);
        assert!(
            output
                .log
                .iter()
                .any(|line| line.contains("reads no acks") || line.contains("shutdown grace")),
            "the abandoned stream is logged"
        );
        drop(unread_acks);
        drop(sender);
    });
}
