//! Fuzzes path normalization: any bytes, every option; it must never panic, and a path it
//! returns must be normal: rooted, free of dot segments, and left unchanged when normalized
//! again (one form for routing and forwarding, whatever the spelling).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringwall::http1::{normalize_path, EscapedSlashes, PathOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, path)) = data.split_first() else {
        return;
    };
    let options = PathOptions {
        merge_slashes: flags & 1 != 0,
        escaped_slashes: match (flags >> 1) % 3 {
            0 => EscapedSlashes::Keep,
            1 => EscapedSlashes::Reject,
            _ => EscapedSlashes::Decode,
        },
    };
    let Ok(result) = normalize_path(path, options) else {
        return;
    };
    let normal = result.as_deref().unwrap_or(path);
    if !path.starts_with(b"/") {
        assert!(result.is_none(), "only origin-form paths are rewritten");
        return;
    }
    assert!(normal.starts_with(b"/"));
    assert!(
        !normal
            .split(|&b| b == b'/')
            .any(|segment| segment == b"." || segment == b".."),
        "dot segment left in {normal:?}"
    );
    // Normal means stable: a second pass changes nothing (escapes of reserved bytes stay).
    match normalize_path(normal, options) {
        Ok(None) => {}
        Ok(Some(again)) => {
            let third = normalize_path(&again, options).expect("still valid");
            assert!(third.is_none() || third.as_deref() == Some(&again[..]));
            assert_eq!(again, normal, "not stable: {path:?} -> {normal:?} -> {again:?}");
        }
        Err(e) => panic!("a normalized path is refused: {normal:?}: {e}"),
    }
});
