//! Arbitrary bytes as an OTLP/HTTP JSON body; the first byte chooses gzip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use userlens_fuzz::decode_and_check;
use userlens_ingest::http::Encoding;

fuzz_target!(|data: &[u8]| {
    let Some((flags, body)) = data.split_first() else {
        return;
    };
    decode_and_check(Encoding::Json, flags & 1 == 1, body);
});
