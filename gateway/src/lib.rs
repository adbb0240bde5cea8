//! The userlens GraphQL gateway: the users page API (`schema.graphql`) over HTTP, each field
//! resolved through users-query over gRPC with the caller's API key.
//!
//! Routes: `POST /graphql`, GraphiQL on `GET /graphql` (a `graphql-transport-ws` WebSocket for
//! subscriptions when the request upgrades), `GET /healthz` (200 `ok` when
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
mod local;
mod metrics;
mod model;
mod monitors;
mod query;
mod scalars;
mod schema;
mod subscriptions;
#[cfg(test)]
mod testing;
mod web;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use error::{ErrorCode, GatewayError};
pub use local::LocalGraphql;
pub use scalars::{BigInt, Date, DateTime};
pub use schema::schema_sdl;
pub use subscriptions::{CONNECTION_INIT_TIMEOUT, SubscriptionSettings};
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
    /// Pace and limits of GraphQL subscriptions.
    pub subscriptions: SubscriptionSettings,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            query_url: "http://127.0.0.1:50051".to_owned(),
            request_timeout: Duration::from_secs(10),
            cors_allowed_origins: Vec::new(),
            http: userlens_server::HttpServerSettings::default(),
            subscriptions: SubscriptionSettings::default(),
        }
    }
}

/// The gateway's routes, for embedding in another server. Must be called inside a tokio
/// runtime; users-query is connected on first use, so it need not be up yet.
/// Its WebSockets stay open until their clients or the process end them.
pub fn router(settings: GatewaySettings) -> Result<axum::Router, GatewayError> {
    Ok(build(settings)?.0)
}

fn build(
    settings: GatewaySettings,
) -> Result<(axum::Router, Arc<subscriptions::Hub>), GatewayError> {
    tokio::runtime::Handle::try_current().map_err(|_| GatewayError::NoRuntime)?;
    let metrics = Arc::new(metrics::Metrics::default());
    let client = client::QueryClient::new(
        &settings.query_url,
        settings.request_timeout,
        Arc::clone(&metrics),
    )?;
    let hub = subscriptions::Hub::new(settings.subscriptions);
    let router = http::router(
        client,
        metrics,
        &settings.cors_allowed_origins,
        Arc::clone(&hub),
    )?
    .merge(web::router());
    Ok((router, hub))
}

/// Serves the gateway on `listener` until `shutdown` completes, then closes every WebSocket
/// (1001), finishes the requests in flight within `settings.http.shutdown_grace` and closes
/// every connection left.
pub async fn serve(
    listener: tokio::net::TcpListener,
    settings: GatewaySettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let query_url = settings.query_url.clone();
    let http_settings = settings.http.clone();
    let (router, hub) = build(settings)?;
    let shutdown = async move {
        shutdown.await;
        hub.close_all();
    };
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, %query_url, "gateway listening"),
        Err(error) => tracing::warn!(%error, "gateway listener has no local address"),
    }
    userlens_server::serve_http(listener, router, &http_settings, shutdown)
        .await
        .map_err(GatewayError::Serve)
}
