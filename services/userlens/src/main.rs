//! `userlens`: one binary, every role. Parses configuration, binds listeners, wires the
//! shutdown signal and hands over to the role libraries.

mod cli;
mod demo;

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use futures::FutureExt;
use tokio::net::TcpListener;
use userlens_storage::{DatabaseConnection, DatabaseSettings, keys};

use userlens_users_query::ResultCache;

use crate::cli::{
    AllInOneArgs, CacheArgs, Cli, Command, DatabaseArgs, GatewayListenArgs, IngestListenArgs,
    KeyArgs, KeysCommand, McpTransport, ServerLimitArgs,
};

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Storage(#[from] userlens_storage::StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot use the key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the key file {path} is open to other users (mode {mode}): run `chmod 600 {path}`, \
         or delete it to have a new key made"
    )]
    KeyFileNotPrivate { path: String, mode: String },
    #[error("{origin} is shorter than {min} characters: choose a long random key", min = keys::MIN_KEY_CHARS)]
    KeyTooShort { origin: String },
    #[error(transparent)]
    Serve(#[from] userlens_server::ServeError),
    #[error(transparent)]
    Cache(#[from] userlens_users_query::cache::CacheError),
    #[error(transparent)]
    Gateway(#[from] userlens_gateway::GatewayError),
    #[error(transparent)]
    Demo(#[from] demo::DemoError),
    #[error(transparent)]
    Mcp(#[from] userlens_mcp::McpError),
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
    let cli = Cli::parse();
    let command = cli
        .command
        .unwrap_or_else(|| Command::AllInOne(Box::new(cli.all_in_one)));
    match run(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "userlens stopped");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), CliError> {
    match command {
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
        Command::Demo(args) => Ok(demo::run(args).await?),
        Command::Ingest(args) => {
            let db = open_database(&args.database).await?;
            ensure_bootstrap_key(&db, &args.key).await?;
            let (grpc, http) = bind_ingest(&args.listen).await?;
            announce("ingest", &[("otlp-grpc", &grpc), ("otlp-http", &http)]);
            start_retention(&db, &args.listen);
            userlens_ingest::serve(
                db,
                ingest_settings(&args.listen, &args.limits, &args.key),
                grpc,
                http,
                shutdown_signal(),
            )
            .await?;
            tracing::info!("ingest stopped");
            Ok(())
        }
        Command::Query(args) => {
            let db = open_database(&args.database).await?;
            ensure_bootstrap_key(&db, &args.key).await?;
            let cache = result_cache(&args.cache)?;
            let grpc = bind(args.query_addr).await?;
            let http = match args.query_http_addr {
                Some(addr) => Some(bind(addr).await?),
                None => None,
            };
            announce("query", &[("query-grpc", &grpc)]);
            if let Some(http) = &http {
                announce("query", &[("query-http", http)]);
            }
            userlens_users_query::serve_with_settings(
                db,
                cache,
                grpc,
                http,
                &query_server_settings(&args.limits, &args.key),
                shutdown_signal(),
            )
            .await?;
            tracing::info!("users-query stopped");
            Ok(())
        }
        Command::Gateway(args) => {
            let listener = bind(args.listen.graphql_addr).await?;
            announce("gateway", &[("graphql", &listener)]);
            userlens_gateway::serve(
                listener,
                gateway_settings(&args.listen, &args.limits, args.query_url),
                shutdown_signal(),
            )
            .await?;
            tracing::info!("gateway stopped");
            Ok(())
        }
        Command::Mcp(args) => {
            let settings = userlens_mcp::McpSettings {
                query_url: args.query_url.clone(),
                request_timeout: Duration::from_millis(args.query_timeout_ms.max(1)),
            };
            match args.transport {
                McpTransport::Stdio => {
                    userlens_mcp::serve_stdio(settings, args.api_key, shutdown_signal()).await?;
                }
                McpTransport::Http => {
                    let listener = bind(args.mcp_addr).await?;
                    announce("mcp", &[("mcp-http", &listener)]);
                    let allowed_hosts = args
                        .mcp_allowed_hosts
                        .iter()
                        .map(|h| h.trim().to_owned())
                        .filter(|h| !h.is_empty())
                        .collect();
                    userlens_mcp::serve_http(
                        listener,
                        settings,
                        allowed_hosts,
                        http_server_settings(&args.limits),
                        shutdown_signal(),
                    )
                    .await?;
                }
            }
            tracing::info!("mcp stopped");
            Ok(())
        }
        Command::AllInOne(args) => all_in_one(*args).await,
    }
}

/// How often retention by age looks for traces past the limit.
const RETENTION_INTERVAL: Duration = Duration::from_secs(3_600);

/// Starts retention by age when `USERLENS_RETENTION_DAYS` is set; the task ends with the
/// process (a batch cut short rolls back).
fn start_retention(db: &DatabaseConnection, listen: &cli::IngestListenArgs) {
    if let Some(days) = listen.retention_days {
        tracing::info!(
            days,
            "retention by age: traces older than the limit are deleted"
        );
        tokio::spawn(userlens_storage::retention::run(
            db.clone(),
            userlens_storage::retention::RetentionSettings {
                days,
                interval: RETENTION_INTERVAL,
            },
            std::future::pending::<()>(),
        ));
    }
}

/// Every role in one process; the gateway reaches users-query over loopback gRPC as it
/// would across machines.
async fn all_in_one(args: AllInOneArgs) -> Result<(), CliError> {
    let db = open_database(&args.database).await?;
    let key = all_in_one_key(&db, &args).await?;
    let cache = result_cache(&args.cache)?;
    let (ingest_grpc, ingest_http) = bind_ingest(&args.ingest).await?;
    let query = bind(args.query_addr).await?;
    let query_http = match args.query_http_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let graphql = bind(args.gateway.graphql_addr).await?;
    let query_addr = query.local_addr().map_err(|source| CliError::Bind {
        addr: args.query_addr,
        source,
    })?;
    announce(
        "all-in-one",
        &[
            ("otlp-grpc", &ingest_grpc),
            ("otlp-http", &ingest_http),
            ("query-grpc", &query),
            ("graphql", &graphql),
        ],
    );
    if let Some(query_http) = &query_http {
        announce("all-in-one", &[("query-http", query_http)]);
    }
    if let Some(key) = key {
        println!("userlens API key (project default): {key}");
    }
    if let Ok(addr) = graphql.local_addr() {
        println!("Users page: http://{addr}/");
        println!("GraphiQL: http://{addr}/graphql");
    }

    start_retention(&db, &args.ingest);
    let shutdown = shutdown_signal().shared();
    let ingest = userlens_ingest::serve(
        db.clone(),
        ingest_settings(&args.ingest, &args.limits, &args.key),
        ingest_grpc,
        ingest_http,
        shutdown.clone(),
    );
    let query_settings = query_server_settings(&args.limits, &args.key);
    let users_query = userlens_users_query::serve_with_settings(
        db,
        cache,
        query,
        query_http,
        &query_settings,
        shutdown.clone(),
    );
    let gateway = userlens_gateway::serve(
        graphql,
        gateway_settings(&args.gateway, &args.limits, format!("http://{query_addr}")),
        shutdown,
    );
    let (ingest, users_query, gateway) = tokio::join!(ingest, users_query, gateway);
    ingest?;
    users_query?;
    gateway?;
    tracing::info!("all-in-one stopped");
    Ok(())
}

/// The key all-in-one prints: none when `USERLENS_API_KEY` names one (the operator knows
/// it); otherwise the key kept in the key file, created on first start.
async fn all_in_one_key(
    db: &DatabaseConnection,
    args: &AllInOneArgs,
) -> Result<Option<String>, CliError> {
    if ensure_bootstrap_key(db, &args.key).await? {
        return Ok(None);
    }
    let path = &args.key_file;
    let key_file_error = |source| CliError::KeyFile {
        path: path.display().to_string(),
        source,
    };
    if path.exists() {
        let open_bits =
            userlens_storage::group_or_other_permissions(path).map_err(key_file_error)?;
        if open_bits != 0 {
            return Err(CliError::KeyFileNotPrivate {
                path: path.display().to_string(),
                mode: format!("{open_bits:03o}"),
            });
        }
    }
    let key = match std::fs::read_to_string(path) {
        Ok(existing) if !existing.trim().is_empty() => {
            let key = existing.trim().to_owned();
            require_long_key(&key, || format!("the key in {}", path.display()))?;
            key
        }
        Ok(_) => {
            return Err(key_file_error(std::io::Error::other(
                "the key file is empty",
            )));
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = keys::generate_key();
            write_private_file(path, &key).map_err(key_file_error)?;
            key
        }
        Err(error) => return Err(key_file_error(error)),
    };
    let project_id = keys::ensure_project(db, "default").await?;
    keys::add_key(db, project_id, &key).await?;
    Ok(Some(key))
}

/// Writes a new file only its owner can read (0600), in a directory made private (0700) when
/// it has to be created.
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        userlens_storage::private_dir_builder().create(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    std::io::Write::write_all(&mut file, format!("{contents}\n").as_bytes())
}

fn http_server_settings(limits: &ServerLimitArgs) -> userlens_server::HttpServerSettings {
    userlens_server::HttpServerSettings {
        header_read_timeout: Duration::from_millis(limits.http_header_timeout_ms.max(1)),
        body_read_timeout: Duration::from_millis(limits.http_body_timeout_ms.max(1)),
        max_connections: limits.http_max_connections.max(1),
        shutdown_grace: Duration::from_millis(limits.shutdown_grace_ms),
    }
}

fn query_server_settings(
    limits: &ServerLimitArgs,
    key: &KeyArgs,
) -> userlens_users_query::QueryServerSettings {
    userlens_users_query::QueryServerSettings {
        http: http_server_settings(limits),
        grpc_shutdown_grace: Duration::from_millis(limits.shutdown_grace_ms),
        key_cache: key.key_cache(),
        ..Default::default()
    }
}

fn ingest_settings(
    args: &IngestListenArgs,
    limits: &ServerLimitArgs,
    key: &KeyArgs,
) -> userlens_ingest::IngestSettings {
    userlens_ingest::IngestSettings {
        http: http_server_settings(limits),
        key_cache: key.key_cache(),
        max_body_bytes: args.max_body_bytes,
        writer: userlens_ingest::WriterSettings {
            max_queued_bytes: args.max_queued_bytes,
            writers: args.ingest_writers,
            ..Default::default()
        },
    }
}

fn gateway_settings(
    args: &GatewayListenArgs,
    limits: &ServerLimitArgs,
    query_url: String,
) -> userlens_gateway::GatewaySettings {
    userlens_gateway::GatewaySettings {
        http: http_server_settings(limits),
        query_url,
        request_timeout: Duration::from_millis(args.query_timeout_ms.max(1)),
        cors_allowed_origins: args
            .cors_allowed_origins
            .iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect(),
        subscriptions: userlens_gateway::SubscriptionSettings {
            interval: Duration::from_millis(args.subscription_interval_ms.max(1)),
            max_per_key: args.max_subscriptions_per_key,
            max_per_connection: args.max_subscriptions_per_connection,
        },
    }
}

fn result_cache(args: &CacheArgs) -> Result<ResultCache, CliError> {
    Ok(
        match args
            .redis_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            Some(url) => ResultCache::redis(url, &args.redis_key_prefix)?,
            None => ResultCache::in_process(),
        },
    )
}

async fn bind_ingest(args: &IngestListenArgs) -> Result<(TcpListener, TcpListener), CliError> {
    Ok((
        bind(args.otlp_grpc_addr).await?,
        bind(args.otlp_http_addr).await?,
    ))
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

/// Makes `USERLENS_API_KEY` a key of project `default`; tells whether one was set.
async fn ensure_bootstrap_key(db: &DatabaseConnection, args: &KeyArgs) -> Result<bool, CliError> {
    let Some(key) = args
        .api_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
    else {
        return Ok(false);
    };
    require_long_key(key, || "USERLENS_API_KEY (--api-key)".to_owned())?;
    let project_id = keys::ensure_project(db, "default").await?;
    keys::add_key(db, project_id, key).await?;
    Ok(true)
}

fn require_long_key(key: &str, origin: impl FnOnce() -> String) -> Result<(), CliError> {
    if key.chars().count() < keys::MIN_KEY_CHARS {
        return Err(CliError::KeyTooShort { origin: origin() });
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
