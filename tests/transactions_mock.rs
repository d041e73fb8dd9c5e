//! The transaction coordinator's fencing rules on the embedded cluster (`--features mock`),
//! each checked first with librdkafka (confluent-kafka) as an independent client where it can
//! reach the rule, then with spate's producer:
//! - a transaction open longer than `transaction.timeout.ms` is aborted by the coordinator,
//!   which bumps the epoch: the late producer's commit is refused as fenced (Kafka's
//!   `TransactionCoordinator.abortTimedOutTransactions`);
//! - TxnOffsetCommit from a stale generation or an unknown member is refused, and the Java
//!   client's rule holds: the transaction becomes abortable, never committed without its offsets
//!   (`TransactionManager.TxnOffsetCommitHandler`);
//! - offsets committed in an open transaction are unstable for OffsetFetch with
//!   `require_stable` until the transaction ends (KIP-447);
//! - errors that retrying fixes are retried; fatal ones are reported as fatal;
//! - transactions v2 (KIP-890): a cluster that finalized `transaction.version` 2 (the default,
//!   as a Kafka 4.x cluster) still serves v1 clients (librdkafka speaks only v1); spate runs v2
//!   there (no AddPartitionsToTxn or AddOffsetsToTxn, an epoch bump per transaction, a retried
//!   EndTxn takes the bumped epoch) and v1 on a cluster without it. The coordinator's v2 rules
//!   themselves are unit-tested in `src/mock/txn_tests.rs`.

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use spate::cluster::{Client, OffsetSpec};
use spate::consumer::{Consumer, ConsumerConfig, Event};
use spate::mock::{Fault, MockCluster};
use spate::producer::{OffsetToCommit, Producer, ProducerConfig, Record};
use spate::wire::ApiKey;
use spate::{ClientConfig, Error};
use support::{committed_offset, read_with_librdkafka};

const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const CONCURRENT_TRANSACTIONS: i16 = 51;
const NOT_COORDINATOR: i16 = 16;
const UNSTABLE_OFFSET_COMMIT: i16 = 88;
const PRODUCER_FENCED: i16 = 90;

fn client_config(cluster: &MockCluster) -> ClientConfig {
    let mut client = ClientConfig::new(&cluster.bootstrap())
        .request_timeout(Duration::from_secs(5))
        .api_timeout(Duration::from_secs(10));
    client.retry_backoff = Duration::from_millis(5);
    client
}

fn producer_config(cluster: &MockCluster, txn_id: &str) -> ProducerConfig {
    ProducerConfig {
        client: client_config(cluster),
        ..ProducerConfig::default()
    }
    .transactional_id(txn_id)
    .linger(Duration::from_millis(1))
}

/// Waits until the partition has no open transaction (its last stable offset has caught up
/// with its end) and holds more than `at_least` offsets: the coordinator ended what was open.
async fn await_no_open_transaction(client: &Client, topic: &str, at_least: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let end = client
            .list_offsets(topic, &[0], OffsetSpec::Latest)
            .await
            .unwrap()[0]
            .offset;
        let stable = client
            .list_offsets_isolated(topic, &[0], OffsetSpec::Latest, true)
            .await
            .unwrap()[0]
            .offset;
        if end > at_least && stable == end {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the transaction is still open (end {end}, stable {stable})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_sees_a_timed_out_transaction_aborted_and_its_producer_fenced() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("late", 1);
    let (mut child, mut lines) =
        support::start_script("txn_timeout.py", &[&cluster.bootstrap(), "late", "1500"]);
    assert_eq!(support::next_line(&mut lines), "open");
    let client = Client::connect(client_config(&cluster)).await.unwrap();
    // 10 records, then the coordinator's abort marker.
    await_no_open_transaction(&client, "late", 10).await;
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "commit").unwrap();
    let outcome = support::next_line(&mut lines);
    assert!(child.wait().unwrap().success());
    eprintln!("librdkafka: {outcome}");
    assert!(
        outcome.starts_with("error") && outcome.contains("fatal=True"),
        "librdkafka's commit after the timeout: {outcome}"
    );
    let read = read_with_librdkafka(&cluster.bootstrap(), "late", 1, "read_committed");
    assert_eq!(read[0].count, 0, "the timed-out transaction is aborted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spate_sees_a_timed_out_transaction_aborted_and_its_producer_fenced() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("late", 1);
    let config =
        producer_config(&cluster, "spate-timeout").transaction_timeout(Duration::from_millis(1500));
    let producer = Producer::new(config.clone()).await.unwrap();
    producer.init_transactions().await.unwrap();
    producer.begin_transaction().unwrap();
    for i in 0..10 {
        let v = format!("never-{i}");
        producer
            .send(Record::new("late").partition(0).value(v.as_bytes()))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let client = Client::connect(client_config(&cluster)).await.unwrap();
    await_no_open_transaction(&client, "late", 10).await;
    // The zombie's next write is refused by the partition (the marker bumped the epoch):
    // INVALID_PRODUCER_EPOCH on Produce makes the transaction abortable (KIP-588, the Java
    // client's `Sender`), so the commit is refused; the abort then meets the coordinator's
    // PRODUCER_FENCED, which is fatal (`EndTxnHandler`). Nothing is committed.
    let late = producer
        .send(Record::new("late").partition(0).value(b"zombie"))
        .await
        .unwrap();
    let err = producer.commit_transaction().await.unwrap_err();
    assert!(
        late.await.is_err(),
        "a fenced producer's record is not written"
    );
    assert!(producer.fatal_error().is_none(), "abortable first: {err}");
    let err = producer.abort_transaction().await.unwrap_err();
    assert!(matches!(err, Error::ProducerFenced { .. }), "{err}");
    assert!(producer.fatal_error().is_some());
    let read = read_with_librdkafka(&cluster.bootstrap(), "late", 1, "read_committed");
    assert_eq!(read[0].count, 0, "the timed-out transaction is aborted");
    // The same transactional.id starts again.
    let next = Producer::new(config).await.unwrap();
    next.init_transactions().await.unwrap();
    next.begin_transaction().unwrap();
    next.send(Record::new("late").partition(0).value(b"kept"))
        .await
        .unwrap();
    next.commit_transaction().await.unwrap();
    let read = read_with_librdkafka(&cluster.bootstrap(), "late", 1, "read_committed");
    assert_eq!(read[0].count, 1);
}

/// A consumer of group `group` with its partitions of `topic` assigned.
async fn member(cluster: &MockCluster, group: &str, topic: &str) -> Consumer {
    let config = ConsumerConfig {
        client: client_config(cluster),
        ..ConsumerConfig::default()
    }
    .group_id(group);
    let mut consumer = Consumer::new(config).await.unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(deadline.into(), consumer.next())
            .await
            .expect("no assignment")
            .unwrap();
        if matches!(event, Event::Assigned(_)) {
            return consumer;
        }
    }
}

fn offset(topic: &str, offset: i64) -> Vec<OffsetToCommit> {
    vec![OffsetToCommit {
        topic: topic.into(),
        partition: 0,
        offset,
        metadata: None,
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_from_a_stale_member_make_the_transaction_abortable_never_committed() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("in", 1);
    cluster.create_topic("out", 1);
    let consumer = member(&cluster, "job", "in").await;
    let group = consumer.group_metadata().unwrap();
    assert!(group.generation_id >= 1);
    let producer = Producer::new(producer_config(&cluster, "stale"))
        .await
        .unwrap();
    producer.init_transactions().await.unwrap();
    let client = Client::connect(client_config(&cluster)).await.unwrap();
    let cases = [
        (
            "a past generation",
            spate::producer::GroupMetadata {
                generation_id: group.generation_id - 1,
                ..group.clone()
            },
            ILLEGAL_GENERATION,
        ),
        (
            "an unknown member",
            spate::producer::GroupMetadata {
                member_id: "gone".into(),
                ..group.clone()
            },
            UNKNOWN_MEMBER_ID,
        ),
    ];
    for (i, (what, stale, code)) in cases.into_iter().enumerate() {
        producer.begin_transaction().unwrap();
        producer
            .send(Record::new("out").value(b"lost"))
            .await
            .unwrap();
        let err = producer
            .send_offsets_to_transaction(&offset("in", 10 + i as i64), &stale)
            .await
            .unwrap_err();
        assert_eq!(err.code().map(|c| c.0), Some(code), "{what}: {err}");
        // Abortable: no commit without the offsets, the abort succeeds, the producer goes on.
        assert!(producer.fatal_error().is_none(), "{what}");
        assert!(producer.commit_transaction().await.is_err(), "{what}");
        producer.abort_transaction().await.unwrap();
        assert_eq!(committed_offset(&client, "job", "in").await, -1, "{what}");
    }
    producer.begin_transaction().unwrap();
    producer
        .send(Record::new("out").value(b"kept"))
        .await
        .unwrap();
    producer
        .send_offsets_to_transaction(&offset("in", 42), &group)
        .await
        .unwrap();
    producer.commit_transaction().await.unwrap();
    assert_eq!(committed_offset(&client, "job", "in").await, 42);
    let read = read_with_librdkafka(&cluster.bootstrap(), "out", 1, "read_committed");
    assert_eq!(read[0].count, 1, "only the committed transaction's record");
    consumer.close().await.unwrap();
}

/// OffsetFetch v7 with `require_stable`: the error code of partition 0.
async fn stable_fetch_code(client: &Client, group: &str, topic: &str) -> i16 {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{GroupId, OffsetFetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use spate::cluster::CoordinatorType;
    let conn = client
        .coordinator(CoordinatorType::Group, group)
        .await
        .unwrap();
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_require_stable(true)
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partition_indexes(vec![0])]));
    let response = conn.request_at(&request, 7).await.unwrap();
    response.topics[0].partitions[0].error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_in_an_open_transaction_are_unstable_until_it_ends() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("in", 1);
    cluster.create_topic("out", 1);
    let client = Client::connect(client_config(&cluster)).await.unwrap();
    let producer = Producer::new(producer_config(&cluster, "pending"))
        .await
        .unwrap();
    producer.init_transactions().await.unwrap();
    for commit in [false, true] {
        producer.begin_transaction().unwrap();
        producer
            .send_offsets_to_transaction(
                &offset("in", 7),
                &spate::producer::GroupMetadata::new("job"),
            )
            .await
            .unwrap();
        assert_eq!(
            stable_fetch_code(&client, "job", "in").await,
            UNSTABLE_OFFSET_COMMIT
        );
        if commit {
            producer.commit_transaction().await.unwrap();
        } else {
            producer.abort_transaction().await.unwrap();
        }
        assert_eq!(stable_fetch_code(&client, "job", "in").await, 0);
        let expected = if commit { 7 } else { -1 };
        assert_eq!(committed_offset(&client, "job", "in").await, expected);
    }
}

/// Per error class, what spate's transaction calls do, as the Java client's handlers decide:
/// retriable codes are retried to success, fencing is fatal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_errors_are_retried_or_fatal_as_in_java() {
    let cluster = MockCluster::start(1).await.unwrap();
    // Transactions v1, where AddPartitionsToTxn is sent (v2 has none to fail).
    cluster.set_transaction_version(1);
    cluster.create_topic("out", 1);
    let producer = Producer::new(producer_config(&cluster, "classes"))
        .await
        .unwrap();
    producer.init_transactions().await.unwrap();
    // AddPartitionsToTxn CONCURRENT_TRANSACTIONS (the previous one still ending) and EndTxn
    // NOT_COORDINATOR: retried (AddPartitionsToTxnHandler, EndTxnHandler).
    producer.begin_transaction().unwrap();
    cluster.inject(
        ApiKey::AddPartitionsToTxn,
        Fault::Error(CONCURRENT_TRANSACTIONS),
        2,
    );
    cluster.inject(ApiKey::EndTxn, Fault::Error(NOT_COORDINATOR), 2);
    let d = producer
        .send(Record::new("out").value(b"one"))
        .await
        .unwrap();
    producer.commit_transaction().await.unwrap();
    d.await.unwrap();
    assert_eq!(cluster.pending_faults(), 0);
    let read = read_with_librdkafka(&cluster.bootstrap(), "out", 1, "read_committed");
    assert_eq!(read[0].count, 1);
    // EndTxn PRODUCER_FENCED: fatal (EndTxnHandler → ProducerFencedException); never success.
    producer.begin_transaction().unwrap();
    producer
        .send(Record::new("out").value(b"two"))
        .await
        .unwrap();
    cluster.inject(ApiKey::EndTxn, Fault::Error(PRODUCER_FENCED), 1);
    let err = producer.commit_transaction().await.unwrap_err();
    assert!(matches!(err, Error::ProducerFenced { .. }), "{err}");
    assert!(producer.fatal_error().is_some());
    assert!(producer.begin_transaction().is_err(), "fatal is final");
}

/// A producer id and epoch.
type ProducerEpoch = (i64, i16);

/// The producer id and epoch of each batch of partition 0, data and markers apart, in order.
fn epochs(cluster: &MockCluster, topic: &str) -> (Vec<ProducerEpoch>, Vec<ProducerEpoch>) {
    let (mut data, mut markers) = (Vec::new(), Vec::new());
    for stored in cluster.batches(topic, 0) {
        for batch in spate::record::RecordBatches::new(stored.bytes) {
            let h = batch.unwrap().header();
            let id = (h.producer_id, h.producer_epoch);
            if h.is_control() {
                markers.push(id);
            } else {
                data.push(id);
            }
        }
    }
    (data, markers)
}

/// librdkafka speaks transactions v1 only; a cluster that finalized `transaction.version` 2
/// (the default) serves it as one without: commits, aborts and an empty abort, read back
/// read_committed and read_uncommitted by librdkafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_runs_v1_transactions_whatever_the_cluster_finalized() {
    for level in [2, 1] {
        let cluster = MockCluster::start(1).await.unwrap();
        cluster.set_transaction_version(level);
        cluster.create_topic("out", 1);
        let bootstrap = cluster.bootstrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/txn_cycle.py");
        let output = tokio::task::spawn_blocking(move || {
            Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
                .arg(script)
                .args([&bootstrap, "out"])
                .output()
                .expect("python3 runs")
        })
        .await
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            "ok",
            "level {level}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let bootstrap = cluster.bootstrap();
        let committed = read_with_librdkafka(&bootstrap, "out", 1, "read_committed");
        assert_eq!(committed[0].count, 10, "level {level}");
        let all = read_with_librdkafka(&bootstrap, "out", 1, "read_uncommitted");
        assert_eq!(all[0].count, 15, "level {level}");
        // v1: one epoch throughout, and AddPartitionsToTxn carried the partition.
        let (data, markers) = epochs(&cluster, "out");
        assert!(
            data.iter().chain(&markers).all(|e| *e == data[0]),
            "level {level}"
        );
        assert!(cluster.request_count(ApiKey::AddPartitionsToTxn) >= 3);
    }
}

/// Three transactions by spate's producer (a commit with offsets, an abort, a commit), on a
/// cluster with and without `transaction.version` 2: v2 sends no AddPartitionsToTxn or
/// AddOffsetsToTxn, and each transaction ends with a bumped epoch that its markers carry and
/// the next transaction writes with; v1 keeps one epoch and adds partitions and offsets
/// explicitly. Either way read_committed (librdkafka) sees the two commits only, and the
/// offsets committed are the second commit's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spate_runs_transactions_v2_when_the_cluster_offers_them() {
    for level in [2, 1] {
        let cluster = MockCluster::start(1).await.unwrap();
        cluster.set_transaction_version(level);
        cluster.create_topic("out", 1);
        cluster.create_topic("in", 1);
        let producer = Producer::new(producer_config(&cluster, "v2"))
            .await
            .unwrap();
        producer.init_transactions().await.unwrap();
        let group = spate::producer::GroupMetadata::new("job");
        for (i, commit) in [true, false, true].into_iter().enumerate() {
            producer.begin_transaction().unwrap();
            let mut deliveries = Vec::new();
            for n in 0..5 {
                let value = format!("t{i}-{n}");
                deliveries.push(
                    producer
                        .send(Record::new("out").value(value.as_bytes()))
                        .await
                        .unwrap(),
                );
            }
            producer
                .send_offsets_to_transaction(&offset("in", 10 * (i as i64 + 1)), &group)
                .await
                .unwrap();
            if commit {
                producer.commit_transaction().await.unwrap();
            } else {
                producer.flush().await.unwrap();
                producer.abort_transaction().await.unwrap();
            }
            for d in deliveries {
                d.await.unwrap();
            }
        }
        // An empty transaction: nothing to end, nothing sent.
        producer.begin_transaction().unwrap();
        producer.abort_transaction().await.unwrap();
        let adds = cluster.request_count(ApiKey::AddPartitionsToTxn)
            + cluster.request_count(ApiKey::AddOffsetsToTxn);
        let (data, markers) = epochs(&cluster, "out");
        assert_eq!((data.len(), markers.len()), (3, 3), "level {level}");
        let (id, e0) = data[0];
        if level == 2 {
            assert_eq!(adds, 0);
            assert_eq!(data, vec![(id, e0), (id, e0 + 1), (id, e0 + 2)]);
            assert_eq!(markers, vec![(id, e0 + 1), (id, e0 + 2), (id, e0 + 3)]);
        } else {
            assert_eq!(adds, 6);
            assert!(data.iter().chain(&markers).all(|e| *e == (id, e0)));
        }
        let committed = read_with_librdkafka(&cluster.bootstrap(), "out", 1, "read_committed");
        assert_eq!(committed[0].count, 10, "level {level}");
        let client = Client::connect(client_config(&cluster)).await.unwrap();
        assert_eq!(
            committed_offset(&client, "job", "in").await,
            30,
            "level {level}"
        );
    }
}

/// v2: the answer to EndTxn is lost (the connection drops after the coordinator ended the
/// transaction). The retry carries the epoch before the bump and gets the bumped one back, so
/// the next transaction goes on at the right epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_end_txn_answer_is_retried_and_gets_the_bumped_epoch() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("out", 1);
    let producer = Producer::new(producer_config(&cluster, "lost"))
        .await
        .unwrap();
    producer.init_transactions().await.unwrap();
    for (i, lose) in [true, false].into_iter().enumerate() {
        producer.begin_transaction().unwrap();
        let d = producer
            .send(Record::new("out").value(format!("v{i}").as_bytes()))
            .await
            .unwrap();
        if lose {
            cluster.inject(ApiKey::EndTxn, Fault::DropResponse, 1);
        }
        producer.commit_transaction().await.unwrap();
        d.await.unwrap();
    }
    assert_eq!(cluster.pending_faults(), 0);
    assert!(cluster.request_count(ApiKey::EndTxn) >= 3);
    let (data, markers) = epochs(&cluster, "out");
    let (id, e0) = data[0];
    assert_eq!(data, vec![(id, e0), (id, e0 + 1)]);
    assert_eq!(markers, vec![(id, e0 + 1), (id, e0 + 2)]);
    let committed = read_with_librdkafka(&cluster.bootstrap(), "out", 1, "read_committed");
    assert_eq!(committed[0].count, 2);
}
