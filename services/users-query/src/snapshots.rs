//! One in-memory snapshot of trace rows per project, kept current through the project's
//! data generation: before answering at generation G, the rows written after the
//! generation the snapshot holds are read from the `(project_id, change_generation)` index
//! and applied. The database stays the source of truth.
//!
//! Generations only grow, so a project whose generation is lower than one this process has
//! already read was restored from a backup: its snapshot is rebuilt from scratch and the
//! deployment id (the result cache's namespace) is replaced before anything is answered, so
//! neither the snapshot nor a result cached before the restore is ever served.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedRwLockReadGuard, RwLock};
use userlens_query_engine::Snapshot;
use userlens_storage::{DatabaseConnection, StorageError, read};

use crate::metrics::QueryMetrics;

struct ProjectSnapshot {
    snapshot: Arc<RwLock<Snapshot>>,
    /// Generation the snapshot holds every row of; guarded by `refresh`.
    held_generation: tokio::sync::Mutex<i64>,
    /// Highest generation of the project this process has read from the database.
    highest_seen: AtomicI64,
}

/// Where a query stands: the project's data generation and the deployment id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentGeneration {
    pub generation: i64,
    pub deployment_id: String,
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

    /// The project's current generation and the deployment id. When the generation went
    /// backwards (a restored database), the project's snapshot is dropped and the deployment
    /// id replaced first.
    pub async fn current(&self, project_id: i64) -> Result<CurrentGeneration, StorageError> {
        let project = self.project(project_id);
        let mut current = self.read_current(project_id).await?;
        let highest = project.highest_seen.load(Ordering::Acquire);
        if current.generation < highest {
            // A read that began after the one that saw `highest` returns at least `highest`
            // unless the database went back: read again to tell a race from a restore.
            current = self.read_current(project_id).await?;
            if current.generation < highest {
                tracing::warn!(
                    project_id,
                    generation = current.generation,
                    highest_seen = highest,
                    "data generation went backwards (database restored?): rebuilding the \
                     snapshot and replacing the cache namespace"
                );
                read::replace_deployment_id(&self.db, &current.deployment_id).await?;
                current = self.read_current(project_id).await?;
                let fresh = Arc::new(ProjectSnapshot::new(current.generation));
                self.lock_projects().insert(project_id, fresh);
                return Ok(current);
            }
        }
        project
            .highest_seen
            .fetch_max(current.generation, Ordering::AcqRel);
        Ok(current)
    }

    async fn read_current(&self, project_id: i64) -> Result<CurrentGeneration, StorageError> {
        let (generation, deployment_id) =
            read::generation_and_deployment(&self.db, project_id).await?;
        Ok(CurrentGeneration {
            generation,
            deployment_id,
        })
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

    /// The project's snapshot, refreshed to at least `generation`, as a handle a long read
    /// locks piece by piece, so it never holds off a refresh for long. The snapshot behind
    /// the handle only gains rows: interned ids stay valid across its refreshes.
    pub async fn shared_at_generation(
        &self,
        project_id: i64,
        generation: i64,
        metrics: &QueryMetrics,
    ) -> Result<Arc<RwLock<Snapshot>>, StorageError> {
        drop(self.at_generation(project_id, generation, metrics).await?);
        Ok(Arc::clone(&self.project(project_id).snapshot))
    }

    fn project(&self, project_id: i64) -> Arc<ProjectSnapshot> {
        Arc::clone(
            self.lock_projects()
                .entry(project_id)
                .or_insert_with(|| Arc::new(ProjectSnapshot::new(-1))),
        )
    }

    fn lock_projects(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Arc<ProjectSnapshot>>> {
        self.projects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ProjectSnapshot {
    /// An empty snapshot (it loads every row on first use) of a project last seen at
    /// `highest_seen`.
    fn new(highest_seen: i64) -> Self {
        Self {
            snapshot: Arc::new(RwLock::new(Snapshot::new())),
            held_generation: tokio::sync::Mutex::new(-1),
            highest_seen: AtomicI64::new(highest_seen),
        }
    }
}
