//! Cache-aside for query results: Redis when configured, in-process otherwise.
//!
//! Keys carry the deployment id (a random id kept in the database's `deployment` table, so
//! deployments sharing one Redis and key prefix never read each other's entries, and
//! replaced when a restored database is detected), the project and its data generation
//! (advanced by every committed write), so a write makes every older entry unreachable:
//! nothing stale is served after an acknowledged write. Redis is an accelerator only: when it is down, slow (bounded by a timeout) or
//! flushed, the query is answered from the snapshot and the failure is counted.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use userlens_storage::read::ProjectGeneration;

use crate::metrics::QueryMetrics;

/// How long an entry lives; a new generation makes it unreachable long before.
const ENTRY_TTL: Duration = Duration::from_secs(600);
/// Longest wait for Redis on the query path.
const REDIS_TIMEOUT: Duration = Duration::from_millis(100);
const IN_PROCESS_CAPACITY_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("invalid Redis url: {0}")]
    InvalidUrl(#[from] redis::RedisError),
}

#[derive(Clone)]
pub enum ResultCache {
    Redis {
        connection: ConnectionManager,
        prefix: String,
    },
    InProcess(moka::future::Cache<String, Arc<Vec<u8>>>),
}

impl ResultCache {
    /// Redis at `url` (connected lazily, reconnecting on its own), keys under `prefix`.
    pub fn redis(url: &str, prefix: &str) -> Result<Self, CacheError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self::Redis {
            connection,
            prefix: prefix.to_owned(),
        })
    }

    pub fn in_process() -> Self {
        Self::InProcess(
            moka::future::Cache::builder()
                .max_capacity(IN_PROCESS_CAPACITY_BYTES)
                .weigher(|key: &String, value: &Arc<Vec<u8>>| {
                    u32::try_from(key.len() + value.len()).unwrap_or(u32::MAX)
                })
                .time_to_live(ENTRY_TTL)
                .build(),
        )
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Redis { .. } => "redis",
            Self::InProcess(_) => "in-process",
        }
    }

    pub async fn get(&self, key: &CacheKey, metrics: &QueryMetrics) -> Option<Vec<u8>> {
        let found = match self {
            Self::InProcess(cache) => cache.get(&key.0).await.map(|v| v.as_ref().clone()),
            Self::Redis { connection, prefix } => {
                let mut connection = connection.clone();
                let full_key = format!("{prefix}{}", key.0);
                match tokio::time::timeout(
                    REDIS_TIMEOUT,
                    connection.get::<_, Option<Vec<u8>>>(full_key),
                )
                .await
                {
                    Ok(Ok(value)) => value,
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "redis read failed; answering from the database");
                        metrics.record_cache_error();
                        None
                    }
                    Err(_) => {
                        tracing::warn!("redis read timed out; answering from the database");
                        metrics.record_cache_error();
                        None
                    }
                }
            }
        };
        match found {
            Some(_) => metrics.record_cache_hit(),
            None => metrics.record_cache_miss(),
        }
        found
    }

    pub async fn set(&self, key: CacheKey, value: Vec<u8>, metrics: &QueryMetrics) {
        match self {
            Self::InProcess(cache) => cache.insert(key.0, Arc::new(value)).await,
            Self::Redis { connection, prefix } => {
                let mut connection = connection.clone();
                let full_key = format!("{prefix}{}", key.0);
                let write = connection.set_ex::<_, _, ()>(full_key, value, ENTRY_TTL.as_secs());
                match tokio::time::timeout(REDIS_TIMEOUT, write).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "redis write failed");
                        metrics.record_cache_error();
                    }
                    Err(_) => {
                        tracing::warn!("redis write timed out");
                        metrics.record_cache_error();
                    }
                }
            }
        }
    }
}

/// Keys scanned per Redis `SCAN` step when purging a project's entries, and how long a
/// purge may take in all.
const PURGE_SCAN_COUNT: usize = 1_000;
const PURGE_DEADLINE: Duration = Duration::from_secs(5);

impl ResultCache {
    /// Deletes every entry of the project in this deployment (after an erasure). Best
    /// effort: the entries are unreachable anyway once the generation advanced, and expire
    /// within `ENTRY_TTL`; a Redis failure is logged and counted.
    pub async fn purge_project(
        &self,
        deployment_id: &str,
        project_id: i64,
        metrics: &QueryMetrics,
    ) {
        let key_start = CacheKey::project_start(deployment_id, project_id);
        match self {
            Self::InProcess(cache) => {
                let keys: Vec<Arc<String>> = cache
                    .iter()
                    .filter(|(key, _)| key.starts_with(&key_start))
                    .map(|(key, _)| key)
                    .collect();
                for key in keys {
                    cache.invalidate(key.as_str()).await;
                }
            }
            Self::Redis { connection, prefix } => {
                let pattern = format!("{}*", glob_escape(&format!("{prefix}{key_start}")));
                let purge = purge_redis(connection.clone(), pattern);
                match tokio::time::timeout(PURGE_DEADLINE, purge).await {
                    Ok(Ok(deleted)) => {
                        tracing::debug!(project_id, deleted, "cached answers purged");
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "redis purge failed; the entries expire on their own");
                        metrics.record_cache_error();
                    }
                    Err(_) => {
                        tracing::warn!("redis purge timed out; the entries expire on their own");
                        metrics.record_cache_error();
                    }
                }
            }
        }
    }
}

/// `SCAN … MATCH pattern` and `UNLINK` of what it finds; returns how many were deleted.
async fn purge_redis(
    mut connection: ConnectionManager,
    pattern: String,
) -> redis::RedisResult<u64> {
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(PURGE_SCAN_COUNT)
            .query_async(&mut connection)
            .await?;
        if !keys.is_empty() {
            deleted += redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<u64>(&mut connection)
                .await?;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// `text` with the Redis glob characters escaped, so it matches only itself.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Deployment, project, data state (generation and token), method and a digest of the
/// request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey(String);

impl CacheKey {
    pub fn new(
        state: &ProjectGeneration,
        project_id: i64,
        method: &str,
        request: &[u8],
        extra: &str,
    ) -> Self {
        let mut digest = Sha256::new();
        digest.update(request);
        digest.update(extra.as_bytes());
        let digest = hex::encode(&digest.finalize()[..16]);
        let ProjectGeneration {
            generation,
            token,
            deployment_id,
            ..
        } = state;
        Self(format!(
            "{}{generation}.{token}:{method}:{digest}",
            Self::project_start(deployment_id, project_id)
        ))
    }

    /// How every key of the project in the deployment starts.
    fn project_start(deployment_id: &str, project_id: i64) -> String {
        format!("q3:{deployment_id}:{project_id}:")
    }
}
