//! Body framing: decoding a message body off a connection buffer, and writing chunked framing.
//!
//! A [`BodyDecoder`] is made from the [`BodyKind`] a parsed head reported and then fed the
//! connection's `BytesMut`: each [`BodyDecoder::decode`] call consumes framing and hands out the
//! next piece of body data as a `Bytes` split off the buffer (never copied), the trailer section
//! of a chunked body, or the end. It never waits for a whole chunk and never reads past the end
//! of its body, so pipelined bytes stay in the buffer for the next head. One decoder kind per
//! framing: length (counts down), chunked (a byte-level state machine over the RFC 9112 §7.1
//! grammar, strict about CRLF and bounded in every line), until-close (everything until EOF).
//!
//! The `write_*` functions produce chunked framing for bodies the proxy re-frames on the way
//! out; [`Decoded::Trailers`] output can be handed to [`write_last_chunk`] unchanged.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::chars::is_token_byte;
use super::error::CodecError;
use super::head::BodyKind;

/// Longest chunk-size line, extensions and CRLF included.
const MAX_CHUNK_SIZE_LINE: usize = 4 * 1024;
/// Largest trailer section (field lines with their CRLFs).
const MAX_TRAILER_SECTION: usize = 16 * 1024;
/// Hex digits of a `u64`; a longer chunk size cannot be represented.
const MAX_CHUNK_SIZE_DIGITS: u8 = 16;

/// One step of body decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// The next piece of body data (never empty).
    Data(Bytes),
    /// The trailer field lines of a chunked body, each ending in CRLF, without the final empty
    /// line. Only sent when there are some, right before `End`.
    Trailers(Bytes),
    /// The body is complete.
    End,
    /// The buffer holds no complete next item: read more and call again.
    NeedMore,
}

/// Decodes one message body from the front of a connection buffer.
#[derive(Debug)]
pub struct BodyDecoder {
    framing: Framing,
}

#[derive(Debug)]
enum Framing {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
    UntilClose,
    Finished,
}

impl BodyDecoder {
    pub fn new(kind: BodyKind) -> Self {
        let framing = match kind {
            BodyKind::Empty | BodyKind::Length(0) => Framing::Finished,
            BodyKind::Length(remaining) => Framing::Length { remaining },
            BodyKind::Chunked => Framing::Chunked(ChunkedDecoder::default()),
            BodyKind::UntilClose => Framing::UntilClose,
        };
        Self { framing }
    }

    /// Consumes framing and data from the front of `buf`; data is split off `buf` without
    /// copying. Returns `NeedMore` when `buf` holds no complete next item. After `End` it never
    /// consumes anything again, so pipelined bytes stay in `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, CodecError> {
        match &mut self.framing {
            Framing::Finished => Ok(Decoded::End),
            Framing::Length { remaining } => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let take =
                    usize::try_from(*remaining).map_or(buf.len(), |left| left.min(buf.len()));
                *remaining -= take as u64;
                if *remaining == 0 {
                    self.framing = Framing::Finished;
                }
                Ok(Decoded::Data(buf.split_to(take).freeze()))
            }
            Framing::Chunked(chunked) => chunked.decode(buf),
            Framing::UntilClose => {
                if buf.is_empty() {
                    Ok(Decoded::NeedMore)
                } else {
                    Ok(Decoded::Data(buf.split().freeze()))
                }
            }
        }
    }

    /// The peer closed the connection: the end of an until-close body, the harmless end of a
    /// finished one, and [`CodecError::Truncated`] for anything else.
    pub fn eof(&mut self) -> Result<Decoded, CodecError> {
        match &self.framing {
            Framing::Finished => Ok(Decoded::End),
            Framing::UntilClose => {
                self.framing = Framing::Finished;
                Ok(Decoded::End)
            }
            Framing::Chunked(chunked) if chunked.state == ChunkState::Done => Ok(Decoded::End),
            Framing::Length { .. } | Framing::Chunked(_) => Err(CodecError::Truncated),
        }
    }

    /// The bytes of a `Content-Length` body still to come, for that framing only.
    pub fn remaining_length(&self) -> Option<u64> {
        match self.framing {
            Framing::Length { remaining } => Some(remaining),
            _ => None,
        }
    }

    /// Records that `n` bytes of a `Content-Length` body went by another way than the buffer
    /// (spliced from socket to socket); at most what remains.
    pub fn skip(&mut self, n: u64) {
        if let Framing::Length { remaining } = &mut self.framing {
            *remaining = remaining.saturating_sub(n);
            if *remaining == 0 {
                self.framing = Framing::Finished;
            }
        }
    }

    /// All of the body has been consumed from the buffer (an `End` may still be pending).
    pub fn is_finished(&self) -> bool {
        match &self.framing {
            Framing::Finished => true,
            Framing::Chunked(chunked) => chunked.state == ChunkState::Done,
            Framing::Length { .. } | Framing::UntilClose => false,
        }
    }
}

/// Where the chunked decoder is in the RFC 9112 §7.1 grammar:
///
/// ```text
/// chunked-body = *chunk last-chunk trailer-section CRLF
/// chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// chunk-ext    = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Hex digits of the chunk size.
    Size,
    /// Whitespace after the size or an extension; only `;` may follow.
    BeforeSemicolon,
    /// After `;`: optional whitespace, then an extension name.
    ExtNameStart,
    ExtName,
    /// Whitespace after an extension name; `=` or `;` must follow.
    AfterExtName,
    /// After `=`: optional whitespace, then a token or a quoted string.
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    ExtQuotedEscape,
    /// Right after the closing quote of a quoted value.
    AfterQuoted,
    /// CR of the size line seen.
    SizeLf,
    /// Chunk data; `remaining` bytes to go.
    Data,
    /// The CRLF that must follow chunk data.
    DataCr,
    DataLf,
    /// At the start of a trailer line or of the final empty line.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// CR of the final empty line seen.
    EndLf,
    Done,
}

impl ChunkState {
    /// The states of `chunk-size [ chunk-ext ] CRLF`, whose length is bounded as a whole.
    fn in_size_line(self) -> bool {
        matches!(
            self,
            Self::Size
                | Self::BeforeSemicolon
                | Self::ExtNameStart
                | Self::ExtName
                | Self::AfterExtName
                | Self::ExtValueStart
                | Self::ExtToken
                | Self::ExtQuoted
                | Self::ExtQuotedEscape
                | Self::AfterQuoted
                | Self::SizeLf
        )
    }
}

#[derive(Debug)]
struct ChunkedDecoder {
    state: ChunkState,
    /// Size of the current chunk while reading the size line, then the data still to come.
    remaining: u64,
    size_digits: u8,
    size_line_len: usize,
    /// Trailer lines read so far; allocates only when a body has trailers.
    trailers: BytesMut,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self {
            state: ChunkState::Size,
            remaining: 0,
            size_digits: 0,
            size_line_len: 0,
            trailers: BytesMut::new(),
        }
    }
}

impl ChunkedDecoder {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, CodecError> {
        loop {
            match self.state {
                ChunkState::Done => {
                    return Ok(if self.trailers.is_empty() {
                        Decoded::End
                    } else {
                        Decoded::Trailers(self.trailers.split().freeze())
                    });
                }
                ChunkState::Data => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(self.remaining)
                        .map_or(buf.len(), |left| left.min(buf.len()));
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = ChunkState::DataCr;
                    }
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                _ => {
                    // Framing bytes: step through them until data starts, the body ends or
                    // the buffer runs out. They are consumed (and dropped) as they are read.
                    let mut consumed = 0;
                    let mut outcome = Ok(());
                    for &byte in buf.iter() {
                        consumed += 1;
                        outcome = self.step(byte);
                        if outcome.is_err()
                            || matches!(self.state, ChunkState::Data | ChunkState::Done)
                        {
                            break;
                        }
                    }
                    buf.advance(consumed);
                    outcome?;
                    if !matches!(self.state, ChunkState::Data | ChunkState::Done) {
                        return Ok(Decoded::NeedMore);
                    }
                }
            }
        }
    }

    /// Advances the state machine by one framing byte.
    fn step(&mut self, byte: u8) -> Result<(), CodecError> {
        self.state = if self.state.in_size_line() {
            self.size_line_len += 1;
            if self.size_line_len > MAX_CHUNK_SIZE_LINE {
                return Err(CodecError::BadChunk("chunk size line too long"));
            }
            self.size_line_step(byte)?
        } else {
            self.delimiter_step(byte)?
        };
        Ok(())
    }

    /// One byte of `chunk-size [ chunk-ext ] CRLF`.
    fn size_line_step(&mut self, byte: u8) -> Result<ChunkState, CodecError> {
        use ChunkState as S;
        let is_space = byte == b' ' || byte == b'\t';
        Ok(match (self.state, byte) {
            (S::Size, _) if byte.is_ascii_hexdigit() => {
                if self.size_digits == MAX_CHUNK_SIZE_DIGITS {
                    return Err(CodecError::BadChunk("chunk size too large"));
                }
                self.size_digits += 1;
                // At most 16 hex digits: the shift cannot lose bits.
                self.remaining = (self.remaining << 4) | u64::from(hex_value(byte));
                S::Size
            }
            (S::Size, _) if self.size_digits == 0 => {
                return Err(CodecError::BadChunk("invalid chunk size"));
            }
            (S::Size | S::ExtName | S::ExtToken | S::AfterQuoted, b'\r') => S::SizeLf,
            (S::Size | S::ExtToken | S::AfterQuoted, _) if is_space => S::BeforeSemicolon,
            (
                S::Size
                | S::BeforeSemicolon
                | S::ExtName
                | S::AfterExtName
                | S::ExtToken
                | S::AfterQuoted,
                b';',
            ) => S::ExtNameStart,
            (S::BeforeSemicolon | S::ExtNameStart | S::AfterExtName | S::ExtValueStart, _)
                if is_space =>
            {
                self.state
            }
            (S::ExtNameStart | S::ExtName, _) if is_token_byte(byte) => S::ExtName,
            (S::ExtName, _) if is_space => S::AfterExtName,
            (S::ExtName | S::AfterExtName, b'=') => S::ExtValueStart,
            (S::ExtValueStart, b'"') => S::ExtQuoted,
            (S::ExtValueStart | S::ExtToken, _) if is_token_byte(byte) => S::ExtToken,
            (S::ExtQuoted, b'"') => S::AfterQuoted,
            (S::ExtQuoted, b'\\') => S::ExtQuotedEscape,
            (S::ExtQuoted | S::ExtQuotedEscape, _) if is_field_text(byte) => S::ExtQuoted,
            (S::Size, _) => return Err(CodecError::BadChunk("invalid chunk size")),
            (S::SizeLf, b'\n') => {
                self.size_digits = 0;
                self.size_line_len = 0;
                if self.remaining == 0 {
                    S::TrailerStart
                } else {
                    S::Data
                }
            }
            (S::SizeLf, _) => return Err(CodecError::BadChunk("bare CR in chunk size line")),
            _ => return Err(CodecError::BadChunk("invalid chunk extension")),
        })
    }

    /// One byte of the CRLF after chunk data, of a trailer line, or of the final CRLF.
    fn delimiter_step(&mut self, byte: u8) -> Result<ChunkState, CodecError> {
        use ChunkState as S;
        Ok(match (self.state, byte) {
            (S::DataCr, b'\r') => S::DataLf,
            (S::DataLf, b'\n') => S::Size,
            (S::DataCr | S::DataLf, _) => {
                return Err(CodecError::BadChunk("missing CRLF after chunk data"));
            }
            (S::TrailerStart, b'\r') => S::EndLf,
            (S::TrailerStart | S::TrailerName, _) if is_token_byte(byte) => {
                self.push_trailer(byte, S::TrailerName)?
            }
            (S::TrailerName, b':') => self.push_trailer(byte, S::TrailerValue)?,
            (S::TrailerValue, b'\r') => self.push_trailer(byte, S::TrailerLf)?,
            (S::TrailerValue, _) if is_field_text(byte) => {
                self.push_trailer(byte, S::TrailerValue)?
            }
            (S::TrailerLf, b'\n') => self.push_trailer(byte, S::TrailerStart)?,
            (S::TrailerStart | S::TrailerName | S::TrailerValue | S::TrailerLf, _) => {
                return Err(CodecError::BadChunk("invalid trailer field"));
            }
            (S::EndLf, b'\n') => S::Done,
            (S::EndLf, _) => return Err(CodecError::BadChunk("bare CR after trailers")),
            // `decode` never steps in data or after the end; the size line has its own step.
            (state, _) => state,
        })
    }

    /// Keeps one byte of a trailer line, within the trailer section bound.
    fn push_trailer(&mut self, byte: u8, next: ChunkState) -> Result<ChunkState, CodecError> {
        if self.trailers.len() >= MAX_TRAILER_SECTION {
            return Err(CodecError::BadChunk("trailer section too large"));
        }
        self.trailers.put_u8(byte);
        Ok(next)
    }
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

/// HTAB, SP, visible ASCII and obs-text: what a field value or quoted string may hold.
fn is_field_text(byte: u8) -> bool {
    byte == b'\t' || (byte >= b' ' && byte != 0x7f)
}

/// Writes the size line of a chunk of `len` bytes: `"{len:x}\r\n"`. `len` must not be zero
/// (a zero size is the last chunk; use [`write_last_chunk`]).
pub fn write_chunk_header(len: usize, out: &mut BytesMut) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    debug_assert!(len > 0, "a zero-size chunk ends the body");
    let mut digits = [0_u8; 2 * size_of::<usize>()];
    let mut start = digits.len();
    let mut rest = len;
    loop {
        start -= 1;
        digits[start] = HEX[rest & 0xf];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    out.reserve(digits.len() - start + 2);
    out.put_slice(&digits[start..]);
    out.put_slice(b"\r\n");
}

/// Writes the CRLF that follows a chunk's data.
pub fn write_chunk_end(out: &mut BytesMut) {
    out.put_slice(b"\r\n");
}

/// Writes the last chunk, the trailer field lines (each ending in CRLF, as
/// [`Decoded::Trailers`] gives them) and the final CRLF.
pub fn write_last_chunk(trailers: Option<&[u8]>, out: &mut BytesMut) {
    let trailers = trailers.unwrap_or_default();
    out.reserve(trailers.len() + 5);
    out.put_slice(b"0\r\n");
    out.put_slice(trailers);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The joined data and the trailers of a decoded body.
    type Outcome = Result<(Vec<u8>, Option<Bytes>), CodecError>;

    /// Everything a decoder yields for `input` fed in pieces of `piece` bytes, with the data
    /// joined; stops at `End` or the first error.
    fn decode_in_pieces(kind: BodyKind, input: &[u8], piece: usize) -> (Outcome, BytesMut) {
        let mut decoder = BodyDecoder::new(kind);
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut trailers = None;
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Decoded::Data(bytes)) => {
                    assert!(!bytes.is_empty());
                    data.extend_from_slice(&bytes);
                }
                Ok(Decoded::Trailers(bytes)) => {
                    assert!(trailers.is_none());
                    trailers = Some(bytes);
                    assert_eq!(decoder.decode(&mut buf), Ok(Decoded::End));
                    return (Ok((data, trailers)), buf);
                }
                Ok(Decoded::End) => return (Ok((data, trailers)), buf),
                Ok(Decoded::NeedMore) => {
                    if fed == input.len() {
                        return (decoder.eof().map(|_| (data, trailers)), buf);
                    }
                    let end = (fed + piece).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
                Err(error) => return (Err(error), buf),
            }
        }
    }

    fn chunked(input: &[u8]) -> Outcome {
        decode_in_pieces(BodyKind::Chunked, input, input.len().max(1)).0
    }

    fn chunked_error(input: &[u8]) -> CodecError {
        match chunked(input) {
            Err(error) => error,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn empty_body_ends_at_once_and_consumes_nothing() {
        for kind in [BodyKind::Empty, BodyKind::Length(0)] {
            let mut decoder = BodyDecoder::new(kind);
            assert!(decoder.is_finished());
            let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
            assert_eq!(decoder.decode(&mut buf), Ok(Decoded::End));
            assert_eq!(decoder.decode(&mut buf), Ok(Decoded::End));
            assert_eq!(buf.len(), 16);
            assert_eq!(decoder.eof(), Ok(Decoded::End));
        }
    }

    #[test]
    fn length_body_stops_at_its_length() {
        let mut decoder = BodyDecoder::new(BodyKind::Length(8));
        let mut buf = BytesMut::new();
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::NeedMore));
        buf.extend_from_slice(b"hello");
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"hello")))
        );
        assert!(!decoder.is_finished());
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::NeedMore));
        buf.extend_from_slice(b"abcGET / HTTP/1.1\r\n");
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"abc")))
        );
        assert!(decoder.is_finished());
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::End));
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::End));
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn length_body_cut_short_is_truncated() {
        let (result, _) = decode_in_pieces(BodyKind::Length(10), b"12345", 2);
        assert_eq!(result, Err(CodecError::Truncated));
        let (result, rest) = decode_in_pieces(BodyKind::Length(u64::MAX), b"12345", 5);
        assert_eq!(result, Err(CodecError::Truncated));
        assert!(rest.is_empty());
    }

    #[test]
    fn data_is_split_off_without_copying() {
        let mut buf = BytesMut::from(&b"0123456789"[..]);
        let address = buf.as_ptr();
        let mut decoder = BodyDecoder::new(BodyKind::Length(4));
        let Ok(Decoded::Data(data)) = decoder.decode(&mut buf) else {
            panic!("expected data");
        };
        assert_eq!(data.as_ptr(), address);
    }

    #[test]
    fn until_close_body_ends_at_eof() {
        let mut decoder = BodyDecoder::new(BodyKind::UntilClose);
        let mut buf = BytesMut::from(&b"part one"[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"part one")))
        );
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::NeedMore));
        assert!(!decoder.is_finished());
        assert_eq!(decoder.eof(), Ok(Decoded::End));
        assert!(decoder.is_finished());
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::End));
    }

    #[test]
    fn decodes_chunks_in_any_pieces() {
        let input =
            b"5\r\nhello\r\n1A;name=value;flag\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\nNEXT";
        for piece in 1..=input.len() {
            let (result, rest) = decode_in_pieces(BodyKind::Chunked, input, piece);
            let (data, trailers) = result.unwrap();
            assert_eq!(
                data, b"helloabcdefghijklmnopqrstuvwxyz",
                "pieces of {piece}"
            );
            assert_eq!(trailers, None);
            // Whatever was fed after the end stays in the buffer.
            assert!(b"NEXT".starts_with(&rest), "pieces of {piece}");
        }
    }

    #[test]
    fn chunk_data_arrives_in_pieces_before_the_chunk_is_complete() {
        let mut decoder = BodyDecoder::new(BodyKind::Chunked);
        let mut buf = BytesMut::from(&b"ffffffffffffffff\r\nab"[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"ab")))
        );
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::NeedMore));
        buf.extend_from_slice(b"cd");
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"cd")))
        );
        assert_eq!(decoder.eof(), Err(CodecError::Truncated));
    }

    #[test]
    fn stops_exactly_at_the_end_of_a_chunked_body() {
        let mut decoder = BodyDecoder::new(BodyKind::Chunked);
        let mut buf = BytesMut::from(&b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n"[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"abc")))
        );
        assert!(!decoder.is_finished());
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::End));
        assert!(decoder.is_finished());
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::End));
        assert_eq!(decoder.eof(), Ok(Decoded::End));
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn accepts_chunk_extensions() {
        for size_line in [
            "5;a",
            "5;a=b",
            "5;a=\"quoted; \\\"value\\\"\"",
            "5 ;a",
            "5\t; a = b ;c",
            "5;a=b;c=\"\";d",
            "5;a= \"x\" ;b",
            "0005",
            "5;ext=\"caf\u{e9}\"",
        ] {
            let input = format!("{size_line}\r\nhello\r\n0;last=1\r\n\r\n");
            let (data, _) =
                chunked(input.as_bytes()).unwrap_or_else(|error| panic!("{size_line:?}: {error}"));
            assert_eq!(data, b"hello", "{size_line:?}");
        }
    }

    #[test]
    fn rejects_bad_chunk_size_lines() {
        let cases: [(&[u8], &str); 19] = [
            (b"\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
            (b";a\r\n", "invalid chunk size"),
            (b"g\r\n", "invalid chunk size"),
            (b"-5\r\n", "invalid chunk size"),
            (b"+5\r\n", "invalid chunk size"),
            (b"0x5\r\n", "invalid chunk size"),
            (b"5\n", "invalid chunk size"),
            (b"5\rx", "bare CR in chunk size line"),
            (b"10000000000000000\r\n", "chunk size too large"),
            (b"00000000000000001\r\n", "chunk size too large"),
            (b"5 \r\n", "invalid chunk extension"),
            (b"5;\r\n", "invalid chunk extension"),
            (b"5;=b\r\n", "invalid chunk extension"),
            (b"5;a=\r\n", "invalid chunk extension"),
            (b"5;a=\"open\r\n", "invalid chunk extension"),
            (b"5;a=\"x\"y\r\n", "invalid chunk extension"),
            (b"5;a b\r\n", "invalid chunk extension"),
            (b"5;a=b c\r\n", "invalid chunk extension"),
            (b"5;a=\"\0\"\r\n", "invalid chunk extension"),
        ];
        for (input, reason) in cases {
            assert_eq!(
                chunked_error(input),
                CodecError::BadChunk(reason),
                "{input:?}"
            );
        }
        let mut long = b"5;a=\"".to_vec();
        long.extend_from_slice(&[b'x'; MAX_CHUNK_SIZE_LINE]);
        assert_eq!(
            chunked_error(&long),
            CodecError::BadChunk("chunk size line too long")
        );
        let mut just_fits = b"5;a=\"".to_vec();
        just_fits.resize(MAX_CHUNK_SIZE_LINE - 3, b'x');
        just_fits.extend_from_slice(b"\"\r\nhello\r\n0\r\n\r\n");
        assert_eq!(chunked(&just_fits).unwrap().0, b"hello");
    }

    #[test]
    fn requires_crlf_after_chunk_data() {
        for input in [
            &b"5\r\nhelloX\r\n0\r\n\r\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r0\r\n\r\n",
            b"5\r\nhello0\r\n\r\n",
        ] {
            assert_eq!(
                chunked_error(input),
                CodecError::BadChunk("missing CRLF after chunk data"),
                "{input:?}"
            );
        }
    }

    #[test]
    fn emits_trailers_before_the_end() {
        let input = b"3\r\nabc\r\n0\r\nExpires: never\r\nX-Sum:  1 2\t\r\nX-Empty:\r\n\r\nrest";
        for piece in 1..=input.len() {
            let (result, rest) = decode_in_pieces(BodyKind::Chunked, input, piece);
            let (data, trailers) = result.unwrap();
            assert_eq!(data, b"abc");
            assert_eq!(
                trailers.as_deref(),
                Some(&b"Expires: never\r\nX-Sum:  1 2\t\r\nX-Empty:\r\n"[..]),
                "pieces of {piece}"
            );
            assert!(b"rest".starts_with(&rest));
        }
    }

    #[test]
    fn rejects_bad_trailers() {
        for input in [
            &b"0\r\nNo-Colon\r\n\r\n"[..],
            b"0\r\n: value\r\n\r\n",
            b"0\r\nName : value\r\n\r\n",
            b"0\r\nA: 1\r\n folded\r\n\r\n",
            b"0\r\nA: 1\n\r\n",
            b"0\r\nA: 1\0\r\n\r\n",
            b"0\r\nA: 1\rB: 2\r\n\r\n",
        ] {
            assert_eq!(
                chunked_error(input),
                CodecError::BadChunk("invalid trailer field"),
                "{input:?}"
            );
        }
        assert_eq!(
            chunked_error(b"0\r\n\rX"),
            CodecError::BadChunk("bare CR after trailers")
        );
        assert_eq!(
            chunked_error(b"0\r\n\n"),
            CodecError::BadChunk("invalid trailer field")
        );
        let mut large = b"0\r\n".to_vec();
        while large.len() < MAX_TRAILER_SECTION + 100 {
            large.extend_from_slice(b"X-Padding: 0123456789abcdef\r\n");
        }
        large.extend_from_slice(b"\r\n");
        assert_eq!(
            chunked_error(&large),
            CodecError::BadChunk("trailer section too large")
        );
    }

    #[test]
    fn truncated_chunked_bodies_fail_at_eof() {
        for input in [
            &b""[..],
            b"5",
            b"5\r\nhel",
            b"5\r\nhello",
            b"5\r\nhello\r\n0\r\n",
            b"0\r\nA: 1\r\n",
        ] {
            assert_eq!(chunked(input), Err(CodecError::Truncated), "{input:?}");
        }
    }

    #[test]
    fn writes_chunk_framing() {
        let mut out = BytesMut::new();
        write_chunk_header(5, &mut out);
        out.extend_from_slice(b"hello");
        write_chunk_end(&mut out);
        write_chunk_header(0x1a2b, &mut out);
        write_chunk_header(usize::MAX, &mut out);
        write_last_chunk(None, &mut out);
        write_last_chunk(Some(b"X: 1\r\n"), &mut out);
        let expected = format!(
            "5\r\nhello\r\n1a2b\r\n{:x}\r\n0\r\n\r\n0\r\nX: 1\r\n\r\n",
            usize::MAX
        );
        assert_eq!(&out[..], expected.as_bytes());
    }

    #[test]
    fn encoded_bodies_decode_back() {
        let mut out = BytesMut::new();
        let pieces: [&[u8]; 3] = [b"first", &[b'x'; 300], b"\r\n0\r\n"];
        for piece in pieces {
            write_chunk_header(piece.len(), &mut out);
            out.extend_from_slice(piece);
            write_chunk_end(&mut out);
        }
        write_last_chunk(Some(b"Checksum: abc\r\n"), &mut out);
        let (data, trailers) = chunked(&out).unwrap();
        assert_eq!(data, pieces.concat());
        assert_eq!(trailers.as_deref(), Some(&b"Checksum: abc\r\n"[..]));
    }

    #[test]
    fn garbage_never_panics() {
        const ALPHABET: &[u8] = b"0123456789abcdefABCDEFgx \t;=\"\\\r\n:\0\x7f\xff-";
        let valid = b"a;x=1\r\n0123456789\r\n3;q=\"a\\\"b\"\r\nabc\r\n0\r\nT: v\r\n\r\n";
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let input: Vec<u8> = if round % 2 == 0 {
                let len = (next() % 120) as usize;
                (0..len)
                    .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                    .collect()
            } else {
                let mut mutated = valid.to_vec();
                let at = (next() % mutated.len() as u64) as usize;
                mutated[at] = ALPHABET[(next() % ALPHABET.len() as u64) as usize];
                mutated
            };
            let piece = 1 + (next() % 8) as usize;
            let (result, rest) = decode_in_pieces(BodyKind::Chunked, &input, piece);
            if let Ok((data, _)) = result {
                assert!(data.len() <= input.len());
                assert!(rest.len() <= input.len());
            }
        }
    }
}
