//! API key → project for every API, with a small cache so a busy exporter does not hit the database on
//! every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;

use crate::error::StorageError;
use crate::keys;

/// How long a resolved key is trusted without asking the database again.
const CACHE_TTL: Duration = Duration::from_secs(60);
const CACHE_CAPACITY: usize = 10_000;

pub struct KeyResolver {
    db: DatabaseConnection,
    /// Keyed by the key's hash, so plaintext keys are not kept in memory longer than needed.
    cache: Mutex<HashMap<String, (i64, Instant)>>,
}

impl KeyResolver {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The project of the key in an `Authorization` value (`Bearer <key>`, or the bare
    /// key); `None` when the value is missing or the key unknown.
    pub async fn project_for(
        &self,
        authorization: Option<&str>,
    ) -> Result<Option<i64>, StorageError> {
        let Some(key) = authorization.map(bearer_key).filter(|k| !k.is_empty()) else {
            return Ok(None);
        };
        let hash = keys::hash_key(key);
        if let Some(project_id) = self.cached(&hash) {
            return Ok(Some(project_id));
        }
        let Some(project_id) = keys::resolve_key(&self.db, key).await? else {
            return Ok(None);
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(hash, (project_id, Instant::now()));
        }
        Ok(Some(project_id))
    }

    fn cached(&self, hash: &str) -> Option<i64> {
        let cache = self.cache.lock().ok()?;
        let (project_id, at) = cache.get(hash)?;
        (at.elapsed() < CACHE_TTL).then_some(*project_id)
    }
}

/// `Bearer <key>` (scheme case-insensitive) or a bare key.
pub fn bearer_key(authorization: &str) -> &str {
    let value = authorization.trim();
    match value.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
        _ => value,
    }
}
