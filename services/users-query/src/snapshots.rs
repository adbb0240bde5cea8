//! One in-memory snapshot of trace rows per project, kept current through the project's
//! data generation: before answering at generation G, the rows written after the
//! generation the snapshot holds are read from the `(project_id, change_generation)` index
//! and applied. The database stays the source of truth.
//!
//! Each state of a project is named by its generation and the random token of the write
//! that made it (`generation_marks`). Before a snapshot holding generation G is topped up,
//! the project's history is checked to still hold G with the token the snapshot saw; when it
//! does not (the database was restored to an earlier state, perhaps written again since),
//! the snapshot is rebuilt from scratch. Result cache keys carry the token too, so a result
//! cached before a restore is never served after it, by this process or any other.
//!
//! Generations only grow, so a project whose generation is lower than one this process has
//! already read was restored as well: its snapshot is rebuilt and the deployment id (the
//! result cache's namespace) is replaced before anything is answered.
//!
//! Rows changed after a generation show what was written, not what an erasure of a user
//! deleted. The project row's `erased_generation` (read in the same statement as the data
//! generation) names the generation of the project's latest erasure; a snapshot built
//! before it is replaced by an empty one, which loads every row left on its next use. So
//! every process, not only the one that erased, drops the erased traces on its next query.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedRwLockReadGuard, RwLock};
use userlens_query_engine::Snapshot;
use userlens_storage::{DatabaseConnection, StorageError, read};

use crate::metrics::QueryMetrics;

struct ProjectSnapshot {
    snapshot: Arc<RwLock<Snapshot>>,
    /// The state the snapshot holds every row of.
    held: tokio::sync::Mutex<Held>,
    /// Highest generation of the project this process has read from the database.
    highest_seen: AtomicI64,
    /// The project's `erased_generation` when this snapshot was made: it holds no row
    /// erased at or before it.
    erasure_seen: i64,
}

/// Where a query stands: the project's data generation and its token, its latest erasure
/// and the deployment id.
pub type CurrentGeneration = read::ProjectGeneration;

/// A state of a project's data: a generation and the token of the write that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    generation: i64,
    token: i64,
}

/// What a refresh found.
enum Refresh {
    /// The snapshot holds the requested state (or a later one).
    Current,
    /// The state the snapshot holds is no longer in the project's history.
    Diverged,
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
                let fresh = Arc::new(ProjectSnapshot::new(
                    current.generation,
                    current.erased_generation,
                ));
                self.lock_projects().insert(project_id, fresh);
                return Ok(current);
            }
        }
        project
            .highest_seen
            .fetch_max(current.generation, Ordering::AcqRel);
        self.follow_erasure(project_id, &current);
        Ok(current)
    }

    /// Replaces the project's snapshot with an empty one when it was made before the
    /// erasure `current` names. Checked and replaced under one lock, so once any caller has
    /// seen the erasure, no caller is handed a snapshot from before it.
    fn follow_erasure(&self, project_id: i64, current: &CurrentGeneration) {
        let mut projects = self.lock_projects();
        let Some(project) = projects.get(&project_id) else {
            return;
        };
        if project.erasure_seen >= current.erased_generation {
            return;
        }
        tracing::info!(
            project_id,
            erased_generation = current.erased_generation,
            "a user was erased: rebuilding the project's snapshot"
        );
        let highest = project
            .highest_seen
            .load(Ordering::Acquire)
            .max(current.generation);
        projects.insert(
            project_id,
            Arc::new(ProjectSnapshot::new(highest, current.erased_generation)),
        );
    }

    async fn read_current(&self, project_id: i64) -> Result<CurrentGeneration, StorageError> {
        read::generation_and_deployment(&self.db, project_id).await
    }

    /// Erases the user from the project's stored data (`userlens_storage::erase`). This
    /// process's snapshot follows on the next query, like every other process's.
    pub async fn erase_user(
        &self,
        project_id: i64,
        user_id: &str,
    ) -> Result<userlens_storage::ErasureSummary, StorageError> {
        userlens_storage::erase_user(&self.db, project_id, user_id).await
    }

    /// The project's snapshot, holding at least every row of state `current`.
    pub async fn at_generation(
        &self,
        project_id: i64,
        current: &CurrentGeneration,
        metrics: &QueryMetrics,
    ) -> Result<OwnedRwLockReadGuard<Snapshot>, StorageError> {
        let project = self.refreshed(project_id, current, metrics).await?;
        Ok(Arc::clone(&project.snapshot).read_owned().await)
    }

    /// The project's snapshot, refreshed to at least state `current`, as a handle a long
    /// read locks piece by piece, so it never holds off a refresh for long. The snapshot
    /// behind the handle only gains rows: interned ids stay valid across its refreshes (a
    /// rebuild makes a new snapshot; handles to the old one keep it).
    pub async fn shared_at_generation(
        &self,
        project_id: i64,
        current: &CurrentGeneration,
        metrics: &QueryMetrics,
    ) -> Result<Arc<RwLock<Snapshot>>, StorageError> {
        let project = self.refreshed(project_id, current, metrics).await?;
        Ok(Arc::clone(&project.snapshot))
    }

    /// The project's snapshot entry, refreshed to state `current`; rebuilt when the state it
    /// held left the project's history.
    async fn refreshed(
        &self,
        project_id: i64,
        current: &CurrentGeneration,
        metrics: &QueryMetrics,
    ) -> Result<Arc<ProjectSnapshot>, StorageError> {
        let project = self.project(project_id);
        match self.refresh(&project, project_id, current, metrics).await? {
            Refresh::Current => Ok(project),
            Refresh::Diverged => {
                tracing::warn!(
                    project_id,
                    generation = current.generation,
                    "the snapshot's state is no longer in the project's history (database \
                     restored?): rebuilding the snapshot"
                );
                let fresh = Arc::new(ProjectSnapshot::new(
                    current.generation,
                    current.erased_generation,
                ));
                {
                    let mut projects = self.lock_projects();
                    // Another query may have replaced it already: keep the newer one.
                    let entry = projects
                        .entry(project_id)
                        .or_insert_with(|| Arc::clone(&fresh));
                    if Arc::ptr_eq(entry, &project) {
                        *entry = Arc::clone(&fresh);
                    }
                }
                let project = self.project(project_id);
                match self.refresh(&project, project_id, current, metrics).await? {
                    Refresh::Current => Ok(project),
                    Refresh::Diverged => Err(StorageError::Corrupt(format!(
                        "project {project_id}: a rebuilt snapshot diverged at once"
                    ))),
                }
            }
        }
    }

    /// Tops the snapshot up to state `current`: one refresh at a time per project; queries
    /// arriving meanwhile wait for it and then find the snapshot current.
    async fn refresh(
        &self,
        project: &ProjectSnapshot,
        project_id: i64,
        current: &CurrentGeneration,
        metrics: &QueryMetrics,
    ) -> Result<Refresh, StorageError> {
        let mut held = project.held.lock().await;
        let wanted = Held {
            generation: current.generation,
            token: current.token,
        };
        if *held == wanted || held.generation > wanted.generation {
            return Ok(Refresh::Current);
        }
        // A snapshot that holds a written state is topped up only from that very state.
        if held.generation > 0 {
            let in_history = held.generation < wanted.generation
                && read::generation_mark(&self.db, project_id, held.generation).await?
                    == Some(held.token);
            if !in_history {
                return Ok(Refresh::Diverged);
            }
        }
        let rows = read::traces_changed_since(&self.db, project_id, held.generation).await?;
        metrics.record_snapshot_refresh(rows.len());
        let mut snapshot = Arc::clone(&project.snapshot).write_owned().await;
        tokio::task::spawn_blocking(move || snapshot.upsert(rows))
            .await
            .map_err(|e| StorageError::Corrupt(format!("snapshot update panicked: {e}")))?;
        *held = wanted;
        Ok(Refresh::Current)
    }

    fn project(&self, project_id: i64) -> Arc<ProjectSnapshot> {
        Arc::clone(
            self.lock_projects()
                .entry(project_id)
                .or_insert_with(|| Arc::new(ProjectSnapshot::new(-1, 0))),
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
    /// `highest_seen`, made after the project's erasure at `erasure_seen`.
    fn new(highest_seen: i64, erasure_seen: i64) -> Self {
        Self {
            snapshot: Arc::new(RwLock::new(Snapshot::new())),
            held: tokio::sync::Mutex::new(Held {
                generation: -1,
                token: 0,
            }),
            highest_seen: AtomicI64::new(highest_seen),
            erasure_seen,
        }
    }
}
