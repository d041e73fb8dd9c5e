//! Consumers under churn on the embedded cluster (`--features mock`): the revocation
//! handshake (a slow Revoked handler keeps its membership, and its commits succeed),
//! `max.poll.interval.ms` (a consumer that stops asking gives its partitions up), a static
//! member the coordinator forgot, a member closed in the middle of a rebalance (it leaves at
//! once), and librdkafka committing in its revoke callback (the
//! embedded coordinator accepts it, as Kafka's does).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spate::consumer::{Consumer, ConsumerConfig, Event, OffsetReset};
use spate::mock::MockCluster;
use spate::producer::{Producer, ProducerConfig, Record};
use spate::ClientConfig;

fn config(cluster: &MockCluster, group: &str) -> ConsumerConfig {
    let mut client = ClientConfig::new(&cluster.bootstrap()).api_timeout(Duration::from_secs(20));
    client.retry_backoff = Duration::from_millis(20);
    let mut c = ConsumerConfig {
        client,
        ..ConsumerConfig::default()
    }
    .group_id(group)
    .session_timeout(Duration::from_millis(1500), Duration::from_millis(200))
    .fetch_max_wait(Duration::from_millis(100))
    .auto_offset_reset(OffsetReset::Earliest)
    .assignors(&["range"]);
    c.rebalance_timeout = Duration::from_secs(20);
    c
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

#[derive(Default, Debug)]
struct Log {
    seen: BTreeSet<(i32, i64)>,
    owned: Vec<(String, i32)>,
    revoked: usize,
    lost: usize,
    /// (partition, offset committed in the Revoked handler)
    committed_in_handler: Vec<(i32, i64)>,
}

type Shared = Arc<Mutex<Log>>;

/// A member that reads until `stop`; its Revoked handler takes `revoke_takes`, then commits
/// the revoked partitions' positions (manual commits: auto-commit off).
fn spawn_member(
    config: ConsumerConfig,
    topic: &str,
    log: Shared,
    revoke_takes: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Consumer> {
    let topic = topic.to_owned();
    tokio::spawn(async move {
        let mut consumer = Consumer::new(config.auto_commit(false)).await.unwrap();
        consumer.subscribe(&[&topic]).unwrap();
        loop {
            let event = tokio::select! {
                _ = stop.changed() => return consumer,
                event = consumer.next() => event.expect("the member never fails"),
            };
            match event {
                Event::Batch(b) => {
                    let mut log = log.lock().unwrap();
                    for r in b.records() {
                        log.seen.insert((b.partition(), r.offset()));
                    }
                }
                Event::Assigned(tps) => log.lock().unwrap().owned.extend(tps),
                Event::Revoked(tps) => {
                    // Slow: longer than the session timeout.
                    tokio::time::sleep(revoke_takes).await;
                    let positions: Vec<(String, i32, i64)> = tps
                        .iter()
                        .filter_map(|(t, p)| Some((t.clone(), *p, consumer.position(t, *p)?)))
                        .collect();
                    consumer
                        .commit_offsets(&positions)
                        .await
                        .expect("a commit in the Revoked handler succeeds");
                    let mut log = log.lock().unwrap();
                    log.revoked += 1;
                    log.owned.retain(|tp| !tps.contains(tp));
                    log.committed_in_handler
                        .extend(positions.iter().map(|(_, p, o)| (*p, *o)));
                }
                Event::Lost(tps) => {
                    let mut log = log.lock().unwrap();
                    log.lost += 1;
                    log.owned.retain(|tp| !tps.contains(tp));
                }
                _ => {}
            }
        }
    })
}

/// Java calls onPartitionsRevoked before rejoining, heartbeating meanwhile, and commits made
/// there use the current generation. A handler slower than the session timeout keeps the
/// membership, its commits succeed, and the partitions move only after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_revoked_handler_keeps_its_membership_and_its_commits_succeed() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("slow", 4);
    let writer = spawn_writer(&cluster, "slow", 4, 150, Duration::from_millis(20));
    let a_log: Shared = Arc::default();
    let b_log: Shared = Arc::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let a = spawn_member(
        config(&cluster, "slow"),
        "slow",
        a_log.clone(),
        Duration::from_secs(3),
        stopped.clone(),
    );
    wait_until("A owns all four", Duration::from_secs(20), || {
        a_log.lock().unwrap().owned.len() == 4 && !a_log.lock().unwrap().seen.is_empty()
    })
    .await;
    let generation = cluster.group("slow").unwrap().generation;
    let b = spawn_member(
        config(&cluster, "slow"),
        "slow",
        b_log.clone(),
        Duration::ZERO,
        stopped.clone(),
    );
    wait_until("two members share four", Duration::from_secs(30), || {
        let (a, b) = (a_log.lock().unwrap(), b_log.lock().unwrap());
        a.owned.len() + b.owned.len() == 4 && !a.owned.is_empty() && !b.owned.is_empty()
    })
    .await;
    let group = cluster.group("slow").unwrap();
    assert_eq!(group.members.len(), 2, "{group:?}");
    assert_eq!(
        group.generation,
        generation + 1,
        "one rebalance: A was never evicted"
    );
    {
        let a_done = a_log.lock().unwrap();
        assert_eq!(a_done.lost, 0, "A never lost its partitions");
        assert_eq!(a_done.revoked, 1);
        assert_eq!(a_done.committed_in_handler.len(), 4);
        for (p, offset) in &a_done.committed_in_handler {
            assert!(*offset > 0, "A had read partition {p}");
            let committed = cluster.committed("slow", "slow", *p).unwrap_or(-1);
            assert!(
                committed >= *offset,
                "partition {p}: {committed} < {offset}"
            );
        }
    }
    writer.await.unwrap();
    wait_until("every record read", Duration::from_secs(30), || {
        let (a, b) = (a_log.lock().unwrap(), b_log.lock().unwrap());
        (0..4).all(|p| (0..150).all(|o| a.seen.contains(&(p, o)) || b.seen.contains(&(p, o))))
    })
    .await;
    stop.send(true).unwrap();
    a.await.unwrap().close().await.unwrap();
    b.await.unwrap().close().await.unwrap();
}

/// Closing a member in the middle of a rebalance leaves at once: the JoinGroup the
/// coordinator holds (here until the other member's slow Revoked handler is done) is dropped
/// and LeaveGroup sent, as Java's close does; it does not wait for the rebalance to finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_closes_during_a_rebalance_leaves_at_once() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("closing", 4);
    let writer = spawn_writer(&cluster, "closing", 4, 100, Duration::from_millis(20));
    let a_log: Shared = Arc::default();
    let b_log: Shared = Arc::default();
    let (stop_a, stopped_a) = tokio::sync::watch::channel(false);
    let (stop_b, stopped_b) = tokio::sync::watch::channel(false);
    let revoke_takes = Duration::from_secs(10);
    let a = spawn_member(
        config(&cluster, "closing"),
        "closing",
        a_log.clone(),
        revoke_takes,
        stopped_a,
    );
    wait_until("A owns all four", Duration::from_secs(20), || {
        a_log.lock().unwrap().owned.len() == 4
    })
    .await;
    let b = spawn_member(
        config(&cluster, "closing"),
        "closing",
        b_log.clone(),
        Duration::ZERO,
        stopped_b,
    );
    // B is a member (its JoinGroup is held until A, in its Revoked handler, rejoins).
    wait_until("B joins", Duration::from_secs(20), || {
        cluster.group("closing").unwrap().members.len() == 2
    })
    .await;
    assert!(b_log.lock().unwrap().owned.is_empty());
    stop_b.send(true).unwrap();
    let started = std::time::Instant::now();
    b.await.unwrap().close().await.unwrap();
    let took = started.elapsed();
    assert!(
        took < revoke_takes / 2,
        "close waited for the rebalance ({took:?})"
    );
    assert!(
        a_log.lock().unwrap().revoked == 0,
        "the rebalance was still under way when B closed"
    );
    // The group forms without B: A gets all four back and reads everything.
    wait_until("A alone in the group", Duration::from_secs(30), || {
        let group = cluster.group("closing").unwrap();
        group.stable && group.members.len() == 1 && a_log.lock().unwrap().owned.len() == 4
    })
    .await;
    writer.await.unwrap();
    wait_until("every record read", Duration::from_secs(30), || {
        let a = a_log.lock().unwrap();
        (0..4).all(|p| (0..100).all(|o| a.seen.contains(&(p, o))))
    })
    .await;
    stop_a.send(true).unwrap();
    a.await.unwrap().close().await.unwrap();
}

/// A consumer that stops calling `next()` for longer than `max.poll.interval.ms` leaves the
/// group: its partitions go to the others. When it asks again it hears they were lost, and
/// joins again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_asking_gives_its_partitions_up() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("idle", 4);
    let writer = spawn_writer(&cluster, "idle", 4, 100, Duration::from_millis(20));
    let b_log: Shared = Arc::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut a_config = config(&cluster, "idle");
    a_config.rebalance_timeout = Duration::from_secs(2); // max.poll.interval.ms
    let mut a = Consumer::new(a_config.auto_commit(false)).await.unwrap();
    a.subscribe(&["idle"]).unwrap();
    let mut a_owned = Vec::new();
    while a_owned.len() < 4 {
        if let Event::Assigned(tps) = a.next().await.unwrap() {
            a_owned.extend(tps);
        }
    }
    let b = spawn_member(
        config(&cluster, "idle"),
        "idle",
        b_log.clone(),
        Duration::ZERO,
        stopped.clone(),
    );
    // A goes quiet while B joins: the rebalance waits for A's join, which never comes while
    // A does not ask; at max.poll.interval.ms A leaves, and B takes all four.
    let quiet = std::time::Instant::now();
    wait_until("B owns all four", Duration::from_secs(15), || {
        b_log.lock().unwrap().owned.len() == 4
    })
    .await;
    assert!(
        quiet.elapsed() >= Duration::from_millis(1500),
        "not before the poll interval: {:?}",
        quiet.elapsed()
    );
    assert_eq!(cluster.group("idle").unwrap().members.len(), 1);
    // A asks again: it hears its partitions were lost, and joins again.
    let mut lost = Vec::new();
    let mut again = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while again.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "A never came back");
        match tokio::time::timeout(Duration::from_secs(1), a.next()).await {
            Ok(Ok(Event::Lost(tps))) => lost.extend(tps),
            Ok(Ok(Event::Revoked(tps))) => panic!("revoked {tps:?}: A had already lost them"),
            Ok(Ok(Event::Assigned(tps))) => again.extend(tps),
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => panic!("{e}"),
        }
    }
    lost.sort();
    a_owned.sort();
    assert_eq!(lost, a_owned, "A heard it lost what it had");
    wait_until("two members again", Duration::from_secs(20), || {
        cluster
            .group("idle")
            .is_some_and(|g| g.stable && g.members.len() == 2)
    })
    .await;
    writer.await.unwrap();
    stop.send(true).unwrap();
    b.await.unwrap().close().await.unwrap();
    a.close().await.unwrap();
}

/// A static member whose member id the coordinator forgot (its session expired there) gets
/// UNKNOWN_MEMBER_ID; like Java it joins again with a new member id under its instance id,
/// and gets partitions back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_the_coordinator_forgot_rejoins() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("forgot", 2);
    let log: Shared = Arc::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let member = spawn_member(
        config(&cluster, "forgot").group_instance_id("worker-1"),
        "forgot",
        log.clone(),
        Duration::ZERO,
        stopped,
    );
    wait_until("the member owns both", Duration::from_secs(20), || {
        log.lock().unwrap().owned.len() == 2
    })
    .await;
    let old = cluster.group("forgot").unwrap().instances["worker-1"].clone();
    assert!(cluster.expire_member("forgot", &old));
    wait_until(
        "back in the group under a new member id",
        Duration::from_secs(20),
        || {
            cluster.group("forgot").is_some_and(|g| {
                g.stable && g.instances.get("worker-1").is_some_and(|id| *id != old)
            }) && log.lock().unwrap().owned.len() == 2
        },
    )
    .await;
    assert_eq!(log.lock().unwrap().lost, 1, "{:?}", log.lock().unwrap());
    stop.send(true).unwrap();
    member.await.unwrap().close().await.unwrap();
}

/// The embedded coordinator accepts a commit in the current generation while the group
/// prepares a rebalance, as Kafka's does (ClassicGroup.validateOffsetCommit): checked first
/// with librdkafka, which commits in its revoke callback and expects it to work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_commits_in_its_revoke_callback() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("rk", 2);
    let writer = spawn_writer(&cluster, "rk", 2, 300, Duration::from_millis(20));
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/group_member.py");
    let bootstrap = cluster.bootstrap();
    let rdkafka = std::thread::spawn(move || {
        Command::new(&python)
            .arg(&script)
            .args([&bootstrap, "rk", "rk", "12", "commit-on-revoke"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"))
    });
    wait_until("librdkafka owns both", Duration::from_secs(30), || {
        cluster
            .group("rk")
            .is_some_and(|g| g.stable && g.members.len() == 1)
    })
    .await;
    // Let it read (and so have offsets to commit), then a spate member joins: an eager
    // rebalance, in which librdkafka's revoke callback commits.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log: Shared = Arc::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let spate = spawn_member(
        config(&cluster, "rk"),
        "rk",
        log.clone(),
        Duration::ZERO,
        stopped,
    );
    let output = tokio::task::spawn_blocking(move || rdkafka.join().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("revoke-commit ok"), "{stdout}");
    assert!(!stdout.contains("revoke-commit failed"), "{stdout}");
    writer.await.unwrap();
    stop.send(true).unwrap();
    spate.await.unwrap().close().await.unwrap();
}

/// Two processes configured with one `group.instance.id`: the newer takes the place, and the
/// older hears a typed, fatal error (FENCED_INSTANCE_ID), not a retry loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_member_with_the_same_instance_id_fences_the_first() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("twins", 2);
    let mut first = Consumer::new(config(&cluster, "twins").group_instance_id("twin"))
        .await
        .unwrap();
    first.subscribe(&["twins"]).unwrap();
    loop {
        if let Event::Assigned(_) = first.next().await.unwrap() {
            break;
        }
    }
    let log: Shared = Arc::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let second = spawn_member(
        config(&cluster, "twins").group_instance_id("twin"),
        "twins",
        log.clone(),
        Duration::ZERO,
        stopped,
    );
    let err = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match first.next().await {
                Ok(_) => continue,
                Err(e) => return e,
            }
        }
    })
    .await
    .expect("the first member is told");
    assert!(
        matches!(&err, spate::Error::FencedInstanceId { group_instance_id, .. } if group_instance_id == "twin"),
        "{err:?}"
    );
    assert_eq!(err.action(), spate::Action::Fatal);
    wait_until("the second owns both", Duration::from_secs(20), || {
        log.lock().unwrap().owned.len() == 2
    })
    .await;
    stop.send(true).unwrap();
    second.await.unwrap().close().await.unwrap();
}
