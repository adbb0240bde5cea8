//! A real gateway on an ephemeral port, called over HTTP. users-query is pointed at a closed
//! port: any call that reaches it comes back `UNAVAILABLE`, so a `BAD_USER_INPUT` answer
//! proves the argument was refused before a call.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use userlens_gateway::{GatewayError, GatewaySettings};

const USERS_PAGE_QUERY: &str = include_str!("queries/users_page.graphql");
const USER_PAGE_QUERY: &str = include_str!("queries/user_page.graphql");
const GRAPHIQL_INTROSPECTION_QUERY: &str = include_str!("queries/graphiql_introspection.graphql");
const KEY: &str = "Bearer ul_test_key";
const RANGE: &str = r#"{ from: "2026-10-25T08:00:00Z", to: "2026-11-24T08:00:00Z" }"#;

struct TestGateway {
    base: String,
    http: reqwest::Client,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<Result<(), GatewayError>>,
}

/// An address nothing listens on.
fn closed_address() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    listener.local_addr().expect("probe port address")
}

async fn spawn_gateway(cors_allowed_origins: &[&str]) -> TestGateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the gateway");
    let base = format!("http://{}", listener.local_addr().expect("gateway address"));
    let settings = GatewaySettings {
        query_url: format!("http://{}", closed_address()),
        request_timeout: Duration::from_secs(10),
        cors_allowed_origins: cors_allowed_origins
            .iter()
            .map(|o| (*o).to_owned())
            .collect(),
        ..GatewaySettings::default()
    };
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(userlens_gateway::serve(listener, settings, async move {
        let _ = stop.await;
    }));
    TestGateway {
        base,
        http: reqwest::Client::new(),
        shutdown,
        server,
    }
}

impl TestGateway {
    async fn post_raw(
        &self,
        authorization: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value, Duration) {
        let mut request = self.http.post(format!("{}/graphql", self.base)).json(&body);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let started = Instant::now();
        let response = request.send().await.expect("POST /graphql");
        let status = response.status();
        let body = response.json::<Value>().await.expect("a JSON body");
        (status, body, started.elapsed())
    }

    async fn query(&self, query: &str, variables: Value) -> (StatusCode, Value) {
        let (status, body, _) = self
            .post_raw(Some(KEY), json!({ "query": query, "variables": variables }))
            .await;
        (status, body)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET")
    }

    async fn stop(self) {
        let _ = self.shutdown.send(());
        let served = tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("the gateway stops after shutdown");
        assert!(matches!(served, Ok(Ok(()))), "serve ended with {served:?}");
    }
}

fn codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    e["extensions"]["code"]
                        .as_str()
                        .unwrap_or("<none>")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The one error of `body` is BAD_USER_INPUT naming `field`.
fn assert_bad_input(body: &Value, field: Option<&str>, case: &str) {
    assert_eq!(codes(body), ["BAD_USER_INPUT"], "{case}: {body}");
    if let Some(field) = field {
        assert_eq!(
            body["errors"][0]["extensions"]["field"], field,
            "{case}: {body}"
        );
    }
}

#[tokio::test]
async fn a_request_without_authorization_is_401_unauthenticated() {
    let gateway = spawn_gateway(&[]).await;
    let query = json!({ "query": format!("{{ usersOverview(range: {RANGE}) {{ traces }} }}") });
    for authorization in [None, Some(""), Some("   ")] {
        let (status, body, _) = gateway.post_raw(authorization, query.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(codes(&body), ["UNAUTHENTICATED"], "{body}");
        assert!(body["errors"][0]["message"].is_string());
        assert_eq!(body["data"], Value::Null);
    }
    // Introspection needs a key too.
    let (status, _, _) = gateway
        .post_raw(None, json!({ "query": "{ __typename }" }))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let metrics = gateway
        .get("/metrics")
        .await
        .text()
        .await
        .expect("metrics body");
    assert!(
        metrics.contains("userlens_gateway_graphql_errors_total{code=\"UNAUTHENTICATED\"} 4"),
        "{metrics}"
    );
    assert!(metrics.contains(
        "userlens_gateway_query_call_duration_seconds_count{method=\"GetUsersOverview\"} 0"
    ));
    gateway.stop().await;
}

#[tokio::test]
async fn bad_arguments_are_refused_before_any_users_query_call() {
    let gateway = spawn_gateway(&[]).await;
    let inverted = r#"{ from: "2026-11-24T08:00:00Z", to: "2026-10-25T08:00:00Z" }"#;
    let empty = r#"{ from: "2026-11-24T08:00:00Z", to: "2026-11-24T08:00:00Z" }"#;
    let cases: Vec<(&str, String, &str)> = vec![
        ("first 0", format!("{{ users(range: {RANGE}, first: 0) {{ totalCount }} }}"), "first"),
        ("first 201", format!("{{ users(range: {RANGE}, first: 201) {{ totalCount }} }}"), "first"),
        ("first negative", format!("{{ users(range: {RANGE}, first: -5) {{ totalCount }} }}"), "first"),
        ("empty range", format!("{{ users(range: {empty}) {{ totalCount }} }}"), "range"),
        ("inverted range", format!("{{ users(range: {inverted}) {{ totalCount }} }}"), "range"),
        ("overview inverted range", format!("{{ usersOverview(range: {inverted}) {{ traces }} }}"), "range"),
        ("overview empty range", format!("{{ usersOverview(range: {empty}) {{ traces }} }}"), "range"),
        ("trend 0 on nodes", format!("{{ users(range: {RANGE}) {{ nodes {{ trend(buckets: 0) }} }} }}"), "buckets"),
        ("trend 61 on edges", format!("{{ users(range: {RANGE}) {{ edges {{ node {{ trend(buckets: 61) }} }} }} }}"), "buckets"),
        (
            "trend 61 behind an alias",
            format!("{{ users(range: {RANGE}) {{ nodes {{ ok: trend x: trend(buckets: 61) }} }} }}"),
            "buckets",
        ),
        (
            "trend 0 in a fragment",
            format!("{{ users(range: {RANGE}) {{ edges {{ node {{ ...Row }} }} }} }} fragment Row on UserRow {{ trend(buckets: 0) }}"),
            "buckets",
        ),
        ("activity 0", "{ userDetail(userId: \"u\") { activity(days: 0) { date } } }".into(), "days"),
        ("activity 366", "{ userDetail(userId: \"u\") { a: activity { date } b: activity(days: 366) { date } } }".into(), "days"),
        (
            "nested breakdowns range",
            format!("{{ userDetail(userId: \"u\") {{ breakdowns(range: {inverted}) {{ tools {{ tool }} }} }} }}"),
            "range",
        ),
        ("sessions first 0", "{ sessions(userId: \"u\", first: 0) { totalCount } }".into(), "first"),
        ("sessions first 201", "{ sessions(userId: \"u\", first: 201) { totalCount } }".into(), "first"),
        ("sessions range", format!("{{ sessions(userId: \"u\", range: {inverted}) {{ totalCount }} }}"), "range"),
        ("breakdowns range", format!("{{ breakdowns(userId: \"u\", range: {empty}) {{ tools {{ tool }} }} }}"), "range"),
    ];
    for (case, query, field) in &cases {
        let (status, body) = gateway.query(query, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{case}");
        assert_bad_input(&body, Some(field), case);
    }

    // Variables are resolved before checking, and a search is measured after trimming.
    let users_query = "query($range: TimeRangeInput!, $search: String, $first: Int, $b: Int) {
        users(range: $range, search: $search, first: $first) { totalCount nodes { trend(buckets: $b) } } }";
    let range = json!({ "from": "2026-10-25T08:00:00+02:00", "to": "2026-11-24T08:00:00Z" });
    let variable_cases = [
        (
            "search of 501 characters",
            json!({ "range": range, "search": "ü".repeat(501) }),
            "search",
        ),
        (
            "first variable",
            json!({ "range": range, "first": 500 }),
            "first",
        ),
        (
            "buckets variable",
            json!({ "range": range, "b": 100 }),
            "buckets",
        ),
    ];
    for (case, variables, field) in variable_cases {
        let (_, body) = gateway.query(users_query, variables).await;
        assert_bad_input(&body, Some(field), case);
    }
    // 500 characters once trimmed are fine: the call is attempted (and fails: no users-query).
    let (_, body) = gateway
        .query(
            users_query,
            json!({ "range": range, "search": format!("  {}  ", "ü".repeat(500)) }),
        )
        .await;
    assert_eq!(codes(&body), ["UNAVAILABLE"], "{body}");

    // Malformed scalars are the request's fault too.
    let malformed = [
        ("bad DateTime literal", r#"{ usersOverview(range: { from: "yesterday", to: "2026-11-24T08:00:00Z" }) { traces } }"#.to_owned(), json!({})),
        (
            "bad DateTime variable",
            "query($r: TimeRangeInput!) { usersOverview(range: $r) { traces } }".to_owned(),
            json!({ "r": { "from": "2026-13-01T00:00:00Z", "to": "2026-11-24T08:00:00Z" } }),
        ),
        ("not a query", "{ users(".to_owned(), json!({})),
        ("unknown field", "{ nope }".to_owned(), json!({})),
    ];
    for (case, query, variables) in malformed {
        let (status, body) = gateway.query(&query, variables).await;
        assert_eq!(status, StatusCode::OK, "{case}");
        assert_bad_input(&body, None, case);
    }

    let metrics = gateway
        .get("/metrics")
        .await
        .text()
        .await
        .expect("metrics body");
    for rpc in [
        "GetUsersOverview",
        "GetUserDetail",
        "ListSessions",
        "GetBreakdowns",
    ] {
        assert!(
            metrics.contains(&format!(
                "userlens_gateway_query_call_duration_seconds_count{{method=\"{rpc}\"}} 0"
            )),
            "{rpc} was called:\n{metrics}"
        );
    }
    assert!(
        metrics
            .contains("userlens_gateway_query_call_duration_seconds_count{method=\"ListUsers\"} 1")
    );
    gateway.stop().await;
}

#[tokio::test]
async fn an_unreachable_users_query_is_unavailable_quickly() {
    let gateway = spawn_gateway(&[]).await;
    let variables = json!({
        "range": { "from": "2026-10-25T08:00:00Z", "to": "2026-11-24T08:00:00Z" },
        "orderBy": { "field": "COST_SUM", "direction": "DESC" }
    });
    let started = Instant::now();
    let (status, body) = gateway.query(USERS_PAGE_QUERY, variables).await;
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(codes(&body), ["UNAVAILABLE", "UNAVAILABLE"], "{body}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    // Internal details stay in the logs.
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");

    let variables = json!({ "userId": "user-1", "range": null });
    let started = Instant::now();
    let (_, body) = gateway.query(USER_PAGE_QUERY, variables).await;
    assert_eq!(codes(&body), ["UNAVAILABLE", "UNAVAILABLE"], "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let health = gateway.get("/healthz").await;
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    gateway.stop().await;
}

#[tokio::test]
async fn a_blackholed_users_query_is_unavailable_within_the_connect_timeout() {
    // 10.255.255.1 is not routed on a test machine: SYNs go unanswered (or fail at once).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let settings = GatewaySettings {
        query_url: "http://10.255.255.1:50051".to_owned(),
        request_timeout: Duration::from_secs(30),
        cors_allowed_origins: Vec::new(),
        ..GatewaySettings::default()
    };
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(userlens_gateway::serve(listener, settings, async move {
        let _ = stop.await;
    }));
    let started = Instant::now();
    let body: Value = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .header("authorization", KEY)
        .json(&json!({ "query": format!("{{ usersOverview(range: {RANGE}) {{ traces }} }}") }))
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON");
    assert_eq!(codes(&body), ["UNAVAILABLE"], "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let _ = shutdown.send(());
    let _ = server.await;
}

#[tokio::test]
async fn the_real_pages_pass_validation() {
    let gateway = spawn_gateway(&[]).await;
    // Past validation they reach users-query, which is down: UNAVAILABLE, not a limit error.
    let users =
        json!({ "range": { "from": "2026-10-25T08:00:00Z", "to": "2026-11-24T08:00:00Z" } });
    let (_, body) = gateway.query(USERS_PAGE_QUERY, users).await;
    assert_eq!(codes(&body), ["UNAVAILABLE", "UNAVAILABLE"], "{body}");
    let user = json!({ "userId": "u", "range": { "from": "2026-10-25T08:00:00Z", "to": "2026-11-24T08:00:00Z" } });
    let (_, body) = gateway.query(USER_PAGE_QUERY, user).await;
    assert_eq!(codes(&body), ["UNAVAILABLE", "UNAVAILABLE"], "{body}");
    gateway.stop().await;
}

fn nested_of_type(levels: usize) -> String {
    let mut selection = "name".to_owned();
    for _ in 0..levels {
        selection = format!("ofType {{ {selection} }}");
    }
    selection
}

#[tokio::test]
async fn queries_deeper_than_10_are_refused() {
    let gateway = spawn_gateway(&[]).await;
    // __schema > types > fields > type > 6 × ofType > name = 11 levels, next to a data field.
    let depth_11 = format!(
        "{{ usersOverview(range: {RANGE}) {{ traces }} __schema {{ types {{ fields {{ type {{ {} }} }} }} }} }}",
        nested_of_type(6)
    );
    let (_, body) = gateway.query(&depth_11, json!({})).await;
    assert_bad_input(&body, None, "depth 11");
    assert_eq!(body["errors"][0]["message"], "Query is nested too deep.");

    // Depth 10 passes validation (and then finds users-query down).
    let depth_10 = format!(
        "{{ usersOverview(range: {RANGE}) {{ traces }} __schema {{ types {{ fields {{ type {{ {} }} }} }} }} }}",
        nested_of_type(5)
    );
    let (_, body) = gateway.query(&depth_10, json!({})).await;
    assert_eq!(codes(&body), ["UNAVAILABLE"], "{body}");

    // Pure introspection may go to 15 (GraphiQL's own query), not further.
    let depth_16 = format!(
        "{{ __schema {{ types {{ fields {{ args {{ type {{ {} }} }} }} }} }} }}",
        nested_of_type(10)
    );
    let (_, body) = gateway.query(&depth_16, json!({})).await;
    assert_bad_input(&body, None, "introspection depth 16");
    gateway.stop().await;
}

#[tokio::test]
async fn graphiql_and_codegen_introspection_works() {
    let gateway = spawn_gateway(&[]).await;
    let (status, body) = gateway.query(GRAPHIQL_INTROSPECTION_QUERY, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.get("errors").is_none(), "{}", body["errors"]);
    let types = body["data"]["__schema"]["types"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(types > 20, "{types} types");
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");

    let page = gateway.get("/graphql").await;
    assert_eq!(page.status(), StatusCode::OK);
    let content_type = page
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = page.text().await.expect("GraphiQL page");
    assert!(html.contains("graphiql"), "{html}");
    assert!(html.contains("/graphql"));
    gateway.stop().await;
}

#[tokio::test]
async fn alias_abuse_is_refused_by_the_complexity_budget() {
    let gateway = spawn_gateway(&[]).await;
    let fan_out: String = (0..11)
        .map(|i| format!("o{i}: usersOverview(range: {RANGE}) {{ traces }} "))
        .collect();
    let wide_fields: String = (0..1000).map(|i| format!("t{i}: traces ")).collect();
    let wide_introspection: String = (0..600)
        .map(|i| format!("t{i}: __type(name: \"UserRow\") {{ name }} "))
        .collect();
    let wide_trends: String = (0..200)
        .map(|i| format!("t{i}: trend(buckets: {}) ", i % 60 + 1))
        .collect();
    for (case, query) in [
        ("11 users-query calls", format!("{{ {fan_out} }}")),
        (
            "1000 aliased fields",
            format!("{{ usersOverview(range: {RANGE}) {{ {wide_fields} }} }}"),
        ),
        ("600 aliased __type", format!("{{ {wide_introspection} }}")),
        (
            "200 trends",
            format!("{{ users(range: {RANGE}) {{ nodes {{ {wide_trends} }} }} }}"),
        ),
    ] {
        let (_, body) = gateway.query(&query, json!({})).await;
        assert_bad_input(&body, None, case);
        assert_eq!(
            body["errors"][0]["message"], "Query is too complex.",
            "{case}"
        );
    }
    // Two calls side by side, as the users page makes, are fine.
    let (_, body) = gateway
        .query(&format!("{{ a: usersOverview(range: {RANGE}) {{ traces }} b: users(range: {RANGE}) {{ totalCount }} }}"), json!({}))
        .await;
    assert_eq!(codes(&body), ["UNAVAILABLE", "UNAVAILABLE"], "{body}");
    gateway.stop().await;
}

async fn preflight(gateway: &TestGateway, origin: &str) -> reqwest::Response {
    gateway
        .http
        .request(Method::OPTIONS, format!("{}/graphql", gateway.base))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .expect("OPTIONS /graphql")
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tokio::test]
async fn cors_follows_the_allowed_origins() {
    let gateway = spawn_gateway(&[]).await;
    let response = preflight(&gateway, "https://app.example.com").await;
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    gateway.stop().await;

    let gateway = spawn_gateway(&["https://app.example.com"]).await;
    let response = preflight(&gateway, "https://app.example.com").await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );
    let methods = header(&response, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("POST"), "{methods}");
    let headers = header(&response, "access-control-allow-headers")
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );
    let response = preflight(&gateway, "https://evil.example.com").await;
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    gateway.stop().await;

    let gateway = spawn_gateway(&["*"]).await;
    let response = preflight(&gateway, "https://anywhere.example.com").await;
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    // Actual responses carry it too, errors included.
    let response = gateway
        .http
        .post(format!("{}/graphql", gateway.base))
        .header("origin", "https://anywhere.example.com")
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    gateway.stop().await;
}

#[tokio::test]
async fn malformed_bodies_are_bad_requests() {
    let gateway = spawn_gateway(&[]).await;
    let response = gateway
        .http
        .post(format!("{}/graphql", gateway.base))
        .header("authorization", KEY)
        .header("content-type", "application/json")
        .body("{ not json")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("a GraphQL error body");
    assert_eq!(codes(&body), ["BAD_USER_INPUT"]);

    let response = gateway
        .http
        .post(format!("{}/graphql", gateway.base))
        .header("authorization", KEY)
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    gateway.stop().await;
}

#[tokio::test]
async fn responses_use_the_media_type_the_client_accepts() {
    let gateway = spawn_gateway(&[]).await;
    for (accept, expected) in [
        (None, "application/json"),
        (Some("application/json"), "application/json"),
        (
            Some("application/graphql-response+json, application/json;q=0.9"),
            "application/graphql-response+json",
        ),
    ] {
        let mut request = gateway
            .http
            .post(format!("{}/graphql", gateway.base))
            .header("authorization", KEY)
            .json(&json!({ "query": "{ __typename }" }));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await.expect("POST");
        assert_eq!(header(&response, "content-type").as_deref(), Some(expected));
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["data"]["__typename"], "Query");
    }
    gateway.stop().await;
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let gateway = spawn_gateway(&[]).await;
    let _ = gateway
        .query(
            &format!("{{ usersOverview(range: {RANGE}) {{ traces }} }}"),
            json!({}),
        )
        .await;
    let response = gateway.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        header(&response, "content-type")
            .unwrap_or_default()
            .starts_with("text/plain")
    );
    let text = response.text().await.expect("metrics body");
    assert!(
        text.contains("userlens_gateway_graphql_requests_total 1\n"),
        "{text}"
    );
    assert!(
        text.contains("userlens_gateway_graphql_errors_total{code=\"UNAVAILABLE\"} 1\n"),
        "{text}"
    );
    assert!(text.contains(
        "userlens_gateway_query_call_duration_seconds_count{method=\"GetUsersOverview\"} 1\n"
    ));
    assert!(
        text.contains(
            "userlens_gateway_query_call_failures_total{method=\"GetUsersOverview\"} 1\n"
        )
    );
    gateway.stop().await;
}

#[tokio::test]
async fn bad_settings_are_reported() {
    let settings = GatewaySettings {
        query_url: "not a url".to_owned(),
        ..GatewaySettings::default()
    };
    assert!(matches!(
        userlens_gateway::router(settings),
        Err(GatewayError::InvalidQueryUrl { .. })
    ));
    let settings = GatewaySettings {
        cors_allowed_origins: vec!["example.com".to_owned()],
        ..GatewaySettings::default()
    };
    assert!(matches!(
        userlens_gateway::router(settings),
        Err(GatewayError::InvalidCorsOrigin(_))
    ));
    assert!(userlens_gateway::router(GatewaySettings::default()).is_ok());
}

#[test]
fn building_the_router_outside_a_runtime_is_an_error() {
    assert!(matches!(
        userlens_gateway::router(GatewaySettings::default()),
        Err(GatewayError::NoRuntime)
    ));
}
