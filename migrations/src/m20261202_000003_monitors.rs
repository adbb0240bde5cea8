//! Monitors: per-project definitions, the alert state of each (monitor, user) pair, and the
//! event log that webhook delivery works from. `docs/monitors.md` explains each table.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Monitors::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Monitors::Id))
                    .col(big_integer(Monitors::ProjectId))
                    .col(text(Monitors::Name))
                    .col(text_null(Monitors::UserId))
                    .col(string(Monitors::Condition))
                    .col(double(Monitors::Threshold))
                    .col(big_integer(Monitors::MinSessions))
                    .col(big_integer(Monitors::WindowSeconds))
                    .col(text(Monitors::WebhookUrl))
                    .col(string(Monitors::Secret))
                    .col(boolean(Monitors::Enabled))
                    // The project data generation this monitor has evaluated every changed
                    // user up to; 0 makes the next evaluation look at every user.
                    .col(big_integer(Monitors::EvaluatedGeneration).default(0))
                    .col(big_integer(Monitors::CreatedAtNs))
                    .col(big_integer(Monitors::UpdatedAtNs))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Monitors::Table, Monitors::ProjectId)
                            .to(Projects::Table, Projects::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("monitors_project")
                    .table(Monitors::Table)
                    .col(Monitors::ProjectId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MonitorStates::Table)
                    .if_not_exists()
                    .col(big_integer(MonitorStates::MonitorId))
                    .col(text(MonitorStates::UserId))
                    .col(boolean(MonitorStates::Firing))
                    .col(big_integer(MonitorStates::Episode))
                    .col(big_integer(MonitorStates::ChangedAtNs))
                    .primary_key(
                        Index::create()
                            .col(MonitorStates::MonitorId)
                            .col(MonitorStates::UserId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(MonitorStates::Table, MonitorStates::MonitorId)
                            .to(Monitors::Table, Monitors::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MonitorEvents::Table)
                    .if_not_exists()
                    .col(big_pk_auto(MonitorEvents::Id))
                    .col(big_integer(MonitorEvents::ProjectId))
                    .col(big_integer(MonitorEvents::MonitorId))
                    .col(text(MonitorEvents::UserId))
                    .col(string(MonitorEvents::Kind))
                    .col(big_integer(MonitorEvents::Episode))
                    .col(string_uniq(MonitorEvents::IdempotencyKey))
                    .col(text(MonitorEvents::Body))
                    .col(big_integer(MonitorEvents::CreatedAtNs))
                    .col(string(MonitorEvents::Delivery))
                    .col(integer(MonitorEvents::Attempts).default(0))
                    .col(big_integer(MonitorEvents::NextAttemptNs))
                    .col(big_integer_null(MonitorEvents::LastAttemptNs))
                    .col(integer_null(MonitorEvents::LastStatus))
                    .col(text_null(MonitorEvents::LastError))
                    .col(big_integer_null(MonitorEvents::DeliveredAtNs))
                    .foreign_key(
                        ForeignKey::create()
                            .from(MonitorEvents::Table, MonitorEvents::MonitorId)
                            .to(Monitors::Table, Monitors::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Serves delivery: "pending events due now, oldest first".
        manager
            .create_index(
                Index::create()
                    .name("monitor_events_due")
                    .table(MonitorEvents::Table)
                    .col(MonitorEvents::Delivery)
                    .col(MonitorEvents::NextAttemptNs)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // Serves `monitorEvents`: a project's events newest first.
        manager
            .create_index(
                Index::create()
                    .name("monitor_events_project")
                    .table(MonitorEvents::Table)
                    .col(MonitorEvents::ProjectId)
                    .col(MonitorEvents::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(MonitorEvents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(MonitorStates::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Monitors::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Monitors {
    Table,
    Id,
    ProjectId,
    Name,
    UserId,
    Condition,
    Threshold,
    MinSessions,
    WindowSeconds,
    WebhookUrl,
    Secret,
    Enabled,
    EvaluatedGeneration,
    CreatedAtNs,
    UpdatedAtNs,
}

#[derive(DeriveIden)]
enum MonitorStates {
    Table,
    MonitorId,
    UserId,
    Firing,
    Episode,
    ChangedAtNs,
}

#[derive(DeriveIden)]
enum MonitorEvents {
    Table,
    Id,
    ProjectId,
    MonitorId,
    UserId,
    Kind,
    Episode,
    IdempotencyKey,
    Body,
    CreatedAtNs,
    Delivery,
    Attempts,
    NextAttemptNs,
    LastAttemptNs,
    LastStatus,
    LastError,
    DeliveredAtNs,
}
