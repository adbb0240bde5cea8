//! Projects and their API keys. Keys are opaque random strings; only their SHA-256 is
//! stored, so a leaked database does not leak usable keys.

use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use sha2::{Digest, Sha256};

use crate::entities::{api_keys, projects};
use crate::error::StorageError;

/// Every generated key starts with this, so a key is recognisable in a config file.
pub const KEY_PREFIX: &str = "ul_";

/// The shortest key an operator may configure (`USERLENS_API_KEY`, a key file): a key is the
/// only secret between the internet and a project's data, and a short one can be guessed.
/// Generated keys have 67 characters.
pub const MIN_KEY_CHARS: usize = 20;

/// A new random key: `ul_` and 64 hex characters (256 bits).
pub fn generate_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

/// The stored form of a key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Characters of a key kept in clear (`api_keys.key_prefix`) to tell keys apart in listings.
const SHOWN_PREFIX_CHARS: usize = 10;

/// The start of a key shown in listings: at most 10 characters and at most a quarter of the
/// key, so that a short key chosen by an operator (`USERLENS_API_KEY`) is not stored nearly
/// whole. A generated key shows `ul_` and 7 of its 64 hex characters.
pub fn shown_prefix(key: &str) -> String {
    let shown = (key.chars().count() / 4).min(SHOWN_PREFIX_CHARS);
    key.chars().take(shown).collect()
}

/// The project of `name`, created when missing.
pub async fn ensure_project(db: &impl ConnectionTrait, name: &str) -> Result<i64, StorageError> {
    projects::Entity::insert(projects::ActiveModel {
        name: Set(name.to_owned()),
        data_generation: Set(0),
        generation_token: Set(0),
        created_at_ns: Set(now_ns()),
        ..Default::default()
    })
    .on_conflict_do_nothing_on([projects::Column::Name])
    .exec(db)
    .await?;
    let project = projects::Entity::find()
        .filter(projects::Column::Name.eq(name))
        .one(db)
        .await?
        .ok_or_else(|| StorageError::Corrupt(format!("project {name:?} vanished")))?;
    Ok(project.id)
}

/// Makes `key` a key of `project_id` (idempotent). A key already owned by another project
/// keeps its owner.
pub async fn add_key(
    db: &impl ConnectionTrait,
    project_id: i64,
    key: &str,
) -> Result<(), StorageError> {
    api_keys::Entity::insert(api_keys::ActiveModel {
        key_hash: Set(hash_key(key)),
        project_id: Set(project_id),
        key_prefix: Set(shown_prefix(key)),
        created_at_ns: Set(now_ns()),
    })
    .on_conflict_do_nothing_on([api_keys::Column::KeyHash])
    .exec(db)
    .await?;
    Ok(())
}

/// Creates a new key for the project `name` (created when missing) and returns it.
pub async fn create_key(
    db: &impl ConnectionTrait,
    project_name: &str,
) -> Result<(i64, String), StorageError> {
    let project_id = ensure_project(db, project_name).await?;
    let key = generate_key();
    add_key(db, project_id, &key).await?;
    Ok((project_id, key))
}

/// The project a key belongs to, if any.
pub async fn resolve_key(
    db: &impl ConnectionTrait,
    key: &str,
) -> Result<Option<i64>, StorageError> {
    Ok(api_keys::Entity::find_by_id(hash_key(key))
        .one(db)
        .await?
        .map(|k| k.project_id))
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_long_random_and_prefixed() {
        let key = generate_key();
        assert!(key.starts_with(KEY_PREFIX));
        assert_eq!(key.len(), KEY_PREFIX.len() + 64);
        assert_ne!(key, generate_key());
    }

    #[test]
    fn the_hash_is_sha256_hex_and_not_the_key() {
        let key = "ul_0123456789";
        let hash = hash_key(key);
        assert_eq!(hash.len(), 64);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!hash.contains(key));
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_shown_prefix_is_a_small_part_of_the_key() {
        let generated = generate_key();
        assert_eq!(shown_prefix(&generated), generated[..10]);
        assert_eq!(shown_prefix("short-key-1"), "sh");
        assert_eq!(shown_prefix("abc"), "");
        assert_eq!(shown_prefix(""), "");
        assert_eq!(shown_prefix("ééééééééééééé"), "ééé");
    }
}
