//! Serving an axum `Router` on a `TcpListener` with the limits `axum::serve` cannot set:
//! a deadline on the request head (which also closes idle keep-alive connections), a deadline
//! on reading the request body, a cap on open connections, HTTP/2 keepalive, and a graceful
//! shutdown that returns within a bounded grace time whatever the clients do.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tower::ServiceExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_CONNECTIONS: usize = 4_096;
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
const HTTP2_MAX_CONCURRENT_STREAMS: u32 = 256;
/// Pause before accepting again after the process ran out of file descriptors, so the
/// accept loop does not spin while connections close.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Pause between looks at a connection whose first bytes are a prefix of the HTTP/2
/// preface, until it says which protocol it speaks.
const PREFACE_POLL: Duration = Duration::from_millis(50);
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Limits of one HTTP server.
#[derive(Debug, Clone)]
pub struct HttpServerSettings {
    /// Longest wait for a request head, from the connection's first byte or the end of the
    /// previous response: it closes slow-header (slowloris) and idle keep-alive connections.
    pub header_read_timeout: Duration,
    /// Longest time to receive a whole request body, from the end of its head.
    pub body_read_timeout: Duration,
    /// Open connections at most; past it the listener waits for a free slot and idle
    /// keep-alive connections are asked to close.
    pub max_connections: usize,
    /// After shutdown starts, how long requests in flight may still run before every
    /// connection left is closed.
    pub shutdown_grace: Duration,
}

impl Default for HttpServerSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets the
/// requests in flight finish for at most `settings.shutdown_grace`, closes whatever is
/// left and returns.
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    settings: &HttpServerSettings,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .keep_alive_timeout(HTTP2_KEEPALIVE_TIMEOUT)
        .max_concurrent_streams(HTTP2_MAX_CONCURRENT_STREAMS);
    let shared = Arc::new(Shared {
        builder,
        router,
        header_read_timeout: settings.header_read_timeout,
        body_read_timeout: settings.body_read_timeout,
        at_capacity: Notify::new(),
    });
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let (closing_sender, closing) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);

    loop {
        while connections.try_join_next().is_some() {}
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // Idle keep-alive connections give their slot to a client that has a
                // request to make; connections with a request in flight finish it first.
                shared.at_capacity.notify_waiters();
                tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) if is_connection_error(&error) => continue,
                Err(error) if is_resource_exhaustion(&error) => {
                    tracing::warn!(%error, "cannot accept a connection; retrying shortly");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
                Err(error) => return Err(error),
            },
            () = &mut shutdown => break,
        };
        // Small responses must not wait on Nagle's algorithm (40 ms with delayed ACKs).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        connections.spawn(serve_connection(
            stream,
            Arc::clone(&shared),
            closing.clone(),
            slot,
        ));
    }

    drop(listener);
    let _ = closing_sender.send(true);
    let drained = tokio::time::timeout(settings.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            grace_ms = settings.shutdown_grace.as_millis() as u64,
            "closing the connections still open after the shutdown grace"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    Ok(())
}

/// What every connection of one server shares.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    router: Router,
    header_read_timeout: Duration,
    body_read_timeout: Duration,
    /// Notified when every slot is taken.
    at_capacity: Notify,
}

async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    mut closing: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    // hyper reads the first bytes to tell HTTP/1 from HTTP/2 without any deadline: a
    // client that connects and sends nothing would hold its slot for ever.
    tokio::select! {
        spoke = tokio::time::timeout(shared.header_read_timeout, first_bytes(&stream)) => {
            match spoke {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) | Err(_) => return,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "connection failed before its first request");
                    return;
                }
            }
        }
        _ = closing.changed() => return,
    }

    let body_read_timeout = shared.body_read_timeout;
    let router = shared.router.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let request = request.map(|body| DeadlineBody::new(body, body_read_timeout));
        let router = router.clone();
        async move { router.oneshot(request).await }
    });
    let connection = shared
        .builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service);
    let mut connection = pin!(connection);
    let mut asked_to_close = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "HTTP connection ended with an error");
                }
                return;
            }
            _ = closing.changed(), if !asked_to_close => {
                asked_to_close = true;
                connection.as_mut().graceful_shutdown();
            }
            () = shared.at_capacity.notified(), if !asked_to_close => {
                asked_to_close = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Waits until the client has sent enough to tell its protocol: `Ok(false)` when it closed
/// the connection first.
async fn first_bytes(stream: &TcpStream) -> io::Result<bool> {
    let mut start = [0u8; H2_PREFACE.len()];
    loop {
        let received = stream.peek(&mut start).await?;
        if received == 0 {
            return Ok(false);
        }
        if received == H2_PREFACE.len() || start[..received] != H2_PREFACE[..received] {
            return Ok(true);
        }
        // `peek` returns at once while bytes wait unread; wait for the rest of the preface.
        tokio::time::sleep(PREFACE_POLL).await;
    }
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    )
}

/// Out of file descriptors or memory: accepting again succeeds once connections close.
fn is_resource_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(code) if code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM
    ) || error.kind() == io::ErrorKind::OutOfMemory
}

// errno values (identical on Linux and the BSDs for these four).
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;
const ENOBUFS: i32 = 105;
const ENOMEM: i32 = 12;

/// The request body was not received within the body-read timeout.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {} s", .0.as_secs_f64())]
pub struct BodyReadTimeout(Duration);

/// A request body that fails once its deadline passes, however the bytes trickle in: a
/// per-frame timeout would let a client send one byte per period for ever.
pub struct DeadlineBody<B> {
    inner: B,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl<B> DeadlineBody<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|result| result.map_err(Into::into)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyReadTimeout(this.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::convert::Infallible;

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_fails_at_its_deadline() {
        // One byte a second, for ever.
        let trickle = futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"x"))),
                (),
            ))
        });
        let body = DeadlineBody::new(StreamBody::new(Box::pin(trickle)), Duration::from_secs(5));
        let started = tokio::time::Instant::now();
        let error = body.collect().await.err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("request body not received within 5 s")
        );
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_complete_body_passes_through() {
        let body = DeadlineBody::new(
            http_body_util::Full::new(Bytes::from_static(b"hello")),
            Duration::from_secs(5),
        );
        let bytes = body.collect().await.ok().map(|c| c.to_bytes());
        assert_eq!(bytes.as_deref(), Some(&b"hello"[..]));
    }
}
