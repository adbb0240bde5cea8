//! An overload burst: requests beyond the write queue are refused with a retryable status,
//! every acknowledged span is stored exactly once, refused requests leave nothing behind,
//! and retrying the refused ones completes the data set.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use sea_orm::{ConnectionTrait, TransactionTrait};
use userlens_datagen::{Dataset, DatasetSpec, span_count};
use userlens_storage::{keys, read};
use userlens_tests::process::UserlensProcess;
use userlens_tests::{TestDatabase, for_each_backend};

const KEY: &str = "ul_overload_key_0123456789";
const REQUESTS: u64 = 24;
const TRACES_PER_REQUEST: u64 = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Stored,
    Refused,
}

/// The estimated queue bytes of `request`'s spans, as the writer counts them.
fn queued_bytes(request: &ExportTraceServiceRequest) -> usize {
    let converted = userlens_ingest::mapping::convert_resource_spans(&request.resource_spans);
    userlens_ingest::writer::queued_request_bytes(&converted.accepted)
}

/// `userlens ingest` on `database` with a write queue of `max_queued_bytes`, and the id of
/// the project its key belongs to.
async fn start_ingest(database: &TestDatabase, max_queued_bytes: usize) -> (UserlensProcess, i64) {
    let max_queued_bytes = max_queued_bytes.to_string();
    let ingest = UserlensProcess::start(
        &[
            "ingest",
            "--otlp-grpc-addr",
            "127.0.0.1:0",
            "--otlp-http-addr",
            "127.0.0.1:0",
            "--max-queued-bytes",
            &max_queued_bytes,
        ],
        &[
            ("USERLENS_DATABASE_URL", &database.url),
            ("USERLENS_API_KEY", KEY),
        ],
        &["otlp-grpc", "otlp-http"],
    )
    .await;
    let project = keys::resolve_key(&database.db, KEY)
        .await
        .expect("keys")
        .expect("project");
    (ingest, project)
}

/// `message` with the project's key.
fn authorized<T>(message: T) -> tonic::Request<T> {
    let mut call = tonic::Request::new(message);
    call.metadata_mut().insert(
        "authorization",
        format!("Bearer {KEY}").parse().expect("ascii"),
    );
    call
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overload_burst_sheds_retryably_and_loses_nothing_acknowledged() {
    for_each_backend!(|database| {
        let dataset = Dataset::new(DatasetSpec::new(
            REQUESTS * TRACES_PER_REQUEST,
            30,
            7,
            3,
            1_790_000_000_000_000_000,
        ));
        let requests: Vec<ExportTraceServiceRequest> = (0..REQUESTS)
            .map(|i| dataset.request(i * TRACES_PER_REQUEST..(i + 1) * TRACES_PER_REQUEST))
            .collect();
        let total_spans: u64 = requests.iter().map(span_count).sum();
        // A queue of about 600 spans' bytes, a few requests' worth.
        let bytes_per_span = queued_bytes(&requests[0]) / span_count(&requests[0]) as usize;
        let (ingest, project) = start_ingest(&database, 600 * bytes_per_span).await;

        // Hold the project's row lock: the writer stalls on its first batch and the queue
        // fills, so the burst below meets a full queue.
        let blocker = database.connect_again().await;
        let lock = blocker.begin().await.expect("begin");
        lock.execute_unprepared(&format!(
            "UPDATE projects SET name = name WHERE id = {project}"
        ))
        .await
        .expect("lock the project row");

        let http_url = format!("http://{}/v1/traces", ingest.addr("otlp-http"));
        let grpc_url = format!("http://{}", ingest.addr("otlp-grpc"));
        let mut burst = tokio::task::JoinSet::new();
        for (i, request) in requests.iter().cloned().enumerate() {
            let (http_url, grpc_url) = (http_url.clone(), grpc_url.clone());
            burst.spawn(async move {
                let answer = if i % 2 == 0 {
                    let response = reqwest::Client::new()
                        .post(&http_url)
                        .header("content-type", "application/x-protobuf")
                        .header("authorization", format!("Bearer {KEY}"))
                        .body(request.encode_to_vec())
                        .send()
                        .await
                        .expect("send");
                    match response.status().as_u16() {
                        200 => Answer::Stored,
                        429 => {
                            assert!(
                                response.headers().get("retry-after").is_some(),
                                "429 carries Retry-After"
                            );
                            Answer::Refused
                        }
                        other => panic!("unexpected HTTP {other}"),
                    }
                } else {
                    let mut client = TraceServiceClient::connect(grpc_url)
                        .await
                        .expect("connect");
                    match client.export(authorized(request)).await {
                        Ok(_) => Answer::Stored,
                        Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                            Answer::Refused
                        }
                        Err(status) => panic!("unexpected status {status}"),
                    }
                };
                (i, answer)
            });
        }
        // Let the burst reach the server and fill the queue, then let the writer go.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        lock.rollback().await.expect("release the lock");
        let mut answers = vec![Answer::Refused; REQUESTS as usize];
        while let Some(done) = burst.join_next().await {
            let (i, answer) = done.expect("request task");
            answers[i] = answer;
        }
        let stored: Vec<usize> = (0..answers.len())
            .filter(|&i| answers[i] == Answer::Stored)
            .collect();
        let refused: Vec<usize> = (0..answers.len())
            .filter(|&i| answers[i] == Answer::Refused)
            .collect();
        assert!(!refused.is_empty(), "the burst overloaded the queue");
        assert!(!stored.is_empty(), "some of the burst was accepted");

        // Exactly the acknowledged requests' spans are stored, once each.
        let acknowledged: u64 = stored.iter().map(|&i| span_count(&requests[i])).sum();
        assert_eq!(
            read::span_count(&database.db, project)
                .await
                .expect("count"),
            acknowledged
        );
        let traces = read::traces_changed_since(&database.db, project, -1)
            .await
            .expect("traces");
        assert_eq!(
            traces.len() as u64,
            stored.len() as u64 * TRACES_PER_REQUEST
        );

        // Retrying what was refused completes the data set.
        let mut client = TraceServiceClient::connect(grpc_url.clone())
            .await
            .expect("connect");
        for &i in &refused {
            client
                .export(authorized(requests[i].clone()))
                .await
                .expect("a retry succeeds once the burst is over");
        }
        assert_eq!(
            read::span_count(&database.db, project)
                .await
                .expect("count"),
            total_spans
        );
        ingest.stop().await;
    });
}

/// A body that is not an `ExportTraceServiceRequest`: field 1 as a varint, where the request
/// has its length-delimited `resource_spans`. Decoding it fails.
fn undecodable_export() -> prost_types::Duration {
    prost_types::Duration {
        seconds: 5,
        nanos: 0,
    }
}

async fn export_undecodable_grpc(grpc_url: &str) -> tonic::Status {
    let channel = tonic::transport::Endpoint::from_shared(grpc_url.to_owned())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let call = authorized(undecodable_export());
    let codec: tonic_prost::ProstCodec<
        prost_types::Duration,
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
    > = tonic_prost::ProstCodec::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    grpc.unary(call, path, codec)
        .await
        .expect_err("an undecodable export is refused")
}

async fn export_undecodable_http(http_url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(http_url)
        .header("content-type", "application/x-protobuf")
        .header("authorization", format!("Bearer {KEY}"))
        .body(undecodable_export().encode_to_vec())
        .send()
        .await
        .expect("send")
}

/// With the write queue full, a new export is refused as overloaded before its body is
/// decoded: an undecodable body gets the retryable refusal, not the decode error it gets
/// once the queue has room again.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_refuses_new_exports_before_decoding_them() {
    for_each_backend!(|database| {
        let dataset = Dataset::new(DatasetSpec::new(8, 3, 11, 2, 1_790_000_000_000_000_000));
        let request = dataset.request(0..8);
        let spans = span_count(&request);
        // One request fills the queue exactly.
        let (ingest, project) = start_ingest(&database, queued_bytes(&request)).await;
        let http_url = format!("http://{}/v1/traces", ingest.addr("otlp-http"));
        let grpc_url = format!("http://{}", ingest.addr("otlp-grpc"));

        // A stalled writer holds the one request, which takes the whole queue.
        let blocker = database.connect_again().await;
        let lock = blocker.begin().await.expect("begin");
        lock.execute_unprepared(&format!(
            "UPDATE projects SET name = name WHERE id = {project}"
        ))
        .await
        .expect("lock the project row");
        let filler = {
            let grpc_url = grpc_url.clone();
            tokio::spawn(async move {
                let mut client = TraceServiceClient::connect(grpc_url)
                    .await
                    .expect("connect");
                client.export(authorized(request)).await
            })
        };
        let mut full = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let status = export_undecodable_grpc(&grpc_url).await;
            if status.code() == tonic::Code::ResourceExhausted {
                full = true;
                break;
            }
        }
        assert!(
            full,
            "an undecodable export meets the full queue with RESOURCE_EXHAUSTED"
        );
        let response = export_undecodable_http(&http_url).await;
        assert_eq!(response.status().as_u16(), 429);
        assert!(response.headers().get("retry-after").is_some());

        lock.rollback().await.expect("release the lock");
        filler
            .await
            .expect("filler task")
            .expect("the queued request is stored");
        assert_eq!(
            read::span_count(&database.db, project)
                .await
                .expect("count"),
            spans
        );
        // With room in the queue, the same bodies are read and refused as malformed.
        assert_eq!(
            export_undecodable_grpc(&grpc_url).await.code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            export_undecodable_http(&http_url).await.status().as_u16(),
            400
        );
        ingest.stop().await;
    });
}
