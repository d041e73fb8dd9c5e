//! The reliability suite, on the embedded cluster (`--features mock`): brokers stopped and
//! started, leaders moved, connections dropped mid-request and retriable errors on every API
//! spate uses, while producers, consumers, groups and an exactly-once pipeline work. Nothing
//! acknowledged is lost, the idempotent producer writes nothing twice, consumers resume from
//! committed offsets, groups rebalance.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use spate::consumer::{Consumer, ConsumerConfig, Event, IsolationLevel, Offset, OffsetReset};
use spate::mock::{Fault, MockCluster};
use spate::pipeline::{ops, Chain, Guarantee, Pipeline};
use spate::producer::{Producer, ProducerConfig, Record};
use spate::wire::ApiKey;
use spate::ClientConfig;

const LEADER_NOT_AVAILABLE: i16 = 5;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const REQUEST_TIMED_OUT: i16 = 7;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const NOT_ENOUGH_REPLICAS: i16 = 19;
const REBALANCE_IN_PROGRESS: i16 = 27;
const CONCURRENT_TRANSACTIONS: i16 = 51;

fn client(cluster: &MockCluster) -> ClientConfig {
    let mut c = ClientConfig::new(&cluster.bootstrap())
        .request_timeout(Duration::from_secs(2))
        .api_timeout(Duration::from_secs(30));
    c.retry_backoff = Duration::from_millis(10);
    c.reconnect_backoff = Duration::from_millis(10);
    c
}

fn producer_config(cluster: &MockCluster) -> ProducerConfig {
    ProducerConfig {
        client: client(cluster),
        ..ProducerConfig::default()
    }
    .batch_size(2048)
    .linger(Duration::from_millis(1))
}

/// Every record of a partition as (offset, value).
fn log(cluster: &MockCluster, topic: &str, partition: i32) -> Vec<(i64, Vec<u8>)> {
    cluster
        .records(topic, partition)
        .unwrap()
        .into_iter()
        .map(|(o, _, v)| (o, v.unwrap().to_vec()))
        .collect()
}

/// Produce while a broker is stopped and started, leaders move, requests and responses are
/// lost and every produce-side API answers a retriable error: every record is acknowledged,
/// and each partition's log is exactly what was sent to it, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producing_through_broker_restarts_loses_and_duplicates_nothing() {
    let cluster = MockCluster::start(3).await.unwrap();
    cluster.create_topic("t", 6);
    cluster.inject(ApiKey::ApiVersions, Fault::DropRequest, 1);
    cluster.inject(ApiKey::Metadata, Fault::Error(LEADER_NOT_AVAILABLE), 2);
    cluster.inject(
        ApiKey::InitProducerId,
        Fault::Error(COORDINATOR_LOAD_IN_PROGRESS),
        2,
    );
    let producer = Producer::new(producer_config(&cluster)).await.unwrap();
    let n = 30_000;
    let mut sent: BTreeMap<i32, Vec<Vec<u8>>> = BTreeMap::new();
    let mut deliveries = Vec::with_capacity(n);
    for i in 0..n {
        match i {
            3_000 => cluster.inject(ApiKey::Produce, Fault::DropResponse, 2),
            6_000 => {
                // Down long enough for requests in flight to it to fail over.
                cluster.stop_broker(1);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            9_000 => cluster.start_broker(1).await.unwrap(),
            12_000 => cluster.inject(ApiKey::Produce, Fault::Error(NOT_ENOUGH_REPLICAS), 3),
            15_000 => cluster.move_leader("t", 0, 1),
            18_000 => cluster.inject(ApiKey::Produce, Fault::DropRequest, 2),
            21_000 => {
                cluster.stop_broker(2);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            24_000 => cluster.inject(ApiKey::Produce, Fault::Error(REQUEST_TIMED_OUT), 2),
            _ => {}
        }
        let value = format!("v{i}");
        let key = format!("k{}", i % 97);
        let record = Record::new("t").key(key.as_bytes()).value(value.as_bytes());
        let delivery = producer.send(record).await.unwrap();
        sent.entry(delivery.partition())
            .or_default()
            .push(value.into_bytes());
        deliveries.push(delivery);
        if i % 500 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for d in deliveries {
        d.await.expect("every record is acknowledged");
    }
    producer.close().await.unwrap();
    cluster.start_broker(2).await.unwrap();
    assert_eq!(cluster.pending_faults(), 0, "every fault was met");
    for (p, values) in &sent {
        let stored: Vec<Vec<u8>> = log(&cluster, "t", *p).into_iter().map(|(_, v)| v).collect();
        assert_eq!(
            stored.len(),
            values.len(),
            "partition {p}: no loss, no duplicate"
        );
        assert!(stored == *values, "partition {p}: in send order");
    }
}

/// Consume from the beginning while a broker is stopped and started, leaders move and fetches
/// and offset lookups fail or lose their connection: every record is read exactly once, in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consuming_through_broker_restarts_reads_everything_once_in_order() {
    let cluster = MockCluster::start(3).await.unwrap();
    cluster.create_topic("t", 6);
    let producer = Producer::new(producer_config(&cluster)).await.unwrap();
    let n = 30_000usize;
    let mut last = None;
    for i in 0..n {
        let value = format!("v{i}");
        let record = Record::new("t")
            .value(value.as_bytes())
            .partition(i as i32 % 6);
        last = Some(producer.send(record).await.unwrap());
    }
    last.unwrap().await.unwrap();
    producer.close().await.unwrap();

    cluster.inject(ApiKey::ListOffsets, Fault::Error(LEADER_NOT_AVAILABLE), 2);
    let mut consumer = Consumer::new(
        ConsumerConfig {
            client: client(&cluster),
            ..ConsumerConfig::default()
        }
        .max_partition_fetch_bytes(8 * 1024)
        .fetch_max_wait(Duration::from_millis(20)),
    )
    .await
    .unwrap();
    consumer
        .assign_topics(&["t"], Offset::Beginning)
        .await
        .unwrap();
    let mut read: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut total = 0;
    let mut step = 0;
    while total < n {
        let event = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("consumption stalled")
            .unwrap();
        if let Event::Batch(b) = event {
            for r in b.records() {
                read.entry(b.partition()).or_default().push(r.offset());
            }
            total += b.batch().len();
            // Faults at points along the way.
            let at = total * 8 / n;
            while step < at {
                match step {
                    0 => cluster.inject(ApiKey::Fetch, Fault::Error(NOT_LEADER_OR_FOLLOWER), 2),
                    1 => cluster.stop_broker(0),
                    2 => cluster.inject(ApiKey::Fetch, Fault::DropRequest, 1),
                    3 => cluster.start_broker(0).await.unwrap(),
                    4 => cluster.move_leader("t", 1, 0),
                    5 => cluster.inject(ApiKey::Fetch, Fault::DropResponse, 1),
                    6 => cluster.stop_broker(2),
                    _ => {}
                }
                step += 1;
            }
        }
    }
    assert_eq!(total, n, "no record read twice");
    for (p, offsets) in &read {
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert!(
            *offsets == expected,
            "partition {p}: every offset once, in order"
        );
        assert_eq!(offsets.len(), n / 6, "partition {p}: all of it");
    }
}

/// A group whose coordinator's broker is stopped mid-consumption, with group APIs failing
/// and one member killed: the group rebalances onto the survivor, every record is processed,
/// and a new member of the same group later starts from the committed offsets (so it reads
/// only what was written after them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_survives_its_coordinator_and_resumes_from_committed_offsets() {
    let cluster = MockCluster::start(3).await.unwrap();
    cluster.create_topic("t", 4);
    let fill = |from: usize, to: usize| {
        let cluster_bootstrap = producer_config(&cluster);
        async move {
            let producer = Producer::new(cluster_bootstrap).await.unwrap();
            let mut last = None;
            for i in from..to {
                let value = format!("v{i}");
                let record = Record::new("t")
                    .value(value.as_bytes())
                    .partition(i as i32 % 4);
                last = Some(producer.send(record).await.unwrap());
            }
            last.unwrap().await.unwrap();
            producer.close().await.unwrap();
        }
    };
    fill(0, 8_000).await;
    let config = || {
        let mut c = ConsumerConfig {
            client: client(&cluster),
            ..ConsumerConfig::default()
        }
        .group_id("g")
        .session_timeout(Duration::from_millis(1500), Duration::from_millis(200))
        .auto_offset_reset(OffsetReset::Earliest)
        .fetch_max_wait(Duration::from_millis(50))
        .max_partition_fetch_bytes(4096);
        c.rebalance_timeout = Duration::from_secs(3);
        c.auto_commit_interval = Duration::from_millis(100);
        c
    };
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let member =
        |seen: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<(i32, i64)>>>| {
            let config = config();
            tokio::spawn(async move {
                let mut consumer = Consumer::new(config).await.unwrap();
                consumer.subscribe(&["t"]).unwrap();
                loop {
                    if let Event::Batch(b) = consumer.next().await.unwrap() {
                        {
                            let mut seen = seen.lock().unwrap();
                            for r in b.records() {
                                seen.insert((b.partition(), r.offset()));
                            }
                        }
                        // Slow enough that the faults land mid-consumption.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
        };
    let a = member(seen.clone());
    let b = member(seen.clone());
    let wait = |what: &'static str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    tokio::task::block_in_place(|| {
        wait("two members", &|| {
            cluster
                .group("g")
                .is_some_and(|g| g.stable && g.members.len() == 2)
        })
    });
    cluster.inject(ApiKey::Heartbeat, Fault::Error(REBALANCE_IN_PROGRESS), 1);
    cluster.inject(
        ApiKey::OffsetCommit,
        Fault::Error(COORDINATOR_LOAD_IN_PROGRESS),
        1,
    );
    cluster.inject(
        ApiKey::JoinGroup,
        Fault::Error(COORDINATOR_NOT_AVAILABLE),
        1,
    );
    cluster.inject(ApiKey::SyncGroup, Fault::DropResponse, 1);
    cluster.inject(ApiKey::OffsetFetch, Fault::Error(NOT_COORDINATOR), 1);
    // The coordinator (broker 0) dies; the group moves to a live broker.
    cluster.stop_broker(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A member dies without leaving.
    a.abort();
    tokio::task::block_in_place(|| {
        wait("every record processed", &|| {
            seen.lock().unwrap().len() == 8_000
        });
        wait("the survivor alone, stable", &|| {
            cluster
                .group("g")
                .is_some_and(|g| g.stable && g.members.len() == 1)
        });
        wait("commits at the log ends", &|| {
            (0..4).all(|p| cluster.committed("g", "t", p) == Some(2_000))
        });
    });
    b.abort();
    cluster.start_broker(0).await.unwrap();
    assert_eq!(cluster.pending_faults(), 0, "every fault was met");
    // Later records, and a new member: it starts from the commits.
    fill(8_000, 8_400).await;
    let mut late = Consumer::new(config()).await.unwrap();
    late.subscribe(&["t"]).unwrap();
    let mut offsets = Vec::new();
    while offsets.len() < 400 {
        let event = tokio::time::timeout(Duration::from_secs(30), late.next())
            .await
            .expect("the new member stalled")
            .unwrap();
        if let Event::Batch(b) = event {
            offsets.extend(b.records().map(|r| r.offset()));
        }
    }
    assert!(
        offsets.iter().all(|o| *o >= 2_000),
        "the new member started from the committed offsets"
    );
    late.close().await.unwrap();
}

/// An exactly-once pipeline with retriable errors on every transaction API and on the fetch
/// and group APIs, and a broker stopped and started: the output, read with read_committed, is
/// every input record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exactly_once_pipeline_rides_out_errors_on_every_api() {
    // Transactions v2 (the default) and v1, whose AddPartitionsToTxn and AddOffsetsToTxn v2
    // does without.
    for level in [2, 1] {
        exactly_once_through_errors(level).await;
    }
}

async fn exactly_once_through_errors(transaction_version: i16) {
    let cluster = MockCluster::start(3).await.unwrap();
    cluster.set_transaction_version(transaction_version);
    cluster.create_topic("in", 3);
    cluster.create_topic("out", 3);
    let producer = Producer::new(producer_config(&cluster)).await.unwrap();
    let n = 9_000;
    let mut last = None;
    for i in 0..n {
        let value = format!("value {i}");
        let record = Record::new("in").value(value.as_bytes()).partition(i % 3);
        last = Some(producer.send(record).await.unwrap());
    }
    last.unwrap().await.unwrap();
    producer.close().await.unwrap();

    for (api, code) in [
        (ApiKey::InitProducerId, COORDINATOR_LOAD_IN_PROGRESS),
        (ApiKey::AddPartitionsToTxn, CONCURRENT_TRANSACTIONS),
        (ApiKey::AddOffsetsToTxn, COORDINATOR_NOT_AVAILABLE),
        (ApiKey::TxnOffsetCommit, COORDINATOR_LOAD_IN_PROGRESS),
        (ApiKey::EndTxn, CONCURRENT_TRANSACTIONS),
        (ApiKey::FindCoordinator, COORDINATOR_NOT_AVAILABLE),
        (ApiKey::JoinGroup, COORDINATOR_LOAD_IN_PROGRESS),
        (ApiKey::OffsetFetch, COORDINATOR_LOAD_IN_PROGRESS),
        (ApiKey::ListOffsets, LEADER_NOT_AVAILABLE),
        (ApiKey::Fetch, NOT_LEADER_OR_FOLLOWER),
        (ApiKey::Produce, NOT_ENOUGH_REPLICAS),
        (ApiKey::Metadata, LEADER_NOT_AVAILABLE),
    ] {
        let v1_only = matches!(api, ApiKey::AddPartitionsToTxn | ApiKey::AddOffsetsToTxn);
        if transaction_version < 2 || !v1_only {
            cluster.inject(api, Fault::Error(code), 1);
        }
    }
    let consumer = ConsumerConfig {
        client: client(&cluster),
        ..ConsumerConfig::default()
    }
    .group_id("eo")
    .session_timeout(Duration::from_secs(3), Duration::from_millis(300))
    .auto_offset_reset(OffsetReset::Earliest)
    .max_partition_fetch_bytes(4096);
    let pipeline = Pipeline::new(consumer, producer_config(&cluster))
        .from_topics(&["in"])
        .to_topic("out")
        .operators(|| Chain::new().then(ops::uppercase()))
        .guarantee(Guarantee::ExactlyOnce)
        .commit_interval(Duration::from_millis(50))
        .stop_at_end(true);
    let running = tokio::spawn(pipeline.run());
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.stop_broker(1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.start_broker(1).await.unwrap();
    let stats = running.await.unwrap().unwrap();
    assert_eq!(stats.records_in, n as u64);
    assert_eq!(cluster.pending_faults(), 0, "every fault was met");

    let mut reader = Consumer::new(
        ConsumerConfig {
            client: client(&cluster),
            ..ConsumerConfig::default()
        }
        .isolation_level(IsolationLevel::ReadCommitted),
    )
    .await
    .unwrap();
    reader
        .assign_topics(&["out"], Offset::Beginning)
        .await
        .unwrap();
    let mut values = Vec::new();
    let mut ended = std::collections::BTreeSet::new();
    while ended.len() < 3 {
        match reader.next().await.unwrap() {
            Event::Batch(b) => {
                ended.remove(&b.partition());
                values.extend(b.records().map(|r| r.value().unwrap().to_vec()));
            }
            Event::EndOfPartition { partition, .. } => {
                ended.insert(partition);
            }
            _ => {}
        }
    }
    values.sort();
    let mut expected: Vec<Vec<u8>> = (0..n).map(|i| format!("VALUE {i}").into_bytes()).collect();
    expected.sort();
    assert!(
        values == expected,
        "each input record once: {} read",
        values.len()
    );
    for p in 0..3 {
        assert_eq!(
            cluster.committed("eo", "in", p),
            Some(3_000),
            "partition {p} committed"
        );
    }
}

/// A TCP forwarder standing for a load balancer or a DNS name in front of a cluster: it
/// accepts on its own port and carries each connection to wherever `target` says now.
async fn forwarder(target: std::sync::Arc<std::sync::Mutex<String>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let to = target.lock().unwrap().clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    address
}

/// Rebootstrap (KIP-899): every broker the client knows is gone, and its bootstrap address (a
/// load balancer, a DNS name) now leads to another cluster. The client goes back to the
/// bootstrap address, learns the new brokers and carries on: records sent after the switch all
/// reach the new cluster. (The Java client does this with `metadata.recovery.strategy=rebootstrap`,
/// its default since 4.0; spate always does.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_brokers_are_all_gone_rebootstraps() {
    let old = MockCluster::start(2).await.unwrap();
    let new = MockCluster::start(2).await.unwrap();
    for cluster in [&old, &new] {
        cluster.create_topic("t", 2);
    }
    let first = |c: &MockCluster| c.bootstrap().split(',').next().unwrap().to_owned();
    let target = std::sync::Arc::new(std::sync::Mutex::new(first(&old)));
    let lb = forwarder(target.clone()).await;
    let mut config = producer_config(&old).idempotence(false);
    config.client.bootstrap_servers = vec![lb.clone()];
    let producer = Producer::new(config).await.unwrap();
    let send = |n: usize| {
        let producer = &producer;
        async move {
            let mut pending = Vec::new();
            for i in 0..n {
                let value = format!("v{i}");
                let record = Record::new("t").value(value.as_bytes());
                pending.push(producer.send(record).await.unwrap());
            }
            for d in pending {
                d.await.unwrap();
            }
        }
    };
    send(100).await;
    let on = |c: &MockCluster| c.log_end("t", 0) + c.log_end("t", 1);
    assert_eq!(on(&old), 100);
    let old_brokers: Vec<String> = old.bootstrap().split(',').map(str::to_owned).collect();
    *target.lock().unwrap() = first(&new);
    drop(old);
    send(100).await;
    assert_eq!(
        on(&new),
        100,
        "everything sent after the switch reached the new cluster"
    );
    let known = producer.client().metadata();
    assert!(
        known
            .brokers
            .values()
            .all(|b| !old_brokers.contains(&b.address())),
        "the old brokers are forgotten: {:?}",
        known.brokers
    );
}

/// KIP-1102 on the embedded cluster, judged first by librdkafka: the old cluster refuses
/// produces (NOT_LEADER_OR_FOLLOWER) and answers Metadata v13 with REBOOTSTRAP_REQUIRED, the
/// bootstrap address leads to a new cluster, and librdkafka's records all land there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_obeys_the_embedded_clusters_rebootstrap_required() {
    use std::io::Write;
    const REBOOTSTRAP_REQUIRED: i16 = 129;
    let old = MockCluster::start(1).await.unwrap();
    let new = MockCluster::start(1).await.unwrap();
    old.create_topic("t", 1);
    new.create_topic("t", 1);
    let target = std::sync::Arc::new(std::sync::Mutex::new(old.bootstrap()));
    let lb = forwarder(target.clone()).await;
    let (mut child, mut lines) =
        support::start_script("produce_through_switch.py", &[&lb, "t", "10"]);
    assert_eq!(support::next_line(&mut lines), "first");
    *target.lock().unwrap() = new.bootstrap();
    old.inject(ApiKey::Produce, Fault::Error(NOT_LEADER_OR_FOLLOWER), 1000);
    old.inject(ApiKey::Metadata, Fault::Error(REBOOTSTRAP_REQUIRED), 1000);
    writeln!(child.stdin.take().unwrap(), "go").unwrap();
    let outcome = tokio::task::spawn_blocking(move || {
        let line = support::next_line(&mut lines);
        assert!(child.wait().unwrap().success());
        line
    })
    .await
    .unwrap();
    assert_eq!(outcome, "done 0");
    assert_eq!(
        new.log_end("t", 0),
        10,
        "every record reached the new cluster"
    );
    assert_eq!(old.last_request_version(ApiKey::Metadata), Some(13));
}

/// KIP-1102: a broker answers Metadata with REBOOTSTRAP_REQUIRED (its cluster is being replaced,
/// say) while the bootstrap address already leads to the new cluster. The client leaves the
/// brokers it knew, bootstraps again on a new connection, and has the new cluster's picture.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_asking_for_a_rebootstrap_is_obeyed() {
    const REBOOTSTRAP_REQUIRED: i16 = 129;
    let old = MockCluster::start(2).await.unwrap();
    let new = MockCluster::start(2).await.unwrap();
    old.create_topic("t", 2);
    new.create_topic("t", 3);
    let first = |c: &MockCluster| c.bootstrap().split(',').next().unwrap().to_owned();
    let target = std::sync::Arc::new(std::sync::Mutex::new(first(&old)));
    let lb = forwarder(target.clone()).await;
    let mut config = client(&old);
    config.bootstrap_servers = vec![lb];
    let client = spate::cluster::Client::connect(config).await.unwrap();
    let addresses = |m: &spate::cluster::ClusterMetadata| {
        let mut a: Vec<String> = m.brokers.values().map(|b| b.address()).collect();
        a.sort();
        a
    };
    let sorted = |c: &MockCluster| {
        let mut a: Vec<String> = c.bootstrap().split(',').map(str::to_owned).collect();
        a.sort();
        a
    };
    let known = client
        .refresh_metadata(spate::cluster::Topics::Only(&["t"]))
        .await
        .unwrap();
    assert_eq!(addresses(&known), sorted(&old));
    *target.lock().unwrap() = first(&new);
    old.inject(ApiKey::Metadata, Fault::Error(REBOOTSTRAP_REQUIRED), 2);
    let fresh = client
        .refresh_metadata(spate::cluster::Topics::Only(&["t"]))
        .await
        .unwrap();
    assert_eq!(addresses(&fresh), sorted(&new));
    assert_eq!(fresh.topic("t").unwrap().partitions.len(), 3);
    assert_eq!(old.last_request_version(ApiKey::Metadata), Some(13));
}
