//! Shared reads of a project's data generation that never answer with a value read before
//! the caller arrived.
//!
//! Every query reads the project's generation from the database, so that a write
//! acknowledged before the query was sent is visible to it. Under concurrent queries of one
//! project, most of those reads are redundant: a read that *started after* a query arrived
//! already returns a generation at least as new as that query needs. Here, one read of a
//! project is in flight at a time; a query that arrives while a read is running waits for it,
//! then either uses the value of a read that started after its arrival or makes the next
//! read itself (answering every query that arrived before that read started). A query waits
//! for at most two reads, and a burst of N queries of one project costs about two reads
//! instead of N.
//!
//! Arrival order comes from one counter per project: a query takes a ticket when it
//! arrives; a read notes the last ticket handed out just before it starts, and its value
//! answers every ticket up to that one.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Per-key shared reads of values of type `V`.
pub struct FreshReads<V> {
    keys: Mutex<HashMap<i64, Arc<Slot<V>>>>,
}

struct Slot<V> {
    /// Tickets handed out so far.
    arrivals: AtomicU64,
    /// The last successful read: the last ticket it answers and its value. Held while a read
    /// is in flight, so at most one runs per key.
    last: tokio::sync::Mutex<Option<(u64, V)>>,
}

impl<V: Clone> FreshReads<V> {
    pub fn new() -> Self {
        Self {
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The value of a read of `key` that started after this call did: `read` runs only when
    /// no such read has already finished. A failed read answers only the caller that ran it.
    pub async fn read<F, Fut, E>(&self, key: i64, read: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let slot = self.slot(key);
        // SeqCst: a ticket at or below the value a read loads was taken before that load, and
        // so before the read started.
        let ticket = slot.arrivals.fetch_add(1, Ordering::SeqCst) + 1;
        let mut last = slot.last.lock().await;
        if let Some((answers_up_to, value)) = last.as_ref()
            && *answers_up_to >= ticket
        {
            return Ok(value.clone());
        }
        let answers_up_to = slot.arrivals.load(Ordering::SeqCst);
        let value = read().await?;
        *last = Some((answers_up_to, value.clone()));
        Ok(value)
    }

    fn slot(&self, key: i64) -> Arc<Slot<V>> {
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(keys.entry(key).or_insert_with(|| {
            Arc::new(Slot {
                arrivals: AtomicU64::new(0),
                last: tokio::sync::Mutex::new(None),
            })
        }))
    }
}

impl<V: Clone> Default for FreshReads<V> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;
    use tokio::sync::Notify;

    /// A stand-in for the database: the value a read returns is the number of writes
    /// committed when the read started.
    struct Counter {
        committed: AtomicI64,
        reads: AtomicU64,
    }

    impl Counter {
        async fn read(&self, hold: Option<&Notify>) -> Result<i64, ()> {
            let value = self.committed.load(Ordering::SeqCst);
            self.reads.fetch_add(1, Ordering::SeqCst);
            if let Some(hold) = hold {
                hold.notified().await;
            }
            Ok(value)
        }
    }

    #[tokio::test]
    async fn a_caller_arriving_during_a_read_never_gets_that_read_s_value() {
        let reads = Arc::new(FreshReads::<i64>::new());
        let db = Arc::new(Counter {
            committed: AtomicI64::new(0),
            reads: AtomicU64::new(0),
        });
        let release = Arc::new(Notify::new());

        // A read that starts at 0 writes and is held in flight.
        let first = tokio::spawn({
            let (reads, db, release) = (reads.clone(), db.clone(), release.clone());
            async move { reads.read(1, || db.read(Some(&release))).await }
        });
        while db.reads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // A write is acknowledged, then two queries arrive while the first read is running.
        db.committed.store(1, Ordering::SeqCst);
        let later: Vec<_> = (0..2)
            .map(|_| {
                let (reads, db) = (reads.clone(), db.clone());
                tokio::spawn(async move { reads.read(1, || db.read(None)).await })
            })
            .collect();
        while reads.slot(1).arrivals.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        release.notify_one();

        assert_eq!(first.await.unwrap(), Ok(0));
        for query in later {
            assert_eq!(query.await.unwrap(), Ok(1), "a read from before the write");
        }
        // The two later queries shared one read.
        assert_eq!(db.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn sequential_callers_each_read_and_keys_are_apart() {
        let reads = FreshReads::<i64>::new();
        let db = Counter {
            committed: AtomicI64::new(0),
            reads: AtomicU64::new(0),
        };
        for committed in 1..=3 {
            db.committed.store(committed, Ordering::SeqCst);
            assert_eq!(reads.read(1, || db.read(None)).await, Ok(committed));
            assert_eq!(reads.read(2, || db.read(None)).await, Ok(committed));
        }
        assert_eq!(db.reads.load(Ordering::SeqCst), 6);
    }

    #[tokio::test]
    async fn a_failed_read_answers_only_its_caller() {
        let reads = FreshReads::<i64>::new();
        assert_eq!(
            reads.read(1, || async { Err::<i64, _>("down") }).await,
            Err("down")
        );
        assert_eq!(reads.read(1, || async { Ok::<_, &str>(7) }).await, Ok(7));
    }
}
