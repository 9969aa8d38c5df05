//! Fuzzes the request-head parser: any bytes, any limits; it must never panic, and whatever it
//! accepts must be self-consistent (the head is split off exactly, the rest stays).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringwall::http1::{parse_request, BodyDecoder, Decoded, HeadLimits};

fuzz_target!(|data: &[u8]| {
    let limits = HeadLimits {
        max_head: 8 * 1024,
        max_headers: 32,
        max_uri: 2 * 1024,
    };
    let mut buf = BytesMut::from(data);
    // Pipelined requests: keep parsing heads and bodies until the input runs out or fails.
    for _ in 0..16 {
        let before = buf.len();
        let head = match parse_request(&mut buf, &limits) {
            Ok(Some(head)) => head,
            Ok(None) | Err(_) => return,
        };
        assert_eq!(before - buf.len(), head.head_len());
        let _ = (
            head.host(),
            head.path(),
            head.keep_alive(),
            head.expect_continue(),
        );
        let _ = head.forwardable_fields().count();
        let mut decoder = BodyDecoder::new(head.body());
        loop {
            match decoder.decode(&mut buf) {
                Ok(Decoded::Data(_) | Decoded::Trailers(_)) => {}
                Ok(Decoded::End) => break,
                Ok(Decoded::NeedMore) | Err(_) => return,
            }
        }
    }
});
