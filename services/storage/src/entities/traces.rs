use sea_orm::entity::prelude::*;

/// One row per trace, derived from all of its spans and annotations (`derive.rs`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "traces")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub project_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub trace_id: Vec<u8>,
    pub started_ns: i64,
    pub ended_ns: i64,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub session_id: String,
    pub errored: bool,
    pub span_count: i32,
    pub llm_calls: i32,
    pub tool_calls: i32,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub cost_nano: i64,
    /// Protobuf-encoded `TraceDetails`: per-model and per-tool usage, issues, behaviours.
    pub details: Vec<u8>,
    /// The project data generation of the write that last changed this row.
    pub change_generation: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
