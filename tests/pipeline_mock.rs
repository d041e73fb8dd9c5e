//! Pipelines on the embedded cluster (`--features mock`): exactly-once through a killed
//! process (tansu does not filter aborted records for read_committed readers, so this one runs
//! here, read back by librdkafka with read_committed), and at-least-once through broker faults.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use spate::consumer::{ConsumerConfig, OffsetReset};
use spate::mock::{Fault, MockCluster};
use spate::pipeline::{ops, Chain, Guarantee, Pipeline};
use spate::producer::{Producer, ProducerConfig, Record};
use spate::wire::ApiKey;
use spate::ClientConfig;
use support::{read_with_librdkafka, Digest};

const PARTITIONS: i32 = 2;

/// Writes `n` records ("k<i>", "value <i> in lower case") to partition i % PARTITIONS; returns
/// per partition the digest of the upper-cased records.
async fn fill(cluster: &MockCluster, topic: &str, n: usize) -> Vec<Digest> {
    let producer = Producer::new(ProducerConfig::new(&cluster.bootstrap()))
        .await
        .unwrap();
    let mut expected = vec![Digest::default(); PARTITIONS as usize];
    let mut last = None;
    for i in 0..n {
        let key = format!("k{i}");
        let value = format!("value {i} in lower case");
        let p = i as i32 % PARTITIONS;
        expected[p as usize].add(
            Some(key.as_bytes()),
            Some(value.to_ascii_uppercase().as_bytes()),
            &[],
        );
        let record = Record::new(topic)
            .key(key.as_bytes())
            .value(value.as_bytes())
            .partition(p);
        last = Some(producer.send(record).await.unwrap());
    }
    last.unwrap().await.unwrap();
    producer.close().await.unwrap();
    expected
}

fn spawn_pipe_with(bootstrap: &str, exit_at_end: bool, extra: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spate"));
    cmd.args([
        "pipe", "-b", bootstrap, "--from", "in", "--to", "out", "-G", "eo",
    ])
    .args(extra)
    .args([
        "--map",
        "uppercase",
        "--exactly-once",
        "--commit-interval-ms",
        "100",
    ])
    .args([
        "-X",
        "session.timeout.ms=3000",
        "-X",
        "heartbeat.interval.ms=300",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if exit_at_end {
        cmd.arg("-e");
    }
    cmd.spawn().expect("spawn spate pipe")
}

/// Exactly-once: `spate pipe --exactly-once` is killed (SIGKILL) in the middle of its work,
/// with a transaction open, then started again and run to the end. librdkafka, reading the
/// output with read_committed, sees every input record upper-cased exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_exactly_once_pipeline_writes_each_record_once() {
    let n = 200_000;
    let cluster = MockCluster::start(3).await.unwrap();
    cluster.create_topic("in", PARTITIONS);
    cluster.create_topic("out", PARTITIONS);
    let expected = fill(&cluster, "in", n).await;
    let bootstrap = cluster.bootstrap();

    // The pipeline would otherwise finish in a few tens of milliseconds: slow its first
    // produce requests so that the kill lands in the middle of the run.
    cluster.inject(
        ApiKey::Produce,
        Fault::Delay(Duration::from_millis(10)),
        100,
    );
    // A static member: its restart keeps its transactional.id (spate-pipe-eo-one), so the
    // restart fences the killed run and aborts the transaction it left open at once.
    let static_member = ["-X", "group.instance.id=one"];
    let mut first = spawn_pipe_with(&bootstrap, false, &static_member);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let written: i64 = (0..PARTITIONS).map(|p| cluster.log_end("out", p)).sum();
        if written > 30_000 {
            assert!(
                written < n as i64,
                "killed in the middle, not after the end"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pipeline wrote nothing in 60 s"
        );
        if let Some(status) = first.try_wait().unwrap() {
            panic!("spate pipe exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();

    let second = spawn_pipe_with(&bootstrap, true, &static_member);
    let done = tokio::task::spawn_blocking(move || second.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        done.status.success(),
        "the restarted pipeline failed: {}",
        String::from_utf8_lossy(&done.stderr)
    );

    let read = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || {
            (
                read_with_librdkafka(&bootstrap, "out", PARTITIONS, "read_committed"),
                read_with_librdkafka(&bootstrap, "out", PARTITIONS, "read_uncommitted"),
            )
        }
    })
    .await
    .unwrap();
    let (committed, uncommitted) = read;
    for p in 0..PARTITIONS as usize {
        assert_eq!(
            committed[p].count, expected[p].count,
            "partition {p}: count"
        );
        assert_eq!(
            committed[p].sha256,
            expected[p].hex(),
            "partition {p}: exactly once, in order"
        );
    }
    let all: u64 = uncommitted.iter().map(|d| d.count).sum();
    assert!(
        all > n as u64,
        "the killed run left aborted output ({all} records in all), so the check above could fail"
    );
}

/// At-least-once through broker faults: produce errors and lost responses on the output,
/// fetch errors on the input, a leader move on each side. Nothing is missing; the idempotent
/// producer keeps retries from duplicating, so the output is the input exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_at_least_once_pipeline_rides_out_broker_faults() {
    let n = 50_000;
    let cluster = MockCluster::start(3).await.unwrap();
    cluster.create_topic("in", PARTITIONS);
    cluster.create_topic("out", PARTITIONS);
    let expected = fill(&cluster, "in", n).await;
    let mut client =
        ClientConfig::new(&cluster.bootstrap()).request_timeout(Duration::from_secs(2));
    client.retry_backoff = Duration::from_millis(10);
    let consumer = ConsumerConfig {
        client: client.clone(),
        ..ConsumerConfig::default()
    }
    .group_id("alo")
    .session_timeout(Duration::from_secs(3), Duration::from_millis(300))
    .auto_offset_reset(OffsetReset::Earliest);
    let producer = ProducerConfig {
        client,
        ..ProducerConfig::default()
    }
    .batch_size(4096);
    cluster.inject(ApiKey::Produce, Fault::Error(6), 3); // NOT_LEADER_OR_FOLLOWER
    cluster.inject(ApiKey::Produce, Fault::DropResponse, 2);
    cluster.inject(ApiKey::Fetch, Fault::Error(6), 2);
    cluster.inject(ApiKey::Fetch, Fault::DropRequest, 1);
    cluster.inject(ApiKey::OffsetCommit, Fault::Error(16), 1); // NOT_COORDINATOR
    cluster.move_leader("in", 0, 2);
    cluster.move_leader("out", 1, 0);
    let stats = Pipeline::new(consumer, producer)
        .from_topics(&["in"])
        .to_topic("out")
        .operators(|| Chain::new().then(ops::uppercase()))
        .guarantee(Guarantee::AtLeastOnce)
        .commit_interval(Duration::from_millis(50))
        .stop_at_end(true)
        .run()
        .await
        .unwrap();
    assert_eq!(stats.records_in, n as u64);
    assert_eq!(cluster.pending_faults(), 0, "every fault was met");
    for p in 0..PARTITIONS {
        let mut got = Digest::default();
        for (_, key, value) in cluster.records("out", p).unwrap() {
            got.add(key.as_deref(), value.as_deref(), &[]);
        }
        assert_eq!(
            got.count, expected[p as usize].count,
            "partition {p}: count"
        );
        assert_eq!(
            got.hex(),
            expected[p as usize].hex(),
            "partition {p}: content and order"
        );
        assert_eq!(
            cluster.committed("alo", "in", p),
            Some(expected[p as usize].count as i64),
            "partition {p}: committed at the input's end"
        );
    }
}

/// A sink that fails stops the pipeline with its error (no hang while the source waits for
/// more input), and nothing after the failure is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_stops_the_pipeline_with_its_error() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("in", PARTITIONS);
    fill(&cluster, "in", 2_000).await;
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let consumer = ConsumerConfig::new(&cluster.bootstrap())
        .group_id("failing")
        .auto_offset_reset(OffsetReset::Earliest)
        .session_timeout(Duration::from_secs(3), Duration::from_millis(300));
    let pipeline = Pipeline::new(consumer, ProducerConfig::new(&cluster.bootstrap()))
        .from_topics(&["in"])
        .to_fn({
            let seen = seen.clone();
            move |batch| {
                if seen.fetch_add(batch.len(), std::sync::atomic::Ordering::SeqCst) > 500 {
                    return Err(spate::Error::Transaction("the sink is full".into()));
                }
                Ok(())
            }
        });
    let result = tokio::time::timeout(Duration::from_secs(20), pipeline.run())
        .await
        .expect("the pipeline stops instead of hanging");
    let error = result.expect_err("the sink's error");
    assert!(error.to_string().contains("the sink is full"), "{error}");
    let committed: i64 = (0..PARTITIONS)
        .map(|p| cluster.committed("failing", "in", p).unwrap_or(0))
        .sum();
    assert!(
        committed < 2_000,
        "the failed input is not committed ({committed})"
    );
}

/// `spate pipe --exactly-once` stopped with SIGTERM mid-run: it commits the open transaction
/// with its input offsets, leaves the group and exits 0, so what read_committed readers see
/// of the output is exactly the input up to the committed offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_stopped_by_sigterm_commits_and_exits_cleanly() {
    let n = 200_000;
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("in", PARTITIONS);
    cluster.create_topic("out", PARTITIONS);
    fill(&cluster, "in", n).await;
    let bootstrap = cluster.bootstrap();
    // Slow every produce request, so that the signal lands mid-run: at 80 ms a request the run
    // takes several seconds more than the signal needs to arrive, even on a loaded machine
    // (at 20 ms, a full test run on two cores once saw the whole input done first).
    cluster.inject(
        ApiKey::Produce,
        Fault::Delay(Duration::from_millis(80)),
        100_000,
    );
    // Small batches in a small buffer: many produce requests, each slowed, and transactions
    // that end every 100 ms.
    let pipe = spawn_pipe_with(
        &bootstrap,
        false,
        &[
            "-X",
            "batch.size=16384",
            "-X",
            "max.request.size=262144",
            "-X",
            "buffer.memory=262144",
        ],
    );
    let mut pipe = pipe;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while (0..PARTITIONS)
        .map(|p| cluster.log_end("out", p))
        .sum::<i64>()
        < 30_000
    {
        if std::time::Instant::now() > deadline || pipe.try_wait().unwrap().is_some() {
            let _ = pipe.kill();
            let out = pipe.wait_with_output().unwrap();
            panic!("nothing written: {}", String::from_utf8_lossy(&out.stderr));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &pipe.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let done = tokio::task::spawn_blocking(move || pipe.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{}: {stderr}", done.status);
    let committed: Vec<i64> = (0..PARTITIONS)
        .map(|p| cluster.committed("eo", "in", p).unwrap_or(0))
        .collect();
    assert!(committed.iter().sum::<i64>() > 0, "{committed:?}");
    assert!(
        committed.iter().sum::<i64>() < n as i64,
        "stopped in the middle: {committed:?}"
    );
    let read = tokio::task::spawn_blocking(move || {
        read_with_librdkafka(&bootstrap, "out", PARTITIONS, "read_committed")
    })
    .await
    .unwrap();
    for p in 0..PARTITIONS as usize {
        assert_eq!(
            read[p].count as i64, committed[p],
            "partition {p}: the committed output matches the committed input offsets"
        );
    }
    wait_for_empty_group(&cluster, "eo").await;
}

async fn wait_for_empty_group(cluster: &MockCluster, group: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while cluster.group(group).is_some_and(|g| !g.members.is_empty()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pipe did not leave the group: {:?}",
            cluster.group(group)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Exactly-once, in-process, through errors that make a transaction abortable (offsets refused
/// with ILLEGAL_GENERATION, a write refused with INVALID_PRODUCER_EPOCH, KIP-588) and a
/// retriable one on EndTxn: the pipeline aborts, rewinds to the last commit and goes on. The
/// read_committed output is the input exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exactly_once_pipeline_aborts_rewinds_and_goes_on() {
    const ILLEGAL_GENERATION: i16 = 22;
    const INVALID_PRODUCER_EPOCH: i16 = 47;
    const NOT_COORDINATOR: i16 = 16;
    let n = 20_000;
    let cluster = MockCluster::start(3).await.unwrap();
    cluster.create_topic("in", PARTITIONS);
    cluster.create_topic("out", PARTITIONS);
    let expected = fill(&cluster, "in", n).await;
    let mut client =
        ClientConfig::new(&cluster.bootstrap()).request_timeout(Duration::from_secs(2));
    client.retry_backoff = Duration::from_millis(10);
    let consumer = ConsumerConfig {
        client: client.clone(),
        ..ConsumerConfig::default()
    }
    .group_id("recovers")
    .session_timeout(Duration::from_secs(3), Duration::from_millis(300))
    .auto_offset_reset(OffsetReset::Earliest);
    let producer = ProducerConfig {
        client,
        ..ProducerConfig::default()
    }
    .batch_size(4096);
    // The first transaction fails on its first write; the second (the same input, read
    // again) on its offsets; the third commits after a retried EndTxn.
    cluster.inject(ApiKey::Produce, Fault::Error(INVALID_PRODUCER_EPOCH), 1);
    cluster.inject(ApiKey::TxnOffsetCommit, Fault::Error(ILLEGAL_GENERATION), 1);
    cluster.inject(ApiKey::EndTxn, Fault::Error(NOT_COORDINATOR), 1);
    let stats = Pipeline::new(consumer, producer)
        .from_topics(&["in"])
        .to_topic("out")
        .operators(|| Chain::new().then(ops::uppercase()))
        .guarantee(Guarantee::ExactlyOnce)
        .commit_interval(Duration::from_millis(20))
        .stop_at_end(true)
        .run()
        .await
        .unwrap();
    assert_eq!(cluster.pending_faults(), 0, "every fault was met");
    assert_eq!(stats.aborts, 2, "{stats:?}");
    assert!(
        stats.records_in > n as u64,
        "aborted input is read again: {stats:?}"
    );
    let bootstrap = cluster.bootstrap();
    let read = tokio::task::spawn_blocking(move || {
        read_with_librdkafka(&bootstrap, "out", PARTITIONS, "read_committed")
    })
    .await
    .unwrap();
    for p in 0..PARTITIONS as usize {
        assert_eq!(read[p].count, expected[p].count, "partition {p}: count");
        assert_eq!(
            read[p].sha256,
            expected[p].hex(),
            "partition {p}: exactly once"
        );
        assert_eq!(
            cluster.committed("recovers", "in", p as i32),
            Some(expected[p].count as i64)
        );
    }
}

/// Exactly-once, a transaction that outlives `transaction.timeout.ms` (its offset commit held
/// up past it; a held-up first produce would not do under transactions v2, where the
/// transaction starts on the broker only when that produce arrives): the coordinator aborts it
/// and fences the producer. A dynamic member starts
/// a new producer and goes on from the last commit (as Kafka Streams does), and the output is
/// still the input exactly once; a static member stops with the fencing error, since for it a
/// fenced producer means a newer incarnation runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_transaction_gets_a_new_producer_unless_the_member_is_static() {
    for static_member in [false, true] {
        let n = 5_000;
        let cluster = MockCluster::start(1).await.unwrap();
        cluster.create_topic("in", PARTITIONS);
        cluster.create_topic("out", PARTITIONS);
        let expected = fill(&cluster, "in", n).await;
        let mut consumer = ConsumerConfig::new(&cluster.bootstrap())
            .group_id("slow")
            .session_timeout(Duration::from_secs(3), Duration::from_millis(300))
            .auto_offset_reset(OffsetReset::Earliest);
        if static_member {
            consumer = consumer.group_instance_id("one");
        }
        let producer = ProducerConfig::new(&cluster.bootstrap())
            .transaction_timeout(Duration::from_millis(1000));
        cluster.inject(
            ApiKey::TxnOffsetCommit,
            Fault::Delay(Duration::from_millis(2500)),
            1,
        );
        let result = Pipeline::new(consumer, producer)
            .from_topics(&["in"])
            .to_topic("out")
            .operators(|| Chain::new().then(ops::uppercase()))
            .guarantee(Guarantee::ExactlyOnce)
            .commit_interval(Duration::from_millis(50))
            .stop_at_end(true)
            .run()
            .await;
        if static_member {
            let err = result.expect_err("a static member stops when fenced");
            assert!(matches!(err, spate::Error::ProducerFenced { .. }), "{err}");
            continue;
        }
        let stats = result.unwrap();
        assert!(stats.aborts >= 1, "{stats:?}");
        let bootstrap = cluster.bootstrap();
        let read = tokio::task::spawn_blocking(move || {
            read_with_librdkafka(&bootstrap, "out", PARTITIONS, "read_committed")
        })
        .await
        .unwrap();
        for p in 0..PARTITIONS as usize {
            assert_eq!(read[p].count, expected[p].count, "partition {p}: count");
            assert_eq!(read[p].sha256, expected[p].hex(), "partition {p}");
        }
    }
}
