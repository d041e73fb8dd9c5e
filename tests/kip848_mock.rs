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
use support::{start_script, ScriptLines};

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
        let (tx, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || forward(lines, tx));
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
        assert!(out.iter().any(|l| l == "closed"), "the member did not close: {out:?}");
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

fn forward(mut lines: ScriptLines, tx: std::sync::mpsc::Sender<String>) {
    while let Some(Ok(line)) = lines.next() {
        if tx.send(line).is_err() {
            return;
        }
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
            g.members.len() == members.len()
                && g.members.values().all(|m| m.reconciled)
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
    assert!(closing.iter().any(|l| l.starts_with("revoked ")), "{closing:?}");
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
                        *ledger.processed.entry((b.partition(), r.offset())).or_default() += 1;
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
        while !self.record_into(ledger, Duration::from_millis(200)).is_empty() {}
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
                .map(|(p, end)| (0..*end).filter(|o| !ledger.processed.contains_key(&(*p, *o))).count())
                .sum::<usize>()
        };
        if missing == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{missing} records never processed");
    }
    // Everyone closes: the last commits are the ends.
    let _ = stop_tx.send(true);
    let closing = rd1.close();
    s2.await.unwrap();
    s3.await.unwrap();
    assert!(!closing.iter().any(|l| l.starts_with("lost ")), "{closing:?}");
    for (p, end) in &ends {
        assert_eq!(cluster.committed(group, topic, *p), Some(*end), "partition {p}");
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
