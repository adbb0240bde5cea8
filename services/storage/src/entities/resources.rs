use sea_orm::entity::prelude::*;

/// The attributes of one OTLP resource, stored once per project; spans name it by hash.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "resources")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub project_id: i64,
    /// SHA-256 of `attributes`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub resource_hash: Vec<u8>,
    /// The resource's attributes as a JSON object.
    pub attributes: String,
    /// Attributes dropped by the sender or by the ingest limits.
    pub dropped_attributes_count: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
