//! The write path: a batch of spans (or an annotation) is written in one transaction that
//! also re-derives every trace it touches and advances the project's data generation.
//! Several writers may run at once (several writer tasks, several ingest processes).
//!
//! Order of work inside the transaction, and why:
//! 1. Lock every touched trace, in trace id order: an upsert of a placeholder trace row
//!    (`ON CONFLICT DO UPDATE … WHERE false` locks an existing row without changing it;
//!    a new placeholder is locked by its insert). It reports which traces had no row.
//!    Writers touching a common trace run one after the other, and the fixed order keeps
//!    them from deadlocking; writers of different traces run side by side.
//! 2. Upsert the spans (latest copy of a span wins), in (trace, span) order.
//! 3. Read back every span of the touched traces that already had a row (a trace without
//!    one has no spans but this write's), and their annotations; derive each trace from its
//!    full set of spans (order-independent by construction).
//! 4. `UPDATE projects SET data_generation = data_generation + 1 … RETURNING`: the project
//!    row lock is taken last and held only for the trace upsert and the commit, so
//!    generations become visible in commit order (a reader that sees generation G sees
//!    every row written at G or before) without serialising the rest of the work. The
//!    same statement gives the new state a random token, also recorded as the generation's
//!    mark in `generation_marks` (what names a state across database restores).
//! 5. Upsert the derived trace rows, stamped with the new generation; drop placeholders of
//!    traces that turned out to have no spans (an annotation may name a trace whose spans
//!    have not arrived yet).
//!
//! A deadlock or serialisation failure reported by the database (possible only if another
//! writer takes locks in a different order) is retried a few times.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, Statement,
    TransactionTrait, Value,
};

use crate::derive::{DerivedTrace, derive_trace};
use crate::details::encode_details;
use crate::entities::{projects, trace_annotations, traces};
use crate::error::StorageError;
use crate::span::{Annotation, ResourceRecord, SpanFacts, SpanRecord, StoredSpan};

/// Rows per multi-row statement: below SQLite's 32,766 bound parameters and PostgreSQL's
/// 65,535 for the widest table (27 columns).
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// Attempts of one write when the database reports a deadlock or serialisation failure.
const ATTEMPTS_ON_CONFLICT: usize = 5;

/// `change_generation` of a placeholder trace row; never committed.
const PLACEHOLDER_GENERATION: i64 = -1;

/// What a committed write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    /// The project's data generation this write committed.
    pub generation: i64,
    pub spans_written: usize,
    pub traces_derived: usize,
    /// Traces whose token or cost sums went past `i64::MAX` and were stored capped there.
    pub traces_capped: usize,
}

/// Writes spans of one project in one transaction. Within `spans`, a later copy of the same
/// (trace id, span id) replaces an earlier one. Nothing is written unless everything is.
pub async fn write_spans<'a>(
    db: &DatabaseConnection,
    project_id: i64,
    spans: impl IntoIterator<Item = &'a SpanRecord>,
) -> Result<WriteSummary, StorageError> {
    let mut latest: BTreeMap<([u8; 16], [u8; 8]), &SpanRecord> = BTreeMap::new();
    for span in spans {
        latest.insert((span.trace_id, span.stored.span_id), span);
    }
    // In (trace, span) order: locks on span rows are taken in one order by every writer.
    let unique: Vec<&SpanRecord> = latest.into_values().collect();
    let trace_ids: Vec<[u8; 16]> = unique
        .iter()
        .map(|s| s.trace_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    retry_on_conflict(|| write_spans_once(db, project_id, &unique, &trace_ids)).await
}

/// Runs one write transaction, again (up to `ATTEMPTS_ON_CONFLICT` times in all) when the
/// database reports a deadlock or serialisation failure.
pub(crate) async fn retry_on_conflict<T, F, Attempt>(mut write_once: F) -> Result<T, StorageError>
where
    F: FnMut() -> Attempt,
    Attempt: std::future::Future<Output = Result<T, StorageError>>,
{
    let mut attempt = 1;
    loop {
        match write_once().await {
            Err(error) if attempt < ATTEMPTS_ON_CONFLICT && error.is_write_conflict() => {
                tracing::debug!(%error, attempt, "write conflict, retrying");
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn write_spans_once(
    db: &DatabaseConnection,
    project_id: i64,
    unique: &[&SpanRecord],
    trace_ids: &[[u8; 16]],
) -> Result<WriteSummary, StorageError> {
    let txn = db.begin().await?;
    let new_traces = lock_traces(&txn, project_id, trace_ids).await?;
    // After the trace locks, in hash order: every writer takes its locks in the same order
    // (traces, then resources), so sharing a new resource cannot deadlock two writers.
    insert_resources(&txn, project_id, unique).await?;
    for chunk in unique.chunks(ROWS_PER_STATEMENT) {
        upsert_spans(&txn, project_id, chunk).await?;
    }
    let mut batch: HashMap<[u8; 16], Vec<StoredSpan>> = HashMap::new();
    for span in unique {
        batch
            .entry(span.trace_id)
            .or_default()
            .push(span.stored.clone());
    }
    let derived = rederive_traces(&txn, project_id, trace_ids, &new_traces, batch).await?;
    let generation = advance_generation(&txn, project_id).await?;
    let traces_derived = store_traces(&txn, project_id, &derived, &new_traces, generation).await?;
    txn.commit().await?;
    Ok(WriteSummary {
        generation,
        spans_written: unique.len(),
        traces_derived,
        traces_capped: report_capped(project_id, &derived),
    })
}

/// Links a trace to issues and behaviours. Idempotent; a trace whose spans have not arrived
/// yet picks the annotation up when they do.
pub async fn annotate_trace(
    db: &DatabaseConnection,
    project_id: i64,
    trace_id: [u8; 16],
    annotations: &[Annotation],
) -> Result<WriteSummary, StorageError> {
    let mut rows: BTreeMap<(i16, String), Option<String>> = BTreeMap::new();
    for annotation in annotations {
        match annotation {
            Annotation::Issue { id, title } => {
                rows.insert(
                    (trace_annotations::ANNOTATION_ISSUE, id.clone()),
                    title.clone(),
                );
            }
            Annotation::Behaviour(name) => {
                rows.insert(
                    (trace_annotations::ANNOTATION_BEHAVIOUR, name.clone()),
                    None,
                );
            }
        }
    }
    let rows: Vec<((i16, String), Option<String>)> = rows.into_iter().collect();
    retry_on_conflict(|| annotate_trace_once(db, project_id, trace_id, &rows)).await
}

async fn annotate_trace_once(
    db: &DatabaseConnection,
    project_id: i64,
    trace_id: [u8; 16],
    rows: &[((i16, String), Option<String>)],
) -> Result<WriteSummary, StorageError> {
    let txn = db.begin().await?;
    let new_traces = lock_traces(&txn, project_id, &[trace_id]).await?;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut insert = Query::insert();
        insert
            .into_table(trace_annotations::Entity)
            .columns([
                trace_annotations::Column::ProjectId,
                trace_annotations::Column::TraceId,
                trace_annotations::Column::Kind,
                trace_annotations::Column::Value,
                trace_annotations::Column::Title,
            ])
            .on_conflict(
                OnConflict::columns([
                    trace_annotations::Column::ProjectId,
                    trace_annotations::Column::TraceId,
                    trace_annotations::Column::Kind,
                    trace_annotations::Column::Value,
                ])
                .update_column(trace_annotations::Column::Title)
                .to_owned(),
            );
        for ((kind, value), title) in chunk {
            insert
                .values([
                    project_id.into(),
                    trace_id.to_vec().into(),
                    (*kind).into(),
                    value.clone().into(),
                    title.clone().into(),
                ])
                .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        }
        txn.execute(&insert).await?;
    }
    let derived =
        rederive_traces(&txn, project_id, &[trace_id], &new_traces, HashMap::new()).await?;
    let generation = advance_generation(&txn, project_id).await?;
    let traces_derived = store_traces(&txn, project_id, &derived, &new_traces, generation).await?;
    txn.commit().await?;
    Ok(WriteSummary {
        generation,
        spans_written: 0,
        traces_derived,
        traces_capped: report_capped(project_id, &derived),
    })
}

/// Logs each trace stored with capped sums (a figure an operator should know is a floor,
/// not exact); returns how many there were.
fn report_capped(project_id: i64, derived: &[DerivedTrace]) -> usize {
    let mut capped = 0;
    for trace in derived.iter().filter(|t| t.sums_capped) {
        capped += 1;
        tracing::warn!(
            project_id,
            trace_id = %hex::encode(trace.row.trace_id),
            "token or cost sum of the trace exceeds i64::MAX and is stored capped at i64::MAX"
        );
    }
    capped
}

/// Locks the trace rows of `trace_ids` (sorted, distinct) for the rest of the transaction,
/// inserting a placeholder row for each trace that has none; returns those traces.
async fn lock_traces(
    txn: &DatabaseTransaction,
    project_id: i64,
    trace_ids: &[[u8; 16]],
) -> Result<HashSet<[u8; 16]>, StorageError> {
    let backend = txn.get_database_backend();
    let mut new_traces = HashSet::new();
    for chunk in trace_ids.chunks(ROWS_PER_STATEMENT) {
        let (sql, values) = match backend {
            // An existing row is locked by the DO UPDATE action even though its WHERE is
            // false (so the row is not rewritten); RETURNING then lists only inserted rows.
            DbBackend::Postgres => {
                let list = (0..chunk.len())
                    .map(|i| {
                        if i == 0 {
                            "($2::bytea)".to_owned()
                        } else {
                            format!("(${})", i + 2)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut values: Vec<Value> = Vec::with_capacity(chunk.len() + 1);
                values.push(project_id.into());
                values.extend(chunk.iter().map(|t| Value::from(t.to_vec())));
                let sql = format!(
                    "INSERT INTO traces ({PLACEHOLDER_COLUMNS}) \
                     SELECT $1, wanted.trace_id, {PLACEHOLDER_VALUES_POSTGRES} \
                     FROM (VALUES {list}) AS wanted(trace_id) \
                     ON CONFLICT (project_id, trace_id) DO UPDATE \
                     SET change_generation = traces.change_generation WHERE false \
                     RETURNING trace_id"
                );
                (sql, values)
            }
            // SQLite has one writer at a time: its write lock covers every row.
            _ => {
                let list =
                    vec![format!("(?, ?, {PLACEHOLDER_VALUES_SQLITE})"); chunk.len()].join(", ");
                let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 2);
                for trace_id in chunk {
                    values.push(project_id.into());
                    values.push(trace_id.to_vec().into());
                }
                let sql = format!(
                    "INSERT INTO traces ({PLACEHOLDER_COLUMNS}) VALUES {list} \
                     ON CONFLICT (project_id, trace_id) DO NOTHING RETURNING trace_id"
                );
                (sql, values)
            }
        };
        let statement = Statement::from_sql_and_values(backend, sql, values);
        for row in txn.query_all_raw(statement).await? {
            new_traces.insert(fixed_bytes::<16>(row.try_get_by_index(0)?, "trace id")?);
        }
    }
    Ok(new_traces)
}

const PLACEHOLDER_COLUMNS: &str = "project_id, trace_id, started_ns, ended_ns, session_id, \
     errored, span_count, llm_calls, tool_calls, input_tokens, output_tokens, \
     cached_input_tokens, cost_nano, details, change_generation";
/// The placeholder's values after (project_id, trace_id); `details` is an empty blob.
const PLACEHOLDER_VALUES_POSTGRES: &str = "0, 0, '', false, 0, 0, 0, 0, 0, 0, 0, ''::bytea, -1";
const PLACEHOLDER_VALUES_SQLITE: &str = "0, 0, '', false, 0, 0, 0, 0, 0, 0, 0, x'', -1";

/// Generations of a project whose marks are kept: a snapshot that fell further behind than
/// this is rebuilt rather than topped up (its mark is gone, see [`crate::read::generation_mark`]).
pub const GENERATION_MARKS_KEPT: i64 = 100_000;

/// Advances the project's data generation and gives the new state a random token, stored
/// with it in `projects` and as the generation's mark; marks older than
/// [`GENERATION_MARKS_KEPT`] generations are dropped.
pub(crate) async fn advance_generation(
    txn: &DatabaseTransaction,
    project_id: i64,
) -> Result<i64, StorageError> {
    let token = new_generation_token();
    let update = Query::update()
        .table(projects::Entity)
        .value(
            projects::Column::DataGeneration,
            Expr::col(projects::Column::DataGeneration).add(1),
        )
        .value(projects::Column::GenerationToken, token)
        .and_where(Expr::col(projects::Column::Id).eq(project_id))
        .returning_col(projects::Column::DataGeneration)
        .to_owned();
    let row = txn
        .query_one(&update)
        .await?
        .ok_or(StorageError::UnknownProject(project_id))?;
    let generation = row.try_get_by_index::<i64>(0)?;
    let backend = txn.get_database_backend();
    let (insert, prune) = match backend {
        DbBackend::Postgres => (
            "INSERT INTO generation_marks (project_id, generation, token) VALUES ($1, $2, $3)",
            "DELETE FROM generation_marks WHERE project_id = $1 AND generation <= $2",
        ),
        _ => (
            "INSERT INTO generation_marks (project_id, generation, token) VALUES (?, ?, ?)",
            "DELETE FROM generation_marks WHERE project_id = ? AND generation <= ?",
        ),
    };
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        insert,
        [project_id.into(), generation.into(), token.into()],
    ))
    .await?;
    if generation > GENERATION_MARKS_KEPT {
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            prune,
            [
                project_id.into(),
                (generation - GENERATION_MARKS_KEPT).into(),
            ],
        ))
        .await?;
    }
    Ok(generation)
}

/// A random non-zero token (0 is the state before any write).
fn new_generation_token() -> i64 {
    loop {
        let token = rand::random::<i64>();
        if token != 0 {
            return token;
        }
    }
}

/// Resource rows per statement, and the attribute JSON bytes after which a statement is
/// sent early (a resource may carry hundreds of KiB of attributes).
const RESOURCES_PER_STATEMENT: usize = 200;
const RESOURCE_BYTES_PER_STATEMENT: usize = 4 << 20;

/// Inserts the distinct resources of `spans` that the project does not hold yet. A resource
/// is immutable (its key is the hash of its content), so an existing row is left alone.
async fn insert_resources(
    txn: &DatabaseTransaction,
    project_id: i64,
    spans: &[&SpanRecord],
) -> Result<(), StorageError> {
    let resources: BTreeMap<[u8; 32], &ResourceRecord> = spans
        .iter()
        .map(|s| (s.resource.hash, s.resource.as_ref()))
        .collect();
    let mut pending: Vec<&ResourceRecord> = Vec::new();
    let mut pending_bytes = 0;
    for resource in resources.into_values() {
        pending_bytes += resource.attributes_json.len();
        pending.push(resource);
        if pending.len() >= RESOURCES_PER_STATEMENT || pending_bytes >= RESOURCE_BYTES_PER_STATEMENT
        {
            insert_resource_rows(txn, project_id, &pending).await?;
            pending.clear();
            pending_bytes = 0;
        }
    }
    if !pending.is_empty() {
        insert_resource_rows(txn, project_id, &pending).await?;
    }
    Ok(())
}

async fn insert_resource_rows(
    txn: &DatabaseTransaction,
    project_id: i64,
    rows: &[&ResourceRecord],
) -> Result<(), StorageError> {
    let backend = txn.get_database_backend();
    let placeholders = match backend {
        DbBackend::Postgres => (0..rows.len())
            .map(|i| {
                format!(
                    "(${}, ${}, ${}, ${})",
                    4 * i + 1,
                    4 * i + 2,
                    4 * i + 3,
                    4 * i + 4
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => vec!["(?, ?, ?, ?)"; rows.len()].join(", "),
    };
    let sql = format!(
        "INSERT INTO resources (project_id, resource_hash, attributes, dropped_attributes_count) \
         VALUES {placeholders} ON CONFLICT (project_id, resource_hash) DO NOTHING"
    );
    let mut values: Vec<Value> = Vec::with_capacity(rows.len() * 4);
    for resource in rows {
        values.extend([
            project_id.into(),
            resource.hash.to_vec().into(),
            resource.attributes_json.clone().into(),
            clamp_i32(i64::from(resource.dropped_attributes_count)).into(),
        ]);
    }
    txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    Ok(())
}

/// Columns of `spans` in the order `upsert_spans` binds them; the first three are the key.
const SPAN_COLUMNS: [&str; 27] = [
    "project_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "start_ns",
    "end_ns",
    "status_code",
    "status_message",
    "user_id",
    "user_email",
    "session_id",
    "provider",
    "model",
    "is_llm_call",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cost_nano",
    "tool_name",
    "issue_id",
    "issue_title",
    "behaviours",
    "attributes",
    "dropped_attributes_count",
    "resource_hash",
];

async fn upsert_spans(
    txn: &DatabaseTransaction,
    project_id: i64,
    chunk: &[&SpanRecord],
) -> Result<(), StorageError> {
    let backend = txn.get_database_backend();
    let sql = upsert_sql(backend, "spans", &SPAN_COLUMNS, 3, chunk.len());
    let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * SPAN_COLUMNS.len());
    for span in chunk {
        let s = &span.stored;
        let f = &s.facts;
        let behaviours = (!f.behaviours.is_empty())
            .then(|| serde_json::to_string(&f.behaviours).unwrap_or_default());
        values.extend([
            project_id.into(),
            span.trace_id.to_vec().into(),
            s.span_id.to_vec().into(),
            s.parent_span_id.map(|p| p.to_vec()).into(),
            span.name.clone().into(),
            span.kind.into(),
            s.start_ns.into(),
            s.end_ns.into(),
            s.status_code.into(),
            span.status_message.clone().into(),
            f.user_id.clone().into(),
            f.user_email.clone().into(),
            f.session_id.clone().into(),
            f.provider.clone().into(),
            f.model.clone().into(),
            f.is_llm_call.into(),
            f.input_tokens.into(),
            f.output_tokens.into(),
            f.cached_input_tokens.into(),
            f.cost_nano.into(),
            f.tool_name.clone().into(),
            f.issue_id.clone().into(),
            f.issue_title.clone().into(),
            behaviours.into(),
            span.attributes_json.clone().into(),
            clamp_i32(i64::from(span.dropped_attributes_count)).into(),
            span.resource.hash.to_vec().into(),
        ]);
    }
    txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    Ok(())
}

/// `INSERT INTO table (columns) VALUES (…), … ON CONFLICT (key) DO UPDATE SET` every other
/// column `= excluded.column`, for `rows` rows of bound parameters. The key is the first
/// `key_columns` columns. (Written out rather than built with the query builder: for
/// thousands of rows per statement the builder's per-value expression trees cost more CPU
/// than the database spends on the rows.)
fn upsert_sql(
    backend: DbBackend,
    table: &str,
    columns: &[&str],
    key_columns: usize,
    rows: usize,
) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(64 + rows * columns.len() * 6);
    let _ = write!(sql, "INSERT INTO {table} ({}) VALUES ", columns.join(", "));
    let mut parameter = 0;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns.len() {
            if column > 0 {
                sql.push_str(", ");
            }
            parameter += 1;
            match backend {
                DbBackend::Postgres => {
                    let _ = write!(sql, "${parameter}");
                }
                _ => sql.push('?'),
            }
        }
        sql.push(')');
    }
    let _ = write!(
        sql,
        " ON CONFLICT ({}) DO UPDATE SET ",
        columns[..key_columns].join(", ")
    );
    for (i, column) in columns[key_columns..].iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "{column} = excluded.{column}");
    }
    sql
}

/// Derives the given traces from all their spans and annotations. `batch` holds the spans
/// this write just stored, by trace: a trace in `new_traces` (no row before this write) has
/// no other spans, so it is derived from them without reading them back.
async fn rederive_traces(
    txn: &DatabaseTransaction,
    project_id: i64,
    trace_ids: &[[u8; 16]],
    new_traces: &HashSet<[u8; 16]>,
    mut batch: HashMap<[u8; 16], Vec<StoredSpan>>,
) -> Result<Vec<DerivedTrace>, StorageError> {
    let mut derived = Vec::with_capacity(trace_ids.len());
    for chunk in trace_ids.chunks(ROWS_PER_STATEMENT) {
        let known: Vec<[u8; 16]> = chunk
            .iter()
            .copied()
            .filter(|t| !new_traces.contains(t))
            .collect();
        let mut stored = if known.is_empty() {
            HashMap::new()
        } else {
            load_stored_spans(txn, project_id, &known).await?
        };
        let mut annotations_by_trace = load_annotations(txn, project_id, chunk).await?;
        for trace_id in chunk {
            let spans = match stored.remove(trace_id) {
                Some(spans) => spans,
                None => batch.remove(trace_id).unwrap_or_default(),
            };
            if spans.is_empty() {
                continue;
            }
            let annotations = annotations_by_trace.remove(trace_id).unwrap_or_default();
            derived.extend(derive_trace(*trace_id, &spans, &annotations));
        }
    }
    Ok(derived)
}

/// Upserts the derived trace rows at `generation` and deletes the placeholders of new
/// traces that have no spans. Returns how many traces have spans.
async fn store_traces(
    txn: &DatabaseTransaction,
    project_id: i64,
    derived: &[DerivedTrace],
    new_traces: &HashSet<[u8; 16]>,
    generation: i64,
) -> Result<usize, StorageError> {
    for chunk in derived.chunks(ROWS_PER_STATEMENT) {
        upsert_traces(txn, project_id, chunk, generation).await?;
    }
    let with_spans: HashSet<[u8; 16]> = derived.iter().map(|t| t.row.trace_id).collect();
    let without_spans: Vec<Vec<u8>> = new_traces
        .iter()
        .filter(|t| !with_spans.contains(*t))
        .map(|t| t.to_vec())
        .collect();
    // Only an annotation of a trace whose spans have not arrived leaves a placeholder.
    for chunk in without_spans.chunks(ROWS_PER_STATEMENT) {
        let delete = Query::delete()
            .from_table(traces::Entity)
            .and_where(Expr::col(traces::Column::ProjectId).eq(project_id))
            .and_where(Expr::col(traces::Column::TraceId).is_in(chunk.iter().cloned()))
            .and_where(Expr::col(traces::Column::ChangeGeneration).eq(PLACEHOLDER_GENERATION))
            .to_owned();
        txn.execute(&delete).await?;
    }
    Ok(derived.len())
}

/// `SELECT columns FROM table WHERE project_id = ? AND trace_id IN (ids)`, shaped so that
/// each id is one primary-key probe whatever the table statistics say: on PostgreSQL a
/// join against a VALUES list (an `IN` list is planned from the estimated rows of the
/// project and degrades to scanning all of them while statistics lag a fast-growing table).
fn select_by_trace_ids(
    backend: DbBackend,
    columns: &[&str],
    table: &str,
    project_id: i64,
    trace_ids: &[[u8; 16]],
) -> Statement {
    let columns = columns
        .iter()
        .map(|c| format!("t.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut values: Vec<Value> = Vec::with_capacity(trace_ids.len() + 1);
    values.push(project_id.into());
    values.extend(trace_ids.iter().map(|t| Value::from(t.to_vec())));
    let sql = match backend {
        DbBackend::Postgres => {
            let list = (0..trace_ids.len())
                .map(|i| {
                    if i == 0 {
                        "($2::bytea)".to_owned()
                    } else {
                        format!("(${})", i + 2)
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "SELECT {columns} FROM (VALUES {list}) AS wanted(trace_id) \
                 JOIN {table} t ON t.project_id = $1 AND t.trace_id = wanted.trace_id"
            )
        }
        _ => {
            let list = vec!["?"; trace_ids.len()].join(", ");
            format!(
                "SELECT {columns} FROM {table} t WHERE t.project_id = ? AND t.trace_id IN ({list})"
            )
        }
    };
    Statement::from_sql_and_values(backend, sql, values)
}

pub(crate) async fn load_stored_spans(
    txn: &DatabaseTransaction,
    project_id: i64,
    trace_ids: &[[u8; 16]],
) -> Result<HashMap<[u8; 16], Vec<StoredSpan>>, StorageError> {
    const COLUMNS: [&str; 20] = [
        "trace_id",
        "span_id",
        "parent_span_id",
        "start_ns",
        "end_ns",
        "status_code",
        "user_id",
        "user_email",
        "session_id",
        "provider",
        "model",
        "is_llm_call",
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "cost_nano",
        "tool_name",
        "issue_id",
        "issue_title",
        "behaviours",
    ];
    let statement = select_by_trace_ids(
        txn.get_database_backend(),
        &COLUMNS,
        "spans",
        project_id,
        trace_ids,
    );
    let mut by_trace: HashMap<[u8; 16], Vec<StoredSpan>> = HashMap::new();
    for row in txn.query_all_raw(statement).await? {
        let trace_id = fixed_bytes::<16>(row.try_get_by_index(0)?, "trace id")?;
        let span_id = fixed_bytes::<8>(row.try_get_by_index(1)?, "span id")?;
        let parent_span_id = row
            .try_get_by_index::<Option<Vec<u8>>>(2)?
            .map(|p| fixed_bytes::<8>(p, "parent span id"))
            .transpose()?;
        let behaviours = match row.try_get_by_index::<Option<String>>(19)? {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| StorageError::Corrupt(format!("span behaviours: {e}")))?,
            None => Vec::new(),
        };
        by_trace.entry(trace_id).or_default().push(StoredSpan {
            span_id,
            parent_span_id,
            start_ns: row.try_get_by_index(3)?,
            end_ns: row.try_get_by_index(4)?,
            status_code: row.try_get_by_index(5)?,
            facts: SpanFacts {
                user_id: row.try_get_by_index(6)?,
                user_email: row.try_get_by_index(7)?,
                session_id: row.try_get_by_index(8)?,
                provider: row.try_get_by_index(9)?,
                model: row.try_get_by_index(10)?,
                is_llm_call: row.try_get_by_index(11)?,
                input_tokens: row.try_get_by_index(12)?,
                output_tokens: row.try_get_by_index(13)?,
                cached_input_tokens: row.try_get_by_index(14)?,
                cost_nano: row.try_get_by_index(15)?,
                tool_name: row.try_get_by_index(16)?,
                issue_id: row.try_get_by_index(17)?,
                issue_title: row.try_get_by_index(18)?,
                behaviours,
            },
        });
    }
    Ok(by_trace)
}

pub(crate) async fn load_annotations(
    txn: &DatabaseTransaction,
    project_id: i64,
    trace_ids: &[[u8; 16]],
) -> Result<HashMap<[u8; 16], Vec<Annotation>>, StorageError> {
    let statement = select_by_trace_ids(
        txn.get_database_backend(),
        &["trace_id", "kind", "value", "title"],
        "trace_annotations",
        project_id,
        trace_ids,
    );
    let mut rows: Vec<([u8; 16], i16, String, Option<String>)> = Vec::new();
    for row in txn.query_all_raw(statement).await? {
        rows.push((
            fixed_bytes::<16>(row.try_get_by_index(0)?, "trace id")?,
            row.try_get_by_index(1)?,
            row.try_get_by_index(2)?,
            row.try_get_by_index(3)?,
        ));
    }
    rows.sort();
    let mut by_trace: HashMap<[u8; 16], Vec<Annotation>> = HashMap::new();
    for (trace_id, kind, value, title) in rows {
        let annotation = if kind == trace_annotations::ANNOTATION_ISSUE {
            Annotation::Issue { id: value, title }
        } else {
            Annotation::Behaviour(value)
        };
        by_trace.entry(trace_id).or_default().push(annotation);
    }
    Ok(by_trace)
}

/// Columns of `traces` in the order `upsert_traces` binds them; the first two are the key.
const TRACE_COLUMNS: [&str; 17] = [
    "project_id",
    "trace_id",
    "started_ns",
    "ended_ns",
    "user_id",
    "email",
    "session_id",
    "errored",
    "span_count",
    "llm_calls",
    "tool_calls",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cost_nano",
    "details",
    "change_generation",
];

pub(crate) async fn upsert_traces(
    txn: &DatabaseTransaction,
    project_id: i64,
    chunk: &[DerivedTrace],
    generation: i64,
) -> Result<(), StorageError> {
    let backend = txn.get_database_backend();
    let sql = upsert_sql(backend, "traces", &TRACE_COLUMNS, 2, chunk.len());
    let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * TRACE_COLUMNS.len());
    for trace in chunk {
        let row = &trace.row;
        values.extend([
            project_id.into(),
            row.trace_id.to_vec().into(),
            row.start_ns.into(),
            row.end_ns.into(),
            row.user_id.clone().into(),
            row.email.clone().into(),
            row.session_id.clone().into(),
            row.errored.into(),
            clamp_i32(trace.span_count).into(),
            clamp_i32(trace.llm_calls).into(),
            clamp_i32(row.tool_calls).into(),
            row.input_tokens.into(),
            row.output_tokens.into(),
            row.cached_input_tokens.into(),
            row.cost_nano.into(),
            encode_details(row).into(),
            generation.into(),
        ]);
    }
    txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    Ok(())
}

fn clamp_i32(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

pub(crate) fn fixed_bytes<const N: usize>(
    bytes: Vec<u8>,
    what: &str,
) -> Result<[u8; N], StorageError> {
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| StorageError::Corrupt(format!("{what} is not {N} bytes")))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use sea_orm::{DbBackend, IdenStatic, Iterable};

    use super::{SPAN_COLUMNS, TRACE_COLUMNS, upsert_sql};
    use crate::entities::{spans, traces};

    #[test]
    fn written_columns_are_every_column_of_the_table() {
        let names = |columns: &[&str]| {
            columns
                .iter()
                .map(|c| c.to_string())
                .collect::<BTreeSet<_>>()
        };
        let span_columns: BTreeSet<String> = spans::Column::iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        let trace_columns: BTreeSet<String> = traces::Column::iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        assert_eq!(names(&SPAN_COLUMNS), span_columns);
        assert_eq!(names(&TRACE_COLUMNS), trace_columns);
        assert_eq!(SPAN_COLUMNS[..3], ["project_id", "trace_id", "span_id"]);
        assert_eq!(TRACE_COLUMNS[..2], ["project_id", "trace_id"]);
    }

    #[test]
    fn upsert_sql_numbers_parameters_per_backend() {
        assert_eq!(
            upsert_sql(DbBackend::Postgres, "t", &["k", "a", "b"], 1, 2),
            "INSERT INTO t (k, a, b) VALUES ($1, $2, $3), ($4, $5, $6) \
             ON CONFLICT (k) DO UPDATE SET a = excluded.a, b = excluded.b"
        );
        assert_eq!(
            upsert_sql(DbBackend::Sqlite, "t", &["k", "j", "a"], 2, 1),
            "INSERT INTO t (k, j, a) VALUES (?, ?, ?) ON CONFLICT (k, j) DO UPDATE SET a = excluded.a"
        );
    }
}
