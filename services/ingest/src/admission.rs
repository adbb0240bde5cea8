//! Refusal before the body is read. Under overload most requests are refused; reading,
//! inflating and decoding each one first would spend the CPU the accepted requests need.
//! Once the write queue is nearly full (see `BatchWriter::is_nearly_full`), an OTLP/gRPC
//! export is answered `RESOURCE_EXHAUSTED` with `RetryInfo` by this wrapper before a byte
//! of its message is read (HTTP/2 resets the unread request stream, the connection stays
//! up). An OTLP/HTTP export gets 429 with `Retry-After` after its body is read but before it
//! is inflated or decoded (an HTTP/1.1 connection with an unread body could not be reused).
//! A request that gets past this check can still be refused after decoding, when the queue
//! has no room for its spans.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tonic::server::NamedService;

use crate::pipeline::Ingestor;

#[derive(Clone)]
pub struct RefuseWhenQueueFull<S> {
    inner: S,
    ingestor: Arc<Ingestor>,
}

impl<S> RefuseWhenQueueFull<S> {
    pub fn new(inner: S, ingestor: Arc<Ingestor>) -> Self {
        Self { inner, ingestor }
    }
}

impl<S: NamedService> NamedService for RefuseWhenQueueFull<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, Request, Body> tower::Service<Request> for RefuseWhenQueueFull<S>
where
    S: tower::Service<Request, Response = http::Response<Body>>,
    Body: Default,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Self::Response, Self::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.ingestor.refuse_when_queue_nearly_full() {
            // Dropping the request unread: the client's stream is reset after the answer.
            Err(error) => Either::Left(ready(Ok(error.to_status().into_http()))),
            Ok(()) => Either::Right(self.inner.call(request)),
        }
    }
}
