use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "projects")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub name: String,
    /// Advanced by every committed write of the project; see `docs/storage.md`.
    pub data_generation: i64,
    /// Random token of the write that made `data_generation` (0 before any write).
    pub generation_token: i64,
    /// The data generation committed by the project's latest erasure of a user (0: none).
    pub erased_generation: i64,
    pub created_at_ns: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
