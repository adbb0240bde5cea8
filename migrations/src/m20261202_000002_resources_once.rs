//! Resource attributes stored once per resource: a `resources` table keyed by
//! `(project_id, resource_hash)` (SHA-256 of the attribute JSON text) holds the JSON, and
//! each span names its resource by that hash instead of carrying a copy of the JSON. Spans
//! and resources also keep how many attributes were dropped (by the sender, as OTLP reports
//! it, or by the ingest limits).
//!
//! Existing rows migrate in place: every distinct `spans.resource_attributes` text moves to
//! `resources`, each span gets the hash of its text, and the column is dropped. The hash is
//! the one ingest computes for the same text, so a resource already stored by a migrated
//! span is found again by new spans of that resource.

use std::collections::BTreeMap;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use sha2::{Digest, Sha256};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Spans converted per statement on SQLite (which has no SHA-256 function in SQL).
const SQLITE_ROWS_PER_STEP: i64 = 1_000;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// In one transaction on SQLite too (its DDL is transactional): an interrupted
    /// migration leaves the old layout, never a half-converted one.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let backend = manager.get_database_backend();
        let (blob, empty_blob) = match backend {
            DbBackend::Postgres => ("bytea", "''::bytea"),
            _ => ("blob", "x''"),
        };
        db.execute_unprepared(&format!(
            "CREATE TABLE IF NOT EXISTS resources (\
                 project_id bigint NOT NULL, \
                 resource_hash {blob} NOT NULL, \
                 attributes text NOT NULL, \
                 dropped_attributes_count integer NOT NULL DEFAULT 0, \
                 PRIMARY KEY (project_id, resource_hash))"
        ))
        .await?;
        // NOT NULL with a default so that SQLite can add it to a table with rows; every
        // span is given its real hash below before the transaction commits.
        db.execute_unprepared(&format!(
            "ALTER TABLE spans ADD COLUMN resource_hash {blob} NOT NULL DEFAULT {empty_blob}"
        ))
        .await?;
        db.execute_unprepared(
            "ALTER TABLE spans ADD COLUMN dropped_attributes_count integer NOT NULL DEFAULT 0",
        )
        .await?;

        match backend {
            DbBackend::Postgres => {
                db.execute_unprepared(
                    "INSERT INTO resources (project_id, resource_hash, attributes) \
                     SELECT DISTINCT project_id, sha256(convert_to(resource_attributes, 'UTF8')), \
                            resource_attributes \
                     FROM spans ON CONFLICT DO NOTHING",
                )
                .await?;
                db.execute_unprepared(
                    "UPDATE spans SET resource_hash = sha256(convert_to(resource_attributes, 'UTF8'))",
                )
                .await?;
                db.execute_unprepared("ALTER TABLE spans ALTER COLUMN resource_hash DROP DEFAULT")
                    .await?;
            }
            _ => migrate_sqlite_rows(db).await?,
        }
        db.execute_unprepared("ALTER TABLE spans DROP COLUMN resource_attributes")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "ALTER TABLE spans ADD COLUMN resource_attributes text NOT NULL DEFAULT '{}'",
        )
        .await?;
        db.execute_unprepared(
            "UPDATE spans SET resource_attributes = COALESCE((SELECT r.attributes FROM resources r \
             WHERE r.project_id = spans.project_id AND r.resource_hash = spans.resource_hash), '{}')",
        )
        .await?;
        db.execute_unprepared("ALTER TABLE spans DROP COLUMN resource_hash")
            .await?;
        db.execute_unprepared("ALTER TABLE spans DROP COLUMN dropped_attributes_count")
            .await?;
        db.execute_unprepared("DROP TABLE IF EXISTS resources")
            .await?;
        Ok(())
    }
}

/// Moves the resource JSON of every span into `resources`, a step of rows at a time in
/// rowid order, hashing in Rust.
async fn migrate_sqlite_rows(db: &SchemaManagerConnection<'_>) -> Result<(), DbErr> {
    let mut after_rowid = i64::MIN;
    loop {
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "SELECT rowid, project_id, resource_attributes FROM spans \
                 WHERE rowid > ? ORDER BY rowid LIMIT ?",
                [after_rowid.into(), SQLITE_ROWS_PER_STEP.into()],
            ))
            .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after_rowid = last.try_get_by_index(0)?;
        // The spans of one resource (usually most of a step) are updated in one statement.
        let mut rowids_by_resource: BTreeMap<(i64, String), Vec<i64>> = BTreeMap::new();
        for row in &rows {
            let rowid: i64 = row.try_get_by_index(0)?;
            let project_id: i64 = row.try_get_by_index(1)?;
            let attributes: String = row.try_get_by_index(2)?;
            rowids_by_resource
                .entry((project_id, attributes))
                .or_default()
                .push(rowid);
        }
        for ((project_id, attributes), rowids) in rowids_by_resource {
            let hash: Vec<u8> = Sha256::digest(attributes.as_bytes()).to_vec();
            db.execute_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "INSERT INTO resources (project_id, resource_hash, attributes) VALUES (?, ?, ?) \
                 ON CONFLICT DO NOTHING",
                [project_id.into(), hash.clone().into(), attributes.into()],
            ))
            .await?;
            let list = vec!["?"; rowids.len()].join(", ");
            let mut values: Vec<Value> = Vec::with_capacity(rowids.len() + 1);
            values.push(hash.into());
            values.extend(rowids.into_iter().map(Value::from));
            db.execute_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                format!("UPDATE spans SET resource_hash = ? WHERE rowid IN ({list})"),
                values,
            ))
            .await?;
        }
    }
}
