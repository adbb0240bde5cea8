//! Monitors of userlens (docs/spec.md §8, docs/monitors.md): per-user or every-user
//! conditions over rolling windows, evaluated from ingested data against the users page's
//! own figures, with signed, retried webhook delivery and a delivery log.

pub mod deliver;
pub mod entities;
pub mod error;
pub mod evaluate;
pub mod model;
pub mod service;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio::sync::Notify;

pub use deliver::{Deliverer, DeliverySettings, signature};
pub use error::MonitorError;
pub use evaluate::{Evaluator, EvaluatorSettings, SnapshotSource};
pub use model::{Condition, MonitorSpec};
pub use service::MonitorGrpc;

/// Settings of the evaluator and the deliverer.
#[derive(Debug, Clone, Default)]
pub struct MonitorSettings {
    pub evaluator: EvaluatorSettings,
    pub delivery: DeliverySettings,
}

/// Runs the evaluator and the deliverer until `shutdown` resolves.
pub async fn run<S: SnapshotSource>(
    db: DatabaseConnection,
    source: Arc<S>,
    settings: MonitorSettings,
    shutdown: impl Future<Output = ()> + Send + Clone,
) -> Result<(), MonitorError> {
    let wake = Arc::new(Notify::new());
    let evaluator = Evaluator::new(db.clone(), source, settings.evaluator, Arc::clone(&wake));
    let deliverer = Deliverer::new(db, settings.delivery, wake)?;
    tokio::join!(evaluator.run(shutdown.clone()), deliverer.run(shutdown));
    Ok(())
}
