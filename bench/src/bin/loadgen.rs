//! Ingest load generator: starts the `userlens ingest` binary on a fresh database, drives it
//! with synthetic LLM traces over OTLP/gRPC, OTLP/HTTP protobuf or the native `StreamSpans`,
//! and prints spans/s (acknowledged and offered), request latency percentiles, errors, the
//! server's peak RSS, and whether every acknowledged span was stored. Then, in the same run,
//! it writes the same kind of rows with PostgreSQL `COPY` straight into the raw spans table
//! of another fresh database for as long, and prints the ratio.
//!
//! cargo build --release --bin userlens && cargo run --release -p userlens-bench --bin loadgen -- \
//!     --database-url postgres://postgres@127.0.0.1:5432/userlens_load --transport grpc \
//!     --concurrency 8 --batch-spans 512 --seconds 60

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Mutex;
use userlens_bench::{DATASET_END_NS, Percentiles, ms};
use userlens_datagen::{Dataset, DatasetSpec};
use userlens_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use userlens_proto::ingest::v1::{BatchOutcome, SpanBatch};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum Transport {
    Grpc,
    Http,
    Stream,
}

#[derive(Parser)]
struct Args {
    /// A PostgreSQL database url; the run drops and creates this database (and one named
    /// `<name>_copy` for the COPY baseline) before using it.
    #[arg(long)]
    database_url: String,
    /// Skip the COPY baseline after the service run.
    #[arg(long)]
    no_copy_baseline: bool,
    #[arg(long, value_enum, default_value = "grpc")]
    transport: Transport,
    /// Requests (or, for the stream, batches) in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Spans per request, about (whole traces of ≈ 4.2 spans are sent).
    #[arg(long, default_value_t = 512)]
    batch_spans: u64,
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    #[arg(long, default_value_t = 50_000)]
    users: u64,
    /// The userlens binary; defaults to the release build next to this one.
    #[arg(long)]
    userlens: Option<PathBuf>,
    /// Extra arguments for `userlens ingest` (e.g. --max-queued-bytes=33554432).
    #[arg(long, allow_hyphen_values = true)]
    ingest_arg: Vec<String>,
    /// Instead of the service, write the same span rows straight into the raw spans table:
    /// `copy` (PostgreSQL COPY, the physical limit) or `insert` (one INSERT per span).
    #[arg(long, value_enum)]
    baseline: Option<Baseline>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum Baseline {
    Copy,
    Insert,
}

const KEY: &str = "ul_loadgen_key_0123456789";

struct Totals {
    spans: AtomicU64,
    requests: AtomicU64,
    retryable: AtomicU64,
    refused_spans: AtomicU64,
    failed: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time (user + system) the process has used, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Some(baseline) = args.baseline {
        let url = fresh_database(&args.database_url, "").await;
        baseline::run(&args, &url, baseline).await;
        return;
    }
    let service_url = fresh_database(&args.database_url, "").await;
    let service_rate = run_service(&args, &service_url).await;
    if !args.no_copy_baseline {
        let copy_url = fresh_database(&args.database_url, "_copy").await;
        let copy_rate = baseline::run(&args, &copy_url, Baseline::Copy).await;
        println!(
            "service / COPY: {service_rate:.0} / {copy_rate:.0} = {:.2}",
            service_rate / copy_rate
        );
    }
}

/// Drops and creates the database of `url` (its name plus `suffix`); returns its url.
async fn fresh_database(url: &str, suffix: &str) -> String {
    let (server, name) = url
        .rsplit_once('/')
        .expect("a database url ends with /<database name>");
    let name = format!("{}{suffix}", name.split('?').next().unwrap_or(name));
    assert!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "database name {name:?}: letters, digits and _ only"
    );
    let admin = sea_orm::Database::connect(format!("{server}/postgres"))
        .await
        .expect("connect to the postgres database");
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        sea_orm::ConnectionTrait::execute_unprepared(&admin, &sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    format!("{server}/{name}")
}

/// Runs the service phase; returns the acknowledged spans per second.
async fn run_service(args: &Args, database_url: &str) -> f64 {
    let binary = args.userlens.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("userlens")))
            .unwrap_or_else(|| PathBuf::from("userlens"))
    });
    let mut child = tokio::process::Command::new(&binary)
        .arg("ingest")
        .args([
            "--otlp-grpc-addr",
            "127.0.0.1:0",
            "--otlp-http-addr",
            "127.0.0.1:0",
        ])
        .args(&args.ingest_arg)
        .env("USERLENS_DATABASE_URL", database_url)
        .env("USERLENS_API_KEY", KEY)
        .env("RUST_LOG", "warn,userlens=info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
    let pid = child.id().expect("ingest pid");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let (mut grpc, mut http) = (None, None);
    while grpc.is_none() || http.is_none() {
        let line = lines
            .next_line()
            .await
            .expect("read log")
            .expect("ingest exited early");
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .map(str::to_owned);
        if line.contains("listener=\"otlp-grpc\"") {
            grpc = addr;
        } else if line.contains("listener=\"otlp-http\"") {
            http = addr;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let (grpc, http) = (grpc.unwrap_or_default(), http.unwrap_or_default());

    let traces_per_request = (args.batch_spans as f64 / 4.2).round().max(1.0) as u64;
    // Enough distinct traces for the whole run at any plausible rate; indexes are drawn in order.
    let dataset = Arc::new(Dataset::new(DatasetSpec::new(
        100_000_000,
        args.users,
        30,
        7,
        DATASET_END_NS,
    )));
    let next_trace = Arc::new(AtomicU64::new(0));
    let totals = Arc::new(Totals {
        spans: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        retryable: AtomicU64::new(0),
        refused_spans: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        latencies: Mutex::new(Vec::new()),
    });
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    let next_request = {
        let dataset = Arc::clone(&dataset);
        let next_trace = Arc::clone(&next_trace);
        move || {
            let first = next_trace.fetch_add(traces_per_request, Ordering::Relaxed);
            let request = dataset.request(first..first + traces_per_request);
            let spans = userlens_datagen::span_count(&request);
            (request, spans)
        }
    };
    match args.transport {
        Transport::Grpc | Transport::Http => {
            for _ in 0..args.concurrency {
                let totals = Arc::clone(&totals);
                let next_request = next_request.clone();
                let transport = args.transport;
                let (grpc, http) = (grpc.clone(), http.clone());
                workers.push(tokio::spawn(async move {
                    let mut grpc_client = match transport {
                        Transport::Grpc => Some(
                            TraceServiceClient::connect(format!("http://{grpc}"))
                                .await
                                .expect("connect"),
                        ),
                        _ => None,
                    };
                    let http_client = http1::Client::new(&http);
                    while Instant::now() < deadline {
                        let (request, spans) = next_request();
                        let sent = Instant::now();
                        let outcome = match &mut grpc_client {
                            Some(client) => send_grpc(client, request).await,
                            None => http_client.post(request.encode_to_vec()).await,
                        };
                        record(&totals, outcome, spans, sent.elapsed()).await;
                    }
                }));
            }
        }
        Transport::Stream => {
            let mut client = IngestServiceClient::connect(format!("http://{grpc}"))
                .await
                .expect("connect");
            let (batches, batch_stream) = tokio::sync::mpsc::channel::<SpanBatch>(args.concurrency);
            let mut request = tonic::Request::new(receiver_stream(batch_stream));
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {KEY}").parse().expect("ascii"),
            );
            let mut acks = client
                .stream_spans(request)
                .await
                .expect("open stream")
                .into_inner();
            let in_flight = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
            let sent_at: Arc<Mutex<std::collections::HashMap<u64, (Instant, u64)>>> =
                Default::default();
            let producer = {
                let in_flight = Arc::clone(&in_flight);
                let sent_at = Arc::clone(&sent_at);
                let next_request = next_request.clone();
                tokio::spawn(async move {
                    let mut sequence = 0u64;
                    while Instant::now() < deadline {
                        let Ok(permit) = in_flight.acquire().await else {
                            break;
                        };
                        permit.forget();
                        let (request, spans) = next_request();
                        sequence += 1;
                        sent_at
                            .lock()
                            .await
                            .insert(sequence, (Instant::now(), spans));
                        if batches
                            .send(SpanBatch {
                                sequence,
                                resource_spans: request.resource_spans,
                            })
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                })
            };
            let totals_for_acks = Arc::clone(&totals);
            workers.push(tokio::spawn(async move {
                while let Ok(Some(ack)) = acks.message().await {
                    let (sent, spans) = sent_at
                        .lock()
                        .await
                        .remove(&ack.sequence)
                        .unwrap_or((Instant::now(), 0));
                    let outcome = if ack.outcome == BatchOutcome::Durable as i32 {
                        Outcome::Ok
                    } else if ack.outcome == BatchOutcome::Retry as i32 {
                        Outcome::Retryable
                    } else {
                        Outcome::Failed(ack.message)
                    };
                    record(&totals_for_acks, outcome, spans, sent.elapsed()).await;
                    in_flight.add_permits(1);
                }
            }));
            let _ = producer.await;
        }
    }
    for worker in workers {
        let _ = worker.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let spans = totals.spans.load(Ordering::Relaxed);
    let latencies = std::mem::take(&mut *totals.latencies.lock().await);
    let p = Percentiles::of(latencies);
    println!(
        "transport: {:?}, concurrency {}, ~{} spans per request ({} traces), {:.0} s",
        args.transport, args.concurrency, args.batch_spans, traces_per_request, elapsed
    );
    let refused = totals.refused_spans.load(Ordering::Relaxed);
    println!(
        "acknowledged spans: {spans} ({:.0} spans/s); offered {:.0} spans/s (refused {refused})",
        spans as f64 / elapsed,
        (spans + refused) as f64 / elapsed
    );
    println!(
        "requests: {} ok, {} retryable refusals (429 / RESOURCE_EXHAUSTED / RETRY), {} failed",
        totals.requests.load(Ordering::Relaxed),
        totals.retryable.load(Ordering::Relaxed),
        totals.failed.load(Ordering::Relaxed)
    );
    println!(
        "latency of acknowledged requests: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
        ms(p.p50),
        ms(p.p95),
        ms(p.p99)
    );
    match peak_rss_kib(pid) {
        Some(kib) => println!("ingest peak RSS: {:.0} MiB", kib as f64 / 1024.0),
        None => println!("ingest peak RSS: unknown"),
    }
    if let Some(cpu) = cpu_seconds(pid) {
        println!(
            "ingest CPU: {cpu:.1} s ({:.0}% of one core, {:.1} µs per acknowledged span)",
            100.0 * cpu / elapsed,
            1e6 * cpu / spans.max(1) as f64
        );
    }
    let _ = child.kill().await;
    verify_stored(database_url, spans).await;
    spans as f64 / elapsed
}

/// Every acknowledged span must be in the database, once (each request carries new traces).
async fn verify_stored(database_url: &str, acknowledged: u64) {
    let db = userlens_storage::connect(&userlens_storage::DatabaseSettings::new(database_url))
        .await
        .expect("connect");
    let project_id = userlens_storage::keys::resolve_key(&db, KEY)
        .await
        .expect("resolve the key")
        .expect("the project of the key");
    let stored = userlens_storage::read::span_count(&db, project_id)
        .await
        .expect("count spans");
    let verdict = if stored == acknowledged {
        "every acknowledged span stored once"
    } else if stored > acknowledged {
        "more than acknowledged (requests written whose answer was lost)"
    } else {
        "MISSING acknowledged spans"
    };
    println!("stored spans: {stored} of {acknowledged} acknowledged: {verdict}");
}

enum Outcome {
    Ok,
    Retryable,
    Failed(String),
}

async fn record(totals: &Totals, outcome: Outcome, spans: u64, latency: Duration) {
    match outcome {
        Outcome::Ok => {
            totals.spans.fetch_add(spans, Ordering::Relaxed);
            totals.requests.fetch_add(1, Ordering::Relaxed);
            totals.latencies.lock().await.push(latency);
        }
        Outcome::Retryable => {
            totals.retryable.fetch_add(1, Ordering::Relaxed);
            totals.refused_spans.fetch_add(spans, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Outcome::Failed(message) => {
            if totals.failed.fetch_add(1, Ordering::Relaxed) < 3 {
                eprintln!("request failed: {message}");
            }
        }
    }
}

async fn send_grpc(
    client: &mut TraceServiceClient<tonic::transport::Channel>,
    request: ExportTraceServiceRequest,
) -> Outcome {
    let mut call = tonic::Request::new(request);
    call.metadata_mut().insert(
        "authorization",
        format!("Bearer {KEY}").parse().expect("ascii"),
    );
    match client.export(call).await {
        Ok(_) => Outcome::Ok,
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::ResourceExhausted | tonic::Code::Unavailable
            ) =>
        {
            Outcome::Retryable
        }
        Err(status) => Outcome::Failed(status.to_string()),
    }
}

fn receiver_stream(
    mut receiver: tokio::sync::mpsc::Receiver<SpanBatch>,
) -> impl futures::Stream<Item = SpanBatch> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// A minimal HTTP/1.1 client for `POST /v1/traces` over keep-alive connections.
mod http1 {
    use super::{KEY, Outcome};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;
    use tokio::sync::Mutex;

    pub struct Client {
        addr: String,
        connection: Mutex<Option<BufReader<TcpStream>>>,
    }

    impl Client {
        pub fn new(addr: &str) -> Self {
            Self {
                addr: addr.to_owned(),
                connection: Mutex::new(None),
            }
        }

        pub async fn post(&self, body: Vec<u8>) -> Outcome {
            let mut guard = self.connection.lock().await;
            if guard.is_none() {
                match TcpStream::connect(&self.addr).await {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        *guard = Some(BufReader::new(stream));
                    }
                    Err(e) => return Outcome::Failed(e.to_string()),
                }
            }
            let Some(connection) = guard.as_mut() else {
                return Outcome::Failed("no connection".into());
            };
            let head = format!(
                "POST /v1/traces HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\nAuthorization: Bearer {KEY}\r\nContent-Length: {}\r\n\r\n",
                self.addr,
                body.len()
            );
            let result = async {
                connection.get_mut().write_all(head.as_bytes()).await?;
                connection.get_mut().write_all(&body).await?;
                let mut status_line = String::new();
                connection.read_line(&mut status_line).await?;
                let status: u16 = status_line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    connection.read_line(&mut line).await?;
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut response = vec![0; length];
                connection.read_exact(&mut response).await?;
                Ok::<u16, std::io::Error>(status)
            }
            .await;
            match result {
                Ok(200) => Outcome::Ok,
                Ok(429 | 503) => Outcome::Retryable,
                Ok(status) => Outcome::Failed(format!("HTTP {status}")),
                Err(e) => {
                    *guard = None;
                    Outcome::Failed(e.to_string())
                }
            }
        }
    }
}

/// The same rows without the service: what the database alone can take.
mod baseline {
    use std::time::{Duration, Instant};

    use sea_orm::{ConnectionTrait, Statement};
    use userlens_bench::DATASET_END_NS;
    use userlens_datagen::{Dataset, DatasetSpec};
    use userlens_ingest::mapping::convert_resource_spans;
    use userlens_storage::{DatabaseSettings, SpanRecord, keys};

    use super::{Args, Baseline};

    const COLUMNS: &str = "project_id, trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, \
        status_code, status_message, user_id, user_email, session_id, provider, model, is_llm_call, \
        input_tokens, output_tokens, cached_input_tokens, cost_nano, tool_name, issue_id, issue_title, \
        behaviours, attributes, dropped_attributes_count, resource_hash";

    fn csv_text(out: &mut String, value: Option<&str>) {
        if let Some(value) = value {
            out.push('"');
            out.push_str(&value.replace('"', "\"\""));
            out.push('"');
        }
        out.push(',');
    }

    fn csv_row(out: &mut String, project_id: i64, span: &SpanRecord) {
        let s = &span.stored;
        let f = &s.facts;
        let number = |n: Option<i64>| n.map(|n| n.to_string());
        out.push_str(&format!(
            "{project_id},\\x{},\\x{},{},",
            hex::encode(span.trace_id),
            hex::encode(s.span_id),
            s.parent_span_id
                .map(|p| format!("\\x{}", hex::encode(p)))
                .unwrap_or_default()
        ));
        csv_text(out, Some(&span.name));
        out.push_str(&format!(
            "{},{},{},{},",
            span.kind, s.start_ns, s.end_ns, s.status_code
        ));
        csv_text(out, span.status_message.as_deref());
        for text in [
            &f.user_id,
            &f.user_email,
            &f.session_id,
            &f.provider,
            &f.model,
        ] {
            csv_text(out, text.as_deref());
        }
        out.push_str(if f.is_llm_call { "t," } else { "f," });
        for n in [
            f.input_tokens,
            f.output_tokens,
            f.cached_input_tokens,
            f.cost_nano,
        ] {
            out.push_str(&number(n).unwrap_or_default());
            out.push(',');
        }
        for text in [&f.tool_name, &f.issue_id, &f.issue_title] {
            csv_text(out, text.as_deref());
        }
        let behaviours = (!f.behaviours.is_empty()).then(|| format!("{:?}", f.behaviours));
        csv_text(out, behaviours.as_deref());
        csv_text(out, Some(&span.attributes_json));
        out.push_str(&format!(
            "{},\\x{}\n",
            span.dropped_attributes_count,
            hex::encode(span.resource.hash)
        ));
    }

    /// Writes rows for `args.seconds`; returns spans per second.
    pub async fn run(args: &Args, database_url: &str, baseline: Baseline) -> f64 {
        let db = userlens_storage::connect(&DatabaseSettings::new(database_url))
            .await
            .expect("connect");
        userlens_storage::migrate(&db).await.expect("migrate");
        let project = format!("baseline-{:?}-{}", baseline, std::process::id()).to_lowercase();
        let (project_id, _) = keys::create_key(&db, &project).await.expect("project");
        let dataset = Dataset::new(DatasetSpec::new(
            100_000_000,
            args.users,
            30,
            11,
            DATASET_END_NS,
        ));
        let traces_per_request = (args.batch_spans as f64 / 4.2).round().max(1.0) as u64;
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        let started = Instant::now();
        let mut next = 0u64;
        let mut spans_written = 0u64;
        while Instant::now() < deadline {
            let request = dataset.request(next..next + traces_per_request);
            next += traces_per_request;
            let spans = convert_resource_spans(&request.resource_spans).accepted;
            match baseline {
                Baseline::Copy => {
                    let mut data = String::new();
                    for span in &spans {
                        csv_row(&mut data, project_id, span);
                    }
                    let mut connection = db
                        .get_postgres_connection_pool()
                        .acquire()
                        .await
                        .expect("connection");
                    let mut copy = connection
                        .copy_in_raw(&format!("COPY spans ({COLUMNS}) FROM STDIN (FORMAT csv)"))
                        .await
                        .expect("start COPY");
                    copy.send(data.into_bytes()).await.expect("send rows");
                    copy.finish().await.expect("finish COPY");
                }
                Baseline::Insert => {
                    for span in &spans {
                        let s = &span.stored;
                        let statement = Statement::from_sql_and_values(
                            db.get_database_backend(),
                            "INSERT INTO spans (project_id, trace_id, span_id, parent_span_id, name, kind, start_ns, \
                             end_ns, status_code, user_id, session_id, model, is_llm_call, cost_nano, attributes, \
                             resource_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                            [
                                project_id.into(),
                                span.trace_id.to_vec().into(),
                                s.span_id.to_vec().into(),
                                s.parent_span_id.map(|p| p.to_vec()).into(),
                                span.name.clone().into(),
                                span.kind.into(),
                                s.start_ns.into(),
                                s.end_ns.into(),
                                s.status_code.into(),
                                s.facts.user_id.clone().into(),
                                s.facts.session_id.clone().into(),
                                s.facts.model.clone().into(),
                                s.facts.is_llm_call.into(),
                                s.facts.cost_nano.into(),
                                span.attributes_json.clone().into(),
                                span.resource.hash.to_vec().into(),
                            ],
                        );
                        db.execute_raw(statement).await.expect("insert");
                    }
                }
            }
            spans_written += spans.len() as u64;
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "baseline: {baseline:?} into the raw spans table, ~{} spans per statement batch, {elapsed:.0} s",
            args.batch_spans
        );
        println!(
            "written spans: {spans_written} ({:.0} spans/s)",
            spans_written as f64 / elapsed
        );
        spans_written as f64 / elapsed
    }
}
