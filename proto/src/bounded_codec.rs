//! The codec of the ingest services: `prost`, but a request whose decoded form would take
//! more than [`MAX_DECODED_REQUEST_BYTES`] is refused with `RESOURCE_EXHAUSTED` before it is
//! decoded (see [`crate::decoded_size`]). tonic's own limit is on the message's wire size,
//! which tiny repeated records multiply a hundredfold once decoded.

use std::marker::PhantomData;

use prost::Message;
use prost::bytes::Buf;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use crate::decoded_size::EstimateDecodedSize;

/// Decoded bytes one request (or one `StreamSpans` batch) may take, at most. A 16 MiB body
/// of real spans decodes into about 2.5× its size; empty spans, ≈ 120×.
pub const MAX_DECODED_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// The message of the refusal, naming the limit.
pub fn too_large_message(estimated_bytes: usize) -> String {
    format!(
        "request would take about {estimated_bytes} bytes once decoded, more than the limit of \
         {MAX_DECODED_REQUEST_BYTES} decoded bytes per request: send fewer spans per request"
    )
}

#[derive(Debug, Clone, Copy)]
pub struct BoundedCodec<T, U> {
    _messages: PhantomData<(T, U)>,
}

impl<T, U> Default for BoundedCodec<T, U> {
    fn default() -> Self {
        Self {
            _messages: PhantomData,
        }
    }
}

impl<T, U> Codec for BoundedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + EstimateDecodedSize + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = BoundedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        BoundedDecoder {
            _message: PhantomData,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct BoundedDecoder<U> {
    _message: PhantomData<U>,
}

impl<U: Message + Default + EstimateDecodedSize> Decoder for BoundedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // tonic hands over one message in one contiguous buffer; should that ever change,
        // the message is gathered first (a copy of at most the wire size limit).
        if buf.chunk().len() == buf.remaining() {
            check(U::estimate_decoded_size(buf.chunk()))?;
            U::decode(buf).map(Some).map_err(decode_error)
        } else {
            let wire = buf.copy_to_bytes(buf.remaining());
            check(U::estimate_decoded_size(&wire))?;
            U::decode(wire).map(Some).map_err(decode_error)
        }
    }
}

fn check(
    estimate: Result<crate::decoded_size::DecodedSize, crate::decoded_size::WireError>,
) -> Result<(), Status> {
    let estimate =
        estimate.map_err(|e| Status::invalid_argument(format!("request does not decode: {e}")))?;
    if estimate.bytes > MAX_DECODED_REQUEST_BYTES {
        return Err(Status::resource_exhausted(too_large_message(
            estimate.bytes,
        )));
    }
    Ok(())
}

fn decode_error(error: prost::DecodeError) -> Status {
    Status::invalid_argument(format!("request does not decode: {error}"))
}
