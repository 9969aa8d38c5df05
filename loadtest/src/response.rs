//! The HTTP/1.1 response reader: a push parser that a connection feeds with whatever bytes a
//! read returned, and that says when a whole response (head and body) has gone by.
//!
//! [`ResponseReader::feed`] takes a slice, consumes a prefix of it and either finishes one
//! response ([`Response`]: status, keep-alive, sizes) or asks for more (having consumed all of
//! the slice). Bodies are never stored, only counted: the generator needs their end, not their
//! bytes. Framing follows RFC 9112 §6.3: no body for 1xx / 204 / 304 and for responses to HEAD;
//! `Transfer-Encoding: chunked` ([`ChunkedState`]); `Content-Length`; otherwise the body runs
//! until the server closes, which [`ResponseReader::finish_at_eof`] turns into a response.
//! Interim 1xx responses (`100 Continue`) are skipped. A head is parsed straight from the read
//! buffer; only a head split across reads is copied, into a small carry-over buffer.

use thiserror::Error;

/// Largest response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in a response head.
const MAX_HEADERS: usize = 64;

/// Why a response could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResponseError {
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid Content-Length")]
    ContentLength,
    #[error("malformed chunked body")]
    Chunked,
    #[error("connection closed before the response was complete")]
    Incomplete,
}

/// One complete response, as the generator counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// The final (non-1xx) status code.
    pub status: u16,
    /// Whether the connection may carry another request after this response.
    pub keep_alive: bool,
    /// Body bytes after de-chunking.
    pub body_len: u64,
}

/// Where the reader is inside the current response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Head,
    Length { remaining: u64 },
    Chunked(ChunkedState),
    UntilClose,
}

/// The chunked-body decoder's position (RFC 9112 §7.1). Chunk data is skipped, not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkedState {
    /// Reading the hex digits of a chunk size.
    Size { value: u64, digits: u32 },
    /// After the size: extensions or whitespace up to the line feed.
    SizeLine { value: u64 },
    /// Inside chunk data.
    Data { remaining: u64 },
    /// The CRLF after chunk data; `seen_cr` once the CR went by.
    DataEnd { seen_cr: bool },
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Saw CR at the start of a trailer line: the LF ends the body.
    TrailerCr,
    /// Inside a trailer field line.
    TrailerLine,
}

/// Outcome of one step of the chunked decoder.
enum ChunkStep {
    /// Consumed this many bytes; the body continues.
    More(usize),
    /// Consumed this many bytes; the body ended with them.
    Done(usize),
}

impl ChunkedState {
    const START: ChunkedState = ChunkedState::Size {
        value: 0,
        digits: 0,
    };

    /// Advances over `input`, adding de-chunked data bytes to `body_len`.
    fn advance(&mut self, input: &[u8], body_len: &mut u64) -> Result<ChunkStep, ResponseError> {
        let mut i = 0;
        while i < input.len() {
            match *self {
                ChunkedState::Data { remaining } => {
                    let take = remaining.min((input.len() - i) as u64);
                    i += take as usize;
                    *body_len += take;
                    *self = if remaining == take {
                        ChunkedState::DataEnd { seen_cr: false }
                    } else {
                        ChunkedState::Data {
                            remaining: remaining - take,
                        }
                    };
                }
                state => {
                    let b = input[i];
                    i += 1;
                    match (state, b) {
                        (ChunkedState::Size { value, digits }, _) if b.is_ascii_hexdigit() => {
                            if digits >= 15 {
                                return Err(ResponseError::Chunked);
                            }
                            let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                            *self = ChunkedState::Size {
                                value: value * 16 + digit,
                                digits: digits + 1,
                            };
                        }
                        (ChunkedState::Size { value, digits }, b';' | b' ' | b'\t' | b'\r')
                            if digits > 0 =>
                        {
                            *self = ChunkedState::SizeLine { value };
                        }
                        (ChunkedState::Size { value, digits }, b'\n') if digits > 0 => {
                            *self = Self::after_size(value);
                        }
                        (ChunkedState::SizeLine { value }, b'\n') => {
                            *self = Self::after_size(value);
                        }
                        (ChunkedState::SizeLine { .. }, _) => {}
                        (ChunkedState::DataEnd { seen_cr: false }, b'\r') => {
                            *self = ChunkedState::DataEnd { seen_cr: true };
                        }
                        (ChunkedState::DataEnd { .. }, b'\n') => *self = Self::START,
                        (ChunkedState::TrailerStart, b'\r') => *self = ChunkedState::TrailerCr,
                        (ChunkedState::TrailerStart | ChunkedState::TrailerCr, b'\n') => {
                            return Ok(ChunkStep::Done(i));
                        }
                        (ChunkedState::TrailerStart | ChunkedState::TrailerLine, _) => {
                            *self = if b == b'\n' {
                                ChunkedState::TrailerStart
                            } else {
                                ChunkedState::TrailerLine
                            };
                        }
                        _ => return Err(ResponseError::Chunked),
                    }
                }
            }
        }
        Ok(ChunkStep::More(i))
    }

    fn after_size(value: u64) -> ChunkedState {
        if value == 0 {
            ChunkedState::TrailerStart
        } else {
            ChunkedState::Data { remaining: value }
        }
    }
}

/// What the head says about the body and the connection.
#[derive(Clone, Copy)]
struct HeadInfo {
    status: u16,
    keep_alive: bool,
    body: State,
}

/// Reads responses off one connection, one after another.
#[derive(Debug)]
pub struct ResponseReader {
    state: State,
    /// The request this response answers was a HEAD: no body whatever the head says.
    head_request: bool,
    /// Bytes of a head that did not arrive in one read.
    carry: Vec<u8>,
    status: u16,
    keep_alive: bool,
    body_len: u64,
}

impl ResponseReader {
    /// A reader for responses to `HEAD` requests when `head_request`, else to any other method.
    pub fn new(head_request: bool) -> Self {
        ResponseReader {
            state: State::Head,
            head_request,
            carry: Vec::new(),
            status: 0,
            keep_alive: true,
            body_len: 0,
        }
    }

    /// Whether the reader is between responses (nothing of the next one has arrived).
    pub fn is_idle(&self) -> bool {
        self.state == State::Head && self.carry.is_empty()
    }

    /// Consumes a prefix of `input`. Returns the bytes consumed and the response if one ended
    /// within them; when no response ended, all of `input` was consumed.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Response>), ResponseError> {
        let mut used = 0;
        loop {
            match self.state {
                State::Head => {
                    let Some(head_used) = self.feed_head(&input[used..])? else {
                        return Ok((input.len(), None));
                    };
                    used += head_used;
                    // A body-less response ends with its head.
                    if let Some(done) = self.finish_if_no_body() {
                        return Ok((used, Some(done)));
                    }
                    if used == input.len() && self.state == State::Head {
                        return Ok((used, None));
                    }
                }
                State::Length { remaining } => {
                    let take = remaining.min((input.len() - used) as u64);
                    used += take as usize;
                    self.body_len += take;
                    if take == remaining {
                        return Ok((used, Some(self.complete())));
                    }
                    self.state = State::Length {
                        remaining: remaining - take,
                    };
                    return Ok((used, None));
                }
                State::Chunked(mut chunked) => {
                    let step = chunked.advance(&input[used..], &mut self.body_len)?;
                    self.state = State::Chunked(chunked);
                    return Ok(match step {
                        ChunkStep::Done(n) => (used + n, Some(self.complete())),
                        ChunkStep::More(n) => (used + n, None),
                    });
                }
                State::UntilClose => {
                    self.body_len += (input.len() - used) as u64;
                    return Ok((input.len(), None));
                }
            }
        }
    }

    /// The peer closed the connection: a close-delimited body ends here; anything else that was
    /// under way is cut short. `Ok(None)` when no response had begun.
    pub fn finish_at_eof(&mut self) -> Result<Option<Response>, ResponseError> {
        match self.state {
            State::UntilClose => Ok(Some(self.complete())),
            State::Head if self.carry.is_empty() => Ok(None),
            _ => Err(ResponseError::Incomplete),
        }
    }

    /// Parses a head from `input` (after any carried-over bytes). Returns the bytes of `input`
    /// that belonged to the head, or `None` when the head is still incomplete (all consumed).
    fn feed_head(&mut self, input: &[u8]) -> Result<Option<usize>, ResponseError> {
        if self.carry.is_empty() {
            if let Some((len, info)) = parse_head(input, self.head_request)? {
                self.begin(info);
                return Ok(Some(len));
            }
            if input.len() > MAX_HEAD {
                return Err(ResponseError::HeadTooLarge);
            }
            self.carry.extend_from_slice(input);
            Ok(None)
        } else {
            let before = self.carry.len();
            let take = input.len().min(MAX_HEAD + 1 - before.min(MAX_HEAD));
            self.carry.extend_from_slice(&input[..take]);
            match parse_head(&self.carry, self.head_request)? {
                Some((len, info)) => {
                    self.carry.clear();
                    self.begin(info);
                    Ok(Some(len - before))
                }
                None if self.carry.len() > MAX_HEAD => Err(ResponseError::HeadTooLarge),
                None => Ok(None),
            }
        }
    }

    fn begin(&mut self, info: HeadInfo) {
        self.status = info.status;
        self.keep_alive = info.keep_alive;
        self.body_len = 0;
        self.state = info.body;
    }

    /// After a head: a 1xx goes back to reading heads; a zero-length body completes at once.
    fn finish_if_no_body(&mut self) -> Option<Response> {
        match self.state {
            State::Length { remaining: 0 } => Some(self.complete()),
            _ => None,
        }
    }

    fn complete(&mut self) -> Response {
        self.state = State::Head;
        Response {
            status: self.status,
            keep_alive: self.keep_alive,
            body_len: self.body_len,
        }
    }
}

/// Parses one head. `Ok(None)` when incomplete. Interim 1xx heads come back with
/// `body: State::Head` so that the caller reads on to the final response.
fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<(usize, HeadInfo)>, ResponseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let len = match parsed.parse(buf).map_err(ResponseError::Head)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let status = parsed.code.unwrap_or(0);
    let http10 = parsed.version == Some(0);
    let mut keep_alive = !http10;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    for h in parsed.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or(ResponseError::ContentLength)?;
            if content_length.is_some_and(|c| c != v) {
                return Err(ResponseError::ContentLength);
            }
            content_length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked only counts as the final coding.
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    keep_alive = true;
                }
            }
        }
    }
    let body = if (100..200).contains(&status) && status != 101 {
        State::Head
    } else if head_request || status == 204 || status == 304 || status == 101 {
        State::Length { remaining: 0 }
    } else if chunked {
        State::Chunked(ChunkedState::START)
    } else if let Some(n) = content_length {
        State::Length { remaining: n }
    } else {
        keep_alive = false;
        State::UntilClose
    };
    Ok(Some((
        len,
        HeadInfo {
            status,
            keep_alive,
            body,
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns every response and the leftover count.
    fn feed_in_steps(reader: &mut ResponseReader, input: &[u8], step: usize) -> Vec<Response> {
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            let mut off = 0;
            while off < piece.len() {
                let (used, done) = reader.feed(&piece[off..]).expect("valid response");
                off += used;
                match done {
                    Some(r) => out.push(r),
                    None => assert_eq!(off, piece.len(), "no response yet must consume all"),
                }
            }
        }
        out
    }

    fn every_split(input: &[u8], expected: &[Response]) {
        for step in 1..=input.len() {
            let mut reader = ResponseReader::new(false);
            assert_eq!(
                feed_in_steps(&mut reader, input, step),
                expected,
                "step {step}"
            );
            assert!(reader.is_idle());
        }
    }

    #[test]
    fn content_length_responses_back_to_back() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello world\nHTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        every_split(
            input,
            &[
                Response {
                    status: 200,
                    keep_alive: true,
                    body_len: 12,
                },
                Response {
                    status: 404,
                    keep_alive: true,
                    body_len: 0,
                },
            ],
        );
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\nHTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n";
        every_split(
            input,
            &[
                Response {
                    status: 200,
                    keep_alive: true,
                    body_len: 15,
                },
                Response {
                    status: 500,
                    keep_alive: false,
                    body_len: 0,
                },
            ],
        );
    }

    #[test]
    fn close_delimited_body_ends_at_eof() {
        let mut reader = ResponseReader::new(false);
        let (used, done) = reader.feed(b"HTTP/1.0 200 OK\r\n\r\nsome bytes").unwrap();
        assert_eq!((used, done), (29, None));
        assert_eq!(
            reader.finish_at_eof(),
            Ok(Some(Response {
                status: 200,
                keep_alive: false,
                body_len: 10,
            }))
        );
    }

    #[test]
    fn http10_keep_alive_and_interim_responses() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok";
        every_split(
            input,
            &[Response {
                status: 200,
                keep_alive: true,
                body_len: 2,
            }],
        );
    }

    #[test]
    fn no_body_for_head_204_304() {
        let mut reader = ResponseReader::new(true);
        let r = feed_in_steps(
            &mut reader,
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
            7,
        );
        assert_eq!(r[0].body_len, 0);
        every_split(
            b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
            &[
                Response {
                    status: 204,
                    keep_alive: true,
                    body_len: 0,
                },
                Response {
                    status: 304,
                    keep_alive: true,
                    body_len: 0,
                },
            ],
        );
    }

    #[test]
    fn errors() {
        let mut r = ResponseReader::new(false);
        assert!(matches!(
            r.feed(b"HTTP/1.1 2x0 OK\r\n\r\n"),
            Err(ResponseError::Head(_))
        ));
        let mut r = ResponseReader::new(false);
        assert_eq!(
            r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(ResponseError::ContentLength)
        );
        let mut r = ResponseReader::new(false);
        assert_eq!(
            r.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Err(ResponseError::Chunked)
        );
        let mut r = ResponseReader::new(false);
        r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .unwrap();
        assert_eq!(r.finish_at_eof(), Err(ResponseError::Incomplete));
        let mut r = ResponseReader::new(false);
        assert_eq!(r.finish_at_eof(), Ok(None));
        let mut r = ResponseReader::new(false);
        let big = vec![b'a'; MAX_HEAD + 10];
        r.feed(b"HTTP/1.1 200 OK\r\nX: ").unwrap();
        assert_eq!(r.feed(&big), Err(ResponseError::HeadTooLarge));
    }
}
