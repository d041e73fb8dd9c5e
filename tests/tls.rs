//! TLS (feature `tls`) against an in-process TLS peer that answers like a broker.
//!
//! The certificates in `tests/fixtures/tls` were made once with openssl (a P-256 CA, and a
//! server certificate for `localhost` and `127.0.0.1` signed by it; both valid until 2126).
#![cfg(feature = "tls")]

use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsResponse, MetadataRequest, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use spate::config::TlsConfig;
use spate::net::{ConnectOptions, Connection, NetError};
use spate::wire::ApiKey;
use spate::{Action, ClientConfig, Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// A TLS listener that answers every request with an ApiVersions v3 response.
async fn tls_peer() -> String {
    let certs = CertificateDer::pem_file_iter(fixture("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("server.key")).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut body = BytesMut::new();
    ApiVersionsResponse::default()
        .with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::ApiVersions as i16)
                .with_max_version(3),
            ApiVersion::default()
                .with_api_key(ApiKey::Metadata as i16)
                .with_min_version(1)
                .with_max_version(12),
        ])
        .encode(&mut body, 3)
        .unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return; // the client refused our certificate
                };
                let mut input = BytesMut::new();
                loop {
                    if tls.read_buf(&mut input).await.unwrap_or(0) == 0 {
                        return;
                    }
                    while input.len() >= 12 {
                        let size = (&input[..4]).get_i32() as usize;
                        if input.len() < 4 + size {
                            break;
                        }
                        let correlation_id = (&input[8..12]).get_i32();
                        input.advance(4 + size);
                        let mut header = BytesMut::new();
                        ResponseHeader::default()
                            .with_correlation_id(correlation_id)
                            .encode(&mut header, 0)
                            .unwrap();
                        let mut out = BytesMut::new();
                        out.put_i32((header.len() + body.len()) as i32);
                        out.extend_from_slice(&header);
                        out.extend_from_slice(&body);
                        tls.write_all(&out).await.unwrap();
                    }
                }
            });
        }
    });
    addr
}

fn options(tls: TlsConfig) -> ConnectOptions {
    ConnectOptions::from_config(&ClientConfig::new("x:1").tls(tls))
}

#[tokio::test]
async fn connects_over_tls_with_the_configured_ca() {
    let addr = tls_peer().await;
    let tls = TlsConfig {
        ca_location: Some(fixture("ca.pem")),
        ..TlsConfig::default()
    };
    let conn = Connection::connect(&addr, &options(tls)).await.unwrap();
    assert_eq!(conn.version(ApiKey::Metadata).unwrap(), 12);
    // Requests flow over the TLS stream (the peer answers ApiVersions bytes to anything, so
    // decoding a Metadata response from them fails: proof the round trip happened).
    let err = conn.request(&MetadataRequest::default()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Net(NetError::Protocol { broker, .. }) if *broker == addr),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_fatal_tls_error() {
    let addr = tls_peer().await;
    // Default roots (Mozilla's) do not include the test CA.
    let err = Connection::connect(&addr, &options(TlsConfig::default()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Net(NetError::Tls { reason, .. }) if reason.contains("handshake")),
        "{err:?}"
    );
    assert_eq!(err.action(), Action::Fatal);
    // With verification off, the same peer is accepted.
    let tls = TlsConfig {
        verify_certificates: false,
        ..TlsConfig::default()
    };
    Connection::connect(&addr, &options(tls)).await.unwrap();
}

#[tokio::test]
async fn a_missing_ca_file_is_named() {
    let addr = tls_peer().await;
    let tls = TlsConfig {
        ca_location: Some(fixture("missing.pem")),
        ..TlsConfig::default()
    };
    let err = Connection::connect(&addr, &options(tls)).await.unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
}
