//! Retention by age (`USERLENS_RETENTION_DAYS`, SPEC §10): traces whose time is older than
//! the limit are deleted with their spans and annotations, in bounded batches, except the
//! first trace of each user, which is kept whatever its age so that first seen, new and
//! returning users and retention cohorts keep their meaning.
//!
//! Each batch is one short transaction in the write path's lock order (`write.rs`): its
//! trace rows are locked in trace id order (PostgreSQL; SQLite's first write takes its one
//! write lock), the batch is read again under the locks, deleted, and the project's data
//! generation advanced and stamped as its `erased_generation`, so cached answers miss and
//! every users-query process rebuilds its snapshot of the project on its next query, as
//! after an erasure of a user (`erase.rs`).

use std::collections::BTreeSet;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};

use crate::erase::{advance_erased_generation, delete_by_traces, lock_traces, placeholders};
use crate::error::StorageError;
use crate::write::{fixed_bytes, retry_on_conflict};

/// Traces deleted per transaction: a batch holds its locks for a few milliseconds.
pub const TRACES_PER_BATCH: u64 = 1_000;
/// Pause between two batches, so writers and readers get the database in between.
const PAUSE_BETWEEN_BATCHES: Duration = Duration::from_millis(20);
const NS_PER_DAY: i64 = 86_400_000_000_000;

/// How the retention job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Traces whose time is more than this many days before now are deleted.
    pub days: u32,
    /// How often a pass runs (the first one right at start).
    pub interval: Duration,
}

/// What one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionSummary {
    pub traces_removed: u64,
    pub spans_removed: u64,
    pub annotations_removed: u64,
    /// Transactions committed.
    pub batches: u64,
}

/// The trace time before which traces are deleted, `days` before `now_ns`.
pub fn cutoff_ns(now_ns: i64, days: u32) -> i64 {
    now_ns.saturating_sub(i64::from(days).saturating_mul(NS_PER_DAY))
}

/// Deletes, project by project, every trace older than `cutoff_ns` that is not the first
/// trace of its user, a batch at a time.
pub async fn delete_older_than(
    db: &DatabaseConnection,
    cutoff_ns: i64,
) -> Result<RetentionSummary, StorageError> {
    let backend = db.get_database_backend();
    let projects: Vec<i64> = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT id FROM projects ORDER BY id",
        ))
        .await?
        .iter()
        .map(|row| row.try_get_by_index::<i64>(0))
        .collect::<Result<_, _>>()?;
    let mut summary = RetentionSummary::default();
    for project_id in projects {
        loop {
            let batch = retry_on_conflict(|| delete_batch(db, project_id, cutoff_ns)).await?;
            summary.traces_removed += batch.traces_removed;
            summary.spans_removed += batch.spans_removed;
            summary.annotations_removed += batch.annotations_removed;
            if batch.traces_removed == 0 {
                break;
            }
            summary.batches += 1;
            if batch.traces_removed < TRACES_PER_BATCH {
                break;
            }
            tokio::time::sleep(PAUSE_BETWEEN_BATCHES).await;
        }
    }
    Ok(summary)
}

/// The traces of the project older than the cutoff, but a user's earliest trace, at most
/// one batch of them.
const EXPIRED_SQL: &str = "SELECT t.trace_id FROM traces t WHERE t.project_id = {1} \
     AND t.started_ns < {2} AND t.change_generation >= 0 \
     AND (t.user_id IS NULL OR t.started_ns > (SELECT min(u.started_ns) FROM traces u \
          WHERE u.project_id = t.project_id AND u.user_id = t.user_id \
          AND u.change_generation >= 0)) \
     ORDER BY t.started_ns LIMIT {3}";

async fn expired(
    db: &impl ConnectionTrait,
    project_id: i64,
    cutoff_ns: i64,
) -> Result<BTreeSet<[u8; 16]>, StorageError> {
    let backend = db.get_database_backend();
    let statement = Statement::from_sql_and_values(
        backend,
        placeholders(backend, EXPIRED_SQL, 3),
        [
            project_id.into(),
            cutoff_ns.into(),
            (TRACES_PER_BATCH as i64).into(),
        ],
    );
    let mut ids = BTreeSet::new();
    for row in db.query_all_raw(statement).await? {
        ids.insert(fixed_bytes::<16>(row.try_get_by_index(0)?, "trace id")?);
    }
    Ok(ids)
}

async fn delete_batch(
    db: &DatabaseConnection,
    project_id: i64,
    cutoff_ns: i64,
) -> Result<RetentionSummary, StorageError> {
    let backend = db.get_database_backend();
    // Read without locks first (cheap to skip a project with nothing to delete).
    let candidates: Vec<[u8; 16]> = expired(db, project_id, cutoff_ns)
        .await?
        .into_iter()
        .collect();
    if candidates.is_empty() {
        return Ok(RetentionSummary::default());
    }
    let txn = db.begin().await?;
    if backend == DbBackend::Postgres {
        lock_traces(&txn, project_id, &candidates).await?;
    } else {
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            "UPDATE projects SET data_generation = data_generation WHERE id = ?",
            [project_id.into()],
        ))
        .await?;
    }
    // Under the locks: only what is still expired (a locked trace cannot change, and a user's
    // first trace cannot become a later one while it is held).
    let still: BTreeSet<[u8; 16]> = expired(&txn, project_id, cutoff_ns).await?;
    let doomed: Vec<[u8; 16]> = candidates
        .into_iter()
        .filter(|t| still.contains(t))
        .collect();
    let mut summary = RetentionSummary::default();
    for chunk in doomed.chunks(crate::write::ROWS_PER_STATEMENT) {
        summary.spans_removed += delete_by_traces(&txn, "spans", project_id, chunk, None).await?;
        summary.annotations_removed +=
            delete_by_traces(&txn, "trace_annotations", project_id, chunk, None).await?;
        summary.traces_removed += delete_by_traces(&txn, "traces", project_id, chunk, None).await?;
    }
    if summary.traces_removed == 0 {
        txn.rollback().await?;
        return Ok(summary);
    }
    advance_erased_generation(&txn, project_id).await?;
    txn.commit().await?;
    Ok(summary)
}

/// Runs a pass at start and then every `settings.interval` until `shutdown` resolves.
pub async fn run(
    db: DatabaseConnection,
    settings: RetentionSettings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        let cutoff = cutoff_ns(now_ns(), settings.days);
        let pass = tokio::select! {
            _ = &mut shutdown => return,
            pass = delete_older_than(&db, cutoff) => pass,
        };
        match pass {
            Ok(summary) if summary.traces_removed > 0 => tracing::info!(
                days = settings.days,
                traces = summary.traces_removed,
                spans = summary.spans_removed,
                batches = summary.batches,
                "retention: old traces deleted"
            ),
            Ok(_) => tracing::debug!("retention: nothing to delete"),
            Err(error) => tracing::warn!(%error, "retention pass failed; retried next interval"),
        }
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
