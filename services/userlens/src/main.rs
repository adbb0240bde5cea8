//! `userlens`: one binary, every role. Parses configuration, binds listeners, wires the
//! shutdown signal and hands over to the role libraries.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;
use userlens_storage::{DatabaseConnection, DatabaseSettings, keys};

#[derive(Parser)]
#[command(
    name = "userlens",
    version,
    about = "End-user analytics for LLM applications, from OpenTelemetry traces."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the ingest role: OTLP/gRPC + native IngestService, OTLP/HTTP, /healthz, /metrics.
    Ingest(IngestArgs),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key for a project (created when missing) and print the key alone on stdout.
    Create {
        /// The project's name.
        #[arg(long)]
        project: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Args, Clone)]
struct DatabaseArgs {
    /// Database: postgres://user@host/db or sqlite://path (the file is created when missing).
    #[arg(
        long,
        env = "USERLENS_DATABASE_URL",
        default_value = "sqlite://./data/userlens.db"
    )]
    database_url: String,
    /// Largest number of pooled database connections.
    #[arg(long, env = "USERLENS_DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    database_max_connections: u32,
}

#[derive(Args, Clone)]
struct KeyArgs {
    /// If set, startup ensures a project `default` owning this API key.
    #[arg(long, env = "USERLENS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

#[derive(Args, Clone)]
struct IngestArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    key: KeyArgs,
    /// Listen address of OTLP/gRPC and the native IngestService.
    #[arg(
        long,
        env = "USERLENS_OTLP_GRPC_ADDR",
        default_value = "127.0.0.1:4317"
    )]
    otlp_grpc_addr: SocketAddr,
    /// Listen address of OTLP/HTTP (`POST /v1/traces`), `/healthz` and `/metrics`.
    #[arg(
        long,
        env = "USERLENS_OTLP_HTTP_ADDR",
        default_value = "127.0.0.1:4318"
    )]
    otlp_http_addr: SocketAddr,
    /// Largest request body in bytes, applied to the compressed and the decompressed body.
    #[arg(long, env = "USERLENS_MAX_BODY_BYTES", default_value_t = userlens_ingest::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Spans waiting to be written, at most; past it requests are shed with 429 / RESOURCE_EXHAUSTED.
    #[arg(long, env = "USERLENS_MAX_QUEUED_SPANS", default_value_t = 100_000)]
    max_queued_spans: usize,
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Storage(#[from] userlens_storage::StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ingest(#[from] userlens_ingest::ServeError),
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "userlens stopped");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Migrate(database) => {
            open_database(&database).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Keys(KeysCommand::Create { project, database }) => {
            let db = open_database(&database).await?;
            let (_, key) = keys::create_key(&db, &project).await?;
            println!("{key}");
            Ok(())
        }
        Command::Ingest(args) => {
            let db = open_database(&args.database).await?;
            ensure_bootstrap_key(&db, &args.key).await?;
            let grpc = bind(args.otlp_grpc_addr).await?;
            let http = bind(args.otlp_http_addr).await?;
            announce("ingest", &[("otlp-grpc", &grpc), ("otlp-http", &http)]);
            let settings = userlens_ingest::IngestSettings {
                max_body_bytes: args.max_body_bytes,
                writer: userlens_ingest::WriterSettings {
                    max_queued_spans: args.max_queued_spans,
                    ..Default::default()
                },
            };
            userlens_ingest::serve(db, settings, grpc, http, shutdown_signal()).await?;
            tracing::info!("ingest stopped");
            Ok(())
        }
    }
}

/// Connects and applies pending migrations (idempotent, so every role can start alone).
async fn open_database(args: &DatabaseArgs) -> Result<DatabaseConnection, CliError> {
    let settings = DatabaseSettings {
        url: args.database_url.clone(),
        max_connections: args.database_max_connections,
    };
    let db = userlens_storage::connect(&settings).await?;
    userlens_storage::migrate(&db).await?;
    Ok(db)
}

async fn ensure_bootstrap_key(db: &DatabaseConnection, args: &KeyArgs) -> Result<(), CliError> {
    if let Some(key) = args
        .api_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        let project_id = keys::ensure_project(db, "default").await?;
        keys::add_key(db, project_id, key).await?;
    }
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, CliError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| CliError::Bind { addr, source })
}

/// Logs the bound addresses (a port of 0 in the configuration becomes the real one here).
fn announce(role: &str, listeners: &[(&str, &TcpListener)]) {
    for (name, listener) in listeners {
        match listener.local_addr() {
            Ok(addr) => tracing::info!(role, listener = name, %addr, "listening"),
            Err(error) => {
                tracing::warn!(role, listener = name, %error, "listening on an unknown address")
            }
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received, finishing in-flight work");
}
