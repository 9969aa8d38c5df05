//! The field pass both roles share, and the field values that decide framing and the connection.
//!
//! [`index_fields`] takes the exact head bytes and the field lines `httparse` found in them. It
//! checks that every line ends in CRLF ([`expect_crlf`], which the start lines use too); reads
//! `Content-Length` ([`parse_content_length`]), `Transfer-Encoding` ([`read_transfer_codings`]),
//! `Connection` ([`read_connection`]), `Upgrade` and, for requests, `Host` and `Expect`; and marks
//! which fields a proxy may forward: not the hop-by-hop ones ([`is_hop_by_hop`], this module's one
//! public item), not those `Connection` names ([`drop_connection_options`]), not the framing
//! fields. Ambiguous framing is refused here, before either role looks at the head.
//!
//! Out come the [`FieldLine`] spans, which a parsed head keeps with its frozen bytes in an
//! [`IndexedHead`] to answer field look-ups, and a [`FieldSummary`] from which modules `request`
//! and `response` derive the body kind, keep-alive and upgrade.

use bytes::Bytes;
use httparse::Header;

use super::chars::{is_token_byte, Span};
use super::error::CodecError;
use super::head::{Role, Version};
use super::target::is_valid_authority;

/// Is `name` a hop-by-hop field that a proxy never forwards, whatever `Connection` says?
/// Case-insensitive.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    match name.len() {
        2 => name.eq_ignore_ascii_case(b"te"),
        7 => name.eq_ignore_ascii_case(b"upgrade") || name.eq_ignore_ascii_case(b"trailer"),
        10 => name.eq_ignore_ascii_case(b"connection") || name.eq_ignore_ascii_case(b"keep-alive"),
        16 => name.eq_ignore_ascii_case(b"proxy-connection"),
        17 => name.eq_ignore_ascii_case(b"transfer-encoding"),
        _ => false,
    }
}

/// One field line: where its name and value are, and whether a proxy may forward it.
#[derive(Clone, Copy, Debug)]
pub(super) struct FieldLine {
    name: Span,
    value: Span,
    forwardable: bool,
}

/// The frozen head bytes and the index of its field lines; shared by both roles.
#[derive(Clone, Debug)]
pub(super) struct IndexedHead {
    pub(super) bytes: Bytes,
    pub(super) fields: Vec<FieldLine>,
}

impl IndexedHead {
    pub(super) fn slice(&self, span: Span) -> &[u8] {
        span.get(&self.bytes)
    }

    pub(super) fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .map(|line| (self.slice(line.name), self.slice(line.value)))
    }

    pub(super) fn field_at(&self, index: usize) -> Option<(&[u8], &[u8])> {
        self.fields
            .get(index)
            .map(|line| (self.slice(line.name), self.slice(line.value)))
    }

    pub(super) fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|line| {
                line.name.len() == name.len()
                    && self.slice(line.name).eq_ignore_ascii_case(name.as_bytes())
            })
            .map(|line| self.slice(line.value))
    }

    pub(super) fn forwardable_fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .filter(|line| line.forwardable)
            .map(|line| (self.slice(line.name), self.slice(line.value)))
    }
}

/// What the field lines say about framing, the connection and (for requests) `Host`/`Expect`.
#[derive(Debug, Default)]
pub(super) struct FieldSummary {
    pub(super) content_length: Option<u64>,
    pub(super) chunked: bool,
    close: bool,
    keep_alive: bool,
    pub(super) host: Option<Span>,
    pub(super) expect_continue: bool,
    /// A `Transfer-Encoding` field was present.
    transfer_encoding: bool,
    /// The last transfer-coding seen so far is `chunked`.
    chunked_last: bool,
    /// A transfer-coding other than `chunked` was named.
    unknown_coding: bool,
    /// `Connection` carries the `upgrade` option.
    connection_upgrade: bool,
    /// The `Upgrade` field's value (RFC 9110 §7.8).
    upgrade: Option<Span>,
}

impl FieldSummary {
    /// HTTP/1.1 connections persist unless closed; HTTP/1.0 ones only when asked to.
    pub(super) fn persistent(&self, version: Version) -> bool {
        !self.close && (version == Version::Http11 || self.keep_alive)
    }

    /// The protocols named by `Upgrade` when `Connection` also says `upgrade`; HTTP/1.0
    /// upgrades are ignored (RFC 9110 §7.8).
    pub(super) fn upgrade(&self, version: Version) -> Option<Span> {
        self.upgrade
            .filter(|span| self.connection_upgrade && version == Version::Http11 && span.len() > 0)
    }
}

/// The field pass shared by both roles: records the spans, checks each line ends in CRLF,
/// reads the framing, `Connection` and (requests) `Host`/`Expect` fields, and decides which
/// fields may be forwarded. `head` is exactly the head (its last bytes are the final CRLF).
pub(super) fn index_fields(
    head: &[u8],
    headers: &[Header<'_>],
    role: Role,
    version: Version,
) -> Result<(Vec<FieldLine>, FieldSummary), CodecError> {
    let mut fields = Vec::with_capacity(headers.len());
    let mut summary = FieldSummary::default();
    let mut connection_names_fields = false;
    for header in headers {
        let name = header.name.as_bytes();
        let value = header.value;
        let value_span = Span::of(head, value);
        // httparse trimmed trailing whitespace from the value; the line must go on with CRLF.
        let mut line_end = value_span.end as usize;
        while matches!(head.get(line_end), Some(b' ' | b'\t')) {
            line_end += 1;
        }
        expect_crlf(head, line_end)?;

        let mut forwardable = !is_hop_by_hop(name);
        match name.len() {
            4 if role == Role::Request && name.eq_ignore_ascii_case(b"host") => {
                if summary.host.is_some() {
                    return Err(CodecError::Malformed("duplicate Host"));
                }
                if !is_valid_authority(value, false) {
                    return Err(CodecError::Malformed("invalid Host"));
                }
                summary.host = Some(value_span);
            }
            6 if role == Role::Request && name.eq_ignore_ascii_case(b"expect") => {
                forwardable = false;
                if !value.eq_ignore_ascii_case(b"100-continue") {
                    return Err(CodecError::ExpectationFailed);
                }
                // RFC 9110 §10.1.1: a 100-continue expectation on HTTP/1.0 is ignored.
                summary.expect_continue = version == Version::Http11;
            }
            7 if name.eq_ignore_ascii_case(b"upgrade") && summary.upgrade.is_none() => {
                summary.upgrade = Some(value_span);
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                connection_names_fields |= read_connection(value, &mut summary)?;
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                forwardable = false;
                let length = parse_content_length(value)?;
                if summary.content_length.is_some_and(|seen| seen != length) {
                    return Err(CodecError::BadFraming("conflicting Content-Length"));
                }
                summary.content_length = Some(length);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                if version == Version::Http10 {
                    return Err(CodecError::BadFraming("Transfer-Encoding on HTTP/1.0"));
                }
                read_transfer_codings(value, &mut summary)?;
            }
            _ => {}
        }
        fields.push(FieldLine {
            name: Span::of(head, name),
            value: value_span,
            forwardable,
        });
    }
    if summary.transfer_encoding {
        // RFC 9112 §6.3: unless chunked is the final coding the length is unknown (400);
        // §6.1: a coding we do not implement before it is 501 Not Implemented.
        if !summary.chunked_last {
            return Err(CodecError::BadFraming(
                "chunked is not the final transfer-coding",
            ));
        }
        if summary.unknown_coding {
            return Err(CodecError::UnsupportedCoding);
        }
    }
    if summary.chunked && summary.content_length.is_some() {
        return Err(CodecError::BadFraming(
            "Content-Length with Transfer-Encoding",
        ));
    }
    // The start line and every field line ended in CRLF; so must the final empty line.
    expect_crlf(head, head.len().saturating_sub(2))?;
    if connection_names_fields {
        drop_connection_options(head, headers, &mut fields);
    }
    Ok((fields, summary))
}

/// `httparse` accepts a bare LF as a line ending; RFC 9112 only allows that as leniency, and a
/// proxy must not be lenient where the server behind it may not be.
pub(super) fn expect_crlf(head: &[u8], at: usize) -> Result<(), CodecError> {
    if head.get(at..at + 2) == Some(b"\r\n".as_slice()) {
        Ok(())
    } else {
        Err(CodecError::Malformed("bare LF"))
    }
}

/// Reads one `Transfer-Encoding` value into `summary`: which codings, in which order. The
/// verdict on the whole list waits until every field line has been read.
fn read_transfer_codings(value: &[u8], summary: &mut FieldSummary) -> Result<(), CodecError> {
    summary.transfer_encoding = true;
    for coding in value.split(|&b| b == b',') {
        let coding = coding.trim_ascii();
        if coding.is_empty() {
            return Err(CodecError::BadFraming("empty transfer-coding"));
        }
        if coding.eq_ignore_ascii_case(b"chunked") {
            if summary.chunked {
                return Err(CodecError::BadFraming("chunked applied twice"));
            }
            summary.chunked = true;
            summary.chunked_last = true;
        } else {
            summary.unknown_coding = true;
            summary.chunked_last = false;
        }
    }
    Ok(())
}

/// Reads one `Connection` value into `summary`; true when it names fields beyond the static
/// hop-by-hop list (RFC 9110 §7.6.1), which then must not be forwarded.
fn read_connection(value: &[u8], summary: &mut FieldSummary) -> Result<bool, CodecError> {
    let mut names_fields = false;
    for option in value.split(|&b| b == b',') {
        let option = option.trim_ascii();
        if option.is_empty() {
            // RFC 9110 §5.6.1: empty list elements are ignored.
            continue;
        }
        if !option.iter().all(|&b| is_token_byte(b)) {
            return Err(CodecError::Malformed("invalid Connection"));
        }
        if option.eq_ignore_ascii_case(b"close") {
            summary.close = true;
        } else if option.eq_ignore_ascii_case(b"keep-alive") {
            summary.keep_alive = true;
        } else if option.eq_ignore_ascii_case(b"upgrade") {
            summary.connection_upgrade = true;
        } else if !is_hop_by_hop(option) {
            names_fields = true;
        }
    }
    Ok(names_fields)
}

/// Marks every field named by a `Connection` option as not forwardable. Rare (most
/// `Connection` values are `close` or `keep-alive`), so it re-reads the values instead of
/// collecting the options into an allocation.
fn drop_connection_options(head: &[u8], headers: &[Header<'_>], fields: &mut [FieldLine]) {
    for field in fields.iter_mut().filter(|field| field.forwardable) {
        let name = field.name.get(head);
        let named = headers
            .iter()
            .filter(|header| header.name.eq_ignore_ascii_case("connection"))
            .flat_map(|header| header.value.split(|&b| b == b','))
            .any(|option| option.trim_ascii().eq_ignore_ascii_case(name));
        if named {
            field.forwardable = false;
        }
    }
}

/// `Content-Length` (RFC 9110 §8.6): digits only, overflow-checked; a comma list is accepted
/// only when every element is the same number.
fn parse_content_length(value: &[u8]) -> Result<u64, CodecError> {
    let mut agreed = None;
    for element in value.split(|&b| b == b',') {
        let digits = element.trim_ascii();
        if digits.is_empty() {
            return Err(CodecError::BadFraming("empty Content-Length"));
        }
        let mut length: u64 = 0;
        for &digit in digits {
            if !digit.is_ascii_digit() {
                return Err(CodecError::BadFraming("invalid Content-Length"));
            }
            length = length
                .checked_mul(10)
                .and_then(|length| length.checked_add(u64::from(digit - b'0')))
                .ok_or(CodecError::BadFraming("Content-Length overflow"))?;
        }
        if agreed.is_some_and(|seen| seen != length) {
            return Err(CodecError::BadFraming("conflicting Content-Length"));
        }
        agreed = Some(length);
    }
    agreed.ok_or(CodecError::BadFraming("empty Content-Length"))
}

#[cfg(test)]
mod tests;
