//! A tonic codec that sends and receives messages as the bytes they are, so a test controls
//! every byte of a message, however large or broken, and reaches the server's own decoding.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Messages as `Vec<u8>` or `Bytes` (whichever the call's request holds).
pub struct RawCodec<T>(PhantomData<fn() -> T>);

impl<T> Default for RawCodec<T> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T> Clone for RawCodec<T> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl<T: AsRef<[u8]> + From<Bytes> + Send + 'static> Codec for RawCodec<T> {
    type Encode = T;
    type Decode = T;
    type Encoder = RawCodec<T>;
    type Decoder = RawCodec<T>;
    fn encoder(&mut self) -> Self::Encoder {
        Self::default()
    }
    fn decoder(&mut self) -> Self::Decoder {
        Self::default()
    }
}

impl<T: AsRef<[u8]>> Encoder for RawCodec<T> {
    type Item = T;
    type Error = Status;
    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(item.as_ref());
        Ok(())
    }
}

impl<T: From<Bytes>> Decoder for RawCodec<T> {
    type Item = T;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<T>, Status> {
        Ok(Some(T::from(src.copy_to_bytes(src.remaining()))))
    }
}
