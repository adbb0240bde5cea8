//! Group commit: requests hand their validated spans to a dispatcher task, which gathers
//! whatever has queued up into a group, writes the group (per project, in arrival order) in
//! one transaction and then answers every request of the group.
//!
//! Several groups may be written at once (`WriterSettings::writers`): the database work of
//! one overlaps the commit wait and the CPU work of another. A group that touches a trace of
//! a group still being written waits for it, so copies of one span are committed in arrival
//! order (the later copy wins) and such writers do not queue on each other's row locks.
//!
//! The queue is bounded in spans: when it is full a request is shed at once (HTTP 429 /
//! gRPC RESOURCE_EXHAUSTED) instead of growing memory.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use userlens_storage::{DatabaseConnection, DbBackend, SpanRecord, WriteSummary, write_spans};

use crate::metrics::IngestMetrics;

#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// Spans waiting for the writer, at most; beyond it requests are shed.
    pub max_queued_spans: usize,
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
            max_queued_spans: DEFAULT_MAX_QUEUED_SPANS,
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
}

/// Spans the write queue holds by default: about half a second of writing on a 2-core
/// machine, and ≈ 2 KB of memory per queued span at most.
pub const DEFAULT_MAX_QUEUED_SPANS: usize = 32_768;

pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(1);

struct WriteJob {
    project_id: i64,
    spans: Vec<SpanRecord>,
    _permit: OwnedSemaphorePermit,
    reply: oneshot::Sender<Result<WriteSummary, WriteError>>,
}

/// Handle to the writer task. Dropping every handle lets the task finish the queue and stop.
#[derive(Clone)]
pub struct BatchWriter {
    jobs: mpsc::UnboundedSender<WriteJob>,
    queue_room: Arc<Semaphore>,
    max_queued_spans: usize,
}

impl BatchWriter {
    /// Starts the writer task; it ends once every handle is dropped and the queue is empty.
    pub fn spawn(
        db: DatabaseConnection,
        settings: WriterSettings,
        metrics: Arc<IngestMetrics>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let max_queued_spans = settings.max_queued_spans.max(1);
        let queue_room = Arc::new(Semaphore::new(max_queued_spans));
        let task = tokio::spawn(run_writer(db, settings, receiver, metrics));
        (
            Self {
                jobs,
                queue_room,
                max_queued_spans,
            },
            task,
        )
    }

    /// Queues the spans of one request and waits until they are committed.
    pub async fn write(
        &self,
        project_id: i64,
        spans: Vec<SpanRecord>,
    ) -> Result<WriteSummary, WriteError> {
        // The queue is bounded in spans (the channel itself is not: room is taken first).
        // A request larger than the whole queue takes all of it.
        let wanted = u32::try_from(spans.len().clamp(1, self.max_queued_spans)).unwrap_or(u32::MAX);
        let permit = Arc::clone(&self.queue_room)
            .try_acquire_many_owned(wanted)
            .map_err(|_| WriteError::Overloaded {
                retry_after: RETRY_AFTER,
            })?;
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(WriteJob {
                project_id,
                spans,
                _permit: permit,
                reply,
            })
            .map_err(|_| WriteError::Unavailable {
                retry_after: RETRY_AFTER,
            })?;
        answer.await.unwrap_or(Err(WriteError::Unavailable {
            retry_after: RETRY_AFTER,
        }))
    }

    /// True when less than a sixteenth of the queue is free: new requests are then refused
    /// before their bodies are read (see `admission`), since most could not be queued.
    pub fn is_nearly_full(&self) -> bool {
        self.queue_room.available_permits() < self.max_queued_spans.div_ceil(16)
    }

    /// Spans waiting for the writer now.
    pub fn queued_spans(&self) -> usize {
        self.max_queued_spans - self.queue_room.available_permits()
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
    metrics: Arc<IngestMetrics>,
) {
    let writers = settings.writers_for(db.get_database_backend());
    let slots = Arc::new(Semaphore::new(writers));
    let mut in_flight: Vec<InFlight> = Vec::new();
    while let Some(first) = receiver.recv().await {
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
        let db = db.clone();
        let metrics = Arc::clone(&metrics);
        let task = tokio::spawn(async move {
            commit_group(&db, group, &metrics).await;
            drop(slot);
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
            tracing::error!(%error, project_id = job.project_id, "batch not written");
            metrics.record_write_failure();
            Err(WriteError::Unavailable {
                retry_after: RETRY_AFTER,
            })
        }
    };
    let _ = job.reply.send(answer);
}
