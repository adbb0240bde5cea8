//! The write path: a batch of spans (or an annotation) is written in one transaction that
//! also re-derives every trace it touches and advances the project's data generation.
//!
//! Order of work inside the transaction, and why:
//! 1. `UPDATE projects SET data_generation = data_generation + 1 … RETURNING` — takes the
//!    project's row lock first, so concurrent writers of one project (several ingest
//!    processes) run one after the other: each sees every span the previous one committed
//!    when it re-derives a trace, and generations become visible in commit order (a reader
//!    that sees generation G sees every row written at G or before).
//! 2. Upsert the spans (latest copy of a span wins).
//! 3. Read back every span of the touched traces that already had a row (a trace without
//!    one has no spans but this write's), and their annotations; derive each trace from its
//!    full set of spans (order-independent by construction) and upsert its row, stamped
//!    with the new generation.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, Statement,
    TransactionTrait, Value,
};

use crate::derive::{DerivedTrace, derive_trace};
use crate::details::encode_details;
use crate::entities::{projects, spans, trace_annotations, traces};
use crate::error::StorageError;
use crate::span::{Annotation, SpanFacts, SpanRecord, StoredSpan};

/// Rows per multi-row statement: below SQLite's 32,766 bound parameters and PostgreSQL's
/// 65,535 for the widest table (26 columns).
const ROWS_PER_STATEMENT: usize = 500;

/// What a committed write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    /// The project's data generation this write committed.
    pub generation: i64,
    pub spans_written: usize,
    pub traces_derived: usize,
}

/// Writes spans of one project in one transaction. Within `spans`, a later copy of the same
/// (trace id, span id) replaces an earlier one. Nothing is written unless everything is.
pub async fn write_spans<'a>(
    db: &DatabaseConnection,
    project_id: i64,
    spans: impl IntoIterator<Item = &'a SpanRecord>,
) -> Result<WriteSummary, StorageError> {
    let mut latest: HashMap<([u8; 16], [u8; 8]), &SpanRecord> = HashMap::new();
    for span in spans {
        latest.insert((span.trace_id, span.stored.span_id), span);
    }
    let unique: Vec<&SpanRecord> = latest.into_values().collect();
    let trace_ids: BTreeSet<[u8; 16]> = unique.iter().map(|s| s.trace_id).collect();

    let txn = db.begin().await?;
    let generation = advance_generation(&txn, project_id).await?;
    for chunk in unique.chunks(ROWS_PER_STATEMENT) {
        upsert_spans(&txn, project_id, chunk).await?;
    }
    let trace_ids: Vec<[u8; 16]> = trace_ids.into_iter().collect();
    let mut batch: HashMap<[u8; 16], Vec<StoredSpan>> = HashMap::new();
    for span in &unique {
        batch
            .entry(span.trace_id)
            .or_default()
            .push(span.stored.clone());
    }
    let traces_derived = rederive_traces(&txn, project_id, &trace_ids, batch, generation).await?;
    txn.commit().await?;
    Ok(WriteSummary {
        generation,
        spans_written: unique.len(),
        traces_derived,
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
    let txn = db.begin().await?;
    let generation = advance_generation(&txn, project_id).await?;
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
    for chunk in rows
        .into_iter()
        .collect::<Vec<_>>()
        .chunks(ROWS_PER_STATEMENT)
    {
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
    let traces_derived =
        rederive_traces(&txn, project_id, &[trace_id], HashMap::new(), generation).await?;
    txn.commit().await?;
    Ok(WriteSummary {
        generation,
        spans_written: 0,
        traces_derived,
    })
}

async fn advance_generation(
    txn: &DatabaseTransaction,
    project_id: i64,
) -> Result<i64, StorageError> {
    let update = Query::update()
        .table(projects::Entity)
        .value(
            projects::Column::DataGeneration,
            Expr::col(projects::Column::DataGeneration).add(1),
        )
        .and_where(Expr::col(projects::Column::Id).eq(project_id))
        .returning_col(projects::Column::DataGeneration)
        .to_owned();
    let row = txn
        .query_one(&update)
        .await?
        .ok_or(StorageError::UnknownProject(project_id))?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

async fn upsert_spans(
    txn: &DatabaseTransaction,
    project_id: i64,
    chunk: &[&SpanRecord],
) -> Result<(), StorageError> {
    use spans::Column as C;
    const VALUE_COLUMNS: [C; 23] = [
        C::ParentSpanId,
        C::Name,
        C::Kind,
        C::StartNs,
        C::EndNs,
        C::StatusCode,
        C::StatusMessage,
        C::UserId,
        C::UserEmail,
        C::SessionId,
        C::Provider,
        C::Model,
        C::IsLlmCall,
        C::InputTokens,
        C::OutputTokens,
        C::CachedInputTokens,
        C::CostNano,
        C::ToolName,
        C::IssueId,
        C::IssueTitle,
        C::Behaviours,
        C::Attributes,
        C::ResourceAttributes,
    ];
    let mut insert = Query::insert();
    insert
        .into_table(spans::Entity)
        .columns(
            [C::ProjectId, C::TraceId, C::SpanId]
                .into_iter()
                .chain(VALUE_COLUMNS),
        )
        .on_conflict(
            OnConflict::columns([C::ProjectId, C::TraceId, C::SpanId])
                .update_columns(VALUE_COLUMNS)
                .to_owned(),
        );
    for span in chunk {
        let s = &span.stored;
        let f = &s.facts;
        let behaviours = (!f.behaviours.is_empty())
            .then(|| serde_json::to_string(&f.behaviours).unwrap_or_default());
        let values: [Value; 26] = [
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
            span.resource_attributes_json.clone().into(),
        ];
        insert
            .values(values.map(Into::into))
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
    }
    txn.execute(&insert).await?;
    Ok(())
}

/// Re-derives the given traces from all their spans and annotations and upserts their rows.
/// `batch` holds the spans this write just stored, by trace: a trace that had no row before
/// this write has no other spans, so it is derived from them without reading them back.
/// Returns how many traces have spans (an annotation may name a trace that has none yet).
async fn rederive_traces(
    txn: &DatabaseTransaction,
    project_id: i64,
    trace_ids: &[[u8; 16]],
    mut batch: HashMap<[u8; 16], Vec<StoredSpan>>,
    generation: i64,
) -> Result<usize, StorageError> {
    let mut derived = Vec::with_capacity(trace_ids.len());
    for chunk in trace_ids.chunks(ROWS_PER_STATEMENT) {
        let existing = existing_traces(txn, project_id, chunk).await?;
        let known: Vec<[u8; 16]> = chunk
            .iter()
            .copied()
            .filter(|t| existing.contains(t))
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
    for chunk in derived.chunks(ROWS_PER_STATEMENT) {
        upsert_traces(txn, project_id, chunk, generation).await?;
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

async fn existing_traces(
    txn: &DatabaseTransaction,
    project_id: i64,
    trace_ids: &[[u8; 16]],
) -> Result<HashSet<[u8; 16]>, StorageError> {
    let statement = select_by_trace_ids(
        txn.get_database_backend(),
        &["trace_id"],
        "traces",
        project_id,
        trace_ids,
    );
    let mut existing = HashSet::new();
    for row in txn.query_all_raw(statement).await? {
        existing.insert(fixed_bytes::<16>(row.try_get_by_index(0)?, "trace id")?);
    }
    Ok(existing)
}

async fn load_stored_spans(
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

async fn load_annotations(
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

async fn upsert_traces(
    txn: &DatabaseTransaction,
    project_id: i64,
    chunk: &[DerivedTrace],
    generation: i64,
) -> Result<(), StorageError> {
    use traces::Column as C;
    const VALUE_COLUMNS: [C; 15] = [
        C::StartedNs,
        C::EndedNs,
        C::UserId,
        C::Email,
        C::SessionId,
        C::Errored,
        C::SpanCount,
        C::LlmCalls,
        C::ToolCalls,
        C::InputTokens,
        C::OutputTokens,
        C::CachedInputTokens,
        C::CostNano,
        C::Details,
        C::ChangeGeneration,
    ];
    let mut insert = Query::insert();
    insert
        .into_table(traces::Entity)
        .columns([C::ProjectId, C::TraceId].into_iter().chain(VALUE_COLUMNS))
        .on_conflict(
            OnConflict::columns([C::ProjectId, C::TraceId])
                .update_columns(VALUE_COLUMNS)
                .to_owned(),
        );
    for trace in chunk {
        let row = &trace.row;
        let values: [Value; 17] = [
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
        ];
        insert
            .values(values.map(Into::into))
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
    }
    txn.execute(&insert).await?;
    Ok(())
}

fn clamp_i32(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn fixed_bytes<const N: usize>(bytes: Vec<u8>, what: &str) -> Result<[u8; N], StorageError> {
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| StorageError::Corrupt(format!("{what} is not {N} bytes")))
}
