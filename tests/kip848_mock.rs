//! The KIP-848 consumer group protocol (`group.protocol=consumer`) on the embedded cluster
//! (`--features mock`), judged first by librdkafka (confluent-kafka 2.16, an independent
//! implementation of the member side), then with spate's members in the same groups.
//!
//! - The control: librdkafka members alone get a correct assignment from the embedded
//!   coordinator (every partition owned by exactly one member, balanced, `uniform` and `range`),
//!   and when members leave or join the partitions move, revoked before they are assigned
//!   elsewhere.
//! - Mixed: librdkafka and spate members share one group while records arrive and members
//!   come, leave and are killed: every record is processed, the committed offsets are the ends,
//!   and no partition is assigned to a member while another still holds it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spate::consumer::{Consumer, ConsumerConfig, Event, GroupProtocol, OffsetReset};
use spate::mock::MockCluster;
use spate::producer::{Producer, ProducerConfig, Record};
use spate::ClientConfig;
use support::start_script;

type Tp = (String, i32);

fn parse_tps(list: &str) -> Vec<Tp> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (t, p) = s.rsplit_once(':').expect("topic:partition");
            (t.to_owned(), p.parse().expect("partition"))
        })
        .collect()
}

/// A librdkafka member run by `kip848_member.py`, its events read on a thread.
struct RdMember {
    child: Child,
    events: std::sync::mpsc::Receiver<String>,
    owned: BTreeSet<Tp>,
}

impl RdMember {
    fn start(cluster: &MockCluster, topic: &str, group: &str, extra: &[&str]) -> RdMember {
        let bootstrap = cluster.bootstrap();
        let mut args = vec![bootstrap.as_str(), topic, group];
        args.extend_from_slice(extra);
        let (child, lines) = start_script("kip848_member.py", &args);
        let events = support::line_channel(lines);
        RdMember {
            child,
            events,
            owned: BTreeSet::new(),
        }
    }

    /// Applies the events printed so far (waiting up to `wait` for the first); returns them.
    fn drain(&mut self, wait: Duration) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(line) = self.events.recv_timeout(wait) {
            out.push(line);
            out.extend(self.events.try_iter());
        }
        for line in &out {
            if let Some(list) = line.strip_prefix("assigned ") {
                self.owned.extend(parse_tps(list));
            } else if let Some(list) = line
                .strip_prefix("revoked ")
                .or_else(|| line.strip_prefix("lost "))
            {
                for tp in parse_tps(list) {
                    self.owned.remove(&tp);
                }
            } else if line.starts_with("error ") || line.starts_with("commit-failed") {
                panic!("librdkafka member: {line}");
            }
        }
        out
    }

    /// Asks the member to close (it revokes, commits and leaves) and waits for it.
    fn close(mut self) -> Vec<String> {
        writeln!(self.child.stdin.as_mut().expect("piped"), "stop").expect("stdin");
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let lines = self.drain(Duration::from_millis(200));
            let closed = lines.iter().any(|l| l == "closed");
            out.extend(lines);
            if closed {
                break;
            }
        }
        assert!(
            out.iter().any(|l| l == "closed"),
            "the member did not close: {out:?}"
        );
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "librdkafka member: {status}");
        out
    }
}

impl Drop for RdMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cluster_config(cluster: &MockCluster) -> ClientConfig {
    let mut client = ClientConfig::new(&cluster.bootstrap())
        .request_timeout(Duration::from_secs(5))
        .api_timeout(Duration::from_secs(10));
    client.retry_backoff = Duration::from_millis(20);
    client
}

async fn produce(cluster: &MockCluster, topic: &str, partitions: i32, per_partition: usize) {
    let producer = Producer::new(ProducerConfig {
        client: cluster_config(cluster),
        ..ProducerConfig::default()
    })
    .await
    .expect("producer");
    for i in 0..per_partition {
        for p in 0..partitions {
            let value = format!("v{p}-{i}");
            let record = Record::new(topic).value(value.as_bytes()).partition(p);
            producer.send(record).await.expect("send");
        }
    }
    producer.flush().await.expect("flush");
}

/// Waits until the members own every partition of `topics` between them, each exactly once,
/// and the coordinator agrees.
fn await_assignment(
    cluster: &MockCluster,
    group: &str,
    members: &mut [&mut RdMember],
    all: &BTreeSet<Tp>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for m in members.iter_mut() {
            m.drain(Duration::from_millis(20));
        }
        let mut union = BTreeSet::new();
        let mut overlap = false;
        for m in members.iter() {
            for tp in &m.owned {
                overlap |= !union.insert(tp.clone());
            }
        }
        assert!(!overlap, "a partition owned twice: {:?}", owned(members));
        let stable = cluster.consumer_group(group).is_some_and(|g| {
            g.members.len() == members.len() && g.members.values().all(|m| m.reconciled)
        });
        if union == *all && stable {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no complete assignment: {:?}, coordinator: {:?}",
            owned(members),
            cluster.consumer_group(group)
        );
    }
}

fn owned(members: &[&mut RdMember]) -> Vec<BTreeSet<Tp>> {
    members.iter().map(|m| m.owned.clone()).collect()
}

fn all_partitions(topic: &str, n: i32) -> BTreeSet<Tp> {
    (0..n).map(|p| (topic.to_owned(), p)).collect()
}

async fn cluster() -> MockCluster {
    let cluster = MockCluster::start(3).await.expect("cluster");
    // Short timeouts, as a test cluster would configure `group.consumer.*`.
    cluster.set_consumer_group_timeouts(Duration::from_secs(6), Duration::from_millis(300));
    cluster
}

/// The control: librdkafka's members alone, on the embedded coordinator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_members_alone_get_a_correct_assignment() {
    let cluster = cluster().await;
    cluster.create_topic("orders", 6);
    produce(&cluster, "orders", 6, 20).await;
    let all = all_partitions("orders", 6);
    let mut a = RdMember::start(&cluster, "orders", "control", &[]);
    await_assignment(&cluster, "control", &mut [&mut a], &all);
    let mut b = RdMember::start(&cluster, "orders", "control", &[]);
    let mut c = RdMember::start(&cluster, "orders", "control", &[]);
    await_assignment(&cluster, "control", &mut [&mut a, &mut b, &mut c], &all);
    // Uniform: two each.
    for m in [&a, &b, &c] {
        assert_eq!(m.owned.len(), 2, "{:?}", m.owned);
    }
    let info = cluster.consumer_group("control").expect("group");
    assert!(info.group_epoch >= 3, "{info:?}");
    // One leaves: its partitions move to the others.
    let closing = b.close();
    assert!(
        closing.iter().any(|l| l.starts_with("revoked ")),
        "{closing:?}"
    );
    await_assignment(&cluster, "control", &mut [&mut a, &mut c], &all);
    assert_eq!(a.owned.len() + c.owned.len(), 6);
    assert_eq!(a.owned.len(), 3, "{:?}", a.owned);
}

/// What every member processed and when its partitions came and went.
#[derive(Default, Debug)]
struct Ledger {
    /// (partition, offset) → how many times processed.
    processed: BTreeMap<(i32, i64), usize>,
}

fn consumer_config(cluster: &MockCluster, group: &str) -> ConsumerConfig {
    let mut c = ConsumerConfig {
        client: cluster_config(cluster),
        ..ConsumerConfig::default()
    }
    .group_id(group)
    .group_protocol(GroupProtocol::Consumer)
    .fetch_max_wait(Duration::from_millis(100))
    .auto_offset_reset(OffsetReset::Earliest);
    c.auto_commit_interval = Duration::from_millis(300);
    c.rebalance_timeout = Duration::from_secs(20);
    c
}

/// A spate member: processes records into the ledger (auto-commit on, so positions are
/// committed before each revocation is acknowledged) until `stop`, then closes.
fn spawn_spate_member(
    config: ConsumerConfig,
    topic: &str,
    ledger: Arc<Mutex<Ledger>>,
    owned: Arc<Mutex<BTreeSet<Tp>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let topic = topic.to_owned();
    tokio::spawn(async move {
        let mut consumer = Consumer::new(config).await.expect("consumer");
        consumer.subscribe(&[&topic]).expect("subscribe");
        loop {
            let event = tokio::select! {
                _ = stop.changed() => break,
                event = consumer.next() => event.expect("the member never fails"),
            };
            match event {
                Event::Batch(b) => {
                    let mut ledger = ledger.lock().unwrap();
                    for r in b.records() {
                        *ledger
                            .processed
                            .entry((b.partition(), r.offset()))
                            .or_default() += 1;
                    }
                }
                Event::Assigned(tps) => owned.lock().unwrap().extend(tps),
                Event::Revoked(tps) | Event::Lost(tps) => {
                    let mut owned = owned.lock().unwrap();
                    for tp in tps {
                        owned.remove(&tp);
                    }
                }
                _ => {}
            }
        }
        consumer.close().await.expect("close");
    })
}

impl RdMember {
    /// SIGKILL to the process itself; what it printed before it died still counts.
    fn kill(mut self, ledger: &Mutex<Ledger>) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
        while !self
            .record_into(ledger, Duration::from_millis(200))
            .is_empty()
        {}
    }

    /// Folds the records this member printed into the ledger.
    fn record_into(&mut self, ledger: &Mutex<Ledger>, wait: Duration) -> Vec<String> {
        let lines = self.drain(wait);
        let mut ledger = ledger.lock().unwrap();
        for line in &lines {
            if let Some(rest) = line.strip_prefix("record ") {
                let mut parts = rest.split(' ');
                let (_topic, p, o) = (parts.next(), parts.next(), parts.next());
                let key = (
                    p.and_then(|p| p.parse().ok()).expect("partition"),
                    o.and_then(|o| o.parse().ok()).expect("offset"),
                );
                *ledger.processed.entry(key).or_default() += 1;
            }
        }
        lines
    }
}

/// librdkafka and spate members in one KIP-848 group while records arrive: members join,
/// one of each kind leaves cleanly, a librdkafka process is killed. Every record is processed;
/// none twice except on the partitions the killed member held (at-least-once); the final
/// commits are the log ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_and_spate_members_share_a_group_while_members_come_and_go() {
    let cluster = cluster().await;
    let (topic, group, partitions, rounds) = ("flow", "mixed", 6, 400);
    cluster.create_topic(topic, partitions);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let writer = {
        let config = ProducerConfig {
            client: cluster_config(&cluster),
            ..ProducerConfig::default()
        };
        tokio::spawn(async move {
            let producer = Producer::new(config).await.expect("producer");
            for round in 0..rounds {
                for p in 0..partitions {
                    let value = format!("{round}");
                    let record = Record::new(topic).value(value.as_bytes()).partition(p);
                    producer.send(record).await.expect("send");
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            producer.close().await.expect("close");
        })
    };
    let all = all_partitions(topic, partitions);
    let settle = Duration::from_millis(20);
    let pump = |rd: &mut [&mut RdMember]| {
        for m in rd.iter_mut() {
            m.record_into(&ledger, settle);
        }
    };
    let spate_owned: Vec<Arc<Mutex<BTreeSet<Tp>>>> = (0..3).map(|_| Arc::default()).collect();
    // Phase 1: one of each.
    let mut rd1 = RdMember::start(&cluster, topic, group, &[]);
    let (s1_stop_tx, s1_stop) = tokio::sync::watch::channel(false);
    let s1 = spawn_spate_member(
        consumer_config(&cluster, group),
        topic,
        ledger.clone(),
        spate_owned[0].clone(),
        s1_stop,
    );
    let coverage = |rd: &[&RdMember]| -> BTreeSet<Tp> {
        let mut union: BTreeSet<Tp> = rd.iter().flat_map(|m| m.owned.clone()).collect();
        for s in &spate_owned {
            union.extend(s.lock().unwrap().iter().cloned());
        }
        union
    };
    let wait_for = |what: &str, rd: &mut [&mut RdMember], members: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            pump(rd);
            let views: Vec<&RdMember> = rd.iter().map(|m| &**m).collect();
            let reconciled = cluster.consumer_group(group).is_some_and(|g| {
                g.members.len() == members && g.members.values().all(|m| m.reconciled)
            });
            if reconciled && coverage(&views) == all {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no complete assignment; coordinator {:?}",
                cluster.consumer_group(group)
            );
        }
    };
    wait_for("two members", &mut [&mut rd1], 2);
    // Phase 2: one more of each.
    let mut rd2 = RdMember::start(&cluster, topic, group, &[]);
    let s2 = spawn_spate_member(
        consumer_config(&cluster, group),
        topic,
        ledger.clone(),
        spate_owned[1].clone(),
        stop.clone(),
    );
    wait_for("four members", &mut [&mut rd1, &mut rd2], 4);
    // Phase 3: the first spate member leaves cleanly.
    s1_stop_tx.send(true).unwrap();
    s1.await.unwrap();
    wait_for("after a spate member left", &mut [&mut rd1, &mut rd2], 3);
    // Phase 4: a librdkafka member is killed (SIGKILL to the python process itself).
    pump(&mut [&mut rd2]);
    let killed: BTreeSet<i32> = rd2.owned.iter().map(|(_, p)| *p).collect();
    assert!(!killed.is_empty(), "the member to kill owns partitions");
    rd2.kill(&ledger);
    let s3 = spawn_spate_member(
        consumer_config(&cluster, group),
        topic,
        ledger.clone(),
        spate_owned[2].clone(),
        stop.clone(),
    );
    // The killed member is removed at the session timeout; its partitions move.
    wait_for("after a member was killed", &mut [&mut rd1], 3);
    writer.await.unwrap();
    // Everything written is processed.
    let ends: BTreeMap<i32, i64> = (0..partitions)
        .map(|p| (p, cluster.log_end(topic, p)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        pump(&mut [&mut rd1]);
        let missing = {
            let ledger = ledger.lock().unwrap();
            ends.iter()
                .map(|(p, end)| {
                    (0..*end)
                        .filter(|o| !ledger.processed.contains_key(&(*p, *o)))
                        .count()
                })
                .sum::<usize>()
        };
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} records never processed"
        );
    }
    // Everyone closes: the last commits are the ends.
    let _ = stop_tx.send(true);
    let closing = rd1.close();
    s2.await.unwrap();
    s3.await.unwrap();
    assert!(
        !closing.iter().any(|l| l.starts_with("lost ")),
        "{closing:?}"
    );
    for (p, end) in &ends {
        assert_eq!(
            cluster.committed(group, topic, *p),
            Some(*end),
            "partition {p}"
        );
    }
    let ledger = ledger.lock().unwrap();
    let twice: Vec<&(i32, i64)> = ledger
        .processed
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect();
    assert!(
        twice.iter().all(|(p, _)| killed.contains(p)),
        "records processed twice outside the killed member's partitions {killed:?}: {twice:?}"
    );
    let total: i64 = ends.values().sum();
    assert_eq!(total, i64::from(rounds) * i64::from(partitions));
    let info = cluster.consumer_group(group).expect("group");
    eprintln!(
        "{total} records, {} processed twice (killed member's partitions {killed:?}), group epoch {}",
        twice.len(),
        info.group_epoch
    );
}

/// Waits until the coordinator has `members` members, all reconciled, and returns the group.
async fn await_reconciled(
    cluster: &MockCluster,
    group: &str,
    members: usize,
) -> spate::mock::ConsumerGroupInfo {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(info) = cluster.consumer_group(group) {
            if info.members.len() == members && info.members.values().all(|m| m.reconciled) {
                return info;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not reconciled: {:?}",
            cluster.consumer_group(group)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assigned_by_instance(info: &spate::mock::ConsumerGroupInfo) -> BTreeMap<String, Vec<Tp>> {
    info.members
        .values()
        .map(|m| {
            (
                m.instance_id.clone().unwrap_or_default(),
                m.assigned.clone(),
            )
        })
        .collect()
}

/// Static membership: a member that leaves with epoch -2 keeps its partitions for its
/// `group.instance.id`; the instance back under a new member id takes them again without
/// moving anyone else's (no new target assignment); a second process with a held instance id
/// is refused with UNRELEASED_INSTANCE_ID. librdkafka first, then spate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_members_get_their_partitions_back_and_a_held_instance_id_is_refused() {
    let cluster = cluster().await;
    cluster.create_topic("st", 4);
    // librdkafka.
    let mut a = RdMember::start(&cluster, "st", "static-rd", &["instance=i-a"]);
    let mut b = RdMember::start(&cluster, "st", "static-rd", &["instance=i-b"]);
    await_assignment(
        &cluster,
        "static-rd",
        &mut [&mut a, &mut b],
        &all_partitions("st", 4),
    );
    let before = cluster.consumer_group("static-rd").expect("group");
    b.close();
    let left = cluster.consumer_group("static-rd").expect("group");
    let b_left = left
        .members
        .values()
        .find(|m| m.instance_id.as_deref() == Some("i-b"))
        .expect("a static member that left stays until its session ends");
    assert_eq!(b_left.epoch, -2);
    let mut b = RdMember::start(&cluster, "st", "static-rd", &["instance=i-b"]);
    let after = await_reconciled(&cluster, "static-rd", 2).await;
    b.drain(Duration::from_millis(500));
    assert_eq!(assigned_by_instance(&after), assigned_by_instance(&before));
    assert_eq!(
        after.assignment_epoch, before.assignment_epoch,
        "no new target assignment"
    );
    // A second process with the instance id b holds.
    let dup = RdMember::start(&cluster, "st", "static-rd", &["instance=i-b"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        // Not `drain`: the error line is what this member must print.
        if let Ok(line) = dup.events.recv_timeout(Duration::from_millis(200)) {
            if line.starts_with("error ") {
                break line;
            }
        }
        assert!(Instant::now() < deadline, "the duplicate was not refused");
    };
    assert!(
        refused.contains("instance ID is still used by another member"),
        "{refused}"
    );
    eprintln!("librdkafka: {refused}");
    drop(dup);

    // spate.
    let config =
        |instance: &str| consumer_config(&cluster, "static-spate").group_instance_id(instance);
    let stop = tokio::sync::watch::channel(false);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let owned: Vec<Arc<Mutex<BTreeSet<Tp>>>> = (0..3).map(|_| Arc::default()).collect();
    let (a_stop, a_rx) = tokio::sync::watch::channel(false);
    let _a = spawn_spate_member(
        config("i-a"),
        "st",
        ledger.clone(),
        owned[0].clone(),
        stop.1.clone(),
    );
    let b = spawn_spate_member(config("i-b"), "st", ledger.clone(), owned[1].clone(), a_rx);
    let before = await_reconciled(&cluster, "static-spate", 2).await;
    a_stop.send(true).unwrap();
    b.await.unwrap();
    let left = cluster.consumer_group("static-spate").expect("group");
    assert!(
        left.members
            .values()
            .any(|m| m.instance_id.as_deref() == Some("i-b") && m.epoch == -2),
        "{left:?}"
    );
    let _b = spawn_spate_member(
        config("i-b"),
        "st",
        ledger.clone(),
        owned[2].clone(),
        stop.1.clone(),
    );
    let after = await_reconciled(&cluster, "static-spate", 2).await;
    assert_eq!(assigned_by_instance(&after), assigned_by_instance(&before));
    assert_eq!(after.assignment_epoch, before.assignment_epoch);
    let mut dup = Consumer::new(config("i-b")).await.expect("consumer");
    dup.subscribe(&["st"]).expect("subscribe");
    let error = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Err(e) = dup.next().await {
                return e;
            }
        }
    })
    .await
    .expect("the duplicate is refused");
    assert!(
        matches!(&error, spate::Error::Kafka { code, .. } if code.0 == 111),
        "UNRELEASED_INSTANCE_ID expected: {error}"
    );
}

/// A pattern subscription resolved by the coordinator (ConsumerGroupHeartbeat v1): topics
/// created later that match are assigned without the member asking again. librdkafka first,
/// then spate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_resolves_pattern_subscriptions_and_follows_new_topics() {
    let cluster = cluster().await;
    cluster.create_topic("metrics-a", 2);
    cluster.create_topic("logs", 2);
    let mut rd = RdMember::start(&cluster, "metrics-.*", "regex-rd", &["regex=1"]);
    await_assignment(
        &cluster,
        "regex-rd",
        &mut [&mut rd],
        &all_partitions("metrics-a", 2),
    );
    assert_eq!(
        cluster.last_request_version(spate::wire::ApiKey::ConsumerGroupHeartbeat),
        Some(1)
    );
    cluster.create_topic("metrics-b", 1);
    let mut both = all_partitions("metrics-a", 2);
    both.extend(all_partitions("metrics-b", 1));
    await_assignment(&cluster, "regex-rd", &mut [&mut rd], &both);
    drop(rd);

    let mut consumer = Consumer::new(consumer_config(&cluster, "regex-spate"))
        .await
        .expect("consumer");
    consumer.subscribe_pattern("metrics-.*").expect("subscribe");
    let mut owned = BTreeSet::new();
    let mut expected = both.clone();
    for step in 0..2 {
        if step == 1 {
            // Created once the member is in: only the coordinator can see it match (the
            // member resolves nothing itself).
            cluster.create_topic("metrics-c", 1);
            expected.extend(all_partitions("metrics-c", 1));
        }
        tokio::time::timeout(Duration::from_secs(30), async {
            while owned != expected {
                if let Event::Assigned(tps) = consumer.next().await.expect("event") {
                    owned.extend(tps);
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("assigned {owned:?}, expected {expected:?}"));
    }
    let info = cluster.consumer_group("regex-spate").expect("group");
    assert!(info
        .members
        .values()
        .all(|m| m.assigned.iter().all(|(t, _)| t.starts_with("metrics-"))));
    consumer.close().await.expect("close");
}

/// `group.remote.assignor=range`: co-partitioned topics give each member the same partition
/// numbers of both (librdkafka and spate members in one group); an assignor the coordinator
/// does not have is UNSUPPORTED_ASSIGNOR, an error the application sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_range_assignor_co_partitions_and_an_unknown_assignor_is_refused() {
    let cluster = cluster().await;
    cluster.create_topic("left", 4);
    cluster.create_topic("right", 4);
    let mut rd = RdMember::start(&cluster, "left", "range-g", &["assignor=range"]);
    rd.drain(Duration::from_millis(100));
    // The spate member subscribes to both; librdkafka to `left` only.
    let mut consumer = Consumer::new(consumer_config(&cluster, "range-g").remote_assignor("range"))
        .await
        .expect("consumer");
    consumer.subscribe(&["left", "right"]).expect("subscribe");
    let info = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            tokio::select! {
                _ = consumer.next() => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            rd.drain(Duration::from_millis(1));
            let info = cluster.consumer_group("range-g").expect("group");
            if info.members.len() == 2 && info.members.values().all(|m| m.reconciled) {
                break info;
            }
            assert!(Instant::now() < deadline, "{info:?}");
        }
    };
    let mut all: Vec<Tp> = info
        .members
        .values()
        .flat_map(|m| m.assigned.clone())
        .collect();
    all.sort();
    let mut expected: Vec<Tp> = all_partitions("left", 4)
        .into_iter()
        .chain(all_partitions("right", 4))
        .collect();
    expected.sort();
    assert_eq!(all, expected);
    // `left` is split in two ranges; `right` (one subscriber) goes whole to spate.
    for m in info.members.values() {
        let left: Vec<i32> = m
            .assigned
            .iter()
            .filter(|(t, _)| t == "left")
            .map(|(_, p)| *p)
            .collect();
        assert_eq!(left.len(), 2, "{info:?}");
        assert_eq!(left[1], left[0] + 1, "a contiguous range: {left:?}");
    }
    consumer.close().await.expect("close");
    drop(rd);

    let mut refused = Consumer::new(consumer_config(&cluster, "fancy-g").remote_assignor("fancy"))
        .await
        .expect("consumer");
    refused.subscribe(&["left"]).expect("subscribe");
    let error = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Err(e) = refused.next().await {
                return e;
            }
        }
    })
    .await
    .expect("the assignor is refused");
    assert!(
        matches!(&error, spate::Error::Kafka { code, .. } if code.0 == 112),
        "UNSUPPORTED_ASSIGNOR expected: {error}"
    );
}
