//! Ingest memory under hostile and at-the-limit input: starts `userlens ingest` on a fresh
//! SQLite database (or the given one), and prints its peak RSS (`VmHWM`) after each probe:
//!
//! 1. one OTLP/gRPC export of 8,000,000 empty spans (16 MB, gzip) with a valid key;
//! 2. four of them at once;
//! 3. `--concurrency` exports of real spans (datagen) of about `--request-mib` MiB each,
//!    at once, repeated `--rounds` times.
//!
//! cargo build --release --bin userlens && cargo run --release -p userlens-bench \
//!     --bin memory_probe -- --concurrency 8 --request-mib 14

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use clap::Parser;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::codec::CompressionEncoding;
use userlens_datagen::{Dataset, DatasetSpec, span_count};

#[derive(Parser)]
struct Args {
    /// Database url; a fresh SQLite file in a temporary directory by default.
    #[arg(long)]
    database_url: Option<String>,
    /// The userlens binary; defaults to the one next to this one.
    #[arg(long)]
    userlens: Option<PathBuf>,
    /// Real-span exports sent at once in probe 3.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Wire size of each real-span export, about.
    #[arg(long, default_value_t = 14)]
    request_mib: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Extra arguments for `userlens ingest`.
    #[arg(long, allow_hyphen_values = true)]
    ingest_arg: Vec<String>,
}

const KEY: &str = "ul_memory_probe_key_0123";

fn rss_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn length_delimited(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    prost::encoding::encode_varint(content.len() as u64, &mut out);
    out.extend_from_slice(content);
    out
}

/// 8,000,000 empty spans, encoded by hand (decoding them would take 2 GB here too).
fn empty_spans_request() -> Vec<u8> {
    let scope = [0x12u8, 0x00].repeat(8_000_000);
    length_delimited(0x0a, &length_delimited(0x12, &scope))
}

/// A message that is already encoded.
#[derive(Clone, PartialEq, Message)]
struct Encoded {
    /// The encoded ExportTraceServiceRequest's `resource_spans`, as they are.
    #[prost(bytes = "vec", repeated, tag = "1")]
    resource_spans: Vec<Vec<u8>>,
}

fn as_encoded(body: &[u8]) -> Encoded {
    // An ExportTraceServiceRequest is its repeated field 1; re-reading it as bytes keeps the
    // spans encoded on the client side.
    Encoded::decode(body).expect("an export request")
}

async fn export(grpc: &str, body: &Encoded) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Endpoint::new(format!("http://{grpc}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = tonic::client::Grpc::new(channel)
        .send_compressed(CompressionEncoding::Gzip)
        .max_encoding_message_size(usize::MAX);
    client.ready().await.expect("ready");
    let mut request = tonic::Request::new(body.clone());
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {KEY}").parse().expect("ascii"),
    );
    let codec: tonic_prost::ProstCodec<
        Encoded,
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
    > = tonic_prost::ProstCodec::default();
    client
        .unary(
            request,
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
                .parse()
                .expect("path"),
            codec,
        )
        .await
        .map(|_| ())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let temp = std::env::temp_dir().join(format!("userlens-memory-probe-{}", std::process::id()));
    std::fs::create_dir_all(&temp).expect("temp dir");
    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", temp.join("probe.db").display()));
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
        .env("USERLENS_DATABASE_URL", &database_url)
        .env("USERLENS_API_KEY", KEY)
        .env("RUST_LOG", "warn,userlens=info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
    let pid = child.id().expect("ingest pid");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let grpc = loop {
        let line = lines
            .next_line()
            .await
            .expect("read log")
            .expect("ingest exited early");
        if line.contains("listener=\"otlp-grpc\"") {
            break line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .map(|a| a.trim_matches('"').to_owned())
                .expect("addr");
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    println!("binary {}, database {database_url}", binary.display());
    println!(
        "idle: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        rss_mib(pid, "VmRSS:"),
        rss_mib(pid, "VmHWM:")
    );

    let hostile = as_encoded(&empty_spans_request());
    let before = rss_mib(pid, "VmHWM:");
    let answer = export(&grpc, &hostile).await;
    println!(
        "1 × 8M empty spans: {:?}; VmHWM {:.1} MiB (+{:.1})",
        answer.map_err(|s| s.code()),
        rss_mib(pid, "VmHWM:"),
        rss_mib(pid, "VmHWM:") - before
    );
    let exports: Vec<_> = (0..4)
        .map(|_| {
            let (grpc, hostile) = (grpc.clone(), hostile.clone());
            tokio::spawn(async move { export(&grpc, &hostile).await })
        })
        .collect();
    for e in exports {
        let _ = e.await;
    }
    println!(
        "4 × 8M empty spans at once: VmHWM {:.1} MiB (+{:.1})",
        rss_mib(pid, "VmHWM:"),
        rss_mib(pid, "VmHWM:") - before
    );
    drop(hostile);

    let dataset = Dataset::new(DatasetSpec::new(
        1_000_000,
        50_000,
        13,
        4,
        1_790_000_000_000_000_000,
    ));
    let target = args.request_mib * 1024 * 1024;
    let mut next = 0u64;
    let mut requests = Vec::new();
    for _ in 0..args.concurrency * args.rounds {
        let mut traces = 1_000;
        let request: ExportTraceServiceRequest = loop {
            let request = dataset.request(next..next + traces);
            if request.encoded_len() >= target {
                next += traces;
                break request;
            }
            traces = traces * 5 / 4;
        };
        requests.push((span_count(&request), as_encoded(&request.encode_to_vec())));
    }
    let wire = requests.iter().map(|(_, e)| e.encoded_len()).sum::<usize>() / requests.len();
    let spans = requests.iter().map(|(s, _)| *s).sum::<u64>() / requests.len() as u64;
    println!("real exports: {wire} bytes, {spans} spans each");
    let started = Instant::now();
    let (mut stored, mut shed, mut other) = (0, 0, 0);
    for round in requests.chunks(args.concurrency) {
        let sent: Vec<_> = round
            .iter()
            .cloned()
            .map(|(_, body)| {
                let grpc = grpc.clone();
                tokio::spawn(async move { export(&grpc, &body).await })
            })
            .collect();
        for s in sent {
            match s.await.expect("task") {
                Ok(()) => stored += 1,
                Err(status) if status.code() == tonic::Code::ResourceExhausted => shed += 1,
                Err(status) => {
                    other += 1;
                    eprintln!("{status:?}");
                }
            }
        }
    }
    println!(
        "{} × {} real exports at once: {stored} stored, {shed} shed, {other} failed in {:.1} s; VmHWM {:.1} MiB",
        args.rounds,
        args.concurrency,
        started.elapsed().as_secs_f64(),
        rss_mib(pid, "VmHWM:")
    );
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&temp);
}
