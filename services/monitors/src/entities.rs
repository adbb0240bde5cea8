//! SeaORM entities of the monitor tables (migration `m20261202_000003_monitors`).

pub mod monitors {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "monitors")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub project_id: i64,
        pub name: String,
        pub user_id: Option<String>,
        pub condition: String,
        pub threshold: f64,
        pub min_sessions: i64,
        pub window_seconds: i64,
        pub webhook_url: String,
        pub secret: String,
        pub enabled: bool,
        pub evaluated_generation: i64,
        pub created_at_ns: i64,
        pub updated_at_ns: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod monitor_states {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "monitor_states")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub monitor_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        pub firing: bool,
        pub episode: i64,
        pub changed_at_ns: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod monitor_events {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "monitor_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub project_id: i64,
        pub monitor_id: i64,
        pub user_id: String,
        pub kind: String,
        pub episode: i64,
        #[sea_orm(unique)]
        pub idempotency_key: String,
        pub body: String,
        pub created_at_ns: i64,
        pub delivery: String,
        pub attempts: i32,
        pub next_attempt_ns: i64,
        pub last_attempt_ns: Option<i64>,
        pub last_status: Option<i32>,
        pub last_error: Option<String>,
        pub delivered_at_ns: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
