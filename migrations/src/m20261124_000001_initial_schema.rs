//! The initial schema: projects and their API keys, raw spans, one derived row per trace,
//! and trace annotations. `docs/storage.md` explains each table and index.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Projects::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Projects::Id))
                    .col(string_uniq(Projects::Name))
                    .col(big_integer(Projects::DataGeneration).default(0))
                    .col(big_integer(Projects::CreatedAtNs))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .if_not_exists()
                    .col(string(ApiKeys::KeyHash).primary_key())
                    .col(big_integer(ApiKeys::ProjectId))
                    .col(string(ApiKeys::KeyPrefix))
                    .col(big_integer(ApiKeys::CreatedAtNs))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiKeys::Table, ApiKeys::ProjectId)
                            .to(Projects::Table, Projects::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Spans::Table)
                    .if_not_exists()
                    .col(big_integer(Spans::ProjectId))
                    .col(binary(Spans::TraceId))
                    .col(binary(Spans::SpanId))
                    .col(binary_null(Spans::ParentSpanId))
                    .col(text(Spans::Name))
                    .col(integer(Spans::Kind))
                    .col(big_integer(Spans::StartNs))
                    .col(big_integer(Spans::EndNs))
                    .col(integer(Spans::StatusCode))
                    .col(text_null(Spans::StatusMessage))
                    .col(text_null(Spans::UserId))
                    .col(text_null(Spans::UserEmail))
                    .col(text_null(Spans::SessionId))
                    .col(text_null(Spans::Provider))
                    .col(text_null(Spans::Model))
                    .col(boolean(Spans::IsLlmCall))
                    .col(big_integer_null(Spans::InputTokens))
                    .col(big_integer_null(Spans::OutputTokens))
                    .col(big_integer_null(Spans::CachedInputTokens))
                    .col(big_integer_null(Spans::CostNano))
                    .col(text_null(Spans::ToolName))
                    .col(text_null(Spans::IssueId))
                    .col(text_null(Spans::IssueTitle))
                    .col(text_null(Spans::Behaviours))
                    .col(text(Spans::Attributes))
                    .col(text(Spans::ResourceAttributes))
                    .primary_key(
                        Index::create()
                            .col(Spans::ProjectId)
                            .col(Spans::TraceId)
                            .col(Spans::SpanId),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Traces::Table)
                    .if_not_exists()
                    .col(big_integer(Traces::ProjectId))
                    .col(binary(Traces::TraceId))
                    .col(big_integer(Traces::StartedNs))
                    .col(big_integer(Traces::EndedNs))
                    .col(text_null(Traces::UserId))
                    .col(text_null(Traces::Email))
                    .col(text(Traces::SessionId))
                    .col(boolean(Traces::Errored))
                    .col(integer(Traces::SpanCount))
                    .col(integer(Traces::LlmCalls))
                    .col(integer(Traces::ToolCalls))
                    .col(big_integer(Traces::InputTokens))
                    .col(big_integer(Traces::OutputTokens))
                    .col(big_integer(Traces::CachedInputTokens))
                    .col(big_integer(Traces::CostNano))
                    .col(binary(Traces::Details))
                    .col(big_integer(Traces::ChangeGeneration))
                    .primary_key(Index::create().col(Traces::ProjectId).col(Traces::TraceId))
                    .to_owned(),
            )
            .await?;

        // Serves the users-query refresh: "trace rows of project P changed after generation G".
        manager
            .create_index(
                Index::create()
                    .name("traces_project_change_generation")
                    .table(Traces::Table)
                    .col(Traces::ProjectId)
                    .col(Traces::ChangeGeneration)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(TraceAnnotations::Table)
                    .if_not_exists()
                    .col(big_integer(TraceAnnotations::ProjectId))
                    .col(binary(TraceAnnotations::TraceId))
                    .col(small_integer(TraceAnnotations::Kind))
                    .col(text(TraceAnnotations::Value))
                    .col(text_null(TraceAnnotations::Title))
                    .primary_key(
                        Index::create()
                            .col(TraceAnnotations::ProjectId)
                            .col(TraceAnnotations::TraceId)
                            .col(TraceAnnotations::Kind)
                            .col(TraceAnnotations::Value),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            TraceAnnotations::Table.into_iden(),
            Traces::Table.into_iden(),
            Spans::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            Projects::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
    Name,
    DataGeneration,
    CreatedAtNs,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    KeyHash,
    ProjectId,
    KeyPrefix,
    CreatedAtNs,
}

#[derive(DeriveIden)]
enum Spans {
    Table,
    ProjectId,
    TraceId,
    SpanId,
    ParentSpanId,
    Name,
    Kind,
    StartNs,
    EndNs,
    StatusCode,
    StatusMessage,
    UserId,
    UserEmail,
    SessionId,
    Provider,
    Model,
    IsLlmCall,
    InputTokens,
    OutputTokens,
    CachedInputTokens,
    CostNano,
    ToolName,
    IssueId,
    IssueTitle,
    Behaviours,
    Attributes,
    ResourceAttributes,
}

#[derive(DeriveIden)]
enum Traces {
    Table,
    ProjectId,
    TraceId,
    StartedNs,
    EndedNs,
    UserId,
    Email,
    SessionId,
    Errored,
    SpanCount,
    LlmCalls,
    ToolCalls,
    InputTokens,
    OutputTokens,
    CachedInputTokens,
    CostNano,
    Details,
    ChangeGeneration,
}

#[derive(DeriveIden)]
enum TraceAnnotations {
    Table,
    ProjectId,
    TraceId,
    Kind,
    Value,
    Title,
}
