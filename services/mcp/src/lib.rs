//! The userlens MCP server: the users page reads as Model Context Protocol tools, for
//! agents. Each tool runs one GraphQL operation on the gateway's data schema in-process
//! ([`userlens_gateway::LocalGraphql`]), so its arguments are checked, limited and refused
//! exactly as over `POST /graphql`, and it reaches users-query over gRPC through the
//! gateway's client. See docs/mcp.md.
//!
//! Transports: stdio (the key from `USERLENS_API_KEY`) and streamable HTTP on `POST /mcp`
//! (the key from each request's `Authorization` header; a request without a known key is
//! refused with 401 before any MCP message is read).

mod tools;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use userlens_gateway::{GatewayError, LocalGraphql};

pub use tools::UserlensTools;

/// Largest MCP request body over HTTP, as for a GraphQL request.
const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("USERLENS_API_KEY is not set: the stdio transport needs the project's key")]
    NoKey,
    #[error("the MCP key is not known to users-query")]
    UnknownKey,
    #[error("MCP stdio session failed: {0}")]
    Stdio(String),
    #[error("the MCP HTTP server stopped serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// Where the tools find users-query.
#[derive(Debug, Clone)]
pub struct McpSettings {
    /// users-query, e.g. `http://127.0.0.1:50051`.
    pub query_url: String,
    /// Deadline of each users-query call.
    pub request_timeout: Duration,
}

/// `Bearer <key>` for a bare key; a value that already names its scheme is kept.
fn authorization(key: &str) -> String {
    let key = key.trim();
    if key.contains(' ') {
        key.to_owned()
    } else {
        format!("Bearer {key}")
    }
}

/// Serves MCP over stdin/stdout with `api_key` until the client closes stdin or `shutdown`
/// completes. An unknown key is refused before the session starts.
pub async fn serve_stdio(
    settings: McpSettings,
    api_key: Option<String>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), McpError> {
    let key = api_key
        .filter(|k| !k.trim().is_empty())
        .ok_or(McpError::NoKey)?;
    let graphql = LocalGraphql::new(&settings.query_url, settings.request_timeout)?;
    let authorization = authorization(&key);
    match graphql.check_key(&authorization).await {
        Ok(()) => {}
        Err(GatewayError::Unauthenticated) => return Err(McpError::UnknownKey),
        Err(error) => return Err(error.into()),
    }
    let tools = UserlensTools::new(Arc::new(graphql), Some(authorization));
    let service = tools
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|error| McpError::Stdio(error.to_string()))?;
    let cancel = service.cancellation_token();
    tokio::select! {
        ended = service.waiting() => {
            ended.map_err(|error| McpError::Stdio(error.to_string()))?;
        }
        () = shutdown => cancel.cancel(),
    }
    Ok(())
}

/// `POST /mcp` (streamable HTTP, stateless, JSON responses) for embedding; `allowed_hosts`
/// are the `Host` values accepted (empty: any), against DNS rebinding of a local server.
pub fn router(settings: &McpSettings, allowed_hosts: &[String]) -> Result<axum::Router, McpError> {
    let graphql = Arc::new(LocalGraphql::new(
        &settings.query_url,
        settings.request_timeout,
    )?);
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_max_request_body_bytes(MAX_BODY_BYTES);
    let config = if allowed_hosts.is_empty() {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(allowed_hosts.iter().cloned())
    };
    let service = {
        let graphql = Arc::clone(&graphql);
        StreamableHttpService::new(
            move || Ok(UserlensTools::new(Arc::clone(&graphql), None)),
            Arc::new(NeverSessionManager::default()),
            config,
        )
    };
    Ok(axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(graphql, require_key)))
}

/// HTTP 401 with a JSON-RPC error body for a request without a key users-query knows.
async fn require_key(
    State(graphql): State<Arc<LocalGraphql>>,
    request: Request,
    next: Next,
) -> Response {
    let value = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    match graphql.check_key(&value).await {
        Ok(()) => next.run(request).await,
        Err(error) => {
            let body = serde_json::json!({
                "jsonrpc": "2.0",
                "id": null,
                "error": {
                    "code": -32001,
                    "message": error.to_string(),
                    "data": { "code": error.code().as_str() },
                },
            });
            (
                http::StatusCode::UNAUTHORIZED,
                [(http::header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}

/// Serves [`router`] on `listener` until `shutdown`, with the shared HTTP limits.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    settings: McpSettings,
    allowed_hosts: Vec<String>,
    http: userlens_server::HttpServerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), McpError> {
    let router = router(&settings, &allowed_hosts)?;
    userlens_server::serve_http(listener, router, &http, shutdown)
        .await
        .map_err(McpError::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_key_becomes_a_bearer_value() {
        assert_eq!(authorization(" ul_abc "), "Bearer ul_abc");
        assert_eq!(authorization("Bearer ul_abc"), "Bearer ul_abc");
    }
}
