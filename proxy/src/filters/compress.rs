//! Compression on the fly: gzip, brotli or zstd, whichever the client accepts best
//! (`Accept-Encoding` with q-values, RFC 9110 §12.5.3), for the route's compressible types.
//!
//! The decision is made on the response head ([`CompressFilter::response_filter`]); a response
//! that is compressed gets `Content-Encoding`, loses `Content-Length` and `Accept-Ranges`, has a
//! strong `ETag` weakened (the bytes differ from the origin's), and its body goes through an
//! [`Encoder`] left in the request's context: each piece the pump hands over is compressed and
//! flushed at once, so a streaming response is not held back, and the encoder's memory is its
//! window and tables, whatever the body's size. `Vary: Accept-Encoding` is added to every
//! response that could have been compressed, compressed or not, so that caches keep the
//! variants apart.
//!
//! Left alone: responses already encoded, with `Cache-Control: no-transform`, partial
//! responses (206, `Content-Range`), bodies below `min_size` or empty, types not listed, and
//! responses ringwall makes itself.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;

use super::{Filter, Response, ResponseSource};
use crate::config::{Compression, Encoding};
use crate::http1::{BodyKind, Method};
use crate::l7::RequestContext;

/// A brotli or zstd window of 2^18 bytes: 256 KiB per response being compressed at most.
const WINDOW_LOG: u32 = 18;
/// brotli's own input buffer.
const BROTLI_BUFFER: usize = 4096;

/// Compresses the responses of one route as its `[compression]` says.
pub struct CompressFilter {
    settings: Arc<Compression>,
}

impl CompressFilter {
    pub fn new(settings: Arc<Compression>) -> Self {
        Self { settings }
    }
}

impl Filter for CompressFilter {
    fn name(&self) -> &'static str {
        "compress"
    }

    fn response_filter(&self, response: &mut Response<'_>, ctx: &mut RequestContext) {
        let ResponseSource::Upstream(head) = response.source else {
            return;
        };
        let status = head.status();
        let head_only = response.request.head.method() == Method::Head;
        let has_body = match head.body() {
            BodyKind::Empty => head_only && !matches!(status, 204 | 304) && status >= 200,
            BodyKind::Length(n) => n > 0 && n >= self.settings.min_size,
            _ => true,
        };
        let field = |name: &str| {
            response
                .overlay
                .get(response.source.fields(), name.as_bytes())
        };
        if !has_body
            || status == 206
            || field("content-range").is_some()
            || field("content-encoding").is_some_and(|e| !e.trim_ascii().is_empty())
            || head_only && too_small(field("content-length"), self.settings.min_size)
            || !field("content-type").is_some_and(|t| self.settings.compresses(t))
            || no_transform(response.source.fields())
        {
            return;
        }
        if !varies_by_encoding(response.source.fields().chain(response.overlay.added())) {
            response.overlay.add(b"Vary", b"Accept-Encoding");
        }
        let accepted = response
            .request
            .head
            .fields()
            .filter(|(name, _)| name.eq_ignore_ascii_case(b"accept-encoding"))
            .map(|(_, value)| value)
            .collect::<Vec<_>>();
        let Some(encoding) = choose(&self.settings.encodings, &accepted) else {
            return;
        };
        if !head_only {
            ctx.encoder = Some(Box::new(Encoder::new(encoding, &self.settings)));
        }
        let overlay = &mut *response.overlay;
        if let Some(etag) = overlay.get(response.source.fields(), b"etag") {
            if etag.starts_with(b"\"") {
                let weak = [b"W/", etag].concat();
                overlay.set(b"ETag", &weak);
            }
        }
        overlay.remove(b"content-length");
        overlay.remove(b"accept-ranges");
        overlay.set(b"Content-Encoding", encoding.token().as_bytes());
    }
}

/// A `Content-Length` below `min` (a HEAD response's, which has no body to go by).
fn too_small(length: Option<&[u8]>, min: u64) -> bool {
    let length = length
        .and_then(|l| std::str::from_utf8(l).ok())
        .and_then(|l| l.trim().parse::<u64>().ok());
    length.is_some_and(|n| n == 0 || n < min)
}

/// Whether `Cache-Control` has `no-transform` (RFC 9111 §5.2.2.6).
fn no_transform<'a>(fields: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> bool {
    list_values(fields, b"cache-control").any(|directive| {
        let name = directive.split(|&b| b == b'=').next().unwrap_or_default();
        name.trim_ascii().eq_ignore_ascii_case(b"no-transform")
    })
}

/// Whether `Vary` already names `Accept-Encoding` (or is `*`).
fn varies_by_encoding<'a>(fields: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> bool {
    list_values(fields, b"vary").any(|v| v == b"*" || v.eq_ignore_ascii_case(b"accept-encoding"))
}

/// The comma-separated elements of every field called `name`, trimmed, empty ones skipped.
fn list_values<'a>(
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    name: &'a [u8],
) -> impl Iterator<Item = &'a [u8]> {
    fields
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, value)| value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|v| !v.is_empty())
}

/// The encoding to use of `offered` (in the server's order of preference), by the client's
/// `Accept-Encoding` values: the highest q-value above 0, the earlier offered on a tie. A
/// coding not listed takes the q-value of `*`, else it is not acceptable; no field at all
/// means no compression (as every server does, though RFC 9110 would allow any coding).
pub fn choose(offered: &[Encoding], accepted: &[&[u8]]) -> Option<Encoding> {
    let elements = || {
        accepted
            .iter()
            .flat_map(|value| value.split(|&b| b == b','))
            .filter_map(parse_element)
    };
    let wildcard = elements()
        .filter(|(coding, _)| *coding == b"*")
        .map(|(_, q)| q)
        .next_back();
    let mut best: Option<(Encoding, u16)> = None;
    for &encoding in offered {
        let token = encoding.token().as_bytes();
        let q = elements()
            .filter(|(coding, _)| {
                coding.eq_ignore_ascii_case(token)
                    || encoding == Encoding::Gzip && coding.eq_ignore_ascii_case(b"x-gzip")
            })
            .map(|(_, q)| q)
            .next_back()
            .or(wildcard);
        if let Some(q) = q.filter(|&q| q > 0) {
            if best.is_none_or(|(_, b)| q > b) {
                best = Some((encoding, q));
            }
        }
    }
    best.map(|(encoding, _)| encoding)
}

/// One `coding [; q=value]` element: the coding and its q-value in thousandths; `None` when
/// it is empty or its q-value is not one (RFC 9110 §12.4.2).
fn parse_element(element: &[u8]) -> Option<(&[u8], u16)> {
    let mut parts = element.split(|&b| b == b';');
    let coding = parts.next()?.trim_ascii();
    if coding.is_empty() {
        return None;
    }
    let mut q = 1000;
    for param in parts {
        let param = param.trim_ascii();
        let Some((name, value)) = param.split_at_checked(2) else {
            continue;
        };
        if name.eq_ignore_ascii_case(b"q=") {
            q = parse_qvalue(value.trim_ascii())?;
        }
    }
    Some((coding, q))
}

/// `0`, `0.5`, `1.000`: thousandths, or `None` when it is not a q-value.
fn parse_qvalue(text: &[u8]) -> Option<u16> {
    let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + fraction.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// One response's compressor.
pub struct Encoder {
    encoding: Encoding,
    levels: (u32, u32, i32),
    /// `None` until the first piece (an encoder's state is made only for a body that goes
    /// through it: a cached response's stored variant needs none), and once finished.
    inner: Option<Inner>,
    started: bool,
}

enum Inner {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    pub fn new(encoding: Encoding, settings: &Compression) -> Self {
        Self {
            encoding,
            levels: (
                settings.gzip_level,
                settings.brotli_level,
                settings.zstd_level,
            ),
            inner: None,
            started: false,
        }
    }

    /// The encoding it produces.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// `body` compressed whole, finished (for a stored response's variant).
    pub fn compress_all(mut self, body: &Bytes) -> Bytes {
        let mut chunk = Some(body.clone());
        self.encode(&mut chunk, true);
        chunk.unwrap_or_default()
    }

    fn start(&self) -> std::io::Result<Inner> {
        let (gzip, brotli, zstd) = self.levels;
        Ok(match self.encoding {
            Encoding::Gzip => Inner::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(gzip),
            )),
            Encoding::Brotli => Inner::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                brotli,
                WINDOW_LOG,
            ))),
            Encoding::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), zstd)?;
                encoder.window_log(WINDOW_LOG)?;
                Inner::Zstd(encoder)
            }
        })
    }

    /// Compresses `chunk` in place (`None` when it made no bytes yet), flushed so that what
    /// came in goes out; at the `end`, the stream's last bytes.
    pub fn encode(&mut self, chunk: &mut Option<Bytes>, end: bool) {
        let data = chunk.take();
        match self.step(data.as_deref(), end) {
            Ok(out) => *chunk = (!out.is_empty()).then(|| Bytes::from(out)),
            Err(e) => {
                // Writing into a Vec does not fail; an encoder's own error ends the body.
                tracing::error!("compression failed: {e}");
                self.inner = None;
            }
        }
    }

    fn step(&mut self, data: Option<&[u8]>, end: bool) -> std::io::Result<Vec<u8>> {
        if !self.started {
            self.started = true;
            self.inner = Some(self.start()?);
        }
        let Some(inner) = self.inner.as_mut() else {
            return Ok(Vec::new());
        };
        if let Some(data) = data {
            match inner {
                Inner::Gzip(e) => e.write_all(data)?,
                Inner::Brotli(e) => e.write_all(data)?,
                Inner::Zstd(e) => e.write_all(data)?,
            }
        }
        if !end {
            return Ok(match inner {
                Inner::Gzip(e) => {
                    e.flush()?;
                    std::mem::take(e.get_mut())
                }
                Inner::Brotli(e) => {
                    e.flush()?;
                    std::mem::take(e.get_mut())
                }
                Inner::Zstd(e) => {
                    e.flush()?;
                    std::mem::take(e.get_mut())
                }
            });
        }
        match self.inner.take() {
            Some(Inner::Gzip(e)) => e.finish(),
            Some(Inner::Brotli(e)) => Ok(e.into_inner()),
            Some(Inner::Zstd(e)) => e.finish(),
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn pick(accept: &[&str]) -> Option<Encoding> {
        let offered = [Encoding::Brotli, Encoding::Zstd, Encoding::Gzip];
        let accept: Vec<&[u8]> = accept.iter().map(|a| a.as_bytes()).collect();
        choose(&offered, &accept)
    }

    #[test]
    fn accept_encoding_is_read_with_its_q_values() {
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(&["gzip"]), Some(Encoding::Gzip));
        assert_eq!(pick(&["x-gzip"]), Some(Encoding::Gzip));
        assert_eq!(pick(&["GZIP, deflate, br"]), Some(Encoding::Brotli));
        assert_eq!(pick(&["gzip;q=1.0, br;q=0.5"]), Some(Encoding::Gzip));
        assert_eq!(pick(&["gzip; q=0.5", "zstd ;q=0.8"]), Some(Encoding::Zstd));
        assert_eq!(pick(&["br;q=0, gzip;q=0.001"]), Some(Encoding::Gzip));
        assert_eq!(pick(&["*"]), Some(Encoding::Brotli));
        assert_eq!(pick(&["*;q=0.5, br;q=0.4"]), Some(Encoding::Zstd));
        assert_eq!(pick(&["*;q=0, gzip"]), Some(Encoding::Gzip));
        assert_eq!(pick(&["identity"]), None);
        assert_eq!(pick(&["deflate, compress"]), None);
        assert_eq!(pick(&["gzip;q=0"]), None);
        // A q-value that is not one drops its element.
        assert_eq!(pick(&["gzip;q=2"]), None);
        assert_eq!(pick(&["gzip;q=0.5x, br;q=0.1"]), Some(Encoding::Brotli));
        assert_eq!(pick(&["gzip;q=1.5"]), None);
        assert_eq!(pick(&[",,gzip,;"]), Some(Encoding::Gzip));
    }

    #[test]
    fn q_values() {
        assert_eq!(parse_qvalue(b"1"), Some(1000));
        assert_eq!(parse_qvalue(b"1.000"), Some(1000));
        assert_eq!(parse_qvalue(b"0.5"), Some(500));
        assert_eq!(parse_qvalue(b"0.125"), Some(125));
        assert_eq!(parse_qvalue(b"0."), Some(0));
        assert_eq!(parse_qvalue(b"1.001"), None);
        assert_eq!(parse_qvalue(b"0.1234"), None);
        assert_eq!(parse_qvalue(b""), None);
        assert_eq!(parse_qvalue(b"-1"), None);
    }

    fn settings() -> Compression {
        Compression {
            encodings: vec![Encoding::Gzip],
            min_size: 0,
            types: Vec::new(),
            gzip_level: 6,
            brotli_level: 4,
            zstd_level: 3,
        }
    }

    fn decode(encoding: Encoding, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match encoding {
            Encoding::Gzip => {
                flate2::read::GzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Encoding::Brotli => {
                brotli::Decompressor::new(bytes, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Encoding::Zstd => out = zstd::stream::decode_all(bytes).unwrap(),
        }
        out
    }

    #[test]
    fn every_piece_comes_out_at_once_and_the_whole_decodes_back() {
        let text: Vec<u8> = (0..2000)
            .flat_map(|i| format!("line {i} of a log\n").into_bytes())
            .collect();
        for encoding in [Encoding::Gzip, Encoding::Brotli, Encoding::Zstd] {
            let mut encoder = Encoder::new(encoding, &settings());
            let mut out = Vec::new();
            for piece in text.chunks(7000) {
                let mut chunk = Some(Bytes::copy_from_slice(piece));
                encoder.encode(&mut chunk, false);
                let chunk = chunk.expect("a flushed piece makes bytes");
                out.extend_from_slice(&chunk);
            }
            let mut last = None;
            encoder.encode(&mut last, true);
            out.extend_from_slice(&last.unwrap());
            assert_eq!(decode(encoding, &out), text, "{encoding:?}");
            assert!(out.len() * 4 < text.len(), "{encoding:?}: {}", out.len());
            // Finished: nothing more comes.
            let mut after = Some(Bytes::from_static(b"x"));
            encoder.encode(&mut after, true);
            assert_eq!(after, None);
        }
    }

    #[test]
    fn a_flushed_gzip_prefix_decodes_to_what_went_in() {
        let mut encoder = Encoder::new(Encoding::Gzip, &settings());
        let mut chunk = Some(Bytes::from_static(b"data: first event\n\n"));
        encoder.encode(&mut chunk, false);
        let mut decoder = flate2::write::GzDecoder::new(Vec::new());
        decoder.write_all(&chunk.unwrap()).unwrap();
        decoder.flush().unwrap();
        assert_eq!(decoder.get_ref(), b"data: first event\n\n");
    }
}
