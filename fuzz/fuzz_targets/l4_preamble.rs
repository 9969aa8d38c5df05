//! Fuzzes what an L4 listener reads before it forwards a byte: the PROXY protocol header of a
//! trusted balancer (v1 text, v2 binary) and the SNI of a TLS `ClientHello`. Any bytes: never a
//! panic, a header never longer than the input, a name only from inside the record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringwall::l4::proxy_protocol::{decode, Decoded};
use ringwall::l4::{peek_sni, Hello};

fuzz_target!(|data: &[u8]| {
    if let Decoded::Header { len, .. } = decode(data) {
        assert!(len <= data.len());
    }
    if let Hello::Parsed(Some(name)) = peek_sni(data) {
        assert!(!name.is_empty() && name.len() < data.len());
        let start = name.as_ptr() as usize - data.as_ptr() as usize;
        assert!(start + name.len() <= data.len());
    }
});
