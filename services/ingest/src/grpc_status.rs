//! tonic answers a request body it cannot read with INTERNAL (protobuf decode) or
//! OUT_OF_RANGE (message over the size limit). The ingest API promises INVALID_ARGUMENT and
//! RESOURCE_EXHAUSTED (SPEC §3), which OTLP clients treat as "do not retry" and "retry
//! later". This wrapper rewrites those two codes on the ingest services' responses; the
//! handlers themselves never produce either code, so nothing else is affected.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::HeaderValue;
use tonic::Code;
use tonic::server::NamedService;

#[derive(Clone)]
pub struct ClientErrorCodes<S> {
    inner: S,
}

impl<S> ClientErrorCodes<S> {
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S: NamedService> NamedService for ClientErrorCodes<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, Request, Body> tower::Service<Request> for ClientErrorCodes<S>
where
    S: tower::Service<Request, Response = http::Response<Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            // Request-decoding failures come back as trailers-only responses: the status is a
            // header. An error of the server's own is marked and left as it is.
            if response.headers().contains_key(SERVER_ERROR_METADATA) {
                response.headers_mut().remove(SERVER_ERROR_METADATA);
                return Ok(response);
            }
            if let Some(rewritten) = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .and_then(|code| client_error_code(Code::from_i32(code)))
            {
                response
                    .headers_mut()
                    .insert("grpc-status", HeaderValue::from(rewritten as i32));
            }
            Ok(response)
        })
    }
}

/// Metadata on an INTERNAL status the handlers produce (removed before it is sent).
pub const SERVER_ERROR_METADATA: &str = "x-userlens-server-error";

/// The code a client error of request decoding is reported with.
pub fn client_error_code(code: Code) -> Option<Code> {
    match code {
        Code::Internal => Some(Code::InvalidArgument),
        Code::OutOfRange => Some(Code::ResourceExhausted),
        _ => None,
    }
}
