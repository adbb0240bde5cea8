//! GraphQL abuse against the real `userlens all-in-one` binary holding data: limits, alias
//! floods, bad and forged cursors, malformed ranges, odd bodies and content types. Each gets
//! its documented answer (a GraphQL error with `extensions.code`, or HTTP 4xx), promptly, and
//! the gateway keeps serving the right figures afterwards.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use userlens_tests::for_each_backend;
use userlens_tests::otlp::{
    double, kv, request, resource_spans, span, span_id, string, trace_id, with_attributes,
};
use userlens_tests::process::UserlensProcess;

use crate::hostile_input::{RANGE, start_all_in_one};

const KEY: &str = "ul_graphql_abuse_key";
const NS: u64 = 1_000_000_000;
/// 2026-03-02T00:00:00Z.
const MARCH_2: u64 = 1_772_409_600 * NS;
const PROMPTLY: Duration = Duration::from_secs(15);
const USERS: u64 = 5;

/// Users u0…u4, one trace each in its own session, u<n> costing n × 0.5 USD.
async fn ingest_fixture(aio: &UserlensProcess) {
    let spans = (0..USERS)
        .map(|n| {
            with_attributes(
                span(
                    trace_id(n + 1),
                    span_id(1),
                    None,
                    MARCH_2 + n * NS,
                    MARCH_2 + (n + 1) * NS,
                ),
                vec![
                    kv("user.id", string(&format!("u{n}"))),
                    kv("session.id", string(&format!("s{n}"))),
                    kv("gen_ai.request.model", string("gpt-4o")),
                    kv("gen_ai.usage.cost", double(n as f64 * 0.5)),
                ],
            )
        })
        .collect();
    let mut client = TraceServiceClient::connect(format!("http://{}", aio.addr("otlp-grpc")))
        .await
        .expect("connect");
    let mut export = tonic::Request::new(request(vec![resource_spans(vec![], spans)]));
    export.metadata_mut().insert(
        "authorization",
        format!("Bearer {KEY}").parse().expect("ascii"),
    );
    client.export(export).await.expect("export");
}

struct Gateway {
    url: String,
    http: reqwest::Client,
}

impl Gateway {
    /// POSTs `body` as JSON; the status and the JSON answer.
    async fn post_json(&self, body: &Value) -> (u16, Value) {
        let started = Instant::now();
        let response = self
            .http
            .post(&self.url)
            .header("authorization", format!("Bearer {KEY}"))
            .json(body)
            .send()
            .await
            .expect("POST /graphql");
        let status = response.status().as_u16();
        let body = response.json().await.expect("a JSON body");
        assert!(started.elapsed() < PROMPTLY, "took {:?}", started.elapsed());
        (status, body)
    }

    async fn query(&self, query: &str) -> (u16, Value) {
        self.post_json(&json!({ "query": query })).await
    }

    /// POSTs raw bytes with the given content type.
    async fn post_raw(&self, content_type: Option<&str>, body: Vec<u8>) -> (u16, Value) {
        let mut request = self
            .http
            .post(&self.url)
            .header("authorization", format!("Bearer {KEY}"))
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.expect("POST /graphql");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
        )
    }

    /// The gateway still answers a normal page with the right figures.
    async fn still_serves(&self, after: &str) {
        let (status, body) = self
            .query(&format!(
                r#"{{ users(range: {RANGE}, orderBy: {{ field: USER_ID, direction: ASC }}) {{
                       totalCount costRollup {{ sum }} nodes {{ userId }} }} }}"#
            ))
            .await;
        assert_eq!(status, 200, "after {after}: {body}");
        assert!(body["errors"].is_null(), "after {after}: {body}");
        let users = &body["data"]["users"];
        assert_eq!(users["totalCount"], USERS, "after {after}");
        assert_eq!(users["costRollup"]["sum"], 5.0, "after {after}");
        assert_eq!(users["nodes"][0]["userId"], "u0", "after {after}");
    }
}

fn code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

/// URL-safe base64 without padding, the cursors' alphabet.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A users cursor for `USER_ID ASC` after `user_id`, made by hand.
fn forged_user_id_cursor(user_id: &str) -> String {
    let mut bytes = vec![1, 1, 10, 0];
    bytes.extend_from_slice(&(user_id.len() as u32).to_le_bytes());
    bytes.extend_from_slice(user_id.as_bytes());
    base64url(&bytes)
}

/// Sends a request head promising `length` bytes and a little of them; the status line.
async fn declared_length(gateway: &UserlensProcess, length: u64) -> String {
    let addr = gateway.addr("graphql");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {KEY}\r\nContent-Length: {length}\r\n\r\n{{\"query\":"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut response = vec![0u8; 1024];
    let read = tokio::time::timeout(PROMPTLY, stream.read(&mut response))
        .await
        .expect("an answer before the body is sent")
        .expect("read");
    String::from_utf8_lossy(&response[..read]).into_owned()
}

/// Sends a JSON body of `length` bytes in chunked transfer encoding (no `Content-Length`)
/// and returns the start of the answer.
async fn chunked_body(gateway: &UserlensProcess, length: usize) -> String {
    let addr = gateway.addr("graphql");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut body = format!("{{\"query\": \"{}", " ".repeat(length)).into_bytes();
    body.extend_from_slice(b"\"}");
    // The gateway may answer and close once it has read 1 MiB: what it did not read is lost.
    for chunk in body.chunks(64 * 1024) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if stream.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let mut buffer = vec![0u8; 4096];
    while let Ok(Ok(read)) = tokio::time::timeout(PROMPTLY, stream.read(&mut buffer)).await {
        if read == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn graphql_abuse_gets_documented_errors_and_the_gateway_keeps_serving() {
    for_each_backend!(|database| {
        let aio = start_all_in_one(&database, KEY).await;
        ingest_fixture(&aio).await;
        let gateway = Gateway {
            url: format!("http://{}/graphql", aio.addr("graphql")),
            http: reqwest::Client::new(),
        };
        gateway.still_serves("start").await;

        // Cursors of real pages, to be used where they do not belong.
        let (_, body) = gateway
            .query(&format!(
                r#"{{ users(range: {RANGE}, orderBy: {{ field: COST_SUM, direction: DESC }}, first: 2) {{
                       pageInfo {{ endCursor }} }}
                     sessions(userId: "u1", first: 1) {{ edges {{ cursor }} }} }}"#
            ))
            .await;
        let cost_cursor = body["data"]["users"]["pageInfo"]["endCursor"]
            .as_str()
            .expect("a users cursor")
            .to_owned();
        let session_cursor = body["data"]["sessions"]["edges"][0]["cursor"]
            .as_str()
            .expect("a sessions cursor")
            .to_owned();

        let of_type = |levels: usize| {
            let mut selection = "name".to_owned();
            for _ in 0..levels {
                selection = format!("ofType {{ {selection} }}");
            }
            selection
        };
        let users = |args: &str| {
            format!("{{ users(range: {RANGE}{args}) {{ totalCount nodes {{ userId }} }} }}")
        };
        let overview = |range: &str| format!("{{ usersOverview(range: {range}) {{ traces }} }}");
        let bad_input_cases: Vec<(&str, String)> = vec![
            (
                "depth 11",
                format!(
                    "{{ users(range: {RANGE}) {{ totalCount }} __schema {{ types {{ fields {{ type {{ {} }} }} }} }} }}",
                    of_type(6)
                ),
            ),
            (
                "nesting past the parser's limit",
                format!("{{ __schema {{ types {{ {} }} }} }}", of_type(40)),
            ),
            (
                "nesting 20 000 deep",
                format!(
                    "{{ users(range: {RANGE}) {}{} }}",
                    "{ nodes ".repeat(20_000),
                    "}".repeat(20_000)
                ),
            ),
            (
                "lists 20 000 deep",
                format!(
                    "{{ users(range: {RANGE}, search: {}\"x\"{}) {{ totalCount }} }}",
                    "[".repeat(20_000),
                    "]".repeat(20_000)
                ),
            ),
            (
                "11 users-query calls",
                format!(
                    "{{ {} }}",
                    (0..11)
                        .map(|i| format!("o{i}: usersOverview(range: {RANGE}) {{ traces }}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            ),
            (
                "500 aliased users fields",
                format!(
                    "{{ {} }}",
                    (0..500)
                        .map(|i| format!("u{i}: users(range: {RANGE}) {{ totalCount }}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            ),
            (
                "20 000 aliased __typename",
                format!(
                    "{{ {} }}",
                    (0..20_000)
                        .map(|i| format!("t{i}: __typename"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            ),
            (
                "fragment spread flood",
                format!(
                    "{{ users(range: {RANGE}) {{ nodes {{ ...A }} }} }} fragment A on UserRow {{ {} }} fragment B on UserRow {{ {} }}",
                    (0..200).map(|_| "...B").collect::<Vec<_>>().join(" "),
                    (0..200)
                        .map(|i| format!("c{i}: cost {{ sum average median }}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            ),
            ("first: i32::MAX", users(", first: 2147483647")),
            ("first beyond Int", users(", first: 99999999999")),
            ("first: -1", users(", first: -1")),
            ("first: i32::MIN", users(", first: -2147483648")),
            ("first as a float", users(", first: 1.5")),
            ("random base64 cursor", users(", after: \"AAAAAAAAAAAA\"")),
            ("not base64", users(", after: \"%%%***\"")),
            (
                "a 200 KB cursor",
                users(&format!(", after: \"{}\"", "A".repeat(200_000))),
            ),
            (
                "a sessions cursor on users",
                users(&format!(", after: \"{session_cursor}\"")),
            ),
            (
                "a COST_SUM cursor on LAST_SEEN",
                users(&format!(", after: \"{cost_cursor}\"")),
            ),
            (
                "a users cursor on sessions",
                format!(
                    "{{ sessions(userId: \"u1\", after: \"{cost_cursor}\") {{ totalCount }} }}"
                ),
            ),
            (
                "a truncated cursor",
                users(&format!(
                    ", orderBy: {{ field: COST_SUM, direction: DESC }}, after: \"{}\"",
                    &cost_cursor[..cost_cursor.len() - 3]
                )),
            ),
            (
                "from after to",
                overview(r#"{ from: "2026-03-08T00:00:00Z", to: "2026-03-01T00:00:00Z" }"#),
            ),
            (
                "empty range",
                overview(r#"{ from: "2026-03-08T00:00:00Z", to: "2026-03-08T00:00:00Z" }"#),
            ),
            (
                "unparseable DateTime",
                overview(r#"{ from: "yesterday", to: "2026-03-08T00:00:00Z" }"#),
            ),
            (
                "30 February",
                overview(r#"{ from: "2026-02-30T00:00:00Z", to: "2026-03-08T00:00:00Z" }"#),
            ),
            (
                "hour 25",
                overview(r#"{ from: "2026-03-01T25:00:00Z", to: "2026-03-08T00:00:00Z" }"#),
            ),
            (
                "a number for a DateTime",
                overview(r#"{ from: 1772323200, to: "2026-03-08T00:00:00Z" }"#),
            ),
            (
                "null for a DateTime",
                overview(r#"{ from: null, to: "2026-03-08T00:00:00Z" }"#),
            ),
            (
                "a missing bound",
                overview(r#"{ from: "2026-03-01T00:00:00Z" }"#),
            ),
            (
                "a 501-character search",
                users(&format!(", search: \"{}\"", "s".repeat(501))),
            ),
            (
                "a 600 KB search",
                users(&format!(", search: \"{}\"", "s".repeat(600_000))),
            ),
            (
                "trend(buckets: 1000000)",
                format!("{{ users(range: {RANGE}) {{ nodes {{ trend(buckets: 1000000) }} }} }}"),
            ),
            (
                "activity(days: -1)",
                "{ userDetail(userId: \"u1\") { activity(days: -1) { date } } }".to_owned(),
            ),
            ("unknown field", "{ users { nope } }".to_owned()),
            (
                "two operations, none named",
                "query A { __typename } query B { __typename }".to_owned(),
            ),
            (
                "an unknown mutation",
                "mutation { dropEverything }".to_owned(),
            ),
            ("a subscription", "subscription { __typename }".to_owned()),
            ("syntax error", "{ users(".to_owned()),
            ("an empty document", String::new()),
        ];
        for (case, query) in &bad_input_cases {
            let (status, body) = gateway.query(query).await;
            assert_eq!(
                (status, code(&body)),
                (200, Some("BAD_USER_INPUT")),
                "{case}: {body}"
            );
            gateway.still_serves(case).await;
        }

        // Ranges at the edges of time are answered, never an internal error.
        for (case, range) in [
            (
                "year 1 to year 9999",
                r#"{ from: "0001-01-01T00:00:00Z", to: "9999-12-31T23:59:59.999999999Z" }"#,
            ),
            (
                "before the epoch",
                r#"{ from: "1900-01-01T00:00:00Z", to: "1960-01-01T00:00:00Z" }"#,
            ),
            (
                "odd offsets",
                r#"{ from: "2026-03-01T00:00:00+14:00", to: "2026-03-08T00:00:00-12:00" }"#,
            ),
            (
                "one nanosecond",
                r#"{ from: "2026-03-02T00:00:00Z", to: "2026-03-02T00:00:00.000000001Z" }"#,
            ),
        ] {
            let (status, body) = gateway
                .query(&format!(
                    "{{ usersOverview(range: {range}) {{ traces histogram {{ bucketSeconds buckets {{ start }} }} }}
                       users(range: {range}) {{ totalCount }} }}"
                ))
                .await;
            assert_eq!(status, 200, "{case}: {body}");
            assert!(
                body["errors"].is_null() || code(&body) == Some("BAD_USER_INPUT"),
                "{case}: {body}"
            );
            gateway.still_serves(case).await;
        }

        // A well-formed cursor made by hand continues after the user it names, known or not.
        for (after, expected) in [
            ("u2", vec!["u3", "u4"]),
            ("u10", vec!["u2", "u3", "u4"]),
            ("", vec!["u0", "u1", "u2", "u3", "u4"]),
        ] {
            let (_, body) = gateway
                .query(&users(&format!(
                    ", orderBy: {{ field: USER_ID, direction: ASC }}, after: \"{}\"",
                    forged_user_id_cursor(after)
                )))
                .await;
            assert!(body["errors"].is_null(), "after {after:?}: {body}");
            let ids: Vec<&str> = body["data"]["users"]["nodes"]
                .as_array()
                .expect("rows")
                .iter()
                .filter_map(|row| row["userId"].as_str())
                .collect();
            assert_eq!(ids, expected, "after {after:?}");
        }

        // LIKE wildcards in a search are text, not patterns.
        for search in ["%", "_", "u%", "\\\\", "' OR 1=1 --"] {
            let (_, body) = gateway
                .post_json(&json!({
                    "query": "query($r: TimeRangeInput!, $s: String) { users(range: $r, search: $s) { totalCount } }",
                    "variables": { "r": { "from": "2026-03-01T00:00:00Z", "to": "2026-03-08T00:00:00Z" }, "s": search },
                }))
                .await;
            assert_eq!(
                body["data"]["users"]["totalCount"], 0,
                "search {search:?}: {body}"
            );
        }

        // Bodies that are not one GraphQL request: 400, 413 or 415 with a GraphQL error.
        let deep_variables = format!(
            "{{\"query\":\"{{ __typename }}\",\"variables\":{{\"v\":{}{}}}}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let body_cases: Vec<(&str, Option<&str>, Vec<u8>, u16)> = vec![
            ("a batch", Some("application/json"), serde_json::to_vec(&json!([{ "query": "{ __typename }" }, { "query": "{ __typename }" }])).expect("JSON"), 400),
            // An empty array or object reads as a request without a query: a syntax error, HTTP 200.
            ("an empty batch", Some("application/json"), b"[]".to_vec(), 200),
            ("not JSON", Some("application/json"), b"hello".to_vec(), 400),
            ("a JSON string", Some("application/json"), b"\"{ __typename }\"".to_vec(), 400),
            ("JSON null", Some("application/json"), b"null".to_vec(), 400),
            ("an object without a query", Some("application/json"), b"{}".to_vec(), 200),
            ("a query that is not a string", Some("application/json"), b"{\"query\": 42}".to_vec(), 400),
            ("variables that are not an object", Some("application/json"), b"{\"query\": \"{ __typename }\", \"variables\": [1]}".to_vec(), 400),
            ("variables nested 10 000 deep", Some("application/json"), deep_variables.into_bytes(), 400),
            ("an empty body", Some("application/json"), Vec::new(), 400),
            ("invalid UTF-8", Some("application/json"), vec![b'{', 0xff, 0xfe, b'}'], 400),
            ("text/plain", Some("text/plain"), b"{\"query\": \"{ __typename }\"}".to_vec(), 415),
            ("a form", Some("application/x-www-form-urlencoded"), b"query=%7B__typename%7D".to_vec(), 415),
            (
                "multipart",
                Some("multipart/form-data; boundary=X"),
                b"--X\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{\"query\":\"{ __typename }\"}\r\n--X--\r\n".to_vec(),
                415,
            ),
            ("GraphQL as the media type", Some("application/graphql"), b"{ __typename }".to_vec(), 415),
            ("a content type that does not parse", Some("???"), b"{}".to_vec(), 415),
        ];
        for (case, content_type, body, status) in body_cases {
            let started = Instant::now();
            let (got, answer) = gateway.post_raw(content_type, body).await;
            assert_eq!(
                (got, code(&answer)),
                (status, Some("BAD_USER_INPUT")),
                "{case}: {answer}"
            );
            assert!(
                started.elapsed() < PROMPTLY,
                "{case} took {:?}",
                started.elapsed()
            );
            gateway.still_serves(case).await;
        }
        // Without a Content-Type the body is read as JSON.
        let (status, body) = gateway
            .post_raw(None, b"{\"query\": \"{ __typename }\"}".to_vec())
            .await;
        assert_eq!(
            (status, &body["data"]["__typename"]),
            (200, &json!("Query")),
            "{body}"
        );

        // A body over the limit without a declared length is refused once 1 MiB is read.
        // (With its length declared it is refused before it is sent: a client still writing
        // it then sees the connection close, which is what the case below checks.)
        let answer = chunked_body(&aio, 1024 * 1024 + 64).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("BAD_USER_INPUT"), "{answer}");
        gateway.still_serves("a chunked body over 1 MiB").await;

        // A body declared over the limit is refused before it is sent.
        let answer = declared_length(&aio, 10_000_000_000).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        gateway.still_serves("a declared 10 GB body").await;

        // Many abusive requests at once leave the gateway serving.
        let flood = (0..32).map(|i| {
            let query = bad_input_cases[i % bad_input_cases.len()].1.clone();
            let gateway = &gateway;
            async move { gateway.query(&query).await }
        });
        for (status, body) in futures::future::join_all(flood).await {
            assert_eq!(
                (status, code(&body)),
                (200, Some("BAD_USER_INPUT")),
                "{body}"
            );
        }
        gateway.still_serves("a flood").await;
        aio.stop().await;
    });
}
