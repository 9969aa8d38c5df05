//! TLS for `https://` targets (rustls with the *ring* provider) and the self-signed P-256
//! certificate the comparison harness gives every proxy under test.
//!
//! [`client_config`] builds the generator's `ClientConfig`: trusted roots from `--cacert` or the
//! system bundle, or, with `--insecure`, a verifier that accepts any certificate but still checks
//! the handshake signatures (so the handshake costs what a real one costs). Connections wrap
//! their TCP stream with `monoio-rustls`. [`SelfSigned::generate`] makes a certificate and key
//! with rcgen for `localhost` and `127.0.0.1`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Where the system's CA bundle lives on Debian and most distributions.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The crypto provider of every TLS connection here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client configuration for https targets.
pub fn client_config(insecure: bool, ca_file: Option<&Path>) -> anyhow::Result<ClientConfig> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let path = ca_file.unwrap_or(Path::new(SYSTEM_CA_BUNDLE));
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(path)
            .with_context(|| format!("reading CA certificates from {}", path.display()))?
        {
            let cert = cert.with_context(|| format!("bad PEM in {}", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("bad CA certificate in {}", path.display()))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(config)
}

/// The name TLS verifies and sends as SNI (not sent for IP addresses).
pub fn server_name(host: &str) -> anyhow::Result<ServerName<'static>> {
    ServerName::try_from(host.to_string()).with_context(|| format!("bad TLS server name {host}"))
}

/// Accepts any certificate chain and name; verifies handshake signatures as usual.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A self-signed ECDSA P-256 certificate and its key, PEM encoded.
#[derive(Clone, Debug)]
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
}

impl SelfSigned {
    /// A certificate for `localhost` and `127.0.0.1`.
    pub fn generate() -> anyhow::Result<Self> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        let cert = params.self_signed(&key)?;
        Ok(SelfSigned {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_build() {
        assert!(client_config(true, None).is_ok());
        let dir = std::env::temp_dir().join(format!("ringwall-load-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ss = SelfSigned::generate().unwrap();
        assert!(ss.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(ss.key_pem.contains("PRIVATE KEY"));
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, &ss.cert_pem).unwrap();
        assert!(client_config(false, Some(&ca)).is_ok());
        assert!(client_config(false, Some(&dir.join("missing.pem"))).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("localhost").is_ok());
    }
}
