//! What the fault-injection tests share: a `StreamSpans` client that retries until every
//! batch is acknowledged, PostgreSQL backend termination, a few raw Redis commands, and
//! Prometheus counter lookups.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tonic::Code;
use tonic::transport::Endpoint;
use userlens_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use userlens_proto::ingest::v1::{BatchOutcome, SpanBatch};

/// One batch a client wants stored, and how many spans it holds.
#[derive(Debug, Clone)]
pub struct Batch {
    pub resource_spans: Vec<ResourceSpans>,
    pub spans: u64,
}

impl Batch {
    pub fn new(resource_spans: Vec<ResourceSpans>) -> Self {
        let spans = resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum();
        Self {
            resource_spans,
            spans,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// Batches sent and not yet acknowledged, at most.
    pub window: usize,
    /// Least time between two sends, so a run lasts long enough to meet the faults.
    pub pace: Duration,
    /// The whole run must finish within this.
    pub deadline: Duration,
}

/// What a retrying client went through.
#[derive(Debug, Clone, Default)]
pub struct StreamReport {
    /// Indices of the batches acknowledged `DURABLE`.
    pub acked: BTreeSet<usize>,
    /// Batch sends beyond each batch's first.
    pub resent: u64,
    /// Acks with outcome `RETRY`.
    pub retry_acks: u64,
    /// Streams that failed or were refused, by status code (`ended` for a stream the
    /// server closed without a status).
    pub stream_failures: BTreeMap<String, u64>,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Streams opened.
    pub streams: u64,
}

impl StreamReport {
    /// The report without the list of acknowledged batches.
    pub fn summary(&self) -> String {
        format!(
            "{} batches acknowledged, {} sends repeated, {} RETRY acks, stream failures {:?}, \
             {} failed connection attempts, {} streams",
            self.acked.len(),
            self.resent,
            self.retry_acks,
            self.stream_failures,
            self.connect_failures,
            self.streams
        )
    }
}

/// Codes a client retries: the service said "later", or the connection broke.
pub fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::ResourceExhausted | Code::Unknown | Code::Cancelled
    )
}

/// Sends every batch over `IngestService.StreamSpans`, keeping up to `window` in flight, and
/// sends again every batch answered `RETRY` and every batch in flight on a stream that
/// failed or could not be opened, until each is acknowledged `DURABLE`. Panics on any
/// answer a well-behaved client must not retry (an `INVALID` ack, a non-retryable status,
/// an ack for a batch not in flight, an accepted count that differs from the batch).
pub async fn stream_until_acknowledged(
    addr: SocketAddr,
    key: &str,
    batches: &[Batch],
    options: StreamOptions,
) -> StreamReport {
    let url = format!("http://{addr}");
    let mut report = StreamReport::default();
    let mut pending: VecDeque<usize> = (0..batches.len()).collect();
    let mut sent_before = vec![false; batches.len()];
    let started = Instant::now();
    let backoff = Duration::from_millis(100);
    while report.acked.len() < batches.len() {
        assert!(
            started.elapsed() < options.deadline,
            "the batches were not all acknowledged within {:?}: {report:?}",
            options.deadline
        );
        let endpoint = Endpoint::from_shared(url.clone())
            .expect("endpoint url")
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true);
        let channel = match endpoint.connect().await {
            Ok(channel) => channel,
            Err(_) => {
                report.connect_failures += 1;
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let mut client = IngestServiceClient::new(channel);
        let (sender, outbound) = futures::channel::mpsc::unbounded::<SpanBatch>();
        let mut request = tonic::Request::new(outbound);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {key}").parse().expect("ascii key"),
        );
        let mut acks = match client.stream_spans(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                assert!(retryable(status.code()), "stream refused: {status}");
                *report
                    .stream_failures
                    .entry(format!("{:?}", status.code()))
                    .or_default() += 1;
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        report.streams += 1;
        let mut in_flight = BTreeSet::new();
        let mut next_send = tokio::time::Instant::now();
        let mut failed = false;
        while !(pending.is_empty() && in_flight.is_empty()) {
            let can_send = !pending.is_empty() && in_flight.len() < options.window;
            tokio::select! {
                () = tokio::time::sleep_until(next_send), if can_send => {
                    let Some(index) = pending.pop_front() else { continue };
                    let batch = SpanBatch {
                        sequence: index as u64,
                        resource_spans: batches[index].resource_spans.clone(),
                    };
                    if sender.unbounded_send(batch).is_err() {
                        pending.push_front(index);
                        failed = true;
                        break;
                    }
                    if std::mem::replace(&mut sent_before[index], true) {
                        report.resent += 1;
                    }
                    in_flight.insert(index);
                    next_send = tokio::time::Instant::now() + options.pace;
                }
                message = acks.message() => match message {
                    Ok(Some(ack)) => {
                        let index = usize::try_from(ack.sequence).expect("sequence");
                        assert!(in_flight.remove(&index), "ack for batch {index}, not in flight");
                        match BatchOutcome::try_from(ack.outcome) {
                            Ok(BatchOutcome::Durable) => {
                                assert_eq!(ack.accepted_spans, batches[index].spans, "{ack:?}");
                                assert_eq!(ack.rejected_spans, 0, "{ack:?}");
                                report.acked.insert(index);
                            }
                            Ok(BatchOutcome::Retry) => {
                                report.retry_acks += 1;
                                pending.push_back(index);
                                let wait = Duration::from_millis(u64::from(ack.retry_after_ms))
                                    .min(Duration::from_millis(200));
                                next_send = next_send.max(tokio::time::Instant::now() + wait);
                            }
                            other => panic!("batch {index} answered {other:?}: {ack:?}"),
                        }
                    }
                    Ok(None) => {
                        *report.stream_failures.entry("ended".into()).or_default() += 1;
                        failed = true;
                        break;
                    }
                    Err(status) => {
                        assert!(retryable(status.code()), "stream failed: {status}");
                        *report
                            .stream_failures
                            .entry(format!("{:?}", status.code()))
                            .or_default() += 1;
                        failed = true;
                        break;
                    }
                },
            }
        }
        drop(sender);
        // Whatever is still in flight was not acknowledged: it goes out again, first.
        for index in in_flight.into_iter().rev() {
            pending.push_front(index);
        }
        if failed {
            tokio::time::sleep(backoff).await;
        }
    }
    report
}

/// The database name of a `postgres://…/name?…` url.
pub fn postgres_database_name(url: &str) -> String {
    let without_query = url.split('?').next().unwrap_or(url);
    without_query
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Terminates every backend connected to `database` but the caller's own; returns how many.
pub async fn terminate_backends(admin: &DatabaseConnection, database: &str) -> u64 {
    let rows = admin
        .query_all_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_terminate_backend(pid) AS terminated FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            [database.into()],
        ))
        .await
        .expect("terminate backends");
    rows.iter()
        .filter(|row| {
            row.try_get::<bool>("", "terminated")
                .expect("terminated column")
        })
        .count() as u64
}

/// Sends one command to Redis database `db` and returns its reply line (`+OK`, `:3`, …).
/// Only commands with a one-line reply.
pub async fn redis_command(addr: SocketAddr, db: u8, args: &[&str]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to Redis");
    let encode = |args: &[&str]| {
        let mut out = format!("*{}\r\n", args.len());
        for arg in args {
            out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        out
    };
    let db = db.to_string();
    let request = encode(&["SELECT", &db]) + &encode(args);
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write to Redis");
    let mut lines = BufReader::new(stream).lines();
    let select = lines
        .next_line()
        .await
        .expect("read from Redis")
        .expect("a SELECT reply");
    assert_eq!(select, "+OK", "SELECT {db}");
    lines
        .next_line()
        .await
        .expect("read from Redis")
        .expect("a reply")
}

/// Keys of Redis database `db` starting with `prefix`.
pub async fn redis_key_count(addr: SocketAddr, db: u8, prefix: &str) -> u64 {
    let reply = redis_command(
        addr,
        db,
        &[
            "EVAL",
            "return #redis.call('KEYS', ARGV[1])",
            "0",
            &format!("{prefix}*"),
        ],
    )
    .await;
    reply
        .strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected Redis reply {reply:?}"))
}

/// The value of counter `name` in Prometheus text (0 when absent).
pub fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::{counter, postgres_database_name};

    #[test]
    fn counters_are_read() {
        let text = "# HELP a_total x\n# TYPE a_total counter\na_total 7\nab_total 3\n";
        assert_eq!(counter(text, "a_total"), 7);
        assert_eq!(counter(text, "ab_total"), 3);
        assert_eq!(counter(text, "missing_total"), 0);
    }

    #[test]
    fn database_names_are_read() {
        assert_eq!(
            postgres_database_name("postgres://postgres@127.0.0.1:5432/db_1?x=y"),
            "db_1"
        );
        assert_eq!(postgres_database_name("postgres://h/db_2"), "db_2");
    }
}
