//! OTLP/gRPC `TraceService/Export` and the native `IngestService`.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use userlens_proto::ingest::v1::ingest_service_server::IngestService;
use userlens_proto::ingest::v1::{
    AnnotateTraceRequest, AnnotateTraceResponse, BatchAck, BatchOutcome, SpanBatch,
};
use userlens_server::auth::{UNAUTHENTICATED_MESSAGE, authenticated};
use userlens_storage::{Annotation, ResolvedKey};

use crate::error::IngestError;
use crate::grpc_status::client_error_code;
use crate::pipeline::Ingestor;

/// Batches of one `StreamSpans` call being written at once; past it the server stops
/// reading the stream (HTTP/2 flow control pushes back on the client).
const MAX_BATCHES_IN_FLIGHT_PER_STREAM: usize = 64;

#[derive(Clone)]
pub struct GrpcIngest {
    pub ingestor: Arc<Ingestor>,
    /// Turns true when the server starts shutting down. An open `StreamSpans` call then
    /// stops reading batches, acknowledges the ones it is writing and ends with
    /// `UNAVAILABLE`, so a client that keeps its stream open cannot hold the shutdown up.
    pub shutting_down: watch::Receiver<bool>,
}

/// Resolves once `shutting_down` turns true; never when its sender is gone without it.
async fn shutdown_started(shutting_down: &mut watch::Receiver<bool>) {
    if shutting_down.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Whether the stream's key still resolves to its project, through the key cache (so a
/// deleted key is noticed once its cache entry expires). A failed lookup keeps the stream
/// going: the write of the batch meets the same database and reports it.
async fn key_still_valid(ingestor: &Ingestor, key: &ResolvedKey) -> bool {
    match ingestor.keys.project_for_hash(&key.key_hash).await {
        Ok(project_id) => project_id == Some(key.project_id),
        Err(error) => {
            tracing::warn!(%error, "re-checking a stream's API key failed");
            true
        }
    }
}

#[tonic::async_trait]
impl TraceService for GrpcIngest {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let project_id = authenticated(&request)?.project_id;
        let outcome = self
            .ingestor
            .export(project_id, request.into_inner().resource_spans)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: (outcome.rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: i64::try_from(outcome.rejected).unwrap_or(i64::MAX),
                error_message: outcome.first_rejection.unwrap_or_default(),
            }),
        }))
    }
}

type AckStream = Pin<Box<dyn Stream<Item = Result<BatchAck, Status>> + Send>>;

#[tonic::async_trait]
impl IngestService for GrpcIngest {
    type StreamSpansStream = AckStream;

    async fn stream_spans(
        &self,
        request: Request<Streaming<SpanBatch>>,
    ) -> Result<Response<Self::StreamSpansStream>, Status> {
        let key = authenticated(&request)?;
        let project_id = key.project_id;
        let mut inbound = request.into_inner();
        let (acks, ack_stream) = mpsc::channel(MAX_BATCHES_IN_FLIGHT_PER_STREAM);
        let in_flight = Arc::new(Semaphore::new(MAX_BATCHES_IN_FLIGHT_PER_STREAM));
        let ingestor = Arc::clone(&self.ingestor);
        let mut shutting_down = self.shutting_down.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    biased;
                    () = shutdown_started(&mut shutting_down) => {
                        // Batches read so far are being written: their acks go out first
                        // (each task sends its ack before giving its permit back), then
                        // the client learns that anything unacknowledged was not read.
                        let all = u32::try_from(MAX_BATCHES_IN_FLIGHT_PER_STREAM)
                            .unwrap_or(u32::MAX);
                        let _ = in_flight.acquire_many(all).await;
                        let _ = acks
                            .send(Err(Status::unavailable(
                                "ingest is shutting down: batches without an ack were not \
                                 stored, send them again",
                            )))
                            .await;
                        break;
                    }
                    message = inbound.message() => message,
                };
                let batch = match message {
                    Ok(Some(batch)) => batch,
                    Ok(None) => break,
                    Err(status) => {
                        // A batch that does not decode or is over the size limit ends the
                        // stream with the code the unary calls use; acks already sent stand.
                        tracing::debug!(%status, "span stream ended");
                        // A compressed batch that inflates past the limit is already
                        // RESOURCE_EXHAUSTED; it must end the stream with that, not silently.
                        let code = client_error_code(status.code()).or_else(|| {
                            (status.code() == tonic::Code::ResourceExhausted)
                                .then_some(status.code())
                        });
                        if let Some(code) = code {
                            let _ = acks.send(Err(Status::new(code, status.message()))).await;
                        }
                        break;
                    }
                };
                // A key deleted while the stream is open stops it within the key cache's
                // TTL: the batches being written are acknowledged first.
                if !key_still_valid(&ingestor, &key).await {
                    ingestor.metrics.record_unauthenticated();
                    let all = u32::try_from(MAX_BATCHES_IN_FLIGHT_PER_STREAM).unwrap_or(u32::MAX);
                    let _ = in_flight.acquire_many(all).await;
                    let _ = acks
                        .send(Err(Status::unauthenticated(format!(
                            "{UNAUTHENTICATED_MESSAGE}: the key was revoked, batch {} and \
                             later ones were not stored",
                            batch.sequence
                        ))))
                        .await;
                    break;
                }
                let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                    break;
                };
                let ingestor = Arc::clone(&ingestor);
                let acks = acks.clone();
                tokio::spawn(async move {
                    let ack = write_batch(&ingestor, project_id, batch).await;
                    let _ = acks.send(Ok(ack)).await;
                    drop(permit);
                });
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(ack_stream))))
    }

    async fn annotate_trace(
        &self,
        request: Request<AnnotateTraceRequest>,
    ) -> Result<Response<AnnotateTraceResponse>, Status> {
        let project_id = authenticated(&request)?.project_id;
        let request = request.into_inner();
        let annotations = request
            .issues
            .into_iter()
            .map(|issue| Annotation::Issue {
                id: issue.id,
                title: Some(issue.title).filter(|t| !t.is_empty()),
            })
            .chain(request.behaviours.into_iter().map(Annotation::Behaviour))
            .collect();
        self.ingestor
            .annotate(project_id, &request.trace_id, annotations)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(AnnotateTraceResponse {}))
    }
}

async fn write_batch(ingestor: &Ingestor, project_id: i64, batch: SpanBatch) -> BatchAck {
    match ingestor.export(project_id, batch.resource_spans).await {
        Ok(outcome) => BatchAck {
            sequence: batch.sequence,
            outcome: BatchOutcome::Durable as i32,
            accepted_spans: outcome.accepted,
            rejected_spans: outcome.rejected,
            message: outcome.first_rejection.unwrap_or_default(),
            retry_after_ms: 0,
        },
        Err(error) => {
            let retry_after_ms = error
                .retry_after()
                .map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX))
                .unwrap_or(0);
            let outcome = match error {
                IngestError::Overloaded { .. } | IngestError::Unavailable { .. } => {
                    BatchOutcome::Retry
                }
                _ => BatchOutcome::Invalid,
            };
            BatchAck {
                sequence: batch.sequence,
                outcome: outcome as i32,
                accepted_spans: 0,
                rejected_spans: 0,
                message: error.to_string(),
                retry_after_ms,
            }
        }
    }
}
