//! The userlens users-query role: `userlens.query.v1.UsersQueryService` over gRPC, with
//! grpc.health.v1 and reflection, answering from per-project in-memory snapshots kept
//! current through the data generation, behind a Redis or in-process result cache.

pub mod cache;
pub mod convert;
pub mod error;
pub mod fresh_reads;
pub mod metrics;
pub mod monitoring;
pub mod service;
pub mod snapshots;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use futures::FutureExt;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use userlens_proto::monitors::v1::monitor_service_server::MonitorServiceServer;
use userlens_proto::query::v1::users_query_service_server::UsersQueryServiceServer;
use userlens_server::HttpServerSettings;
use userlens_server::auth::Authenticate;
use userlens_storage::{DatabaseConnection, KeyCacheSettings, KeyResolver};

pub use cache::ResultCache;
pub use metrics::QueryMetrics;
pub use service::QueryService;

pub use userlens_server::ServeError;

/// Limits of the users-query listeners.
#[derive(Debug, Clone)]
pub struct QueryServerSettings {
    /// The `/metrics` + `/healthz` listener.
    pub http: HttpServerSettings,
    /// After shutdown starts, how long gRPC calls in flight may still run.
    pub grpc_shutdown_grace: Duration,
    /// How long known and unknown API keys are trusted without asking the database.
    pub key_cache: KeyCacheSettings,
    /// The monitors' evaluator and webhook delivery, run next to the queries.
    pub monitors: userlens_monitors::MonitorSettings,
}

impl Default for QueryServerSettings {
    fn default() -> Self {
        Self {
            http: HttpServerSettings::default(),
            grpc_shutdown_grace: userlens_server::grpc::DEFAULT_GRPC_SHUTDOWN_GRACE,
            key_cache: KeyCacheSettings::default(),
            monitors: userlens_monitors::MonitorSettings::default(),
        }
    }
}

/// Runs the users-query role until `shutdown` resolves, with the default limits.
/// `http_listener`, when given, serves `GET /metrics` and `GET /healthz`.
pub async fn serve(
    db: DatabaseConnection,
    cache: ResultCache,
    grpc_listener: TcpListener,
    http_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with_settings(
        db,
        cache,
        grpc_listener,
        http_listener,
        &QueryServerSettings::default(),
        shutdown,
    )
    .await
}

/// [`serve`] with the given limits; returns within the shutdown graces after `shutdown`.
pub async fn serve_with_settings(
    db: DatabaseConnection,
    cache: ResultCache,
    grpc_listener: TcpListener,
    http_listener: Option<TcpListener>,
    settings: &QueryServerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let metrics = Arc::new(QueryMetrics::default());
    tracing::info!(cache = cache.kind(), "users-query result cache");
    let snapshots = Arc::new(snapshots::SnapshotStore::new(db.clone()));
    let service = Arc::new(QueryService::with_snapshots(
        Arc::clone(&snapshots),
        cache,
        Arc::clone(&metrics),
    ));
    let keys = Arc::new(KeyResolver::with_settings(db.clone(), settings.key_cache));
    let shutdown = shutdown.boxed().shared();

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<UsersQueryServiceServer<QueryService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(userlens_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("userlens.query.v1.UsersQueryService")
        .with_service_name("userlens.monitors.v1.MonitorService")
        .with_service_name("grpc.health.v1.Health")
        .build_v1()?;
    let grpc = userlens_server::grpc_server_builder()
        .add_service(health_service)
        .add_service(reflection)
        // Every query call is authenticated from its headers before its message is read.
        .add_service(Authenticate::new(
            UsersQueryServiceServer::from_arc(service)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
            Arc::clone(&keys),
        ))
        .add_service(Authenticate::new(
            MonitorServiceServer::new(userlens_monitors::MonitorGrpc::new(db.clone()))
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
            Arc::clone(&keys),
        ))
        // Small responses must not wait on Nagle's algorithm (40 ms with delayed ACKs).
        .serve_with_incoming_shutdown(
            TcpIncoming::from(grpc_listener)
                .with_nodelay(Some(true))
                .with_keepalive(Some(userlens_server::grpc::TCP_KEEPALIVE)),
            shutdown.clone(),
        );
    let grpc =
        userlens_server::serve_with_grace(grpc, shutdown.clone(), settings.grpc_shutdown_grace);
    let monitors = tokio::spawn(userlens_monitors::run(
        db.clone(),
        Arc::new(monitoring::SharedSnapshots {
            snapshots,
            metrics: Arc::clone(&metrics),
        }),
        settings.monitors.clone(),
        shutdown.clone(),
    ));

    match http_listener {
        Some(listener) => {
            let router = Router::new()
                .route(
                    "/metrics",
                    get(move || {
                        let metrics = Arc::clone(&metrics);
                        let keys = Arc::clone(&keys);
                        async move {
                            let lookups = keys.database_lookups();
                            format!(
                                "{}# HELP userlens_query_key_lookups_total API key lookups sent to the database (cache misses).\n# TYPE userlens_query_key_lookups_total counter\nuserlens_query_key_lookups_total {lookups}\n",
                                metrics.render()
                            )
                        }
                    }),
                )
                .route(
                    "/healthz",
                    get(move || {
                        let db = db.clone();
                        async move {
                            match db.ping().await {
                                Ok(()) => (axum::http::StatusCode::OK, "ok\n"),
                                Err(_) => (
                                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                    "database unavailable\n",
                                ),
                            }
                        }
                    }),
                );
            let http = userlens_server::serve_http(listener, router, &settings.http, shutdown);
            let (grpc, http) = tokio::join!(grpc, http);
            grpc?;
            http?;
        }
        None => grpc.await?,
    }
    match monitors.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "monitors stopped"),
        Err(error) => tracing::error!(%error, "monitors task failed"),
    }
    Ok(())
}
