//! Group commit: requests hand their validated spans to a dispatcher task, which gathers
//! whatever has queued up into a group, writes the group (per project, in arrival order) in
//! one transaction and then answers every request of the group.
//!
//! Several groups may be written at once (`WriterSettings::writers`): the database work of
//! one overlaps the commit wait and the CPU work of another. A group that touches a trace of
//! a group still being written waits for it, so copies of one span are committed in arrival
//! order (the later copy wins) and such writers do not queue on each other's row locks.
//!
//! The queue is bounded in bytes (an estimate of what its `SpanRecord`s hold, see
//! [`record_bytes`]): when it is full a request is shed at once (HTTP 429 / gRPC
//! RESOURCE_EXHAUSTED with `RetryInfo`) instead of growing memory, and a request larger
//! than the whole queue is refused for good (HTTP 413 / RESOURCE_EXHAUSTED without
//! `RetryInfo`): it could never be admitted.

use std::collections::HashSet;
use std::mem::size_of;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use userlens_storage::{
    DatabaseConnection, DbBackend, ResourceRecord, SpanRecord, WriteSummary, write_spans,
};

use crate::metrics::IngestMetrics;

#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// Estimated bytes of the spans waiting for the writer or being written, at most;
    /// beyond it requests are shed.
    pub max_queued_bytes: usize,
    /// Spans the writer puts in one transaction, at most (it may exceed it by one request).
    pub max_spans_per_commit: usize,
    /// Transactions written at once; 0 picks one for the database: 1 on SQLite (one writer
    /// at a time anyway), [`DEFAULT_POSTGRES_WRITERS`] on PostgreSQL.
    pub writers: usize,
}

/// Concurrent write transactions on PostgreSQL unless configured otherwise.
pub const DEFAULT_POSTGRES_WRITERS: usize = 3;

impl Default for WriterSettings {
    fn default() -> Self {
        Self {
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_spans_per_commit: 8_192,
            writers: 0,
        }
    }
}

impl WriterSettings {
    /// Transactions written at once on this database.
    pub fn writers_for(&self, backend: DbBackend) -> usize {
        match (self.writers, backend) {
            (_, DbBackend::Sqlite) => 1,
            (0, _) => DEFAULT_POSTGRES_WRITERS,
            (n, _) => n,
        }
    }
}

/// Why a write did not happen. Nothing of the request was written in either case.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("ingest is overloaded, retry later")]
    Overloaded { retry_after: Duration },
    #[error("the database is unavailable, retry later")]
    Unavailable { retry_after: Duration },
    #[error("request holds about {bytes} bytes of spans, more than the whole write queue")]
    LargerThanQueue { bytes: usize, limit: usize },
    /// The write failed for a reason retrying will not fix (corrupt data, a constraint
    /// violation, a panic in the writer).
    #[error("the write failed")]
    Failed,
}

/// Bytes the write queue holds by default: 48 MiB, about 60,000 datagen spans (≈ 800 bytes
/// each as records), a second or two of writing on a 2-core machine. With the request being
/// decoded and the writers' own buffers it keeps ingest under 300 MB of RSS (see
/// docs/reliability.md, "Hardening: ingest memory").
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 48 * 1024 * 1024;

/// What one span takes in memory as a record waiting for the writer: the struct, its
/// strings and JSON, and its facts; not its resource, which the spans of a request share
/// (see [`queued_request_bytes`]). Capacity slack is not counted.
pub fn record_bytes(record: &SpanRecord) -> usize {
    let optional = |value: &Option<String>| value.as_ref().map_or(0, String::len);
    let facts = &record.stored.facts;
    size_of::<SpanRecord>()
        + record.name.len()
        + optional(&record.status_message)
        + record.attributes_json.len()
        + optional(&facts.user_id)
        + optional(&facts.user_email)
        + optional(&facts.session_id)
        + optional(&facts.provider)
        + optional(&facts.model)
        + optional(&facts.tool_name)
        + optional(&facts.issue_id)
        + optional(&facts.issue_title)
        + facts
            .behaviours
            .iter()
            .map(|b| size_of::<String>() + b.len())
            .sum::<usize>()
}

/// What one request's records take in the queue, with the job that carries them: each
/// span, and each resource once (its spans share one copy).
pub fn queued_request_bytes(spans: &[SpanRecord]) -> usize {
    let mut seen = HashSet::new();
    let resource_bytes: usize = spans
        .iter()
        .filter(|span| seen.insert(Arc::as_ptr(&span.resource)))
        .map(|span| size_of::<ResourceRecord>() + span.resource.attributes_json.len())
        .sum();
    size_of::<WriteJob>() + spans.iter().map(record_bytes).sum::<usize>() + resource_bytes
}

/// Queue room held by one request until it is answered; the queued-span gauge follows it.
struct QueueSlot {
    _room: OwnedSemaphorePermit,
    spans: usize,
    queued_spans: Arc<AtomicUsize>,
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.queued_spans.fetch_sub(self.spans, Ordering::Relaxed);
    }
}

pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(1);

struct WriteJob {
    project_id: i64,
    spans: Vec<SpanRecord>,
    _slot: QueueSlot,
    reply: oneshot::Sender<Result<WriteSummary, WriteError>>,
}

/// Handle to the writer task. Dropping every handle lets the task finish the queue and stop.
#[derive(Clone)]
pub struct BatchWriter {
    jobs: mpsc::UnboundedSender<WriteJob>,
    queue_room: Arc<Semaphore>,
    max_queued_bytes: usize,
    queued_spans: Arc<AtomicUsize>,
}

impl BatchWriter {
    /// Starts the writer task; it ends once every handle is dropped and the queue is empty.
    pub fn spawn(
        db: DatabaseConnection,
        settings: WriterSettings,
        metrics: Arc<IngestMetrics>,
    ) -> (Self, WriterTask) {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let (close, closing) = oneshot::channel();
        // Room is taken in one `try_acquire_many` of at most u32::MAX permits.
        let max_queued_bytes = settings
            .max_queued_bytes
            .clamp(1, u32::MAX as usize)
            .min(Semaphore::MAX_PERMITS);
        let queue_room = Arc::new(Semaphore::new(max_queued_bytes));
        let task = tokio::spawn(run_writer(db, settings, receiver, closing, metrics));
        (
            Self {
                jobs,
                queue_room,
                max_queued_bytes,
                queued_spans: Arc::new(AtomicUsize::new(0)),
            },
            WriterTask { task, close },
        )
    }

    /// Queues the spans of one request and waits until they are committed.
    pub async fn write(
        &self,
        project_id: i64,
        spans: Vec<SpanRecord>,
    ) -> Result<WriteSummary, WriteError> {
        // The queue is bounded in bytes (the channel itself is not: room is taken first).
        let bytes = queued_request_bytes(&spans);
        if bytes > self.max_queued_bytes {
            return Err(WriteError::LargerThanQueue {
                bytes,
                limit: self.max_queued_bytes,
            });
        }
        let wanted = u32::try_from(bytes).unwrap_or(u32::MAX);
        let room = Arc::clone(&self.queue_room)
            .try_acquire_many_owned(wanted)
            .map_err(|_| WriteError::Overloaded {
                retry_after: RETRY_AFTER,
            })?;
        self.queued_spans.fetch_add(spans.len(), Ordering::Relaxed);
        let slot = QueueSlot {
            _room: room,
            spans: spans.len(),
            queued_spans: Arc::clone(&self.queued_spans),
        };
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(WriteJob {
                project_id,
                spans,
                _slot: slot,
                reply,
            })
            .map_err(|_| WriteError::Unavailable {
                retry_after: RETRY_AFTER,
            })?;
        // The reply is dropped unanswered only when a write task panicked.
        answer.await.unwrap_or(Err(WriteError::Failed))
    }

    /// True when less than a sixteenth of the queue is free: new requests are then refused
    /// before their bodies are read (see `admission`), since most could not be queued.
    pub fn is_nearly_full(&self) -> bool {
        self.queue_room.available_permits() < self.max_queued_bytes.div_ceil(16)
    }

    /// Spans waiting for the writer or being written now.
    pub fn queued_spans(&self) -> usize {
        self.queued_spans.load(Ordering::Relaxed)
    }

    /// Estimated bytes of the spans waiting for the writer or being written now.
    pub fn queued_bytes(&self) -> usize {
        self.max_queued_bytes - self.queue_room.available_permits()
    }

    /// The most bytes the queue holds.
    pub fn max_queued_bytes(&self) -> usize {
        self.max_queued_bytes
    }
}

/// The writer task. It ends once every [`BatchWriter`] is dropped, or once it is told to
/// finish: a connection that outlives the servers' shutdown bound may still hold a handle.
pub struct WriterTask {
    task: JoinHandle<()>,
    close: oneshot::Sender<()>,
}

impl WriterTask {
    /// Refuses new writes (they get `UNAVAILABLE`), writes every queued one, then returns.
    pub async fn finish(self) {
        let _ = self.close.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, "writer task failed");
        }
    }
}

/// A group being written: the (project, trace) pairs it touches, and its task.
struct InFlight {
    touched: HashSet<(i64, [u8; 16])>,
    task: JoinHandle<()>,
}

async fn run_writer(
    db: DatabaseConnection,
    settings: WriterSettings,
    mut receiver: mpsc::UnboundedReceiver<WriteJob>,
    mut closing: oneshot::Receiver<()>,
    metrics: Arc<IngestMetrics>,
) {
    let writers = settings.writers_for(db.get_database_backend());
    let slots = Arc::new(Semaphore::new(writers));
    let mut in_flight: Vec<InFlight> = Vec::new();
    let mut closed = false;
    loop {
        let first = tokio::select! {
            job = receiver.recv() => match job {
                Some(job) => job,
                None => break,
            },
            // Told to finish (or the task handle is gone): what is queued is still written,
            // then `recv` returns None.
            _ = &mut closing, if !closed => {
                closed = true;
                receiver.close();
                continue;
            }
        };
        // Wait for a free writer first: what queues up meanwhile joins this group.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let mut group = vec![first];
        let mut spans_in_group = group[0].spans.len();
        while spans_in_group < settings.max_spans_per_commit {
            match receiver.try_recv() {
                Ok(job) => {
                    spans_in_group += job.spans.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let touched: HashSet<(i64, [u8; 16])> = group
            .iter()
            .flat_map(|job| job.spans.iter().map(|s| (job.project_id, s.trace_id)))
            .collect();
        let (overlapping, others): (Vec<_>, Vec<_>) = in_flight
            .into_iter()
            .partition(|earlier| !earlier.touched.is_disjoint(&touched));
        in_flight = others;
        for earlier in overlapping {
            if let Err(error) = earlier.task.await {
                tracing::error!(%error, "a write task failed");
            }
        }
        in_flight.retain(|earlier| !earlier.task.is_finished());
        // A group past the commit size (one large request) is written alone: each write
        // holds its own copy of its rows, and several such copies at once would exceed the
        // memory the queue bound promises.
        let exclusive = if spans_in_group > settings.max_spans_per_commit && writers > 1 {
            let others = u32::try_from(writers - 1).unwrap_or(u32::MAX);
            Arc::clone(&slots).acquire_many_owned(others).await.ok()
        } else {
            None
        };
        let db = db.clone();
        let metrics = Arc::clone(&metrics);
        let task = tokio::spawn(async move {
            commit_group(&db, group, &metrics).await;
            drop(slot);
            drop(exclusive);
        });
        in_flight.push(InFlight { touched, task });
    }
    for earlier in in_flight {
        if let Err(error) = earlier.task.await {
            tracing::error!(%error, "a write task failed");
        }
    }
}

/// One transaction per project, jobs in arrival order so a later copy of a span wins.
async fn commit_group(db: &DatabaseConnection, mut group: Vec<WriteJob>, metrics: &IngestMetrics) {
    while !group.is_empty() {
        let project_id = group[0].project_id;
        let (same_project, rest): (Vec<_>, Vec<_>) = group
            .into_iter()
            .partition(|job| job.project_id == project_id);
        group = rest;
        commit_project_group(db, project_id, same_project, metrics).await;
    }
}

async fn commit_project_group(
    db: &DatabaseConnection,
    project_id: i64,
    jobs: Vec<WriteJob>,
    metrics: &IngestMetrics,
) {
    if jobs.len() == 1 {
        for job in jobs {
            let result = write_spans(db, project_id, &job.spans).await;
            finish(job, result, metrics);
        }
        return;
    }
    let span_count = jobs.iter().map(|job| job.spans.len()).sum();
    match write_spans(db, project_id, jobs.iter().flat_map(|job| job.spans.iter())).await {
        Ok(summary) => {
            metrics.record_commit(span_count);
            for job in jobs {
                let _ = job.reply.send(Ok(summary));
            }
        }
        Err(error) => {
            // One request's content must not fail the others: write each on its own.
            tracing::warn!(%error, project_id, requests = jobs.len(), "group commit failed, retrying requests one by one");
            for job in jobs {
                let result = write_spans(db, project_id, &job.spans).await;
                finish(job, result, metrics);
            }
        }
    }
}

fn finish(
    job: WriteJob,
    result: Result<WriteSummary, userlens_storage::StorageError>,
    metrics: &IngestMetrics,
) {
    let answer = match result {
        Ok(summary) => {
            metrics.record_commit(job.spans.len());
            Ok(summary)
        }
        Err(error) => {
            metrics.record_write_failure();
            if crate::error::is_transient(&error) {
                tracing::warn!(%error, project_id = job.project_id, spans = job.spans.len(), "batch not written, the client may retry");
                Err(WriteError::Unavailable {
                    retry_after: RETRY_AFTER,
                })
            } else {
                tracing::error!(%error, project_id = job.project_id, spans = job.spans.len(), "batch not written");
                Err(WriteError::Failed)
            }
        }
    };
    let _ = job.reply.send(answer);
}
