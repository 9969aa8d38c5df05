//! A rustls client and server talking over an in-memory pair, both as [`TlsStream`]s.

use std::sync::Arc;

use monoio::io::{AsyncReadRent, AsyncReadRentExt, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

use super::*;
use crate::stream::{memory_pair, MemoryStream};
use crate::test_support::run;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["example.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = CertificateDer::from(cert.der().to_vec());
    let server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(der).unwrap();
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

type Server = TlsStream<MemoryStream, ServerConnection>;
type Client = TlsStream<MemoryStream, ClientConnection>;

fn pair() -> (Server, Client) {
    let (server_config, client_config) = configs();
    let (a, b) = memory_pair();
    let server = TlsStream::new(a, ServerConnection::new(server_config).unwrap());
    let name = ServerName::try_from("example.test").unwrap();
    let client = TlsStream::new(b, ClientConnection::new(client_config, name).unwrap());
    (server, client)
}

#[test]
fn bytes_cross_both_ways_after_the_handshake() {
    run(async {
        let (mut server, mut client) = pair();
        let server_side = monoio::spawn(async move {
            server.handshake().await.unwrap();
            let (read, buf) = server.read_exact(vec![0u8; 5]).await;
            read.unwrap();
            assert_eq!(buf, b"hello");
            let (written, _) = server.write_all(vec![9u8; 100_000]).await;
            written.unwrap();
            server.shutdown().await.unwrap();
            server
        });
        client.handshake().await.unwrap();
        let (written, _) = client.write_all(b"hello".to_vec()).await;
        written.unwrap();
        let (read, buf) = client.read_exact(vec![0u8; 100_000]).await;
        read.unwrap();
        assert!(buf.iter().all(|&b| b == 9));
        // `close_notify` is the end of the stream.
        let (n, _) = client.read(Vec::with_capacity(16)).await;
        assert_eq!(n.unwrap(), 0);
        let server = server_side.await;
        assert_eq!(server.tls_info().unwrap().version, "TLSv1.3");
    });
}

#[test]
fn a_split_stream_reads_and_writes_at_once() {
    run(async {
        let (mut server, mut client) = pair();
        let echo = monoio::spawn(async move {
            server.handshake().await.unwrap();
            let (mut rd, mut wr) = server.into_split();
            let mut total = 0;
            let mut buf = Vec::with_capacity(4096);
            while total < 300_000 {
                let (n, b) = rd.read(buf).await;
                let n = n.unwrap();
                assert!(n > 0);
                total += n;
                let (w, b) = wr.write_all(b).await;
                w.unwrap();
                buf = b;
                buf.clear();
            }
        });
        client.handshake().await.unwrap();
        let (mut rd, mut wr) = client.into_split();
        let writer = monoio::spawn(async move {
            for i in 0..300u32 {
                let (w, _) = wr.write_all(vec![(i % 251) as u8; 1000]).await;
                w.unwrap();
            }
            wr
        });
        let (read, buf) = rd.read_exact(vec![0u8; 300_000]).await;
        read.unwrap();
        for (i, chunk) in buf.chunks(1000).enumerate() {
            assert!(chunk.iter().all(|&b| b == (i % 251) as u8));
        }
        let _wr = writer.await;
        echo.await;
    });
}

#[test]
fn plain_text_to_a_tls_port_is_told_apart() {
    run(async {
        let (server_config, _) = configs();
        let (a, mut b) = memory_pair();
        let mut server = TlsStream::new(a, ServerConnection::new(server_config).unwrap());
        let (w, _) = b
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec())
            .await;
        w.unwrap();
        assert!(matches!(
            server.handshake().await,
            Err(HandshakeError::PlainText)
        ));
    });
}

#[test]
fn garbage_fails_the_handshake_with_an_alert() {
    run(async {
        let (server_config, _) = configs();
        let (a, mut b) = memory_pair();
        let mut server = TlsStream::new(a, ServerConnection::new(server_config).unwrap());
        let (w, _) = b
            .write_all(vec![0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00])
            .await;
        w.unwrap();
        assert!(matches!(
            server.handshake().await,
            Err(HandshakeError::Tls(_))
        ));
        // The alert record came back (content type 21).
        let (n, buf) = b.read(Vec::with_capacity(64)).await;
        assert!(n.unwrap() > 0);
        assert_eq!(buf[0], 21);
    });
}

#[test]
fn a_peer_that_closes_mid_handshake_is_closed() {
    run(async {
        let (server_config, _) = configs();
        let (a, b) = memory_pair();
        let mut server = TlsStream::new(a, ServerConnection::new(server_config).unwrap());
        drop(b);
        assert!(matches!(
            server.handshake().await,
            Err(HandshakeError::Closed)
        ));
    });
}

#[test]
fn an_idle_stream_gives_its_buffer_back_and_wakes_on_data() {
    run(async {
        let (mut server, mut client) = pair();
        let server_side = monoio::spawn(async move {
            server.handshake().await.unwrap();
            server.readable().await.unwrap();
            assert_eq!(server.rx.capacity(), 0);
            assert!(server.has_buffered() || server.rx.is_empty());
            let (read, buf) = server.read_exact(vec![0u8; 3]).await;
            read.unwrap();
            assert_eq!(buf, b"abc");
            assert!(server.is_idle_clean());
        });
        client.handshake().await.unwrap();
        monoio::time::sleep(std::time::Duration::from_millis(20)).await;
        let (w, _) = client.write_all(b"abc".to_vec()).await;
        w.unwrap();
        server_side.await;
    });
}
