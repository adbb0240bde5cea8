//! Generated gRPC code of userlens, and the descriptor set that gRPC reflection serves.

pub mod ingest {
    pub mod v1 {
        tonic::include_proto!("userlens.ingest.v1");
    }
}

pub mod query {
    pub mod v1 {
        tonic::include_proto!("userlens.query.v1");
    }
}

/// Descriptor set of every userlens proto and of the OTLP `TraceService`, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("userlens_descriptor");

/// The OTLP types and the `TraceService` server and client.
pub use opentelemetry_proto::tonic as otlp;
