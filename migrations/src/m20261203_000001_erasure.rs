//! Erasure of a user: `projects.erased_generation` holds the data generation committed by
//! the project's latest erasure (0 when none). The query side reads it with the data
//! generation and rebuilds its in-memory snapshot of the project when it sees it pass the
//! erasure its snapshot was built after, so every process drops the erased traces on its
//! next query (`docs/storage.md`, "Erasing a user").

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE projects ADD COLUMN erased_generation bigint NOT NULL DEFAULT 0",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE projects DROP COLUMN erased_generation")
            .await?;
        Ok(())
    }
}
