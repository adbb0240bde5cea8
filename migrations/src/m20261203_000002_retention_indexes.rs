//! Indexes of retention by age (`USERLENS_RETENTION_DAYS`) and of erasing a user: traces of
//! a project by time (the traces older than the limit) and by user and time (a user's first
//! trace, which retention keeps; a user's traces, which an erasure removes).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("traces_project_started")
                    .table(Traces::Table)
                    .col(Traces::ProjectId)
                    .col(Traces::StartedNs)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("traces_project_user_started")
                    .table(Traces::Table)
                    .col(Traces::ProjectId)
                    .col(Traces::UserId)
                    .col(Traces::StartedNs)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in ["traces_project_user_started", "traces_project_started"] {
            manager
                .drop_index(Index::drop().name(name).table(Traces::Table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Traces {
    Table,
    ProjectId,
    UserId,
    StartedNs,
}
