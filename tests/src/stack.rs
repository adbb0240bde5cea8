//! Ingest and users-query served in-process on ephemeral ports, over one test database,
//! with the result cache the backend calls for: in-process next to SQLite, Redis next to
//! PostgreSQL (when `USERLENS_TEST_REDIS_URL` is set).

use std::net::SocketAddr;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Request;
use tonic::transport::Channel;
use userlens_proto::query::v1::users_query_service_client::UsersQueryServiceClient;
use userlens_storage::keys;
use userlens_users_query::{QueryServerSettings, ResultCache};

use crate::{Backend, REDIS_URL_ENV, TestDatabase};

/// Which result cache the users-query server uses.
#[derive(Debug, Clone)]
pub enum CacheChoice {
    /// In-process for SQLite, Redis (when configured) for PostgreSQL.
    ForBackend,
    InProcess,
    /// Redis at this url, keys under a prefix of their own.
    Redis(String),
}

/// The Redis server of the tests; None when not configured (never under CI).
pub fn redis_url() -> Option<String> {
    let url = std::env::var(REDIS_URL_ENV)
        .ok()
        .filter(|u| !u.trim().is_empty());
    assert!(
        url.is_some() || !crate::running_under_ci(),
        "CI runs the tests on Redis too: set {REDIS_URL_ENV}"
    );
    url
}

pub struct Stack {
    pub ingest_grpc: SocketAddr,
    pub ingest_http: SocketAddr,
    pub query: SocketAddr,
    pub query_http: SocketAddr,
    pub key: String,
    pub project_id: i64,
    /// The Redis key prefix when Redis caches results.
    pub redis_prefix: Option<String>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral port");
    let addr = listener.local_addr().expect("bound address");
    (listener, addr)
}

impl Stack {
    /// Starts both roles with a fresh project and key.
    pub async fn start(database: &TestDatabase, cache: CacheChoice) -> Self {
        Self::start_with_query_settings(database, cache, QueryServerSettings::default()).await
    }

    /// [`Stack::start`] with users-query's settings (its monitors' intervals among them).
    pub async fn start_with_query_settings(
        database: &TestDatabase,
        cache: CacheChoice,
        settings: QueryServerSettings,
    ) -> Self {
        let (project_id, key) = keys::create_key(&database.db, "default")
            .await
            .expect("create a key");
        Self::start_for_key(database, cache, settings, project_id, key).await
    }

    /// Both roles serving an existing project and key (a restart over the same database).
    pub async fn start_for_key(
        database: &TestDatabase,
        cache: CacheChoice,
        settings: QueryServerSettings,
        project_id: i64,
        key: String,
    ) -> Self {
        let redis = match cache {
            CacheChoice::InProcess => None,
            CacheChoice::Redis(url) => Some(url),
            CacheChoice::ForBackend => match database.backend {
                Backend::Sqlite => None,
                Backend::Postgres => redis_url(),
            },
        };
        let redis_prefix = redis.as_ref().map(|_| {
            let random: u64 = rand::random();
            format!("userlens-test-{random:016x}:")
        });
        let result_cache = match (&redis, &redis_prefix) {
            (Some(url), Some(prefix)) => ResultCache::redis(url, prefix).expect("redis url"),
            _ => ResultCache::in_process(),
        };

        let (shutdown, signal) = watch::channel(false);
        let stopped = |mut signal: watch::Receiver<bool>| async move {
            let _ = signal.wait_for(|stop| *stop).await;
        };
        let (ingest_grpc_listener, ingest_grpc) = listener().await;
        let (ingest_http_listener, ingest_http) = listener().await;
        let (query_listener, query) = listener().await;
        let (query_http_listener, query_http) = listener().await;
        let ingest = tokio::spawn({
            let db = database.db.clone();
            let stop = stopped(signal.clone());
            async move {
                userlens_ingest::serve(
                    db,
                    userlens_ingest::IngestSettings::default(),
                    ingest_grpc_listener,
                    ingest_http_listener,
                    stop,
                )
                .await
                .expect("ingest serves");
            }
        });
        let users_query = tokio::spawn({
            let db = database.db.clone();
            let stop = stopped(signal);
            async move {
                userlens_users_query::serve_with_settings(
                    db,
                    result_cache,
                    query_listener,
                    Some(query_http_listener),
                    &settings,
                    stop,
                )
                .await
                .expect("users-query serves");
            }
        });
        Self {
            ingest_grpc,
            ingest_http,
            query,
            query_http,
            key,
            project_id,
            redis_prefix,
            shutdown,
            tasks: vec![ingest, users_query],
        }
    }

    /// Stops both roles gracefully and waits for them.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("roles stop within 30 s")
                .expect("role task");
        }
    }

    pub fn authorized<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.key).parse().expect("ascii key"),
        );
        request
    }

    pub async fn query_client(&self) -> UsersQueryServiceClient<Channel> {
        UsersQueryServiceClient::connect(format!("http://{}", self.query))
            .await
            .expect("connect to users-query")
    }

    /// Exports over OTLP/gRPC; returns after the spans are committed.
    pub async fn export(&self, request: ExportTraceServiceRequest) -> ExportTraceServiceResponse {
        self.export_as(&self.key, request).await
    }

    /// Exports under `key` (this stack's or another project's) over OTLP/gRPC; returns once
    /// the spans are committed.
    pub async fn export_as(
        &self,
        key: &str,
        request: ExportTraceServiceRequest,
    ) -> ExportTraceServiceResponse {
        let mut client = TraceServiceClient::connect(format!("http://{}", self.ingest_grpc))
            .await
            .expect("connect to ingest");
        let mut request = Request::new(request);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {key}").parse().expect("ascii key"),
        );
        client
            .export(request)
            .await
            .expect("export accepted")
            .into_inner()
    }

    /// The users-query `/metrics` text.
    pub async fn query_metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.query_http);
        http_get(&url).await
    }
}

/// A plain HTTP GET over a TCP stream, so the library needs no HTTP client.
async fn http_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let without_scheme = url.trim_start_matches("http://");
    let (host, path) = without_scheme
        .split_once('/')
        .unwrap_or((without_scheme, ""));
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read response");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}
