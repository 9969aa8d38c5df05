//! Fuzzes the response-head parser for each request method that changes the body rules.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringwall::http1::{parse_response, HeadLimits, Method};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let method = match selector % 4 {
        0 => Method::Get,
        1 => Method::Head,
        2 => Method::Connect,
        _ => Method::Post,
    };
    let limits = HeadLimits {
        max_head: 16 * 1024,
        max_headers: 64,
        max_uri: 1024,
    };
    let mut buf = BytesMut::from(data);
    let before = buf.len();
    if let Ok(Some(head)) = parse_response(&mut buf, &limits, method) {
        assert_eq!(before - buf.len(), head.head_len());
        let _ = (
            head.status(),
            head.body(),
            head.keep_alive(),
            head.is_informational(),
        );
        let _ = head.forwardable_fields().count();
    }
});
