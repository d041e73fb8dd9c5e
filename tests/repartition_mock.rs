//! Windowed pipelines over input that is not partitioned by the grouping key (`spate pipe
//! --repartition`), on the embedded cluster (`--features mock`): every user's clicks are spread
//! over all input partitions, so a key's windows are only right if its records all reach one
//! partition's state, through the repartition topic. The output is read back by librdkafka
//! with read_committed and compared with the independent reference
//! (`tests/support/windows_reference.py`) over the whole input as one stream: the allowed
//! lateness is longer than the input, so no record is late whatever order the repartition
//! topic interleaves them in, and the results do not depend on it.
//! - Without `--repartition` the same pipe gives the wrong answer (one window per key and
//!   input partition): the test could fail.
//! - With it, exactly-once, killed (SIGKILL) mid-run and started again: the results equal the
//!   reference exactly, and the state was restored from the changelog.
//! - Repartition records read and committed are deleted (DeleteRecords) as the second stage
//!   commits, never one it has not committed; the results are unchanged.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use spate::mock::{Fault, MockCluster};
use spate::producer::{Producer, ProducerConfig, Record};
use spate::wire::ApiKey;

const PARTITIONS: i32 = 4;
const USERS: usize = 40;
/// Longer than the input's event-time span (about 200 s): nothing is late.
const LATENESS_MS: i64 = 600_000;
const REPARTITION: &str = "win-windows-repartition";
const CHANGELOG: &str = "win-windows-changelog";

/// In input order: (user, event time, n), out of order by up to ±1.5 s.
fn input(records: usize) -> Vec<(String, i64, i64)> {
    let mut rng = fastrand::Rng::with_seed(2718);
    (0..records)
        .map(|i| {
            let user = rng.usize(0..USERS);
            let time = 1_700_000_000_000 + i as i64 * 5 + rng.i64(-1_500..=1_500);
            (format!("u{user}"), time, rng.i64(0..50))
        })
        .collect()
}

/// Writes the input round robin over the partitions, keyed by its position (not the user).
async fn fill(cluster: &MockCluster, input: &[(String, i64, i64)]) {
    let producer = Producer::new(ProducerConfig::new(&cluster.bootstrap()))
        .await
        .expect("producer");
    let values: Vec<(String, String)> = input
        .iter()
        .enumerate()
        .map(|(i, (user, ts, n))| {
            (
                i.to_string(),
                format!(r#"{{"user":"{user}","ts":{ts},"n":{n}}}"#),
            )
        })
        .collect();
    for (c, chunk) in values.chunks(200).enumerate() {
        let rows = chunk.iter().enumerate().map(|(i, (k, v))| {
            Record::new("clicks")
                .key(k.as_bytes())
                .value(v.as_bytes())
                .partition(((c * 200 + i) % PARTITIONS as usize) as i32)
        });
        producer
            .send_batch("clicks", rows)
            .await
            .expect("send")
            .wait()
            .await
            .expect("written");
    }
    producer.close().await.expect("close");
}

/// The reference over the whole input as one stream: `key,start,end,value`, sorted.
fn reference(input: &[(String, i64, i64)], window: &str) -> Vec<String> {
    // One file per call: the tests of this file run at once.
    let path = std::env::temp_dir().join(format!(
        "{}-{}.csv",
        support::unique_topic("spate-repartition"),
        window.replace(':', "-")
    ));
    let csv: String = input
        .iter()
        .map(|(k, t, v)| format!("{k},{t},{v}\n"))
        .collect();
    std::fs::write(&path, csv).expect("write csv");
    let (mut lines, late, _) = support::windows_reference_full(&path, window, "sum", LATENESS_MS);
    let _ = std::fs::remove_file(&path);
    assert_eq!(late, 0, "the reference drops nothing as late");
    lines.sort();
    lines
}

/// `topic` as librdkafka reads it with read_committed, as `key,start,end,value` sorted.
fn committed_output(bootstrap: &str, topic: &str) -> Vec<String> {
    let mut lines: Vec<String> = support::window_results(bootstrap, topic, PARTITIONS)
        .into_iter()
        .map(|(key, start, end, value)| format!("{key},{start},{end},{}", value as i64))
        .collect();
    lines.sort();
    lines
}

fn spawn_pipe(bootstrap: &str, to: &str, window: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(["pipe", "-b", bootstrap, "--from", "clicks", "--to", to])
        .args([
            "-G",
            "win",
            "--key-by-json",
            "user",
            "--event-time",
            "json:ts",
        ])
        .args(["--window", window, "--aggregate", "sum:n"])
        .args(["--allowed-lateness", &format!("{LATENESS_MS}ms")])
        .args([
            "--exactly-once",
            "--commit-interval-ms",
            "100",
            "--lanes",
            "2",
        ])
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

/// Without repartitioning, each input partition aggregates its own share of a user's clicks:
/// several results per user and window, none equal to the reference's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_repartitioning_keys_spread_over_partitions_give_split_windows() {
    let cluster = MockCluster::start(1).await.expect("cluster");
    cluster.create_topic("clicks", PARTITIONS);
    cluster.create_topic("counts", PARTITIONS);
    let input = input(4_000);
    fill(&cluster, &input).await;
    let expected = reference(&input, "tumbling:10000");
    let bootstrap = cluster.bootstrap();
    finish(spawn_pipe(&bootstrap, "counts", "tumbling:10s", &["-e"])).await;
    let got = committed_output(&bootstrap, "counts");
    assert!(
        got.len() > expected.len(),
        "a user's window is split over the input partitions: {} results for {} windows",
        got.len(),
        expected.len()
    );
}

/// With `--repartition`, exactly-once, killed mid-run (SIGKILL to the spate process itself)
/// and started again with `-e`: the results equal the reference over the whole input, for
/// tumbling and session windows, and the second run restored state from the changelog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_repartitioned_pipeline_gives_the_reference_results() {
    for (window, in_ms) in [
        ("tumbling:10s", "tumbling:10000"),
        ("session:400ms", "session:400"),
    ] {
        let cluster = MockCluster::start(3).await.expect("cluster");
        cluster.create_topic("clicks", PARTITIONS);
        cluster.create_topic("counts", PARTITIONS);
        let input = input(40_000);
        fill(&cluster, &input).await;
        let expected = reference(&input, in_ms);
        let bootstrap = cluster.bootstrap();
        // Slow the first run so that the kill lands mid-run: small fetches (a 200-record
        // batch each), every fetch and write delayed. The restart runs at full speed.
        for api in [ApiKey::Produce, ApiKey::Fetch] {
            cluster.inject(api, Fault::Delay(Duration::from_millis(10)), usize::MAX);
        }
        // Nothing purged: the repartition topic is read whole below.
        let static_member = [
            "--repartition",
            "--repartition-purge-interval",
            "never",
            "-X",
            "group.instance.id=one",
        ];
        let slow = ["-X", "max.partition.fetch.bytes=1024"];
        let mut first = spawn_pipe(
            &bootstrap,
            "counts",
            window,
            &[&static_member[..], &slow].concat(),
        );
        // Killed as soon as the second stage has committed some state (the first may be done
        // by then: it is the faster of the two).
        support::wait_for("the second stage to commit part of its input", || {
            support::exited_early(&mut first);
            let second_committed = (0..PARTITIONS)
                .filter_map(|p| cluster.committed(REPARTITION, REPARTITION, p))
                .sum::<i64>()
                > 0;
            second_committed && (0..PARTITIONS).any(|p| cluster.log_end(CHANGELOG, p) > 0)
        })
        .await;
        first.kill().expect("kill");
        first.wait().expect("wait");
        cluster.clear_faults();
        let second = spawn_pipe(
            &bootstrap,
            "counts",
            window,
            &[&static_member[..], &["-e"]].concat(),
        );
        let stderr = finish(second).await;
        assert!(
            support::restored(&stderr) > 0,
            "{window}: state was restored: {stderr}"
        );
        let got = committed_output(&bootstrap, "counts");
        assert_eq!(got.len(), expected.len(), "{window}: as many windows");
        assert!(got == expected, "{window}: the results equal the reference");
        // Every input record went through the repartition topic once, committed.
        let through =
            support::librdkafka_values(&bootstrap, REPARTITION, PARTITIONS, "read_committed");
        assert_eq!(
            through.len(),
            input.len(),
            "{window}: repartitioned once each"
        );
    }
}

/// With a short purge interval, the second stage deletes the repartition records it has
/// committed as it goes (the log start offsets move up), never past what it committed, and
/// the results still equal the reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_repartition_records_are_purged() {
    let cluster = MockCluster::start(1).await.expect("cluster");
    cluster.create_topic("clicks", PARTITIONS);
    cluster.create_topic("counts", PARTITIONS);
    let input = input(20_000);
    fill(&cluster, &input).await;
    let expected = reference(&input, "tumbling:10000");
    let bootstrap = cluster.bootstrap();
    // Small fetches: many commits, so purges happen during the run.
    let extra = [
        "--repartition",
        "--repartition-purge-interval",
        "1ms",
        "-X",
        "max.partition.fetch.bytes=4096",
        "-e",
    ];
    finish(spawn_pipe(&bootstrap, "counts", "tumbling:10s", &extra)).await;
    let mut purged = 0;
    for p in 0..PARTITIONS {
        let start = cluster.log_start(REPARTITION, p);
        let committed = cluster.committed(REPARTITION, REPARTITION, p).unwrap_or(0);
        assert!(
            start <= committed,
            "partition {p}: deleted up to {start}, committed only {committed}"
        );
        purged += start;
    }
    assert!(purged > 0, "consumed repartition records were deleted");
    assert_eq!(committed_output(&bootstrap, "counts"), expected);
}
