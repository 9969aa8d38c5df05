//! Fuzzes configuration loading: any text must give a Config or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringwall::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = Config::from_toml_str(text, None) {
            let _ = e.to_string();
        }
    }
});
