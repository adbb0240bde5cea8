//! Compiles the userlens protos with the pure-Rust `protox` compiler, so building needs no
//! system `protoc`. OpenTelemetry messages map onto the `opentelemetry-proto` crate's types;
//! the vendored OTLP `TraceService` proto is compiled only so that gRPC reflection can
//! describe it.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "userlens/ingest/v1/ingest.proto",
    "userlens/query/v1/query.proto",
    "userlens/monitors/v1/monitors.proto",
    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    println!("cargo:rerun-if-changed={}", root.join("userlens").display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join("opentelemetry").display()
    );
    let file_descriptors = protox::compile(PROTOS, [&root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("userlens_descriptor.bin"),
        file_descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .extern_path(".opentelemetry.proto", "::opentelemetry_proto::tonic")
        .compile_fds(file_descriptors.clone())?;
    // The ingest servers again, with the codec that refuses a request whose decoded form
    // would be too large before decoding it (`bounded_codec`). Messages are the ones above.
    let bounded = out_dir.join("bounded");
    std::fs::create_dir_all(&bounded)?;
    let mut ingest_only = file_descriptors;
    ingest_only.file.retain(|file| {
        !file.package().starts_with("userlens.query")
            && !file.package().starts_with("userlens.monitors")
    });
    tonic_prost_build::configure()
        .out_dir(&bounded)
        .build_client(false)
        .codec_path("crate::bounded_codec::BoundedCodec")
        .extern_path(".opentelemetry.proto", "::opentelemetry_proto::tonic")
        .extern_path(".userlens.ingest.v1", "crate::ingest::v1")
        .compile_fds(ingest_only)?;
    Ok(())
}
