//! The gRPC server every role builds on: HTTP/2 and TCP keepalive so dead peers are found,
//! a cap on concurrent streams per connection, and a shutdown bounded by a grace time.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

pub const DEFAULT_GRPC_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// A ping every 30 s on an otherwise silent connection; no answer within 10 s closes it.
pub const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Streams in flight on one connection, at most (the HTTP/2 default is unlimited).
pub const MAX_CONCURRENT_STREAMS: u32 = 256;

/// A `tonic` server builder with the keepalives, stream cap and TCP_NODELAY of every userlens
/// gRPC listener. Shutdown is bounded separately, by [`serve_with_grace`].
pub fn grpc_server_builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
        .tcp_keepalive(Some(TCP_KEEPALIVE))
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        // Small responses must not wait on Nagle's algorithm (40 ms with delayed ACKs).
        .tcp_nodelay(true)
}

/// Runs `serve` (a server already told to drain on `shutdown`) until it ends, or until
/// `grace` has passed since `shutdown` resolved: then it is dropped, which stops accepting
/// and leaves the connections still open to end with the runtime.
pub async fn serve_with_grace<E>(
    serve: impl Future<Output = Result<(), E>>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Result<(), E> {
    let mut serve = pin!(serve);
    tokio::select! {
        result = serve.as_mut() => return result,
        () = shutdown => {}
    }
    match tokio::time::timeout(grace, serve).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "gRPC calls still open after the shutdown grace; closing them"
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_server_that_never_drains_is_left_after_the_grace() {
        let started = tokio::time::Instant::now();
        let result: Result<(), ()> = serve_with_grace(
            std::future::pending(),
            tokio::time::sleep(Duration::from_secs(1)),
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(result, Ok(()));
        assert_eq!(started.elapsed(), Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_ends_first_gives_its_result() {
        let result: Result<(), &str> = serve_with_grace(
            async { Err("bind failed") },
            std::future::pending(),
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(result, Err("bind failed"));
    }
}
