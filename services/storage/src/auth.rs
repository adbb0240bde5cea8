//! API key → project for every API, with a small cache so a busy exporter does not hit the database on
//! every request.
//!
//! Keys are looked up by their SHA-256 (in the database's primary key and in the cache's
//! map), never compared as plaintext. The comparisons a lookup makes (index probes, string
//! equality of hashes) are not constant-time, and need not be: how long they take can tell
//! an attacker at most how many leading characters of a *hash* they matched, and matching a
//! stored hash is no help without a key that hashes to it (a SHA-256 preimage), while the
//! attacker cannot steer the hash of the key they send one character at a time. So no
//! constant-time equality is used here; it would add nothing the hashing does not give.
//!
//! A resolved key is trusted for a minute (`CACHE_TTL`) without asking the database again: a
//! key deleted from `api_keys` stops working in a running process within that time.

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

#[cfg(test)]
mod tests {
    use super::bearer_key;

    #[test]
    fn the_key_is_what_follows_the_bearer_scheme() {
        assert_eq!(bearer_key("Bearer ul_abc"), "ul_abc");
        assert_eq!(bearer_key("  bearer   ul_abc  "), "ul_abc");
        assert_eq!(bearer_key("BEARER ul_abc"), "ul_abc");
        assert_eq!(bearer_key("ul_abc"), "ul_abc");
        assert_eq!(bearer_key("Bearer "), "Bearer");
        assert_eq!(bearer_key(""), "");
        // Another scheme is not stripped: the whole value is looked up, and matches no key.
        assert_eq!(bearer_key("Basic ul_abc"), "Basic ul_abc");
        assert_eq!(bearer_key("Token ul_abc"), "Token ul_abc");
    }
}
