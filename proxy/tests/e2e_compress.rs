//! Compression on the fly, end to end: real clients (curl with `--compressed`, Python's
//! `brotli` and `zstandard`) decode every encoding back to the origin's bytes; a streaming
//! response arrives piece by piece; and what must be left alone is.

mod common;

use std::io::Write as _;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::need;
use common::{Client, Origin, Proxy, TempFile};

/// A 64 KiB JSON document, the same every time.
fn json_body() -> Vec<u8> {
    let mut out = b"[".to_vec();
    let mut i = 0;
    while out.len() < 64 * 1024 {
        if i > 0 {
            out.push(b',');
        }
        write!(
            out,
            "{{\"id\":{i},\"name\":\"item {i}\",\"tags\":[\"a\",\"b\"],\"price\":{}.{:02}}}",
            i * 7 % 1000,
            i % 100
        )
        .unwrap();
        i += 1;
    }
    out.push(b']');
    out
}

/// An origin answering every path with `body`, typed and tagged as `/png`, `/encoded`,
/// `/no-transform`, `/small`, `/range` and the rest ask.
fn origin() -> Origin {
    Origin::start(|req, conn| {
        let body = json_body();
        let path = req.target.as_str();
        let (status, mut fields): (u16, Vec<(&str, &str)>) = match path {
            "/png" => (200, vec![("Content-Type", "image/png")]),
            "/encoded" => (
                200,
                vec![
                    ("Content-Type", "application/json"),
                    ("Content-Encoding", "gzip"),
                ],
            ),
            "/no-transform" => (
                200,
                vec![
                    ("Content-Type", "application/json"),
                    ("Cache-Control", "public, no-transform"),
                ],
            ),
            "/range" => (
                206,
                vec![
                    ("Content-Type", "application/json"),
                    ("Content-Range", "bytes 0-99/65536"),
                ],
            ),
            _ => (
                200,
                vec![("Content-Type", "application/json; charset=utf-8")],
            ),
        };
        fields.push(("ETag", "\"v1\""));
        fields.push(("Accept-Ranges", "bytes"));
        let body: &[u8] = match path {
            "/small" | "/range" => &body[..100],
            "/medium" => &body[..500],
            _ => &body,
        };
        conn.respond(status, &fields, body)?;
        Ok(common::Next::KeepAlive)
    })
}

fn get(proxy: &Proxy, path: &str, accept: Option<&str>) -> common::Response {
    let accept = accept.map_or(String::new(), |a| format!("Accept-Encoding: {a}\r\n"));
    proxy.client().request(format!(
        "GET {path} HTTP/1.1\r\nHost: a\r\n{accept}Connection: close\r\n\r\n"
    ))
}

/// Decodes `bytes` with Python's `brotli` or `zstandard` module.
fn python_decode(module: &str, bytes: &[u8]) -> Vec<u8> {
    need("python3");
    let file = TempFile::new(&format!("body.{module}"), "");
    std::fs::write(&file.path, bytes).unwrap();
    let code = match module {
        "brotli" => "import sys, brotli; data = open(sys.argv[1], 'rb').read(); \
                     sys.stdout.buffer.write(brotli.decompress(data))",
        _ => "import sys, zstandard; data = open(sys.argv[1], 'rb').read(); \
              sys.stdout.buffer.write(zstandard.ZstdDecompressor().decompressobj().decompress(data))",
    };
    let out = Command::new("python3")
        .args(["-c", code, &file.display()])
        .output()
        .expect("run python3");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("ModuleNotFoundError"),
        "this test needs Python's {module} module: python3 -m pip install brotli zstandard \
         (.ci/run installs it): {err}"
    );
    assert!(out.status.success(), "python3 could not decode: {err}");
    out.stdout
}

#[test]
fn every_encoding_decodes_back_to_the_origins_bytes() {
    need("curl");
    let origin = origin();
    let proxy = Proxy::start(&[origin.addr], &["--compress", "gzip,br,zstd"]);
    let expected = json_body();

    // curl asks for gzip and decodes it itself.
    let headers = TempFile::new("curl-headers", "");
    let out = Command::new("curl")
        .args(["-sS", "--compressed", "-H", "Accept-Encoding: gzip", "-D"])
        .arg(&headers.path)
        .arg(proxy.url("/doc"))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, expected, "curl decoded other bytes");
    let seen = std::fs::read_to_string(&headers.path)
        .unwrap()
        .to_lowercase();
    assert!(seen.contains("content-encoding: gzip"), "{seen}");
    assert!(seen.contains("vary: accept-encoding"), "{seen}");
    assert!(seen.contains("etag: w/\"v1\""), "{seen}");
    assert!(!seen.contains("accept-ranges"), "{seen}");
    assert!(!seen.contains("content-length"), "{seen}");

    for (token, module) in [("br", "brotli"), ("zstd", "zstandard")] {
        let response = get(&proxy, "/doc", Some(&format!("gzip;q=0.5, {token}")));
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-encoding"), Some(token));
        assert!(
            response.body.len() * 4 < expected.len(),
            "{token}: {} bytes",
            response.body.len()
        );
        assert_eq!(
            python_decode(module, &response.body),
            expected,
            "{token} decoded to other bytes"
        );
    }

    // Several equal: the order of --compress decides.
    let response = get(&proxy, "/doc", Some("zstd, br, gzip"));
    assert_eq!(response.header("content-encoding"), Some("gzip"));
}

#[test]
fn a_streaming_response_arrives_piece_by_piece() {
    let released = Arc::new(AtomicBool::new(false));
    let release = released.clone();
    let origin = Origin::start(move |_req, conn| {
        conn.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        )?;
        let first = b"data: the first event, which must not wait for the second\n\n";
        conn.write(format!("{:x}\r\n", first.len()).as_bytes())?;
        conn.write(first)?;
        conn.write(b"\r\n")?;
        // The second waits until the client has seen the first (or 10 s).
        common::wait_until(Duration::from_secs(10), || released.load(Ordering::SeqCst));
        let second = b"data: the second event\n\n";
        conn.write(
            format!(
                "{:x}\r\n{}\r\n0\r\n\r\n",
                second.len(),
                String::from_utf8_lossy(second)
            )
            .as_bytes(),
        )?;
        Ok(common::Next::Close)
    });
    let proxy = Proxy::start(
        &[origin.addr],
        &["--compress", "gzip", "--compress-min-size", "1"],
    );
    let mut client = Client::connect(proxy.addr);
    client.send("GET /events HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n");
    let head = client
        .read_head_within(Duration::from_secs(5))
        .expect("the head arrives before the origin ends");
    assert_eq!(head.get("content-encoding"), Some("gzip"));
    assert!(head.has_token("transfer-encoding", "chunked"));
    // The first chunk, read while the origin still holds the second.
    let size = client.wire.read_line().unwrap();
    let size = usize::from_str_radix(String::from_utf8_lossy(&size).trim(), 16).unwrap();
    let mut piece = Vec::new();
    client
        .wire
        .take(size as u64, &mut |d| piece.extend_from_slice(d))
        .unwrap();
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    decoder.write_all(&piece).unwrap();
    decoder.flush().unwrap();
    assert_eq!(
        decoder.get_ref().as_slice(),
        b"data: the first event, which must not wait for the second\n\n"
    );
    release.store(true, Ordering::SeqCst);
    // The rest decodes to the second event, and the stream ends.
    assert!(
        client.wire.read_line().unwrap().is_empty(),
        "a chunk ends in CRLF"
    );
    let mut rest = Vec::new();
    client
        .wire
        .take_chunked(&mut |d| rest.extend_from_slice(d))
        .unwrap();
    decoder.write_all(&rest).unwrap();
    let all = decoder.finish().unwrap();
    assert!(all.ends_with(b"data: the second event\n\n"), "{all:?}");
}

#[test]
fn what_must_not_be_compressed_is_left_alone() {
    let origin = origin();
    let toml = format!(
        "[compression]\nencodings = [\"gzip\"]\n\n\
         [[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
         [[route]]\nname = \"plain\"\npath_prefix = \"/plain/\"\nupstream = \"app\"\ncompress = false\n\n\
         [[route]]\nupstream = \"app\"\nstrip_prefix = \"/x\"\n",
        origin.addr
    );
    let proxy = Proxy::with_config(&toml, &[]);
    let body = json_body();

    // Compressible, but the client asks for nothing (or refuses gzip): as it is, with Vary.
    for accept in [None, Some("identity"), Some("gzip;q=0"), Some("deflate")] {
        let response = get(&proxy, "/doc", accept);
        assert_eq!(response.header("content-encoding"), None, "{accept:?}");
        assert_eq!(
            response.header("content-length"),
            Some(body.len().to_string().as_str()),
            "{accept:?}"
        );
        assert_eq!(response.header("etag"), Some("\"v1\""), "{accept:?}");
        assert_eq!(
            response.header("vary"),
            Some("Accept-Encoding"),
            "{accept:?}"
        );
        assert_eq!(response.body, body);
    }
    // Not compressible, or must not be touched: as it is, and no Vary either.
    for path in [
        "/png",
        "/encoded",
        "/no-transform",
        "/small",
        "/range",
        "/plain/doc",
    ] {
        let response = get(&proxy, path, Some("gzip"));
        let expected_encoding = (path == "/encoded").then_some("gzip");
        assert_eq!(
            response.header("content-encoding"),
            expected_encoding,
            "{path}"
        );
        assert_eq!(response.header("vary"), None, "{path}");
        assert_eq!(response.header("etag"), Some("\"v1\""), "{path}");
        assert!(response.header("content-length").is_some(), "{path}");
    }
    // HEAD gets the head GET would get: compressed, so no length.
    let response = proxy.client().request(
        "HEAD /doc HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-encoding"), Some("gzip"));
    assert_eq!(response.header("content-length"), None);
    assert!(response.body.is_empty());

    // --compress-min-size: 500 bytes pass under 1000, and are compressed over 256.
    let response = get(&proxy, "/medium", Some("gzip"));
    assert_eq!(response.header("content-encoding"), Some("gzip"));
    let small = Proxy::start(
        &[origin.addr],
        &["--compress", "gzip", "--compress-min-size", "1000"],
    );
    let response = get(&small, "/medium", Some("gzip"));
    assert_eq!(response.header("content-encoding"), None);
    assert_eq!(response.header("content-length"), Some("500"));
}

#[test]
fn bad_compression_settings_are_refused_with_their_field() {
    let cases = [
        (
            "[compression]\nencodings = [\"gzip\", \"lzma\"]\n",
            "compression.encodings[1]",
            "lzma",
        ),
        (
            "[compression]\nencodings = [\"br\", \"brotli\"]\n",
            "compression.encodings[1]",
            "twice",
        ),
        (
            "[compression]\nencodings = [\"gzip\"]\ngzip_level = 10\n",
            "compression.gzip_level",
            "between 1 and 9",
        ),
        (
            "[compression]\nencodings = [\"gzip\"]\ntypes = [\"json\"]\n",
            "compression.types[0]",
            "media type",
        ),
        (
            "[[route]]\nupstream = \"app\"\ncompress = true\n",
            "route[0].compress",
            "nothing to compress",
        ),
    ];
    for (body, field, message) in cases {
        let toml = format!(
            "[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:1\"]\n\n{body}\
             {}",
            if body.contains("[[route]]") {
                ""
            } else {
                "[[route]]\nupstream = \"app\"\n"
            }
        );
        let file = TempFile::new("compress.toml", &toml);
        let run = common::run_ringwall(&["check", "--config", &file.display()]);
        assert!(!run.status.success(), "{toml}");
        assert!(run.stderr.contains(field), "{field}: {}", run.stderr);
        assert!(run.stderr.contains(message), "{message}: {}", run.stderr);
        assert!(run.stderr.contains("compress.toml:"), "{}", run.stderr);
    }
    let run = common::run_ringwall(&[
        "check",
        "--upstream",
        "127.0.0.1:1",
        "--compress-min-size",
        "10",
    ]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("--compress-min-size"), "{}", run.stderr);
    let run = common::run_ringwall(&[
        "check",
        "--upstream",
        "127.0.0.1:1",
        "--compress",
        "gzip,xz",
    ]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("--compress"), "{}", run.stderr);
}

#[test]
fn cached_responses_keep_one_compressed_variant_per_encoding() {
    let origin = Origin::start(|_req, conn| {
        conn.respond(
            200,
            &[
                ("Content-Type", "application/json"),
                ("Cache-Control", "max-age=60"),
            ],
            &json_body(),
        )?;
        Ok(common::Next::KeepAlive)
    });
    let proxy = Proxy::start(
        &[origin.addr],
        &[
            "--compress",
            "gzip,br",
            "--cache",
            "16MiB",
            "--workers",
            "1",
        ],
    );
    let expected = json_body();
    let miss = get(&proxy, "/doc", Some("gzip"));
    assert_eq!(miss.header("content-encoding"), Some("gzip"));
    let mut first_hit = None;
    for _ in 0..3 {
        let hit = get(&proxy, "/doc", Some("gzip"));
        assert!(hit
            .header("cache-status")
            .unwrap_or_default()
            .contains("hit"));
        assert_eq!(hit.header("content-encoding"), Some("gzip"));
        assert_eq!(hit.header("vary"), Some("Accept-Encoding"));
        // The stored variant, sent with its length (a compression per hit would be chunked).
        assert_eq!(
            hit.header("content-length"),
            Some(hit.body.len().to_string().as_str())
        );
        let mut decoded = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&hit.body[..]),
            &mut decoded,
        )
        .unwrap();
        assert_eq!(decoded, expected);
        // The same bytes every time: made once.
        match &first_hit {
            None => first_hit = Some(hit.body.clone()),
            Some(first) => assert_eq!(first, &hit.body),
        }
    }
    // Another client asks for br: that variant, and identity for one that asks for nothing.
    let br = get(&proxy, "/doc", Some("br"));
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(python_decode("brotli", &br.body), expected);
    let plain = get(&proxy, "/doc", None);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body, expected);
    assert_eq!(origin.requests(), 1);
}
