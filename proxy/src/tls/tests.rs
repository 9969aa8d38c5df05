//! Loading certificates: what is refused and why, and which certificate a name gets.

use std::path::PathBuf;

use super::*;
use crate::config::ClientAuth;

/// A fresh directory under the system's temporary one.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringwall-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a self-signed certificate for `names` and its key; returns their paths.
fn write_cert(dir: &Path, stem: &str, names: &[&str], expired: bool) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

fn certificate(cert: PathBuf, key: PathBuf) -> TlsCertificate {
    TlsCertificate {
        cert,
        key,
        ocsp: None,
        names: Vec::new(),
        default: false,
    }
}

fn settings(certificates: Vec<TlsCertificate>) -> TlsSettings {
    TlsSettings {
        certificates,
        min_version: TlsVersion::Tls12,
        client_auth: None,
        session_cache: 16,
        session_tickets: true,
        strict_sni: false,
    }
}

fn refusal(settings: &TlsSettings) -> TlsFileError {
    ListenerTls::load(settings).expect_err("refused")
}

#[test]
fn good_files_load_and_names_come_from_the_certificate() {
    let dir = scratch("good");
    let (cert, key) = write_cert(&dir, "a", &["a.example", "*.b.example"], false);
    let tls = ListenerTls::load(&settings(vec![certificate(cert, key)])).unwrap();
    assert!(tls.resolver.exact.contains_key("a.example"));
    assert!(tls.resolver.wildcard.contains_key("b.example"));
    let worker = tls.for_worker();
    assert_eq!(worker.alpn_protocols, vec![b"http/1.1".to_vec()]);
    assert!(worker.ticketer.enabled());
}

#[test]
fn missing_unreadable_and_non_pem_files_are_refused_by_name() {
    let dir = scratch("bad");
    let (cert, key) = write_cert(&dir, "a", &["a.example"], false);
    let missing = dir.join("nope.pem");
    let e = refusal(&settings(vec![certificate(missing.clone(), key.clone())]));
    assert_eq!(e.field, TlsField::Cert(0));
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read", missing.display())),
        "{e}"
    );

    let text = dir.join("text.pem");
    std::fs::write(&text, "hello, not a certificate\n").unwrap();
    let e = refusal(&settings(vec![certificate(text.clone(), key.clone())]));
    assert_eq!(e.field, TlsField::Cert(0));
    assert!(e.to_string().contains("no PEM certificate"), "{e}");

    let e = refusal(&settings(vec![certificate(cert.clone(), text)]));
    assert_eq!(e.field, TlsField::Key(0));
    assert!(e.to_string().contains("no PEM private key"), "{e}");

    // A certificate file given as the key.
    let e = refusal(&settings(vec![certificate(cert.clone(), cert)]));
    assert_eq!(e.field, TlsField::Key(0));
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let dir = scratch("mismatch");
    let (cert_a, _) = write_cert(&dir, "a", &["a.example"], false);
    let (_, key_b) = write_cert(&dir, "b", &["b.example"], false);
    let e = refusal(&settings(vec![certificate(cert_a, key_b.clone())]));
    assert_eq!(e.field, TlsField::Key(0));
    assert!(e.to_string().contains("does not match"), "{e}");
    assert!(
        e.to_string().starts_with(&key_b.display().to_string()),
        "{e}"
    );
}

#[test]
fn an_expired_certificate_is_refused() {
    let dir = scratch("expired");
    let (cert, key) = write_cert(&dir, "old", &["old.example"], true);
    let e = refusal(&settings(vec![certificate(cert, key)]));
    assert_eq!(e.field, TlsField::Cert(0));
    assert!(e.to_string().contains("expired on"), "{e}");
}

#[test]
fn a_bad_ocsp_file_and_a_bad_ca_file_are_refused() {
    let dir = scratch("ocsp");
    let (cert, key) = write_cert(&dir, "a", &["a.example"], false);
    let ocsp = dir.join("a.ocsp");
    std::fs::write(&ocsp, "not der").unwrap();
    let mut with_ocsp = certificate(cert.clone(), key.clone());
    with_ocsp.ocsp = Some(ocsp);
    assert_eq!(refusal(&settings(vec![with_ocsp])).field, TlsField::Ocsp(0));

    let mut with_ca = settings(vec![certificate(cert, key.clone())]);
    with_ca.client_auth = Some(ClientAuth {
        ca: key,
        required: true,
    });
    assert_eq!(refusal(&with_ca).field, TlsField::Ca);
}

#[test]
fn names_pick_exact_then_wildcard_then_the_default() {
    let dir = scratch("sni");
    let (a_cert, a_key) = write_cert(&dir, "a", &["a.example"], false);
    let (w_cert, w_key) = write_cert(&dir, "w", &["*.w.example"], false);
    let tls = ListenerTls::load(&settings(vec![
        certificate(a_cert, a_key),
        certificate(w_cert, w_key),
    ]))
    .unwrap();
    let resolver = tls.resolver.deep_copy();
    let a = resolver.exact["a.example"].clone();
    let w = resolver.wildcard["w.example"].clone();
    assert!(Arc::ptr_eq(resolver.find("A.Example").unwrap(), &a));
    assert!(Arc::ptr_eq(resolver.find("x.w.example").unwrap(), &w));
    assert!(resolver.find("w.example").is_none());
    assert!(resolver.find("y.x.w.example").is_none());
    // The first certificate is the default, the same copy.
    assert!(Arc::ptr_eq(resolver.default.as_ref().unwrap(), &a));
}
