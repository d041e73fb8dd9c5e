//! Consumer groups against a real broker (tansu by default): members join, leave cleanly and
//! are killed while records keep arriving; partitions move, every record is processed at least
//! once, and the committed offsets end at the log ends.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spate::cluster::{Client, NewTopic};
use spate::consumer::{Consumer, ConsumerConfig, Event};
use spate::producer::{Producer, ProducerConfig, Record};
use support::{unique_topic, TestBroker};

type Seen = Arc<Mutex<BTreeSet<(i32, i64)>>>;

/// Records per partition, one every 100 ms: the writer runs through every membership change.
const ROUNDS: i64 = 300;

#[derive(Debug, Default, Clone)]
struct Log {
    assigned: Vec<Vec<(String, i32)>>,
    revoked: Vec<Vec<(String, i32)>>,
    lost: Vec<Vec<(String, i32)>>,
}

fn member_config(broker: &TestBroker, group: &str) -> ConsumerConfig {
    let mut c = ConsumerConfig {
        client: broker.config(),
        ..ConsumerConfig::default()
    }
    .group_id(group)
    // tansu completes a group's first join after about half the session timeout.
    .session_timeout(Duration::from_secs(6), Duration::from_secs(1))
    .fetch_max_wait(Duration::from_millis(100));
    c.rebalance_timeout = Duration::from_secs(10);
    c.auto_commit_interval = Duration::from_millis(500);
    c.auto_offset_reset = spate::consumer::OffsetReset::Earliest;
    c
}

/// A member: consumes until `stop` says so, then closes cleanly (or is aborted: killed).
fn spawn_member(
    config: ConsumerConfig,
    topic: String,
    seen: Seen,
    log: Arc<Mutex<Log>>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Consumer> {
    tokio::spawn(async move {
        let mut consumer = Consumer::new(config).await.unwrap();
        consumer.subscribe(&[&topic]).unwrap();
        let mut stop = stop;
        loop {
            tokio::select! {
                _ = stop.changed() => return consumer,
                event = consumer.next() => match event.unwrap() {
                    Event::Batch(b) => {
                        let mut seen = seen.lock().unwrap();
                        for r in b.records() {
                            seen.insert((b.partition(), r.offset()));
                        }
                    }
                    Event::Assigned(tps) => log.lock().unwrap().assigned.push(tps),
                    Event::Revoked(tps) => log.lock().unwrap().revoked.push(tps),
                    Event::Lost(tps) => log.lock().unwrap().lost.push(tps),
                    _ => {}
                },
            }
        }
    })
}

/// Writes one record to each of the topic's six partitions every 100 ms, `rounds` times (the
/// value is the round), then closes the producer.
async fn spawn_writer(
    broker: &TestBroker,
    client: &Client,
    topic: &str,
    rounds: i64,
) -> tokio::task::JoinHandle<()> {
    let producer = Producer::with_client(
        client.clone(),
        ProducerConfig {
            client: broker.config(),
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    let topic = topic.to_owned();
    tokio::spawn(async move {
        for round in 0..rounds {
            for p in 0..6 {
                producer
                    .send(
                        Record::new(&topic)
                            .value(format!("{round}").as_bytes())
                            .partition(p),
                    )
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        producer.close().await.unwrap();
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_leave_and_die_and_nothing_is_lost() {
    let broker = TestBroker::start();
    let client = Client::connect(broker.config()).await.unwrap();
    let topic = unique_topic("group");
    let group = unique_topic("group-id");
    client
        .create_topics(&[NewTopic::new(&topic, 6, 1)])
        .await
        .unwrap();
    // Records keep arriving for the whole test.
    let writer = spawn_writer(&broker, &client, &topic, ROUNDS).await;
    let seen: Seen = Arc::default();
    let logs: Vec<Arc<Mutex<Log>>> = (0..3).map(|_| Arc::default()).collect();
    let (stop_a, a_rx) = tokio::sync::watch::channel(false);
    let (stop_b, b_rx) = tokio::sync::watch::channel(false);
    let (stop_c, c_rx) = tokio::sync::watch::channel(false);
    let config = member_config(&broker, &group);
    let a = spawn_member(
        config.clone(),
        topic.clone(),
        seen.clone(),
        logs[0].clone(),
        a_rx,
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let b = spawn_member(
        config.clone(),
        topic.clone(),
        seen.clone(),
        logs[1].clone(),
        b_rx,
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let c = spawn_member(
        config.clone(),
        topic.clone(),
        seen.clone(),
        logs[2].clone(),
        c_rx,
    );
    // tansu holds a follower's SyncGroup that arrives after the leader's until the next
    // rebalance, so a newcomer may wait a rebalance or two for its first partitions.
    tokio::time::sleep(Duration::from_secs(12)).await;
    // B leaves cleanly.
    stop_b.send(true).unwrap();
    b.await.unwrap().close().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A is killed: no LeaveGroup; the group notices at the session timeout.
    a.abort();
    drop(stop_a);
    writer.await.unwrap();
    // C takes over everything and reads to the end.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let done = {
            let seen = seen.lock().unwrap();
            (0..6).all(|p| (0..ROUNDS).all(|o| seen.contains(&(p, o))))
        };
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every record was processed; C's log: {:?}",
            logs[2].lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Auto-commit runs while C waits for records: the positions at the end get committed
    // without another batch arriving.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reader = Consumer::new(member_config(&broker, &group)).await.unwrap();
    let partitions: Vec<(&str, i32)> = (0..6).map(|p| (topic.as_str(), p)).collect();
    for ((_, p), offset) in reader.committed(&partitions).await.unwrap() {
        assert_eq!(
            offset,
            Some(ROUNDS),
            "partition {p} committed at its end while C idles"
        );
    }
    stop_c.send(true).unwrap();
    c.await.unwrap().close().await.unwrap();
    let log_a = logs[0].lock().unwrap().clone();
    let log_b = logs[1].lock().unwrap().clone();
    let log_c = logs[2].lock().unwrap().clone();
    assert!(
        !log_a.assigned.is_empty() && !log_b.assigned.is_empty() && !log_c.assigned.is_empty(),
        "every member had partitions at some point:\nA {log_a:?}\nB {log_b:?}\nC {log_c:?}"
    );
    assert!(
        !log_a.revoked.is_empty(),
        "A gave partitions back when the others joined"
    );
    // Eager rebalances revoke everything before each assignment: C's last one is all six.
    assert_eq!(
        log_c.assigned.last().map(|tps| tps.len()),
        Some(6),
        "C ends with all 6 partitions: {log_c:?}"
    );
}

/// A spate member and a librdkafka member in one group (the "range" assignor both speak):
/// each gets partitions, whichever leads, and together they process every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_a_group_with_a_librdkafka_member() {
    let broker = TestBroker::start();
    let client = Client::connect(broker.config()).await.unwrap();
    let topic = unique_topic("mixed");
    let group = unique_topic("mixed-group");
    client
        .create_topics(&[NewTopic::new(&topic, 6, 1)])
        .await
        .unwrap();
    const MIXED_ROUNDS: i64 = 150;
    let writer = spawn_writer(&broker, &client, &topic, MIXED_ROUNDS).await;
    // librdkafka joins first (and leads), spate second.
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/group_member.py");
    let rdk = std::process::Command::new(&python)
        .arg(&script)
        .args([broker.bootstrap.as_str(), &topic, &group, "22"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut config = member_config(&broker, &group).assignors(&["range"]);
    config.rebalance_timeout = Duration::from_secs(10);
    let mut consumer = Consumer::new(config).await.unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut seen = BTreeSet::new();
    let mut assignments = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(16);
    while let Ok(event) = tokio::time::timeout_at(until, consumer.next()).await {
        match event.unwrap() {
            Event::Batch(b) => {
                for r in b.records() {
                    seen.insert((b.partition(), r.offset()));
                }
            }
            Event::Assigned(tps) => assignments.push(tps),
            _ => {}
        }
    }
    let out = tokio::task::spawn_blocking(move || rdk.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "librdkafka member: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    writer.await.unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut rdk_assigned = Vec::new();
    let mut rdk_records = 0;
    for line in stdout.lines() {
        if let Some(list) = line.strip_prefix("assigned ") {
            rdk_assigned.push(list.to_owned());
        } else if line.starts_with("revoke") {
            continue;
        } else if let Some((p, o)) = line.split_once(' ') {
            seen.insert((p.parse().unwrap(), o.parse().unwrap()));
            rdk_records += 1;
        }
    }
    assert!(
        assignments
            .iter()
            .any(|tps| !tps.is_empty() && tps.len() < 6),
        "spate shared the partitions: {assignments:?}"
    );
    assert!(rdk_records > 0, "librdkafka consumed too: {rdk_assigned:?}");
    // Whatever is left (after the librdkafka member left) is read by spate, from the group's
    // committed offsets on.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !(0..6).all(|p| (0..MIXED_ROUNDS).all(|o| seen.contains(&(p, o)))) {
        assert!(tokio::time::Instant::now() < deadline, "records missing");
        match tokio::time::timeout(Duration::from_secs(1), consumer.next()).await {
            Ok(Ok(Event::Batch(b))) => {
                for r in b.records() {
                    seen.insert((b.partition(), r.offset()));
                }
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => panic!("{e}"),
        }
    }
    consumer.close().await.unwrap();
}

/// A pattern subscription reads every matching topic, and picks up one created later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_subscription_follows_new_topics() {
    let broker = TestBroker::start();
    let client = Client::connect(broker.config()).await.unwrap();
    let prefix = unique_topic("pat");
    let (a, b, c, other) = (
        format!("{prefix}-a"),
        format!("{prefix}-b"),
        format!("{prefix}-c"),
        format!("other-{prefix}"),
    );
    for t in [&a, &b, &other] {
        client
            .create_topics(&[NewTopic::new(t, 1, 1)])
            .await
            .unwrap();
    }
    let producer = Producer::with_client(
        client.clone(),
        ProducerConfig {
            client: broker.config(),
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    for t in [&a, &b, &other] {
        producer
            .send(Record::new(t).value(t.as_bytes()))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let mut config = member_config(&broker, &unique_topic("pat-group"));
    config.client.metadata_max_age = Duration::from_secs(1);
    let mut consumer = Consumer::new(config).await.unwrap();
    consumer.subscribe_pattern(&format!("{prefix}-.*")).unwrap();
    let mut values = BTreeSet::new();
    let mut created = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while values.len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "read only {values:?}"
        );
        match tokio::time::timeout(Duration::from_secs(1), consumer.next()).await {
            Ok(Ok(Event::Batch(batch))) => {
                for r in batch.records() {
                    values.insert(String::from_utf8(r.value().unwrap().to_vec()).unwrap());
                }
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => panic!("{e}"),
        }
        if values.len() == 2 && !created {
            // The first two are in: a third matching topic appears.
            client
                .create_topics(&[NewTopic::new(&c, 1, 1)])
                .await
                .unwrap();
            producer
                .send(Record::new(&c).value(c.as_bytes()))
                .await
                .unwrap();
            producer.flush().await.unwrap();
            created = true;
        }
    }
    assert_eq!(
        values,
        BTreeSet::from([a, b, c]),
        "never the non-matching topic"
    );
    let err = Consumer::new(member_config(&broker, "g"))
        .await
        .unwrap()
        .subscribe_pattern("(unclosed")
        .unwrap_err();
    assert!(err.to_string().contains("(unclosed"), "{err}");
    consumer.close().await.unwrap();
}

/// Cooperative-sticky end to end: when a second member joins, the first gives up only the
/// partitions that move (never everything), and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_rebalances_revoke_only_what_moves() {
    let broker = TestBroker::start();
    let client = Client::connect(broker.config()).await.unwrap();
    let topic = unique_topic("coop");
    let group = unique_topic("coop-group");
    client
        .create_topics(&[NewTopic::new(&topic, 4, 1)])
        .await
        .unwrap();
    let config = member_config(&broker, &group).assignors(&["cooperative-sticky"]);
    let seen: Seen = Arc::default();
    let logs: Vec<Arc<Mutex<Log>>> = (0..2).map(|_| Arc::default()).collect();
    let (stop_1, rx_1) = tokio::sync::watch::channel(false);
    let (stop_2, rx_2) = tokio::sync::watch::channel(false);
    let first = spawn_member(
        config.clone(),
        topic.clone(),
        seen.clone(),
        logs[0].clone(),
        rx_1,
    );
    // Wait until the first member owns all four.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while logs[0].lock().unwrap().assigned.concat().len() < 4 {
        assert!(tokio::time::Instant::now() < deadline, "no assignment");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = spawn_member(config, topic.clone(), seen.clone(), logs[1].clone(), rx_2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (one, two) = (
            logs[0].lock().unwrap().clone(),
            logs[1].lock().unwrap().clone(),
        );
        let owned = |log: &Log| {
            let mut owned: BTreeSet<(String, i32)> = BTreeSet::new();
            for tps in &log.assigned {
                owned.extend(tps.iter().cloned());
            }
            for tps in log.revoked.iter().chain(&log.lost) {
                for tp in tps {
                    owned.remove(tp);
                }
            }
            owned
        };
        if owned(&one).len() == 2 && owned(&two).len() == 2 {
            // Incremental: the first member revoked exactly the two that moved, in one go,
            // and lost nothing.
            assert_eq!(one.revoked.concat().len(), 2, "{one:?}");
            assert!(one.lost.is_empty() && two.lost.is_empty());
            assert!(owned(&one).is_disjoint(&owned(&two)));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no cooperative handover:\n{one:?}\n{two:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_1.send(true).unwrap();
    stop_2.send(true).unwrap();
    first.await.unwrap().close().await.unwrap();
    second.await.unwrap().close().await.unwrap();
}

/// `group.protocol=consumer` against a broker without KIP-848 (tansu speaks no
/// ConsumerGroupHeartbeat): an error the application sees, saying what to do, not a member that
/// waits forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kip848_protocol_on_a_broker_without_it_is_a_clear_error() {
    let broker = TestBroker::start();
    let topic = unique_topic("kip848-unsupported");
    let client = Client::connect(broker.config()).await.unwrap();
    client
        .create_topics(&[NewTopic::new(&topic, 1, 1)])
        .await
        .unwrap();
    let config = member_config(&broker, &unique_topic("g"))
        .group_protocol(spate::consumer::GroupProtocol::Consumer);
    let mut consumer = Consumer::new(config).await.unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let error = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Err(e) = consumer.next().await {
                return e;
            }
        }
    })
    .await
    .expect("the member stops with an error");
    assert!(
        error.to_string().contains("group.protocol=classic"),
        "{error}"
    );
}
