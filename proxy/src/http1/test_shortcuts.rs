//! Shortcuts the head tests of every module share; built for tests only.
//!
//! Each takes the raw bytes of one head, parses it with the default [`HeadLimits`] and returns what
//! the test expects, panicking with what came instead: [`complete_request`] and
//! [`complete_response`] a head, [`request_error`] and [`response_error`] a [`CodecError`];
//! [`request`] and [`response_to`] return the parser's result as it is. [`with_field`] builds a
//! `POST` request around one field line, and [`forwardable_names`] lists the fields a request would
//! forward.

use bytes::BytesMut;

use super::error::CodecError;
use super::head::HeadLimits;
use super::request::{parse_request, Method, RequestHead};
use super::response::{parse_response, ResponseHead};

pub(super) fn request(input: &[u8]) -> Result<Option<RequestHead>, CodecError> {
    parse_request(&mut BytesMut::from(input), &HeadLimits::default())
}

pub(super) fn complete_request(input: &[u8]) -> RequestHead {
    match request(input) {
        Ok(Some(head)) => head,
        other => panic!("expected a request head, got {other:?}"),
    }
}

pub(super) fn request_error(input: &[u8]) -> CodecError {
    match request(input) {
        Err(error) => error,
        other => panic!("expected an error, got {other:?}"),
    }
}

pub(super) fn response_to(
    method: Method,
    input: &[u8],
) -> Result<Option<ResponseHead>, CodecError> {
    parse_response(&mut BytesMut::from(input), &HeadLimits::default(), method)
}

pub(super) fn complete_response(method: Method, input: &[u8]) -> ResponseHead {
    match response_to(method, input) {
        Ok(Some(head)) => head,
        other => panic!("expected a response head, got {other:?}"),
    }
}

pub(super) fn response_error(input: &[u8]) -> CodecError {
    match response_to(Method::Get, input) {
        Err(error) => error,
        other => panic!("expected an error, got {other:?}"),
    }
}

pub(super) fn with_field(field: &str) -> Vec<u8> {
    format!("POST /upload HTTP/1.1\r\nHost: example.com\r\n{field}\r\n\r\n").into_bytes()
}

pub(super) fn forwardable_names(head: &RequestHead) -> Vec<String> {
    head.forwardable_fields()
        .map(|(name, _)| String::from_utf8_lossy(name).into_owned())
        .collect()
}
