//! Counters of the ingest role, rendered as Prometheus text on `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct IngestMetrics {
    spans_accepted: AtomicU64,
    spans_rejected: AtomicU64,
    commits: AtomicU64,
    write_failures: AtomicU64,
    requests_shed: AtomicU64,
    requests_unauthenticated: AtomicU64,
    requests_malformed: AtomicU64,
}

impl IngestMetrics {
    pub fn record_commit(&self, spans: usize) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.spans_accepted
            .fetch_add(spans as u64, Ordering::Relaxed);
    }
    pub fn record_rejected_spans(&self, spans: u64) {
        self.spans_rejected.fetch_add(spans, Ordering::Relaxed);
    }
    pub fn record_write_failure(&self) {
        self.write_failures.fetch_add(1, Ordering::Relaxed);
    }
    pub fn record_shed(&self) {
        self.requests_shed.fetch_add(1, Ordering::Relaxed);
    }
    pub fn record_unauthenticated(&self) {
        self.requests_unauthenticated
            .fetch_add(1, Ordering::Relaxed);
    }
    pub fn record_malformed(&self) {
        self.requests_malformed.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition; the queue gauges are read from the writer at render time.
    pub fn render(&self, queued_spans: usize, queued_bytes: usize) -> String {
        let mut out = String::new();
        let counters = [
            (
                "userlens_ingest_spans_accepted_total",
                "Spans committed.",
                &self.spans_accepted,
            ),
            (
                "userlens_ingest_spans_rejected_total",
                "Spans refused for bad content.",
                &self.spans_rejected,
            ),
            (
                "userlens_ingest_commits_total",
                "Committed write transactions.",
                &self.commits,
            ),
            (
                "userlens_ingest_write_failures_total",
                "Requests whose write failed (nothing written).",
                &self.write_failures,
            ),
            (
                "userlens_ingest_requests_shed_total",
                "Requests refused because the write queue was full.",
                &self.requests_shed,
            ),
            (
                "userlens_ingest_requests_unauthenticated_total",
                "Requests with a missing or unknown API key.",
                &self.requests_unauthenticated,
            ),
            (
                "userlens_ingest_requests_malformed_total",
                "Requests whose body did not decode or was too large.",
                &self.requests_malformed,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP userlens_ingest_queued_spans Spans waiting for the writer.\n# TYPE userlens_ingest_queued_spans gauge\nuserlens_ingest_queued_spans {queued_spans}"
        );
        let _ = writeln!(
            out,
            "# HELP userlens_ingest_queued_bytes Estimated bytes of the spans waiting for the writer.\n# TYPE userlens_ingest_queued_bytes gauge\nuserlens_ingest_queued_bytes {queued_bytes}"
        );
        out
    }
}
