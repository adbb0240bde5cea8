//! Helpers for userlens' integration tests: a fresh database per test on every configured
//! backend, the real `userlens` binary on ephemeral ports, and OTLP span builders.
//!
//! Every test body runs on SQLite (always) and on PostgreSQL when
//! `USERLENS_TEST_DATABASE_URL` names a server (each test gets its own database there).

pub mod faults_support;
pub mod gateway;
pub mod otlp;
pub mod process;
pub mod proxy;
pub mod raw_grpc;
pub mod stack;
pub mod webhook;

use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use sea_orm::{ConnectionTrait, Database};
use userlens_storage::{DatabaseConnection, DatabaseSettings};

pub const DATABASE_URL_ENV: &str = "USERLENS_TEST_DATABASE_URL";
pub const REDIS_URL_ENV: &str = "USERLENS_TEST_REDIS_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backends every database test runs on: SQLite, plus PostgreSQL when configured.
pub fn backends() -> Vec<Backend> {
    static NOTE: Once = Once::new();
    match postgres_admin_url() {
        Some(_) => vec![Backend::Sqlite, Backend::Postgres],
        None => {
            assert!(
                !running_under_ci(),
                "CI runs every database test on PostgreSQL too: set {DATABASE_URL_ENV}"
            );
            NOTE.call_once(|| {
                eprintln!(
                    "note: {DATABASE_URL_ENV} is not set; database tests run on SQLite only \
                     (set it to a PostgreSQL url to run them on PostgreSQL too)"
                );
            });
            vec![Backend::Sqlite]
        }
    }
}

/// True under CI (`CI=true`), where a test must never quietly run on fewer backends.
pub fn running_under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn postgres_admin_url() -> Option<String> {
    std::env::var(DATABASE_URL_ENV)
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// A database of its own for one test: a SQLite file in a fresh directory, or a fresh
/// PostgreSQL database. Migrated.
pub struct TestDatabase {
    pub backend: Backend,
    pub url: String,
    pub db: DatabaseConnection,
    sqlite_dir: Option<PathBuf>,
    postgres_name: Option<String>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_suffix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random: u32 = rand::random();
    format!("{}_{n}_{random:08x}", std::process::id())
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("userlens-test-{}", unique_suffix()));
                std::fs::create_dir_all(&dir).expect("create a temp dir for SQLite");
                let url = format!("sqlite://{}", dir.join("userlens.db").display());
                let db = connect_and_migrate(&url).await;
                Self {
                    backend,
                    url,
                    db,
                    sqlite_dir: Some(dir),
                    postgres_name: None,
                }
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url().expect("PostgreSQL is configured");
                let name = format!("userlens_test_{}", unique_suffix());
                let admin = Database::connect(admin_url.as_str())
                    .await
                    .expect("connect to the PostgreSQL test server");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("create a test database");
                let _ = admin.close().await;
                let url = replace_database_name(&admin_url, &name);
                let db = connect_and_migrate(&url).await;
                Self {
                    backend,
                    url,
                    db,
                    sqlite_dir: None,
                    postgres_name: Some(name),
                }
            }
        }
    }

    /// Removes the database. Tests call it at the end; a failed test leaves its database
    /// behind for inspection.
    pub async fn finish(self) {
        let _ = self.db.close().await;
        if let Some(dir) = &self.sqlite_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let (Some(name), Some(admin_url)) = (&self.postgres_name, postgres_admin_url())
            && let Ok(admin) = Database::connect(admin_url.as_str()).await
        {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
            let _ = admin.close().await;
        }
    }

    /// A second, independent pool on the same database.
    pub async fn connect_again(&self) -> DatabaseConnection {
        userlens_storage::connect(&DatabaseSettings::new(self.url.clone()))
            .await
            .expect("connect to the test database")
    }
}

async fn connect_and_migrate(url: &str) -> DatabaseConnection {
    let db = userlens_storage::connect(&DatabaseSettings::new(url))
        .await
        .expect("connect to the test database");
    userlens_storage::migrate(&db)
        .await
        .expect("migrate the test database");
    db
}

/// `postgres://u@h:p/db?x` with `db` replaced.
fn replace_database_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let host_part = match path_start {
        Some(i) => &base[..i],
        None => base,
    };
    match query {
        Some(query) => format!("{host_part}/{name}?{query}"),
        None => format!("{host_part}/{name}"),
    }
}

/// Runs `body` once per backend, each time on a fresh database.
#[macro_export]
macro_rules! for_each_backend {
    (|$database:ident| $body:block) => {
        for backend in $crate::backends() {
            let $database = $crate::TestDatabase::create(backend).await;
            eprintln!("running on {:?}", backend);
            $body
            $database.finish().await;
        }
    };
}

#[cfg(test)]
mod tests {
    use super::replace_database_name;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            replace_database_name("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            replace_database_name(
                "postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
                "x"
            ),
            "postgres://postgres@127.0.0.1:5432/x?sslmode=disable"
        );
        assert_eq!(
            replace_database_name("postgres://postgres@127.0.0.1:5432", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
    }
}
