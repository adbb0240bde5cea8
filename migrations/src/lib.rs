//! Schema migrations of userlens. The same migrations run on PostgreSQL and SQLite.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_initial_schema;
mod m20261202_000001_deployment_identity;
mod m20261202_000002_resources_once;
mod m20261202_000003_monitors;
mod m20261203_000001_erasure;
mod m20261203_000002_retention_indexes;
mod m20261203_000010_generation_history;

pub use m20261202_000001_deployment_identity::new_deployment_id;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_initial_schema::Migration),
            Box::new(m20261202_000001_deployment_identity::Migration),
            Box::new(m20261202_000002_resources_once::Migration),
            Box::new(m20261202_000003_monitors::Migration),
            Box::new(m20261203_000001_erasure::Migration),
            Box::new(m20261203_000002_retention_indexes::Migration),
            Box::new(m20261203_000010_generation_history::Migration),
        ]
    }
}
