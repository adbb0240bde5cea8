use sea_orm::entity::prelude::*;

/// A raw span as received (latest copy wins), with the facts read from its attributes.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "spans")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub project_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub trace_id: Vec<u8>,
    #[sea_orm(primary_key, auto_increment = false)]
    pub span_id: Vec<u8>,
    pub parent_span_id: Option<Vec<u8>>,
    pub name: String,
    pub kind: i32,
    pub start_ns: i64,
    pub end_ns: i64,
    pub status_code: i32,
    pub status_message: Option<String>,
    pub user_id: Option<String>,
    pub user_email: Option<String>,
    pub session_id: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub is_llm_call: bool,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cached_input_tokens: Option<i64>,
    pub cost_nano: Option<i64>,
    pub tool_name: Option<String>,
    pub issue_id: Option<String>,
    pub issue_title: Option<String>,
    /// JSON array of strings.
    pub behaviours: Option<String>,
    /// The span's attributes as a JSON object.
    pub attributes: String,
    /// SHA-256 of the resource's attribute JSON: the key of its `resources` row.
    pub resource_hash: Vec<u8>,
    /// Attributes dropped by the sender or by the ingest limits.
    pub dropped_attributes_count: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
