//! Connecting to PostgreSQL or SQLite and applying migrations.

use std::path::Path;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use sea_orm_migration::MigratorTrait;
use userlens_migrations::Migrator;

use crate::error::StorageError;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite://path` (the file is created when missing).
    pub url: String,
    /// Pool size; SQLite serialises writers anyway, readers share the pool.
    pub max_connections: u32,
}

impl DatabaseSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 10,
        }
    }
}

/// Opens a pool. A SQLite file and its directory are created when missing; SQLite runs in
/// WAL mode with full fsync on commit (an acknowledged batch survives a crash).
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, StorageError> {
    let url = settings.url.trim();
    let mut options = if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let file = path.split('?').next().unwrap_or_default();
        if file.is_empty() || file == ":memory:" {
            return Err(StorageError::InvalidUrl(
                "a SQLite url must name a file, e.g. sqlite://./data/userlens.db".into(),
            ));
        }
        prepare_sqlite_file(Path::new(file))?;
        let mut options = ConnectOptions::new(format!("sqlite://{file}?mode=rwc"));
        options.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
        options
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut options = ConnectOptions::new(url.to_owned());
        options.map_sqlx_postgres_pool_opts(|pool| {
            pool.after_connect(|_, _| {
                Box::pin(async {
                    tcp_nodelay::enable_on_open_sockets();
                    Ok(())
                })
            })
        });
        options
    } else {
        return Err(StorageError::InvalidUrl(
            "expected postgres://… or sqlite://…".into(),
        ));
    };
    options
        .max_connections(settings.max_connections.max(1))
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    Ok(Database::connect(options).await?)
}

/// The SQLite file holds every project's traces, user ids and emails: a directory made for
/// it is private to the owner (0700) and a new file is created 0600 before SQLite opens it
/// (SQLite gives its `-wal` and `-shm` files the mode of the database file). An existing file
/// readable by others is used, with a warning saying how to fix it.
fn prepare_sqlite_file(file: &Path) -> Result<(), StorageError> {
    let cannot = |what: &Path, e: std::io::Error| {
        StorageError::InvalidUrl(format!("cannot create {}: {e}", what.display()))
    };
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        private_dir_builder()
            .create(dir)
            .map_err(|e| cannot(dir, e))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            warn_when_readable_by_others(file);
            Ok(())
        }
        Err(e) => Err(cannot(file, e)),
    }
}

/// Creates missing directories (parents included) readable by their owner only.
pub fn private_dir_builder() -> std::fs::DirBuilder {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
}

/// The permission bits of `path` that let its group or others in (0 when none do).
pub fn group_or_other_permissions(path: &Path) -> std::io::Result<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o077)
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path).map(|_| 0)
    }
}

fn warn_when_readable_by_others(file: &Path) {
    if let Ok(bits) = group_or_other_permissions(file)
        && bits != 0
    {
        tracing::warn!(
            path = %file.display(),
            mode = format!("{bits:03o}"),
            "the database file is open to other users; `chmod 600` it (and its -wal and -shm files)"
        );
    }
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), StorageError> {
    Migrator::up(db, None).await?;
    Ok(())
}

/// sqlx 0.9.0 opens PostgreSQL TCP connections without `TCP_NODELAY` and offers no hook to
/// set it: it set the option from 0.7.4 (launchbadge/sqlx#3055), 0.9.0 lost it
/// (launchbadge/sqlx#4022, reported as launchbadge/sqlx#4335), and the fix
/// (launchbadge/sqlx#4336) is merged but not in a release yet; 0.9.0 is the newest on
/// crates.io. A statement larger than one segment then waits for the server's delayed ACK
/// before its last segment leaves (about 40 ms per large write on Linux), which caps bulk
/// writes. After each new connection, every TCP socket of the process gets `TCP_NODELAY`
/// (the servers of userlens want it on theirs too). Delete this module once the sqlx that
/// sea-orm uses is a release holding #4336.
mod tcp_nodelay {
    #[cfg(target_os = "linux")]
    pub fn enable_on_open_sockets() {
        let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
            return;
        };
        for entry in entries.flatten() {
            let is_socket = std::fs::read_link(entry.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<libc::c_int>().ok())
            else {
                continue;
            };
            if !is_socket {
                continue;
            }
            let enable: libc::c_int = 1;
            // SAFETY: setsockopt reads `enable` for the given length and touches nothing
            // else. On a socket that is not TCP (or an fd closed and reused since the listing)
            // it fails with an error, which is ignored.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&enable as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn enable_on_open_sockets() {}
}
