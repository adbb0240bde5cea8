//! Hostile requests against the real `userlens all-in-one` binary: gzip bombs, bodies over
//! the limit (declared, streamed, compressed), and spans with every kind of bad value over
//! OTLP/HTTP protobuf and JSON, OTLP/gRPC and the native stream. Bad spans are rejected one
//! by one; the good spans of the same request show in the query figures; after each hostile
//! request a normal one still succeeds and nothing accepted earlier has changed.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::codec::CompressionEncoding;
use tonic::{Code, Request};
use userlens_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use userlens_proto::ingest::v1::{BatchOutcome, SpanBatch};
use userlens_storage::{keys, read};
use userlens_tests::otlp::{
    boolean, double, int, kv, request, resource_spans, span, span_id, string, trace_id,
    with_attributes,
};
use userlens_tests::process::{self, UserlensProcess};
use userlens_tests::{TestDatabase, for_each_backend};

const KEY: &str = "ul_hostile_input_key";
pub(crate) const BODY_LIMIT: usize = 65_536;
const NS: u64 = 1_000_000_000;
/// 2026-03-01T00:00:00Z.
const MARCH_1: u64 = 1_772_323_200 * NS;
pub(crate) const RANGE: &str = r#"{ from: "2026-03-01T00:00:00Z", to: "2026-03-08T00:00:00Z" }"#;
/// Generous bound on "does not hang".
const PROMPTLY: Duration = Duration::from_secs(15);

/// `userlens all-in-one` on ephemeral ports with a 64 KiB body limit.
pub(crate) async fn start_all_in_one(database: &TestDatabase, key: &str) -> UserlensProcess {
    let body_limit = BODY_LIMIT.to_string();
    process::start_all_in_one(
        database,
        &[("USERLENS_API_KEY", key)],
        &["--max-body-bytes", &body_limit],
    )
    .await
    .0
}

/// POSTs a GraphQL query with the key; the status and the JSON body.
pub(crate) async fn graphql(process: &UserlensProcess, key: &str, query: &str) -> (u16, Json) {
    let response = reqwest::Client::new()
        .post(format!("http://{}/graphql", process.addr("graphql")))
        .header("authorization", format!("Bearer {key}"))
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("POST /graphql");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// Per user in `RANGE`: (traces, cost sum, token total); and the range's trace count.
async fn figures(process: &UserlensProcess) -> (BTreeMap<String, (i64, f64, i64)>, i64) {
    let query = format!(
        r#"{{ users(range: {RANGE}, orderBy: {{ field: USER_ID, direction: ASC }}, first: 200) {{
               totalCount nodes {{ userId traces cost {{ sum }} tokens {{ total }} }} }}
             usersOverview(range: {RANGE}) {{ traces }} }}"#
    );
    let (status, body) = graphql(process, KEY, &query).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_null(), "{body}");
    let users = body["data"]["users"]["nodes"]
        .as_array()
        .expect("user rows")
        .iter()
        .map(|row| {
            (
                row["userId"].as_str().expect("user id").to_owned(),
                (
                    row["traces"].as_i64().expect("traces"),
                    row["cost"]["sum"].as_f64().expect("cost"),
                    row["tokens"]["total"].as_i64().expect("tokens"),
                ),
            )
        })
        .collect::<BTreeMap<_, _>>();
    assert_eq!(
        body["data"]["users"]["totalCount"].as_i64(),
        Some(users.len() as i64)
    );
    let traces = body["data"]["usersOverview"]["traces"]
        .as_i64()
        .expect("overview traces");
    (users, traces)
}

/// A root span with the user and an LLM call under it: 0.25 USD, 10 + 5 tokens.
fn good_spans(trace: u64, user: &str) -> Vec<Span> {
    let start = MARCH_1 + trace * NS;
    let root = with_attributes(
        span(trace_id(trace), span_id(1), None, start, start + NS),
        vec![kv("user.id", string(user))],
    );
    let call = with_attributes(
        span(
            trace_id(trace),
            span_id(2),
            Some(span_id(1)),
            start,
            start + NS / 2,
        ),
        vec![
            kv("gen_ai.request.model", string("gpt-4o")),
            kv("gen_ai.usage.input_tokens", int(10)),
            kv("gen_ai.usage.output_tokens", int(5)),
            kv("gen_ai.usage.cost", double(0.25)),
        ],
    );
    vec![root, call]
}

fn good_request(trace: u64, user: &str) -> ExportTraceServiceRequest {
    request(vec![resource_spans(vec![], good_spans(trace, user))])
}

fn gzip(bytes: &[u8], level: flate2::Compression) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), level);
    encoder.write_all(bytes).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

/// (case, content type, content encoding, body, expected HTTP status, expected rpc code).
type BodyCase = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    u16,
    i32,
);

fn nested(depth: usize) -> AnyValue {
    let mut value = string("leaf");
    for level in 0..depth {
        value = AnyValue {
            value: Some(if level % 2 == 0 {
                Value::ArrayValue(ArrayValue {
                    values: vec![value],
                })
            } else {
                Value::KvlistValue(KeyValueList {
                    values: vec![kv("k", value)],
                })
            }),
        };
    }
    value
}

/// Sends `head` and then `body` in chunks on a raw connection, and returns what the server
/// answers, read while the body is still being written.
async fn raw_http(addr: SocketAddr, head: String, body: Vec<u8>) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let write = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        for chunk in body.chunks(8 * 1024) {
            writer.write_all(chunk).await?;
        }
        writer.flush().await?;
        // Hold the connection open, as a client that promised more would.
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, std::io::Error>(())
    });
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = tokio::time::timeout(PROMPTLY, async {
        while !String::from_utf8_lossy(&response).contains("\r\n\r\n") {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    write.abort();
    assert!(read.is_ok(), "no answer within {PROMPTLY:?}");
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_http_bodies_are_refused_and_ingest_keeps_serving() {
    for_each_backend!(|database| {
        let aio = start_all_in_one(&database, KEY).await;
        let http_addr = aio.addr("otlp-http");
        let url = format!("http://{http_addr}/v1/traces");
        let client = reqwest::Client::new();
        let post = |content_type: &str, content_encoding: Option<&str>, body: Vec<u8>| {
            let mut request = client
                .post(&url)
                .header("content-type", content_type)
                .header("authorization", format!("Bearer {KEY}"))
                .body(body);
            if let Some(encoding) = content_encoding {
                request = request.header("content-encoding", encoding);
            }
            request.send()
        };
        const PROTOBUF: &str = "application/x-protobuf";
        const JSON: &str = "application/json";

        let mut trace = 1;
        let ok = post(
            PROTOBUF,
            None,
            good_request(trace, "keeper").encode_to_vec(),
        )
        .await
        .expect("send");
        assert_eq!(ok.status(), 200);

        let best = flate2::Compression::best();
        let one_member_bomb = gzip(&vec![0; 16 * 1024 * 1024], best);
        let many_member_bomb = gzip(&vec![0; 1024 * 1024], best).repeat(48);
        assert!(one_member_bomb.len() < BODY_LIMIT && many_member_bomb.len() < BODY_LIMIT);
        let good = good_request(999, "never").encode_to_vec();
        let mut truncated = gzip(&good, flate2::Compression::fast());
        truncated.truncate(truncated.len() / 2);
        let garbage = gzip(&[0xff; 256], flate2::Compression::fast());
        // JSON that inflates past the limit: a valid document with one huge string.
        let huge_json = serde_json::to_vec(&request(vec![resource_spans(
            vec![kv("custom", string(&"j".repeat(4 * BODY_LIMIT)))],
            good_spans(998, "never"),
        )]))
        .expect("OTLP JSON");
        let huge_json_gz = gzip(&huge_json, best);
        assert!(huge_json_gz.len() < BODY_LIMIT);

        // (case, content type, content encoding, body, expected status, expected rpc code)
        let cases: Vec<BodyCase> = vec![
            (
                "gzip bomb, one member",
                PROTOBUF,
                Some("gzip"),
                one_member_bomb.clone(),
                413,
                8,
            ),
            (
                "gzip bomb, 48 members",
                PROTOBUF,
                Some("gzip"),
                many_member_bomb,
                413,
                8,
            ),
            (
                "gzip bomb as JSON",
                JSON,
                Some("gzip"),
                one_member_bomb,
                413,
                8,
            ),
            (
                "valid JSON inflating past the limit",
                JSON,
                Some("x-gzip"),
                huge_json_gz,
                413,
                8,
            ),
            // A body sent over the limit with its length declared is refused before it is
            // read (the raw-socket cases below): a client still writing it may see the
            // connection close instead of the answer, so it is not sent through this client.
            ("truncated gzip", PROTOBUF, Some("gzip"), truncated, 400, 3),
            ("gzip of garbage", PROTOBUF, Some("gzip"), garbage, 400, 3),
            (
                "gzip body sent as identity",
                PROTOBUF,
                None,
                gzip(&good, best),
                400,
                3,
            ),
            (
                "unknown content encoding",
                PROTOBUF,
                Some("br"),
                good.clone(),
                400,
                3,
            ),
            (
                "stacked content encodings",
                PROTOBUF,
                Some("gzip, gzip"),
                good.clone(),
                400,
                3,
            ),
        ];
        for (case, content_type, encoding, body, status, code) in cases {
            let started = Instant::now();
            let response = post(content_type, encoding, body).await.expect("send");
            assert_eq!(response.status().as_u16(), status, "{case}");
            assert!(
                started.elapsed() < PROMPTLY,
                "{case} took {:?}",
                started.elapsed()
            );
            let bytes = response.bytes().await.expect("error body");
            let reported = if content_type == JSON {
                let body: Json = serde_json::from_slice(&bytes).expect("a JSON status");
                body["code"].as_i64().map(|c| c as i32)
            } else {
                tonic_types::Status::decode(bytes).ok().map(|s| s.code)
            };
            assert_eq!(reported, Some(code), "{case}");

            // The server keeps serving, and what it accepted is intact.
            trace += 1;
            let ok = post(
                PROTOBUF,
                None,
                good_request(trace, "keeper").encode_to_vec(),
            )
            .await
            .expect("send");
            assert_eq!(ok.status(), 200, "after {case}");
            let answer = ExportTraceServiceResponse::decode(ok.bytes().await.expect("body"))
                .expect("OTLP response");
            assert_eq!(answer.partial_success, None, "after {case}");
        }

        // A body declared far over the limit is refused before it is read; a streamed
        // (chunked) body is cut at the limit. Neither waits for the client.
        let head = |framing: &str| {
            format!(
                "POST /v1/traces HTTP/1.1\r\nHost: {http_addr}\r\nContent-Type: {PROTOBUF}\r\n\
                 Authorization: Bearer {KEY}\r\n{framing}\r\n\r\n"
            )
        };
        let answer = raw_http(http_addr, head("Content-Length: 10000000000"), vec![0; 100]).await;
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "declared length: {answer}"
        );
        let mut chunked = Vec::new();
        for _ in 0..64 {
            chunked.extend_from_slice(format!("{:x}\r\n", 4096).as_bytes());
            chunked.extend_from_slice(&[0u8; 4096]);
            chunked.extend_from_slice(b"\r\n");
        }
        let answer = raw_http(http_addr, head("Transfer-Encoding: chunked"), chunked).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "chunked: {answer}");
        trace += 1;
        let ok = post(
            PROTOBUF,
            None,
            good_request(trace, "keeper").encode_to_vec(),
        )
        .await
        .expect("send");
        assert_eq!(ok.status(), 200);

        // Every good request landed once, no refused one left anything.
        let (users, traces) = figures(&aio).await;
        let expected = trace as i64;
        assert_eq!(
            users.get("keeper"),
            Some(&(expected, 0.25 * expected as f64, 15 * expected))
        );
        assert_eq!(users.len(), 1, "{users:?}");
        assert_eq!(traces, expected);
        let project = keys::resolve_key(&database.db, KEY)
            .await
            .expect("read keys")
            .expect("bootstrap key");
        assert_eq!(
            read::span_count(&database.db, project)
                .await
                .expect("count"),
            2 * trace
        );
        aio.stop().await;
    });
}

/// A double that stands for NaN, ∞ or −∞ in the JSON body, written as OTLP JSON spells them.
const NAN_MARK: f64 = -1.000_000_123_4e-7;
const INF_MARK: f64 = -2.000_000_123_4e-7;
const NEG_INF_MARK: f64 = -3.000_000_123_4e-7;

/// Every kind of bad span, each in a trace of its own (ids from `base`): each must be rejected.
fn hostile_spans(base: u64, json: bool) -> Vec<Span> {
    let start = MARCH_1 + base * NS;
    let ok = |n: u64| span(trace_id(base + n), span_id(n), None, start, start + NS);
    let with = |n: u64, attributes: Vec<KeyValue>| with_attributes(ok(n), attributes);
    let (nan, inf, neg_inf) = if json {
        (NAN_MARK, INF_MARK, NEG_INF_MARK)
    } else {
        (f64::NAN, f64::INFINITY, f64::NEG_INFINITY)
    };
    let mut spans = Vec::new();
    for (n, len) in [(1, 0), (2, 1), (3, 15), (4, 17), (5, 32)] {
        let mut s = ok(n);
        s.trace_id = vec![0x5a; len];
        spans.push(s);
    }
    let mut zero_trace = ok(6);
    zero_trace.trace_id = vec![0; 16];
    spans.push(zero_trace);
    for (n, len) in [(7, 0), (8, 7), (9, 9)] {
        let mut s = ok(n);
        s.span_id = vec![0x5b; len];
        spans.push(s);
    }
    let mut zero_span = ok(10);
    zero_span.span_id = vec![0; 8];
    spans.push(zero_span);
    let mut bad_parent = ok(11);
    bad_parent.parent_span_id = vec![1; 7];
    spans.push(bad_parent);
    spans.push(span(
        trace_id(base + 12),
        span_id(12),
        None,
        start + NS,
        start,
    ));
    spans.push(span(
        trace_id(base + 13),
        span_id(13),
        None,
        u64::MAX,
        u64::MAX,
    ));
    spans.push(span(
        trace_id(base + 14),
        span_id(14),
        None,
        start,
        u64::MAX,
    ));
    spans.push(span(
        trace_id(base + 15),
        span_id(15),
        None,
        i64::MAX as u64 + 1,
        i64::MAX as u64 + 2,
    ));
    let attribute_cases: Vec<Vec<KeyValue>> = vec![
        vec![kv("user.id", boolean(true))],
        vec![kv("user.id", double(1.5))],
        vec![kv("user.id", string(&"u".repeat(5_000)))],
        vec![kv("user.id", string("nul\0inside"))],
        vec![kv("session.id", nested(8))],
        vec![kv("gen_ai.usage.cost", double(nan))],
        vec![kv("gen_ai.usage.cost", double(inf))],
        vec![kv("gen_ai.usage.cost", double(neg_inf))],
        vec![kv("gen_ai.usage.cost", double(-0.5))],
        vec![kv("gen_ai.usage.cost", string("NaN"))],
        vec![kv("gen_ai.usage.cost", double(1e7))],
        vec![kv("gen_ai.usage.cost", string("abc"))],
        vec![kv("llm.cost.total", int(-3))],
        vec![kv("gen_ai.usage.input_cost", double(inf))],
        vec![kv("gen_ai.usage.input_tokens", int(-1))],
        vec![kv("gen_ai.usage.input_tokens", double(1e13))],
        vec![kv("gen_ai.usage.output_tokens", double(inf))],
        vec![kv("gen_ai.request.model", int(4))],
        vec![kv(
            "userlens.behaviour",
            AnyValue {
                value: Some(Value::ArrayValue(ArrayValue {
                    values: vec![string("fine"), nested(3)],
                })),
            },
        )],
        // The winning alias is bad, whatever a later alias says.
        vec![
            kv("gen_ai.usage.cost", double(0.1)),
            kv("gen_ai.usage.total_cost", double(neg_inf)),
        ],
    ];
    for (i, attributes) in attribute_cases.into_iter().enumerate() {
        spans.push(with(100 + i as u64, attributes));
    }
    spans
}

/// Accepted alongside: unread attributes of any kind are kept; spans at the epoch and at the
/// last representable instant (2262-04-11) are spans like any other.
fn odd_but_good_spans(base: u64) -> Vec<Span> {
    let start = MARCH_1 + base * NS;
    let odd = with_attributes(
        span(trace_id(base + 500), span_id(1), None, start, start + NS),
        vec![
            kv("custom.huge", string(&"h".repeat(20_000))),
            kv("custom.deep", nested(12)),
            kv(
                "custom.bytes",
                AnyValue {
                    value: Some(Value::BytesValue(vec![0, 1, 2, 255])),
                },
            ),
            kv("custom.neg", double(-1e300)),
            kv("", string("empty key")),
            kv("user.id", string("")),
        ],
    );
    let epoch = with_attributes(
        span(trace_id(base + 501), span_id(1), None, 0, 0),
        vec![kv("user.id", string("time-edges"))],
    );
    let last = i64::MAX as u64;
    let far_future = with_attributes(
        span(trace_id(base + 502), span_id(1), None, last - NS, last),
        vec![kv("user.id", string("time-edges"))],
    );
    vec![odd, epoch, far_future]
}

/// OTLP JSON of `request`, with the marked doubles written "NaN", "Infinity", "-Infinity".
fn otlp_json(request: &ExportTraceServiceRequest) -> Vec<u8> {
    let text = serde_json::to_string(request).expect("OTLP JSON");
    let replace = |text: String, mark: f64, spelled: &str| {
        text.replace(
            &format!(
                "\"doubleValue\":{}",
                serde_json::to_string(&mark).expect("f64")
            ),
            &format!("\"doubleValue\":\"{spelled}\""),
        )
    };
    let text = replace(text, NAN_MARK, "NaN");
    let text = replace(text, INF_MARK, "Infinity");
    let text = replace(text, NEG_INF_MARK, "-Infinity");
    assert!(text.contains("\"NaN\"") && text.contains("\"-Infinity\""));
    text.into_bytes()
}

fn authorized<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {KEY}").parse().expect("ascii"),
    );
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_spans_are_rejected_one_by_one_on_every_transport() {
    for_each_backend!(|database| {
        let aio = start_all_in_one(&database, KEY).await;
        let url = format!("http://{}/v1/traces", aio.addr("otlp-http"));
        let grpc_url = format!("http://{}", aio.addr("otlp-grpc"));
        let client = reqwest::Client::new();
        let hostile_count = hostile_spans(0, false).len() as i64;
        let accepted_per_request = 5;

        for (n, transport) in ["http-protobuf", "http-json", "grpc", "stream"]
            .into_iter()
            .enumerate()
        {
            let base = 10_000 * (n as u64 + 1);
            let json = transport == "http-json";
            // Good spans in the middle of the bad ones.
            let mut spans = hostile_spans(base, json);
            let tail = spans.split_off(spans.len() / 2);
            spans.extend(good_spans(base, &format!("good-{transport}")));
            spans.extend(odd_but_good_spans(base));
            spans.extend(tail);
            let export = request(vec![resource_spans(
                vec![kv("service.name", string("hostile"))],
                spans,
            )]);
            let (rejected, message) = match transport {
                "http-protobuf" | "http-json" => {
                    let (content_type, body) = if json {
                        ("application/json", otlp_json(&export))
                    } else {
                        ("application/x-protobuf", export.encode_to_vec())
                    };
                    assert!(body.len() < BODY_LIMIT, "{} bytes", body.len());
                    let response = client
                        .post(&url)
                        .header("content-type", content_type)
                        .header("authorization", format!("Bearer {KEY}"))
                        .body(body)
                        .send()
                        .await
                        .expect("send");
                    assert_eq!(response.status(), 200, "{transport}");
                    let bytes = response.bytes().await.expect("body");
                    if json {
                        let body: Json = serde_json::from_slice(&bytes).expect("JSON");
                        let partial = &body["partialSuccess"];
                        (
                            partial["rejectedSpans"]
                                .as_str()
                                .and_then(|n| n.parse::<i64>().ok())
                                .unwrap_or_default(),
                            partial["errorMessage"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                        )
                    } else {
                        let partial = ExportTraceServiceResponse::decode(bytes)
                            .expect("OTLP response")
                            .partial_success
                            .expect("partial success");
                        (partial.rejected_spans, partial.error_message)
                    }
                }
                "grpc" => {
                    let mut grpc = TraceServiceClient::connect(grpc_url.clone())
                        .await
                        .expect("connect");
                    let partial = grpc
                        .export(authorized(export))
                        .await
                        .expect("export")
                        .into_inner()
                        .partial_success
                        .expect("partial success");
                    (partial.rejected_spans, partial.error_message)
                }
                _ => {
                    let mut native = IngestServiceClient::connect(grpc_url.clone())
                        .await
                        .expect("connect");
                    let batch = SpanBatch {
                        sequence: 7,
                        resource_spans: export.resource_spans,
                    };
                    let mut acks = native
                        .stream_spans(authorized(futures::stream::iter([batch])))
                        .await
                        .expect("open stream")
                        .into_inner();
                    let ack = acks.message().await.expect("ack").expect("one ack");
                    assert_eq!(ack.outcome, BatchOutcome::Durable as i32);
                    assert_eq!(ack.sequence, 7);
                    assert_eq!(ack.accepted_spans, accepted_per_request);
                    (ack.rejected_spans as i64, ack.message)
                }
            };
            assert_eq!(rejected, hostile_count, "{transport}: {message}");
            assert!(message.contains("trace_id"), "{transport}: {message}");
        }

        // Exactly the good spans were kept, and the figures are the good spans' alone: no
        // NaN, infinity or negative cost leaked into a sum.
        let (users, traces) = figures(&aio).await;
        let expected: BTreeMap<String, (i64, f64, i64)> =
            ["http-protobuf", "http-json", "grpc", "stream"]
                .iter()
                .map(|t| (format!("good-{t}"), (1, 0.25, 15)))
                .collect();
        assert_eq!(users, expected);
        // Four good traces and four odd ones in range; the time-edge traces are not.
        assert_eq!(traces, 8);
        let project = keys::resolve_key(&database.db, KEY)
            .await
            .expect("read keys")
            .expect("bootstrap key");
        assert_eq!(
            read::span_count(&database.db, project)
                .await
                .expect("count"),
            4 * accepted_per_request
        );
        // A user seen at the epoch and in 2262 has a lifetime that breaks no figure.
        let (status, body) = graphql(
            &aio,
            KEY,
            r#"{ userDetail(userId: "time-edges") {
                   firstSeenAt lastSeenAt traces sessions averageTraceDurationMs activeDays
                   activity(days: 3) { date traces } breakdowns { models { model } } }
                 sessions(userId: "time-edges", first: 200) { totalCount nodes { startedAt endedAt durationMs } } }"#,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body["errors"].is_null(), "{body}");
        let detail = &body["data"]["userDetail"];
        assert_eq!(detail["firstSeenAt"], "1970-01-01T00:00:00.000Z", "{body}");
        assert!(
            detail["lastSeenAt"]
                .as_str()
                .is_some_and(|t| t.starts_with("2262-04-11T23:47:1")),
            "{body}"
        );
        assert_eq!(detail["traces"], 8, "{body}");
        aio.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_compressed_grpc_messages_are_refused() {
    for_each_backend!(|database| {
        let aio = start_all_in_one(&database, KEY).await;
        let grpc_url = format!("http://{}", aio.addr("otlp-grpc"));
        let channel = tonic::transport::Endpoint::new(grpc_url.clone())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut plain = TraceServiceClient::new(channel.clone());
        let mut compressed =
            TraceServiceClient::new(channel).send_compressed(CompressionEncoding::Gzip);

        let mut trace = 1;
        plain
            .export(authorized(good_request(trace, "keeper")))
            .await
            .expect("export");

        let huge = |trace: u64| {
            request(vec![resource_spans(
                vec![kv("custom", string(&"z".repeat(4 * BODY_LIMIT)))],
                good_spans(trace, "never"),
            )])
        };
        // Over the limit as sent; and small as sent, over the limit once inflated.
        for (case, client) in [("plain", &mut plain), ("gzip", &mut compressed)] {
            let started = Instant::now();
            let status = client
                .export(authorized(huge(900)))
                .await
                .expect_err("over the limit");
            assert_eq!(status.code(), Code::ResourceExhausted, "{case}: {status:?}");
            assert!(started.elapsed() < PROMPTLY);
            trace += 1;
            let answer = client
                .export(authorized(good_request(trace, "keeper")))
                .await
                .expect("export after the refusal")
                .into_inner();
            assert_eq!(answer.partial_success, None);
        }

        // On the native stream, an oversized batch ends the stream with the same code; the
        // batch acknowledged before it stands.
        let mut native = IngestServiceClient::connect(grpc_url.clone())
            .await
            .expect("connect")
            .send_compressed(CompressionEncoding::Gzip);
        trace += 1;
        let batches = vec![
            SpanBatch {
                sequence: 1,
                resource_spans: good_request(trace, "keeper").resource_spans,
            },
            SpanBatch {
                sequence: 2,
                resource_spans: huge(901).resource_spans,
            },
        ];
        // The first batch is acknowledged before the second is sent.
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        let mut batches = batches.into_iter();
        sender
            .send(batches.next().expect("first batch"))
            .await
            .expect("queue");
        let mut acks = native
            .stream_spans(authorized(tokio_stream::wrappers::ReceiverStream::new(
                receiver,
            )))
            .await
            .expect("open stream")
            .into_inner();
        let ack = acks.message().await.expect("ack").expect("first ack");
        assert_eq!((ack.sequence, ack.accepted_spans), (1, 2));
        sender
            .send(batches.next().expect("second batch"))
            .await
            .expect("queue");
        let ended = tokio::time::timeout(PROMPTLY, acks.message())
            .await
            .expect("the stream ends promptly");
        let status = ended.expect_err("an oversized batch ends the stream");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        drop(sender);

        trace += 1;
        plain
            .export(authorized(good_request(trace, "keeper")))
            .await
            .expect("export after the stream");
        let (users, _) = figures(&aio).await;
        let expected = trace as i64;
        assert_eq!(
            users.get("keeper"),
            Some(&(expected, 0.25 * expected as f64, 15 * expected))
        );
        assert_eq!(users.len(), 1, "{users:?}");
        aio.stop().await;
    });
}
