//! Connections against scripted peers over in-memory pipes: out-of-order responses, oversized
//! frames, peers that close mid-frame or send garbage, requests that time out, SASL.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiVersionsResponse, MetadataRequest, MetadataResponse, ResponseHeader as KpHeader,
    SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::config::{SaslConfig, SaslMechanism};
use crate::error::Error;
use crate::wire::versions::supported_api_versions;
use crate::wire::FrameCodec;

/// The broker side of an in-memory connection, driven by the test.
struct Peer {
    io: DuplexStream,
    buf: BytesMut,
}

struct Incoming {
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: Bytes,
}

impl Peer {
    async fn read_request(&mut self) -> Incoming {
        let codec = FrameCodec::default();
        loop {
            if let Some(mut frame) = codec.decode(&mut self.buf).unwrap() {
                let h = decode_request_header_from_buffer(&mut frame).unwrap();
                return Incoming {
                    api: ApiKey::try_from(h.request_api_key).unwrap(),
                    version: h.request_api_version,
                    correlation_id: h.correlation_id,
                    body: frame,
                };
            }
            let n = self.io.read_buf(&mut self.buf).await.unwrap();
            assert!(n > 0, "client closed the pipe");
        }
    }

    async fn answer<M: Encodable>(&mut self, req: &Incoming, body: &M) {
        let frame = response_frame(req.api, req.version, req.correlation_id, body);
        self.io.write_all(&frame).await.unwrap();
    }

    async fn write_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }
}

fn response_frame<M: Encodable>(api: ApiKey, version: i16, correlation_id: i32, body: &M) -> Bytes {
    let mut inner = BytesMut::new();
    KpHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut inner, api.response_header_version(version))
        .unwrap();
    body.encode(&mut inner, version).unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(inner.len() as i32);
    frame.extend_from_slice(&inner);
    frame.freeze()
}

fn api_versions_response() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(supported_api_versions())
}

fn options() -> ConnectOptions {
    ConnectOptions {
        request_timeout: Duration::from_millis(500),
        max_response_size: 1024 * 1024,
        ..ConnectOptions::default()
    }
}

/// A connection whose handshake the peer has answered like a current broker.
async fn pair(options: ConnectOptions) -> (Connection, Peer) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let mut peer = Peer {
        io: server,
        buf: BytesMut::new(),
    };
    let connecting =
        tokio::spawn(async move { Connection::handshake(client, "peer:9092", &options).await });
    let req = peer.read_request().await;
    assert_eq!((req.api, req.version), (ApiKey::ApiVersions, 3));
    peer.answer(&req, &api_versions_response()).await;
    (connecting.await.unwrap().unwrap(), peer)
}

fn metadata_request() -> MetadataRequest {
    MetadataRequest::default()
}

/// The connection's failure behind a request's error; the error must name the request.
fn net_error(e: Error) -> NetError {
    match e {
        Error::Net(NetError::Request { api, cause, .. }) => {
            assert_eq!(api, ApiKey::Metadata, "{cause}");
            *cause
        }
        Error::Net(n @ NetError::RequestTimeout { .. }) => n,
        other => panic!("expected a failed request, got {other:?}"),
    }
}

#[tokio::test]
async fn negotiates_versions() {
    let (conn, _peer) = pair(options()).await;
    assert_eq!(conn.version(ApiKey::Metadata).unwrap(), 13);
    assert_eq!(conn.version(ApiKey::Fetch).unwrap(), 16);
    assert!(conn.is_usable());
}

#[tokio::test]
async fn an_old_broker_gets_api_versions_v0() {
    let (client, server) = tokio::io::duplex(1 << 16);
    let mut peer = Peer {
        io: server,
        buf: BytesMut::new(),
    };
    let connecting =
        tokio::spawn(async move { Connection::handshake(client, "old:9092", &options()).await });
    let req = peer.read_request().await;
    assert_eq!(req.version, 3);
    // An old broker answers UNSUPPORTED_VERSION in the v0 layout, listing ApiVersions 0..=2.
    let refusal = ApiVersionsResponse::default()
        .with_error_code(35)
        .with_api_keys(vec![ApiVersion::default()
            .with_api_key(ApiKey::ApiVersions as i16)
            .with_max_version(2)]);
    let frame = response_frame(ApiKey::ApiVersions, 0, req.correlation_id, &refusal);
    peer.write_raw(&frame).await;
    let req = peer.read_request().await;
    assert_eq!((req.api, req.version), (ApiKey::ApiVersions, 2));
    let mut old = api_versions_response();
    old.api_keys.retain(|k| k.api_key != ApiKey::Fetch as i16);
    peer.answer(&req, &old).await;
    let conn = connecting.await.unwrap().unwrap();
    assert_eq!(conn.version(ApiKey::Metadata).unwrap(), 13);
    let err = conn.version(ApiKey::Fetch).unwrap_err();
    assert!(
        err.to_string().contains("no common version of Fetch"),
        "{err}"
    );
}

#[tokio::test]
async fn responses_out_of_order_reach_their_requests() {
    let (conn, mut peer) = pair(options()).await;
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let conn = conn.clone();
            tokio::spawn(async move { conn.request_at(&metadata_request(), 12).await })
        })
        .collect();
    let mut reqs = Vec::new();
    for _ in 0..3 {
        reqs.push(peer.read_request().await);
    }
    // Answer last first; each answer carries its correlation id as throttle time.
    for req in reqs.iter().rev() {
        let body = MetadataResponse::default().with_throttle_time_ms(req.correlation_id);
        peer.answer(req, &body).await;
    }
    let mut throttles = Vec::new();
    for (call, req) in calls.into_iter().zip(&reqs) {
        let _ = req;
        throttles.push(call.await.unwrap().unwrap().throttle_time_ms);
    }
    throttles.sort();
    let mut ids: Vec<i32> = reqs.iter().map(|r| r.correlation_id).collect();
    ids.sort();
    assert_eq!(throttles, ids);
    assert!(conn.is_usable());
}

/// Starts `n` requests and waits until the peer has read them all.
async fn in_flight(
    conn: &Connection,
    peer: &mut Peer,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<MetadataResponse, Error>>> {
    let calls = (0..n)
        .map(|_| {
            let conn = conn.clone();
            tokio::spawn(async move { conn.request_at(&metadata_request(), 12).await })
        })
        .collect();
    for _ in 0..n {
        peer.read_request().await;
    }
    calls
}

/// Every call fails with a connection error matching `expected`, and so does the next request.
async fn all_fail(
    conn: &Connection,
    calls: Vec<tokio::task::JoinHandle<Result<MetadataResponse, Error>>>,
    expected: impl Fn(&NetError) -> bool,
) {
    for call in calls {
        let err = net_error(call.await.unwrap().unwrap_err());
        assert!(expected(&err), "unexpected error: {err:?}");
    }
    let later = net_error(conn.request_at(&metadata_request(), 12).await.unwrap_err());
    assert!(expected(&later), "later request: {later:?}");
    assert!(!conn.is_usable());
}

#[tokio::test]
async fn an_oversized_frame_fails_every_pending_request() {
    let (conn, mut peer) = pair(options()).await;
    let calls = in_flight(&conn, &mut peer, 3).await;
    peer.write_raw(&(64 * 1024 * 1024i32).to_be_bytes()).await;
    all_fail(&conn, calls, |e| {
        matches!(
            e,
            NetError::Protocol {
                source: ProtocolError::Frame(crate::wire::FrameError::TooLarge {
                    limit: 1_048_576,
                    actual: 67_108_864
                }),
                ..
            }
        )
    })
    .await;
}

#[tokio::test]
async fn a_peer_closing_mid_frame_fails_every_pending_request() {
    let (conn, mut peer) = pair(options()).await;
    let calls = in_flight(&conn, &mut peer, 2).await;
    peer.write_raw(&[0, 0, 0, 100, 0, 0]).await;
    drop(peer);
    all_fail(&conn, calls, |e| {
        matches!(
            e,
            NetError::Closed {
                mid_frame: true,
                ..
            }
        )
    })
    .await;
}

#[tokio::test]
async fn garbage_bytes_fail_every_pending_request() {
    // A negative frame size.
    let (conn, mut peer) = pair(options()).await;
    let calls = in_flight(&conn, &mut peer, 2).await;
    peer.write_raw(&[0xff, 0xff, 0xff, 0xf0, 1, 2, 3]).await;
    all_fail(&conn, calls, |e| e.to_string().contains("negative")).await;

    // A well-formed frame answering a correlation id nobody asked for.
    let (conn, mut peer) = pair(options()).await;
    let calls = in_flight(&conn, &mut peer, 2).await;
    let frame = response_frame(ApiKey::Metadata, 12, 987_654, &MetadataResponse::default());
    peer.write_raw(&frame).await;
    all_fail(&conn, calls, |e| {
        matches!(
            e,
            NetError::UnexpectedResponse {
                correlation_id: 987_654,
                ..
            }
        )
    })
    .await;

    // A frame too short to hold a correlation id.
    let (conn, mut peer) = pair(options()).await;
    let calls = in_flight(&conn, &mut peer, 1).await;
    peer.write_raw(&[0, 0, 0, 2, 0, 1]).await;
    all_fail(&conn, calls, |e| matches!(e, NetError::Protocol { .. })).await;
}

#[tokio::test]
async fn a_garbled_body_is_an_error_for_that_request_only() {
    let (conn, mut peer) = pair(options()).await;
    let call = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.request_at(&metadata_request(), 12).await })
    };
    let req = peer.read_request().await;
    let mut frame = BytesMut::new();
    frame.put_i32(4 + 3);
    frame.put_i32(req.correlation_id);
    frame.extend_from_slice(&[0xff, 0xff, 0xff]);
    peer.write_raw(&frame).await;
    let err = call.await.unwrap().unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Net(NetError::Protocol {
                source: ProtocolError::Malformed {
                    api: ApiKey::Metadata,
                    version: 12,
                    ..
                },
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(err.action(), crate::Action::Fatal, "{err}");
    // The stream is still in step: the next request works.
    let call = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.request_at(&metadata_request(), 12).await })
    };
    let req = peer.read_request().await;
    peer.answer(&req, &MetadataResponse::default()).await;
    call.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_silent_peer_times_out_without_hanging() {
    let (conn, mut peer) = pair(options()).await;
    let started = Instant::now();
    let calls = in_flight(&conn, &mut peer, 2).await;
    all_fail(&conn, calls, |e| {
        matches!(e, NetError::RequestTimeout { after_ms: 500, .. })
    })
    .await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
}

#[tokio::test]
async fn a_cancelled_request_does_not_break_the_stream() {
    let (conn, mut peer) = pair(options()).await;
    let abandoned = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.request_at(&metadata_request(), 12).await })
    };
    let first = peer.read_request().await;
    abandoned.abort();
    let _ = abandoned.await;
    let call = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.request_at(&metadata_request(), 12).await })
    };
    let second = peer.read_request().await;
    // The late answer to the abandoned request is dropped quietly.
    peer.answer(&first, &MetadataResponse::default()).await;
    peer.answer(
        &second,
        &MetadataResponse::default().with_throttle_time_ms(7),
    )
    .await;
    assert_eq!(call.await.unwrap().unwrap().throttle_time_ms, 7);
    assert!(conn.is_usable());
}

async fn sasl_pair(password_ok: bool) -> Result<Connection, Error> {
    let (client, server) = tokio::io::duplex(1 << 16);
    let mut peer = Peer {
        io: server,
        buf: BytesMut::new(),
    };
    let opts = ConnectOptions {
        security_protocol: crate::config::SecurityProtocol::SaslPlaintext,
        sasl: SaslConfig {
            mechanism: SaslMechanism::Plain,
            username: "alice".into(),
            password: "secret".into(),
            ..SaslConfig::default()
        },
        ..options()
    };
    let connecting =
        tokio::spawn(async move { Connection::handshake(client, "sasl:1", &opts).await });
    let req = peer.read_request().await;
    peer.answer(&req, &api_versions_response()).await;
    let req = peer.read_request().await;
    assert_eq!((req.api, req.version), (ApiKey::SaslHandshake, 1));
    let handshake =
        SaslHandshakeResponse::default().with_mechanisms(vec![StrBytes::from_static_str("PLAIN")]);
    peer.answer(&req, &handshake).await;
    let req = peer.read_request().await;
    assert_eq!((req.api, req.version), (ApiKey::SaslAuthenticate, 2));
    // The request body is the auth bytes (compact bytes) then tagged fields.
    assert!(req.body.windows(13).any(|w| w == b"\0alice\0secret"));
    let answer = if password_ok {
        SaslAuthenticateResponse::default()
    } else {
        SaslAuthenticateResponse::default()
            .with_error_code(58)
            .with_error_message(Some(StrBytes::from_static_str(
                "Invalid username or password",
            )))
    };
    peer.answer(&req, &answer).await;
    // Keep the peer alive until the client is done.
    let result = connecting.await.unwrap();
    drop(peer);
    result
}

#[tokio::test]
async fn sasl_plain_succeeds_and_fails_clearly() {
    sasl_pair(true).await.unwrap();
    let err = sasl_pair(false).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("SASL PLAIN") && text.contains("Invalid username or password"),
        "{text}"
    );
    assert_eq!(err.action(), crate::error::Action::Fatal);
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let started = Instant::now();
    let err = Connection::connect(&addr, &options()).await.unwrap_err();
    assert!(
        matches!(err, Error::Net(NetError::Connect { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains(&addr));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_listener_that_never_answers_times_out_at_connect() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let _accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let opts = ConnectOptions {
        connect_timeout: Duration::from_millis(300),
        ..options()
    };
    let started = Instant::now();
    let err = Connection::connect(&addr, &opts).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Net(NetError::ConnectTimeout { after_ms: 300, .. })
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}
