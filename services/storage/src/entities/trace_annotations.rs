use sea_orm::entity::prelude::*;

/// An issue or behaviour linked to a trace through `AnnotateTrace`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "trace_annotations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub project_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub trace_id: Vec<u8>,
    /// `ANNOTATION_ISSUE` or `ANNOTATION_BEHAVIOUR`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub kind: i16,
    /// The issue id or the behaviour name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub value: String,
    pub title: Option<String>,
}

pub const ANNOTATION_ISSUE: i16 = 1;
pub const ANNOTATION_BEHAVIOUR: i16 = 2;

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
