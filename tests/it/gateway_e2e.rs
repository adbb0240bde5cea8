//! `userlens all-in-one` as a process on ephemeral ports: traces in over OTLP, the users
//! page out over GraphQL, with tenant isolation and the documented error codes.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use serde_json::{Value, json};
use userlens_storage::keys;
use userlens_tests::TestDatabase;
use userlens_tests::for_each_backend;
use userlens_tests::otlp::{
    double, errored, int, kv, request, resource_spans, span, span_id, string, trace_id,
    with_attributes,
};
use userlens_tests::process::{self, UserlensProcess};

const KEY: &str = "ul_gateway_e2e_key_0123456789";
const NS: u64 = 1_000_000_000;
/// 2026-03-01T00:00:00Z.
const MARCH_1: u64 = 1_772_323_200 * NS;
const RANGE: &str = r#"{ from: "2026-03-01T00:00:00Z", to: "2026-03-08T00:00:00Z" }"#;

async fn start(database: &TestDatabase) -> UserlensProcess {
    process::start_all_in_one(database, &[("USERLENS_API_KEY", KEY)], &[])
        .await
        .0
}

/// Three users: ada (two traces in one session, one errored, a wrapper LLM span),
/// bo (one trace without a session id, a tool call), and an anonymous trace.
fn fixture() -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    let t = |day: u64, hour: u64| MARCH_1 + day * 86_400 * NS + hour * 3_600 * NS;
    let ada_1_root = with_attributes(
        span(trace_id(1), span_id(10), None, t(1, 9), t(1, 9) + 2 * NS),
        vec![
            kv("user.id", string("ada")),
            kv("user.email", string("ada@x.io")),
            kv("session.id", string("s-ada")),
        ],
    );
    let ada_1_wrapper = with_attributes(
        span(
            trace_id(1),
            span_id(11),
            Some(span_id(10)),
            t(1, 9),
            t(1, 9) + NS,
        ),
        vec![
            kv("gen_ai.request.model", string("gpt-4o")),
            kv("gen_ai.usage.cost", double(0.3)),
        ],
    );
    let ada_1_call = with_attributes(
        span(
            trace_id(1),
            span_id(12),
            Some(span_id(11)),
            t(1, 9),
            t(1, 9) + NS,
        ),
        vec![
            kv("gen_ai.request.model", string("gpt-4o")),
            kv("gen_ai.system", string("openai")),
            kv("gen_ai.usage.input_tokens", int(100)),
            kv("gen_ai.usage.output_tokens", int(20)),
            kv("gen_ai.usage.cost", double(0.3)),
        ],
    );
    let ada_2_root = with_attributes(
        span(trace_id(2), span_id(20), None, t(1, 10), t(1, 10) + NS),
        vec![
            kv("user.id", string("ada")),
            kv("session.id", string("s-ada")),
        ],
    );
    let ada_2_tool = errored(with_attributes(
        span(
            trace_id(2),
            span_id(21),
            Some(span_id(20)),
            t(1, 10),
            t(1, 10) + NS,
        ),
        vec![kv("gen_ai.tool.name", string("search"))],
    ));
    let bo_root = with_attributes(
        span(trace_id(3), span_id(30), None, t(3, 12), t(3, 12) + 3 * NS),
        vec![kv("user.id", string("bo"))],
    );
    let bo_tool = with_attributes(
        span(
            trace_id(3),
            span_id(31),
            Some(span_id(30)),
            t(3, 12),
            t(3, 12) + NS,
        ),
        vec![kv("tool.name", string("calculator"))],
    );
    let anonymous = span(trace_id(4), span_id(40), None, t(4, 1), t(4, 1) + NS);
    request(vec![resource_spans(
        vec![kv("service.name", string("e2e"))],
        // Roots last: the figures must not depend on arrival order.
        vec![
            ada_1_call,
            ada_1_wrapper,
            ada_2_tool,
            bo_tool,
            anonymous,
            ada_1_root,
            ada_2_root,
            bo_root,
        ],
    )])
}

async fn graphql(url: &str, key: Option<&str>, query: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .json(&json!({ "query": query }));
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = request.send().await.expect("POST /graphql");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

fn error_code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

#[tokio::test(flavor = "multi_thread")]
async fn all_in_one_serves_the_users_page_over_graphql() {
    for_each_backend!(|database| {
        let aio = start(&database).await;
        let url = format!("http://{}/graphql", aio.addr("graphql"));

        let mut ingest = TraceServiceClient::connect(format!("http://{}", aio.addr("otlp-grpc")))
            .await
            .expect("connect");
        let mut export = tonic::Request::new(fixture());
        export.metadata_mut().insert(
            "authorization",
            format!("Bearer {KEY}").parse().expect("ascii"),
        );
        ingest.export(export).await.expect("export");

        let users_page = format!(
            r#"{{
              usersOverview(range: {RANGE}) {{
                uniqueUsers newUsers traces tracesWithUser userTraceShare tracesPerUser
                sessions sessionsWithUser sessionsPerUser
                histogram {{ bucketSeconds buckets {{ start traces erroredTraces erroredSessions activeUsers }} }}
              }}
              users(range: {RANGE}, orderBy: {{ field: COST_SUM, direction: DESC }}, first: 1) {{
                totalCount
                costRollup {{ sum average median }}
                pageInfo {{ hasNextPage endCursor }}
                edges {{ cursor node {{ userId }} }}
                nodes {{
                  userId email firstSeenAt lastSeenAt traces sessions erroredSessions errorRate
                  cost {{ sum average median }} tokens {{ input output cachedInput total }}
                  trend(buckets: 7) weekly: trend(buckets: 1)
                }}
              }}
            }}"#
        );
        let (status, body) = graphql(&url, Some(KEY), &users_page).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["errors"].is_null(), "{body}");
        let overview = &body["data"]["usersOverview"];
        assert_eq!(overview["uniqueUsers"], 2);
        assert_eq!(overview["newUsers"], 2);
        assert_eq!(overview["traces"], 4);
        assert_eq!(overview["tracesWithUser"], 3);
        assert_eq!(overview["userTraceShare"], 0.75);
        assert_eq!(overview["tracesPerUser"], 1.5);
        // s-ada, bo's own trace session, the anonymous trace's own session.
        assert_eq!(overview["sessions"], 3);
        assert_eq!(overview["sessionsWithUser"], 2);
        assert_eq!(overview["sessionsPerUser"], 1.0);
        // 7 days: 3-hour buckets make 56.
        assert_eq!(overview["histogram"]["bucketSeconds"], 10_800);
        let buckets = overview["histogram"]["buckets"]
            .as_array()
            .expect("buckets");
        assert_eq!(buckets.len(), 56);
        assert_eq!(buckets[0]["start"], "2026-03-01T00:00:00.000Z");
        // 2026-03-02 09:00 and 10:00 fall in the bucket starting 09:00 (index 8 + 3).
        assert_eq!(buckets[11]["traces"], 2);
        assert_eq!(buckets[11]["erroredTraces"], 1);
        assert_eq!(buckets[11]["erroredSessions"], 1);
        assert_eq!(buckets[11]["activeUsers"], 1);

        let users = &body["data"]["users"];
        assert_eq!(users["totalCount"], 2);
        assert_eq!(users["pageInfo"]["hasNextPage"], true);
        // ada: 0.3 + 0 (the wrapper does not count twice); bo: 0.
        assert_eq!(users["costRollup"]["sum"], 0.3);
        assert_eq!(users["costRollup"]["average"], 0.075);
        assert_eq!(users["costRollup"]["median"], 0.075);
        let ada = &users["nodes"][0];
        assert_eq!(users["edges"][0]["node"]["userId"], "ada");
        assert_eq!(ada["userId"], "ada");
        assert_eq!(ada["email"], "ada@x.io");
        assert_eq!(ada["firstSeenAt"], "2026-03-02T09:00:00.000Z");
        assert_eq!(ada["lastSeenAt"], "2026-03-02T10:00:00.000Z");
        assert_eq!(ada["traces"], 2);
        assert_eq!(ada["sessions"], 1);
        assert_eq!(ada["erroredSessions"], 1);
        assert_eq!(ada["errorRate"], 1.0);
        assert_eq!(
            ada["cost"],
            json!({ "sum": 0.3, "average": 0.15, "median": 0.15 })
        );
        assert_eq!(
            ada["tokens"],
            json!({ "input": 100, "output": 20, "cachedInput": 0, "total": 120 })
        );
        // One slice per day: both traces on 2026-03-02.
        assert_eq!(ada["trend"], json!([0, 2, 0, 0, 0, 0, 0]));
        assert_eq!(ada["weekly"], json!([2]));

        let after = users["pageInfo"]["endCursor"].as_str().expect("a cursor");
        let (_, next) = graphql(
            &url,
            Some(KEY),
            &format!(r#"{{ users(range: {RANGE}, orderBy: {{ field: COST_SUM, direction: DESC }}, first: 1, after: "{after}") {{ nodes {{ userId }} pageInfo {{ hasNextPage }} }} }}"#),
        )
        .await;
        assert_eq!(next["data"]["users"]["nodes"][0]["userId"], "bo", "{next}");
        assert_eq!(next["data"]["users"]["pageInfo"]["hasNextPage"], false);

        let detail = r#"{
          userDetail(userId: "ada") {
            userId email traces sessions erroredSessions activeDays averageTraceDurationMs
            cost { sum } tokens { total }
            activity(days: 3) { date traces }
            breakdowns {
              models { model provider calls traces cost tokens { input output total } }
              providers { provider calls traces cost }
              tools { tool calls errors traces }
            }
          }
          missing: userDetail(userId: "nobody") { userId }
          sessions(userId: "ada", erroredOnly: true) {
            totalCount
            nodes { sessionId startedAt endedAt durationMs traces erroredTraces errored cost tokens { total } }
          }
          boSessions: sessions(userId: "bo", erroredOnly: true) { totalCount nodes { sessionId } }
        }"#;
        let (status, body) = graphql(&url, Some(KEY), detail).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["errors"].is_null(), "{body}");
        let ada = &body["data"]["userDetail"];
        assert_eq!(ada["traces"], 2);
        assert_eq!(ada["sessions"], 1);
        assert_eq!(ada["erroredSessions"], 1);
        assert_eq!(ada["activeDays"], 1);
        assert_eq!(ada["averageTraceDurationMs"], 1_500.0);
        assert_eq!(ada["activity"].as_array().map(Vec::len), Some(3));
        assert_eq!(
            ada["breakdowns"]["models"],
            json!([
                { "model": "gpt-4o", "provider": "openai", "calls": 1, "traces": 1, "cost": 0.3,
                  "tokens": { "input": 100, "output": 20, "total": 120 } }
            ])
        );
        assert_eq!(
            ada["breakdowns"]["providers"],
            json!([{ "provider": "openai", "calls": 1, "traces": 1, "cost": 0.3 }])
        );
        assert_eq!(
            ada["breakdowns"]["tools"],
            json!([{ "tool": "search", "calls": 1, "errors": 1, "traces": 1 }])
        );
        assert!(body["data"]["missing"].is_null());
        let sessions = &body["data"]["sessions"];
        assert_eq!(sessions["totalCount"], 1);
        assert_eq!(
            sessions["nodes"][0],
            json!({
                "sessionId": "s-ada", "startedAt": "2026-03-02T09:00:00.000Z", "endedAt": "2026-03-02T10:00:01.000Z",
                "durationMs": 3_601_000.0, "traces": 2, "erroredTraces": 1, "errored": true, "cost": 0.3,
                "tokens": { "total": 120 }
            })
        );
        assert_eq!(body["data"]["boSessions"]["totalCount"], 0);

        // Another project's key sees none of it.
        let (_, other_key) = keys::create_key(&database.db, "other")
            .await
            .expect("second project");
        let (status, body) = graphql(&url, Some(&other_key), &users_page).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["users"]["totalCount"], 0);
        assert_eq!(body["data"]["usersOverview"]["traces"], 0);
        let (_, body) = graphql(
            &url,
            Some(&other_key),
            r#"{ userDetail(userId: "ada") { userId } sessions(userId: "ada") { totalCount } }"#,
        )
        .await;
        assert!(body["data"]["userDetail"].is_null(), "{body}");
        assert_eq!(body["data"]["sessions"]["totalCount"], 0);

        // Error codes.
        let (status, body) =
            graphql(&url, None, "{ userDetail(userId: \"ada\") { userId } }").await;
        assert_eq!((status, error_code(&body)), (401, Some("UNAUTHENTICATED")));
        let (status, body) = graphql(
            &url,
            Some("ul_unknown"),
            "{ userDetail(userId: \"ada\") { userId } }",
        )
        .await;
        assert_eq!((status, error_code(&body)), (401, Some("UNAUTHENTICATED")));
        for bad in [
            format!("{{ users(range: {RANGE}, first: 0) {{ totalCount }} }}"),
            format!("{{ users(range: {RANGE}, first: 201) {{ totalCount }} }}"),
            format!("{{ users(range: {RANGE}) {{ nodes {{ trend(buckets: 61) }} }} }}"),
            r#"{ userDetail(userId: "ada") { activity(days: 366) { date } } }"#.to_owned(),
            r#"{ usersOverview(range: { from: "2026-03-02T00:00:00Z", to: "2026-03-02T00:00:00Z" }) { traces } }"#.to_owned(),
            format!("{{ users(range: {RANGE}, search: \"{}\") {{ totalCount }} }}", "x".repeat(501)),
            format!("{{ users(range: {RANGE}, after: \"not-a-cursor\") {{ totalCount }} }}"),
            r#"{ sessions(userId: "ada", after: "%%%") { totalCount } }"#.to_owned(),
        ] {
            let (status, body) = graphql(&url, Some(KEY), &bad).await;
            assert_eq!((status, error_code(&body)), (200, Some("BAD_USER_INPUT")), "{bad}: {body}");
        }
        for (listener, metric) in [
            ("otlp-http", "userlens_ingest_spans_accepted_total 8"),
            ("query-http", "userlens_query_requests_total"),
            ("graphql", "userlens_gateway"),
        ] {
            let text = reqwest::get(format!("http://{}/metrics", aio.addr(listener)))
                .await
                .expect("GET /metrics")
                .text()
                .await
                .expect("metrics text");
            assert!(
                text.contains(metric),
                "{listener} /metrics lacks {metric}:\n{text}"
            );
        }

        let deep = "{ userDetail(userId: \"ada\") { breakdowns { models { tokens { total } } } } }";
        let (_, body) = graphql(&url, Some(KEY), deep).await;
        assert!(
            body["errors"].is_null(),
            "a legitimate nested query passes the limits: {body}"
        );

        aio.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_without_users_query_answers_unavailable_fast() {
    // Nothing listens on port 1.
    let gateway = UserlensProcess::start(
        &[
            "gateway",
            "--graphql-addr",
            "127.0.0.1:0",
            "--query-url",
            "http://127.0.0.1:1",
        ],
        &[],
        &["graphql"],
    )
    .await;
    let url = format!("http://{}/graphql", gateway.addr("graphql"));
    let started = Instant::now();
    let (status, body) = graphql(
        &url,
        Some(KEY),
        "{ userDetail(userId: \"ada\") { userId } }",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(error_code(&body), Some("UNAVAILABLE"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let health = reqwest::get(format!("http://{}/healthz", gateway.addr("graphql")))
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 503);
    gateway.stop().await;
}
