//! Fuzzes the chunked body decoder, fed in pieces whose sizes come from the input itself, and
//! checks that feeding it piecewise gives the same body as feeding it whole.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringwall::http1::{BodyDecoder, BodyKind, Decoded};

/// Decodes `input` arriving in pieces of `step` bytes; returns the body and whether it ended.
fn decode(input: &[u8], step: usize) -> Option<(Vec<u8>, bool)> {
    let mut decoder = BodyDecoder::new(BodyKind::Chunked);
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut fed = 0;
    loop {
        match decoder.decode(&mut buf) {
            Ok(Decoded::Data(data)) => body.extend_from_slice(&data),
            Ok(Decoded::Trailers(_)) => {}
            Ok(Decoded::End) => return Some((body, true)),
            Ok(Decoded::NeedMore) => {
                if fed == input.len() {
                    return Some((body, false));
                }
                let end = (fed + step).min(input.len());
                buf.extend_from_slice(&input[fed..end]);
                fed = end;
            }
            Err(_) => return None,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let whole = decode(input, input.len().max(1));
    let pieces = decode(input, usize::from(step % 16) + 1);
    if let (Some((a, true)), Some((b, true))) = (&whole, &pieces) {
        assert_eq!(a, b, "piecewise decoding changed the body");
    }
    if whole.is_some_and(|(_, ended)| ended) {
        assert!(
            pieces.is_some_and(|(_, ended)| ended),
            "piecewise decoding failed"
        );
    }
});
