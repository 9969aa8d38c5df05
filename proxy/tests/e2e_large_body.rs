//! End to end: bodies far larger than any buffer stream through ringwall in bounded memory.
//! A 1 GiB request body goes up (Content-Length) and a 1 GiB response body comes down while the
//! proxy's resident set size is sampled; it must grow by less than 32 MiB. The origin generates
//! and discards the bytes without keeping them, and so does the client.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{get, Head, Next, Origin, Proxy, RssSampler};

/// The body size each way. With the debug binary each direction takes a few seconds here.
const SIZE: u64 = 1 << 30;
/// How much the proxy's RSS may grow while the bodies stream.
const RSS_BUDGET_KIB: u64 = 32 * 1024;
const BLOCK: usize = 256 * 1024;

fn origin() -> Origin {
    Origin::start(|req, conn| {
        if req.target == "/upload" {
            let received = conn.discard_body()?;
            conn.respond(200, &[], received.to_string().as_bytes())?;
        } else if let Some(size) = req.target.strip_prefix("/download/") {
            let size: u64 = size.parse().unwrap_or(0);
            conn.write(format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n").as_bytes())?;
            let block = vec![0x5au8; BLOCK];
            let mut left = size;
            while left > 0 {
                let n = usize::try_from(left).unwrap_or(BLOCK).min(BLOCK);
                conn.write(&block[..n])?;
                left -= n as u64;
            }
        } else {
            conn.respond(200, &[], b"ok")?;
        }
        Ok(Next::KeepAlive)
    })
}

fn upload(proxy: &Proxy, size: u64) {
    let mut client = proxy.client();
    client.send(format!(
        "POST /upload HTTP/1.1\r\nHost: big.test\r\nContent-Length: {size}\r\n\r\n"
    ));
    let block = vec![0xa5u8; BLOCK];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(BLOCK).min(BLOCK);
        client
            .wire
            .stream
            .write_all(&block[..n])
            .expect("upload through ringwall");
        left -= n as u64;
    }
    let response = client.read_response(false);
    assert_eq!(response.status, 200);
    assert_eq!(
        response.text(),
        size.to_string(),
        "bytes the origin received"
    );
}

fn download(proxy: &Proxy, size: u64) {
    let mut client = proxy.client();
    client.send(get(&format!("/download/{size}"), "big.test"));
    let raw = client
        .wire
        .read_head()
        .expect("response head")
        .expect("a response");
    let head = Head::parse(&raw).expect("head");
    assert!(head.start.starts_with("HTTP/1.1 200"), "{}", head.raw);
    assert_eq!(head.get("content-length"), Some(size.to_string().as_str()));
    let mut received = 0u64;
    let mut intact = true;
    client
        .wire
        .take(size, &mut |data| {
            received += data.len() as u64;
            intact &= data.iter().all(|&b| b == 0x5a);
        })
        .expect("download through ringwall");
    assert_eq!(received, size);
    assert!(intact, "the downloaded bytes were altered");
}

#[test]
fn a_gigabyte_each_way_streams_in_bounded_memory() {
    let origin = origin();
    let proxy = Proxy::start(&[origin.addr], &[]);
    // Warm up both workers' buffers and pools before the baseline is taken.
    for _ in 0..4 {
        assert_eq!(proxy.client().request(get("/", "big.test")).status, 200);
    }
    std::thread::sleep(Duration::from_millis(100));
    let baseline = proxy.rss_kib();
    let sampler = RssSampler::start(proxy.pid());

    let started = Instant::now();
    upload(&proxy, SIZE);
    let up = started.elapsed();
    let started = Instant::now();
    download(&proxy, SIZE);
    let down = started.elapsed();

    let after = proxy.rss_kib();
    let peak = sampler.peak_kib().max(after);
    drop(sampler);
    eprintln!(
        "{} MiB up in {up:?}, down in {down:?}; RSS baseline {baseline} KiB, peak {peak} KiB, \
         after {after} KiB",
        SIZE >> 20
    );
    assert!(
        peak.saturating_sub(baseline) < RSS_BUDGET_KIB,
        "RSS grew from {baseline} KiB to a peak of {peak} KiB while streaming"
    );
    assert!(
        after.saturating_sub(baseline) < RSS_BUDGET_KIB,
        "RSS grew from {baseline} KiB to {after} KiB after streaming"
    );
}
