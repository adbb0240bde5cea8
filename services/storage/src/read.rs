//! Reads for the query side: the project's data generation and the trace rows changed
//! after a generation (every row when asked from generation -1).

use futures::TryStreamExt;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect, Statement,
    StreamTrait,
};
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

/// Where a project stands for the query side: its data generation, the token of the write
/// that made it (see `generation_marks`), the generation of its latest erasure of a user
/// (0: none), and the deployment id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectGeneration {
    pub generation: i64,
    pub token: i64,
    pub erased_generation: i64,
    pub deployment_id: String,
}

/// The project's data generation, token and erased generation and the deployment id (see
/// the `deployment` table), read in one statement so a replaced deployment id or a new
/// erasure is seen by the very next query.
pub async fn generation_and_deployment(
    db: &impl ConnectionTrait,
    project_id: i64,
) -> Result<ProjectGeneration, StorageError> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT p.data_generation, p.generation_token, p.erased_generation, d.deployment_id \
             FROM projects p CROSS JOIN deployment d WHERE p.id = $1 AND d.id = 1"
        }
        _ => {
            "SELECT p.data_generation, p.generation_token, p.erased_generation, d.deployment_id \
             FROM projects p CROSS JOIN deployment d WHERE p.id = ? AND d.id = 1"
        }
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [project_id.into()],
        ))
        .await?
        .ok_or(StorageError::UnknownProject(project_id))?;
    Ok(ProjectGeneration {
        generation: row.try_get::<i64>("", "data_generation")?,
        token: row.try_get::<i64>("", "generation_token")?,
        erased_generation: row.try_get::<i64>("", "erased_generation")?,
        deployment_id: row.try_get::<String>("", "deployment_id")?,
    })
}

/// The token recorded for `generation` of the project, if the project's history still
/// holds that generation (`None` after a restore to an earlier state, or once the mark is
/// older than `write::GENERATION_MARKS_KEPT` generations).
pub async fn generation_mark(
    db: &impl ConnectionTrait,
    project_id: i64,
    generation: i64,
) -> Result<Option<i64>, StorageError> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT token FROM generation_marks WHERE project_id = $1 AND generation = $2"
        }
        _ => "SELECT token FROM generation_marks WHERE project_id = ? AND generation = ?",
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [project_id.into(), generation.into()],
        ))
        .await?;
    Ok(match row {
        Some(row) => Some(row.try_get::<i64>("", "token")?),
        None => None,
    })
}

/// Gives the deployment a fresh id, unless another process already replaced `seen` (then
/// its id stands, so every replica converges on one namespace).
pub async fn replace_deployment_id(
    db: &impl ConnectionTrait,
    seen: &str,
) -> Result<(), StorageError> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "UPDATE deployment SET deployment_id = $1 WHERE id = 1 AND deployment_id = $2"
        }
        _ => "UPDATE deployment SET deployment_id = ? WHERE id = 1 AND deployment_id = ?",
    };
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        sql,
        [userlens_migrations::new_deployment_id().into(), seen.into()],
    ))
    .await?;
    Ok(())
}
