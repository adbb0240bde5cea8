//! `userlens demo`: synthetic traces sent through the real OTLP/gRPC path, so a new
//! installation shows a populated users page at once.

use std::io::Write;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataValue;
use userlens_datagen::{Dataset, DatasetSpec};

use crate::cli::DemoArgs;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "no API key: pass --api-key, set USERLENS_API_KEY, or start all-in-one first (it writes {0})"
    )]
    NoKey(String),
    #[error("cannot reach ingest at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("export refused: {0}")]
    Export(tonic::Status),
    #[error("the API key is not valid ASCII")]
    BadKey,
}

pub async fn run(args: DemoArgs) -> Result<(), DemoError> {
    let key = match args.api_key.clone().filter(|k| !k.trim().is_empty()) {
        Some(key) => key,
        None => std::fs::read_to_string(&args.key_file)
            .ok()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| DemoError::NoKey(args.key_file.display().to_string()))?,
    };
    let authorization: MetadataValue<_> = format!("Bearer {key}")
        .parse()
        .map_err(|_| DemoError::BadKey)?;
    let channel = tonic::transport::Endpoint::new(args.endpoint.clone())
        .map(|e| e.connect_timeout(std::time::Duration::from_secs(5)))
        .map_err(|source| DemoError::Connect {
            endpoint: args.endpoint.clone(),
            source,
        })?
        .connect()
        .await
        .map_err(|source| DemoError::Connect {
            endpoint: args.endpoint.clone(),
            source,
        })?;
    let client = TraceServiceClient::new(channel)
        .send_compressed(CompressionEncoding::Gzip)
        .max_encoding_message_size(64 * 1024 * 1024);

    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let dataset = std::sync::Arc::new(Dataset::new(DatasetSpec::new(
        args.traces,
        args.users,
        args.days,
        args.seed,
        now_ns,
    )));
    let started = Instant::now();
    let batch = args.batch_traces.max(1);
    let mut sent = 0u64;
    let mut in_flight = tokio::task::JoinSet::new();
    let mut next = 0u64;
    const CONCURRENCY: usize = 4;
    while next < args.traces || !in_flight.is_empty() {
        while next < args.traces && in_flight.len() < CONCURRENCY {
            let range = next..(next + batch).min(args.traces);
            next = range.end;
            let mut client = client.clone();
            let dataset = std::sync::Arc::clone(&dataset);
            let authorization = authorization.clone();
            in_flight.spawn(async move {
                let traces = range.end - range.start;
                let mut request = tonic::Request::new(dataset.request(range));
                request
                    .metadata_mut()
                    .insert("authorization", authorization);
                client.export(request).await.map(|_| traces)
            });
        }
        if let Some(done) = in_flight.join_next().await {
            let traces = done
                .map_err(|e| DemoError::Export(tonic::Status::internal(e.to_string())))?
                .map_err(DemoError::Export)?;
            sent += traces;
            progress(sent, args.traces, started);
        }
    }
    eprintln!();
    eprintln!(
        "loaded {sent} traces for {} users in {:.1} s",
        args.users,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn progress(done: u64, total: u64, started: Instant) {
    const WIDTH: u64 = 30;
    let filled = (done * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH)
        .min(WIDTH);
    let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
    eprint!(
        "\r[{}{}] {done}/{total} traces ({rate:.0}/s)",
        "#".repeat(filled as usize),
        " ".repeat((WIDTH - filled) as usize)
    );
    let _ = std::io::stderr().flush();
}
