//! Per-thread scratch space for queries.
//!
//! A query over 1M rows needs arrays indexed by user, session and (user, session) ids.
//! Allocating and zeroing them per query costs more than the scan itself (fresh pages are
//! faulted in and cleared by the kernel), so each thread keeps one set and reuses it. Arrays
//! hold "stamps": a query reserves a block of fresh stamp values, and an entry counts as set
//! for that query only when it holds one of them, so nothing is cleared between queries. The
//! arrays only grow, to the largest snapshot queried on that thread.

use std::cell::RefCell;

pub(crate) const STAMP_ARRAYS: usize = 5;
/// Stamps stay below 2^31 so a stamp and a flag bit fit in one `u32` (`stamp << 1 | flag`).
pub(crate) const MAX_STAMP: u32 = u32::MAX >> 1;

#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// The highest stamp handed out; every stored stamp is at most this.
    epoch: u32,
    /// One user's in-range costs, for a median.
    pub costs: Vec<i64>,
    /// General stamp arrays; each query documents what it keeps in which.
    pub stamps: [Vec<u32>; STAMP_ARRAYS],
    /// Per session of the user being scanned (by `UserTrace::user_session`):
    /// `stamp << 1 | errored`. Kept apart from `stamps` because its values exceed the epoch.
    pub session_state: Vec<u32>,
    /// Per user id rank: a user's average cost, for summing in user id order.
    pub by_rank: Vec<f64>,
}

impl Scratch {
    /// Reserves `span` fresh stamps and returns `base`: the query's stamps are
    /// `base + 1 ..= base + span`, and every value already stored is at most `base`.
    pub(crate) fn begin(&mut self, span: u32) -> u32 {
        assert!(
            span <= MAX_STAMP,
            "a query needs fewer stamps than there are interned ids (< 2^31)"
        );
        if MAX_STAMP - self.epoch < span {
            for array in &mut self.stamps {
                array.fill(0);
            }
            self.session_state.fill(0);
            self.epoch = 0;
        }
        let base = self.epoch;
        self.epoch += span;
        base
    }

    /// Grows the stamp arrays to at least the given lengths.
    pub(crate) fn size_stamps(&mut self, lens: [usize; STAMP_ARRAYS]) {
        for (array, len) in self.stamps.iter_mut().zip(lens) {
            if array.len() < len {
                array.resize(len, 0);
            }
        }
    }

    pub(crate) fn size_sessions(&mut self, sessions: usize) {
        if self.session_state.len() < sessions {
            self.session_state.resize(sessions, 0);
        }
    }

    pub(crate) fn size_by_rank(&mut self, users: usize) {
        if self.by_rank.len() < users {
            self.by_rank.resize(users, 0.0);
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch space (a fresh one if it is already in use).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        Err(_) => f(&mut Scratch::default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_wrap_by_clearing() {
        let mut scratch = Scratch::default();
        scratch.size_stamps([4, 0, 0, 0, 0]);
        scratch.size_sessions(2);
        let base = scratch.begin(3);
        assert_eq!(base, 0);
        scratch.stamps[0][1] = base + 3;
        scratch.session_state[1] = (base + 3) << 1 | 1;
        scratch.epoch = MAX_STAMP - 1;
        let base = scratch.begin(5);
        assert_eq!(base, 0);
        assert_eq!(scratch.stamps[0][1], 0);
        assert_eq!(scratch.session_state[1], 0);
    }
}
