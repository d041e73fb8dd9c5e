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
    let producer = Producer::with_client(
        client.clone(),
        ProducerConfig {
            client: broker.config(),
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    let writer = {
        let producer = producer.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            for round in 0..ROUNDS {
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
            producer.flush().await.unwrap();
        })
    };
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
