//! SeaORM entities of the tables created by `userlens-migrations`.

pub mod api_keys;
pub mod projects;
pub mod resources;
pub mod spans;
pub mod trace_annotations;
pub mod traces;
