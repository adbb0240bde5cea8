//! Generated gRPC code of userlens, and the descriptor set that gRPC reflection serves.

pub mod ingest {
    pub mod v1 {
        tonic::include_proto!("userlens.ingest.v1");
    }
}

pub mod bounded_codec;
pub mod decoded_size;

/// The ingest servers with [`bounded_codec::BoundedCodec`]: requests whose decoded form would
/// exceed [`bounded_codec::MAX_DECODED_REQUEST_BYTES`] are refused before decoding.
pub mod bounded {
    pub mod ingest {
        include!(concat!(env!("OUT_DIR"), "/bounded/userlens.ingest.v1.rs"));
    }
    pub mod trace {
        include!(concat!(
            env!("OUT_DIR"),
            "/bounded/opentelemetry.proto.collector.trace.v1.rs"
        ));
    }
}

pub mod query {
    pub mod v1 {
        tonic::include_proto!("userlens.query.v1");
    }
}

pub mod monitors {
    pub mod v1 {
        tonic::include_proto!("userlens.monitors.v1");
    }
}

/// Descriptor set of every userlens proto and of the OTLP `TraceService`, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("userlens_descriptor");

/// The OTLP types and the `TraceService` server and client.
pub use opentelemetry_proto::tonic as otlp;
