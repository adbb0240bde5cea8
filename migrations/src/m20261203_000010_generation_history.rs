//! The history of a project's data generations: every write draws a random token, stored
//! beside the generation it makes (`projects.generation_token`) and as one row of
//! `generation_marks`. The pair (generation, token) names one state of one history, so a
//! database restored from a backup and written again never reuses a name an earlier
//! history gave out: cached results keyed by it cannot be served across a restore, and a
//! snapshot holding generation G checks that G, with its token, is still in the project's
//! history before it is topped up (see `docs/storage.md`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // Token 0 is the state before any write (and of projects written before this
        // migration, whose snapshots are then simply rebuilt once).
        db.execute_unprepared(
            "ALTER TABLE projects ADD COLUMN generation_token bigint NOT NULL DEFAULT 0",
        )
        .await?;
        db.execute_unprepared(
            "CREATE TABLE IF NOT EXISTS generation_marks (\
                 project_id bigint NOT NULL, \
                 generation bigint NOT NULL, \
                 token bigint NOT NULL, \
                 PRIMARY KEY (project_id, generation))",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP TABLE IF EXISTS generation_marks")
            .await?;
        db.execute_unprepared("ALTER TABLE projects DROP COLUMN generation_token")
            .await?;
        Ok(())
    }
}
