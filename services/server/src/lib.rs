//! What every userlens server role shares: the error of serving, and (in its modules) how
//! listeners, limits and authentication are set up, so each role wires the same pieces.

pub mod auth;
pub mod grpc;
pub mod http;

pub use grpc::{grpc_server_builder, serve_with_grace};
pub use http::{HttpServerSettings, serve_http};

/// Why a server role stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
    #[error("gRPC reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}
