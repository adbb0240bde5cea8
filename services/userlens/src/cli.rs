//! Command line and environment configuration: every flag also reads `USERLENS_*`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "userlens",
    version,
    about = "End-user analytics for LLM applications, from OpenTelemetry traces.",
    long_about = "End-user analytics for LLM applications, from OpenTelemetry traces.\n\n\
        Without a command, runs every role in one process (all-in-one) on the embedded \
        default: SQLite at ./data/userlens.db and an in-process cache.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub all_in_one: AllInOneArgs,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run every role in one process: ingest, users-query and the GraphQL gateway.
    AllInOne(Box<AllInOneArgs>),
    /// Run the ingest role: OTLP/gRPC + native IngestService, OTLP/HTTP, /healthz, /metrics.
    Ingest(IngestArgs),
    /// Run the users-query role: gRPC UsersQueryService with health and reflection.
    Query(QueryArgs),
    /// Run the GraphQL gateway: POST /graphql, GraphiQL on GET /graphql, /healthz, /metrics.
    Gateway(GatewayArgs),
    /// Serve the users page reads as Model Context Protocol tools for agents, over stdio
    /// (key from USERLENS_API_KEY) or streamable HTTP on POST /mcp (key per request).
    Mcp(McpArgs),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Load synthetic LLM traces through the OTLP/gRPC endpoint of a running ingest.
    Demo(DemoArgs),
}

#[derive(Subcommand)]
pub enum KeysCommand {
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
pub struct DatabaseArgs {
    /// Database: postgres://user@host/db or sqlite://path (the file is created when missing).
    #[arg(
        long,
        env = "USERLENS_DATABASE_URL",
        default_value = "sqlite://./data/userlens.db"
    )]
    pub database_url: String,
    /// Largest number of pooled database connections.
    #[arg(long, env = "USERLENS_DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,
}

#[derive(Args, Clone)]
pub struct KeyArgs {
    /// If set, startup ensures a project `default` owning this API key.
    #[arg(long, env = "USERLENS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Milliseconds an API key found in the database is trusted before it is looked up again:
    /// a deleted key stops working (open streams included) within this. Unknown keys are
    /// remembered for this or 5 s, whichever is shorter.
    #[arg(long, env = "USERLENS_KEY_CACHE_TTL_MS", default_value_t = 30_000)]
    pub key_cache_ttl_ms: u64,
}

impl KeyArgs {
    pub fn key_cache(&self) -> userlens_storage::KeyCacheSettings {
        userlens_storage::KeyCacheSettings::with_known_ttl(std::time::Duration::from_millis(
            self.key_cache_ttl_ms.max(1),
        ))
    }
}

#[derive(Args, Clone)]
pub struct IngestListenArgs {
    /// Listen address of OTLP/gRPC and the native IngestService.
    #[arg(
        long,
        env = "USERLENS_OTLP_GRPC_ADDR",
        default_value = "127.0.0.1:4317"
    )]
    pub otlp_grpc_addr: SocketAddr,
    /// Listen address of OTLP/HTTP (`POST /v1/traces`), `/healthz` and `/metrics`.
    #[arg(
        long,
        env = "USERLENS_OTLP_HTTP_ADDR",
        default_value = "127.0.0.1:4318"
    )]
    pub otlp_http_addr: SocketAddr,
    /// Largest request body in bytes, applied to the compressed and the decompressed body.
    #[arg(long, env = "USERLENS_MAX_BODY_BYTES", default_value_t = userlens_ingest::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Estimated bytes of spans waiting to be written, at most; past it requests are shed with
    /// 429 / RESOURCE_EXHAUSTED, and a request larger than all of it is refused with 413.
    #[arg(long, env = "USERLENS_MAX_QUEUED_BYTES", default_value_t = userlens_ingest::writer::DEFAULT_MAX_QUEUED_BYTES)]
    pub max_queued_bytes: usize,
    /// Write transactions in flight at once; 0: 1 on SQLite, 3 on PostgreSQL.
    #[arg(long, env = "USERLENS_INGEST_WRITERS", default_value_t = 0)]
    pub ingest_writers: usize,
    /// Delete traces older than this many days, with their spans and annotations, keeping
    /// each user's first trace (SPEC §10); unset: keep everything.
    #[arg(long, env = "USERLENS_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..))]
    pub retention_days: Option<u32>,
}

/// Limits of every listener of the role (docs/reliability.md, "Hardening: servers").
#[derive(Args, Clone)]
pub struct ServerLimitArgs {
    /// Longest wait for an HTTP request head, in milliseconds; also closes idle keep-alive
    /// connections.
    #[arg(
        long,
        env = "USERLENS_HTTP_HEADER_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub http_header_timeout_ms: u64,
    /// Longest time to receive a whole HTTP request body, in milliseconds.
    #[arg(long, env = "USERLENS_HTTP_BODY_TIMEOUT_MS", default_value_t = 60_000)]
    pub http_body_timeout_ms: u64,
    /// Open connections per HTTP listener, at most.
    #[arg(long, env = "USERLENS_HTTP_MAX_CONNECTIONS", default_value_t = userlens_server::http::DEFAULT_MAX_CONNECTIONS)]
    pub http_max_connections: usize,
    /// After SIGTERM, how long requests in flight may still run before connections are
    /// closed, in milliseconds.
    #[arg(long, env = "USERLENS_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,
}

#[derive(Args, Clone)]
pub struct CacheArgs {
    /// Redis for the query result cache (redis://host:port); unset: an in-process cache.
    #[arg(long, env = "USERLENS_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key userlens writes.
    #[arg(long, env = "USERLENS_REDIS_KEY_PREFIX", default_value = "userlens:")]
    pub redis_key_prefix: String,
}

#[derive(Args, Clone)]
pub struct GatewayListenArgs {
    /// Listen address of the GraphQL gateway.
    #[arg(long, env = "USERLENS_GRAPHQL_ADDR", default_value = "127.0.0.1:8080")]
    pub graphql_addr: SocketAddr,
    /// Origins allowed by CORS, comma-separated; `*` allows any; empty sends no CORS headers.
    #[arg(
        long,
        env = "USERLENS_CORS_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub cors_allowed_origins: Vec<String>,
    /// Deadline of each gateway → users-query call, in milliseconds.
    #[arg(long, env = "USERLENS_QUERY_TIMEOUT_MS", default_value_t = 10_000)]
    pub query_timeout_ms: u64,
    /// GraphQL subscriptions: least milliseconds between two pushes of one subscription, and
    /// the period of the data generation polls.
    #[arg(
        long,
        env = "USERLENS_SUBSCRIPTION_INTERVAL_MS",
        default_value_t = 1_000
    )]
    pub subscription_interval_ms: u64,
    /// GraphQL subscriptions open at once per API key, over every connection.
    #[arg(long, env = "USERLENS_MAX_SUBSCRIPTIONS_PER_KEY", default_value_t = 16)]
    pub max_subscriptions_per_key: usize,
    /// GraphQL subscriptions open at once per WebSocket connection.
    #[arg(
        long,
        env = "USERLENS_MAX_SUBSCRIPTIONS_PER_CONNECTION",
        default_value_t = 8
    )]
    pub max_subscriptions_per_connection: usize,
}

#[derive(Args, Clone)]
pub struct IngestArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub listen: IngestListenArgs,
    #[command(flatten)]
    pub limits: ServerLimitArgs,
}

#[derive(Args, Clone)]
pub struct QueryArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Listen address of the gRPC UsersQueryService.
    #[arg(long, env = "USERLENS_QUERY_ADDR", default_value = "127.0.0.1:50051")]
    pub query_addr: SocketAddr,
    /// Listen address of `/metrics` and `/healthz` for this role; unset: not served.
    #[arg(long, env = "USERLENS_QUERY_HTTP_ADDR")]
    pub query_http_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub limits: ServerLimitArgs,
}

#[derive(Args, Clone)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub listen: GatewayListenArgs,
    #[command(flatten)]
    pub limits: ServerLimitArgs,
    /// Where the gateway finds users-query.
    #[arg(
        long,
        env = "USERLENS_QUERY_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub query_url: String,
}

#[derive(Args, Clone)]
pub struct AllInOneArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub ingest: IngestListenArgs,
    #[command(flatten)]
    pub gateway: GatewayListenArgs,
    #[command(flatten)]
    pub limits: ServerLimitArgs,
    /// Listen address of the gRPC UsersQueryService.
    #[arg(long, env = "USERLENS_QUERY_ADDR", default_value = "127.0.0.1:50051")]
    pub query_addr: SocketAddr,
    /// Listen address of `/metrics` and `/healthz` of the users-query role; unset: not served.
    #[arg(long, env = "USERLENS_QUERY_HTTP_ADDR")]
    pub query_http_addr: Option<SocketAddr>,
    /// Where the API key created on first start is kept (read on every later start).
    #[arg(long, env = "USERLENS_KEY_FILE", default_value = "./data/api-key")]
    pub key_file: PathBuf,
}

#[derive(Args, Clone)]
pub struct DemoArgs {
    /// Traces to load.
    #[arg(long, default_value_t = 2_000)]
    pub traces: u64,
    /// Distinct end users (activity is Zipf-like: a few heavy users, many light ones).
    #[arg(long, default_value_t = 200)]
    pub users: u64,
    /// Days before now the traces spread over.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Seed of the generator: the same seed loads the same traces.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Traces per OTLP export request.
    #[arg(long, default_value_t = 200)]
    pub batch_traces: u64,
    /// OTLP/gRPC endpoint of the ingest role.
    #[arg(
        long,
        env = "USERLENS_DEMO_ENDPOINT",
        default_value = "http://127.0.0.1:4317"
    )]
    pub endpoint: String,
    /// API key to send; defaults to `USERLENS_API_KEY`, then to the all-in-one key file.
    #[arg(long, env = "USERLENS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The all-in-one key file, read when no key is given.
    #[arg(long, env = "USERLENS_KEY_FILE", default_value = "./data/api-key")]
    pub key_file: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum McpTransport {
    /// JSON-RPC over stdin/stdout, for an agent that starts `userlens mcp` itself.
    Stdio,
    /// Streamable HTTP on `POST /mcp`.
    Http,
}

#[derive(Args, Clone)]
pub struct McpArgs {
    /// How the MCP client reaches the server.
    #[arg(
        long,
        env = "USERLENS_MCP_TRANSPORT",
        value_enum,
        default_value = "stdio"
    )]
    pub transport: McpTransport,
    /// Listen address of `POST /mcp` (HTTP transport).
    #[arg(long, env = "USERLENS_MCP_ADDR", default_value = "127.0.0.1:8090")]
    pub mcp_addr: SocketAddr,
    /// `Host` header values the HTTP transport accepts, comma-separated (a value without a
    /// port matches any port); empty accepts any host. Guards a local server against DNS
    /// rebinding: list the public host names when serving beyond loopback.
    #[arg(
        long,
        env = "USERLENS_MCP_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1"
    )]
    pub mcp_allowed_hosts: Vec<String>,
    /// Where the tools find users-query.
    #[arg(
        long,
        env = "USERLENS_QUERY_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub query_url: String,
    /// Deadline of each users-query call, in milliseconds.
    #[arg(long, env = "USERLENS_QUERY_TIMEOUT_MS", default_value_t = 10_000)]
    pub query_timeout_ms: u64,
    /// The project's key for the stdio transport (the HTTP transport takes each request's
    /// `Authorization` header instead).
    #[arg(long, env = "USERLENS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    #[command(flatten)]
    pub limits: ServerLimitArgs,
}
