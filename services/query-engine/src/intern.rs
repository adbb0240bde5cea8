//! String interning: every user id, session id, email and name is stored once and referred
//! to by a dense `u32`, so per-query scratch state can be plain arrays indexed by id.

use std::hash::BuildHasher;

use crate::hash::{FastMap, FastState};

/// Strings laid end to end in one buffer; id `i` is `text[ends[i - 1]..ends[i]]`.
#[derive(Debug, Default, Clone)]
pub(crate) struct StrList {
    text: String,
    ends: Vec<usize>,
}

impl StrList {
    pub(crate) fn push(&mut self, s: &str) -> u32 {
        let id = u32::try_from(self.ends.len()).expect("fewer than 2^32 distinct strings");
        self.text.push_str(s);
        self.ends.push(self.text.len());
        id
    }

    pub(crate) fn get(&self, id: u32) -> &str {
        let i = id as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.text.capacity() + self.ends.capacity() * size_of::<usize>()
    }
}

/// Interner keyed by string hash with collision chains, so each string's bytes are held
/// once (a `HashMap<String, u32>` plus an id → string table would hold them twice).
#[derive(Debug, Default, Clone)]
pub(crate) struct Interner {
    strings: StrList,
    /// Hash → the most recent id with that hash.
    heads: FastMap<u64, u32>,
    /// Id → the previous id with the same hash, or `NO_ID`.
    next_same_hash: Vec<u32>,
    hasher: FastState,
}

pub(crate) const NO_ID: u32 = u32::MAX;

impl Interner {
    pub(crate) fn get(&self, s: &str) -> Option<u32> {
        let mut id = *self.heads.get(&self.hasher.hash_one(s))?;
        while id != NO_ID {
            if self.strings.get(id) == s {
                return Some(id);
            }
            id = self.next_same_hash[id as usize];
        }
        None
    }

    pub(crate) fn intern(&mut self, s: &str) -> u32 {
        let hash = self.hasher.hash_one(s);
        let head = self.heads.get(&hash).copied().unwrap_or(NO_ID);
        let mut id = head;
        while id != NO_ID {
            if self.strings.get(id) == s {
                return id;
            }
            id = self.next_same_hash[id as usize];
        }
        let id = self.strings.push(s);
        assert!(id != NO_ID, "fewer than 2^32 - 1 distinct strings");
        self.next_same_hash.push(head);
        self.heads.insert(hash, id);
        id
    }

    pub(crate) fn resolve(&self, id: u32) -> &str {
        self.strings.get(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.strings.len()
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.strings.memory_bytes()
            + self.heads.capacity() * (size_of::<u64>() + size_of::<u32>() + 1)
            + self.next_same_hash.capacity() * size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_once_and_resolves() {
        let mut interner = Interner::default();
        let a = interner.intern("müller");
        let b = interner.intern("MÜLLER");
        assert_ne!(a, b);
        assert_eq!(interner.intern("müller"), a);
        assert_eq!(interner.get("MÜLLER"), Some(b));
        assert_eq!(interner.get("nobody"), None);
        assert_eq!(interner.resolve(a), "müller");
        let empty = interner.intern("");
        assert_eq!(interner.resolve(empty), "");
        assert_eq!(interner.len(), 3);
    }
}
