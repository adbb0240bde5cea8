use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    /// SHA-256 of the key, lowercase hex. The key itself is never stored.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key_hash: String,
    pub project_id: i64,
    /// The first characters of the key, to tell keys apart in listings and logs.
    pub key_prefix: String,
    pub created_at_ns: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
