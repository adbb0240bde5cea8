//! Reads for the query side: the project's data generation and the trace rows changed
//! after a generation (every row when asked from generation -1).

use futures::TryStreamExt;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, StreamTrait};
use userlens_query_engine::TraceRow;

use crate::details::trace_row_from_model;
use crate::entities::{projects, traces};
use crate::error::StorageError;

/// The project's current data generation: every write at or below it is committed.
pub async fn project_generation(
    db: &impl ConnectionTrait,
    project_id: i64,
) -> Result<i64, StorageError> {
    let generation: Option<i64> = projects::Entity::find_by_id(project_id)
        .select_only()
        .column(projects::Column::DataGeneration)
        .into_tuple()
        .one(db)
        .await?;
    generation.ok_or(StorageError::UnknownProject(project_id))
}

/// Trace rows of the project written after generation `since`, streamed from the
/// `(project_id, change_generation)` index.
pub async fn traces_changed_since<C>(
    db: &C,
    project_id: i64,
    since: i64,
) -> Result<Vec<TraceRow>, StorageError>
where
    C: ConnectionTrait + StreamTrait,
{
    let mut stream = traces::Entity::find()
        .filter(traces::Column::ProjectId.eq(project_id))
        .filter(traces::Column::ChangeGeneration.gt(since))
        .stream(db)
        .await?;
    let mut rows = Vec::new();
    while let Some(model) = stream.try_next().await? {
        rows.push(trace_row_from_model(model)?);
    }
    Ok(rows)
}

/// Number of stored spans of a project.
pub async fn span_count(db: &impl ConnectionTrait, project_id: i64) -> Result<u64, StorageError> {
    use crate::entities::spans;
    use sea_orm::PaginatorTrait;
    Ok(spans::Entity::find()
        .filter(spans::Column::ProjectId.eq(project_id))
        .count(db)
        .await?)
}
