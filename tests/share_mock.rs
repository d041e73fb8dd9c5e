//! Share groups (KIP-932) on the embedded cluster (`--features mock`), each behaviour checked
//! first with librdkafka's share consumer (confluent-kafka 2.16) as the independent client,
//! then with spate's `ShareConsumer`:
//! - three consumers on two partitions (more consumers than partitions is the point) process
//!   every record, each of them some;
//! - records acquired by a consumer that crashes (SIGKILL to its process) are delivered again
//!   after the acquisition lock, with a higher delivery count;
//! - release makes a record available again, reject archives it, and the delivery count limit
//!   archives a poison record that keeps being released.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spate::consumer::share::{AcknowledgeType, AcknowledgementMode, ShareConfig, ShareConsumer};
use spate::mock::{MockCluster, ShareSettings};
use spate::producer::{Producer, ProducerConfig, Record};
use spate::ClientConfig;
use support::start_script;

/// (partition, offset) → delivery counts seen.
type Seen = BTreeMap<(i32, i64), Vec<i16>>;

struct RdShare {
    child: Child,
    events: std::sync::mpsc::Receiver<String>,
}

impl RdShare {
    fn start(cluster: &MockCluster, topic: &str, group: &str, extra: &[&str]) -> RdShare {
        let bootstrap = cluster.bootstrap();
        let mut args = vec![bootstrap.as_str(), topic, group];
        args.extend_from_slice(extra);
        let (child, lines) = start_script("share_member.py", &args);
        let events = support::line_channel(lines);
        RdShare { child, events }
    }

    /// Records printed so far into `seen` (waiting up to `wait` for the first line).
    fn drain(&mut self, seen: &mut Seen, wait: Duration) -> usize {
        let mut n = 0;
        let first = self.events.recv_timeout(wait).ok();
        for line in first
            .into_iter()
            .chain(self.events.try_iter().collect::<Vec<_>>())
        {
            if let Some(rest) = line.strip_prefix("record ") {
                let f: Vec<i64> = rest
                    .split(' ')
                    .map(|x| x.parse().expect("number"))
                    .collect();
                seen.entry((f[0] as i32, f[1]))
                    .or_default()
                    .push(f[2] as i16);
                n += 1;
            } else if line.starts_with("error ") {
                panic!("librdkafka share consumer: {line}");
            }
        }
        n
    }

    fn stop(mut self, seen: &mut Seen) {
        writeln!(self.child.stdin.as_mut().expect("piped"), "stop").expect("stdin");
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "librdkafka share consumer: {status}");
        while self.drain(seen, Duration::from_millis(100)) > 0 {}
    }

    /// SIGKILL to the python process itself.
    fn kill(mut self, seen: &mut Seen) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
        while self.drain(seen, Duration::from_millis(100)) > 0 {}
    }
}

impl Drop for RdShare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn cluster(settings: ShareSettings) -> MockCluster {
    let cluster = MockCluster::start(2).await.expect("cluster");
    cluster.set_share_settings(settings);
    cluster
}

fn settings() -> ShareSettings {
    ShareSettings {
        start_at_earliest: true,
        heartbeat_interval: Duration::from_millis(300),
        session_timeout: Duration::from_secs(6),
        lock_duration: Duration::from_secs(2),
        ..ShareSettings::default()
    }
}

async fn produce(cluster: &MockCluster, topic: &str, partitions: i32, per_partition: usize) {
    let mut client = ClientConfig::new(&cluster.bootstrap());
    client.retry_backoff = Duration::from_millis(20);
    let producer = Producer::new(ProducerConfig {
        client,
        ..ProducerConfig::default()
    })
    .await
    .expect("producer");
    for i in 0..per_partition {
        for p in 0..partitions {
            let value = format!("{p}-{i}");
            let record = Record::new(topic).value(value.as_bytes()).partition(p);
            producer.send(record).await.expect("send");
        }
    }
    producer.flush().await.expect("flush");
}

fn share_config(cluster: &MockCluster, group: &str, mode: AcknowledgementMode) -> ShareConfig {
    let mut config = ShareConfig::new(&cluster.bootstrap(), group);
    config.client.retry_backoff = Duration::from_millis(20);
    config.acknowledgement_mode = mode;
    config.fetch_max_wait = Duration::from_millis(100);
    config
}

/// Reads with a spate share consumer until `done(seen)` or the deadline; explicit mode
/// acknowledges by `decide`.
async fn spate_reads(
    consumer: &mut ShareConsumer,
    seen: &mut Seen,
    secs: u64,
    mut decide: impl FnMut(i32, i64) -> Option<AcknowledgeType>,
    done: impl Fn(&Seen) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !done(seen) {
        let batch = tokio::time::timeout_at(deadline, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("timed out; seen {} records", seen.len()))
            .expect("next");
        for r in batch.records() {
            seen.entry((batch.partition(), r.offset()))
                .or_default()
                .push(r.delivery_count());
            if let Some(kind) = decide(batch.partition(), r.offset()) {
                consumer
                    .acknowledge(&batch, r.offset(), kind)
                    .expect("acknowledge");
            }
        }
    }
}

/// Waits until a share group has `n` members, every one assigned something.
async fn await_members(cluster: &MockCluster, group: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let members = cluster.share_group_members(group).unwrap_or_default();
        if members.len() == n && members.values().all(|tps| !tps.is_empty()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "share group {group}: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn all(partitions: i32, per_partition: usize) -> BTreeSet<(i32, i64)> {
    (0..partitions)
        .flat_map(|p| (0..per_partition as i64).map(move |o| (p, o)))
        .collect()
}

/// Three consumers on two partitions: librdkafka's alone, then spate's alone. Every record is
/// processed, each consumer processes some, and every record ends acknowledged (the start
/// offsets reach the log ends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumers_on_two_partitions_process_every_record() {
    let cluster = cluster(settings()).await;
    cluster.create_topic("jobs", 2);
    cluster.create_topic("jobs-2", 2);
    let per_partition = 300;
    let expected = all(2, per_partition);

    let mut rd: Vec<RdShare> = (0..3)
        .map(|_| RdShare::start(&cluster, "jobs", "rd-workers", &["max=10"]))
        .collect();
    // The records arrive once all three are in (else the first takes everything).
    await_members(&cluster, "rd-workers", 3).await;
    produce(&cluster, "jobs", 2, per_partition).await;
    let mut seen: Vec<Seen> = vec![Seen::new(); 3];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for (m, s) in rd.iter_mut().zip(seen.iter_mut()) {
            m.drain(s, Duration::from_millis(20));
        }
        let union: BTreeSet<(i32, i64)> = seen.iter().flat_map(|s| s.keys().copied()).collect();
        if union == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "librdkafka: {} of {}",
            union.len(),
            expected.len()
        );
    }
    for (m, s) in rd.into_iter().zip(seen.iter_mut()) {
        m.stop(s);
    }
    assert!(
        seen.iter().all(|s| !s.is_empty()),
        "every librdkafka consumer got records"
    );
    assert_eq!(
        cluster.share_group_members("rd-workers").map(|m| m.len()),
        Some(0),
        "they left"
    );
    for p in 0..2 {
        let info = cluster
            .share_partition("rd-workers", "jobs", p)
            .expect("state");
        assert_eq!(
            info.start_offset, per_partition as i64,
            "partition {p}: all acknowledged"
        );
    }

    // spate: each consumer in its own task (a share consumer's `next` is not cancelled).
    let seen: Vec<Arc<Mutex<Seen>>> = (0..3).map(|_| Arc::default()).collect();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for s in &seen {
        let mut config = share_config(&cluster, "spate-workers", AcknowledgementMode::Implicit);
        config.max_poll_records = 10;
        let s = s.clone();
        let mut stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = ShareConsumer::new(config).await.expect("consumer");
            c.subscribe(&["jobs-2"]).expect("subscribe");
            loop {
                let batch = tokio::select! {
                    _ = stop.changed() => break,
                    batch = c.next() => batch.expect("next"),
                };
                let mut s = s.lock().unwrap();
                for r in batch.records() {
                    s.entry((batch.partition(), r.offset()))
                        .or_default()
                        .push(r.delivery_count());
                }
            }
            c.close().await.expect("close");
        }));
    }
    // A group of its own on a topic of its own, written once all three are in.
    await_members(&cluster, "spate-workers", 3).await;
    produce(&cluster, "jobs-2", 2, per_partition).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let union: BTreeSet<(i32, i64)> = seen
            .iter()
            .flat_map(|s| s.lock().unwrap().keys().copied().collect::<Vec<_>>())
            .collect();
        if union == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spate: {} of {}; members {:?}; partitions {:?}; per consumer {:?}",
            union.len(),
            expected.len(),
            cluster.share_group_members("spate-workers"),
            (0..2)
                .map(|p| cluster.share_partition("spate-workers", "jobs-2", p))
                .collect::<Vec<_>>(),
            seen.iter()
                .map(|s| s.lock().unwrap().len())
                .collect::<Vec<_>>(),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(true).unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let seen: Vec<Seen> = seen.iter().map(|s| s.lock().unwrap().clone()).collect();
    assert!(
        seen.iter().all(|s| !s.is_empty()),
        "every spate consumer got records: {:?}",
        seen.iter().map(Seen::len).collect::<Vec<_>>()
    );
    let twice = seen
        .iter()
        .flat_map(|s| s.iter())
        .filter(|(_, c)| c.len() > 1)
        .count();
    assert_eq!(twice, 0, "nothing delivered twice without a crash");
    for p in 0..2 {
        let info = cluster
            .share_partition("spate-workers", "jobs-2", p)
            .expect("state");
        assert_eq!(
            info.start_offset, per_partition as i64,
            "partition {p}: all acknowledged"
        );
    }
}

/// A member that loses a partition (a second member joined) still acknowledges the records
/// it took from it, on its next `next()`, in the share session that acquired them: with a 30 s
/// lock, only that acknowledgement moves the partition's start offset within the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_a_partition_taken_away_are_still_acknowledged() {
    let cluster = cluster(ShareSettings {
        lock_duration: Duration::from_secs(30),
        ..settings()
    })
    .await;
    cluster.create_topic("moves", 2);
    produce(&cluster, "moves", 2, 20).await;
    let mut a = ShareConsumer::new(share_config(&cluster, "g", AcknowledgementMode::Implicit))
        .await
        .expect("consumer");
    a.subscribe(&["moves"]).expect("subscribe");
    let mut seen = Seen::new();
    spate_reads(&mut a, &mut seen, 20, |_, _| None, |s| s.len() == 40).await;
    let mut b = ShareConsumer::new(share_config(&cluster, "g", AcknowledgementMode::Implicit))
        .await
        .expect("consumer");
    b.subscribe(&["moves"]).expect("subscribe");
    // a hears on its own heartbeat that it keeps one partition.
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.assignment().len() != 1 {
        assert!(Instant::now() < deadline, "a kept {:?}", a.assignment());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lost = 1 - a.assignment()[0].1;
    loop {
        // Nothing more to read: `next` waits; the acknowledgements go out before that.
        let _ = tokio::time::timeout(Duration::from_millis(200), a.next()).await;
        let info = cluster.share_partition("g", "moves", lost).expect("state");
        if info.start_offset == 20 {
            assert!(info.acquired.is_empty(), "{info:?}");
            break;
        }
        assert!(Instant::now() < deadline, "partition {lost}: {info:?}");
    }
    b.close().await.expect("close");
    a.close().await.expect("close");
}

/// A consumer that crashes with records acquired: they come back after the lock, counted as a
/// second delivery. librdkafka crashes (SIGKILL) and spate gets its records; then spate
/// crashes (dropped without closing: no acknowledgement, no session close) and librdkafka gets
/// its records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_a_crashed_consumer_are_redelivered_after_the_lock() {
    let cluster = cluster(settings()).await;
    cluster.create_topic("crash", 1);
    produce(&cluster, "crash", 1, 20).await;
    // librdkafka acquires, holds, and is killed.
    let mut holder = RdShare::start(&cluster, "crash", "g1", &["explicit=1", "hold=1", "max=5"]);
    let mut held = Seen::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while held.is_empty() {
        holder.drain(&mut held, Duration::from_millis(100));
        assert!(Instant::now() < deadline, "librdkafka acquired nothing");
    }
    let info = cluster.share_partition("g1", "crash", 0).expect("state");
    assert!(!info.acquired.is_empty(), "{info:?}");
    holder.kill(&mut held);
    let killed_at = Instant::now();
    let mut consumer =
        ShareConsumer::new(share_config(&cluster, "g1", AcknowledgementMode::Implicit))
            .await
            .expect("consumer");
    consumer.subscribe(&["crash"]).expect("subscribe");
    let mut seen = Seen::new();
    let wanted: BTreeSet<(i32, i64)> = held.keys().copied().collect();
    spate_reads(
        &mut consumer,
        &mut seen,
        30,
        |_, _| None,
        |s| wanted.iter().all(|k| s.contains_key(k)),
    )
    .await;
    for k in &wanted {
        assert_eq!(seen[k], vec![2], "{k:?}: the second delivery");
    }
    assert_eq!(
        consumer.acquisition_lock_timeout(),
        Some(Duration::from_secs(2)),
        "the group's lock duration, as the broker reports it"
    );
    assert!(
        killed_at.elapsed() >= Duration::from_millis(1500),
        "not before the lock expired"
    );
    consumer.close().await.expect("close");

    // spate acquires in explicit mode and "crashes": dropped with nothing acknowledged.
    produce(&cluster, "crash", 1, 5).await;
    let mut crasher =
        ShareConsumer::new(share_config(&cluster, "g2", AcknowledgementMode::Explicit))
            .await
            .expect("consumer");
    crasher.subscribe(&["crash"]).expect("subscribe");
    let batch = tokio::time::timeout(Duration::from_secs(20), crasher.next())
        .await
        .expect("records")
        .expect("next");
    let dropped: BTreeSet<(i32, i64)> = batch.records().map(|r| (0, r.offset())).collect();
    drop(batch);
    std::mem::forget(crasher); // no close, no acknowledgement: as a crash leaves it
    let mut reader = RdShare::start(&cluster, "crash", "g2", &[]);
    let mut seen = Seen::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dropped.iter().all(|k| seen.contains_key(k)) {
        reader.drain(&mut seen, Duration::from_millis(100));
        assert!(
            Instant::now() < deadline,
            "librdkafka did not get the crashed records"
        );
    }
    reader.stop(&mut seen);
    for k in &dropped {
        assert_eq!(seen[k].last(), Some(&2), "{k:?}: redelivered once");
    }
}

/// Release, reject and the delivery count limit (explicit mode): a released record comes
/// back with its count up, a rejected one never does, and a record released at every delivery
/// is archived at `group.share.delivery.count.limit` (3 here). librdkafka first, then spate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_reject_and_the_delivery_limit_behave_as_kip_932_says() {
    let cluster = cluster(ShareSettings {
        delivery_count_limit: 3,
        ..settings()
    })
    .await;
    cluster.create_topic("poison", 1);
    produce(&cluster, "poison", 1, 10).await;
    // Offset 3 is poison (always released), offset 5 is rejected.
    let mut rd = RdShare::start(
        &cluster,
        "poison",
        "rd-p",
        &["explicit=1", "release=0:3", "reject=0:5", "max=4"],
    );
    let mut seen = Seen::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        rd.drain(&mut seen, Duration::from_millis(100));
        let info = cluster
            .share_partition("rd-p", "poison", 0)
            .unwrap_or_default();
        if info.start_offset == 10 {
            assert_eq!(
                info.archived,
                Vec::<i64>::new(),
                "archived records below the start are forgotten"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "librdkafka: {info:?}, seen {seen:?}"
        );
    }
    rd.stop(&mut seen);
    assert_eq!(
        seen[&(0, 3)].len(),
        3,
        "the poison record was delivered up to the limit"
    );
    assert_eq!(seen[&(0, 5)].len(), 1, "the rejected record once");
    assert!((0..10)
        .filter(|o| *o != 3)
        .all(|o| seen[&(0, o)].len() == 1));

    let mut consumer = ShareConsumer::new(share_config(
        &cluster,
        "spate-p",
        AcknowledgementMode::Explicit,
    ))
    .await
    .expect("consumer");
    consumer.subscribe(&["poison"]).expect("subscribe");
    let mut seen = Seen::new();
    let decide = |_: i32, o: i64| {
        Some(match o {
            3 => AcknowledgeType::Release,
            5 => AcknowledgeType::Reject,
            _ => AcknowledgeType::Accept,
        })
    };
    spate_reads(&mut consumer, &mut seen, 30, decide, |s| {
        s.get(&(0, 3)).is_some_and(|c| c.len() == 3) && s.len() == 10
    })
    .await;
    consumer.commit().await.expect("commit");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = cluster
            .share_partition("spate-p", "poison", 0)
            .unwrap_or_default();
        if info.start_offset == 10 {
            break;
        }
        assert!(Instant::now() < deadline, "spate: {info:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen[&(0, 3)],
        vec![1, 2, 3],
        "released each time, counted each time"
    );
    assert_eq!(seen[&(0, 5)], vec![1]);
    // Nothing more comes: the poison record is archived.
    let more = tokio::time::timeout(Duration::from_millis(800), consumer.next()).await;
    assert!(more.is_err(), "nothing after the limit: {more:?}");
    consumer.close().await.expect("close");
}

/// `spate share-consume` processes in one share group: one is killed (SIGKILL) while it
/// prints; another prints the rest, the killed one's unacknowledged records included after
/// their lock, stops on SIGTERM with exit 0, and every record ends acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_consume_processes_survive_a_killed_member() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let cluster = cluster(settings()).await;
    cluster.create_topic("cli", 2);
    produce(&cluster, "cli", 2, 100).await;
    let start = |bootstrap: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spate"))
            .args(["share-consume", "-b", bootstrap, "-G", "cli-g", "-t", "cli"])
            .args(["-f", "%p %o\\n", "-X", "max.poll.records=7"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn spate share-consume");
        let lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        (child, rx)
    };
    let parse = |line: String| -> (i32, i64) {
        let (p, o) = line.split_once(' ').expect("partition offset");
        (p.parse().expect("partition"), o.parse().expect("offset"))
    };
    let bootstrap = cluster.bootstrap();
    let (mut first, first_lines) = start(&bootstrap);
    let mut printed: BTreeSet<(i32, i64)> = BTreeSet::new();
    while printed.len() < 30 {
        let line = first_lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the first member prints");
        printed.insert(parse(line));
    }
    first.kill().expect("kill");
    first.wait().expect("wait");
    printed.extend(first_lines.try_iter().map(parse));
    let (mut second, second_lines) = start(&bootstrap);
    let expected = all(2, 100);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !expected.iter().all(|k| printed.contains(k)) {
        assert!(
            Instant::now() < deadline,
            "{} of 200 printed",
            printed.len()
        );
        if let Ok(line) = second_lines.recv_timeout(Duration::from_millis(200)) {
            printed.insert(parse(line));
        }
    }
    support::sigterm(&second);
    let status = second.wait().expect("wait");
    assert!(status.success(), "SIGTERM: exit 0, got {status}");
    for p in 0..2 {
        let info = cluster.share_partition("cli-g", "cli", p).expect("state");
        assert_eq!(
            info.start_offset, 100,
            "partition {p}: everything acknowledged"
        );
    }
}
