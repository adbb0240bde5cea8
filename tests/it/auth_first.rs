//! Authentication before the body, against the real `userlens` binary: a call with a missing
//! or unknown key is refused from its headers alone on every transport (its message is never
//! inflated or decoded, so neither its size nor its validity matters), repeated bad keys reach
//! the database once per key within the negative cache's TTL, and a key deleted while a
//! `StreamSpans` stream is open stops that stream within the key cache's TTL.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Channel, Endpoint};
use userlens_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use userlens_proto::ingest::v1::{BatchOutcome, SpanBatch};
use userlens_storage::entities::{api_keys, spans};
use userlens_storage::keys;
use userlens_tests::faults_support::counter;
use userlens_tests::otlp::{resource_spans, span, span_id, trace_id};
use userlens_tests::process::{self, UserlensProcess};
use userlens_tests::raw_grpc::RawCodec;
use userlens_tests::{TestDatabase, for_each_backend};

const KEY: &str = "ul_auth_first_test_key_0001";
const UNKNOWN: &str = "Bearer ul_auth_first_unknown_key_0000000000";
/// Empty spans in the headline request: 16 MB raw (under the 16 MiB body limit), ~16 KB gzip.
const EMPTY_SPANS: usize = 8_000_000;
/// Peak memory a refused request may add to the server.
const MAX_RSS_GROWTH_BYTES: u64 = 64 * 1024 * 1024;

const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const STREAM_SPANS: &str = "/userlens.ingest.v1.IngestService/StreamSpans";
const ANNOTATE_TRACE: &str = "/userlens.ingest.v1.IngestService/AnnotateTrace";
const QUERY_RPCS: [&str; 6] = [
    "/userlens.query.v1.UsersQueryService/GetUsersOverview",
    "/userlens.query.v1.UsersQueryService/ListUsers",
    "/userlens.query.v1.UsersQueryService/GetUserDetail",
    "/userlens.query.v1.UsersQueryService/ListSessions",
    "/userlens.query.v1.UsersQueryService/GetBreakdowns",
    "/userlens.query.v1.UsersQueryService/CheckKey",
];

/// An `ExportTraceServiceRequest` (also a valid `SpanBatch` body) of `count` empty spans in
/// one scope, encoded by hand: building 8M `Span` values would cost the test gigabytes.
fn empty_spans_message(count: usize) -> Bytes {
    fn varint(out: &mut Vec<u8>, mut value: usize) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }
    // ScopeSpans.spans (field 2), each an empty message.
    let scope_spans = [0x12u8, 0x00].repeat(count);
    let mut resource_spans = vec![0x12u8]; // ResourceSpans.scope_spans (field 2)
    varint(&mut resource_spans, scope_spans.len());
    resource_spans.extend_from_slice(&scope_spans);
    drop(scope_spans);
    let mut request = vec![0x0au8]; // ExportTraceServiceRequest.resource_spans (field 1)
    varint(&mut request, resource_spans.len());
    request.extend_from_slice(&resource_spans);
    Bytes::from(request)
}

/// Bytes that are no protobuf message: a field of wire type 7 (does not exist).
fn garbage() -> Bytes {
    Bytes::from_static(&[0xff; 64])
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

fn raw_request<T>(message: T, authorization: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_secs(60));
    if let Some(authorization) = authorization {
        request
            .metadata_mut()
            .insert("authorization", authorization.parse().expect("ascii"));
    }
    request
}

/// One unary call of `path` with `message` as its gzip-compressed body.
async fn raw_unary(
    channel: &Channel,
    path: &'static str,
    authorization: Option<&str>,
    message: Bytes,
) -> Result<Bytes, tonic::Status> {
    let mut grpc =
        tonic::client::Grpc::new(channel.clone()).send_compressed(CompressionEncoding::Gzip);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    grpc.unary(
        raw_request(message, authorization),
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        RawCodec::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// A `StreamSpans` call sending `message` as its one batch; the first answer of the stream.
async fn raw_stream(
    channel: &Channel,
    authorization: Option<&str>,
    message: Bytes,
) -> Result<Option<Bytes>, tonic::Status> {
    let mut grpc =
        tonic::client::Grpc::new(channel.clone()).send_compressed(CompressionEncoding::Gzip);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let outbound = futures::stream::iter(vec![message]);
    let response = grpc
        .streaming(
            raw_request(outbound, authorization),
            tonic::codegen::http::uri::PathAndQuery::from_static(STREAM_SPANS),
            RawCodec::default(),
        )
        .await?;
    response.into_inner().message().await
}

fn assert_refused<T: std::fmt::Debug>(outcome: Result<T, tonic::Status>, what: &str) {
    match outcome {
        Err(status) => assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{what}: {}",
            status.message()
        ),
        Ok(answer) => panic!("{what}: expected UNAUTHENTICATED, got {answer:?}"),
    }
}

/// The process's peak resident set (`VmHWM`) in bytes.
fn peak_rss_bytes(process: &UserlensProcess) -> u64 {
    let pid = process.pid().expect("a running process");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmHWM in /proc/<pid>/status")
}

async fn start_ingest(database: &TestDatabase, extra_env: &[(&str, &str)]) -> UserlensProcess {
    let mut env = vec![
        ("USERLENS_DATABASE_URL", database.url.as_str()),
        ("USERLENS_API_KEY", KEY),
    ];
    env.extend_from_slice(extra_env);
    UserlensProcess::start(
        &[
            "ingest",
            "--otlp-grpc-addr",
            "127.0.0.1:0",
            "--otlp-http-addr",
            "127.0.0.1:0",
        ],
        &env,
        &["otlp-grpc", "otlp-http"],
    )
    .await
}

async fn start_all_in_one(database: &TestDatabase) -> (UserlensProcess, std::path::PathBuf) {
    process::start_all_in_one(database, &[("USERLENS_API_KEY", KEY)], &[]).await
}

/// One HTTP/1.1 exchange on a fresh connection; the status and the body of the answer.
async fn http_exchange(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    // The answer is complete when its body (Content-Length) has arrived, or at EOF.
    loop {
        let read = stream.read(&mut buffer).await.expect("read");
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            });
            if length.is_some_and(|length| body.len() >= length) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn metrics_text(addr: std::net::SocketAddr) -> String {
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    http_exchange(addr, request.as_bytes()).await.1
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_huge_ingest_calls_are_refused_before_their_message_is_decoded() {
    let huge = empty_spans_message(EMPTY_SPANS);
    assert!(
        huge.len() < userlens_ingest::DEFAULT_MAX_BODY_BYTES,
        "{}",
        huge.len()
    );
    for_each_backend!(|database| {
        let ingest = start_ingest(&database, &[]).await;
        let channel = channel(ingest.addr("otlp-grpc")).await;
        let before = peak_rss_bytes(&ingest);
        for authorization in [None, Some(UNKNOWN)] {
            let what = format!("with {authorization:?}");
            assert_refused(
                raw_unary(&channel, EXPORT, authorization, huge.clone()).await,
                &format!("Export of {EMPTY_SPANS} empty spans {what}"),
            );
            assert_refused(
                raw_stream(&channel, authorization, huge.clone()).await,
                &format!("StreamSpans batch of {EMPTY_SPANS} empty spans {what}"),
            );
            assert_refused(
                raw_unary(&channel, ANNOTATE_TRACE, authorization, huge.clone()).await,
                &format!("AnnotateTrace of 16 MB {what}"),
            );
        }
        let after = peak_rss_bytes(&ingest);
        let growth = after.saturating_sub(before);
        eprintln!(
            "peak RSS {} MiB before, {} MiB after six refused 16 MB calls (+{} KiB)",
            before >> 20,
            after >> 20,
            growth >> 10
        );
        assert!(
            growth < MAX_RSS_GROWTH_BYTES,
            "refused calls grew peak RSS by {} MiB",
            growth >> 20
        );

        // Neither the validity nor the size of a message matters without a known key; with
        // one, the same bytes are decoded and refused for what they are.
        let oversized = Bytes::from(vec![0u8; userlens_ingest::DEFAULT_MAX_BODY_BYTES + 1]);
        for message in [garbage(), oversized] {
            for path in [EXPORT, ANNOTATE_TRACE] {
                assert_refused(
                    raw_unary(&channel, path, Some(UNKNOWN), message.clone()).await,
                    &format!("{path} of {} bad bytes", message.len()),
                );
            }
            assert_refused(
                raw_stream(&channel, None, message.clone()).await,
                &format!("StreamSpans of {} bad bytes", message.len()),
            );
        }
        let known = format!("Bearer {KEY}");
        let decoded = raw_unary(&channel, EXPORT, Some(&known), garbage()).await;
        assert_eq!(
            decoded.map_err(|s| s.code()),
            Err(Code::InvalidArgument),
            "a known key's garbage is decoded and refused"
        );
        let metrics = metrics_text(ingest.addr("otlp-http")).await;
        assert_eq!(
            counter(&metrics, "userlens_ingest_requests_unauthenticated_total"),
            6 + 6
        );
        assert_eq!(counter(&metrics, "userlens_ingest_spans_accepted_total"), 0);
        ingest.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_key_is_refused_before_the_body_on_otlp_http() {
    for_each_backend!(|database| {
        let ingest = start_ingest(&database, &[]).await;
        let addr = ingest.addr("otlp-http");
        // A body announced at 10 MB of which not a byte is sent: the answer comes from the
        // headers alone, and the connection is not kept for another request.
        for authorization in ["", "Authorization: Bearer ul_not_a_key_of_anyone\r\n"] {
            let request = format!(
                "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\n\
                 Content-Encoding: gzip\r\n{authorization}Content-Length: 10000000\r\n\r\n"
            );
            let answer = tokio::time::timeout(
                Duration::from_secs(10),
                http_exchange(addr, request.as_bytes()),
            )
            .await
            .expect("answered without the body");
            assert_eq!(answer.0, 401, "{authorization:?}: {}", answer.1);
        }
        ingest.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_bad_keys_reach_the_database_once_per_key() {
    const KEYS: usize = 30;
    const REPEATS: usize = 10;
    for_each_backend!(|database| {
        let ingest = start_ingest(&database, &[]).await;
        let channel = channel(ingest.addr("otlp-grpc")).await;
        let http = reqwest::Client::new();
        let http_url = format!("http://{}/v1/traces", ingest.addr("otlp-http"));
        let lookups = |metrics: &str| counter(metrics, "userlens_ingest_key_lookups_total");
        let before = lookups(&metrics_text(ingest.addr("otlp-http")).await);
        let started = Instant::now();
        let mut flood = tokio::task::JoinSet::new();
        for k in 0..KEYS {
            let (channel, http, http_url) = (channel.clone(), http.clone(), http_url.clone());
            flood.spawn(async move {
                let authorization = format!("Bearer ul_flood_{k:04}_000000000000000000");
                for repeat in 0..REPEATS {
                    if repeat % 2 == 0 {
                        assert_refused(
                            raw_unary(&channel, EXPORT, Some(&authorization), garbage()).await,
                            "flood over gRPC",
                        );
                    } else {
                        let response = http
                            .post(&http_url)
                            .header("content-type", "application/x-protobuf")
                            .header("authorization", &authorization)
                            .body(vec![0xffu8; 64])
                            .send()
                            .await
                            .expect("send");
                        assert_eq!(response.status(), 401);
                    }
                }
            });
        }
        while let Some(done) = flood.join_next().await {
            done.expect("a flooding task");
        }
        let elapsed = started.elapsed();
        let metrics = metrics_text(ingest.addr("otlp-http")).await;
        let sent = lookups(&metrics) - before;
        eprintln!(
            "{} requests with {KEYS} bad keys in {elapsed:?}: {sent} database lookups",
            KEYS * REPEATS
        );
        // Within the 5 s negative TTL each key is looked up once.
        if elapsed < Duration::from_secs(5) {
            assert_eq!(sent, KEYS as u64, "{metrics}");
        } else {
            assert!(sent <= 2 * KEYS as u64, "{sent} lookups in {elapsed:?}");
        }
        assert_eq!(
            counter(&metrics, "userlens_ingest_requests_unauthenticated_total"),
            (KEYS * REPEATS) as u64
        );
        ingest.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn users_query_and_graphql_refuse_unknown_keys_before_the_body() {
    for_each_backend!(|database| {
        let (aio, key_file) = start_all_in_one(&database).await;
        let query = channel(aio.addr("query-grpc")).await;
        // Over tonic's 4 MiB message limit, and garbage: either would be refused for what it
        // is were it decoded.
        let oversized = Bytes::from(vec![0u8; 5 * 1024 * 1024]);
        for path in QUERY_RPCS {
            for authorization in [None, Some(UNKNOWN)] {
                for message in [garbage(), oversized.clone()] {
                    assert_refused(
                        raw_unary(&query, path, authorization, message.clone()).await,
                        &format!(
                            "{path} of {} bad bytes with {authorization:?}",
                            message.len()
                        ),
                    );
                }
            }
        }
        let known = format!("Bearer {KEY}");
        assert!(
            raw_unary(&query, QUERY_RPCS[5], Some(&known), Bytes::new())
                .await
                .is_ok(),
            "CheckKey accepts a known key"
        );
        let decoded = raw_unary(&query, QUERY_RPCS[0], Some(&known), garbage()).await;
        assert_eq!(decoded.map_err(|s| s.code()), Err(Code::Internal));

        let graphql = aio.addr("graphql");
        let lookups = |metrics: &str| counter(metrics, "userlens_query_key_lookups_total");
        let lookups_before = lookups(&metrics_text(aio.addr("query-http")).await);
        // A body that is not JSON, then a body announced and never sent: an unknown key is
        // refused before either is read, with the usual 401 UNAUTHENTICATED.
        const BAD_KEYS: usize = 10;
        for k in 0..BAD_KEYS {
            let authorization = format!("Bearer ul_graphql_flood_{k:04}_0000000000");
            for _ in 0..3 {
                let request = format!(
                    "POST /graphql HTTP/1.1\r\nHost: {graphql}\r\nContent-Type: application/json\r\n\
                     Authorization: {authorization}\r\nContent-Length: 9\r\n\r\nnot json!"
                );
                let (status, body) = http_exchange(graphql, request.as_bytes()).await;
                assert_eq!(status, 401, "{body}");
                let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
                assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
                let request = format!(
                    "POST /graphql HTTP/1.1\r\nHost: {graphql}\r\nContent-Type: application/json\r\n\
                     Authorization: {authorization}\r\nContent-Length: 900000\r\n\r\n{{\"query\":"
                );
                let (status, _) = tokio::time::timeout(
                    Duration::from_secs(10),
                    http_exchange(graphql, request.as_bytes()),
                )
                .await
                .expect("answered without the body");
                assert_eq!(status, 401);
            }
        }
        // Each bad key was checked with users-query once; the gateway remembered the rest.
        let sent = lookups(&metrics_text(aio.addr("query-http")).await) - lookups_before;
        assert_eq!(sent, BAD_KEYS as u64, "users-query key lookups");

        // The known key still gets its answers.
        let body = serde_json::json!({
            "query": "{ usersOverview(range: { from: \"2026-10-25T08:00:00Z\", to: \"2026-11-24T08:00:00Z\" }) { traces } }"
        });
        let response = reqwest::Client::new()
            .post(format!("http://{graphql}/graphql"))
            .header("authorization", &known)
            .json(&body)
            .send()
            .await
            .expect("POST /graphql");
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(body["data"]["usersOverview"]["traces"], 0, "{body}");
        aio.stop().await;
        let _ = std::fs::remove_file(key_file);
    });
}

fn batch(sequence: u64) -> SpanBatch {
    let start = 1_790_000_000_000_000_000 + sequence * 1_000_000_000;
    SpanBatch {
        sequence,
        resource_spans: vec![resource_spans(
            vec![],
            vec![span(
                trace_id(sequence),
                span_id(sequence),
                None,
                start,
                start + 1_000_000,
            )],
        )],
    }
}

/// Opens a `StreamSpans` stream with the bootstrap key and has its first batch stored:
/// the sender of further batches and the stream of acks.
async fn open_stream_with_one_durable_batch(
    ingest: &UserlensProcess,
) -> (
    tokio::sync::mpsc::Sender<SpanBatch>,
    tonic::Streaming<userlens_proto::ingest::v1::BatchAck>,
) {
    let mut client = IngestServiceClient::new(channel(ingest.addr("otlp-grpc")).await);
    let (batches, outbound) = tokio::sync::mpsc::channel::<SpanBatch>(16);
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(outbound));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {KEY}").parse().expect("ascii"),
    );
    let mut acks = client
        .stream_spans(request)
        .await
        .expect("stream opened")
        .into_inner();
    batches.send(batch(1)).await.expect("send");
    let first = acks.message().await.expect("an ack").expect("an ack");
    assert_eq!(first.outcome, BatchOutcome::Durable as i32);
    (batches, acks)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_key_stops_an_open_stream_within_the_key_cache_ttl() {
    const TTL_MS: u64 = 300;
    for_each_backend!(|database| {
        let ttl = TTL_MS.to_string();
        let ingest = start_ingest(&database, &[("USERLENS_KEY_CACHE_TTL_MS", &ttl)]).await;
        let project = keys::resolve_key(&database.db, KEY)
            .await
            .expect("keys")
            .expect("the bootstrap key's project");
        let (batches, mut acks) = open_stream_with_one_durable_batch(&ingest).await;

        api_keys::Entity::delete_by_id(keys::hash_key(KEY))
            .exec(&database.db)
            .await
            .expect("delete the key");
        let revoked_at = Instant::now();
        let mut durable = 1u64;
        let mut sequence = 1;
        let ended = loop {
            sequence += 1;
            // A closed stream refuses sends; the status is read below.
            let _ = batches.send(batch(sequence)).await;
            match tokio::time::timeout(Duration::from_secs(10), acks.message())
                .await
                .expect("an answer within 10 s")
            {
                Ok(Some(ack)) => {
                    assert_eq!(ack.outcome, BatchOutcome::Durable as i32, "{ack:?}");
                    durable += 1;
                }
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => break status,
            }
            assert!(
                revoked_at.elapsed() < Duration::from_secs(10),
                "the deleted key still works after {:?}",
                revoked_at.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let took = revoked_at.elapsed();
        eprintln!("stream refused {took:?} after its key was deleted (TTL {TTL_MS} ms)");
        assert_eq!(ended.code(), Code::Unauthenticated, "{}", ended.message());
        assert!(
            took < Duration::from_millis(TTL_MS) + Duration::from_secs(5),
            "{took:?}"
        );
        // Every acknowledged batch is stored, nothing after.
        let stored = spans::Entity::find()
            .filter(spans::Column::ProjectId.eq(project))
            .count(&database.db)
            .await
            .expect("count spans");
        assert_eq!(stored, durable);
        drop(batches);
        let _ = acks.next().await;
        ingest.stop().await;
    });
}

/// A stream that sends nothing after its key was deleted is closed too: it re-checks its
/// key once per key cache TTL while idle.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_key_closes_an_idle_stream_within_the_key_cache_ttl() {
    const TTL_MS: u64 = 300;
    for_each_backend!(|database| {
        let ttl = TTL_MS.to_string();
        let ingest = start_ingest(&database, &[("USERLENS_KEY_CACHE_TTL_MS", &ttl)]).await;
        let (batches, mut acks) = open_stream_with_one_durable_batch(&ingest).await;

        // While the key is valid, an idle stream stays open past several re-checks.
        let still_open =
            tokio::time::timeout(Duration::from_millis(TTL_MS * 4), acks.message()).await;
        assert!(still_open.is_err(), "the idle stream ended: {still_open:?}");

        api_keys::Entity::delete_by_id(keys::hash_key(KEY))
            .exec(&database.db)
            .await
            .expect("delete the key");
        let revoked_at = Instant::now();
        // No batch is sent from here on: the stream must end by itself.
        let ended = tokio::time::timeout(Duration::from_secs(10), acks.message())
            .await
            .expect("the idle stream ends within 10 s of the deletion");
        let took = revoked_at.elapsed();
        eprintln!("idle stream closed {took:?} after its key was deleted (TTL {TTL_MS} ms)");
        let status = ended.expect_err("the stream ends with a status");
        assert_eq!(status.code(), Code::Unauthenticated, "{}", status.message());
        assert!(
            took < Duration::from_millis(TTL_MS * 2) + Duration::from_secs(2),
            "{took:?}"
        );
        drop(batches);
        ingest.stop().await;
    });
}
