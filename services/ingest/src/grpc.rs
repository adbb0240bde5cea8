//! OTLP/gRPC `TraceService/Export` and the native `IngestService`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use userlens_proto::bounded::ingest::ingest_service_server::IngestService;
use userlens_proto::bounded::trace::trace_service_server::TraceService;
use userlens_proto::ingest::v1::{
    AnnotateTraceRequest, AnnotateTraceResponse, BatchAck, BatchOutcome, SpanBatch,
};
use userlens_server::auth::{UNAUTHENTICATED_MESSAGE, authenticated};
use userlens_storage::{Annotation, ResolvedKey};

use crate::error::IngestError;
use crate::grpc_status::client_error_code;
use crate::pipeline::{DecodeSlot, Ingestor};

/// Batches of one `StreamSpans` call being written at once; past it the server stops
/// reading the stream (HTTP/2 flow control pushes back on the client).
const MAX_BATCHES_IN_FLIGHT_PER_STREAM: usize = 64;

/// How long an ack may wait for room in a `StreamSpans` response (the client reading its
/// acks) before the stream is abandoned. The batch it acknowledges is stored either way.
pub const ACK_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest period of an idle stream's key re-check, whatever the key cache TTL: each
/// re-check past the TTL is one database lookup per open stream.
const MIN_IDLE_KEY_RECHECK: Duration = Duration::from_millis(100);

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
        let slot = request.extensions().get::<DecodeSlot>().cloned();
        let outcome = self
            .ingestor
            .export(project_id, request.into_inner().resource_spans, slot)
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
        let inbound = request.into_inner();
        let (acks, ack_stream) = mpsc::channel(MAX_BATCHES_IN_FLIGHT_PER_STREAM);
        tokio::spawn(run_stream(
            Arc::clone(&self.ingestor),
            key,
            inbound,
            acks,
            self.shutting_down.clone(),
        ));
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

/// Reads the batches of one `StreamSpans` call and writes up to
/// [`MAX_BATCHES_IN_FLIGHT_PER_STREAM`] of them at once, each acknowledged once written.
///
/// The stream ends (after the acks of the batches being written, see `drain`) when the
/// client closes it, sends a batch that does not decode, the server shuts down, or the
/// client leaves an ack unread for [`ACK_SEND_TIMEOUT`]: such a client is abandoned so it
/// cannot hold a writer or the shutdown.
async fn run_stream(
    ingestor: Arc<Ingestor>,
    key: ResolvedKey,
    mut inbound: Streaming<SpanBatch>,
    acks: mpsc::Sender<Result<BatchAck, Status>>,
    mut shutting_down: watch::Receiver<bool>,
) {
    let project_id = key.project_id;
    let in_flight = Arc::new(Semaphore::new(MAX_BATCHES_IN_FLIGHT_PER_STREAM));
    let (stalled, mut client_stalled) = watch::channel(false);
    // A stream that sends nothing re-checks its key once per key cache TTL, so a revoked
    // key closes idle streams too. `Streaming::message` keeps a partly read message in
    // the stream, so the tick cancelling it loses nothing.
    let recheck_every = ingestor.keys.known_ttl().max(MIN_IDLE_KEY_RECHECK);
    let mut idle_recheck =
        tokio::time::interval_at(tokio::time::Instant::now() + recheck_every, recheck_every);
    idle_recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = loop {
        let message = tokio::select! {
            biased;
            () = shutdown_started(&mut shutting_down) => break StreamEnd::ShuttingDown,
            () = shutdown_started(&mut client_stalled) => break StreamEnd::ClientStalled,
            message = inbound.message() => message,
            _ = idle_recheck.tick() => {
                if key_still_valid(&ingestor, &key).await {
                    continue;
                }
                ingestor.metrics.record_unauthenticated();
                break StreamEnd::KeyRevokedWhileIdle;
            }
        };
        let batch = match message {
            Ok(Some(batch)) => batch,
            Ok(None) => break StreamEnd::ClientDone,
            Err(status) => break StreamEnd::BadBatch(status),
        };
        // A key deleted while the stream is open stops it within the key cache's TTL: the
        // batches being written are acknowledged first.
        if !key_still_valid(&ingestor, &key).await {
            ingestor.metrics.record_unauthenticated();
            break StreamEnd::KeyRevoked {
                sequence: batch.sequence,
            };
        }
        // Waiting for room among the batches in flight must not hold the shutdown up
        // either: with a client that reads no acks, none gives its room back until
        // `ACK_SEND_TIMEOUT`.
        let permit = tokio::select! {
            biased;
            () = shutdown_started(&mut shutting_down) => break StreamEnd::ShuttingDown,
            () = shutdown_started(&mut client_stalled) => break StreamEnd::ClientStalled,
            permit = Arc::clone(&in_flight).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break StreamEnd::ClientDone,
            },
        };
        let ingestor = Arc::clone(&ingestor);
        let acks = acks.clone();
        let stalled = stalled.clone();
        tokio::spawn(async move {
            let ack = write_batch(&ingestor, project_id, batch).await;
            // The batch is written (or refused) whether or not its ack gets through.
            if tokio::time::timeout(ACK_SEND_TIMEOUT, acks.send(Ok(ack)))
                .await
                .is_err()
            {
                let _ = stalled.send(true);
            }
            drop(permit);
        });
    };
    // Batches read so far are being written: their acks go out first (each task sends its
    // ack, or gives up on it after `ACK_SEND_TIMEOUT`, before giving its room back), then
    // the stream's last word.
    let all = u32::try_from(MAX_BATCHES_IN_FLIGHT_PER_STREAM).unwrap_or(u32::MAX);
    let _ = in_flight.acquire_many(all).await;
    if matches!(end, StreamEnd::ClientStalled) {
        tracing::warn!(
            project_id,
            "span stream abandoned: its client reads no acks"
        );
    }
    let last_word = match end {
        StreamEnd::ClientDone | StreamEnd::ClientStalled => None,
        StreamEnd::ShuttingDown => Some(Status::unavailable(
            "ingest is shutting down: batches without an ack were not stored, send them again",
        )),
        StreamEnd::BadBatch(status) => {
            tracing::debug!(%status, "span stream ended by a batch that does not decode");
            Some(stream_error(status))
        }
        StreamEnd::KeyRevoked { sequence } => Some(Status::unauthenticated(format!(
            "{UNAUTHENTICATED_MESSAGE}: the key was revoked, batch {sequence} and later ones \
             were not stored"
        ))),
        StreamEnd::KeyRevokedWhileIdle => Some(Status::unauthenticated(format!(
            "{UNAUTHENTICATED_MESSAGE}: the key was revoked while the stream was idle"
        ))),
    };
    if let Some(status) = last_word {
        let _ = tokio::time::timeout(ACK_SEND_TIMEOUT, acks.send(Err(status))).await;
    }
}

enum StreamEnd {
    ClientDone,
    ClientStalled,
    ShuttingDown,
    BadBatch(Status),
    KeyRevoked {
        sequence: u64,
    },
    /// The key was found revoked by the idle re-check, between batches.
    KeyRevokedWhileIdle,
}

/// The status a stream ends with after a batch that could not be read: the code the unary
/// calls use for the same body (tonic reports a protobuf decode failure as INTERNAL and a
/// message over the wire limit as OUT_OF_RANGE; a batch too large once decoded is already
/// RESOURCE_EXHAUSTED, a malformed one INVALID_ARGUMENT). A stream broken by the transport
/// (client gone, reset) gets that status as it is.
fn stream_error(status: Status) -> Status {
    match client_error_code(status.code()) {
        Some(code) => Status::new(code, status.message()),
        None => status,
    }
}

async fn write_batch(ingestor: &Ingestor, project_id: i64, batch: SpanBatch) -> BatchAck {
    match ingestor
        .export(project_id, batch.resource_spans, None)
        .await
    {
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
