//! The producer under injected faults, on the embedded cluster (`--features mock`): lost
//! responses, dropped connections, retriable and fatal errors, a moved leader, a full buffer.
//! The cluster checks CRCs and idempotent sequences as Kafka does and keeps what it wrote, so
//! each test compares the log with what was sent.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use spate::mock::{Fault, MockCluster};
use spate::producer::{Acks, Delivery, Producer, ProducerConfig, Record};
use spate::wire::ApiKey;
use spate::ClientConfig;
use support::{committed_offset, read_with_librdkafka, Digest};

const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const REQUEST_TIMED_OUT: i16 = 7;
const NOT_ENOUGH_REPLICAS: i16 = 19;
const INVALID_RECORD: i16 = 87;

fn config(cluster: &MockCluster) -> ProducerConfig {
    let mut client = ClientConfig::new(&cluster.bootstrap())
        .request_timeout(Duration::from_secs(5))
        .api_timeout(Duration::from_secs(10));
    client.retry_backoff = Duration::from_millis(5);
    ProducerConfig {
        client,
        ..ProducerConfig::default()
    }
    // Small batches and a short linger: many requests in flight when a fault lands.
    .batch_size(2048)
    .linger(Duration::from_millis(1))
}

fn value(i: usize) -> String {
    format!("record-{i:08}")
}

/// Sends `n` keyed records, arming `faults` as it goes (at the record index given).
async fn send_with_faults(
    producer: &Producer,
    cluster: &MockCluster,
    topic: &str,
    n: usize,
    faults: &[(usize, ApiKey, Fault, usize)],
) -> Vec<(String, Delivery)> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        for (at, api, fault, times) in faults {
            if *at == i {
                cluster.inject(*api, *fault, *times);
            }
        }
        if i == n / 2 {
            // A leader moves mid-stream: the old leader answers NOT_LEADER_OR_FOLLOWER.
            let old = cluster.leader(topic, 0).unwrap();
            cluster.move_leader(topic, 0, (old + 1) % 3);
        }
        let v = value(i);
        let key = format!("k{}", i % 97);
        let d = producer
            .send(Record::new(topic).key(key.as_bytes()).value(v.as_bytes()))
            .await
            .unwrap();
        out.push((v, d));
        if i % 1000 == 0 {
            tokio::task::yield_now().await;
        }
    }
    out
}

/// What each partition's log must hold: the values sent to it, in send order.
fn expected_logs(sent: &[(String, i32)]) -> HashMap<i32, Vec<String>> {
    let mut logs: HashMap<i32, Vec<String>> = HashMap::new();
    for (v, p) in sent {
        logs.entry(*p).or_default().push(v.clone());
    }
    logs
}

fn log_values(cluster: &MockCluster, topic: &str, partition: i32) -> Vec<(i64, String)> {
    cluster
        .records(topic, partition)
        .unwrap()
        .into_iter()
        .map(|(offset, _, v)| (offset, String::from_utf8(v.unwrap().to_vec()).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_never_duplicate_reorder_or_lose() {
    let cluster = MockCluster::start(3).await.unwrap();
    let topic = "faults";
    cluster.create_topic(topic, 6);
    let producer = Producer::new(config(&cluster)).await.unwrap();
    let n = 40_000;
    let faults = [
        (2_000, ApiKey::Produce, Fault::DropResponse, 3),
        (8_000, ApiKey::Produce, Fault::Error(REQUEST_TIMED_OUT), 3),
        (14_000, ApiKey::Produce, Fault::DropRequest, 2),
        (
            20_000,
            ApiKey::Produce,
            Fault::Error(NOT_ENOUGH_REPLICAS),
            2,
        ),
        (
            26_000,
            ApiKey::Produce,
            Fault::Error(NOT_LEADER_OR_FOLLOWER),
            3,
        ),
        (
            26_000,
            ApiKey::Metadata,
            Fault::Delay(Duration::from_millis(50)),
            1,
        ),
        (32_000, ApiKey::Produce, Fault::DropResponse, 2),
        (
            32_000,
            ApiKey::Produce,
            Fault::Delay(Duration::from_millis(100)),
            2,
        ),
    ];
    let deliveries = send_with_faults(&producer, &cluster, topic, n, &faults).await;
    producer.flush().await.unwrap();
    assert_eq!(cluster.pending_faults(), 0, "every fault was hit");
    let mut sent = Vec::new();
    let mut acked: HashMap<(i32, i64), String> = HashMap::new();
    for (v, d) in deliveries {
        let p = d.partition();
        let meta = d
            .await
            .unwrap_or_else(|e| panic!("{v} was not acknowledged: {e}"));
        assert!(
            acked.insert((p, meta.offset), v.clone()).is_none(),
            "two records acknowledged at {p}/{}",
            meta.offset
        );
        sent.push((v, p));
    }
    let expected = expected_logs(&sent);
    for p in 0..6 {
        let log = log_values(&cluster, topic, p);
        let values: Vec<String> = log.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(
            values.len(),
            expected.get(&p).map_or(0, Vec::len),
            "partition {p}: nothing duplicated or missing"
        );
        assert_eq!(
            Some(&values),
            expected.get(&p),
            "partition {p}: the log is what was sent, in order"
        );
        for (offset, v) in &log {
            assert_eq!(
                acked.get(&(p, *offset)),
                Some(v),
                "the acknowledged offset of {v}"
            );
        }
    }
    assert!(
        cluster.request_count(ApiKey::Produce) > 20,
        "many produce requests were made"
    );
}

/// Without idempotence, a lost response means the retry writes the batch twice: the check
/// above would catch it. (This is what idempotence is for, and proves the check can fail.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idempotence_a_lost_response_duplicates() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("dups", 1);
    let producer = Producer::new(config(&cluster).idempotence(false).acks(Acks::Leader))
        .await
        .unwrap();
    let d = producer
        .send(Record::new("dups").value(b"once"))
        .await
        .unwrap();
    producer.flush().await.unwrap();
    d.await.unwrap();
    cluster.inject(ApiKey::Produce, Fault::DropResponse, 1);
    let d = producer
        .send(Record::new("dups").value(b"twice"))
        .await
        .unwrap();
    d.await.unwrap();
    let values: Vec<String> = log_values(&cluster, "dups", 0)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, ["once", "twice", "twice"]);
}

/// A batch that fails for good (INVALID_RECORD) fails its records only; the producer takes a
/// new epoch, and later records are written with sequences from 0 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_fails_its_records_and_the_producer_goes_on() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("fatal", 1);
    let producer = Producer::new(config(&cluster)).await.unwrap();
    let first = producer
        .send(Record::new("fatal").value(b"kept-1"))
        .await
        .unwrap();
    producer.flush().await.unwrap();
    first.await.unwrap();
    cluster.inject(ApiKey::Produce, Fault::Error(INVALID_RECORD), 1);
    let failed = producer
        .send(Record::new("fatal").value(b"refused"))
        .await
        .unwrap();
    let err = failed.await.unwrap_err();
    assert_eq!(err.code().map(|c| c.0), Some(INVALID_RECORD), "{err}");
    let later = producer
        .send(Record::new("fatal").value(b"kept-2"))
        .await
        .unwrap();
    later.await.unwrap();
    let values: Vec<String> = log_values(&cluster, "fatal", 0)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, ["kept-1", "kept-2"]);
    assert_eq!(
        cluster.request_count(ApiKey::InitProducerId),
        2,
        "a new epoch was taken"
    );
}

/// A partition that keeps failing fails its records after delivery.timeout.ms, not never.
#[tokio::test]
async fn retries_stop_at_the_delivery_timeout() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("slow", 1);
    cluster.inject(ApiKey::Produce, Fault::Error(REQUEST_TIMED_OUT), 100_000);
    let producer = Producer::new(config(&cluster).delivery_timeout(Duration::from_millis(500)))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let d = producer
        .send(Record::new("slow").value(b"v"))
        .await
        .unwrap();
    let err = d.await.unwrap_err();
    assert!(matches!(err, spate::Error::Timeout { .. }), "{err}");
    assert_eq!(err.code().map(|c| c.0), Some(REQUEST_TIMED_OUT), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// `try_send` never waits (it is not async): an unknown topic is refused at once and looked up
/// in the background, a full buffer is refused at once; what it took is written, in order,
/// and what it refused is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_send_refuses_instead_of_waiting() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("quick", 1);
    let producer = Producer::new(
        config(&cluster)
            .max_request_size(16 * 1024)
            .buffer_memory(32 * 1024),
    )
    .await
    .unwrap();
    let value = |i: usize| format!("{i:0>1000}");
    let refused = |r: Result<Delivery, spate::Error>| match r {
        Err(spate::Error::WouldBlock { reason }) => reason,
        other => panic!("expected WouldBlock, got {other:?}"),
    };
    let reason = refused(producer.try_send(Record::new("quick").value(b"first")));
    assert!(reason.contains("partitions"), "{reason}");
    let mut taken = Vec::new();
    let mut deliveries = Vec::new();
    // The background lookup lands; until then every call is refused at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = value(taken.len());
        match producer.try_send(Record::new("quick").value(v.as_bytes())) {
            Ok(d) => {
                deliveries.push(d);
                taken.push(v);
                break;
            }
            Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A slow broker: the buffer fills and try_send refuses.
    cluster.inject(ApiKey::Produce, Fault::Delay(Duration::from_millis(500)), 1);
    let full = loop {
        let v = value(taken.len());
        match producer.try_send(Record::new("quick").value(v.as_bytes())) {
            Ok(d) => {
                deliveries.push(d);
                taken.push(v);
            }
            Err(e) => break refused(Err(e)),
        }
        assert!(
            taken.len() < 40,
            "32 KiB of buffer took {} records",
            taken.len()
        );
    };
    assert!(full.contains("buffer.memory"), "{full}");
    // Room frees up once the broker answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while taken.len() < 100 {
        let v = value(taken.len());
        match producer.try_send(Record::new("quick").value(v.as_bytes())) {
            Ok(d) => {
                deliveries.push(d);
                taken.push(v);
            }
            Err(e) => {
                refused(Err(e));
                assert!(
                    std::time::Instant::now() < deadline,
                    "the buffer never drained"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    for d in deliveries {
        d.await.unwrap();
    }
    let written: Vec<String> = log_values(&cluster, "quick", 0)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(written, taken, "exactly what try_send took, in order");
}

/// Partitions added to a topic while the producer runs are used once its metadata is
/// refreshed (every metadata.max.age.ms), as Java's producer does: keyed records spread over
/// them, and every record is written where its delivery says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_partitions_are_used_after_the_next_metadata_refresh() {
    let cluster = MockCluster::start(2).await.unwrap();
    cluster.create_topic("growing", 1);
    let mut config = config(&cluster);
    config.client.metadata_max_age = Duration::from_millis(200);
    let producer = Producer::new(config).await.unwrap();
    let mut sent: Vec<(String, i32)> = Vec::new();
    let send = |i: usize| {
        let producer = producer.clone();
        async move {
            let v = value(i);
            let d = producer
                .send(Record::new("growing").key(v.as_bytes()).value(v.as_bytes()))
                .await
                .unwrap();
            let meta = d.await.unwrap();
            (v, meta.partition)
        }
    };
    for i in 0..20 {
        let (v, p) = send(i).await;
        assert_eq!(p, 0, "one partition so far");
        sent.push((v, p));
    }
    cluster.add_partitions("growing", 4);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut i = 20;
    while !sent.iter().any(|(_, p)| *p > 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the new partitions were never used"
        );
        sent.push(send(i).await);
        i += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for j in i..i + 200 {
        sent.push(send(j).await);
    }
    let used: std::collections::BTreeSet<i32> = sent.iter().map(|(_, p)| *p).collect();
    assert_eq!(
        used.len(),
        4,
        "keys spread over all four partitions: {used:?}"
    );
    for p in 0..4 {
        let want: Vec<&str> = sent
            .iter()
            .filter(|(_, q)| *q == p)
            .map(|(v, _)| v.as_str())
            .collect();
        let got: Vec<String> = log_values(&cluster, "growing", p)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(got, want, "partition {p} holds what its deliveries say");
    }
}

/// `send` waits while buffer.memory is full, and goes on once the broker answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_makes_send_wait() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("full", 1);
    cluster.inject(ApiKey::Produce, Fault::Delay(Duration::from_millis(500)), 1);
    let producer = Producer::new(
        config(&cluster)
            .max_request_size(16 * 1024)
            .buffer_memory(32 * 1024),
    )
    .await
    .unwrap();
    let value = vec![7u8; 1000];
    let mut deliveries = Vec::new();
    let mut blocked = false;
    for _ in 0..200 {
        let send = producer.send(Record::new("full").value(&value));
        match tokio::time::timeout(Duration::from_millis(100), send).await {
            Ok(d) => deliveries.push(d.unwrap()),
            Err(_) => {
                blocked = true;
                break;
            }
        }
    }
    assert!(blocked, "send waited once 32 KiB were buffered");
    assert!(
        deliveries.len() < 40,
        "{} records buffered",
        deliveries.len()
    );
    // Once the delayed request is answered, room frees up and everything goes through.
    for _ in 0..200 {
        deliveries.push(
            producer
                .send(Record::new("full").value(&value))
                .await
                .unwrap(),
        );
    }
    for d in deliveries {
        d.await.unwrap();
    }
}

#[tokio::test]
async fn acks_0_writes_without_answers() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("fire", 2);
    let producer = Producer::new(config(&cluster).idempotence(false).acks(Acks::None))
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..1000 {
        let v = value(i);
        deliveries.push(
            producer
                .send(
                    Record::new("fire")
                        .value(v.as_bytes())
                        .partition(i as i32 % 2),
                )
                .await
                .unwrap(),
        );
    }
    producer.close().await.unwrap();
    for d in deliveries {
        assert_eq!(d.await.unwrap().offset, -1);
    }
    // acks=0 has no answer to wait for: give the broker a moment to read the last request.
    for _ in 0..50 {
        if log_values(&cluster, "fire", 0).len() + log_values(&cluster, "fire", 1).len() == 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(log_values(&cluster, "fire", 0).len(), 500);
    assert_eq!(log_values(&cluster, "fire", 1).len(), 500);
}

/// Batches are sized exactly: with the broker's `message.max.bytes` equal to the producer's
/// `max.request.size`, records of every size up to the limit are accepted, none gets
/// MESSAGE_TOO_LARGE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_never_exceed_the_brokers_message_limit() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("sized", 2);
    let limit = 12_000;
    cluster.set_max_message_bytes(limit);
    let producer = Producer::new(
        config(&cluster)
            .batch_size(1 << 20)
            .max_request_size(limit)
            .linger(Duration::from_millis(20)),
    )
    .await
    .unwrap();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut deliveries = Vec::new();
    for i in 0..3000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let len = (rng % 3000) as usize;
        let value = vec![(i % 251) as u8; len];
        let key = format!("{i}");
        deliveries.push(
            producer
                .send(
                    Record::new("sized")
                        .key(key.as_bytes())
                        .value(&value)
                        .header("h", Some(&value[..len.min(40)])),
                )
                .await
                .unwrap(),
        );
    }
    for d in deliveries {
        d.await.unwrap();
    }
    let batches: Vec<usize> = (0..2)
        .flat_map(|p| cluster.batches("sized", p))
        .map(|b| b.bytes.len())
        .collect();
    assert!(batches.iter().all(|len| *len <= limit));
    assert!(
        batches.iter().any(|len| *len > limit * 3 / 4),
        "batches are filled close to the limit: {batches:?}"
    );
    // A record that cannot fit in any request is refused before it is queued.
    let big = vec![0u8; limit];
    let err = producer
        .send(Record::new("sized").value(&big))
        .await
        .unwrap_err();
    assert!(matches!(err, spate::Error::RecordTooLarge { .. }), "{err}");
}

/// A custom partitioner decides where keyless and keyed records go.
#[tokio::test]
async fn a_custom_partitioner_places_records() {
    #[derive(Debug)]
    struct LastPartition;
    impl spate::producer::Partitioner for LastPartition {
        fn partition(&self, _topic: &str, _key: Option<&[u8]>, partitions: i32) -> Option<i32> {
            Some(partitions - 1)
        }
    }
    let cluster = MockCluster::start(2).await.unwrap();
    cluster.create_topic("custom", 4);
    let producer = Producer::new(config(&cluster).partitioner(std::sync::Arc::new(LastPartition)))
        .await
        .unwrap();
    for key in ["a", "b", "c"] {
        let d = producer
            .send(Record::new("custom").key(key.as_bytes()).value(b"v"))
            .await
            .unwrap();
        assert_eq!(d.await.unwrap().partition, 3);
    }
    // An explicit partition still wins.
    let d = producer
        .send(Record::new("custom").value(b"v").partition(1))
        .await
        .unwrap();
    assert_eq!(d.await.unwrap().partition, 1);
    assert_eq!(cluster.records("custom", 3).unwrap().len(), 3);
}

/// Transactions on the embedded cluster, read back by librdkafka with read_committed: committed
/// records are visible, aborted ones are not, and a producer fenced by a newer session cannot
/// commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_sees_committed_transactions_only() {
    use spate::producer::{GroupMetadata, OffsetToCommit};
    let cluster = MockCluster::start(2).await.unwrap();
    cluster.create_topic("txn", 3);
    let config = config(&cluster).transactional_id("mock-txn");
    let producer = Producer::new(config.clone()).await.unwrap();
    producer.init_transactions().await.unwrap();
    let mut committed = [Digest::default(), Digest::default(), Digest::default()];
    let mut uncommitted = 0;
    for (round, commit) in [true, false, true, false, true].into_iter().enumerate() {
        producer.begin_transaction().unwrap();
        let mut sent = Vec::new();
        for i in 0..500 {
            let v = format!("round-{round}-{i}");
            let d = producer
                .send(
                    Record::new("txn")
                        .key(format!("{i}").as_bytes())
                        .value(v.as_bytes()),
                )
                .await
                .unwrap();
            sent.push((d.partition(), format!("{i}"), v, d));
        }
        if commit {
            producer
                .send_offsets_to_transaction(
                    &[OffsetToCommit {
                        topic: "in".into(),
                        partition: 0,
                        offset: round as i64 * 100,
                        metadata: None,
                    }],
                    &GroupMetadata::new("job"),
                )
                .await
                .unwrap();
            producer.commit_transaction().await.unwrap();
            for (p, k, v, d) in sent {
                d.await.unwrap();
                committed[p as usize].add(Some(k.as_bytes()), Some(v.as_bytes()), &[]);
            }
        } else {
            producer.flush().await.unwrap();
            producer.abort_transaction().await.unwrap();
            uncommitted += sent.len();
        }
    }
    assert_eq!(uncommitted, 1000);
    let read = read_with_librdkafka(&cluster.bootstrap(), "txn", 3, "read_committed");
    for p in 0..3 {
        assert_eq!(read[p].count, committed[p].count, "partition {p}");
        assert_eq!(read[p].sha256, committed[p].hex(), "partition {p}");
    }
    let everything = read_with_librdkafka(&cluster.bootstrap(), "txn", 3, "read_uncommitted");
    assert_eq!(
        everything.iter().map(|d| d.count).sum::<u64>(),
        2500,
        "read_uncommitted sees the aborted records too"
    );
    // The offsets of the last committed transaction (round 4) are the group's.
    let client = spate::cluster::Client::connect(ClientConfig::new(&cluster.bootstrap()))
        .await
        .unwrap();
    assert_eq!(committed_offset(&client, "job", "in").await, 400);
    // A new session with the same transactional.id fences this one.
    let newer = Producer::new(config).await.unwrap();
    newer.init_transactions().await.unwrap();
    producer.begin_transaction().unwrap();
    producer
        .send(Record::new("txn").value(b"zombie"))
        .await
        .unwrap();
    // Transactions v2 (the cluster's default, as Kafka 4.x's): the zombie's first write is
    // refused INVALID_PRODUCER_EPOCH (Kafka's AddPartitionsToTxnManager turns the coordinator's
    // PRODUCER_FENCED into it), which leaves the transaction abortable (KIP-588); the abort's
    // EndTxn is then refused as fenced, and the producer is done.
    let err = producer.commit_transaction().await.unwrap_err();
    assert!(err.to_string().contains("InvalidProducerEpoch"), "{err}");
    assert!(producer.fatal_error().is_none());
    let err = producer.abort_transaction().await.unwrap_err();
    assert!(matches!(err, spate::Error::ProducerFenced { .. }), "{err}");
    assert!(producer.fatal_error().is_some());
}

/// KIP-951: a partition's leader moves. The old leader's NOT_LEADER_OR_FOLLOWER names the new
/// one and its endpoint (Produce v10+, as Kafka's `handleProduceRequest` does), checked first
/// with librdkafka, which reads those answers and delivers everything; then spate's producer
/// goes straight to the new leader: every record lands once, in order, with no metadata
/// refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_leader_is_found_from_the_produce_answer() {
    use std::io::Write;

    let cluster = MockCluster::start(2).await.unwrap();
    cluster.create_topic("hinted", 1);
    let (mut child, mut lines) = support::start_script(
        "produce_in_halves.py",
        &[&cluster.bootstrap(), "hinted", "2000"],
    );
    assert_eq!(support::next_line(&mut lines), "half");
    let old = cluster.leader("hinted", 0).unwrap();
    cluster.move_leader("hinted", 0, (old + 1) % 2);
    writeln!(child.stdin.take().unwrap(), "go").unwrap();
    assert_eq!(support::next_line(&mut lines), "done 0");
    assert!(child.wait().unwrap().success());
    let expected: Vec<String> = (0..2000).map(|i| format!("v-{i:06}")).collect();
    let logged: Vec<String> = log_values(&cluster, "hinted", 0)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(logged, expected, "librdkafka: once each, in order");

    let producer = Producer::new(config(&cluster)).await.unwrap();
    let mut values = Vec::new();
    let mut pending = Vec::new();
    let mut refreshes = 0;
    for i in 0..2000 {
        if i == 1000 {
            // The first half is delivered, so the producer knows the leader; it moves.
            for d in pending.drain(..) {
                let d: Delivery = d;
                d.await.unwrap();
            }
            refreshes = producer.client().metadata_refreshes();
            let old = cluster.leader("hinted", 0).unwrap();
            cluster.move_leader("hinted", 0, (old + 1) % 2);
        }
        let v = format!("s-{i:06}");
        pending.push(
            producer
                .send(Record::new("hinted").value(v.as_bytes()).partition(0))
                .await
                .unwrap(),
        );
        values.push(v);
    }
    for d in pending {
        d.await.unwrap();
    }
    let spate: Vec<String> = log_values(&cluster, "hinted", 0)
        .into_iter()
        .skip(2000)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(spate, values, "spate: once each, in order");
    assert_eq!(
        producer.client().metadata_refreshes(),
        refreshes,
        "the new leader came from the answer, not from a metadata refresh"
    );
}

/// The producer's own figures under faults: each batch sent again counts as a retry in the
/// client's statistics; while the broker is slow the batches show in flight and the buffer
/// holds their bytes; after the flush nothing is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_buffers_show_in_the_statistics() {
    let cluster = MockCluster::start(1).await.expect("cluster");
    cluster.create_topic("stats", 1);
    let producer = Producer::new(
        ProducerConfig::new(&cluster.bootstrap())
            .linger(Duration::from_millis(0))
            .compression(spate::record::Compression::Lz4),
    )
    .await
    .unwrap();
    // Two retriable refusals: the batch goes three times.
    cluster.inject(
        ApiKey::Produce,
        Fault::Error(spate::error::codes::NOT_LEADER_OR_FOLLOWER),
        2,
    );
    producer
        .send(Record::new("stats").value(b"first"))
        .await
        .unwrap()
        .await
        .unwrap();
    let stats = producer.client().statistics();
    assert_eq!(stats.topics["stats"].retries, 2, "{stats:?}");
    assert_eq!(stats.topics["stats"].produced_records, 1);

    cluster.inject(ApiKey::Produce, Fault::Delay(Duration::from_millis(500)), 1);
    let pending = producer
        .send(Record::new("stats").value(&[7u8; 1000]))
        .await
        .unwrap();
    support::wait_for("the batch to be in flight", || {
        producer.buffer_statistics().in_flight_batches == 1
    })
    .await;
    let held = producer.buffer_statistics();
    assert!(held.buffered_bytes >= 1000, "{held:?}");
    assert_eq!((held.open_batches, held.queued_batches), (0, 0), "{held:?}");
    pending.await.unwrap();
    producer.flush().await.unwrap();
    // The sender gives the bytes back right after completing the deliveries.
    support::wait_for("the buffer to be released", || {
        let after = producer.buffer_statistics();
        (after.buffered_bytes, after.in_flight_batches) == (0, 0)
    })
    .await;
    let stats = producer.client().statistics();
    let topic = &stats.topics["stats"];
    assert_eq!(topic.retries, 2);
    // 1,000 equal bytes compress well: the ratio shows it.
    assert!(
        topic.produced_bytes * 4 < topic.produced_uncompressed_bytes,
        "{topic:?}"
    );
    let stored: usize = cluster
        .batches("stats", 0)
        .iter()
        .map(|b| b.bytes.len())
        .sum();
    assert_eq!(topic.produced_bytes, stored as u64);
    producer.close().await.unwrap();
}
