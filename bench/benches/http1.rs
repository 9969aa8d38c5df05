//! Benchmarks of the HTTP/1 codec (`ringwall::http1`): request-head and response-head parsing,
//! and chunked body decoding, each reported as bytes of input per second.
//!
//! Every iteration starts from a fresh `BytesMut` holding exactly the input, as a connection
//! buffer holds it after a read; building that buffer is set-up and not timed, and neither is
//! dropping the parsed head (criterion drops batched outputs after the clock stops). What is
//! timed is the call the request path makes: `parse_request` / `parse_response` splitting the
//! head off the buffer, or `BodyDecoder::decode` run to the body's end.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ringwall::http1::{parse_request, parse_response, HeadLimits, Method};
use ringwall_bench::{
    chunked_body, decode_body, many_fields_get, BROWSER_GET, CURL_GET, ORIGIN_RESPONSE, TRAILERS,
};

fn request_head(c: &mut Criterion) {
    let limits = HeadLimits::default();
    let many_fields = many_fields_get();
    let mut group = c.benchmark_group("request_head");
    for (name, input) in [
        ("curl_get", CURL_GET),
        ("browser_get", BROWSER_GET),
        ("40_fields", &many_fields[..]),
    ] {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || BytesMut::from(input),
                |mut buf| parse_request(black_box(&mut buf), &limits),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn response_head(c: &mut Criterion) {
    let limits = HeadLimits::default();
    let mut group = c.benchmark_group("response_head");
    group.throughput(Throughput::Bytes(ORIGIN_RESPONSE.len() as u64));
    group.bench_function("origin_200", |b| {
        b.iter_batched(
            || BytesMut::from(ORIGIN_RESPONSE),
            |mut buf| parse_response(black_box(&mut buf), &limits, Method::Get),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn chunked_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunked_decode");
    for (name, chunk_len) in [("64KiB_in_1KiB_chunks", 1024), ("64KiB_in_16B_chunks", 16)] {
        let wire = chunked_body(64 * 1024, chunk_len, TRAILERS);
        // Bytes on the wire (framing and trailers included): what the decoder walks through.
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || BytesMut::from(&wire[..]),
                |mut buf| decode_body(black_box(&mut buf)),
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, request_head, response_head, chunked_decode);
criterion_main!(benches);
