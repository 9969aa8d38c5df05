//! TLS for the end-to-end tests: a test CA that writes certificates to files, a rustls
//! client that says what it negotiated, and openssl's client and server where a test needs a
//! TLS implementation that is not rustls.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    SerialNumber,
};
use ringwall_runtime::rustls;
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::process::wait_until;
use super::wire::IO_TIMEOUT;

const TIMEOUT: Duration = IO_TIMEOUT;

/// A test CA and the files it issues, in a directory of their own.
pub struct Pki {
    pub dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    serial: std::cell::Cell<u64>,
}

/// The paths of an issued certificate and its key.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub serial: u64,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
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

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn issue(&self, stem: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Issued {
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

    pub fn server(&self, stem: &str, names: &[&str]) -> Issued {
        self.issue(stem, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    pub fn roots(&self) -> RootCertStore {
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

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tool the test drives; missing, the test fails and says how to get it.
pub fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "this test needs `{tool}`: apt-get install -y {tool} (.ci/run installs it)"
    );
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// What a rustls client offers.
pub struct Offer<'a> {
    pub roots: RootCertStore,
    pub versions: &'a [&'static rustls::SupportedProtocolVersion],
    pub alpn: &'a [&'a [u8]],
    pub client_cert: Option<&'a Issued>,
}

impl<'a> Offer<'a> {
    pub fn new(pki: &Pki) -> Offer<'a> {
        Offer {
            roots: pki.roots(),
            versions: rustls::ALL_VERSIONS,
            alpn: &[b"http/1.1"],
            client_cert: None,
        }
    }

    pub fn config(self) -> Arc<ClientConfig> {
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

pub type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Connects and completes the handshake, with `sni` as the server name.
pub fn connect(addr: SocketAddr, config: &Arc<ClientConfig>, sni: &str) -> std::io::Result<Tls> {
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

/// Whether `openssl s_client` printed `name` as the server certificate's subject (its
/// spacing differs between versions).
pub fn names_subject(out: &str, name: &str) -> bool {
    out.contains(&format!("CN={name}")) || out.contains(&format!("CN = {name}"))
}

/// `openssl s_client` against `addr` with `args`; what it printed (stdout and stderr).
pub fn openssl_s_client(addr: SocketAddr, args: &[&str]) -> String {
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
pub struct OpensslOrigin {
    child: std::process::Child,
    pub addr: SocketAddr,
}

impl OpensslOrigin {
    pub fn start(issued: &Issued, dir: &Path, extra: &[&str]) -> OpensslOrigin {
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
            wait_until(TIMEOUT, || TcpStream::connect(addr).is_ok()),
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
