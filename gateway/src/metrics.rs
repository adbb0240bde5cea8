//! Counters served as Prometheus text on `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::ErrorCode;

/// users-query calls, as labelled in the metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rpc {
    GetUsersOverview,
    ListUsers,
    GetUserDetail,
    ListSessions,
    GetBreakdowns,
    HealthCheck,
    CheckKey,
    GetPreviousPeriodOverview,
    GetRetention,
    GetActiveUsers,
    ExportUsers,
    GetDataGeneration,
}

impl Rpc {
    const ALL: [Rpc; 12] = [
        Rpc::GetUsersOverview,
        Rpc::ListUsers,
        Rpc::GetUserDetail,
        Rpc::ListSessions,
        Rpc::GetBreakdowns,
        Rpc::HealthCheck,
        Rpc::CheckKey,
        Rpc::GetPreviousPeriodOverview,
        Rpc::GetRetention,
        Rpc::GetActiveUsers,
        Rpc::ExportUsers,
        Rpc::GetDataGeneration,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Rpc::GetUsersOverview => "GetUsersOverview",
            Rpc::ListUsers => "ListUsers",
            Rpc::GetUserDetail => "GetUserDetail",
            Rpc::ListSessions => "ListSessions",
            Rpc::GetBreakdowns => "GetBreakdowns",
            Rpc::HealthCheck => "grpc.health.v1.Health/Check",
            Rpc::CheckKey => "CheckKey",
            Rpc::GetPreviousPeriodOverview => "GetPreviousPeriodOverview",
            Rpc::GetRetention => "GetRetention",
            Rpc::GetActiveUsers => "GetActiveUsers",
            Rpc::ExportUsers => "ExportUsers",
            Rpc::GetDataGeneration => "GetDataGeneration",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Default)]
struct CallStats {
    count: AtomicU64,
    failures: AtomicU64,
    nanos_sum: AtomicU64,
}

#[derive(Default)]
pub(crate) struct Metrics {
    requests: AtomicU64,
    errors: [AtomicU64; ErrorCode::ALL.len()],
    calls: [CallStats; Rpc::ALL.len()],
}

impl Metrics {
    pub(crate) fn record_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_error(&self, code: ErrorCode) {
        self.errors[code as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_call(&self, rpc: Rpc, elapsed: Duration, ok: bool) {
        let stats = &self.calls[rpc.index()];
        stats.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        stats.nanos_sum.fetch_add(nanos, Ordering::Relaxed);
        if !ok {
            stats.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) -> std::fmt::Result {
        writeln!(
            out,
            "# HELP userlens_gateway_graphql_requests_total GraphQL requests received on POST /graphql."
        )?;
        writeln!(
            out,
            "# TYPE userlens_gateway_graphql_requests_total counter"
        )?;
        writeln!(
            out,
            "userlens_gateway_graphql_requests_total {}",
            self.requests.load(Ordering::Relaxed)
        )?;

        writeln!(
            out,
            "# HELP userlens_gateway_graphql_errors_total GraphQL errors returned, by extensions.code."
        )?;
        writeln!(out, "# TYPE userlens_gateway_graphql_errors_total counter")?;
        for code in ErrorCode::ALL {
            writeln!(
                out,
                "userlens_gateway_graphql_errors_total{{code=\"{}\"}} {}",
                code.as_str(),
                self.errors[code as usize].load(Ordering::Relaxed)
            )?;
        }

        writeln!(
            out,
            "# HELP userlens_gateway_query_call_duration_seconds Latency of users-query gRPC calls."
        )?;
        writeln!(
            out,
            "# TYPE userlens_gateway_query_call_duration_seconds summary"
        )?;
        for rpc in Rpc::ALL {
            let stats = &self.calls[rpc.index()];
            let seconds = stats.nanos_sum.load(Ordering::Relaxed) as f64 / 1e9;
            writeln!(
                out,
                "userlens_gateway_query_call_duration_seconds_sum{{method=\"{}\"}} {seconds}",
                rpc.name()
            )?;
            writeln!(
                out,
                "userlens_gateway_query_call_duration_seconds_count{{method=\"{}\"}} {}",
                rpc.name(),
                stats.count.load(Ordering::Relaxed)
            )?;
        }

        writeln!(
            out,
            "# HELP userlens_gateway_query_call_failures_total users-query gRPC calls that failed or timed out."
        )?;
        writeln!(
            out,
            "# TYPE userlens_gateway_query_call_failures_total counter"
        )?;
        for rpc in Rpc::ALL {
            writeln!(
                out,
                "userlens_gateway_query_call_failures_total{{method=\"{}\"}} {}",
                rpc.name(),
                self.calls[rpc.index()].failures.load(Ordering::Relaxed)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_even_at_zero() {
        let metrics = Metrics::default();
        metrics.record_request();
        metrics.record_error(ErrorCode::Unavailable);
        metrics.record_call(Rpc::ListUsers, Duration::from_millis(1500), false);
        let text = metrics.render();
        assert!(text.contains("userlens_gateway_graphql_requests_total 1\n"));
        assert!(text.contains("userlens_gateway_graphql_errors_total{code=\"UNAVAILABLE\"} 1\n"));
        assert!(text.contains("userlens_gateway_graphql_errors_total{code=\"INTERNAL\"} 0\n"));
        assert!(text.contains(
            "userlens_gateway_query_call_duration_seconds_sum{method=\"ListUsers\"} 1.5\n"
        ));
        assert!(text.contains(
            "userlens_gateway_query_call_duration_seconds_count{method=\"ListUsers\"} 1\n"
        ));
        assert!(
            text.contains("userlens_gateway_query_call_failures_total{method=\"ListUsers\"} 1\n")
        );
    }
}
