//! TLS termination end to end: the real binary on loopback, a test CA's certificates written
//! to files, and real clients (rustls, curl, `openssl s_client`) that say what they saw: which
//! certificate, which version and ALPN, whether the session resumed, what the origin got.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{run_ringwall, Origin, Proxy, TempFile};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    SerialNumber,
};
use ringwall_runtime::rustls;
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const TIMEOUT: Duration = common::IO_TIMEOUT;

/// A test CA and the files it issues, in a directory of their own.
struct Pki {
    dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    serial: std::cell::Cell<u64>,
}

/// The paths of an issued certificate and its key.
struct Issued {
    cert: PathBuf,
    key: PathBuf,
    serial: u64,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("ringwall-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "ringwall test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("ca.key"), ca_key.serialize_pem()).unwrap();
        Pki {
            dir,
            ca,
            ca_key,
            serial: std::cell::Cell::new(0x1000),
        }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn issue(&self, stem: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or(stem));
        params.extended_key_usages = vec![usage];
        let serial = self.serial.get() + 1;
        self.serial.set(serial);
        params.serial_number = Some(SerialNumber::from(serial.to_be_bytes().to_vec()));
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let issued = Issued {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
            serial,
        };
        std::fs::write(&issued.cert, cert.pem()).unwrap();
        std::fs::write(&issued.key, key.serialize_pem()).unwrap();
        issued
    }

    fn server(&self, stem: &str, names: &[&str]) -> Issued {
        self.issue(stem, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.ca.der().to_vec()))
            .unwrap();
        roots
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tool the test drives; missing, the test fails and says how to get it.
fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "this test needs `{tool}`: apt-get install -y {tool} (.ci/run installs it)"
    );
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// What a rustls client offers.
struct Offer<'a> {
    roots: RootCertStore,
    versions: &'a [&'static rustls::SupportedProtocolVersion],
    alpn: &'a [&'a [u8]],
    client_cert: Option<&'a Issued>,
}

impl<'a> Offer<'a> {
    fn new(pki: &Pki) -> Offer<'a> {
        Offer {
            roots: pki.roots(),
            versions: rustls::ALL_VERSIONS,
            alpn: &[b"http/1.1"],
            client_cert: None,
        }
    }

    fn config(self) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(self.versions)
            .unwrap()
            .with_root_certificates(self.roots);
        let mut config = match self.client_cert {
            None => builder.with_no_client_auth(),
            Some(issued) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_file_iter(&issued.cert)
                        .unwrap()
                        .collect::<Result<Vec<_>, _>>()
                        .unwrap(),
                    PrivateKeyDer::from_pem_file(&issued.key).unwrap(),
                )
                .unwrap(),
        };
        config.alpn_protocols = self.alpn.iter().map(|p| p.to_vec()).collect();
        config.resumption = Resumption::in_memory_sessions(64);
        Arc::new(config)
    }
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Connects and completes the handshake, with `sni` as the server name.
fn connect(addr: SocketAddr, config: &Arc<ClientConfig>, sni: &str) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    tcp.set_write_timeout(Some(TIMEOUT))?;
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let conn = ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

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
        &["--tls-cert", path(&a.cert), "--tls-key", path(&a.key)],
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

/// Whether `openssl s_client` printed `name` as the server certificate's subject (its
/// spacing differs between versions).
fn names_subject(out: &str, name: &str) -> bool {
    out.contains(&format!("CN={name}")) || out.contains(&format!("CN = {name}"))
}

/// `openssl s_client` against `addr` with `args`; what it printed (stdout and stderr).
fn openssl_s_client(addr: SocketAddr, args: &[&str]) -> String {
    let mut child = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-connect", &addr.to_string()])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Q ends the session after the handshake.
    child.stdin.take().unwrap().write_all(b"Q\n").unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `openssl s_server -WWW` on a free loopback port, serving `dir`'s files over TLS with
/// `issued`'s certificate; killed when dropped.
struct OpensslOrigin {
    child: std::process::Child,
    addr: SocketAddr,
}

impl OpensslOrigin {
    fn start(issued: &Issued, dir: &Path, extra: &[&str]) -> OpensslOrigin {
        need("openssl");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("openssl")
            .args(["s_server", "-WWW", "-quiet", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-cert", path(&issued.cert), "-key", path(&issued.key)])
            .args(extra)
            .current_dir(dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        assert!(
            common::wait_until(TIMEOUT, || TcpStream::connect(addr).is_ok()),
            "openssl s_server did not start"
        );
        OpensslOrigin { child, addr }
    }
}

impl Drop for OpensslOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    assert!(
        wrong_name.logs().contains("TLS with upstream"),
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
