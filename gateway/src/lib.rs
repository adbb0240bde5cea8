//! The userlens GraphQL gateway: the users page API (`schema.graphql`) over HTTP, each field
//! resolved through users-query over gRPC with the caller's API key.
//!
//! Routes: `POST /graphql`, GraphiQL on `GET /graphql`, `GET /healthz` (200 `ok` when
//! users-query's grpc.health answers SERVING, else 503), `GET /metrics` (Prometheus text),
//! and the users page (`web/`, embedded): `GET /`, `GET /users/{id}`, `GET /assets/{path}`.
//!
//! Every request needs an `Authorization` header, forwarded to users-query as
//! `authorization` metadata; without one the answer is HTTP 401 with a GraphQL error of code
//! `UNAUTHENTICATED`, and users-query is never called.

mod analytics;
mod client;
mod erase;
mod error;
mod export;
mod http;
mod metrics;
mod model;
mod monitors;
mod query;
mod scalars;
mod schema;
#[cfg(test)]
mod testing;
mod web;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use error::{ErrorCode, GatewayError};
pub use scalars::{BigInt, Date, DateTime};
pub use schema::schema_sdl;
pub use web::{CONTENT_SECURITY_POLICY_VALUE, WEB_ASSETS, WebAsset, content_type_for};

/// How the gateway reaches users-query and whom it serves.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Where users-query listens, e.g. `http://127.0.0.1:50051`.
    pub query_url: String,
    /// Deadline of each users-query call.
    pub request_timeout: Duration,
    /// Origins allowed by CORS: empty sends no CORS headers, `["*"]` allows any origin.
    pub cors_allowed_origins: Vec<String>,
    /// Timeouts, connection cap and shutdown grace of the HTTP listener.
    pub http: userlens_server::HttpServerSettings,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            query_url: "http://127.0.0.1:50051".to_owned(),
            request_timeout: Duration::from_secs(10),
            cors_allowed_origins: Vec::new(),
            http: userlens_server::HttpServerSettings::default(),
        }
    }
}

/// The gateway's routes, for embedding in another server. Must be called inside a tokio
/// runtime; users-query is connected on first use, so it need not be up yet.
pub fn router(settings: GatewaySettings) -> Result<axum::Router, GatewayError> {
    tokio::runtime::Handle::try_current().map_err(|_| GatewayError::NoRuntime)?;
    let metrics = Arc::new(metrics::Metrics::default());
    let client = client::QueryClient::new(
        &settings.query_url,
        settings.request_timeout,
        Arc::clone(&metrics),
    )?;
    Ok(http::router(client, metrics, &settings.cors_allowed_origins)?.merge(web::router()))
}

/// Serves the gateway on `listener` until `shutdown` completes, then finishes the requests
/// in flight within `settings.http.shutdown_grace` and closes every connection left.
pub async fn serve(
    listener: tokio::net::TcpListener,
    settings: GatewaySettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let query_url = settings.query_url.clone();
    let http_settings = settings.http.clone();
    let router = router(settings)?;
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, %query_url, "gateway listening"),
        Err(error) => tracing::warn!(%error, "gateway listener has no local address"),
    }
    userlens_server::serve_http(listener, router, &http_settings, shutdown)
        .await
        .map_err(GatewayError::Serve)
}
