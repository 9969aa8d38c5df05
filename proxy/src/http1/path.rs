//! Normalizing a request path before it is routed and forwarded (RFC 3986 §6.2.2).
//!
//! A proxy that routes on the raw target lets `/public/../admin` or `/public/%2e%2e/admin`
//! match a `/public/` route while the origin serves `/admin`. [`normalize_path`] turns the path
//! into the one form both sides agree on: percent-encoded unreserved characters decoded
//! (`%41` → `A`, `%2E` → `.`), other escapes kept with upper-case hex, dot segments removed
//! (RFC 3986 §5.2.4), optionally repeated slashes merged and encoded slashes decoded or
//! refused. What cannot be normalized (a broken escape, a `..` above the root, an encoded
//! slash when told to refuse it) is a [`CodecError::Malformed`] (400). A path that is already
//! normal costs one scan and no allocation.

use super::error::CodecError;

/// What to do with `%2F` (an encoded `/`) in a path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EscapedSlashes {
    /// Leave it encoded: it is data inside one segment (Envoy's default).
    #[default]
    Keep,
    /// Refuse the request (400).
    Reject,
    /// Decode it to `/` before dot segments are removed (nginx's behaviour).
    Decode,
}

/// How paths are normalized.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathOptions {
    /// Merge runs of `/` into one (nginx's `merge_slashes`).
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashes,
}

/// The normal form of an origin-form `path` (no query), or `None` when it already is normal.
pub fn normalize_path(path: &[u8], options: PathOptions) -> Result<Option<Vec<u8>>, CodecError> {
    if !path.starts_with(b"/") || is_normal(path, options) {
        return Ok(None);
    }
    let decoded = decode_unreserved(path, options.escaped_slashes)?;
    let mut segments: Vec<&[u8]> = Vec::new();
    let parts: Vec<&[u8]> = decoded[1..].split(|&b| b == b'/').collect();
    let last = parts.len() - 1;
    for (i, segment) in parts.into_iter().enumerate() {
        match segment {
            b"." => {}
            b".." => {
                if segments.pop().is_none() {
                    return Err(CodecError::Malformed("path climbs above the root"));
                }
            }
            b"" if options.merge_slashes && i != last => {}
            _ => segments.push(segment),
        }
        // A path ending in a dot segment names a directory: it keeps its trailing slash.
        if i == last && matches!(segment, b"." | b"..") {
            segments.push(b"");
        }
    }
    let mut out = Vec::with_capacity(decoded.len());
    for segment in &segments {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Ok(Some(out))
}

/// True when nothing in `path` would change: no escape, no dot segment, and (when merging) no
/// empty segment.
fn is_normal(path: &[u8], options: PathOptions) -> bool {
    if path.contains(&b'%') {
        return false;
    }
    let mut segments = path[1..].split(|&b| b == b'/').peekable();
    while let Some(segment) = segments.next() {
        let empty_inside = segment.is_empty() && segments.peek().is_some();
        if segment == b"." || segment == b".." || (options.merge_slashes && empty_inside) {
            return false;
        }
    }
    true
}

/// RFC 3986 §2.3: unreserved characters.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Decodes escapes of unreserved characters (and of `/` when told to), upper-cases the hex of
/// the others, refuses broken escapes.
fn decode_unreserved(path: &[u8], slashes: EscapedSlashes) -> Result<Vec<u8>, CodecError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(path.len());
    let mut at = 0;
    while at < path.len() {
        let byte = path[at];
        if byte != b'%' {
            out.push(byte);
            at += 1;
            continue;
        }
        let value = match (path.get(at + 1), path.get(at + 2)) {
            (Some(&high), Some(&low)) => hex_value(high)
                .zip(hex_value(low))
                .map(|(high, low)| high << 4 | low),
            _ => None,
        }
        .ok_or(CodecError::Malformed("invalid percent-encoding in path"))?;
        match value {
            b'/' if slashes == EscapedSlashes::Reject => {
                return Err(CodecError::Malformed("encoded slash in path"));
            }
            b'/' if slashes == EscapedSlashes::Decode => out.push(b'/'),
            value if is_unreserved(value) => out.push(value),
            value => out.extend_from_slice(&[
                b'%',
                HEX[usize::from(value >> 4)],
                HEX[usize::from(value & 15)],
            ]),
        }
        at += 3;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(path: &str, options: PathOptions) -> Result<String, CodecError> {
        normalize_path(path.as_bytes(), options).map(|changed| {
            changed.map_or_else(|| path.to_owned(), |p| String::from_utf8(p).unwrap())
        })
    }

    fn plain(path: &str) -> String {
        normal(path, PathOptions::default()).unwrap()
    }

    #[test]
    fn a_normal_path_is_left_alone_without_allocating() {
        for path in [
            "/",
            "/a",
            "/a/b/",
            "/a//b",
            "/.well-known/x",
            "/a.b/c..d/...",
        ] {
            assert_eq!(
                normalize_path(path.as_bytes(), PathOptions::default()),
                Ok(None),
                "{path}"
            );
        }
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_eq!(plain("/public/../admin"), "/admin");
        assert_eq!(plain("/a/./b"), "/a/b");
        assert_eq!(plain("/a/b/.."), "/a/");
        assert_eq!(plain("/a/b/."), "/a/b/");
        assert_eq!(plain("/a/.."), "/");
        assert_eq!(plain("/./"), "/");
        assert_eq!(plain("/a//../b"), "/a/b");
        assert_eq!(plain("/a/b/../../c"), "/c");
    }

    #[test]
    fn escaped_unreserved_characters_are_decoded_before_dots_go() {
        assert_eq!(plain("/public/%2e%2e/admin"), "/admin");
        assert_eq!(plain("/public/%2E%2E/admin"), "/admin");
        assert_eq!(plain("/public/.%2e/admin"), "/admin");
        assert_eq!(plain("/%7Euser/%41%62c"), "/~user/Abc");
        // Reserved and other bytes stay escaped, with upper-case hex.
        assert_eq!(plain("/a%2fb/%3f%20"), "/a%2Fb/%3F%20");
    }

    #[test]
    fn what_cannot_be_normalized_is_refused() {
        for path in [
            "/..",
            "/../a",
            "/a/../../b",
            "/%2e%2e/x",
            "/a%zz",
            "/a%4",
            "/a%",
        ] {
            assert!(
                matches!(
                    normal(path, PathOptions::default()),
                    Err(CodecError::Malformed(_))
                ),
                "{path}"
            );
        }
    }

    #[test]
    fn slashes_merge_when_asked() {
        let merge = PathOptions {
            merge_slashes: true,
            ..PathOptions::default()
        };
        assert_eq!(normal("/a//b///c", merge).unwrap(), "/a/b/c");
        assert_eq!(normal("//", merge).unwrap(), "/");
        assert_eq!(normal("/a/", merge).unwrap(), "/a/");
        assert_eq!(normal("/a//", merge).unwrap(), "/a/");
        assert_eq!(plain("/a//b"), "/a//b");
    }

    #[test]
    fn encoded_slashes_kept_refused_or_decoded() {
        let with = |escaped_slashes| PathOptions {
            escaped_slashes,
            ..PathOptions::default()
        };
        let path = "/public/..%2Fadmin";
        assert_eq!(
            normal(path, with(EscapedSlashes::Keep)).unwrap(),
            "/public/..%2Fadmin"
        );
        assert!(normal(path, with(EscapedSlashes::Reject)).is_err());
        assert_eq!(
            normal(path, with(EscapedSlashes::Decode)).unwrap(),
            "/admin"
        );
    }
}
