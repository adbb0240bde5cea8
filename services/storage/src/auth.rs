//! API key → project for every API, with a cache of known and of unknown keys, so a busy
//! exporter does not hit the database on every request and neither does a flood of bad keys.
//!
//! Keys are looked up by their SHA-256 (in the database's primary key and in the caches),
//! never compared as plaintext. The comparisons a lookup makes (index probes, string
//! equality of hashes) are not constant-time, and need not be: how long they take can tell
//! an attacker at most how many leading characters of a *hash* they matched, and matching a
//! stored hash is no help without a key that hashes to it (a SHA-256 preimage), while the
//! attacker cannot steer the hash of the key they send one character at a time. So no
//! constant-time equality is used here; it would add nothing the hashing does not give.
//!
//! A key found in `api_keys` is trusted for `KeyCacheSettings::known_ttl` (30 s by default)
//! without asking the database again: a key deleted from `api_keys` stops working in a
//! running process within that time, on open `StreamSpans` streams too (they re-check the
//! key on every batch). A key not found is remembered as unknown for `unknown_ttl` (5 s), so
//! repeating a bad key costs one database lookup per 5 s, not one per request. The two
//! caches are separate and bounded, so a flood of distinct bad keys cannot evict good ones.
//! Concurrent first requests with the same key share one lookup.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;
use sea_orm::{DatabaseConnection, EntityTrait};

use crate::entities::api_keys;
use crate::error::StorageError;
use crate::keys;

/// Default time a key found in the database is trusted: bounds how long a deleted key keeps
/// working.
pub const DEFAULT_KNOWN_KEY_TTL: Duration = Duration::from_secs(30);
/// Longest time a key not found is remembered as unknown: a key created meanwhile works
/// after at most this.
pub const MAX_UNKNOWN_KEY_TTL: Duration = Duration::from_secs(5);
/// Known keys kept at most (a deployment has a handful).
const KNOWN_KEYS_CAPACITY: u64 = 10_000;
/// Unknown keys kept at most: 64-character hashes, a few MiB at most.
const UNKNOWN_KEYS_CAPACITY: u64 = 50_000;

/// How long the resolver trusts what it learnt about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCacheSettings {
    /// How long a key found in `api_keys` is trusted without asking again.
    pub known_ttl: Duration,
    /// How long a key not found is answered as unknown without asking again.
    pub unknown_ttl: Duration,
}

impl KeyCacheSettings {
    /// Known keys trusted for `known_ttl`; unknown keys remembered for the shorter of it and
    /// `MAX_UNKNOWN_KEY_TTL`.
    pub fn with_known_ttl(known_ttl: Duration) -> Self {
        Self {
            known_ttl,
            unknown_ttl: known_ttl.min(MAX_UNKNOWN_KEY_TTL),
        }
    }
}

impl Default for KeyCacheSettings {
    fn default() -> Self {
        Self::with_known_ttl(DEFAULT_KNOWN_KEY_TTL)
    }
}

/// A key found in `api_keys`: its project, and its hash to check it again later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedKey {
    pub project_id: i64,
    pub key_hash: Arc<str>,
}

/// Why a lookup gave no project; shared by the callers of one coalesced lookup.
#[derive(Debug, thiserror::Error)]
enum LookupFailure {
    #[error("unknown key")]
    Unknown,
    #[error(transparent)]
    Database(#[from] sea_orm::DbErr),
}

pub struct KeyResolver {
    db: DatabaseConnection,
    /// Key hash → project.
    known: Cache<Arc<str>, i64>,
    /// Hashes of keys not found.
    unknown: Cache<Arc<str>, ()>,
    /// Lookups sent to the database, for `/metrics` and for tests of the caches.
    database_lookups: AtomicU64,
    /// How long a known key is trusted: a deleted key stops working within it.
    known_ttl: Duration,
}

impl KeyResolver {
    pub fn new(db: DatabaseConnection) -> Self {
        Self::with_settings(db, KeyCacheSettings::default())
    }

    pub fn with_settings(db: DatabaseConnection, settings: KeyCacheSettings) -> Self {
        Self {
            db,
            known: Cache::builder()
                .max_capacity(KNOWN_KEYS_CAPACITY)
                .time_to_live(settings.known_ttl)
                .build(),
            unknown: Cache::builder()
                .max_capacity(UNKNOWN_KEYS_CAPACITY)
                .time_to_live(settings.unknown_ttl)
                .build(),
            database_lookups: AtomicU64::new(0),
            known_ttl: settings.known_ttl,
        }
    }

    /// How long a known key is trusted after its lookup; a key deleted from `api_keys`
    /// stops working within it.
    pub fn known_ttl(&self) -> Duration {
        self.known_ttl
    }

    /// The project of the key in an `Authorization` value (`Bearer <key>`, or the bare
    /// key); `None` when the value is missing or the key unknown.
    pub async fn project_for(
        &self,
        authorization: Option<&str>,
    ) -> Result<Option<i64>, StorageError> {
        Ok(self
            .resolve(authorization)
            .await?
            .map(|resolved| resolved.project_id))
    }

    /// Like `project_for`, with the key's hash for `project_for_hash` later.
    pub async fn resolve(
        &self,
        authorization: Option<&str>,
    ) -> Result<Option<ResolvedKey>, StorageError> {
        let Some(key) = authorization.map(bearer_key).filter(|k| !k.is_empty()) else {
            return Ok(None);
        };
        let key_hash: Arc<str> = keys::hash_key(key).into();
        Ok(self
            .project_for_hash(&key_hash)
            .await?
            .map(|project_id| ResolvedKey {
                project_id,
                key_hash,
            }))
    }

    /// The project of the key with this hash, through the caches; `None` when unknown.
    pub async fn project_for_hash(&self, key_hash: &Arc<str>) -> Result<Option<i64>, StorageError> {
        if self.unknown.contains_key(key_hash) {
            return Ok(None);
        }
        let lookup = async {
            self.database_lookups.fetch_add(1, Ordering::Relaxed);
            api_keys::Entity::find_by_id(key_hash.to_string())
                .one(&self.db)
                .await?
                .map(|row| row.project_id)
                .ok_or(LookupFailure::Unknown)
        };
        match self.known.try_get_with(Arc::clone(key_hash), lookup).await {
            Ok(project_id) => Ok(Some(project_id)),
            Err(failure) => match &*failure {
                LookupFailure::Unknown => {
                    self.unknown.insert(Arc::clone(key_hash), ()).await;
                    Ok(None)
                }
                // Every caller of the coalesced lookup gets the same error.
                LookupFailure::Database(error) => Err(StorageError::Database(error.clone())),
            },
        }
    }

    /// Lookups sent to the database since start.
    pub fn database_lookups(&self) -> u64 {
        self.database_lookups.load(Ordering::Relaxed)
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
    use super::*;

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

    #[test]
    fn unknown_keys_are_never_remembered_longer_than_known_ones() {
        let default = KeyCacheSettings::default();
        assert_eq!(default.known_ttl, DEFAULT_KNOWN_KEY_TTL);
        assert_eq!(default.unknown_ttl, MAX_UNKNOWN_KEY_TTL);
        let short = KeyCacheSettings::with_known_ttl(Duration::from_millis(200));
        assert_eq!(short.unknown_ttl, Duration::from_millis(200));
    }

    async fn sqlite_resolver(settings: KeyCacheSettings) -> (KeyResolver, String, i64) {
        let dir = std::env::temp_dir().join(format!(
            "userlens-keys-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let url = format!("sqlite://{}", dir.join("keys.db").display());
        let db = crate::connect(&crate::DatabaseSettings::new(url))
            .await
            .expect("connect");
        crate::migrate(&db).await.expect("migrate");
        let (project_id, key) = keys::create_key(&db, "default").await.expect("key");
        (KeyResolver::with_settings(db, settings), key, project_id)
    }

    #[tokio::test]
    async fn known_and_unknown_keys_cost_one_lookup_each_within_their_ttl() {
        let (resolver, key, project_id) = sqlite_resolver(KeyCacheSettings::default()).await;
        let good = format!("Bearer {key}");
        for _ in 0..20 {
            assert_eq!(
                resolver.project_for(Some(&good)).await.expect("lookup"),
                Some(project_id)
            );
            assert_eq!(
                resolver
                    .project_for(Some("Bearer ul_nope"))
                    .await
                    .expect("lookup"),
                None
            );
            assert_eq!(resolver.project_for(None).await.expect("no key"), None);
        }
        assert_eq!(resolver.database_lookups(), 2);
    }

    #[tokio::test]
    async fn a_deleted_key_stops_resolving_once_its_entry_expires() {
        let settings = KeyCacheSettings::with_known_ttl(Duration::from_millis(200));
        let (resolver, key, project_id) = sqlite_resolver(settings).await;
        let resolved = resolver
            .resolve(Some(&key))
            .await
            .expect("lookup")
            .expect("known");
        assert_eq!(resolved.project_id, project_id);
        api_keys::Entity::delete_by_id(resolved.key_hash.to_string())
            .exec(&resolver.db)
            .await
            .expect("delete the key");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            resolver
                .project_for_hash(&resolved.key_hash)
                .await
                .expect("lookup"),
            None
        );
    }
}
