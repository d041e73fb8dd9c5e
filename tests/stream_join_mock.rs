//! Windowed stream-stream joins (`spate pipe --join-stream`) on the embedded cluster
//! (`--features mock`): orders and payments, both keyed by user and partitioned alike, joined
//! when their event times are at most 2 s apart, with 1 s of allowed disorder per side (the
//! input is out of order by up to ±1.5 s, so some records are late). The output is read back
//! by librdkafka with read_committed and compared with an independent reference
//! (`tests/support/join_reference.py`), result by result.
//! - Outer join, uninterrupted: every pair, every unmatched record of either side, and the
//!   late count equal the reference's.
//! - Inner and left joins, exactly-once, killed (SIGKILL) mid-run and started again with
//!   `-e`: the results equal the reference exactly (no pair lost or doubled, no spurious
//!   unmatched left record), and the state was restored from the changelog.
//! - Two members and a rebalance; a store of the test's own plugged in through the library.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spate::consumer::{ConsumerConfig, OffsetReset};
use spate::mock::{Fault, MockCluster};
use spate::pipeline::event_time::{EventTime, KeySource};
use spate::pipeline::state::{Change, KeyedStore, MemoryStore, StoreError, StoreFactory};
use spate::pipeline::{Partitioning, Pipeline, StreamJoin};
use spate::producer::{Producer, ProducerConfig, Record};
use spate::wire::ApiKey;

const PARTITIONS: i32 = 4;
const USERS: usize = 400;
const WINDOW_MS: i64 = 2_000;
const LATENESS_MS: i64 = 1_000;
const CHANGELOG: &str = "pay-join-changelog";

/// One input record: side (`L` orders, `R` payments), user, event time, id.
struct Rec {
    side: char,
    user: usize,
    time: i64,
    id: usize,
}

/// Each side's records in offset order; a user's records go to partition `user % 4` of
/// either topic.
fn input(per_side: usize) -> Vec<Rec> {
    let mut rng = fastrand::Rng::with_seed(1618);
    let mut all = Vec::with_capacity(2 * per_side);
    for side in ['L', 'R'] {
        for id in 0..per_side {
            all.push(Rec {
                side,
                user: rng.usize(0..USERS),
                time: 1_700_000_000_000 + id as i64 * 10 + rng.i64(-1_500..=1_500),
                id,
            });
        }
    }
    all
}

async fn fill(cluster: &MockCluster, input: &[Rec]) {
    let producer = Producer::new(ProducerConfig::new(&cluster.bootstrap()))
        .await
        .expect("producer");
    for (side, topic) in [('L', "orders"), ('R', "payments")] {
        let rows: Vec<(String, String, i32)> = input
            .iter()
            .filter(|r| r.side == side)
            .map(|r| {
                (
                    format!("u{}", r.user),
                    format!(r#"{{"user":"u{}","ts":{},"id":{}}}"#, r.user, r.time, r.id),
                    (r.user % PARTITIONS as usize) as i32,
                )
            })
            .collect();
        for chunk in rows.chunks(500) {
            let records = chunk.iter().map(|(k, v, p)| {
                Record::new(topic)
                    .key(k.as_bytes())
                    .value(v.as_bytes())
                    .partition(*p)
            });
            producer
                .send_batch(topic, records)
                .await
                .expect("send")
                .wait()
                .await
                .expect("written");
        }
    }
    producer.close().await.expect("close");
}

/// The reference's results (`key,left_time,left_id,right_time,right_id`, sorted) and late
/// count.
fn reference(input: &[Rec], join: &str) -> (Vec<String>, u64) {
    // One file per call: the tests of this file run at once.
    let path = std::env::temp_dir().join(format!("{}.csv", support::unique_topic("spate-join")));
    let csv: String = input
        .iter()
        .map(|r| {
            format!(
                "{},{},u{},{},{}\n",
                r.side,
                r.user % PARTITIONS as usize,
                r.user,
                r.time,
                r.id
            )
        })
        .collect();
    std::fs::write(&path, csv).expect("write csv");
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/join_reference.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(&script)
        .arg(&path)
        .args([&WINDOW_MS.to_string(), &LATENESS_MS.to_string(), join])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "the reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect();
    let late = lines
        .pop()
        .and_then(|l| l.strip_prefix("late,").map(|n| n.parse().expect("count")))
        .expect("a late count last");
    (lines, late)
}

/// The join's output as librdkafka reads it with read_committed, in the reference's lines.
fn committed_output(bootstrap: &str) -> Vec<String> {
    let side = |v: &serde_json::Value, time: &serde_json::Value| match v {
        serde_json::Value::Null => {
            assert!(time.is_null(), "a missing side has no time");
            ",".to_owned()
        }
        v => {
            assert_eq!(v["ts"], *time, "the side's time is its event time");
            format!("{},{}", v["ts"], v["id"])
        }
    };
    let mut lines: Vec<String> =
        support::librdkafka_values(bootstrap, "joined", PARTITIONS, "read_committed")
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("a JSON result");
                format!(
                    "{},{},{}",
                    v["key"].as_str().expect("key"),
                    side(&v["left"], &v["left_time"]),
                    side(&v["right"], &v["right_time"])
                )
            })
            .collect();
    lines.sort();
    lines
}

fn spawn_pipe(bootstrap: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(["pipe", "-b", bootstrap, "--from", "orders"])
        .args(["--join-stream", "payments", "--to", "joined", "-G", "pay"])
        .args(["--join-on", "json:user", "--event-time", "json:ts"])
        .args(["--join-window", &format!("{WINDOW_MS}ms")])
        .args(["--allowed-lateness", &format!("{LATENESS_MS}ms")])
        .args(["--exactly-once", "--commit-interval-ms", "100"])
        .args(["--lanes", "2"])
        .args([
            "-X",
            "session.timeout.ms=3000",
            "-X",
            "heartbeat.interval.ms=300",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spate pipe")
}

async fn finish(child: Child) -> String {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait"))
        .await
        .expect("join");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "spate pipe failed: {stderr}");
    stderr
}

/// The `N late` of a finished `spate pipe`'s summary.
fn late(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| {
            let (before, _) = l.split_once(" late in ")?;
            before.rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no summary in: {stderr}"))
}

async fn cluster_with(input: &[Rec]) -> MockCluster {
    let cluster = MockCluster::start(3).await.expect("cluster");
    for topic in ["orders", "payments", "joined"] {
        cluster.create_topic(topic, PARTITIONS);
    }
    fill(&cluster, input).await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outer_join_equals_the_reference_with_its_late_records() {
    let input = input(10_000);
    let (expected, expected_late) = reference(&input, "outer");
    assert!(
        expected_late > 100,
        "the input has late records: {expected_late}"
    );
    let cluster = cluster_with(&input).await;
    let stderr = finish(spawn_pipe(&cluster.bootstrap(), &["--outer-join", "-e"])).await;
    let got = committed_output(&cluster.bootstrap());
    let pairs = expected.iter().filter(|l| !l.contains(",,")).count();
    assert!(pairs > 1_500, "the input joins: {pairs} pairs");
    assert_eq!(got.len(), expected.len(), "as many results");
    assert!(got == expected, "the results equal the reference");
    assert_eq!(late(&stderr), expected_late, "the same records were late");
}

/// Exactly-once, killed mid-run (SIGKILL to the spate process itself) and started again with
/// `-e`: inner and left joins equal the reference, and the state was restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_join_gives_the_reference_results() {
    for (join, flag) in [("inner", None), ("left", Some("--left-join"))] {
        let input = input(10_000);
        let (expected, _) = reference(&input, join);
        let cluster = cluster_with(&input).await;
        let bootstrap = cluster.bootstrap();
        // Slow the first run so that the kill lands mid-run: small fetches, every fetch and
        // write delayed. The restart runs at full speed.
        for api in [ApiKey::Produce, ApiKey::Fetch] {
            cluster.inject(api, Fault::Delay(Duration::from_millis(10)), usize::MAX);
        }
        let mut args = vec!["-X", "group.instance.id=one"];
        args.extend(flag);
        let slow = ["-X", "max.partition.fetch.bytes=1024"];
        let mut first = spawn_pipe(&bootstrap, &[&args[..], &slow].concat());
        support::wait_for("the join to commit part of its input", || {
            support::exited_early(&mut first);
            let committed = (0..PARTITIONS)
                .filter_map(|p| cluster.committed("pay", "orders", p))
                .sum::<i64>();
            committed > 0 && (0..PARTITIONS).any(|p| cluster.log_end(CHANGELOG, p) > 0)
        })
        .await;
        first.kill().expect("kill");
        first.wait().expect("wait");
        let read_before_kill: i64 = (0..PARTITIONS)
            .filter_map(|p| cluster.committed("pay", "orders", p))
            .sum();
        assert!(
            read_before_kill < 10_000,
            "{join}: killed mid-run ({read_before_kill} orders committed)"
        );
        cluster.clear_faults();
        let second = spawn_pipe(&bootstrap, &[&args[..], &["-e"]].concat());
        let stderr = finish(second).await;
        assert!(
            support::restored(&stderr) > 0,
            "{join}: state was restored: {stderr}"
        );
        let got = committed_output(&bootstrap);
        assert_eq!(got.len(), expected.len(), "{join}: as many results");
        assert!(got == expected, "{join}: the results equal the reference");
    }
}

/// Two members while the input arrives: the second joins while the first works (a rebalance
/// moves half the tasks, partition `p` of both topics together, whose buffered records the
/// newcomer restores from the changelog), the second half of the input comes, both are
/// stopped (SIGTERM: they commit and leave), and a last run with `-e` emits the left records
/// still unmatched. The left join's results equal the reference exactly: no task was split
/// between members (a pair across two members would be lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_join_members_and_a_rebalance_give_the_reference_results() {
    let input = input(10_000);
    let (expected, _) = reference(&input, "left");
    let (early, late): (Vec<Rec>, Vec<Rec>) = input.into_iter().partition(|r| r.id < 5_000);
    let cluster = cluster_with(&early).await;
    let bootstrap = cluster.bootstrap();
    let committed_all = |cluster: &MockCluster| {
        ["orders", "payments"].iter().all(|t| {
            (0..PARTITIONS).all(|p| cluster.committed("pay", t, p) == Some(cluster.log_end(t, p)))
        })
    };
    let mut first = spawn_pipe(&bootstrap, &["--left-join"]);
    support::wait_for("the first member to commit", || {
        support::exited_early(&mut first);
        (0..PARTITIONS).all(|p| cluster.committed("pay", "orders", p).is_some_and(|o| o > 0))
    })
    .await;
    let generation = cluster.group("pay").map_or(0, |g| g.generation);
    let mut second = spawn_pipe(&bootstrap, &["--left-join"]);
    support::wait_for("a rebalance with both members", || {
        support::exited_early(&mut first);
        support::exited_early(&mut second);
        cluster
            .group("pay")
            .is_some_and(|g| g.stable && g.members.len() == 2 && g.generation > generation)
    })
    .await;
    fill(&cluster, &late).await;
    support::wait_for("both members to commit the whole input", || {
        support::exited_early(&mut first);
        support::exited_early(&mut second);
        committed_all(&cluster)
    })
    .await;
    support::sigterm(&first);
    support::sigterm(&second);
    let (_, b) = tokio::join!(finish(first), finish(second));
    assert!(
        support::restored(&b) > 0,
        "the newcomer restored the state of the tasks it took over: {b}"
    );
    let last = finish(spawn_pipe(&bootstrap, &["--left-join", "-e"])).await;
    assert!(support::restored(&last) > 0, "{last}");
    let got = committed_output(&bootstrap);
    assert_eq!(got.len(), expected.len(), "as many results");
    assert!(got == expected, "the results equal the reference");
}

/// A store that counts its writes, around the in-memory one.
struct Counting {
    inner: MemoryStore,
    puts: Arc<AtomicUsize>,
}

impl KeyedStore for Counting {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.inner.get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.inner.put(key, value)
    }
    fn delete(&mut self, key: &[u8]) {
        self.inner.delete(key)
    }
    fn range<'a>(
        &'a self,
        from: &[u8],
        to: &[u8],
    ) -> Box<dyn Iterator<Item = (&'a [u8], &'a [u8])> + 'a> {
        self.inner.range(from, to)
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn bytes(&self) -> usize {
        self.inner.bytes()
    }
    fn take_changes(&mut self) -> Vec<Change> {
        self.inner.take_changes()
    }
    fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        self.inner.restore(key, value)
    }
}

/// The library API, with a store of the test's own plugged in (`StreamJoin::store_with`):
/// one per task, every buffered record written through it, and the results equal the
/// reference's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugged_in_store_holds_the_join_state() {
    let input = input(4_000);
    let (expected, late) = reference(&input, "inner");
    let cluster = cluster_with(&input).await;
    let puts = Arc::new(AtomicUsize::new(0));
    let made = Arc::new(Mutex::new(Vec::new()));
    let stores = {
        let (puts, made) = (puts.clone(), made.clone());
        StoreFactory::new(move |partition, limit| {
            made.lock().unwrap().push(partition);
            Box::new(Counting {
                inner: MemoryStore::new(limit),
                puts: puts.clone(),
            })
        })
    };
    let join = StreamJoin::new(
        "orders",
        "payments",
        KeySource::JsonField("user".into()),
        EventTime::JsonField("ts".into()),
        WINDOW_MS,
    )
    .lateness(LATENESS_MS)
    .store_with(stores);
    let stats = Pipeline::new(
        ConsumerConfig::new(&cluster.bootstrap())
            .group_id("pay")
            .auto_offset_reset(OffsetReset::Earliest),
        ProducerConfig::new(&cluster.bootstrap()),
    )
    .join_streams(join)
    .to_topic("joined")
    .partitioning(Partitioning::ByKey)
    .stop_at_end(true)
    .run()
    .await
    .expect("the join runs");
    assert_eq!(stats.records_in, 8_000);
    let mut made = made.lock().unwrap().clone();
    made.sort_unstable();
    assert_eq!(made, vec![0, 1, 2, 3], "one store per task");
    assert_eq!(stats.late, late, "the same records were late");
    assert!(
        puts.load(Ordering::Relaxed) as u64 >= 8_000 - late,
        "every record that is not late is buffered through the store: {} puts",
        puts.load(Ordering::Relaxed)
    );
    let got = committed_output(&cluster.bootstrap());
    assert!(got == expected, "the results equal the reference");
}
