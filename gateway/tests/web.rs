//! The users page: the files of `web/` are what the gateway serves, with the right headers,
//! and the page's queries (`web/queries/*.graphql`) pass the served schema's validation and
//! limits. Needs no browser and no Node.js; the browser tests are `tests/web/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use userlens_gateway::{GatewayError, GatewaySettings};

fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web")
}

/// Every file under `dir`, as `/`-separated paths relative to it.
fn files_under(dir: &Path, prefix: &str, found: &mut BTreeSet<String>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.expect("a directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}{name}");
        if entry.file_type().expect("a file type").is_dir() {
            files_under(&entry.path(), &format!("{path}/"), found);
        } else {
            found.insert(path);
        }
    }
}

struct TestGateway {
    base: String,
    http: reqwest::Client,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<Result<(), GatewayError>>,
}

/// A gateway whose users-query is an address nothing listens on: a query that passes
/// validation and the limits reaches the resolvers, which answer UNAVAILABLE.
async fn spawn_gateway() -> TestGateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the gateway");
    let base = format!("http://{}", listener.local_addr().expect("gateway address"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    let query_url = format!("http://{}", closed.local_addr().expect("probe address"));
    drop(closed);
    let settings = GatewaySettings {
        query_url,
        request_timeout: Duration::from_secs(10),
        cors_allowed_origins: Vec::new(),
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
    async fn get(&self, path: &str, if_none_match: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(etag) = if_none_match {
            request = request.header("if-none-match", etag);
        }
        request.send().await.expect("GET")
    }

    async fn stop(self) {
        let _ = self.shutdown.send(());
        let served = tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("the gateway stops after shutdown");
        assert!(matches!(served, Ok(Ok(()))), "serve ended with {served:?}");
    }
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn assert_page_headers(response: &reqwest::Response, what: &str) {
    let csp = header(response, "content-security-policy");
    assert_eq!(
        csp,
        userlens_gateway::CONTENT_SECURITY_POLICY_VALUE,
        "{what}"
    );
    assert!(csp.contains("script-src 'self'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-eval"), "{what}: {csp}");
    assert_eq!(
        header(response, "x-content-type-options"),
        "nosniff",
        "{what}"
    );
    assert_eq!(header(response, "cache-control"), "no-cache", "{what}");
    assert!(header(response, "etag").starts_with('"'), "{what}");
}

#[test]
fn every_file_of_web_is_embedded() {
    let mut on_disk = BTreeSet::new();
    files_under(&web_dir(), "", &mut on_disk);
    let embedded: BTreeSet<String> = userlens_gateway::WEB_ASSETS
        .iter()
        .map(|asset| asset.path.to_owned())
        .collect();
    assert_eq!(
        on_disk, embedded,
        "web/ and WEB_ASSETS in gateway/src/web.rs must list the same files"
    );
    for asset in userlens_gateway::WEB_ASSETS {
        assert!(
            userlens_gateway::content_type_for(asset.path).is_some(),
            "no content type for {}",
            asset.path
        );
    }
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_as_they_are_on_disk() {
    let gateway = spawn_gateway().await;
    let index = std::fs::read(web_dir().join("index.html")).expect("read web/index.html");

    for path in ["/", "/users/user-00001", "/users/a%2Fb%20c"] {
        let response = gateway.get(path, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            header(&response, "content-type"),
            "text/html; charset=utf-8",
            "{path}"
        );
        assert_page_headers(&response, path);
        let etag = header(&response, "etag");
        assert_eq!(response.bytes().await.expect("body"), index, "{path}");
        let again = gateway.get(path, Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.bytes().await.expect("body").is_empty(), "{path}");
    }

    for asset in userlens_gateway::WEB_ASSETS {
        if asset.path == "index.html" {
            continue;
        }
        let path = format!("/assets/{}", asset.path);
        let response = gateway.get(&path, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_page_headers(&response, &path);
        let content_type = header(&response, "content-type");
        let expected = match asset.path.rsplit_once('.').map(|(_, ext)| ext) {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("graphql") => "application/graphql; charset=utf-8",
            Some("svg") => "image/svg+xml",
            _ => "text/plain; charset=utf-8",
        };
        assert_eq!(content_type, expected, "{path}");
        let on_disk = std::fs::read(web_dir().join(asset.path)).expect("read the asset");
        assert_eq!(response.bytes().await.expect("body"), on_disk, "{path}");
    }

    for missing in [
        "/assets/nope.js",
        "/assets/index.html",
        "/assets/%2e%2e/Cargo.toml",
        "/assets/queries/../../Cargo.toml",
        "/users/a/b",
    ] {
        let response = gateway.get(missing, None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{missing}");
    }

    // GraphiQL stays where it was.
    let graphiql = gateway.get("/graphql", None).await;
    assert_eq!(graphiql.status(), StatusCode::OK);
    assert!(
        graphiql
            .text()
            .await
            .expect("GraphiQL page")
            .contains("graphiql")
    );
    gateway.stop().await;
}

/// The Content-Security-Policy refuses inline scripts, inline styles and event-handler
/// attributes; the page must use none, and must build markup without `innerHTML`.
#[test]
fn the_page_uses_nothing_the_content_security_policy_refuses() {
    let index = std::fs::read_to_string(web_dir().join("index.html")).expect("read index.html");
    let lower = index.to_ascii_lowercase();
    for (at, _) in lower.match_indices("<script") {
        let tag_end = lower[at..]
            .find('>')
            .map(|end| at + end)
            .unwrap_or(lower.len());
        assert!(
            lower[at..tag_end].contains(" src="),
            "inline <script> in index.html"
        );
    }
    assert!(!lower.contains("<style"), "inline <style> in index.html");
    assert!(!lower.contains(" style="), "style attribute in index.html");
    assert!(
        !lower.contains(" onclick="),
        "event attribute in index.html"
    );
    for asset in userlens_gateway::WEB_ASSETS {
        if asset.path.ends_with(".js") && !asset.path.starts_with("vendor/") {
            let text = std::str::from_utf8(asset.bytes).expect("UTF-8 script");
            for refused in [
                "innerHTML",
                "outerHTML",
                "eval(",
                "new Function",
                "setAttribute(\"style\"",
            ] {
                assert!(!text.contains(refused), "{} uses {refused}", asset.path);
            }
        }
    }
}

/// Variables for each query of `web/queries/`, as the page sends them.
fn variables_for(name: &str) -> Option<Value> {
    let range = json!({ "from": "2026-10-25T08:00:00Z", "to": "2026-11-24T08:00:00Z" });
    Some(match name {
        "overview" => json!({ "range": range }),
        "users" => json!({
            "range": range,
            "search": "user",
            "orderBy": { "field": "COST_SUM", "direction": "DESC" },
            "first": 50,
            "after": null,
            "trendBuckets": 14,
        }),
        "user_detail" => json!({ "userId": "user-00001", "days": 30 }),
        "sessions" => {
            json!({ "userId": "user-00001", "erroredOnly": true, "first": 25, "after": null })
        }
        _ => return None,
    })
}

#[tokio::test]
async fn the_page_queries_pass_the_served_schema_validation_and_limits() {
    let gateway = spawn_gateway().await;
    let mut queries = BTreeSet::new();
    files_under(&web_dir().join("queries"), "", &mut queries);
    assert!(queries.len() >= 4, "{queries:?}");
    for file in &queries {
        let name = file.trim_end_matches(".graphql");
        let text =
            std::fs::read_to_string(web_dir().join("queries").join(file)).expect("read a query");
        if let Err(error) = async_graphql::parser::parse_query(&text) {
            panic!("web/queries/{file} does not parse: {error}");
        }
        let variables = variables_for(name)
            .unwrap_or_else(|| panic!("add the variables of web/queries/{file} to this test"));
        let response = gateway
            .http
            .post(format!("{}/graphql", gateway.base))
            .header("authorization", "Bearer ul_test_key_for_the_web_queries")
            .json(&json!({ "query": text, "variables": variables }))
            .send()
            .await
            .expect("POST /graphql");
        let body: Value = response.json().await.expect("a GraphQL body");
        let errors = body["errors"].as_array().cloned().unwrap_or_default();
        assert!(!errors.is_empty(), "{file}: {body}");
        // Validation, depth, complexity and selection limits all answer BAD_USER_INPUT
        // before any resolver runs; only resolvers reach the (closed) users-query.
        for error in &errors {
            assert_eq!(
                error["extensions"]["code"], "UNAVAILABLE",
                "web/queries/{file} fails before reaching users-query: {body}"
            );
        }
    }
    gateway.stop().await;
}
