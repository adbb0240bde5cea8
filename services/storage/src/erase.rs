//! Erasing a user (right to erasure, `docs/spec.md` §9): every trace of the user, every span
//! carrying the user's id, the annotations of the erased traces and the user's monitor
//! records go, in one transaction that also advances the project's data generation and
//! stamps it as the project's `erased_generation`.
//!
//! What is erased:
//! - every trace whose user (§4) is the erased user: its spans (anonymous ones included),
//!   its annotations and its trace row;
//! - every span carrying the user's id in a trace whose user is someone else (another span
//!   of that trace won the trace-level rule): the span is deleted and the trace is derived
//!   again from the spans left, stamped with the new generation;
//! - the user's monitor states and events, and the monitors watching only that user.
//!
//! Concurrency follows the write path's locking (`write.rs`): the trace rows involved are
//! locked in trace id order before anything is deleted (on PostgreSQL `SELECT … FOR UPDATE`;
//! SQLite has one writer, whose lock is taken by the first statement), the candidates are
//! read again once locked until no new one appears, and the project row is locked last, by
//! the generation update. A span of the user committed before the erasure locks its trace is
//! erased; one whose write locks its trace after that is stored after the erasure and makes
//! the user anew. A deadlock reported by PostgreSQL (possible when a second round of locks
//! is needed) is retried like a write.
//!
//! The query side sees `erased_generation` pass the erasure its in-memory snapshot was built
//! after and rebuilds the project's snapshot (`users-query/src/snapshots.rs`); every cached
//! answer is keyed by the data generation, which the erasure advanced.

use std::collections::BTreeSet;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, Statement,
    TransactionTrait, Value,
};

use crate::derive::derive_trace;
use crate::error::StorageError;
use crate::write::{
    ROWS_PER_STATEMENT, fixed_bytes, load_annotations, load_stored_spans, retry_on_conflict,
    upsert_traces,
};

/// What one erasure removed. All zero (and no generation) when the user had nothing stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErasureSummary {
    /// The data generation the erasure committed; None when nothing of the user was stored.
    pub generation: Option<i64>,
    /// Trace rows of the user deleted.
    pub traces_removed: u64,
    /// Spans deleted: every span of the user's traces, and the user's spans in other traces.
    pub spans_removed: u64,
    /// Issue and behaviour annotations of the user's traces deleted.
    pub annotations_removed: u64,
    /// Traces of other users (or anonymous) that held spans of the user, derived again.
    pub traces_rederived: u64,
    /// Monitor states, monitor events and single-user monitors of the user deleted.
    pub monitor_records_removed: u64,
}

impl ErasureSummary {
    fn removed_anything(&self) -> bool {
        self.traces_removed > 0
            || self.spans_removed > 0
            || self.annotations_removed > 0
            || self.traces_rederived > 0
            || self.monitor_records_removed > 0
    }
}

/// Erases `user_id` (non-empty) from the project. Idempotent: a user with nothing stored
/// is erased with every count 0 and no change to the database.
pub async fn erase_user(
    db: &DatabaseConnection,
    project_id: i64,
    user_id: &str,
) -> Result<ErasureSummary, StorageError> {
    retry_on_conflict(|| erase_once(db, project_id, user_id)).await
}

async fn erase_once(
    db: &DatabaseConnection,
    project_id: i64,
    user_id: &str,
) -> Result<ErasureSummary, StorageError> {
    let txn = db.begin().await?;
    let backend = txn.get_database_backend();
    if backend != DbBackend::Postgres {
        // SQLite: a write first takes the database's one write lock for the whole
        // transaction (a read first could not upgrade once another writer committed).
        let taken = txn
            .execute_raw(Statement::from_sql_and_values(
                backend,
                "UPDATE projects SET data_generation = data_generation WHERE id = ?",
                [project_id.into()],
            ))
            .await?;
        if taken.rows_affected() == 0 {
            return Err(StorageError::UnknownProject(project_id));
        }
    }

    // Lock every candidate trace; read the candidates again once locked, until no new one
    // appears (a write that committed meanwhile may have added one).
    let mut locked: BTreeSet<[u8; 16]> = BTreeSet::new();
    let candidates = loop {
        let candidates = Candidates::read(&txn, project_id, user_id).await?;
        let new: Vec<[u8; 16]> = candidates.all().difference(&locked).copied().collect();
        if new.is_empty() {
            break candidates;
        }
        if backend == DbBackend::Postgres {
            lock_traces(&txn, project_id, &new).await?;
        }
        locked.extend(new);
        if backend != DbBackend::Postgres {
            // The write lock held since the first statement: nothing changed meanwhile.
            break candidates;
        }
    };

    let mut summary = ErasureSummary::default();
    let owned: Vec<[u8; 16]> = candidates.owned.iter().copied().collect();
    for chunk in owned.chunks(ROWS_PER_STATEMENT) {
        summary.spans_removed += delete_by_traces(&txn, "spans", project_id, chunk, None).await?;
        summary.annotations_removed +=
            delete_by_traces(&txn, "trace_annotations", project_id, chunk, None).await?;
        summary.traces_removed += delete_by_traces(&txn, "traces", project_id, chunk, None).await?;
    }
    // Traces of someone else holding spans of the user: drop those spans, derive again.
    let shared: Vec<[u8; 16]> = candidates
        .with_spans
        .difference(&candidates.owned)
        .copied()
        .collect();
    let mut rederived = Vec::new();
    let mut emptied = Vec::new();
    for chunk in shared.chunks(ROWS_PER_STATEMENT) {
        summary.spans_removed +=
            delete_by_traces(&txn, "spans", project_id, chunk, Some(user_id)).await?;
        let mut spans = load_stored_spans(&txn, project_id, chunk).await?;
        let mut annotations = load_annotations(&txn, project_id, chunk).await?;
        for trace_id in chunk {
            let spans = spans.remove(trace_id).unwrap_or_default();
            let annotations = annotations.remove(trace_id).unwrap_or_default();
            match derive_trace(*trace_id, &spans, &annotations) {
                Some(derived) => rederived.push(derived),
                None => emptied.push(*trace_id),
            }
        }
    }
    for chunk in emptied.chunks(ROWS_PER_STATEMENT) {
        summary.annotations_removed +=
            delete_by_traces(&txn, "trace_annotations", project_id, chunk, None).await?;
        summary.traces_removed += delete_by_traces(&txn, "traces", project_id, chunk, None).await?;
    }
    summary.traces_rederived = rederived.len() as u64;
    if backend == DbBackend::Postgres {
        // The project row lock before the monitor records: a monitor transition share-locks
        // that row first, so it runs wholly before or after the erasure and cannot write a
        // state or event of the user behind it.
        lock_project(&txn, project_id).await?;
    }
    summary.monitor_records_removed = delete_monitor_records(&txn, project_id, user_id).await?;

    if !summary.removed_anything() {
        txn.rollback().await?;
        return Ok(summary);
    }
    let generation = advance_erased_generation(&txn, project_id).await?;
    for chunk in rederived.chunks(ROWS_PER_STATEMENT) {
        upsert_traces(&txn, project_id, chunk, generation).await?;
    }
    txn.commit().await?;
    summary.generation = Some(generation);
    tracing::info!(
        project_id,
        generation,
        traces = summary.traces_removed,
        spans = summary.spans_removed,
        "user erased"
    );
    Ok(summary)
}

/// The traces an erasure of the user touches.
struct Candidates {
    /// Traces whose user is the erased user.
    owned: BTreeSet<[u8; 16]>,
    /// Traces holding at least one span with the user's id.
    with_spans: BTreeSet<[u8; 16]>,
}

impl Candidates {
    async fn read(
        txn: &DatabaseTransaction,
        project_id: i64,
        user_id: &str,
    ) -> Result<Self, StorageError> {
        Ok(Self {
            owned: trace_ids(
                txn,
                "SELECT trace_id FROM traces WHERE project_id = {1} AND user_id = {2}",
                project_id,
                user_id,
            )
            .await?,
            with_spans: trace_ids(
                txn,
                "SELECT DISTINCT trace_id FROM spans WHERE project_id = {1} AND user_id = {2}",
                project_id,
                user_id,
            )
            .await?,
        })
    }

    fn all(&self) -> BTreeSet<[u8; 16]> {
        self.owned.union(&self.with_spans).copied().collect()
    }
}

/// `$n` on PostgreSQL, `?` on SQLite, for the `{n}` placeholders of `sql`. SQLite binds
/// `?` by position, so the placeholders must appear in `sql` in order, each once.
pub(crate) fn placeholders(backend: DbBackend, sql: &str, count: usize) -> String {
    debug_assert!(
        (1..=count)
            .map(|n| sql.find(&format!("{{{n}}}")))
            .collect::<Option<Vec<_>>>()
            .is_some_and(|at| at.is_sorted()),
        "placeholders out of order in {sql}"
    );
    let mut sql = sql.to_owned();
    for n in 1..=count {
        let marker = format!("{{{n}}}");
        let parameter = match backend {
            DbBackend::Postgres => format!("${n}"),
            _ => "?".to_owned(),
        };
        sql = sql.replace(&marker, &parameter);
    }
    sql
}

async fn trace_ids(
    txn: &DatabaseTransaction,
    sql: &str,
    project_id: i64,
    user_id: &str,
) -> Result<BTreeSet<[u8; 16]>, StorageError> {
    let backend = txn.get_database_backend();
    let statement = Statement::from_sql_and_values(
        backend,
        placeholders(backend, sql, 2),
        [project_id.into(), user_id.into()],
    );
    let mut ids = BTreeSet::new();
    for row in txn.query_all_raw(statement).await? {
        ids.insert(fixed_bytes::<16>(row.try_get_by_index(0)?, "trace id")?);
    }
    Ok(ids)
}

/// Locks the (existing) trace rows of `trace_ids`, in trace id order like every writer.
pub(crate) async fn lock_traces(
    txn: &DatabaseTransaction,
    project_id: i64,
    trace_ids: &[[u8; 16]],
) -> Result<(), StorageError> {
    let backend = txn.get_database_backend();
    for chunk in trace_ids.chunks(ROWS_PER_STATEMENT) {
        let (list, mut values) = trace_id_list(backend, chunk, 2);
        values.insert(0, project_id.into());
        let sql = format!(
            "SELECT t.trace_id FROM (VALUES {list}) AS wanted(trace_id) \
             JOIN traces t ON t.project_id = $1 AND t.trace_id = wanted.trace_id \
             ORDER BY t.trace_id FOR UPDATE OF t"
        );
        txn.query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
    }
    Ok(())
}

/// The parameters of a list of trace ids: `($first::bytea), ($first+1), …` as rows of a
/// PostgreSQL `VALUES` list, `?, ?, …` for a SQLite `IN` list.
fn trace_id_list(backend: DbBackend, trace_ids: &[[u8; 16]], first: usize) -> (String, Vec<Value>) {
    let values: Vec<Value> = trace_ids.iter().map(|t| Value::from(t.to_vec())).collect();
    let list = match backend {
        DbBackend::Postgres => (0..trace_ids.len())
            .map(|i| {
                if i == 0 {
                    format!("(${first}::bytea)")
                } else {
                    format!("(${})", first + i)
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => vec!["?"; trace_ids.len()].join(", "),
    };
    (list, values)
}

/// Deletes the rows of `table` of the given traces (only those of `user_id` when given);
/// returns how many.
pub(crate) async fn delete_by_traces(
    txn: &DatabaseTransaction,
    table: &str,
    project_id: i64,
    trace_ids: &[[u8; 16]],
    user_id: Option<&str>,
) -> Result<u64, StorageError> {
    if trace_ids.is_empty() {
        return Ok(0);
    }
    let backend = txn.get_database_backend();
    let (sql, values) = match backend {
        DbBackend::Postgres => {
            let (list, ids) = trace_id_list(backend, trace_ids, 3);
            let mut values: Vec<Value> = vec![project_id.into(), user_id.map(str::to_owned).into()];
            values.extend(ids);
            let user_filter = if user_id.is_some() {
                " AND t.user_id = $2"
            } else {
                " AND $2::text IS NULL"
            };
            (
                format!(
                    "DELETE FROM {table} t USING (VALUES {list}) AS wanted(trace_id) \
                     WHERE t.project_id = $1 AND t.trace_id = wanted.trace_id{user_filter}"
                ),
                values,
            )
        }
        _ => {
            let (list, ids) = trace_id_list(backend, trace_ids, 1);
            let mut values: Vec<Value> = vec![project_id.into()];
            values.extend(ids);
            let user_filter = match user_id {
                Some(user_id) => {
                    values.push(user_id.into());
                    " AND user_id = ?"
                }
                None => "",
            };
            (
                format!(
                    "DELETE FROM {table} WHERE project_id = ? AND trace_id IN ({list}){user_filter}"
                ),
                values,
            )
        }
    };
    let result = txn
        .execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    Ok(result.rows_affected())
}

/// Locks the project row (PostgreSQL), after every trace lock as in a write.
async fn lock_project(txn: &DatabaseTransaction, project_id: i64) -> Result<(), StorageError> {
    let locked = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id FROM projects WHERE id = $1 FOR UPDATE",
            [project_id.into()],
        ))
        .await?;
    locked
        .map(|_| ())
        .ok_or(StorageError::UnknownProject(project_id))
}

/// Deletes the user's monitor events and states in the project, and the project's
/// monitors that watch only that user (with their states and events).
async fn delete_monitor_records(
    txn: &DatabaseTransaction,
    project_id: i64,
    user_id: &str,
) -> Result<u64, StorageError> {
    let backend = txn.get_database_backend();
    let mut removed = 0;
    for sql in [
        "DELETE FROM monitor_events WHERE project_id = {1} AND user_id = {2}",
        "DELETE FROM monitor_states WHERE monitor_id IN \
         (SELECT id FROM monitors WHERE project_id = {1}) AND user_id = {2}",
        // Their states and events went with the two statements above (only this user's).
        "DELETE FROM monitors WHERE project_id = {1} AND user_id = {2}",
    ] {
        let result = txn
            .execute_raw(Statement::from_sql_and_values(
                backend,
                placeholders(backend, sql, 2),
                [project_id.into(), user_id.into()],
            ))
            .await?;
        removed += result.rows_affected();
    }
    Ok(removed)
}

/// Advances the data generation (with its token and mark, as every write does) and stamps
/// it as the project's latest erasure; the project row lock is taken here, last, as in
/// every write.
pub(crate) async fn advance_erased_generation(
    txn: &DatabaseTransaction,
    project_id: i64,
) -> Result<i64, StorageError> {
    let generation = crate::write::advance_generation(txn, project_id).await?;
    let backend = txn.get_database_backend();
    let sql = placeholders(
        backend,
        "UPDATE projects SET erased_generation = {1} WHERE id = {2}",
        2,
    );
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        sql,
        [generation.into(), project_id.into()],
    ))
    .await?;
    Ok(generation)
}
