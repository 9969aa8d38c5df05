//! TLS termination end to end: the real binary on loopback, a test CA's certificates written
//! to files, and real clients (rustls, curl, `openssl s_client`) that say what they saw: which
//! certificate, which version and ALPN, whether the session resumed, what the origin got.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    connect, names_subject, need, openssl_s_client, path, run_ringwall, Issued, Offer,
    OpensslOrigin, Origin, Pki, Proxy, TempFile, Tls,
};
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair};
use ringwall_runtime::rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

const TIMEOUT: Duration = common::IO_TIMEOUT;

/// A response: status, head, body.
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn field(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends a GET over any stream and reads one response with a Content-Length body.
fn get(stream: &mut impl ReadWrite, host: &str, target: &str) -> std::io::Result<Reply> {
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    stream.flush()?;
    let mut raw = Vec::new();
    let mut byte = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut byte)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&byte[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let status = head[9..12].parse().unwrap();
    let mut reply = Reply {
        status,
        head,
        body: Vec::new(),
    };
    let length: usize = reply
        .field("content-length")
        .map_or(0, |v| v.parse().unwrap());
    let mut body = raw[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut byte)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&byte[..n]);
    }
    reply.body = body;
    Ok(reply)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The leaf certificate the server sent.
fn peer_leaf(tls: &Tls) -> Vec<u8> {
    tls.conn.peer_certificates().unwrap()[0].to_vec()
}

fn leaf_of(issued: &Issued) -> Vec<u8> {
    CertificateDer::from_pem_file(&issued.cert)
        .unwrap()
        .to_vec()
}

/// A config with one TLS listener on port 0 in front of `origin`; `tls` is the body of its
/// `[listener.tls]` table and its certificates.
fn tls_config(origin: SocketAddr, tls: &str) -> String {
    format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"https\"\n[listener.tls]\n{tls}\n\n\
         [[upstream]]\nname = \"app\"\nservers = [\"{origin}\"]\n\n\
         [[route]]\nupstream = \"app\"\n"
    )
}

fn certificate_entry(issued: &Issued, extra: &str) -> String {
    format!(
        "[[listener.tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n{extra}\n",
        path(&issued.cert),
        path(&issued.key)
    )
}

#[test]
fn sni_picks_the_certificate_and_the_origin_sees_https() {
    let pki = Pki::new("sni");
    let a = pki.server("a", &["a.test"]);
    let wild = pki.server("wild", &["*.b.test"]);
    let fallback = pki.server("fallback", &["fallback.test"]);
    let origin = Origin::echo("app");
    let toml = tls_config(
        origin.addr,
        &format!(
            "{}{}{}",
            certificate_entry(&a, ""),
            certificate_entry(&wild, ""),
            certificate_entry(&fallback, "default = true")
        ),
    );
    let proxy = Proxy::with_config_listeners(&toml, &[]);
    let config = Offer::new(&pki).config();

    let mut tls = connect(proxy.addr, &config, "a.test").unwrap();
    assert_eq!(peer_leaf(&tls), leaf_of(&a));
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let reply = get(&mut tls, "a.test", "/hello").unwrap();
    assert_eq!(reply.status, 200);
    let seen = String::from_utf8_lossy(&reply.body).to_lowercase();
    assert!(seen.contains("x-forwarded-proto: https"), "{seen}");
    // Keep-alive over TLS: a second request on the same connection.
    assert_eq!(get(&mut tls, "a.test", "/again").unwrap().status, 200);

    let tls = connect(proxy.addr, &config, "x.b.test").unwrap();
    assert_eq!(peer_leaf(&tls), leaf_of(&wild));

    // A name no certificate covers gets the default one (which the client then refuses).
    let e = connect(proxy.addr, &config, "unknown.test").err().unwrap();
    assert!(e.to_string().contains("certificate"), "{e}");

    // No SNI at all: the default certificate (openssl sends none with -noservername).
    need("openssl");
    let out = openssl_s_client(proxy.addr, &["-noservername"]);
    assert!(names_subject(&out, "fallback.test"), "{out}");
}

#[test]
fn strict_sni_refuses_unknown_names_and_serves_known_ones() {
    let pki = Pki::new("strict");
    let a = pki.server("a", &["a.test"]);
    let origin = Origin::echo("app");
    let toml = tls_config(
        origin.addr,
        &format!("strict_sni = true\n{}", certificate_entry(&a, "")),
    );
    let proxy = Proxy::with_config_listeners(&toml, &[]);
    let config = Offer::new(&pki).config();
    let e = connect(proxy.addr, &config, "other.test").err().unwrap();
    assert!(
        e.to_string().contains("unrecognised name") || e.to_string().contains("alert"),
        "{e}"
    );
    let mut tls = connect(proxy.addr, &config, "a.test").unwrap();
    assert_eq!(get(&mut tls, "a.test", "/").unwrap().status, 200);
}

#[test]
fn tls_1_2_and_1_3_and_the_1_3_only_option() {
    let pki = Pki::new("versions");
    let a = pki.server("a", &["a.test"]);
    let origin = Origin::echo("app");
    let proxy =
        Proxy::with_config_listeners(&tls_config(origin.addr, &certificate_entry(&a, "")), &[]);
    let versions: [(&'static rustls::SupportedProtocolVersion, _); 2] = [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ];
    for (version, expected) in &versions {
        let mut offer = Offer::new(&pki);
        offer.versions = std::slice::from_ref(version);
        let mut tls = connect(proxy.addr, &offer.config(), "a.test").unwrap();
        assert_eq!(tls.conn.protocol_version(), Some(*expected));
        assert_eq!(get(&mut tls, "a.test", "/").unwrap().status, 200);
    }
    drop(proxy);

    let only13 = Proxy::with_config_listeners(
        &tls_config(
            origin.addr,
            &format!("min_version = \"1.3\"\n{}", certificate_entry(&a, "")),
        ),
        &[],
    );
    let tls12: [&'static rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
    let mut offer = Offer::new(&pki);
    offer.versions = &tls12;
    assert!(connect(only13.addr, &offer.config(), "a.test").is_err());
    let mut tls = connect(only13.addr, &Offer::new(&pki).config(), "a.test").unwrap();
    assert_eq!(get(&mut tls, "a.test", "/").unwrap().status, 200);
}

#[test]
fn alpn_without_http_1_1_is_refused() {
    let pki = Pki::new("alpn");
    let a = pki.server("a", &["a.test"]);
    let origin = Origin::echo("app");
    let proxy =
        Proxy::with_config_listeners(&tls_config(origin.addr, &certificate_entry(&a, "")), &[]);
    let mut offer = Offer::new(&pki);
    offer.alpn = &[b"h2"];
    let e = connect(proxy.addr, &offer.config(), "a.test")
        .err()
        .unwrap();
    assert!(e.to_string().to_lowercase().contains("application"), "{e}");
    // Without ALPN at all, HTTP/1.1 as ever.
    let mut offer = Offer::new(&pki);
    offer.alpn = &[];
    let mut tls = connect(proxy.addr, &offer.config(), "a.test").unwrap();
    assert_eq!(get(&mut tls, "a.test", "/").unwrap().status, 200);
}

#[test]
fn sessions_resume_on_every_worker() {
    let pki = Pki::new("resume");
    let a = pki.server("a", &["a.test"]);
    let origin = Origin::echo("app");
    let proxy = Proxy::with_config_listeners(
        &tls_config(origin.addr, &certificate_entry(&a, "")),
        &["--workers", "2"],
    );
    // Twenty connections spread over both workers by SO_REUSEPORT: after the first, every
    // one resumes, whichever worker issued the ticket it presents.
    let versions: [&'static rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    for version in &versions {
        let mut offer = Offer::new(&pki);
        offer.versions = std::slice::from_ref(version);
        let config = offer.config();
        for i in 0..20 {
            let mut tls = connect(proxy.addr, &config, "a.test").unwrap();
            assert_eq!(get(&mut tls, "a.test", "/").unwrap().status, 200);
            let kind = tls.conn.handshake_kind().unwrap();
            if i > 0 {
                assert_eq!(
                    kind,
                    rustls::HandshakeKind::Resumed,
                    "connection {i} over {version:?}"
                );
            }
        }
    }
}

/// The ticket key is the process's, not the configuration's: tickets issued before a reload
/// resume after it (a reload does not cost every client a full handshake).
#[test]
fn sessions_resume_across_a_reload() {
    let pki = Pki::new("resume-reload");
    let a = pki.server("a", &["a.test"]);
    let origin = Origin::echo("app");
    let toml = tls_config(origin.addr, &certificate_entry(&a, ""));
    let file = common::TempFile::new("tls-reload.toml", &toml);
    let proxy = Proxy::with_config_path(&file.display(), &["--workers", "1"], false);
    let tls13: [&'static rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    let mut offer = Offer::new(&pki);
    offer.versions = &tls13;
    let config = offer.config();
    let mut tls = connect(proxy.addr, &config, "a.test").unwrap();
    assert_eq!(get(&mut tls, "a.test", "/").unwrap().status, 200);
    drop(tls);
    std::fs::write(
        &file.path,
        toml.replace("[[route]]\n", "[[route]]\nname = \"renamed\"\n"),
    )
    .unwrap();
    proxy.reload().expect("the reload is taken");
    let mut tls = connect(proxy.addr, &config, "a.test").unwrap();
    assert_eq!(get(&mut tls, "a.test", "/").unwrap().status, 200);
    assert_eq!(
        tls.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed),
        "the ticket from before the reload resumed"
    );
}

#[test]
fn client_certificates_required_and_optional() {
    let pki = Pki::new("mtls");
    let a = pki.server("a", &["a.test"]);
    let client = pki.issue(
        "client",
        &["client.test"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let stranger_pki = Pki::new("mtls-stranger");
    let stranger = stranger_pki.issue("stranger", &["s.test"], ExtendedKeyUsagePurpose::ClientAuth);
    let origin = Origin::echo("app");
    let required = Proxy::with_config_listeners(
        &tls_config(
            origin.addr,
            &format!(
                "client_ca = \"{}\"\n{}",
                path(&pki.ca_file()),
                certificate_entry(&a, "")
            ),
        ),
        &[],
    );
    // Without a certificate: refused (TLS 1.3 says so at the first read).
    let refused = connect(required.addr, &Offer::new(&pki).config(), "a.test")
        .and_then(|mut tls| get(&mut tls, "a.test", "/").map(|r| r.status));
    assert!(refused.is_err(), "{refused:?}");
    // With a certificate of another CA: refused.
    let mut offer = Offer::new(&pki);
    offer.client_cert = Some(&stranger);
    let refused = connect(required.addr, &offer.config(), "a.test")
        .and_then(|mut tls| get(&mut tls, "a.test", "/").map(|r| r.status));
    assert!(refused.is_err(), "{refused:?}");
    // With ours: served.
    let mut offer = Offer::new(&pki);
    offer.client_cert = Some(&client);
    let mut tls = connect(required.addr, &offer.config(), "a.test").unwrap();
    assert_eq!(get(&mut tls, "a.test", "/").unwrap().status, 200);

    let optional = Proxy::with_config_listeners(
        &tls_config(
            origin.addr,
            &format!(
                "client_ca = \"{}\"\nclient_auth = \"optional\"\n{}",
                path(&pki.ca_file()),
                certificate_entry(&a, "")
            ),
        ),
        &[],
    );
    let mut tls = connect(optional.addr, &Offer::new(&pki).config(), "a.test").unwrap();
    assert_eq!(get(&mut tls, "a.test", "/").unwrap().status, 200);
}

#[test]
fn an_ocsp_response_is_stapled() {
    need("openssl");
    let pki = Pki::new("ocsp");
    let a = pki.server("a", &["a.test"]);
    // A real OCSP response for `a`, signed by the CA, made by `openssl ocsp`.
    let index = pki.dir.join("index.txt");
    std::fs::write(
        &index,
        format!("V\t491231235959Z\t\t{:X}\tunknown\t/CN=a.test\n", a.serial),
    )
    .unwrap();
    let response = pki.dir.join("a.ocsp");
    let made = Command::new("openssl")
        .args([
            "ocsp",
            "-index",
            path(&index),
            "-rsigner",
            path(&pki.ca_file()),
        ])
        .args([
            "-rkey",
            path(&pki.dir.join("ca.key")),
            "-CA",
            path(&pki.ca_file()),
        ])
        .args([
            "-issuer",
            path(&pki.ca_file()),
            "-serial",
            &format!("0x{:X}", a.serial),
        ])
        .args(["-respout", path(&response), "-ndays", "1"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let origin = Origin::echo("app");
    let proxy = Proxy::with_config_listeners(
        &tls_config(
            origin.addr,
            &certificate_entry(&a, &format!("ocsp = \"{}\"", path(&response))),
        ),
        &[],
    );
    let out = openssl_s_client(proxy.addr, &["-servername", "a.test", "-status"]);
    assert!(out.contains("OCSP Response Status: successful"), "{out}");
}

#[test]
fn plain_http_and_garbage_on_a_tls_port_cost_no_other_client() {
    let pki = Pki::new("plain");
    let a = pki.server("a", &["a.test"]);
    let origin = Origin::echo("app");
    let proxy = Proxy::start(
        &[origin.addr],
        &[
            "--tls-cert",
            path(&a.cert),
            "--tls-key",
            path(&a.key),
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let config = Offer::new(&pki).config();
    // A client in the middle of a TLS session while the others misbehave.
    let mut good = connect(proxy.addr, &config, "a.test").unwrap();

    let mut plain = TcpStream::connect(proxy.addr).unwrap();
    plain.set_read_timeout(Some(TIMEOUT)).unwrap();
    let reply = get(&mut plain, "a.test", "/").unwrap();
    assert_eq!(reply.status, 400);
    assert_eq!(
        String::from_utf8_lossy(&reply.body),
        "The plain HTTP request was sent to HTTPS port\n"
    );
    assert_eq!(reply.field("connection"), Some("close"));

    let mut garbage = TcpStream::connect(proxy.addr).unwrap();
    garbage.set_read_timeout(Some(TIMEOUT)).unwrap();
    garbage
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00])
        .unwrap();
    let mut alert = Vec::new();
    let _ = garbage.read_to_end(&mut alert);
    assert_eq!(alert.first(), Some(&21), "an alert record, then the close");

    // A client that connects and says nothing is closed at the handshake timeout; one that
    // closes at once costs nothing.
    drop(TcpStream::connect(proxy.addr).unwrap());

    assert_eq!(get(&mut good, "a.test", "/after").unwrap().status, 200);

    // `/metrics` counts one handshake done and the failed ones (plain text, garbage, and the
    // client that went away).
    let admin = proxy.admin_addr();
    let counted = common::wait_until(Duration::from_secs(3), || {
        let samples = common::scrape(admin);
        common::count(&samples, "ringwall_tls_handshakes_total", &[]) == 1
            && common::count(&samples, "ringwall_tls_handshake_failures_total", &[]) == 3
    });
    assert!(counted, "one handshake done, three failed");
}

#[test]
fn a_silent_client_is_closed_at_the_handshake_timeout() {
    let pki = Pki::new("silent");
    let a = pki.server("a", &["a.test"]);
    let origin = Origin::echo("app");
    let proxy = Proxy::start(
        &[origin.addr],
        &[
            "--tls-cert",
            path(&a.cert),
            "--tls-key",
            path(&a.key),
            "--tls-handshake-timeout",
            "300ms",
        ],
    );
    let mut silent = TcpStream::connect(proxy.addr).unwrap();
    silent.set_read_timeout(Some(TIMEOUT)).unwrap();
    // One byte of a record, then nothing.
    silent.write_all(&[0x16]).unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn curl_and_openssl_talk_to_it() {
    need("curl");
    need("openssl");
    let pki = Pki::new("curl");
    let a = pki.server("a", &["a.test"]);
    let origin = Origin::echo("app");
    let proxy = Proxy::start(
        &[origin.addr],
        &["--tls-cert", path(&a.cert), "--tls-key", path(&a.key)],
    );
    let port = proxy.addr.port();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert", path(&pki.ca_file())])
        .args(["--resolve", &format!("a.test:{port}:127.0.0.1")])
        .args(["-w", "\n%{http_code} %{http_version} %{ssl_verify_result}"])
        .arg(format!("https://a.test:{port}/curl"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.ends_with("200 1.1 0"), "{text}");
    assert!(
        text.to_lowercase().contains("x-forwarded-proto: https"),
        "{text}"
    );

    let out = openssl_s_client(proxy.addr, &["-servername", "a.test", "-tls1_2"]);
    assert!(
        out.contains("Protocol  : TLSv1.2") || out.contains("TLSv1.2"),
        "{out}"
    );
    assert!(names_subject(&out, "a.test"), "{out}");
}

#[test]
fn https_redirect_sends_plain_requests_to_the_tls_listener() {
    let pki = Pki::new("redirect");
    let a = pki.server("a", &["a.test"]);
    let origin = Origin::echo("app");
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"https\"\n[listener.tls]\n{}\n\
         [[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
         [[route]]\nupstream = \"app\"\nhttps_redirect = {{ status = 308, port = 8443 }}\n",
        certificate_entry(&a, ""),
        origin.addr
    );
    let proxy = Proxy::with_config_listeners(&toml, &[]);
    let (plain, tls_addr) = (proxy.addrs[0], proxy.addrs[1]);
    let mut stream = TcpStream::connect(plain).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let reply = get(&mut stream, "a.test", "/path?q=1").unwrap();
    assert_eq!(reply.status, 308);
    assert_eq!(
        reply.field("location"),
        Some("https://a.test:8443/path?q=1")
    );
    assert_eq!(origin.requests(), 0);
    let mut tls = connect(tls_addr, &Offer::new(&pki).config(), "a.test").unwrap();
    assert_eq!(get(&mut tls, "a.test", "/path").unwrap().status, 200);
}

#[test]
fn bad_certificate_files_are_refused_by_check_and_at_start() {
    let pki = Pki::new("bad");
    let a = pki.server("a", &["a.test"]);
    let b = pki.server("b", &["b.test"]);
    let not_pem = TempFile::new("not.pem", "this is not a certificate\n");
    let expired_dir = Pki::new("bad-expired");
    let expired_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["old.test".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let expired = params.self_signed(&expired_key).unwrap();
    let expired_cert = expired_dir.dir.join("old.pem");
    let expired_key_file = expired_dir.dir.join("old.key");
    std::fs::write(&expired_cert, expired.pem()).unwrap();
    std::fs::write(&expired_key_file, expired_key.serialize_pem()).unwrap();
    let missing = pki.dir.join("missing.pem");

    let cases: [(&Path, &Path, &str); 4] = [
        (&missing, &a.key, "cannot read"),
        (&not_pem.path, &a.key, "no PEM certificate"),
        (&a.cert, &b.key, "does not match"),
        (&expired_cert, &expired_key_file, "expired on"),
    ];
    for (cert, key, reason) in cases {
        let args = [
            "check",
            "--upstream",
            "127.0.0.1:9",
            "--tls-cert",
            path(cert),
            "--tls-key",
            path(key),
        ];
        let run = run_ringwall(&args);
        assert!(!run.status.success(), "{reason}: {}", run.stdout);
        assert!(run.stderr.contains(reason), "{reason}: {}", run.stderr);
        // The file is named.
        let named = if reason == "does not match" {
            key
        } else {
            cert
        };
        assert!(run.stderr.contains(path(named)), "{}", run.stderr);
        // The start refuses the same files with the same words.
        let run = run_ringwall(&args[1..]);
        assert!(!run.status.success());
        assert!(run.stderr.contains(reason), "{}", run.stderr);
    }

    // In a file: the line and the field.
    let file = TempFile::new(
        "tls.toml",
        &tls_config(
            "127.0.0.1:9".parse().unwrap(),
            &format!(
                "[[listener.tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
                path(&a.cert),
                path(&b.key)
            ),
        ),
    );
    let run = run_ringwall(&["check", "--config", &file.display()]);
    assert!(!run.status.success());
    assert!(
        run.stderr
            .contains(":7:7: listener[0].tls.certificate[0].key:"),
        "{}",
        run.stderr
    );
}

/// A plain listener in front of one `https://` server, with `tls` as its `[upstream.tls]`.
fn https_upstream_config(server: &str, tls: &str) -> String {
    format!(
        "[[upstream]]\nname = \"secure\"\nservers = [\"{server}\"]\n[upstream.tls]\n{tls}\n\n\
         [[route]]\nupstream = \"secure\"\n"
    )
}

#[test]
fn https_origins_are_verified_by_ca_and_name() {
    let pki = Pki::new("origin");
    let cert = pki.server("origin", &["origin.test"]);
    std::fs::write(pki.dir.join("hello.txt"), "hello over tls\n").unwrap();
    let origin = OpensslOrigin::start(&cert, &pki.dir, &[]);
    let url = format!("https://{}", origin.addr);
    let ca = format!("ca = \"{}\"", path(&pki.ca_file()));

    let good = Proxy::with_config(
        &https_upstream_config(&url, &format!("{ca}\nsni = \"origin.test\"")),
        &[],
    );
    let mut plain = TcpStream::connect(good.addr).unwrap();
    plain.set_read_timeout(Some(TIMEOUT)).unwrap();
    let reply = read_close_delimited(&mut plain, "/hello.txt");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("hello over tls\n"), "{reply}");

    // The certificate does not name what we asked for: 502, and no byte of the request went.
    let wrong_name = Proxy::with_config(
        &https_upstream_config(&url, &format!("{ca}\nsni = \"other.test\"")),
        &[],
    );
    let mut stream = TcpStream::connect(wrong_name.addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(get(&mut stream, "x", "/hello.txt").unwrap().status, 502);
    // The log line may reach the pipe after the response reached the client.
    assert!(
        common::wait_until(Duration::from_secs(3), || wrong_name
            .logs()
            .contains("TLS with upstream")),
        "{}",
        wrong_name.logs()
    );

    // Our test CA is not among the system's roots: 502.
    let system_roots = Proxy::start(&[], &["--upstream", &format!("https://{}", origin.addr)]);
    let mut stream = TcpStream::connect(system_roots.addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(get(&mut stream, "x", "/hello.txt").unwrap().status, 502);
}

/// Sends a GET for `target` with `Connection: close` and reads until the proxy closes
/// (openssl's HTTP/1.0 answer has no length: the proxy passes it on chunked).
fn read_close_delimited(stream: &mut TcpStream, target: &str) -> String {
    stream
        .write_all(
            format!("GET {target} HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn an_https_origin_is_pooled_and_may_ask_for_a_client_certificate() {
    // The origin: ringwall itself terminating TLS (keep-alive, client certificates required)
    // in front of an echo server; the proxy under test talks TLS to it.
    let pki = Pki::new("chain");
    let cert = pki.server("origin", &["origin.test"]);
    let client = pki.issue(
        "client",
        &["proxy.test"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let echo = Origin::echo("app");
    let terminator = Proxy::with_config_listeners(
        &tls_config(
            echo.addr,
            &format!(
                "client_ca = \"{}\"\n{}",
                path(&pki.ca_file()),
                certificate_entry(&cert, "")
            ),
        ),
        &["--workers", "1"],
    );
    let tls = format!(
        "ca = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
        path(&pki.ca_file()),
        path(&client.cert),
        path(&client.key)
    );
    // origin.test must resolve: name the address, keep the name for SNI.
    let toml = https_upstream_config(&format!("https://{}", terminator.addr), &tls).replace(
        "[upstream.tls]\n",
        "[upstream.tls]\nsni = \"origin.test\"\n",
    );
    let proxy = Proxy::with_config(&toml, &["--workers", "1"]);
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    for i in 0..5 {
        let reply = get(&mut stream, "origin.test", &format!("/{i}")).unwrap();
        assert_eq!(reply.status, 200, "{}", proxy.logs());
        let seen = String::from_utf8_lossy(&reply.body).to_lowercase();
        // The terminator saw TLS from the proxy.
        assert!(seen.contains("x-forwarded-proto: https"), "{seen}");
    }
    // One TLS connection from the proxy carried all five (the terminator made one to the
    // echo origin per connection it serves, here one).
    assert_eq!(echo.connections(), 1);

    // Without the client certificate the terminator refuses the handshake: 502.
    let no_cert = Proxy::with_config(
        &https_upstream_config(
            &format!("https://{}", terminator.addr),
            &format!("ca = \"{}\"\nsni = \"origin.test\"", path(&pki.ca_file())),
        ),
        &[],
    );
    let mut stream = TcpStream::connect(no_cert.addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(get(&mut stream, "origin.test", "/").unwrap().status, 502);
}

#[test]
fn a_tls_health_check_takes_down_a_server_whose_handshake_fails() {
    let pki = Pki::new("checked");
    let cert = pki.server("origin", &["origin.test"]);
    let good = OpensslOrigin::start(&cert, &pki.dir, &[]);
    // Accepts TCP, but speaks no TLS: its handshake fails.
    let plain = Origin::echo("plain");
    let toml = format!(
        "[admin]\naddress = \"127.0.0.1:0\"\n\
         [[upstream]]\nname = \"secure\"\nservers = [\"https://{}\", \"https://{}\"]\n\
         [upstream.tls]\nca = \"{}\"\nsni = \"origin.test\"\n\
         [upstream.health_check]\nkind = \"tls\"\ninterval = \"100ms\"\nrise = 1\nfall = 1\n\n\
         [[route]]\nupstream = \"secure\"\n",
        good.addr,
        plain.addr,
        path(&pki.ca_file())
    );
    let proxy = Proxy::with_config(&toml, &[]);
    let admin = proxy.admin_addr();
    assert!(
        common::wait_until(Duration::from_secs(5), || {
            common::server_state(admin, plain.addr) == "down"
        }),
        "{}",
        common::server_state(admin, plain.addr)
    );
    assert_eq!(common::server_state(admin, good.addr), "up");
    // Every request now goes to the server that speaks TLS.
    for _ in 0..4 {
        let mut stream = TcpStream::connect(proxy.addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let reply = read_close_delimited(&mut stream, "/index.txt");
        assert!(!reply.starts_with("HTTP/1.1 502"), "{reply}");
    }
}
