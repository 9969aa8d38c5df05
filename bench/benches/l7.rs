//! Benchmarks of the request path's decisions (`ringwall::l7`): finding the route of a request
//! in a table of twenty, and picking the next server of an upstream group round robin.
//!
//! The route queries are built from parsed request heads exactly as the `route` phase builds
//! them (host with its port stripped by the table, path, method, header lookup by name), so a
//! header condition costs what it costs in the proxy: a scan of the head's fields.
//! `Upstreams::new` only allocates, so it is built here without an I/O runtime.

use std::hint::black_box;
use std::rc::Rc;

use criterion::{criterion_group, criterion_main, Criterion};
use ringwall::l7::{TcpDialer, Upstreams};
use ringwall_bench::{
    find_route, request_head, route_table, upstream_config, ROUTE_BY_HEADER, ROUTE_EARLY,
    ROUTE_LATE, ROUTE_NONE,
};

fn route_match(c: &mut Criterion) {
    let table = route_table();
    let mut group = c.benchmark_group("route_match");
    for (name, request) in [
        ("early", ROUTE_EARLY),
        ("by_header", ROUTE_BY_HEADER),
        ("late", ROUTE_LATE),
        ("none", ROUTE_NONE),
    ] {
        let head = request_head(request);
        group.bench_function(name, |b| {
            b.iter(|| find_route(&table, black_box(&head)).map(|route| route.name.len()));
        });
    }
    group.finish();
}

fn upstream_pick(c: &mut Criterion) {
    let upstreams = Upstreams::new(
        &upstream_config(),
        0,
        TcpDialer::default(),
        Rc::default(),
        &ringwall::metrics::WorkerMetrics::default(),
    );
    let mut group = c.benchmark_group("upstream_pick");
    let now = std::time::Instant::now();
    group.bench_function("round_robin_8", |b| {
        b.iter(|| upstreams.pick(black_box(0), None, now));
    });
    group.finish();
}

criterion_group!(benches, route_match, upstream_pick);
criterion_main!(benches);
