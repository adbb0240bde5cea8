//! `userlens mcp` as a real process, driven by rmcp's client: the handshake, the tools and
//! their JSON schemas, exact figures from ingested traces, the gateway's error codes, the
//! key from the environment (stdio) or each request's `Authorization` header (HTTP), and
//! project isolation.

use std::collections::BTreeSet;
use std::process::Stdio;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess};
use serde_json::{Value, json};
use userlens_storage::keys;
use userlens_tests::for_each_backend;
use userlens_tests::otlp::{
    double, int, kv, request, resource_spans, span, span_id, string, trace_id,
};
use userlens_tests::process::{UserlensProcess, userlens_binary};
use userlens_tests::stack::{CacheChoice, Stack};

const NS: i64 = 1_000_000_000;
/// 2026-03-01T00:00:00Z.
const MARCH_1: i64 = 1_772_323_200 * NS;

type Client = RunningService<rmcp::RoleClient, ()>;

/// One single-span LLM trace of `user` in `session` on March 2nd, `n` minutes in.
fn trace(n: u64, user: &str, session: &str, model: &str, cost: f64) -> ExportTraceServiceRequest {
    let start = (MARCH_1 + 86_400 * NS + n as i64 * 60 * NS) as u64;
    let mut root = span(trace_id(n), span_id(n), None, start, start + 2 * NS as u64);
    root.attributes = vec![
        kv("user.id", string(user)),
        kv("user.email", string(&format!("{user}@example.com"))),
        kv("session.id", string(session)),
        kv("gen_ai.request.model", string(model)),
        kv("gen_ai.system", string("openai")),
        kv("gen_ai.usage.input_tokens", int(100)),
        kv("gen_ai.usage.output_tokens", int(10)),
        kv("gen_ai.usage.cost", double(cost)),
    ];
    request(vec![resource_spans(vec![], vec![root])])
}

async fn export(stack: &Stack, key: &str, message: ExportTraceServiceRequest) {
    stack.export_as(key, message).await;
}

/// ada: two traces in one session (gpt-4o, 0.5 + 0.25 USD); bo: one (gpt-4o-mini, 0.125).
async fn fixture(stack: &Stack) {
    export(stack, &stack.key, trace(1, "ada", "s-1", "gpt-4o", 0.5)).await;
    export(stack, &stack.key, trace(2, "ada", "s-1", "gpt-4o", 0.25)).await;
    export(
        stack,
        &stack.key,
        trace(3, "bo", "s-2", "gpt-4o-mini", 0.125),
    )
    .await;
}

/// `userlens mcp` over stdio with `key` in `USERLENS_API_KEY`.
async fn stdio_client(stack: &Stack, key: &str) -> Client {
    let query_url = format!("http://{}", stack.query);
    let key = key.to_owned();
    let transport = TokioChildProcess::builder(
        tokio::process::Command::new(userlens_binary()).configure(move |cmd| {
            cmd.arg("mcp")
                .env("USERLENS_QUERY_URL", &query_url)
                .env("USERLENS_API_KEY", &key)
                .env("RUST_LOG", "warn");
        }),
    )
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn userlens mcp")
    .0;
    ().serve(transport).await.expect("MCP initialize")
}

fn arguments(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("arguments must be an object, got {other}"),
    }
}

async fn call(client: &Client, tool: &'static str, args: Value) -> CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(arguments(args)))
        .await
        .unwrap_or_else(|error| panic!("tools/call {tool}: {error}"))
}

/// The structured answer of a successful call.
async fn answer(client: &Client, tool: &'static str, args: Value) -> Value {
    let result = call(client, tool, args.clone()).await;
    assert_eq!(result.is_error, Some(false), "{tool} {args}: {result:?}");
    result.structured_content.expect("structured content")
}

/// The first error of a failed call: (code, field).
async fn refusal(client: &Client, tool: &'static str, args: Value) -> (Value, Value) {
    let result = call(client, tool, args.clone()).await;
    assert_eq!(result.is_error, Some(true), "{tool} {args}: {result:?}");
    let content = result.structured_content.expect("structured content");
    let error = &content["errors"][0];
    (error["code"].clone(), error["field"].clone())
}

const RANGE: (&str, &str) = ("2026-03-01T00:00:00Z", "2026-03-08T00:00:00Z");

async fn check_tools(client: &Client) {
    let info = client.peer_info().expect("server info after initialize");
    assert!(info.capabilities.tools.is_some(), "tools capability");

    let tools = client.list_all_tools().await.expect("tools/list");
    let names: BTreeSet<String> = tools.iter().map(|t| t.name.to_string()).collect();
    let expected: BTreeSet<String> = [
        "breakdowns",
        "list_users",
        "monitor_events",
        "monitors",
        "sessions",
        "user_detail",
        "users_overview",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(names, expected);
    for tool in &tools {
        assert_eq!(
            tool.input_schema.get("type"),
            Some(&json!("object")),
            "{}",
            tool.name
        );
        assert!(tool.description.is_some(), "{}", tool.name);
    }
    let list_users = tools
        .iter()
        .find(|t| t.name == "list_users")
        .expect("list_users");
    let schema = Value::Object((*list_users.input_schema).clone());
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required, BTreeSet::from(["from", "to"]), "{schema}");
    let text = schema.to_string();
    for name in [
        "search",
        "order_by",
        "COST_SUM",
        "filter",
        "min_cost_sum",
        "first",
        "after",
    ] {
        assert!(
            text.contains(name),
            "list_users schema lacks {name}: {text}"
        );
    }
}

async fn check_figures(client: &Client) {
    let (from, to) = RANGE;
    let overview = answer(client, "users_overview", json!({ "from": from, "to": to })).await;
    let overview = &overview["usersOverview"];
    assert_eq!(overview["uniqueUsers"], 2, "{overview}");
    assert_eq!(overview["traces"], 3);
    assert_eq!(overview["sessions"], 2);
    assert_eq!(overview["tracesPerUser"], 1.5);

    let users = answer(
        client,
        "list_users",
        json!({ "from": from, "to": to, "order_by": "COST_SUM", "direction": "DESC", "first": 1 }),
    )
    .await;
    let users = &users["users"];
    assert_eq!(users["totalCount"], 2, "{users}");
    assert_eq!(users["nodes"][0]["userId"], "ada");
    assert_eq!(users["nodes"][0]["cost"]["sum"], 0.75);
    assert_eq!(users["nodes"][0]["tokens"]["total"], 220);
    assert_eq!(users["pageInfo"]["hasNextPage"], true);
    let after = users["pageInfo"]["endCursor"].clone();
    let next = answer(
        client,
        "list_users",
        json!({ "from": from, "to": to, "order_by": "COST_SUM", "direction": "DESC", "first": 1, "after": after }),
    )
    .await;
    assert_eq!(next["users"]["nodes"][0]["userId"], "bo", "{next}");

    let filtered = answer(
        client,
        "list_users",
        json!({ "from": from, "to": to, "search": "ADA", "filter": { "models": ["gpt-4o-mini"] } }),
    )
    .await;
    assert_eq!(filtered["users"]["totalCount"], 0, "{filtered}");
    let filtered = answer(
        client,
        "list_users",
        json!({ "from": from, "to": to, "filter": { "min_cost_sum": 0.5 } }),
    )
    .await;
    assert_eq!(filtered["users"]["totalCount"], 1, "{filtered}");
    assert_eq!(filtered["users"]["nodes"][0]["userId"], "ada");

    let detail = answer(
        client,
        "user_detail",
        json!({ "user_id": "ada", "activity_days": 3 }),
    )
    .await;
    let detail = &detail["userDetail"];
    assert_eq!(detail["traces"], 2, "{detail}");
    assert_eq!(detail["sessions"], 1);
    assert_eq!(detail["email"], "ada@example.com");
    assert_eq!(detail["cost"]["sum"], 0.75);
    assert_eq!(detail["activity"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        answer(client, "user_detail", json!({ "user_id": "nobody" })).await,
        json!({ "userDetail": null })
    );

    let sessions = answer(client, "sessions", json!({ "user_id": "ada" })).await;
    assert_eq!(sessions["sessions"]["totalCount"], 1, "{sessions}");
    assert_eq!(sessions["sessions"]["nodes"][0]["sessionId"], "s-1");
    assert_eq!(sessions["sessions"]["nodes"][0]["traces"], 2);

    let breakdowns = answer(
        client,
        "breakdowns",
        json!({ "user_id": "ada", "from": from, "to": to }),
    )
    .await;
    let models = &breakdowns["breakdowns"]["models"];
    assert_eq!(models[0]["model"], "gpt-4o", "{breakdowns}");
    assert_eq!(models[0]["calls"], 2);
    assert_eq!(models[0]["cost"], 0.75);

    assert_eq!(
        answer(client, "monitors", json!({})).await,
        json!({ "monitors": [] })
    );
    let events = answer(client, "monitor_events", json!({})).await;
    assert_eq!(events["monitorEvents"]["nodes"], json!([]), "{events}");
}

async fn check_errors(client: &Client) {
    let (from, to) = RANGE;
    assert_eq!(
        refusal(
            client,
            "list_users",
            json!({ "from": from, "to": to, "first": 0 })
        )
        .await,
        (json!("BAD_USER_INPUT"), json!("first"))
    );
    assert_eq!(
        refusal(client, "users_overview", json!({ "from": to, "to": from }))
            .await
            .0,
        json!("BAD_USER_INPUT")
    );
    assert_eq!(
        refusal(
            client,
            "sessions",
            json!({ "user_id": "ada", "from": from })
        )
        .await,
        (json!("BAD_USER_INPUT"), json!("to"))
    );
    assert_eq!(
        refusal(
            client,
            "list_users",
            json!({ "from": from, "to": to, "after": "not-a-cursor" })
        )
        .await,
        (json!("BAD_USER_INPUT"), json!("after"))
    );
    // Arguments that do not fit the schema are refused by the SDK, naming the field.
    let wrong = call(client, "list_users", json!({ "from": from })).await;
    assert_eq!(wrong.is_error, Some(true), "{wrong:?}");
    let text = serde_json::to_string(&wrong.content).expect("content serializes");
    assert!(text.contains("missing field `to`"), "{text}");
}

#[tokio::test]
async fn stdio_handshake_tools_and_exact_figures() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        fixture(&stack).await;
        let client = stdio_client(&stack, &stack.key).await;
        check_tools(&client).await;
        check_figures(&client).await;
        check_errors(&client).await;
        client.cancel().await.expect("close the session");

        // Another project's key sees none of it.
        let (_, other) = keys::create_key(&database.db, "other")
            .await
            .expect("a key");
        let client = stdio_client(&stack, &other).await;
        let (from, to) = RANGE;
        let overview = answer(&client, "users_overview", json!({ "from": from, "to": to })).await;
        assert_eq!(overview["usersOverview"]["uniqueUsers"], 0, "{overview}");
        assert_eq!(
            answer(&client, "user_detail", json!({ "user_id": "ada" })).await,
            json!({ "userDetail": null })
        );
        client.cancel().await.expect("close the session");
        stack.stop().await;
    });
}

#[tokio::test]
async fn stdio_refuses_an_unknown_or_missing_key() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        for key in [Some("ul_not_a_key_0123456789"), None] {
            let mut command = tokio::process::Command::new(userlens_binary());
            command
                .arg("mcp")
                .env("USERLENS_QUERY_URL", format!("http://{}", stack.query))
                .env_remove("USERLENS_API_KEY")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if let Some(key) = key {
                command.env("USERLENS_API_KEY", key);
            }
            let output = tokio::time::timeout(std::time::Duration::from_secs(30), command.output())
                .await
                .expect("exits")
                .expect("runs");
            assert!(!output.status.success(), "{key:?}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            let expected = if key.is_some() {
                "not known"
            } else {
                "USERLENS_API_KEY"
            };
            assert!(stderr.contains(expected), "{key:?}: {stderr}");
        }
        stack.stop().await;
    });
}

async fn http_client(url: &str, key: &str) -> Client {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(key.to_owned()),
    );
    ().serve(transport).await.expect("MCP initialize over HTTP")
}

#[tokio::test]
async fn streamable_http_takes_the_key_of_each_request() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        fixture(&stack).await;
        let process = UserlensProcess::start(
            &["mcp", "--transport", "http", "--mcp-addr", "127.0.0.1:0"],
            &[("USERLENS_QUERY_URL", &format!("http://{}", stack.query))],
            &["mcp-http"],
        )
        .await;
        let url = format!("http://{}/mcp", process.addr("mcp-http"));

        let client = http_client(&url, &stack.key).await;
        check_tools(&client).await;
        check_figures(&client).await;
        check_errors(&client).await;
        client.cancel().await.expect("close");

        let (_, other) = keys::create_key(&database.db, "other")
            .await
            .expect("a key");
        let client = http_client(&url, &other).await;
        let (from, to) = RANGE;
        let overview = answer(&client, "users_overview", json!({ "from": from, "to": to })).await;
        assert_eq!(overview["usersOverview"]["traces"], 0, "{overview}");
        client.cancel().await.expect("close");

        // No key, or an unknown one: HTTP 401 before any MCP message is read.
        for key in [None, Some("Bearer ul_not_a_key_0123456789")] {
            let mut request = reqwest::Client::new()
                .post(&url)
                .header("accept", "application/json, text/event-stream")
                .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }));
            if let Some(key) = key {
                request = request.header("authorization", key);
            }
            let response = request.send().await.expect("post");
            assert_eq!(response.status(), 401, "{key:?}");
            let body: Value = response.json().await.expect("json");
            assert_eq!(body["error"]["data"]["code"], "UNAUTHENTICATED", "{body}");
        }
        process.stop().await;
        stack.stop().await;
    });
}
