//! Consumer groups on the embedded cluster (`--features mock`), where faults can be injected:
//! errors and lost connections on every group API, a coordinator that moves, members that
//! leave or die, and static members that restart without a rebalance (tansu cannot show the
//! last one; see tests/consumer_group.rs for the same group story on a real broker).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spate::consumer::{Consumer, ConsumerConfig, Event, OffsetReset};
use spate::mock::{Fault, MockCluster};
use spate::producer::{Producer, ProducerConfig, Record};
use spate::wire::ApiKey;
use spate::ClientConfig;

type Seen = Arc<Mutex<BTreeSet<(i32, i64)>>>;
type Assignments = Arc<Mutex<Vec<Vec<(String, i32)>>>>;

const NOT_COORDINATOR: i16 = 16;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const REBALANCE_IN_PROGRESS: i16 = 27;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;

fn config(cluster: &MockCluster, group: &str) -> ConsumerConfig {
    let mut client = ClientConfig::new(&cluster.bootstrap())
        .request_timeout(Duration::from_secs(5))
        .api_timeout(Duration::from_secs(20));
    client.retry_backoff = Duration::from_millis(20);
    let mut c = ConsumerConfig {
        client,
        ..ConsumerConfig::default()
    }
    .group_id(group)
    .session_timeout(Duration::from_millis(1500), Duration::from_millis(200))
    .fetch_max_wait(Duration::from_millis(100))
    .auto_offset_reset(OffsetReset::Earliest);
    c.rebalance_timeout = Duration::from_secs(3);
    c.auto_commit_interval = Duration::from_millis(200);
    c
}

/// A member: records what it sees and is assigned until `stop`, then hands back the consumer.
fn spawn_member(
    config: ConsumerConfig,
    topic: &str,
    seen: Seen,
    assigned: Assignments,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Consumer> {
    let topic = topic.to_owned();
    tokio::spawn(async move {
        let mut consumer = Consumer::new(config).await.unwrap();
        consumer.subscribe(&[&topic]).unwrap();
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
                    Event::Assigned(tps) => assigned.lock().unwrap().push(tps),
                    _ => {}
                },
            }
        }
    })
}

/// Writes `rounds` records to each of `partitions`, one round every `every`.
fn spawn_writer(
    cluster: &MockCluster,
    topic: &str,
    partitions: i32,
    rounds: i64,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let bootstrap = cluster.bootstrap();
    let topic = topic.to_owned();
    tokio::spawn(async move {
        let producer = Producer::new(ProducerConfig::new(&bootstrap))
            .await
            .unwrap();
        for round in 0..rounds {
            for p in 0..partitions {
                let value = format!("{round}");
                let record = Record::new(&topic).value(value.as_bytes()).partition(p);
                producer.send(record).await.unwrap();
            }
            tokio::time::sleep(every).await;
        }
        producer.close().await.unwrap();
    })
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Three members on six partitions while records arrive; errors and lost connections on every
/// group API, and the coordinator moves. One member leaves cleanly, one is killed: every
/// record is processed, the survivor ends with all six partitions, and the committed offsets
/// end at the log ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_come_and_go_through_group_faults_and_nothing_is_lost() {
    const ROUNDS: i64 = 200;
    let cluster = MockCluster::start(3).await.unwrap();
    cluster.create_topic("events", 6);
    let writer = spawn_writer(&cluster, "events", 6, ROUNDS, Duration::from_millis(25));
    let seen: Seen = Arc::default();
    let assigned: Vec<Assignments> = (0..3).map(|_| Arc::default()).collect();
    let stops: Vec<_> = (0..3).map(|_| tokio::sync::watch::channel(false)).collect();
    let member = |i: usize| {
        spawn_member(
            config(&cluster, "g"),
            "events",
            seen.clone(),
            assigned[i].clone(),
            stops[i].1.clone(),
        )
    };

    // Faults on every group API, and answers lost on the way back.
    cluster.inject(
        ApiKey::FindCoordinator,
        Fault::Error(COORDINATOR_NOT_AVAILABLE),
        2,
    );
    cluster.inject(ApiKey::JoinGroup, Fault::Error(NOT_COORDINATOR), 1);
    cluster.inject(ApiKey::JoinGroup, Fault::DropResponse, 1);
    cluster.inject(ApiKey::SyncGroup, Fault::Error(REBALANCE_IN_PROGRESS), 1);
    cluster.inject(ApiKey::SyncGroup, Fault::DropRequest, 1);
    cluster.inject(ApiKey::OffsetFetch, Fault::Error(NOT_COORDINATOR), 1);
    let a = member(0);
    wait_until("A gets all six partitions", Duration::from_secs(20), || {
        cluster
            .group("g")
            .is_some_and(|g| g.stable && g.members.len() == 1)
    })
    .await;
    let b = member(1);
    let c = member(2);
    wait_until("three members, stable", Duration::from_secs(20), || {
        cluster
            .group("g")
            .is_some_and(|g| g.stable && g.members.len() == 3)
    })
    .await;
    // In a stable group: heartbeats and commits refused, dropped, or sent to a coordinator
    // that moved away.
    cluster.inject(ApiKey::Heartbeat, Fault::Error(REBALANCE_IN_PROGRESS), 1);
    cluster.inject(ApiKey::Heartbeat, Fault::DropResponse, 1);
    cluster.inject(ApiKey::OffsetCommit, Fault::Error(ILLEGAL_GENERATION), 1);
    cluster.inject(ApiKey::OffsetCommit, Fault::DropRequest, 1);
    cluster.inject(ApiKey::Heartbeat, Fault::Error(UNKNOWN_MEMBER_ID), 1);
    cluster.move_coordinator(2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_until(
        "three members again after the faults",
        Duration::from_secs(20),
        || {
            cluster
                .group("g")
                .is_some_and(|g| g.stable && g.members.len() == 3)
        },
    )
    .await;
    assert_eq!(cluster.pending_faults(), 0, "every fault was met");

    // B leaves cleanly; A is killed (no LeaveGroup: its session times out).
    stops[1].0.send(true).unwrap();
    b.await.unwrap().close().await.unwrap();
    a.abort();
    writer.await.unwrap();
    wait_until("every record processed", Duration::from_secs(30), || {
        let seen = seen.lock().unwrap();
        (0..6).all(|p| (0..ROUNDS).all(|o| seen.contains(&(p, o))))
    })
    .await;
    wait_until("C alone in the group", Duration::from_secs(10), || {
        cluster
            .group("g")
            .is_some_and(|g| g.stable && g.members.len() == 1)
    })
    .await;
    wait_until(
        "committed offsets at the log ends",
        Duration::from_secs(10),
        || (0..6).all(|p| cluster.committed("g", "events", p) == Some(ROUNDS)),
    )
    .await;
    let c_assigned = assigned[2].lock().unwrap().clone();
    assert_eq!(
        c_assigned.last().map(Vec::len),
        Some(6),
        "C ends with every partition: {c_assigned:?}"
    );
    for (i, a) in assigned.iter().enumerate() {
        assert!(!a.lock().unwrap().is_empty(), "member {i} had partitions");
    }
    stops[2].0.send(true).unwrap();
    c.await.unwrap().close().await.unwrap();
    wait_until(
        "an empty group after C leaves",
        Duration::from_secs(5),
        || cluster.group("g").is_some_and(|g| g.members.is_empty()),
    )
    .await;
}

/// Static membership (KIP-345): a member with a `group.instance.id` that restarts within its
/// session timeout gets its partitions back, and the group does not rebalance: the other
/// member keeps its partitions and the generation does not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarts_without_a_rebalance() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("static", 4);
    let static_config = |id: &str| {
        let mut c = config(&cluster, "s").group_instance_id(id);
        c.session_timeout = Duration::from_secs(6);
        c.heartbeat_interval = Duration::from_millis(200);
        c
    };
    let seen: Seen = Arc::default();
    let assigned: Vec<Assignments> = (0..3).map(|_| Arc::default()).collect();
    let (stop_a, a_rx) = tokio::sync::watch::channel(false);
    let (_stop_b, b_rx) = tokio::sync::watch::channel(false);
    let (stop_b2, b2_rx) = tokio::sync::watch::channel(false);
    let a = spawn_member(
        static_config("a"),
        "static",
        seen.clone(),
        assigned[0].clone(),
        a_rx,
    );
    let b = spawn_member(
        static_config("b"),
        "static",
        seen.clone(),
        assigned[1].clone(),
        b_rx,
    );
    wait_until(
        "two static members, stable",
        Duration::from_secs(20),
        || {
            cluster
                .group("s")
                .is_some_and(|g| g.stable && g.members.len() == 2)
        },
    )
    .await;
    wait_until("both have partitions", Duration::from_secs(10), || {
        assigned[..2].iter().all(|a| !a.lock().unwrap().is_empty())
    })
    .await;
    let before = cluster.group("s").unwrap();
    // (A may have been assigned twice already: alone, then with B, if their joins landed in
    // two rebalances.)
    let a_assignments = assigned[0].lock().unwrap().len();
    let b_had = assigned[1].lock().unwrap().last().cloned().unwrap();
    // B dies (no LeaveGroup) and comes back with the same instance id.
    b.abort();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b2 = spawn_member(
        static_config("b"),
        "static",
        seen.clone(),
        assigned[2].clone(),
        b2_rx,
    );
    wait_until(
        "the new B has its partitions",
        Duration::from_secs(10),
        || !assigned[2].lock().unwrap().is_empty(),
    )
    .await;
    let mut b2_has = assigned[2].lock().unwrap().last().cloned().unwrap();
    let mut b_had = b_had;
    b2_has.sort();
    b_had.sort();
    assert_eq!(b2_has, b_had, "the restarted member got its old partitions");
    // Past the old session timeout: nothing expires, nothing rebalances.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = cluster.group("s").unwrap();
    assert_eq!(
        after.generation, before.generation,
        "no rebalance: {before:?} → {after:?}"
    );
    assert_eq!(after.members.len(), 2);
    assert_eq!(
        assigned[0].lock().unwrap().len(),
        a_assignments,
        "B's restart assigned A nothing"
    );
    stop_b2.send(true).unwrap();
    stop_a.send(true).unwrap();
    b2.await.unwrap().close().await.unwrap();
    a.await.unwrap().close().await.unwrap();
}
