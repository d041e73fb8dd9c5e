//! Request round trips per second on one connection: one at a time against pipelined.
//!
//! The peer is an in-process responder on a loopback TCP port, on its own thread, that answers
//! every request with a prepared ApiVersions response (all it does per request is patch the
//! correlation id), so the figure is the client's cost plus loopback, not a broker's.
//! Run: `cargo bench --bench roundtrip`.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::future::join_all;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use spate::net::{ConnectOptions, Connection};
use spate::wire::versions::supported_api_versions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Requests per measured iteration.
const REQUESTS: usize = 1000;

/// The response body after the correlation id: ApiVersions v3 listing what spate speaks.
fn response_body() -> Vec<u8> {
    let body = ApiVersionsResponse::default().with_api_keys(supported_api_versions());
    let mut buf = BytesMut::new();
    ResponseHeader::default().encode(&mut buf, 0).unwrap();
    body.encode(&mut buf, 3).unwrap();
    buf[4..].to_vec() // without the (placeholder) correlation id
}

/// Starts the responder and returns its address.
fn start_responder() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let body = response_body();
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                socket.set_nodelay(true).unwrap();
                let body = body.clone();
                tokio::spawn(async move {
                    let mut input = BytesMut::with_capacity(1 << 16);
                    let mut output = BytesMut::with_capacity(1 << 16);
                    loop {
                        if socket.read_buf(&mut input).await.unwrap_or(0) == 0 {
                            return;
                        }
                        // Answer every whole request in the buffer with one write.
                        while input.len() >= 12 {
                            let size = (&input[..4]).get_i32() as usize;
                            if input.len() < 4 + size {
                                break;
                            }
                            let correlation_id = (&input[8..12]).get_i32();
                            input.advance(4 + size);
                            output.put_i32(4 + body.len() as i32);
                            output.put_i32(correlation_id);
                            output.extend_from_slice(&body);
                        }
                        if socket.write_all(&output).await.is_err() {
                            return;
                        }
                        output.clear();
                    }
                });
            }
        });
    });
    addr
}

fn roundtrips(c: &mut Criterion) {
    let addr = start_responder();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let conn = rt
        .block_on(Connection::connect(&addr, &ConnectOptions::default()))
        .unwrap();
    let request = ApiVersionsRequest::default();

    let mut group = c.benchmark_group("roundtrip");
    group.throughput(Throughput::Elements(REQUESTS as u64));
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(30);
    group.bench_function("one_at_a_time", |b| {
        b.iter(|| {
            rt.block_on(async {
                for _ in 0..REQUESTS {
                    black_box(conn.request_at(&request, 3).await.unwrap());
                }
            })
        })
    });
    group.bench_function("pipelined", |b| {
        b.iter(|| {
            rt.block_on(async {
                let all = join_all((0..REQUESTS).map(|_| conn.request_at(&request, 3))).await;
                for r in all {
                    black_box(r.unwrap());
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, roundtrips);
criterion_main!(benches);
