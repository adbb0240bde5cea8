//! Monitors end to end: definitions over gRPC, the evaluator driven by ingested data, signed
//! webhooks retried until delivered, once per episode across restarts, and the delivery log.

use std::time::Duration;

use hmac::{KeyInit, Mac};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tonic::transport::Channel;
use userlens_monitors::{DeliverySettings, EvaluatorSettings, MonitorSettings};
use userlens_proto::monitors::v1 as pb;
use userlens_proto::monitors::v1::monitor_service_client::MonitorServiceClient;
use userlens_tests::for_each_backend;
use userlens_tests::otlp::{
    double, errored, kv, request, resource_spans, span, span_id, string, trace_id, with_attributes,
};
use userlens_tests::stack::{CacheChoice, Stack};
use userlens_tests::webhook::{Received, WebhookServer};
use userlens_users_query::QueryServerSettings;

const NS: i64 = 1_000_000_000;
const WAIT: Duration = Duration::from_secs(20);

fn fast_settings() -> QueryServerSettings {
    QueryServerSettings {
        monitors: MonitorSettings {
            evaluator: EvaluatorSettings {
                tick: Duration::from_millis(50),
                sweep: Duration::from_millis(300),
            },
            delivery: DeliverySettings {
                first_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(400),
                max_attempts: 4,
                poll: Duration::from_millis(50),
                timeout: Duration::from_secs(2),
                concurrency: 4,
            },
        },
        ..QueryServerSettings::default()
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .expect("clock after 1970")
}

/// One single-span trace of `user` at `start_ns`, costing `cost` USD, errored or not.
fn trace(
    n: u64,
    user: &str,
    session: &str,
    start_ns: i64,
    cost: f64,
    failed: bool,
) -> ExportTraceServiceRequest {
    let mut root = with_attributes(
        span(
            trace_id(n),
            span_id(n),
            None,
            start_ns as u64,
            start_ns as u64 + 1_000_000,
        ),
        vec![
            kv("user.id", string(user)),
            kv("session.id", string(session)),
            kv("gen_ai.request.model", string("gpt-test")),
            kv("gen_ai.usage.cost", double(cost)),
        ],
    );
    if failed {
        root = errored(root);
    }
    request(vec![resource_spans(vec![], vec![root])])
}

async fn monitors_client(stack: &Stack) -> MonitorServiceClient<Channel> {
    MonitorServiceClient::connect(format!("http://{}", stack.query))
        .await
        .expect("connect to the monitor service")
}

fn create_request(
    name: &str,
    condition: pb::MonitorCondition,
    threshold: f64,
    window_seconds: i64,
    url: String,
) -> pb::CreateMonitorRequest {
    pb::CreateMonitorRequest {
        name: name.into(),
        user_id: None,
        condition: condition.into(),
        threshold,
        min_sessions: None,
        window_seconds,
        webhook_url: url,
        enabled: None,
    }
}

async fn create(stack: &Stack, message: pb::CreateMonitorRequest) -> (pb::Monitor, String) {
    let created = monitors_client(stack)
        .await
        .create_monitor(stack.authorized(message))
        .await
        .expect("create the monitor")
        .into_inner();
    (created.monitor.expect("a monitor"), created.secret)
}

async fn events(stack: &Stack, monitor_id: i64) -> Vec<pb::MonitorEvent> {
    monitors_client(stack)
        .await
        .list_monitor_events(stack.authorized(pb::ListMonitorEventsRequest {
            monitor_id: Some(monitor_id),
            first: Some(200),
            before_id: None,
        }))
        .await
        .expect("list events")
        .into_inner()
        .events
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac =
        hmac::Hmac::<sha2_hmac::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Every request carries a valid signature over its exact body.
fn assert_signed(received: &[Received], secret: &str) {
    for request in received {
        let expected = format!("sha256={}", hmac_hex(secret, &request.body));
        assert_eq!(
            request.header("x-userlens-signature"),
            Some(expected.as_str())
        );
        assert_eq!(request.header("content-type"), Some("application/json"));
        let body = request.json();
        assert_eq!(
            request.header("x-userlens-idempotency-key"),
            body["idempotencyKey"].as_str()
        );
        assert_eq!(request.header("x-userlens-event"), body["event"].as_str());
    }
}

/// Distinct (idempotency key, event) pairs among delivered requests.
fn delivered_keys(received: &[Received]) -> Vec<String> {
    let mut keys: Vec<String> = received
        .iter()
        .filter(|r| r.answered == 200)
        .filter_map(|r| r.header("x-userlens-idempotency-key").map(str::to_owned))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cost_budget_fires_once_per_episode_across_restarts_and_resolves() {
    for_each_backend!(|database| {
        // The first attempt is refused: delivery must retry it with the same key.
        let hook = WebhookServer::start(&[503]).await;
        let stack =
            Stack::start_with_query_settings(&database, CacheChoice::ForBackend, fast_settings())
                .await;
        let (monitor, secret) = create(
            &stack,
            create_request(
                "daily budget",
                pb::MonitorCondition::CostAbove,
                0.5,
                3_600,
                hook.url("/hooks/budget"),
            ),
        )
        .await;
        assert_eq!(secret.len(), 64);
        let now = now_ns();
        stack
            .export(trace(1, "alice", "s1", now - 60 * NS, 0.3, false))
            .await;
        stack
            .export(trace(2, "bob", "s2", now - 60 * NS, 0.1, false))
            .await;
        // 0.3 is within budget; 0.3 + 0.2 = 0.5 is not above it either.
        stack
            .export(trace(3, "alice", "s1", now - 30 * NS, 0.2, false))
            .await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(hook.received().is_empty(), "{:?}", hook.received());
        assert!(events(&stack, monitor.id).await.is_empty());

        // A trace two hours old is outside the one-hour window: still no alert.
        stack
            .export(trace(4, "alice", "s0", now - 7_200 * NS, 5.0, false))
            .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(events(&stack, monitor.id).await.is_empty());

        stack
            .export(trace(5, "alice", "s1", now - 10 * NS, 0.000_000_001, false))
            .await;
        let received = hook
            .wait_for(WAIT, |r| r.iter().any(|r| r.answered == 200))
            .await;
        assert_eq!(received.len(), 2, "one refused attempt, one delivered");
        assert_eq!(
            received[0].body, received[1].body,
            "a retry sends the same body"
        );
        assert_eq!(received[0].path, "/hooks/budget");
        assert_signed(&received, &secret);
        let body = received[1].json();
        assert_eq!(body["event"], "ALERT");
        assert_eq!(body["userId"], "alice");
        assert_eq!(body["episode"], 1);
        assert_eq!(body["monitorId"], monitor.id);
        assert_eq!(body["condition"], "COST_ABOVE");
        assert_eq!(body["value"], 0.500_000_001);

        let logged = events(&stack, monitor.id).await;
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].kind(), pb::MonitorEventKind::Alert);
        assert_eq!(logged[0].delivery(), pb::DeliveryState::Delivered);
        assert_eq!(logged[0].attempts, 2);
        assert_eq!(logged[0].last_status, Some(200));
        assert_eq!(logged[0].user_id, "alice");

        // More spending in the same episode, a restart, sweeps: never a second alert.
        stack
            .export(trace(6, "alice", "s1", now - 5 * NS, 1.0, false))
            .await;
        let (project_id, key) = (stack.project_id, stack.key.clone());
        stack.stop().await;
        let stack = Stack::start_for_key(
            &database,
            CacheChoice::ForBackend,
            fast_settings(),
            project_id,
            key,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(events(&stack, monitor.id).await.len(), 1);
        assert_eq!(delivered_keys(&hook.received()).len(), 1);

        // A higher budget: the episode ends; spending past it opens episode 2.
        let updated = monitors_client(&stack)
            .await
            .update_monitor(stack.authorized(pb::UpdateMonitorRequest {
                id: monitor.id,
                threshold: Some(2.0),
                ..Default::default()
            }))
            .await
            .expect("update")
            .into_inner();
        assert_eq!(updated.threshold, 2.0);
        let received = hook.wait_for(WAIT, |r| delivered_keys(r).len() == 2).await;
        let resolve = received.last().expect("a request").json();
        assert_eq!(resolve["event"], "RESOLVE");
        assert_eq!(resolve["episode"], 1);
        assert_eq!(resolve["userId"], "alice");

        stack.export(trace(7, "alice", "s3", now, 0.6, false)).await;
        let received = hook.wait_for(WAIT, |r| delivered_keys(r).len() == 3).await;
        assert_signed(&received, &secret);
        let alert = received.last().expect("a request").json();
        assert_eq!(alert["event"], "ALERT");
        assert_eq!(alert["episode"], 2);
        assert_eq!(alert["value"], 2.100_000_001);

        let logged = events(&stack, monitor.id).await;
        let kinds: Vec<(pb::MonitorEventKind, i64)> =
            logged.iter().map(|e| (e.kind(), e.episode)).collect();
        assert_eq!(
            kinds,
            vec![
                (pb::MonitorEventKind::Alert, 2),
                (pb::MonitorEventKind::Resolve, 1),
                (pb::MonitorEventKind::Alert, 1),
            ]
        );
        let listed = monitors_client(&stack)
            .await
            .list_monitors(stack.authorized(pb::ListMonitorsRequest {}))
            .await
            .expect("list")
            .into_inner()
            .monitors;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].firing_users, 1);
        stack.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_spike_and_inactivity_conditions_hold_as_defined() {
    for_each_backend!(|database| {
        let hook = WebhookServer::start(&[]).await;
        let stack =
            Stack::start_with_query_settings(&database, CacheChoice::ForBackend, fast_settings())
                .await;
        let now = now_ns();
        // Idle since ten days; active now.
        stack
            .export(trace(1, "idle", "i1", now - 10 * 86_400 * NS, 0.0, false))
            .await;
        stack
            .export(trace(2, "busy", "b1", now - NS, 0.0, true))
            .await;
        stack
            .export(trace(3, "busy", "b2", now - NS, 0.0, true))
            .await;
        stack
            .export(trace(4, "flaky", "f1", now - NS, 0.0, true))
            .await;
        let mut rate = create_request(
            "errors",
            pb::MonitorCondition::ErrorRateAbove,
            0.5,
            3_600,
            hook.url("/rate"),
        );
        rate.min_sessions = Some(2);
        let (rate, _) = create(&stack, rate).await;
        let (inactive, _) = create(
            &stack,
            create_request(
                "gone quiet",
                pb::MonitorCondition::Inactive,
                0.0,
                7 * 86_400,
                hook.url("/inactive"),
            ),
        )
        .await;
        // Two traces in a 2 s window is above 1: a spike that ends as the window slides.
        let mut spike = create_request(
            "spike",
            pb::MonitorCondition::TracesAbove,
            1.0,
            2,
            hook.url("/spike"),
        );
        spike.user_id = Some("busy".into());
        let (spike, _) = create(&stack, spike).await;

        let received = hook.wait_for(WAIT, |r| delivered_keys(r).len() >= 3).await;
        let by_path = |path: &str| -> Vec<serde_json::Value> {
            received
                .iter()
                .filter(|r| r.path == path)
                .map(Received::json)
                .collect()
        };
        // busy: 2 of 2 sessions errored; flaky has 1 session, under the minimum of 2.
        let rate_events = by_path("/rate");
        assert_eq!(rate_events.len(), 1, "{rate_events:?}");
        assert_eq!(rate_events[0]["userId"], "busy");
        assert_eq!(rate_events[0]["value"], 1.0);
        assert_eq!(rate_events[0]["sessions"], 2);
        let inactive_events = by_path("/inactive");
        assert_eq!(inactive_events.len(), 1, "{inactive_events:?}");
        assert_eq!(inactive_events[0]["userId"], "idle");
        assert!(inactive_events[0]["value"].as_f64().expect("seconds") >= 10.0 * 86_400.0);
        let spike_events = by_path("/spike");
        assert_eq!(spike_events[0]["event"], "ALERT");
        assert_eq!(spike_events[0]["value"], 2.0);

        // The idle user comes back: the inactivity episode resolves on that data.
        stack
            .export(trace(5, "idle", "i2", now_ns(), 0.0, false))
            .await;
        // The spike's traces leave its 2 s window: the sweep resolves it.
        let received = hook
            .wait_for(WAIT, |r| {
                let resolved = |path: &str| {
                    r.iter()
                        .any(|r| r.path == path && r.json()["event"] == "RESOLVE")
                };
                resolved("/inactive") && resolved("/spike")
            })
            .await;
        assert!(
            received
                .iter()
                .filter(|r| r.path == "/rate")
                .all(|r| r.json()["event"] == "ALERT"),
            "the error rate still holds"
        );
        for monitor in [rate.id, inactive.id, spike.id] {
            for event in events(&stack, monitor).await {
                assert_eq!(event.delivery(), pb::DeliveryState::Delivered);
            }
        }
        stack.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn monitors_are_project_scoped_and_bad_definitions_name_their_field() {
    for_each_backend!(|database| {
        let stack =
            Stack::start_with_query_settings(&database, CacheChoice::ForBackend, fast_settings())
                .await;
        let (monitor, _) = create(
            &stack,
            create_request(
                "budget",
                pb::MonitorCondition::CostAbove,
                1.0,
                60,
                "http://hooks.example.com/x".into(),
            ),
        )
        .await;
        let (_, other_key) = userlens_storage::keys::create_key(&database.db, "other")
            .await
            .expect("a second project");
        fn as_key<T>(key: &str, message: T) -> tonic::Request<T> {
            let mut request = tonic::Request::new(message);
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {key}").parse().expect("ascii"),
            );
            request
        }
        let mut client = monitors_client(&stack).await;
        let listed = client
            .list_monitors(as_key(&other_key, pb::ListMonitorsRequest {}))
            .await
            .expect("list")
            .into_inner();
        assert!(listed.monitors.is_empty());
        let status = client
            .delete_monitor(as_key(
                &other_key,
                pb::DeleteMonitorRequest { id: monitor.id },
            ))
            .await
            .expect_err("not theirs");
        assert_eq!(status.code(), tonic::Code::NotFound);
        let status = client
            .update_monitor(as_key(
                &other_key,
                pb::UpdateMonitorRequest {
                    id: monitor.id,
                    enabled: Some(false),
                    ..Default::default()
                },
            ))
            .await
            .expect_err("not theirs");
        assert_eq!(status.code(), tonic::Code::NotFound);
        let status = client
            .list_monitor_events(as_key(
                &other_key,
                pb::ListMonitorEventsRequest {
                    monitor_id: Some(monitor.id),
                    ..Default::default()
                },
            ))
            .await
            .expect_err("not theirs");
        assert_eq!(status.code(), tonic::Code::NotFound);
        let status = client
            .list_monitors(tonic::Request::new(pb::ListMonitorsRequest {}))
            .await
            .expect_err("no key");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);

        let cases = [
            ("webhook_url", {
                let mut m = create_request(
                    "x",
                    pb::MonitorCondition::CostAbove,
                    1.0,
                    60,
                    "ftp://h/x".into(),
                );
                m.name = "x".into();
                m
            }),
            (
                "threshold",
                create_request(
                    "x",
                    pb::MonitorCondition::ErrorRateAbove,
                    1.5,
                    60,
                    "http://h/".into(),
                ),
            ),
            (
                "window_seconds",
                create_request(
                    "x",
                    pb::MonitorCondition::TracesAbove,
                    1.0,
                    0,
                    "http://h/".into(),
                ),
            ),
            (
                "condition",
                create_request(
                    "x",
                    pb::MonitorCondition::Unspecified,
                    1.0,
                    60,
                    "http://h/".into(),
                ),
            ),
            (
                "name",
                create_request(
                    " ",
                    pb::MonitorCondition::CostAbove,
                    1.0,
                    60,
                    "http://h/".into(),
                ),
            ),
        ];
        for (field, message) in cases {
            let status = client
                .create_monitor(stack.authorized(message))
                .await
                .expect_err("refused");
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{field}");
            assert!(
                status.message().contains(field),
                "{field}: {}",
                status.message()
            );
        }
        // The monitor is still there, unchanged, and deleting it removes it.
        client
            .delete_monitor(stack.authorized(pb::DeleteMonitorRequest { id: monitor.id }))
            .await
            .expect("delete");
        let listed = client
            .list_monitors(stack.authorized(pb::ListMonitorsRequest {}))
            .await
            .expect("list")
            .into_inner();
        assert!(listed.monitors.is_empty());
        stack.stop().await;
    });
}

async fn graphql(
    url: &str,
    key: &str,
    query: &str,
    variables: serde_json::Value,
) -> serde_json::Value {
    reqwest::Client::new()
        .post(url)
        .header("authorization", format!("Bearer {key}"))
        .json(&serde_json::json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("POST /graphql")
        .json()
        .await
        .expect("a JSON body")
}

const CREATE: &str = r#"mutation($input: CreateMonitorInput!) {
  createMonitor(input: $input) { secret monitor { id name condition threshold windowSeconds userId enabled firingUsers } }
}"#;

#[tokio::test(flavor = "multi_thread")]
async fn graphql_defines_monitors_and_lists_their_delivered_events() {
    const KEY: &str = "ul_monitors_graphql_key_0123456789";
    for_each_backend!(|database| {
        let hook = WebhookServer::start(&[]).await;
        let (aio, _) =
            userlens_tests::process::start_all_in_one(&database, &[("USERLENS_API_KEY", KEY)], &[])
                .await;
        let url = format!("http://{}/graphql", aio.addr("graphql"));
        let input = serde_json::json!({
            "name": "first trace",
            "condition": "TRACES_ABOVE",
            "threshold": 0,
            "windowSeconds": 86_400,
            "webhookUrl": hook.url("/graphql-hook"),
        });
        let created = graphql(&url, KEY, CREATE, serde_json::json!({ "input": input })).await;
        let monitor = &created["data"]["createMonitor"]["monitor"];
        assert_eq!(monitor["condition"], "TRACES_ABOVE", "{created}");
        assert_eq!(monitor["enabled"], true);
        assert_eq!(monitor["userId"], serde_json::Value::Null);
        let id = monitor["id"].as_str().expect("an id").to_owned();
        let secret = created["data"]["createMonitor"]["secret"]
            .as_str()
            .expect("a secret")
            .to_owned();

        let bad = serde_json::json!({ "input": {
            "name": "x", "condition": "COST_ABOVE", "threshold": 1,
            "windowSeconds": 60, "webhookUrl": "javascript:alert(1)" } });
        let refused = graphql(&url, KEY, CREATE, bad).await;
        assert_eq!(
            refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{refused}"
        );
        assert_eq!(refused["errors"][0]["extensions"]["field"], "webhookUrl");

        let mut ingest = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(
            format!("http://{}", aio.addr("otlp-grpc")),
        )
        .await
        .expect("connect to ingest");
        let mut export = tonic::Request::new(trace(1, "carol", "c1", now_ns(), 0.01, false));
        export.metadata_mut().insert(
            "authorization",
            format!("Bearer {KEY}").parse().expect("ascii"),
        );
        ingest.export(export).await.expect("export");
        let received = hook.wait_for(WAIT, |r| !r.is_empty()).await;
        assert_signed(&received, &secret);
        assert_eq!(received[0].json()["userId"], "carol");

        let listed = loop {
            let listed = graphql(
                &url,
                KEY,
                r#"query($id: ID) { monitors { id firingUsers }
                   monitorEvents(monitorId: $id, first: 10) { hasNextPage endCursor
                     nodes { kind episode userId delivery attempts lastStatus idempotencyKey body } } }"#,
                serde_json::json!({ "id": id }),
            )
            .await;
            if listed["data"]["monitorEvents"]["nodes"][0]["delivery"] == "DELIVERED" {
                break listed;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let event = &listed["data"]["monitorEvents"]["nodes"][0];
        assert_eq!(event["kind"], "ALERT");
        assert_eq!(event["userId"], "carol");
        assert_eq!(event["lastStatus"], 200);
        assert_eq!(
            event["body"].as_str().map(str::as_bytes),
            Some(received[0].body.as_slice())
        );
        assert_eq!(listed["data"]["monitors"][0]["firingUsers"], 1);

        // Another project's key neither sees nor changes the monitor.
        let (_, other) = userlens_storage::keys::create_key(&database.db, "other")
            .await
            .expect("a second project");
        let theirs = graphql(
            &url,
            &other,
            "{ monitors { id } monitorEvents { nodes { id } } }",
            serde_json::json!({}),
        )
        .await;
        assert_eq!(
            theirs["data"]["monitors"],
            serde_json::json!([]),
            "{theirs}"
        );
        assert_eq!(
            theirs["data"]["monitorEvents"]["nodes"],
            serde_json::json!([])
        );
        let delete = "mutation($id: ID!) { deleteMonitor(id: $id) }";
        let refused = graphql(&url, &other, delete, serde_json::json!({ "id": id })).await;
        assert_eq!(
            refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{refused}"
        );
        assert_eq!(refused["errors"][0]["extensions"]["field"], "id");
        let renamed = graphql(
            &url,
            KEY,
            r#"mutation($id: ID!) { updateMonitor(id: $id, input: { name: "renamed", enabled: false }) { name enabled } }"#,
            serde_json::json!({ "id": id }),
        )
        .await;
        assert_eq!(
            renamed["data"]["updateMonitor"]["name"], "renamed",
            "{renamed}"
        );
        assert_eq!(renamed["data"]["updateMonitor"]["enabled"], false);
        let deleted = graphql(&url, KEY, delete, serde_json::json!({ "id": id })).await;
        assert_eq!(deleted["data"]["deleteMonitor"], true, "{deleted}");
        let after = graphql(&url, KEY, "{ monitors { id } }", serde_json::json!({})).await;
        assert_eq!(after["data"]["monitors"], serde_json::json!([]));
        aio.stop().await;
    });
}
