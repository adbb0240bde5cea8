//! Counters of the users-query role, rendered as Prometheus text.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct QueryMetrics {
    queries: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    cache_errors: AtomicU64,
    snapshot_refreshes: AtomicU64,
    snapshot_rows_loaded: AtomicU64,
}

impl QueryMetrics {
    pub fn record_query(&self) {
        self.queries.fetch_add(1, Ordering::Relaxed);
    }
    pub fn record_cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }
    pub fn record_cache_miss(&self) {
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
    }
    pub fn record_cache_error(&self) {
        self.cache_errors.fetch_add(1, Ordering::Relaxed);
    }
    pub fn record_snapshot_refresh(&self, rows: usize) {
        self.snapshot_refreshes.fetch_add(1, Ordering::Relaxed);
        self.snapshot_rows_loaded
            .fetch_add(rows as u64, Ordering::Relaxed);
    }
    pub fn cache_errors(&self) -> u64 {
        self.cache_errors.load(Ordering::Relaxed)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = [
            (
                "userlens_query_requests_total",
                "Queries answered.",
                &self.queries,
            ),
            (
                "userlens_query_cache_hits_total",
                "Queries answered from the result cache.",
                &self.cache_hits,
            ),
            (
                "userlens_query_cache_misses_total",
                "Queries not found in the result cache.",
                &self.cache_misses,
            ),
            (
                "userlens_query_cache_errors_total",
                "Redis failures or timeouts; the query was answered from the database.",
                &self.cache_errors,
            ),
            (
                "userlens_query_snapshot_refreshes_total",
                "Snapshot refreshes from the database.",
                &self.snapshot_refreshes,
            ),
            (
                "userlens_query_snapshot_rows_loaded_total",
                "Trace rows read from the database into snapshots.",
                &self.snapshot_rows_loaded,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        out
    }
}
