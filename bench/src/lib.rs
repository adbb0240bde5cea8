//! Shared pieces of the benchmarks: loading a synthetic dataset through the real ingest
//! path, and latency percentiles.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tokio::net::TcpListener;
use tonic::Code;
use userlens_datagen::{Dataset, DatasetSpec};
use userlens_storage::keys;

/// 2026-11-01T00:00:00Z: the end of every benchmark dataset, so reruns find the same data.
pub const DATASET_END_NS: i64 = 1_793_491_200 * 1_000_000_000;

/// Latency summary of a set of runs.
pub struct Percentiles {
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub runs: usize,
}

impl Percentiles {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let at = |q: f64| {
            let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(index).copied().unwrap_or_default()
        };
        Self {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            runs: samples.len(),
        }
    }
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Traces stored for a project.
pub async fn trace_count(db: &DatabaseConnection, project_id: i64) -> u64 {
    let statement = Statement::from_sql_and_values(
        db.get_database_backend(),
        match db.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                "SELECT count(*) FROM traces WHERE project_id = $1"
            }
            _ => "SELECT count(*) FROM traces WHERE project_id = ?",
        },
        [project_id.into()],
    );
    match db.query_one_raw(statement).await {
        Ok(Some(row)) => row
            .try_get_by_index::<i64>(0)
            .map(|n| n as u64)
            .unwrap_or(0),
        _ => 0,
    }
}

/// Loads `spec` into project `project` through an in-process ingest server over OTLP/gRPC
/// (the path real exporters take), unless the project already holds it. Returns the key.
pub async fn ensure_dataset(db: &DatabaseConnection, project: &str, spec: DatasetSpec) -> String {
    let (project_id, key) = keys::create_key(db, project).await.expect("create a key");
    let present = trace_count(db, project_id).await;
    if present == spec.traces {
        println!("dataset: project {project} already holds {present} traces");
        return key;
    }
    assert!(
        present == 0,
        "project {project} holds {present} traces, not {}; drop it first",
        spec.traces
    );

    let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = grpc.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(userlens_ingest::serve(
        db.clone(),
        userlens_ingest::IngestSettings::default(),
        grpc,
        http,
        async {
            let _ = stopped.await;
        },
    ));
    let client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let dataset = std::sync::Arc::new(Dataset::new(spec));
    let started = Instant::now();
    const BATCH: u64 = 400;
    const IN_FLIGHT: usize = 4;
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0u64;
    let mut done = 0u64;
    let mut spans = 0u64;
    let mut reported = 0u64;
    while next < spec.traces || !tasks.is_empty() {
        while next < spec.traces && tasks.len() < IN_FLIGHT {
            let range = next..(next + BATCH).min(spec.traces);
            next = range.end;
            let mut client = client.clone();
            let dataset = std::sync::Arc::clone(&dataset);
            let authorization: tonic::metadata::MetadataValue<_> =
                format!("Bearer {key}").parse().expect("ascii key");
            tasks.spawn(async move {
                let request = dataset.request(range.clone());
                let span_count = userlens_datagen::span_count(&request);
                loop {
                    let mut call = tonic::Request::new(request.clone());
                    call.metadata_mut()
                        .insert("authorization", authorization.clone());
                    match client.export(call).await {
                        Ok(_) => return (range.end - range.start, span_count),
                        Err(status)
                            if matches!(
                                status.code(),
                                Code::ResourceExhausted | Code::Unavailable
                            ) =>
                        {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(status) => panic!("export failed: {status}"),
                    }
                }
            });
        }
        if let Some(result) = tasks.join_next().await {
            let (traces, span_count) = result.expect("export task");
            done += traces;
            spans += span_count;
            if done * 20 / spec.traces.max(1) > reported {
                reported = done * 20 / spec.traces.max(1);
                let seconds = started.elapsed().as_secs_f64();
                println!(
                    "loading: {done}/{} traces, {spans} spans, {:.0} spans/s",
                    spec.traces,
                    spans as f64 / seconds
                );
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "dataset: loaded {done} traces ({spans} spans) in {seconds:.1} s: {:.0} spans/s through OTLP/gRPC ingest",
        spans as f64 / seconds
    );
    let _ = stop.send(());
    let _ = server.await;
    key
}
