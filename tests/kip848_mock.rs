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
use std::time::{Duration, Instant};

use spate::mock::MockCluster;
use spate::producer::{Producer, ProducerConfig, Record};
use spate::ClientConfig;
use support::{next_line, start_script, ScriptLines};

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
