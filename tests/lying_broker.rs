//! A broker that lies, on loopback: for every API spate sends, at every version it speaks,
//! answers with huge and negative counts, strings longer than the frame and varints that never
//! end; and on the frame and the connection, a 2 GB frame size, a frame that stalls, a wrong
//! correlation id, and half a frame then a close. Each must give a typed error naming the API,
//! within its bound (the request timeout for a stall, under two seconds for the rest), with
//! peak memory growth under 64 MiB, no panic, no abort, no hang. The CLI exits non-zero with
//! the same error, and gives up on an unreachable bootstrap broker within about ten seconds.

#[path = "support/liar.rs"]
mod liar;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::*;
use liar::{applies, every_api_version, Attack, Liar, Script};
use spate::net::{ConnectOptions, Connection, NetError};
use spate::wire::{encode_request, FrameCodec, FrameError, ProtocolError};
use spate::{Action, Error};

const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// The bound for everything but a stall.
const QUICK: Duration = Duration::from_secs(2);

fn options() -> ConnectOptions {
    ConnectOptions {
        request_timeout: REQUEST_TIMEOUT,
        connect_timeout: Duration::from_secs(2),
        ..ConnectOptions::default()
    }
}

/// Sends `api`'s request (its default content) at `version`, the way the client does.
async fn send(conn: &Connection, api: ApiKey, version: i16) -> Result<(), Error> {
    macro_rules! request {
        ($($key:ident => $t:ty),* $(,)?) => {
            match api {
                $(ApiKey::$key => conn.request_at(&<$t>::default(), version).await.map(drop),)*
                ApiKey::Fetch => {
                    // The consumer's path: spate's own Fetch decoder.
                    let codec = FrameCodec::default();
                    let frame = conn
                        .roundtrip(ApiKey::Fetch, version, REQUEST_TIMEOUT, |h, dst| {
                            encode_request(&codec, h, &FetchRequest::default(), dst)
                        })
                        .await?;
                    spate::wire::fetch::FetchResponse::decode_frame(version, &frame)
                        .map(drop)
                        .map_err(|e| conn.protocol_error(e))
                }
                other => panic!("no request for {other:?}"),
            }
        };
    }
    request!(
        Produce => ProduceRequest,
        ListOffsets => ListOffsetsRequest,
        Metadata => MetadataRequest,
        OffsetCommit => OffsetCommitRequest,
        OffsetFetch => OffsetFetchRequest,
        FindCoordinator => FindCoordinatorRequest,
        JoinGroup => JoinGroupRequest,
        Heartbeat => HeartbeatRequest,
        LeaveGroup => LeaveGroupRequest,
        SyncGroup => SyncGroupRequest,
        DescribeGroups => DescribeGroupsRequest,
        ListGroups => ListGroupsRequest,
        SaslHandshake => SaslHandshakeRequest,
        ApiVersions => ApiVersionsRequest,
        CreateTopics => CreateTopicsRequest,
        DeleteTopics => DeleteTopicsRequest,
        InitProducerId => InitProducerIdRequest,
        AddPartitionsToTxn => AddPartitionsToTxnRequest,
        AddOffsetsToTxn => AddOffsetsToTxnRequest,
        EndTxn => EndTxnRequest,
        TxnOffsetCommit => TxnOffsetCommitRequest,
        DescribeConfigs => DescribeConfigsRequest,
        SaslAuthenticate => SaslAuthenticateRequest,
        OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest,
        ShareGroupHeartbeat => ShareGroupHeartbeatRequest,
        ShareFetch => ShareFetchRequest,
        ShareAcknowledge => ShareAcknowledgeRequest,
        DeleteRecords => DeleteRecordsRequest,
        DeleteGroups => DeleteGroupsRequest,
        CreatePartitions => CreatePartitionsRequest,
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
        OffsetDelete => OffsetDeleteRequest,
    )
}

/// Peak resident memory of this process so far.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// Counts panics anywhere in the process (a connection task that panicked would otherwise
/// only show as a closed connection).
fn count_panics() -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        seen.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    count
}

fn check_body_lie(api: ApiKey, version: i16, attack: Attack, addr: &str, err: &Error) {
    let what = format!("{api:?} v{version} {attack:?}");
    assert_eq!(err.action(), Action::Fatal, "{what}: {err}");
    let Error::Net(NetError::Protocol { broker, source }) = err else {
        panic!("{what}: expected a protocol error, got {err:?}");
    };
    assert_eq!(broker, addr, "{what}");
    let names_it = match source {
        ProtocolError::Invalid {
            api: a, version: v, ..
        }
        | ProtocolError::Malformed {
            api: a, version: v, ..
        } => *a == api && *v == version,
        _ => false,
    };
    assert!(names_it, "{what}: {source:?}");
    assert!(
        err.to_string().contains(&format!("{api:?} v{version}")),
        "{what}: {err}"
    );
}

fn check_frame_lie(api: ApiKey, version: i16, attack: Attack, err: &Error) {
    let what = format!("{api:?} v{version} {attack:?}");
    assert!(
        err.to_string().contains(&format!("{api:?} v{version}")),
        "{what}: {err}"
    );
    let Error::Net(net) = err else {
        panic!("{what}: expected a connection error, got {err:?}");
    };
    let cause = net.cause();
    match attack {
        Attack::GiantFrame => assert!(
            matches!(
                cause,
                NetError::Protocol {
                    source: ProtocolError::Frame(FrameError::TooLarge {
                        actual: 2147483647,
                        ..
                    }),
                    ..
                }
            ),
            "{what}: {err:?}"
        ),
        Attack::StallInFrame => assert!(
            matches!(cause, NetError::RequestTimeout { api: a, .. } if *a == api),
            "{what}: {err:?}"
        ),
        Attack::WrongCorrelation => assert!(
            matches!(cause, NetError::UnexpectedResponse { .. }),
            "{what}: {err:?}"
        ),
        Attack::TruncateAndClose => assert!(
            matches!(
                cause,
                NetError::Closed {
                    mid_frame: true,
                    ..
                }
            ),
            "{what}: {err:?}"
        ),
        _ => unreachable!(),
    }
    let fatal = matches!(attack, Attack::GiantFrame | Attack::WrongCorrelation);
    let expected = if fatal {
        Action::Fatal
    } else {
        Action::Reconnect
    };
    assert_eq!(err.action(), expected, "{what}: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_against_every_lie() {
    let panics = count_panics();
    let apis = every_api_version();
    let liar = Liar::start(Script {
        target: ApiKey::Metadata,
        attack: Attack::HugeCount,
    })
    .await;
    // Warm up (runtime, connection, allocator) before taking the baseline.
    let conn = Connection::connect(&liar.addr, &options()).await.unwrap();
    let baseline = peak_rss();

    let mut told = 0;
    for &(api, version) in &apis {
        for attack in Attack::BODY {
            if !applies(api, version, attack) {
                continue;
            }
            liar.set(Script {
                target: api,
                attack,
            });
            let started = Instant::now();
            let err = send(&conn, api, version).await.unwrap_err();
            assert!(
                started.elapsed() < QUICK,
                "{api:?} v{version} {attack:?}: {:?}",
                started.elapsed()
            );
            check_body_lie(api, version, attack, &liar.addr, &err);
            told += 1;
        }
    }
    // A body that lies fails its request only: the frames stayed in step.
    assert!(conn.is_usable());
    // Every API can be lied to at the latest version it speaks.
    for (api, version) in apis.iter().filter(|(a, v)| !apis.contains(&(*a, v + 1))) {
        assert!(
            Attack::BODY
                .iter()
                .filter(|a| applies(*api, *version, **a))
                .count()
                >= 2,
            "{api:?} v{version}: too few lies apply"
        );
    }

    // The frame and connection lies, at each API's newest version (on a fresh connection each:
    // these poison it).
    for (api, version) in apis
        .iter()
        .copied()
        .filter(|(a, v)| !apis.contains(&(*a, v + 1)))
    {
        if api == ApiKey::ApiVersions {
            continue; // sent at connect; its lies are connect failures, checked below
        }
        for attack in Attack::FRAME {
            let conn = Connection::connect(&liar.addr, &options()).await.unwrap();
            liar.set(Script {
                target: api,
                attack,
            });
            let started = Instant::now();
            let err = send(&conn, api, version).await.unwrap_err();
            let bound = match attack {
                Attack::StallInFrame => REQUEST_TIMEOUT + Duration::from_millis(500),
                _ => QUICK,
            };
            assert!(
                started.elapsed() < bound,
                "{api:?} {attack:?}: {:?}",
                started.elapsed()
            );
            if attack == Attack::StallInFrame {
                assert!(
                    started.elapsed() >= REQUEST_TIMEOUT,
                    "{api:?}: stalled too short"
                );
            }
            check_frame_lie(api, version, attack, &err);
            assert!(!conn.is_usable(), "{api:?} {attack:?}");
            told += 1;
        }
    }
    // ApiVersions lies: the connect itself fails, naming the API.
    let body = Attack::BODY
        .into_iter()
        .filter(|a| applies(ApiKey::ApiVersions, 3, *a));
    for attack in body.chain(Attack::FRAME) {
        liar.set(Script {
            target: ApiKey::ApiVersions,
            attack,
        });
        let started = Instant::now();
        let err = Connection::connect(&liar.addr, &options())
            .await
            .unwrap_err();
        assert!(started.elapsed() < QUICK + REQUEST_TIMEOUT, "{attack:?}");
        assert!(err.to_string().contains("ApiVersions"), "{attack:?}: {err}");
        told += 1;
    }

    let growth = peak_rss().saturating_sub(baseline);
    assert!(told > 400, "{told} lies told");
    assert!(
        growth < 64 << 20,
        "peak memory grew by {} MiB",
        growth >> 20
    );
    assert_eq!(panics.load(Ordering::SeqCst), 0, "something panicked");
    eprintln!(
        "{told} lies told to {} API versions; peak memory grew by {} KiB",
        apis.len(),
        growth >> 10
    );
}

/// Runs the CLI against `addr` and returns (success, stderr, time taken).
fn spate(args: &[&str], stdin: &[u8]) -> (bool, String, Duration) {
    use std::io::Write;
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It may exit before reading its input.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_exits_with_the_lie() {
    let cases: &[(ApiKey, Attack, &[&str], &str)] = &[
        (
            ApiKey::Metadata,
            Attack::HugeCount,
            &["metadata"],
            "entries announced",
        ),
        (
            ApiKey::Metadata,
            Attack::WrongCorrelation,
            &["topic", "list"],
            "correlation id",
        ),
        (
            ApiKey::CreateTopics,
            Attack::NegativeCount,
            &[
                "topic",
                "create",
                "-t",
                "x",
                "--partitions",
                "1",
                "--replication-factor",
                "1",
            ],
            "CreateTopics",
        ),
        (
            ApiKey::InitProducerId,
            Attack::Unterminated,
            &["produce", "-t", "t"],
            "InitProducerId",
        ),
        (
            ApiKey::Produce,
            Attack::HugeCount,
            &["produce", "-t", "t"],
            "Produce",
        ),
        (
            ApiKey::ListOffsets,
            Attack::HugeCount,
            &["consume", "-t", "t", "-e"],
            "ListOffsets",
        ),
        (
            ApiKey::Fetch,
            Attack::HugeCount,
            &["consume", "-t", "t", "-e"],
            "Fetch",
        ),
        (
            ApiKey::Fetch,
            Attack::GiantFrame,
            &["consume", "-t", "t", "-e"],
            "Fetch",
        ),
    ];
    for &(target, attack, command, says) in cases {
        let liar = Liar::start(Script { target, attack }).await;
        let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        args.extend(["-b".to_owned(), liar.addr.clone()]);
        let (ok, stderr, took) = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            spate(&args, b"one record\n")
        })
        .await
        .unwrap();
        let what = format!("{command:?} with {target:?} {attack:?}");
        assert!(!ok, "{what}: exited 0");
        assert!(stderr.contains(says), "{what}: {stderr}");
        assert!(
            stderr.contains(&liar.addr),
            "{what}: names the broker: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert!(took < Duration::from_secs(5), "{what}: took {took:?}");
        eprintln!("{what}: {took:?}: {}", stderr.trim());
    }
}

#[test]
fn the_cli_gives_up_on_an_unreachable_bootstrap_within_about_ten_seconds() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let (ok, stderr, took) = spate(&["metadata", "-b", &addr], b"");
    assert!(!ok);
    assert!(
        stderr.contains(&addr) && stderr.contains("refused"),
        "{stderr}"
    );
    // Retries stop when the next backoff (up to `retry.backoff.max.ms`, 1 s, with jitter)
    // would end past the 10 s deadline, so the CLI may give up a little over a second early.
    assert!(
        took >= Duration::from_secs(8) && took < Duration::from_secs(13),
        "took {took:?}: {stderr}"
    );
    // -X still decides.
    let (ok, stderr, took) = spate(
        &["metadata", "-b", &addr, "-X", "default.api.timeout.ms=1000"],
        b"",
    );
    assert!(!ok);
    assert!(took < Duration::from_secs(4), "took {took:?}: {stderr}");
}

#[test]
fn frames_grow_with_what_arrives() {
    // 90 MiB announced, 1 KiB sent: the reader holds about what arrived.
    let codec = FrameCodec::default();
    let mut buf = BytesMut::from(&(90i32 << 20).to_be_bytes()[..]);
    buf.extend_from_slice(&[0; 1024]);
    assert_eq!(codec.decode(&mut buf), Ok(None));
    assert!(buf.capacity() < 4 << 20, "{}", buf.capacity());
}
