//! `[compression]`: which encodings ringwall compresses responses with on the fly, for which
//! content types, from what size, at which levels; and a route's `compress = false`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::{path, Problem};
use super::file::FileConfig;
use super::units::ByteSize;
use super::Route;

type Checked<T> = Result<T, Problem>;

/// A content coding ringwall produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    Gzip,
    Brotli,
    Zstd,
}

impl Encoding {
    /// Its name in `Content-Encoding` and `Accept-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        }
    }

    /// `gzip`, `br` (or `brotli`), `zstd`.
    pub fn parse(text: &str) -> Option<Encoding> {
        match text.trim().to_ascii_lowercase().as_str() {
            "gzip" => Some(Encoding::Gzip),
            "br" | "brotli" => Some(Encoding::Brotli),
            "zstd" => Some(Encoding::Zstd),
            _ => None,
        }
    }
}

/// `[compression]` as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct CompressionFile {
    /// `gzip`, `br`, `zstd`, in the order preferred when a client accepts several equally.
    /// Default: none (compression off).
    pub encodings: Vec<String>,
    /// Responses whose `Content-Length` is below this are sent as they are. Default: `256`.
    pub min_size: ByteSize,
    /// Media types compressed: `type/subtype`, `type/*`, or `type/*+suffix`. Default: text,
    /// JSON, XML, JavaScript, SVG, WebAssembly and fonts that are not compressed already.
    pub types: Option<Vec<String>>,
    /// gzip level, 1 (fastest) to 9. Default: `6`.
    pub gzip_level: u32,
    /// brotli quality, 0 to 11. Default: `4`.
    pub brotli_level: u32,
    /// zstd level, 1 to 19. Default: `3`.
    pub zstd_level: i32,
}

impl Default for CompressionFile {
    fn default() -> Self {
        Self {
            encodings: Vec::new(),
            min_size: ByteSize(256),
            types: None,
            gzip_level: 6,
            brotli_level: 4,
            zstd_level: 3,
        }
    }
}

/// The media types compressed when `types` is not given.
pub const DEFAULT_TYPES: &[&str] = &[
    "text/*",
    "application/json",
    "application/*+json",
    "application/xml",
    "application/*+xml",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/wasm",
    "application/x-ndjson",
    "application/graphql-response+json",
    "image/svg+xml",
    "image/x-icon",
    "image/vnd.microsoft.icon",
    "image/bmp",
    "font/ttf",
    "font/otf",
    "application/vnd.ms-fontobject",
];

/// A media type pattern of `types`, lowercase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaPattern {
    /// `type/subtype`.
    Exact(String),
    /// `type/*`: the type's `type/` prefix.
    AnySubtype(String),
    /// `type/*+suffix`: the `type/` prefix and the `+suffix`.
    Suffix(String, String),
}

impl MediaPattern {
    fn parse(text: &str) -> Option<MediaPattern> {
        let text = text.trim().to_ascii_lowercase();
        let (kind, subtype) = text.split_once('/')?;
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
        };
        if !token(kind) {
            return None;
        }
        if subtype == "*" {
            return Some(MediaPattern::AnySubtype(format!("{kind}/")));
        }
        if let Some(suffix) = subtype.strip_prefix("*+") {
            return token(suffix)
                .then(|| MediaPattern::Suffix(format!("{kind}/"), format!("+{suffix}")));
        }
        token(subtype).then_some(MediaPattern::Exact(text))
    }

    /// Whether `media` (lowercase, without parameters) matches.
    pub fn matches(&self, media: &str) -> bool {
        match self {
            MediaPattern::Exact(exact) => media == exact,
            MediaPattern::AnySubtype(prefix) => {
                media.len() > prefix.len() && media.starts_with(prefix.as_str())
            }
            MediaPattern::Suffix(prefix, suffix) => {
                media.len() > prefix.len() + suffix.len()
                    && media.starts_with(prefix.as_str())
                    && media.ends_with(suffix.as_str())
            }
        }
    }
}

/// `[compression]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compression {
    /// In the order of preference; non-empty.
    pub encodings: Vec<Encoding>,
    pub min_size: u64,
    pub types: Vec<MediaPattern>,
    pub gzip_level: u32,
    pub brotli_level: u32,
    pub zstd_level: i32,
}

impl Compression {
    /// Whether a response of this `Content-Type` value is compressed.
    pub fn compresses(&self, content_type: &[u8]) -> bool {
        let media = content_type
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let Ok(media) = std::str::from_utf8(media) else {
            return false;
        };
        let media = media.to_ascii_lowercase();
        self.types.iter().any(|t| t.matches(&media))
    }
}

/// `[compression]` checked, and put on every route that does not say `compress = false`.
/// `None` when no encoding is configured (compression off everywhere).
pub(crate) fn check_compression(
    file: &FileConfig,
    routes: &mut [Route],
) -> Checked<Option<Arc<Compression>>> {
    let c = &file.compression;
    let here = path(&["compression"]);
    let mut encodings = Vec::new();
    for (i, name) in c.encodings.iter().enumerate() {
        let Some(encoding) = Encoding::parse(name) else {
            return Err(Problem::new(
                here.key("encodings").index(i),
                format!("unknown encoding {name:?}: expected gzip, br or zstd"),
            ));
        };
        if encodings.contains(&encoding) {
            return Err(Problem::new(
                here.key("encodings").index(i),
                format!("{name:?} is listed twice"),
            ));
        }
        encodings.push(encoding);
    }
    let types = match &c.types {
        None => DEFAULT_TYPES
            .iter()
            .filter_map(|t| MediaPattern::parse(t))
            .collect(),
        Some(types) => types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                MediaPattern::parse(t).ok_or_else(|| {
                    Problem::new(
                        here.key("types").index(i),
                        format!("{t:?} is not a media type: type/subtype, type/* or type/*+suffix"),
                    )
                })
            })
            .collect::<Checked<Vec<_>>>()?,
    };
    let level = |key: &str, value: i64, range: std::ops::RangeInclusive<i64>| {
        if range.contains(&value) {
            Ok(())
        } else {
            Err(Problem::new(
                here.key(key),
                format!(
                    "must be between {} and {} (got {value})",
                    range.start(),
                    range.end()
                ),
            ))
        }
    };
    level("gzip_level", i64::from(c.gzip_level), 1..=9)?;
    level("brotli_level", i64::from(c.brotli_level), 0..=11)?;
    level("zstd_level", i64::from(c.zstd_level), 1..=19)?;
    for (i, route) in file.route.iter().enumerate() {
        if route.compress == Some(true) && encodings.is_empty() {
            return Err(Problem::new(
                path(&["route"]).index(i).key("compress"),
                "there is nothing to compress with: give [compression] encodings (or --compress)",
            ));
        }
    }
    if encodings.is_empty() {
        return Ok(None);
    }
    let compression = Arc::new(Compression {
        encodings,
        min_size: c.min_size.0,
        types,
        gzip_level: c.gzip_level,
        brotli_level: c.brotli_level,
        zstd_level: c.zstd_level,
    });
    for (route, route_file) in routes.iter_mut().zip(&file.route) {
        if route_file.compress != Some(false) {
            route.policy.compression = Some(compression.clone());
        }
    }
    Ok(Some(compression))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_patterns() {
        let p = |t: &str| MediaPattern::parse(t).unwrap();
        assert!(p("text/*").matches("text/html"));
        assert!(!p("text/*").matches("text/"));
        assert!(!p("text/*").matches("textual/html"));
        assert!(p("application/*+json").matches("application/problem+json"));
        assert!(!p("application/*+json").matches("application/json"));
        assert!(p("Application/JSON").matches("application/json"));
        assert!(MediaPattern::parse("json").is_none());
        assert!(MediaPattern::parse("text/a b").is_none());
        assert!(MediaPattern::parse("*/*+").is_none());
    }

    #[test]
    fn content_types_are_matched_without_parameters_and_case() {
        let c = Compression {
            encodings: vec![Encoding::Gzip],
            min_size: 0,
            types: DEFAULT_TYPES
                .iter()
                .filter_map(|t| MediaPattern::parse(t))
                .collect(),
            gzip_level: 6,
            brotli_level: 4,
            zstd_level: 3,
        };
        assert_eq!(c.types.len(), DEFAULT_TYPES.len());
        assert!(c.compresses(b"text/html; charset=utf-8"));
        assert!(c.compresses(b"Application/JSON"));
        assert!(c.compresses(b"application/vnd.api+json"));
        assert!(!c.compresses(b"image/png"));
        assert!(!c.compresses(b"application/octet-stream"));
        assert!(!c.compresses(b""));
        assert!(!c.compresses(b"\xff/\xfe"));
    }
}
