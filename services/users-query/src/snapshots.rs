//! One in-memory snapshot of trace rows per project, kept current through the project's
//! data generation: before answering at generation G, the rows written after the
//! generation the snapshot holds are read from the `(project_id, change_generation)` index
//! and applied. The database stays the source of truth.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedRwLockReadGuard, RwLock};
use userlens_query_engine::Snapshot;
use userlens_storage::{DatabaseConnection, StorageError, read};

use crate::metrics::QueryMetrics;

struct ProjectSnapshot {
    snapshot: Arc<RwLock<Snapshot>>,
    /// Generation the snapshot holds every row of; guarded by `refresh`.
    held_generation: tokio::sync::Mutex<i64>,
}

pub struct SnapshotStore {
    db: DatabaseConnection,
    projects: Mutex<HashMap<i64, Arc<ProjectSnapshot>>>,
}

impl SnapshotStore {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            projects: Mutex::new(HashMap::new()),
        }
    }

    /// The project's snapshot, holding at least every row up to `generation`.
    pub async fn at_generation(
        &self,
        project_id: i64,
        generation: i64,
        metrics: &QueryMetrics,
    ) -> Result<OwnedRwLockReadGuard<Snapshot>, StorageError> {
        let project = self.project(project_id);
        {
            // One refresh at a time per project; queries arriving meanwhile wait for it and
            // then find the snapshot current.
            let mut held = project.held_generation.lock().await;
            if *held < generation {
                let rows = read::traces_changed_since(&self.db, project_id, *held).await?;
                metrics.record_snapshot_refresh(rows.len());
                let mut snapshot = Arc::clone(&project.snapshot).write_owned().await;
                tokio::task::spawn_blocking(move || snapshot.upsert(rows))
                    .await
                    .map_err(|e| StorageError::Corrupt(format!("snapshot update panicked: {e}")))?;
                *held = generation;
            }
        }
        Ok(Arc::clone(&project.snapshot).read_owned().await)
    }

    fn project(&self, project_id: i64) -> Arc<ProjectSnapshot> {
        let mut projects = self
            .projects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(projects.entry(project_id).or_insert_with(|| {
            Arc::new(ProjectSnapshot {
                snapshot: Arc::new(RwLock::new(Snapshot::new())),
                held_generation: tokio::sync::Mutex::new(-1),
            })
        }))
    }
}
