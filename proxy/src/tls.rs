//! TLS termination: certificates and keys from PEM files, chosen by SNI, and each listener's
//! rustls configuration.
//!
//! [`ListenerTls::load`] reads and checks every file a TLS listener names (the same call backs
//! `ringwall check` and the start, so both refuse the same files for the same reasons) and
//! builds the listener's rustls `ServerConfig` once. Each worker then takes its own copy
//! ([`ListenerTls::for_worker`]): its own certificate table and session cache, so that no
//! handshake touches another core's memory, and the process's one session-ticket key, so that
//! a ticket issued on one core resumes on any other.
//!
//! Crypto is aws-lc-rs (docs/architecture.md, "TLS", says why).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use ringwall_runtime::rustls;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, ServerSessionMemoryCache,
    WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::{TlsCertificate, TlsSettings, TlsVersion, UpstreamTls};

/// The one ALPN protocol spoken on terminated connections.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The crypto provider every TLS connection uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Which setting of a TLS listener a [`TlsFileError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsField {
    /// `certificate[i].cert`
    Cert(usize),
    /// `certificate[i].key`
    Key(usize),
    /// `certificate[i].ocsp`
    Ocsp(usize),
    /// `certificate[i].names`
    Names(usize),
    /// `client_ca` of a listener, `ca` of an upstream group
    Ca,
    /// The listener's TLS settings as a whole.
    Settings,
}

/// A file of a TLS listener that cannot be used, and why.
#[derive(Debug)]
pub struct TlsFileError {
    pub field: TlsField,
    pub file: Option<PathBuf>,
    pub reason: String,
}

impl fmt::Display for TlsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}: {}", file.display(), self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for TlsFileError {}

fn refuse(field: TlsField, file: &Path, reason: impl Into<String>) -> TlsFileError {
    TlsFileError {
        field,
        file: Some(file.to_owned()),
        reason: reason.into(),
    }
}

/// A TLS listener's loaded configuration.
#[derive(Debug)]
pub struct ListenerTls {
    base: ServerConfig,
    resolver: SniResolver,
    session_cache: usize,
    session_tickets: bool,
}

impl ListenerTls {
    /// Reads and checks every file `settings` names, and builds the rustls configuration.
    pub fn load(settings: &TlsSettings) -> Result<Self, TlsFileError> {
        let provider = provider();
        let mut resolver = SniResolver {
            strict: settings.strict_sni,
            ..SniResolver::default()
        };
        for (i, certificate) in settings.certificates.iter().enumerate() {
            let (key, names) = load_certificate(i, certificate, &provider, SystemTime::now())?;
            let key = Arc::new(key);
            if certificate.default || resolver.default.is_none() {
                resolver.default = Some(key.clone());
            }
            for name in names {
                let (table, key_name) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut resolver.wildcard, parent),
                    None => (&mut resolver.exact, name.as_str()),
                };
                // The first certificate that names a host serves it.
                table
                    .entry(key_name.to_owned())
                    .or_insert_with(|| key.clone());
            }
        }
        let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| TlsFileError {
                field: TlsField::Settings,
                file: None,
                reason: e.to_string(),
            })?;
        let builder = match &settings.client_auth {
            None => builder.with_no_client_auth(),
            Some(auth) => {
                let roots = load_roots(&auth.ca, TlsField::Ca)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let verifier = if auth.required {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| refuse(TlsField::Ca, &auth.ca, e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut base = builder.with_cert_resolver(Arc::new(resolver.clone()));
        base.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        if settings.session_tickets {
            base.ticketer =
                rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| TlsFileError {
                    field: TlsField::Settings,
                    file: None,
                    reason: format!("cannot make a session ticket key: {e}"),
                })?;
        }
        Ok(Self {
            base,
            resolver,
            session_cache: settings.session_cache,
            session_tickets: settings.session_tickets,
        })
    }

    /// Issues session tickets with `tickets` (the process's one ticket key, kept across
    /// reloads, so that a reload does not cost every client a full handshake).
    #[must_use]
    pub fn with_ticketer(mut self, tickets: &Arc<dyn rustls::server::ProducesTickets>) -> Self {
        if self.session_tickets {
            self.base.ticketer = tickets.clone();
        }
        self
    }

    /// One worker's configuration: its own certificate table and session cache, the shared
    /// ticket key.
    pub fn for_worker(&self) -> Arc<ServerConfig> {
        let mut config = self.base.clone();
        config.cert_resolver = Arc::new(self.resolver.deep_copy());
        config.session_storage = if self.session_cache == 0 {
            Arc::new(NoServerSessionStorage {})
        } else {
            ServerSessionMemoryCache::new(self.session_cache)
        };
        Arc::new(config)
    }
}

/// Certificates by the name a client asks for (SNI): exact names, then `*.parent` for one
/// label more, then the default one (unless strict).
#[derive(Clone, Debug, Default)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the parent of the wildcard (`example.com` for `*.example.com`).
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    /// Refuse clients that send no name, or one no certificate covers.
    strict: bool,
}

impl SniResolver {
    /// A copy with certificates of its own (so that a handshake's reference count touches no
    /// other worker's cache line), the same certificates sharing one copy.
    fn deep_copy(&self) -> Self {
        let mut copies: HashMap<*const CertifiedKey, Arc<CertifiedKey>> = HashMap::new();
        let mut copy = |key: &Arc<CertifiedKey>| {
            copies
                .entry(Arc::as_ptr(key))
                .or_insert_with(|| Arc::new(CertifiedKey::clone(key)))
                .clone()
        };
        Self {
            exact: self
                .exact
                .iter()
                .map(|(n, k)| (n.clone(), copy(k)))
                .collect(),
            wildcard: self
                .wildcard
                .iter()
                .map(|(n, k)| (n.clone(), copy(k)))
                .collect(),
            default: self.default.as_ref().map(&mut copy),
            strict: self.strict,
        }
    }

    fn find(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        let mut lower = [0u8; 256];
        let name = name.trim_end_matches('.');
        if name.len() > lower.len() {
            return None;
        }
        let lower = &mut lower[..name.len()];
        lower.copy_from_slice(name.as_bytes());
        lower.make_ascii_lowercase();
        let lower = std::str::from_utf8(lower).ok()?;
        self.exact.get(lower).or_else(|| {
            let (_, parent) = lower.split_once('.')?;
            self.wildcard.get(parent)
        })
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = hello.server_name().and_then(|name| self.find(name));
        match found {
            Some(key) => Some(key.clone()),
            None if self.strict => None,
            None => self.default.clone(),
        }
    }
}

/// Loads one certificate chain with its key and OCSP response; returns the names it serves
/// (the configured ones, else the certificate's DNS names).
fn load_certificate(
    i: usize,
    certificate: &TlsCertificate,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<(CertifiedKey, Vec<String>), TlsFileError> {
    let cert_path = &certificate.cert;
    let chain = read_certificates(cert_path, TlsField::Cert(i))?;
    let leaf = check_leaf(&chain[0], now).map_err(|r| refuse(TlsField::Cert(i), cert_path, r))?;
    let key_path = &certificate.key;
    let key = read_key(key_path, TlsField::Key(i))?;
    let mut key = CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| refuse(TlsField::Key(i), key_path, key_problem(&e, cert_path)))?;
    if let Some(ocsp) = &certificate.ocsp {
        let der = std::fs::read(ocsp)
            .map_err(|e| refuse(TlsField::Ocsp(i), ocsp, format!("cannot read: {e}")))?;
        // An OCSPResponse is a DER SEQUENCE.
        if der.first() != Some(&0x30) || der.len() < 8 {
            return Err(refuse(
                TlsField::Ocsp(i),
                ocsp,
                "not a DER-encoded OCSP response",
            ));
        }
        key.ocsp = Some(der);
    }
    let names = if certificate.names.is_empty() {
        leaf.dns_names
    } else {
        certificate.names.clone()
    };
    if names.is_empty() && !certificate.default {
        return Err(TlsFileError {
            field: TlsField::Names(i),
            file: Some(cert_path.clone()),
            reason: "the certificate names no DNS name: give `names`, or mark it `default`"
                .to_owned(),
        });
    }
    Ok((
        key,
        names.into_iter().map(|n| n.to_ascii_lowercase()).collect(),
    ))
}

/// What is read off an end-entity certificate.
struct Leaf {
    dns_names: Vec<String>,
}

/// Refuses a certificate outside its validity period; returns its DNS names.
fn check_leaf(der: &CertificateDer<'_>, now: SystemTime) -> Result<Leaf, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let validity = cert.validity();
    if now > validity.not_after.timestamp() {
        return Err(format!("the certificate expired on {}", validity.not_after));
    }
    if now < validity.not_before.timestamp() {
        return Err(format!(
            "the certificate is not valid before {}",
            validity.not_before
        ));
    }
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(name) = name {
                dns_names.push((*name).to_owned());
            }
        }
    }
    Ok(Leaf { dns_names })
}

/// Every certificate in a PEM file, at least one.
fn read_certificates(
    path: &Path,
    field: TlsField,
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let text = std::fs::read(path).map_err(|e| refuse(field, path, format!("cannot read: {e}")))?;
    let chain = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| refuse(field, path, format!("not PEM: {e}")))?;
    if chain.is_empty() {
        return Err(refuse(
            field,
            path,
            "no PEM certificate (BEGIN CERTIFICATE) in it",
        ));
    }
    Ok(chain)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
fn read_key(path: &Path, field: TlsField) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let text = std::fs::read(path).map_err(|e| refuse(field, path, format!("cannot read: {e}")))?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            refuse(field, path, "no PEM private key (BEGIN PRIVATE KEY) in it")
        }
        other => refuse(field, path, format!("not a PEM private key: {other}")),
    })
}

/// The client configuration toward an upstream group's `https://` servers: their
/// certificates checked against the group's CA file or the system's roots, a client
/// certificate if configured, ALPN `http/1.1`. Each worker makes its own (and so keeps its
/// own sessions for resumption).
pub fn upstream_client_config(tls: &UpstreamTls) -> Result<ClientConfig, TlsFileError> {
    let roots = match &tls.ca {
        Some(ca) => load_roots(ca, TlsField::Ca)?,
        None => system_roots()?,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsFileError {
            field: TlsField::Settings,
            file: None,
            reason: e.to_string(),
        })?
        .with_root_certificates(roots);
    let mut config = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_certificates(cert, TlsField::Cert(0))?;
            check_leaf(&chain[0], SystemTime::now())
                .map_err(|r| refuse(TlsField::Cert(0), cert, r))?;
            let der = read_key(key, TlsField::Key(0))?;
            // Loads the key and checks it is the certificate's (`CertifiedKey::from_der`).
            builder
                .with_client_auth_cert(chain, der)
                .map_err(|e| refuse(TlsField::Key(0), key, key_problem(&e, cert)))?
        }
    };
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(config)
}

/// The system's CA certificates (Debian's `ca-certificates`, or `SSL_CERT_FILE`).
pub(crate) fn system_roots() -> Result<RootCertStore, TlsFileError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsFileError {
            field: TlsField::Ca,
            file: None,
            reason: "no system CA certificates found (install ca-certificates, or give `ca`)"
                .to_owned(),
        });
    }
    Ok(roots)
}

/// Why a private key cannot go with its certificate.
fn key_problem(e: &rustls::Error, cert: &Path) -> String {
    match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "the key does not match the certificate in {}",
            cert.display()
        ),
        other => format!("unusable private key: {other}"),
    }
}

/// A CA file as a trust store.
fn load_roots(path: &Path, field: TlsField) -> Result<RootCertStore, TlsFileError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(path, field)? {
        roots
            .add(cert)
            .map_err(|e| refuse(field, path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests;
