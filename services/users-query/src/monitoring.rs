//! The monitors' evaluator reads the same snapshots as the queries: one copy of each
//! project's rows in memory, figures identical to the users page's.

use std::sync::Arc;

use tokio::sync::OwnedRwLockReadGuard;
use userlens_monitors::SnapshotSource;
use userlens_query_engine::Snapshot;
use userlens_storage::StorageError;

use crate::metrics::QueryMetrics;
use crate::snapshots::SnapshotStore;

pub struct SharedSnapshots {
    pub snapshots: Arc<SnapshotStore>,
    pub metrics: Arc<QueryMetrics>,
}

impl SnapshotSource for SharedSnapshots {
    async fn generation(&self, project_id: i64) -> Result<i64, StorageError> {
        Ok(self.snapshots.current(project_id).await?.generation)
    }

    /// The snapshot at the project's current state, which holds at least `_generation`
    /// (generations only grow; a restore rebuilds the snapshot).
    async fn snapshot(
        &self,
        project_id: i64,
        _generation: i64,
    ) -> Result<OwnedRwLockReadGuard<Snapshot>, StorageError> {
        let current = self.snapshots.current(project_id).await?;
        self.snapshots
            .at_generation(project_id, &current, &self.metrics)
            .await
    }
}
