//! The userlens ingest role: OTLP/gRPC and the native `IngestService` on one listener,
//! OTLP/HTTP with `/healthz` and `/metrics` on another. Spans are validated and mapped
//! (SPEC §3), then committed by the group-commit writer before any success is returned.

pub mod admission;
pub mod error;
pub mod grpc;
mod grpc_status;
pub mod http;
mod json_size;
pub mod mapping;
pub mod metrics;
pub mod pipeline;
pub mod writer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use userlens_proto::bounded::ingest::ingest_service_server::IngestServiceServer;
use userlens_proto::bounded::trace::trace_service_server::TraceServiceServer;
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

/// How long the gRPC server waits after a shutdown signal for its connections to close,
/// unless configured otherwise. Open `StreamSpans` calls end at once (after acknowledging
/// what they are writing, at most `grpc::ACK_SEND_TIMEOUT` per ack), so this bounds only
/// clients that neither read nor close.
pub const GRPC_SHUTDOWN_GRACE: Duration = userlens_server::grpc::DEFAULT_GRPC_SHUTDOWN_GRACE;

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
        decode_slots: Arc::new(tokio::sync::Semaphore::new(pipeline::DECODE_SLOTS)),
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
    // Keepalives find dead peers, and streams per connection are capped (see
    // `userlens_server::grpc`).
    let grpc = userlens_server::grpc_server_builder()
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
            TcpIncoming::from(grpc_listener)
                .with_nodelay(Some(true))
                .with_keepalive(Some(userlens_server::grpc::TCP_KEEPALIVE)),
            grpc_shutdown,
        );
    // The gRPC server waits for every connection to close, which a client that neither
    // reads nor closes would never do: past the grace the remaining ones are left behind.
    let grpc =
        userlens_server::serve_with_grace(grpc, shutdown.clone(), settings.http.shutdown_grace);

    let http = userlens_server::serve_http(
        http_listener,
        http::router(Arc::clone(&ingestor), max_body_bytes),
        &settings.http,
        shutdown,
    );

    let (grpc_result, http_result) = tokio::join!(grpc, http);
    drop(ingestor);
    // The queued batches are written before returning; a connection left behind by the
    // grace above may still hold a handle of the writer, so it is told to finish.
    writer_task.finish().await;
    grpc_result?;
    http_result?;
    Ok(())
}
