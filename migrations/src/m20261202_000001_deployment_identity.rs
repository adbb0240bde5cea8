//! The deployment identity: one row holding a random id made when the schema is created.
//! The query result cache namespaces its keys with it, so two deployments sharing one Redis
//! (even under the same key prefix) never read each other's entries; users-query replaces
//! it when it sees a project's data generation go backwards (a restored database).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A fresh random deployment id: 128 bits, hex.
pub fn new_deployment_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Deployment::Table)
                    .if_not_exists()
                    // Always 1: the table holds one row.
                    .col(integer(Deployment::Id).primary_key())
                    .col(string(Deployment::DeploymentId))
                    .to_owned(),
            )
            .await?;
        let insert = Query::insert()
            .into_table(Deployment::Table)
            .columns([Deployment::Id, Deployment::DeploymentId])
            .values([1.into(), new_deployment_id().into()])
            .map_err(|error| DbErr::Migration(error.to_string()))?
            .to_owned();
        manager.exec_stmt(insert).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Deployment::Table).to_owned())
            .await
    }
}

// The variants name the SQL table and columns: `deployment.deployment_id` it is.
#[allow(clippy::enum_variant_names)]
#[derive(DeriveIden)]
pub enum Deployment {
    Table,
    Id,
    DeploymentId,
}
