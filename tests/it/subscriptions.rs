//! GraphQL subscriptions over WebSocket (`graphql-transport-ws`) against a real gateway,
//! users-query and ingest: the first answer on subscribe, the new figures after an ingest,
//! coalesced pushes, refused keys, the subscription limits, project isolation and shutdown.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use userlens_storage::keys;
use userlens_tests::for_each_backend;
use userlens_tests::gateway::InProcessGateway;
use userlens_tests::otlp::{double, kv, request, resource_spans, span, span_id, string, trace_id};
use userlens_tests::stack::{CacheChoice, Stack};

const NS: i64 = 1_000_000_000;
/// 2026-03-01T00:00:00Z.
const MARCH_1: i64 = 1_772_323_200 * NS;
const RANGE: &str = r#"{ from: "2026-03-01T00:00:00Z", to: "2026-03-08T00:00:00Z" }"#;
const WAIT: Duration = Duration::from_secs(20);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One single-span trace of `user` on March 2nd, `n` hours in, costing `cost`.
fn trace(n: u64, user: &str, cost: f64) -> ExportTraceServiceRequest {
    let start = (MARCH_1 + 86_400 * NS + n as i64 * 60 * NS) as u64;
    let mut root = span(trace_id(n), span_id(n), None, start, start + 1_000_000);
    root.attributes = vec![
        kv("user.id", string(user)),
        kv("session.id", string(&format!("s-{user}"))),
        kv("gen_ai.request.model", string("gpt-test")),
        kv("gen_ai.usage.cost", double(cost)),
    ];
    request(vec![resource_spans(vec![], vec![root])])
}

/// Exports with `key`; returns once the spans are committed.
async fn export(stack: &Stack, key: &str, message: ExportTraceServiceRequest) {
    stack.export_as(key, message).await;
}

async fn start_gateway(
    stack: &Stack,
    subscriptions: userlens_gateway::SubscriptionSettings,
) -> InProcessGateway {
    let settings = userlens_gateway::GatewaySettings {
        subscriptions,
        ..Default::default()
    };
    InProcessGateway::start(stack.query, settings).await
}

fn settings(interval_ms: u64) -> userlens_gateway::SubscriptionSettings {
    userlens_gateway::SubscriptionSettings {
        interval: Duration::from_millis(interval_ms),
        ..Default::default()
    }
}

/// A `graphql-transport-ws` socket, not yet initialised.
async fn connect(gateway: &InProcessGateway) -> Socket {
    let mut request = format!("ws://{}/graphql", gateway.addr)
        .into_client_request()
        .expect("a websocket request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header value"),
    );
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket upgrade");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("graphql-transport-ws")
    );
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .expect("send");
}

/// The next message of the socket: a JSON text, or the close frame as
/// `{"close": code, "reason": …}`; None when nothing arrives within `within`.
async fn receive(socket: &mut Socket, within: Duration) -> Option<Value> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = match tokio::time::timeout(left, socket.next()).await {
            Err(_) => return None,
            Ok(None) => return Some(json!({ "close": null })),
            Ok(Some(Err(error))) => {
                return Some(json!({ "close": null, "error": error.to_string() }));
            }
            Ok(Some(Ok(message))) => message,
        };
        match message {
            Message::Text(text) => return Some(serde_json::from_str(&text).expect("json message")),
            Message::Close(frame) => {
                return Some(match frame {
                    Some(frame) => {
                        json!({ "close": u16::from(frame.code), "reason": frame.reason.to_string() })
                    }
                    None => json!({ "close": null }),
                });
            }
            _ => continue,
        }
    }
}

/// Opens a socket and completes `connection_init` with `key`.
async fn open(gateway: &InProcessGateway, key: &str) -> Socket {
    let mut socket = connect(gateway).await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {key}") } }),
    )
    .await;
    let ack = receive(&mut socket, WAIT).await;
    assert_eq!(ack, Some(json!({ "type": "connection_ack" })));
    socket
}

async fn subscribe(socket: &mut Socket, id: &str, query: &str) {
    send(
        socket,
        json!({ "id": id, "type": "subscribe", "payload": { "query": query } }),
    )
    .await;
}

/// The payload of the next `next` message of subscription `id`.
async fn next_payload(socket: &mut Socket, id: &str) -> Value {
    let message = receive(socket, WAIT)
        .await
        .unwrap_or_else(|| panic!("no message for {id} within {WAIT:?}"));
    assert_eq!(message["type"], "next", "{message}");
    assert_eq!(message["id"], id, "{message}");
    message["payload"].clone()
}

fn overview_query() -> String {
    format!(
        "subscription {{ usersOverviewUpdated(range: {RANGE}) {{ uniqueUsers traces sessions }} }}"
    )
}

fn user_query(user: &str) -> String {
    format!(
        "subscription {{ userUpdated(userId: \"{user}\") {{ userId traces cost {{ sum }} \
         breakdowns(range: {RANGE}) {{ models {{ model }} }} }} }}"
    )
}

#[tokio::test]
async fn a_subscription_pushes_the_first_answer_then_the_new_figures() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let gateway = start_gateway(&stack, settings(200)).await;
        export(&stack, &stack.key, trace(1, "ada", 0.5)).await;

        let mut socket = open(&gateway, &stack.key).await;
        subscribe(&mut socket, "overview", &overview_query()).await;
        let first = next_payload(&mut socket, "overview").await;
        assert_eq!(
            first,
            json!({ "data": { "usersOverviewUpdated": { "uniqueUsers": 1, "traces": 1, "sessions": 1 } } })
        );
        subscribe(&mut socket, "ada", &user_query("ada")).await;
        let first = next_payload(&mut socket, "ada").await;
        assert_eq!(first["data"]["userUpdated"]["traces"], 1, "{first}");
        assert_eq!(first["data"]["userUpdated"]["cost"]["sum"], 0.5, "{first}");
        assert_eq!(
            first["data"]["userUpdated"]["breakdowns"],
            json!({ "models": [{ "model": "gpt-test" }] }),
            "{first}"
        );

        // A trace of another user: the overview changes, ada's detail does not.
        export(&stack, &stack.key, trace(2, "bo", 0.25)).await;
        let pushed = next_payload(&mut socket, "overview").await;
        assert_eq!(
            pushed,
            json!({ "data": { "usersOverviewUpdated": { "uniqueUsers": 2, "traces": 2, "sessions": 2 } } })
        );
        assert_eq!(
            receive(&mut socket, Duration::from_millis(1_000)).await,
            None,
            "ada's answer did not change: nothing is pushed"
        );

        // A trace of ada: both change.
        export(&stack, &stack.key, trace(3, "ada", 0.25)).await;
        let mut seen = std::collections::HashMap::new();
        for _ in 0..2 {
            let message = receive(&mut socket, WAIT).await.expect("a push");
            assert_eq!(message["type"], "next", "{message}");
            seen.insert(
                message["id"].as_str().unwrap_or_default().to_owned(),
                message["payload"].clone(),
            );
        }
        assert_eq!(
            seen["overview"],
            json!({ "data": { "usersOverviewUpdated": { "uniqueUsers": 2, "traces": 3, "sessions": 2 } } })
        );
        assert_eq!(seen["ada"]["data"]["userUpdated"]["traces"], 2);
        assert_eq!(seen["ada"]["data"]["userUpdated"]["cost"]["sum"], 0.75);

        // Unknown user: null now, the detail once the user's first trace arrives.
        subscribe(&mut socket, "cy", &user_query("cy")).await;
        assert_eq!(
            next_payload(&mut socket, "cy").await,
            json!({ "data": { "userUpdated": null } })
        );
        export(&stack, &stack.key, trace(4, "cy", 1.0)).await;
        loop {
            let message = receive(&mut socket, WAIT).await.expect("a push");
            if message["id"] == "cy" {
                assert_eq!(message["payload"]["data"]["userUpdated"]["userId"], "cy");
                assert_eq!(message["payload"]["data"]["userUpdated"]["traces"], 1);
                break;
            }
        }

        // `complete` stops a subscription.
        send(&mut socket, json!({ "id": "overview", "type": "complete" })).await;
        let _ = socket.close(None).await;
        gateway_stop(gateway).await;
        stack.stop().await;
    });
}

async fn gateway_stop(gateway: InProcessGateway) {
    let _ = gateway.stop.send(());
    tokio::time::timeout(Duration::from_secs(15), gateway.task)
        .await
        .expect("the gateway stops")
        .expect("gateway task");
}

#[tokio::test]
async fn quick_ingests_are_coalesced_and_nothing_is_pushed_without_change() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let interval = Duration::from_millis(1_500);
        let gateway = start_gateway(&stack, settings(1_500)).await;
        let mut socket = open(&gateway, &stack.key).await;
        subscribe(&mut socket, "o", &overview_query()).await;
        assert_eq!(
            next_payload(&mut socket, "o").await["data"]["usersOverviewUpdated"]["traces"],
            0
        );

        let started = Instant::now();
        for n in 1..=6 {
            export(&stack, &stack.key, trace(n, &format!("u{n}"), 0.1)).await;
        }
        let ingest_took = started.elapsed();
        let mut pushes = Vec::new();
        loop {
            let payload = next_payload(&mut socket, "o").await;
            let traces = payload["data"]["usersOverviewUpdated"]["traces"].clone();
            pushes.push(traces.clone());
            if traces == 6 {
                break;
            }
        }
        assert_eq!(
            pushes.last(),
            Some(&json!(6)),
            "the last push has every trace"
        );
        // Six commits within one interval (or straddling one poll) are one or two pushes.
        if ingest_took < interval {
            assert!(
                pushes.len() <= 2,
                "pushes {pushes:?} for 6 commits in {ingest_took:?}"
            );
        }
        assert_eq!(
            receive(&mut socket, interval * 3).await,
            None,
            "no new data: no push"
        );
        gateway_stop(gateway).await;
        stack.stop().await;
    });
}

#[tokio::test]
async fn a_missing_or_unknown_key_is_refused_with_4403() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let gateway = start_gateway(&stack, settings(200)).await;

        let mut socket = connect(&gateway).await;
        send(
            &mut socket,
            json!({ "type": "connection_init", "payload": { "authorization": "Bearer ul_not_a_key_0123456789" } }),
        )
        .await;
        let closed = receive(&mut socket, WAIT).await.expect("a close frame");
        assert_eq!(closed["close"], 4403, "{closed}");
        assert!(
            closed["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("API key"),
            "{closed}"
        );

        let mut socket = connect(&gateway).await;
        send(&mut socket, json!({ "type": "connection_init" })).await;
        let closed = receive(&mut socket, WAIT).await.expect("a close frame");
        assert_eq!(closed["close"], 4403, "{closed}");

        // Without the subprotocol the upgrade is refused with a coded error.
        let response = reqwest::Client::new()
            .get(format!("http://{}/graphql", gateway.addr))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .expect("upgrade request");
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.expect("json body");
        assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");

        // The key of the upgrade request's header serves when the payload has none.
        let mut request = format!("ws://{}/graphql", gateway.addr)
            .into_client_request()
            .expect("a websocket request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().expect("header value"),
        );
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", stack.key)
                .parse()
                .expect("header value"),
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket upgrade");
        send(
            &mut socket,
            json!({ "type": "connection_init", "payload": {} }),
        )
        .await;
        assert_eq!(
            receive(&mut socket, WAIT).await,
            Some(json!({ "type": "connection_ack" }))
        );
        gateway_stop(gateway).await;
        stack.stop().await;
    });
}

fn error_code(payload: &Value) -> Value {
    payload["errors"][0]["extensions"]["code"].clone()
}

#[tokio::test]
async fn subscriptions_are_bounded_per_connection_and_per_key() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let gateway = start_gateway(
            &stack,
            userlens_gateway::SubscriptionSettings {
                interval: Duration::from_millis(200),
                max_per_key: 3,
                max_per_connection: 2,
            },
        )
        .await;
        let mut a = open(&gateway, &stack.key).await;
        for id in ["a1", "a2"] {
            subscribe(&mut a, id, &overview_query()).await;
            assert!(next_payload(&mut a, id).await["errors"].is_null());
        }
        subscribe(&mut a, "a3", &overview_query()).await;
        let refused = next_payload(&mut a, "a3").await;
        assert_eq!(error_code(&refused), "TOO_MANY_SUBSCRIPTIONS", "{refused}");
        assert!(
            refused["errors"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("per connection"),
            "{refused}"
        );
        assert_eq!(
            receive(&mut a, WAIT).await,
            Some(json!({ "type": "complete", "id": "a3" }))
        );

        let mut b = open(&gateway, &stack.key).await;
        subscribe(&mut b, "b1", &user_query("ada")).await;
        assert!(next_payload(&mut b, "b1").await["errors"].is_null());
        subscribe(&mut b, "b2", &overview_query()).await;
        let refused = next_payload(&mut b, "b2").await;
        assert_eq!(error_code(&refused), "TOO_MANY_SUBSCRIPTIONS", "{refused}");
        assert!(
            refused["errors"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("per key"),
            "{refused}"
        );
        assert_eq!(
            receive(&mut b, WAIT).await,
            Some(json!({ "type": "complete", "id": "b2" }))
        );

        // Closing a socket gives its places back.
        let _ = a.close(None).await;
        drop(a);
        let deadline = Instant::now() + WAIT;
        let mut n = 0;
        loop {
            n += 1;
            let id = format!("b-again-{n}");
            subscribe(&mut b, &id, &overview_query()).await;
            let payload = next_payload(&mut b, &id).await;
            if payload["errors"].is_null() {
                break;
            }
            assert_eq!(error_code(&payload), "TOO_MANY_SUBSCRIPTIONS");
            let _ = receive(&mut b, WAIT).await; // its `complete`
            assert!(
                Instant::now() < deadline,
                "the closed socket's places never came back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Subscriptions over POST are refused with a code.
        let body: Value = reqwest::Client::new()
            .post(format!("http://{}/graphql", gateway.addr))
            .bearer_auth(&stack.key)
            .json(&json!({ "query": overview_query() }))
            .send()
            .await
            .expect("post")
            .json()
            .await
            .expect("json");
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        gateway_stop(gateway).await;
        stack.stop().await;
    });
}

#[tokio::test]
async fn a_subscription_never_sees_another_project_s_data() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let (_, other_key) = keys::create_key(&database.db, "other")
            .await
            .expect("a second project");
        let gateway = start_gateway(&stack, settings(200)).await;
        export(&stack, &stack.key, trace(1, "ada", 0.5)).await;

        let mut theirs = open(&gateway, &other_key).await;
        subscribe(&mut theirs, "o", &overview_query()).await;
        subscribe(&mut theirs, "ada", &user_query("ada")).await;
        let mut first = std::collections::HashMap::new();
        for _ in 0..2 {
            let message = receive(&mut theirs, WAIT).await.expect("a first answer");
            first.insert(
                message["id"].as_str().unwrap_or_default().to_owned(),
                message["payload"].clone(),
            );
        }
        assert_eq!(
            first["o"],
            json!({ "data": { "usersOverviewUpdated": { "uniqueUsers": 0, "traces": 0, "sessions": 0 } } })
        );
        assert_eq!(first["ada"], json!({ "data": { "userUpdated": null } }));

        // The first project's new data reaches its own subscription, never the other's.
        let mut ours = open(&gateway, &stack.key).await;
        subscribe(&mut ours, "o", &overview_query()).await;
        assert_eq!(
            next_payload(&mut ours, "o").await["data"]["usersOverviewUpdated"]["traces"],
            1
        );
        export(&stack, &stack.key, trace(2, "ada", 0.5)).await;
        assert_eq!(
            next_payload(&mut ours, "o").await["data"]["usersOverviewUpdated"]["traces"],
            2
        );
        assert_eq!(
            receive(&mut theirs, Duration::from_millis(1_000)).await,
            None
        );

        // The other project's own data is pushed to it, with its own figures only.
        export(&stack, &other_key, trace(3, "ada", 2.0)).await;
        let mut pushed = std::collections::HashMap::new();
        for _ in 0..2 {
            let message = receive(&mut theirs, WAIT).await.expect("a push");
            pushed.insert(
                message["id"].as_str().unwrap_or_default().to_owned(),
                message["payload"].clone(),
            );
        }
        assert_eq!(
            pushed["o"],
            json!({ "data": { "usersOverviewUpdated": { "uniqueUsers": 1, "traces": 1, "sessions": 1 } } })
        );
        assert_eq!(pushed["ada"]["data"]["userUpdated"]["traces"], 1);
        assert_eq!(pushed["ada"]["data"]["userUpdated"]["cost"]["sum"], 2.0);
        assert_eq!(receive(&mut ours, Duration::from_millis(1_000)).await, None);
        gateway_stop(gateway).await;
        stack.stop().await;
    });
}

#[tokio::test]
async fn shutdown_closes_open_sockets_and_does_not_wait_for_them() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let gateway = start_gateway(&stack, settings(200)).await;
        let mut live = open(&gateway, &stack.key).await;
        subscribe(&mut live, "o", &overview_query()).await;
        let _ = next_payload(&mut live, "o").await;
        // A socket that never sends `connection_init`, and one that never reads.
        let mut silent = connect(&gateway).await;
        let _idle = open(&gateway, &stack.key).await;

        let started = Instant::now();
        gateway_stop(gateway).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let closed = receive(&mut live, WAIT).await.expect("a close frame");
        assert_eq!(closed["close"], 1001, "{closed}");
        let closed = receive(&mut silent, WAIT).await.expect("a close frame");
        assert_eq!(closed["close"], 1001, "{closed}");
        stack.stop().await;
    });
}
