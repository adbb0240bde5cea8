//! Trace id → slot lookup.
//!
//! Slots are never removed (a replaced trace keeps its slot), so an open-addressing table of
//! bare `u32` slots with linear probing suffices; the ids themselves already live in the
//! slot table, so the index costs 6–11 bytes per trace instead of the ≈ 40 of a
//! `HashMap<[u8; 16], u32>`.

use std::hash::BuildHasher;

use crate::hash::FastState;
use crate::intern::NO_ID;

#[derive(Debug, Clone, Default)]
pub(crate) struct TraceIndex {
    /// Slot per bucket, `NO_ID` when empty; the length is a power of two (or zero).
    buckets: Vec<u32>,
    len: usize,
    hasher: FastState,
}

impl TraceIndex {
    pub(crate) fn get(&self, trace_id: &[u8; 16], trace_ids: &[[u8; 16]]) -> Option<u32> {
        if self.buckets.is_empty() {
            return None;
        }
        let mask = self.buckets.len() - 1;
        let mut at = self.hasher.hash_one(trace_id) as usize & mask;
        loop {
            match self.buckets[at] {
                NO_ID => return None,
                slot if trace_ids[slot as usize] == *trace_id => return Some(slot),
                _ => at = (at + 1) & mask,
            }
        }
    }

    /// Records `slot` for its id (`trace_ids[slot]`), which must not be indexed yet.
    pub(crate) fn insert(&mut self, slot: u32, trace_ids: &[[u8; 16]]) {
        self.reserve(1, trace_ids);
        self.place(slot, trace_ids);
        self.len += 1;
    }

    /// Makes room for `additional` more ids without growing in between.
    pub(crate) fn reserve(&mut self, additional: usize, trace_ids: &[[u8; 16]]) {
        let needed = self.len + additional;
        // At most 70 % full keeps linear probe runs short.
        if needed * 10 <= self.buckets.len() * 7 {
            return;
        }
        let size = (needed * 10 / 7 + 1).next_power_of_two().max(16);
        let old = std::mem::replace(&mut self.buckets, vec![NO_ID; size]);
        for slot in old.into_iter().filter(|&s| s != NO_ID) {
            self.place(slot, trace_ids);
        }
    }

    fn place(&mut self, slot: u32, trace_ids: &[[u8; 16]]) {
        let mask = self.buckets.len() - 1;
        let mut at = self.hasher.hash_one(trace_ids[slot as usize]) as usize & mask;
        while self.buckets[at] != NO_ID {
            at = (at + 1) & mask;
        }
        self.buckets[at] = slot;
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.buckets.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_inserted_id_and_nothing_else() {
        let ids: Vec<[u8; 16]> = (0..1000u32)
            .map(|i| {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&(i * 7919).to_le_bytes());
                id
            })
            .collect();
        let mut index = TraceIndex::default();
        assert_eq!(index.get(&ids[0], &ids), None);
        for slot in 0..ids.len() as u32 {
            index.insert(slot, &ids);
        }
        for (slot, id) in ids.iter().enumerate() {
            assert_eq!(index.get(id, &ids), Some(slot as u32));
        }
        assert_eq!(index.get(&[9u8; 16], &ids), None);
    }
}
