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
use std::time::Duration;

use futures::future::{BoxFuture, Either, Ready, ready};
use tonic::server::NamedService;

use crate::pipeline::Ingestor;

/// How long an export waits for a decode slot before it is refused as overloaded.
pub const SLOT_WAIT: Duration = Duration::from_secs(2);
/// How long one export may hold a decode slot (reading its body, decoding, converting).
pub const SLOT_HOLD_LIMIT: Duration = Duration::from_secs(10);

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

impl<S, RequestBody, Body> tower::Service<http::Request<RequestBody>> for RefuseWhenQueueFull<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RequestBody: Send + 'static,
    Body: Default + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<
        Ready<Result<Self::Response, Self::Error>>,
        BoxFuture<'static, Result<Self::Response, Self::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<RequestBody>) -> Self::Future {
        if let Err(error) = self.ingestor.refuse_when_queue_nearly_full() {
            // Dropping the request unread: the client's stream is reset after the answer.
            return Either::Left(ready(Ok(error.to_status().into_http())));
        }
        // The service that was made ready serves this request; a fresh clone the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let ingestor = Arc::clone(&self.ingestor);
        Either::Right(Box::pin(async move {
            // The body is read and decoded only once a decode slot is free (see
            // `Ingestor::decode_slots`); the handler gives the slot back.
            let slot = match tokio::time::timeout(SLOT_WAIT, ingestor.decode_slot()).await {
                Ok(Ok(slot)) => slot,
                Ok(Err(error)) => return Ok(error.to_status().into_http()),
                Err(_) => {
                    ingestor.metrics.record_shed();
                    let error = crate::error::IngestError::Overloaded {
                        retry_after: crate::writer::RETRY_AFTER,
                    };
                    return Ok(error.to_status().into_http());
                }
            };
            request.extensions_mut().insert(slot.clone());
            let call = inner.call(request);
            tokio::pin!(call);
            tokio::select! {
                response = &mut call => response,
                // A client trickling its body must not keep others from decoding.
                () = tokio::time::sleep(SLOT_HOLD_LIMIT) => {
                    slot.release();
                    call.await
                }
            }
        }))
    }
}
