//! The userlens ingest role: OTLP/gRPC and the native `IngestService` on one listener,
//! OTLP/HTTP with `/healthz` and `/metrics` on another. Spans are validated and mapped
//! (SPEC §3), then committed by the group-commit writer before any success is returned.

mod admission;
pub mod error;
pub mod grpc;
mod grpc_status;
pub mod http;
pub mod mapping;
pub mod metrics;
pub mod pipeline;
pub mod writer;

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use userlens_proto::ingest::v1::ingest_service_server::IngestServiceServer;
use userlens_server::auth::{Authenticate, OnRefusal};
use userlens_storage::{DatabaseConnection, KeyCacheSettings, KeyResolver};

pub use error::IngestError;
pub use writer::WriterSettings;

use crate::admission::RefuseWhenQueueFull;
use crate::grpc::GrpcIngest;
use crate::grpc_status::ClientErrorCodes;
use crate::metrics::IngestMetrics;
use crate::pipeline::Ingestor;
use crate::writer::BatchWriter;

/// Default limit of a request body, compressed and decompressed alike.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub max_body_bytes: usize,
    pub writer: WriterSettings,
    /// Timeouts, connection cap and shutdown grace of the OTLP/HTTP listener.
    pub http: userlens_server::HttpServerSettings,
    /// How long known and unknown API keys are trusted without asking the database.
    pub key_cache: KeyCacheSettings,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            writer: WriterSettings::default(),
            http: userlens_server::HttpServerSettings::default(),
            key_cache: KeyCacheSettings::default(),
        }
    }
}

pub use userlens_server::ServeError;

/// Runs the ingest role on the given listeners until `shutdown` resolves, then finishes
/// in-flight requests and the write queue before returning.
pub async fn serve(
    db: DatabaseConnection,
    settings: IngestSettings,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let metrics = Arc::new(IngestMetrics::default());
    let (writer, writer_task) =
        BatchWriter::spawn(db.clone(), settings.writer.clone(), Arc::clone(&metrics));
    let ingestor = Arc::new(Ingestor {
        db: db.clone(),
        keys: Arc::new(KeyResolver::with_settings(db, settings.key_cache)),
        writer,
        metrics,
    });
    let shutdown = shutdown.boxed().shared();
    // Open `StreamSpans` calls end on their own once shutdown starts (see `GrpcIngest`);
    // the gRPC server waits for every open call before it returns.
    let (stop_streams, shutting_down) = tokio::sync::watch::channel(false);
    let grpc_shutdown = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.await;
            let _ = stop_streams.send(true);
        }
    };

    let grpc_service = GrpcIngest {
        ingestor: Arc::clone(&ingestor),
        shutting_down,
    };
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<TraceServiceServer<GrpcIngest>>()
        .await;
    health_reporter
        .set_serving::<IngestServiceServer<GrpcIngest>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(userlens_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("opentelemetry.proto.collector.trace.v1.TraceService")
        .with_service_name("userlens.ingest.v1.IngestService")
        .with_service_name("grpc.health.v1.Health")
        .build_v1()?;
    let max_body_bytes = settings.max_body_bytes;
    // Every ingest call is authenticated from its headers before its message is read;
    // health and reflection stay open.
    let refused: OnRefusal = {
        let metrics = Arc::clone(&ingestor.metrics);
        Arc::new(move || metrics.record_unauthenticated())
    };
    let keys = Arc::clone(&ingestor.keys);
    let grpc = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            Authenticate::new(
                RefuseWhenQueueFull::new(
                    ClientErrorCodes::new(
                        TraceServiceServer::new(grpc_service.clone())
                            .accept_compressed(CompressionEncoding::Gzip)
                            .send_compressed(CompressionEncoding::Gzip)
                            .max_decoding_message_size(max_body_bytes),
                    ),
                    Arc::clone(&ingestor),
                ),
                Arc::clone(&keys),
            )
            .on_refusal(Arc::clone(&refused)),
        )
        .add_service(
            Authenticate::new(
                ClientErrorCodes::new(
                    IngestServiceServer::new(grpc_service)
                        .accept_compressed(CompressionEncoding::Gzip)
                        .send_compressed(CompressionEncoding::Gzip)
                        .max_decoding_message_size(max_body_bytes),
                ),
                keys,
            )
            .on_refusal(refused),
        )
        // Small responses must not wait on Nagle's algorithm (40 ms with delayed ACKs).
        .serve_with_incoming_shutdown(
            TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
            grpc_shutdown,
        );

    let http = userlens_server::serve_http(
        http_listener,
        http::router(Arc::clone(&ingestor), max_body_bytes),
        &settings.http,
        shutdown,
    );

    let (grpc_result, http_result) = tokio::join!(grpc, http);
    drop(ingestor);
    // Every handle of the writer is gone once the servers have stopped: the task finishes
    // the queued batches and ends.
    if let Err(error) = writer_task.await {
        tracing::error!(%error, "writer task failed");
    }
    grpc_result?;
    http_result?;
    Ok(())
}
