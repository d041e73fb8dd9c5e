//! Windowed pipelines (`spate pipe --window`) on the embedded cluster (`--features mock`),
//! exactly-once, against the independent reference (`tests/support/windows_reference.py`, run
//! per input partition: each partition has its own watermark). The output is read back by
//! librdkafka with read_committed and must equal the reference window for window: nothing
//! missing, nothing twice.
//! - A pipeline killed (SIGKILL) mid-run and started again restores its state from the
//!   changelog and goes on as if nothing happened.
//! - Two members, the second joining while the first works (a rebalance moves partitions and
//!   their state), while the input arrives.
//! - Transactions that abort midway roll the state back to what the changelog committed.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spate::consumer::{ConsumerConfig, OffsetReset};
use spate::mock::{Fault, MockCluster};
use spate::pipeline::event_time::{AggregateSpec, EventTime, KeySource};
use spate::pipeline::window::{Aggregate, UserAggregate, WindowSpec};
use spate::pipeline::{Guarantee, Partitioning, Pipeline, Windowed};
use spate::producer::{Producer, ProducerConfig, Record};
use spate::wire::ApiKey;
use spate::ClientConfig;

const PARTITIONS: i32 = 4;
const USERS: usize = 40;
const LATENESS_MS: i64 = 2_000;
const CHANGELOG: &str = "win-windows-changelog";

/// Per input partition, in order: (user, event time, n). A user's records all go to one
/// partition; event times are out of order by up to ±1.5 s, 1 % are 30 s behind (late) and
/// 1 % 1.5–3 s behind (late for some windows).
fn input(records: usize) -> Vec<Vec<(String, i64, i64)>> {
    let mut rng = fastrand::Rng::with_seed(1632);
    let mut out = vec![Vec::new(); PARTITIONS as usize];
    for i in 0..records {
        let user = rng.usize(0..USERS);
        let base = 1_700_000_000_000 + i as i64 * 5;
        let time = match rng.u32(0..100) {
            0 => base - 30_000,
            1 => base - rng.i64(1_500..=3_000),
            _ => base + rng.i64(-1_500..=1_500),
        };
        out[user % PARTITIONS as usize].push((format!("u{user}"), time, rng.i64(0..50)));
    }
    out
}

/// Per input partition, in order: (user, event time, n).
type Input = Vec<Vec<(String, i64, i64)>>;

/// Each partition's first and second half.
fn halves(input: &Input) -> (Input, Input) {
    input
        .iter()
        .map(|records| {
            let (a, b) = records.split_at(records.len() / 2);
            (a.to_vec(), b.to_vec())
        })
        .unzip()
}

/// An input record's value.
fn click_json(user: &str, ts: i64, n: i64) -> String {
    format!(r#"{{"user":"{user}","ts":{ts},"n":{n}}}"#)
}

async fn fill(cluster: &MockCluster, input: &[Vec<(String, i64, i64)>]) {
    let producer = Producer::new(ProducerConfig::new(&cluster.bootstrap()))
        .await
        .expect("producer");
    for (p, records) in input.iter().enumerate() {
        let values: Vec<(String, String)> = records
            .iter()
            .map(|(user, ts, n)| (user.clone(), click_json(user, *ts, *n)))
            .collect();
        // Batches of 200, so the pipeline has many steps to be killed between.
        for chunk in values.chunks(200) {
            let rows = chunk.iter().map(|(k, v)| {
                Record::new("clicks")
                    .key(k.as_bytes())
                    .value(v.as_bytes())
                    .partition(p as i32)
            });
            producer
                .send_batch("clicks", rows)
                .await
                .expect("send")
                .wait()
                .await
                .expect("written");
        }
    }
    producer.close().await.expect("close");
}

/// The reference's results, `key,start,end,value` sorted, over every partition. `window` is
/// in the reference's spelling (sizes in milliseconds).
fn reference(input: &[Vec<(String, i64, i64)>], window: &str) -> Vec<String> {
    reference_full(input, window).0
}

/// [`reference`], and the input records it drops as late (as the JSON values `fill` wrote),
/// sorted.
fn reference_full(input: &[Vec<(String, i64, i64)>], window: &str) -> (Vec<String>, Vec<String>) {
    reference_of(input, window, "sum")
}

/// [`reference_full`] for `aggregate` (an average as `SUM/COUNT`).
fn reference_of(
    input: &[Vec<(String, i64, i64)>],
    window: &str,
    aggregate: &str,
) -> (Vec<String>, Vec<String>) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("spate-windowed-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut lines = Vec::new();
    let mut late = Vec::new();
    for (p, records) in input.iter().enumerate() {
        let path = dir.join(format!("p{p}.csv"));
        let csv: String = records
            .iter()
            .map(|(k, t, v)| format!("{k},{t},{v}\n"))
            .collect();
        std::fs::write(&path, csv).expect("write csv");
        let (results, _, late_at) =
            support::windows_reference_full(&path, window, aggregate, LATENESS_MS);
        lines.extend(results);
        late.extend(late_at.iter().map(|&i| {
            let (user, ts, n) = &records[i];
            click_json(user, *ts, *n)
        }));
    }
    let _ = std::fs::remove_dir_all(&dir);
    lines.sort();
    late.sort();
    (lines, late)
}

/// The output as librdkafka reads it with read_committed, as `key,start,end,value` sorted.
fn committed_output(bootstrap: &str) -> Vec<String> {
    let mut lines: Vec<String> = support::window_results(bootstrap, "counts", PARTITIONS)
        .into_iter()
        .map(|(key, start, end, value)| {
            assert_eq!(
                value.fract(),
                0.0,
                "integer sums: {key},{start},{end},{value}"
            );
            format!("{key},{start},{end},{}", value as i64)
        })
        .collect();
    lines.sort();
    lines
}

fn spawn_pipe(bootstrap: &str, window: &str, extra: &[&str], exit_at_end: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spate"));
    cmd.args([
        "pipe", "-b", bootstrap, "--from", "clicks", "--to", "counts", "-G", "win",
    ])
    .args(["--key-by-json", "user", "--event-time", "json:ts"])
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
    .stderr(Stdio::piped());
    if exit_at_end {
        cmd.arg("-e");
    }
    cmd.spawn().expect("spawn spate pipe")
}

/// Some input committed on every partition, and some not yet on one: the run is midway.
fn midway(cluster: &MockCluster) -> bool {
    let committed: Vec<i64> = (0..PARTITIONS)
        .map(|p| cluster.committed("win", "clicks", p).unwrap_or(0))
        .collect();
    let changelog: i64 = (0..PARTITIONS).map(|p| cluster.log_end(CHANGELOG, p)).sum();
    changelog > 0
        && committed.iter().all(|c| *c > 0)
        && (0..PARTITIONS).any(|p| committed[p as usize] < cluster.log_end("clicks", p))
}

async fn finish(child: Child) -> std::process::Output {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait"))
        .await
        .expect("join");
    assert!(
        out.status.success(),
        "spate pipe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Waits for a `spate pipe` that must fail; its stderr.
async fn fails(child: Child) -> String {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait"))
        .await
        .expect("join");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "spate pipe should have failed: {stderr}"
    );
    stderr
}

/// Killed mid-run with a transaction open (SIGKILL to the spate process itself), then started
/// again: the second run restores the state the first committed and the results equal the
/// reference exactly, for tumbling, hopping and session windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_windowed_pipeline_restarts_from_its_changelog_exactly_once() {
    for (window, in_ms) in [
        ("tumbling:10s", "tumbling:10000"),
        ("hopping:10s:5s", "hopping:10000:5000"),
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
        let static_member = ["-X", "group.instance.id=one"];
        let slow = ["-X", "max.partition.fetch.bytes=1024"];
        let mut first = spawn_pipe(
            &bootstrap,
            window,
            &[&static_member[..], &slow].concat(),
            false,
        );
        support::wait_for("the first run to commit part of its input", || {
            support::exited_early(&mut first);
            midway(&cluster)
        })
        .await;
        first.kill().expect("kill");
        first.wait().expect("wait");
        cluster.clear_faults();
        let second = spawn_pipe(&bootstrap, window, &static_member, true);
        let out = finish(second).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            support::restored(&stderr) > 0,
            "{window}: state was restored: {stderr}"
        );
        let got = committed_output(&bootstrap);
        assert_eq!(got.len(), expected.len(), "{window}: as many windows");
        assert!(got == expected, "{window}: the results equal the reference");
    }
}

/// Two members while the input arrives: the second joins while the first works (a rebalance
/// moves half the partitions, whose state the newcomer restores from the changelog), the
/// second half of the input comes, both are stopped (SIGTERM: they commit and leave), and a
/// last run with `-e` emits the windows still open. The results equal the reference exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_windowed_members_and_a_rebalance_give_the_reference_results() {
    let cluster = MockCluster::start(3).await.expect("cluster");
    cluster.create_topic("clicks", PARTITIONS);
    cluster.create_topic("counts", PARTITIONS);
    let input = input(40_000);
    let (early, late) = halves(&input);
    fill(&cluster, &early).await;
    let expected = reference(&input, "tumbling:10000");
    let bootstrap = cluster.bootstrap();
    let window = "tumbling:10s";
    let mut first = spawn_pipe(&bootstrap, window, &[], false);
    support::wait_for("the first member to commit", || {
        support::exited_early(&mut first);
        (0..PARTITIONS).all(|p| cluster.committed("win", "clicks", p).is_some_and(|o| o > 0))
    })
    .await;
    let generation = cluster.group("win").map_or(0, |g| g.generation);
    let mut second = spawn_pipe(&bootstrap, window, &[], false);
    support::wait_for("a rebalance with both members", || {
        support::exited_early(&mut first);
        support::exited_early(&mut second);
        cluster
            .group("win")
            .is_some_and(|g| g.stable && g.members.len() == 2 && g.generation > generation)
    })
    .await;
    fill(&cluster, &late).await;
    support::wait_for("both members to commit the whole input", || {
        support::exited_early(&mut first);
        support::exited_early(&mut second);
        (0..PARTITIONS)
            .all(|p| cluster.committed("win", "clicks", p) == Some(cluster.log_end("clicks", p)))
    })
    .await;
    support::sigterm(&first);
    support::sigterm(&second);
    let (_, b) = tokio::join!(finish(first), finish(second));
    let restored_by_second = support::restored(&String::from_utf8_lossy(&b.stderr));
    assert!(
        restored_by_second > 0,
        "the newcomer restored the state of the partitions it took over: {}",
        String::from_utf8_lossy(&b.stderr)
    );
    // The end of the input: a last run emits the windows still open.
    let last = finish(spawn_pipe(&bootstrap, window, &[], true)).await;
    assert!(support::restored(&String::from_utf8_lossy(&last.stderr)) > 0);
    let got = committed_output(&bootstrap);
    assert_eq!(got.len(), expected.len(), "as many windows");
    assert!(got == expected, "the results equal the reference");
}

/// The library API, exactly-once, with transactions that fail midway (a write refused, then
/// offsets refused because "the group moved on"): each abort throws the lanes' state away and
/// restores it from what the changelog committed, so the input read again is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_transactions_roll_the_window_state_back() {
    const ILLEGAL_GENERATION: i16 = 22;
    const INVALID_PRODUCER_EPOCH: i16 = 47;
    let cluster = MockCluster::start(3).await.expect("cluster");
    cluster.create_topic("clicks", PARTITIONS);
    cluster.create_topic("counts", PARTITIONS);
    let input = input(20_000);
    let (early, late) = halves(&input);
    fill(&cluster, &early).await;
    let expected = reference(&input, "hopping:10000:5000");
    let pipeline = |stop_at_end: bool| {
        // Its own client.id: the faults are for it, not for the test's producer.
        let mut client = ClientConfig::new(&cluster.bootstrap()).client_id("windowed");
        client.retry_backoff = Duration::from_millis(10);
        let consumer = ConsumerConfig {
            client: client.clone(),
            ..ConsumerConfig::default()
        }
        .group_id("win")
        .auto_offset_reset(OffsetReset::Earliest);
        let producer = ProducerConfig {
            client,
            ..ProducerConfig::default()
        };
        let windowed = Windowed::new(
            KeySource::JsonField("user".into()),
            EventTime::JsonField("ts".into()),
            WindowSpec::Hopping {
                size: 10_000,
                advance: 5_000,
            },
            AggregateSpec {
                aggregate: Aggregate::Sum,
                field: Some("n".into()),
            },
        )
        .lateness(LATENESS_MS);
        Pipeline::new(consumer, producer)
            .from_topics(&["clicks"])
            .to_topic("counts")
            .windowed(windowed)
            .partitioning(Partitioning::ByKey)
            .guarantee(Guarantee::ExactlyOnce)
            .commit_interval(Duration::from_millis(20))
            .lanes(2)
            .stop_at_end(stop_at_end)
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(pipeline(false).run_until(async {
        let _ = stopped.await;
    }));
    support::wait_for("a first commit", || {
        (0..PARTITIONS).all(|p| cluster.committed("win", "clicks", p).is_some_and(|o| o > 0))
    })
    .await;
    cluster.inject_for(
        "windowed",
        ApiKey::Produce,
        Fault::Error(INVALID_PRODUCER_EPOCH),
        1,
    );
    cluster.inject_for(
        "windowed",
        ApiKey::TxnOffsetCommit,
        Fault::Error(ILLEGAL_GENERATION),
        1,
    );
    fill(&cluster, &late).await;
    let progress = |cluster: &MockCluster| {
        (0..PARTITIONS)
            .map(|p| {
                (
                    cluster.committed("win", "clicks", p),
                    cluster.log_end("clicks", p),
                )
            })
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while cluster.pending_faults() > 0
        || (0..PARTITIONS)
            .any(|p| cluster.committed("win", "clicks", p) != Some(cluster.log_end("clicks", p)))
    {
        assert!(
            Instant::now() < deadline,
            "the whole input committed: {:?}, faults left {}",
            progress(&cluster),
            cluster.pending_faults()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop.send(());
    let stats = running.await.expect("join").expect("pipeline");
    assert_eq!(stats.aborts, 2, "{stats:?}");
    assert!(stats.restored > 0, "aborts restored the state: {stats:?}");
    assert!(stats.late > 0, "1 % of the input is 30 s behind: {stats:?}");
    // The end of the input.
    let last = pipeline(true).run().await.expect("last run");
    assert!(last.restored > 0, "{last:?}");
    let bootstrap = cluster.bootstrap();
    let got = tokio::task::spawn_blocking(move || committed_output(&bootstrap))
        .await
        .expect("join");
    assert_eq!(got.len(), expected.len(), "as many windows");
    assert!(got == expected, "the results equal the reference");
}

/// A user's mean, as a user aggregate would be written (two numbers per window).
struct Mean;

impl UserAggregate for Mean {
    fn name(&self) -> &str {
        "mean"
    }
    fn width(&self) -> usize {
        2
    }
    fn init(&self, value: f64, acc: &mut [f64]) {
        acc.copy_from_slice(&[value, 1.0]);
    }
    fn merge(&self, acc: &mut [f64], other: &[f64]) {
        acc[0] += other[0];
        acc[1] += other[1];
    }
    fn result(&self, acc: &[f64]) -> f64 {
        acc[0] / acc[1]
    }
}

/// A user-defined aggregate (a mean: a sum and a count per window) through the library API,
/// sessions, exactly-once: stopped after half the input and started again to the end, the second
/// run restores the two-number accumulators from the changelog, and the results equal the
/// reference's averages exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_aggregate_is_logged_and_restored_with_its_whole_accumulator() {
    let cluster = MockCluster::start(1).await.expect("cluster");
    cluster.create_topic("clicks", PARTITIONS);
    cluster.create_topic("counts", PARTITIONS);
    let input = input(8_000);
    let (early, late) = halves(&input);
    fill(&cluster, &early).await;
    let expected: Vec<String> = reference_of(&input, "session:400", "avg")
        .0
        .into_iter()
        .map(|l| support::reference_average(&l))
        .collect();
    let mean = Aggregate::user(Mean);
    let pipeline = |stop_at_end: bool| {
        let consumer = ConsumerConfig::new(&cluster.bootstrap())
            .group_id("win")
            .auto_offset_reset(OffsetReset::Earliest);
        let windowed = Windowed::new(
            KeySource::JsonField("user".into()),
            EventTime::JsonField("ts".into()),
            WindowSpec::Session { gap: 400 },
            AggregateSpec {
                aggregate: mean.clone(),
                field: Some("n".into()),
            },
        )
        .lateness(LATENESS_MS);
        Pipeline::new(consumer, ProducerConfig::new(&cluster.bootstrap()))
            .from_topics(&["clicks"])
            .to_topic("counts")
            .windowed(windowed)
            .guarantee(Guarantee::ExactlyOnce)
            .commit_interval(Duration::from_millis(20))
            .lanes(2)
            .stop_at_end(stop_at_end)
    };
    // The first half, then stopped (as a service is: the open windows stay in the changelog).
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(pipeline(false).run_until(async {
        let _ = stopped.await;
    }));
    support::wait_for("the first half committed", || {
        (0..PARTITIONS)
            .all(|p| cluster.committed("win", "clicks", p) == Some(cluster.log_end("clicks", p)))
    })
    .await;
    let _ = stop.send(());
    let first = running.await.expect("join").expect("first half");
    assert_eq!(first.restored, 0, "nothing to restore yet: {first:?}");
    fill(&cluster, &late).await;
    let second = pipeline(true).run().await.expect("to the end");
    assert!(second.restored > 0, "{second:?}");
    let bootstrap = cluster.bootstrap();
    let got = tokio::task::spawn_blocking(move || {
        let mut lines: Vec<String> = support::window_results(&bootstrap, "counts", PARTITIONS)
            .into_iter()
            .map(|(key, start, end, value)| format!("{key},{start},{end},{value:?}"))
            .collect();
        lines.sort();
        lines
    })
    .await
    .expect("join");
    assert_eq!(got.len(), expected.len(), "as many sessions");
    let differ: Vec<_> = got
        .iter()
        .zip(&expected)
        .filter(|(a, b)| a != b)
        .take(5)
        .collect();
    assert!(
        differ.is_empty(),
        "the results equal the reference's averages: {differ:?}"
    );
}

/// Records dropped as late go to a side topic (`--late-to`), in the same transactions as the
/// output: librdkafka reads there, with read_committed, exactly the input records the
/// reference drops as late (none twice), and the results still equal the reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_records_go_to_a_side_topic() {
    for (window, in_ms) in [
        ("tumbling:10s", "tumbling:10000"),
        ("session:400ms", "session:400"),
    ] {
        let cluster = MockCluster::start(1).await.expect("cluster");
        cluster.create_topic("clicks", PARTITIONS);
        cluster.create_topic("counts", PARTITIONS);
        cluster.create_topic("late-clicks", 3);
        let input = input(20_000);
        fill(&cluster, &input).await;
        let (expected, expected_late) = reference_full(&input, in_ms);
        assert!(expected_late.len() > 100, "the input has a late tail");
        let bootstrap = cluster.bootstrap();
        let pipe = spawn_pipe(&bootstrap, window, &["--late-to", "late-clicks"], true);
        finish(pipe).await;
        assert!(
            committed_output(&bootstrap) == expected,
            "{window}: the results equal the reference"
        );
        let mut late = support::librdkafka_values(&bootstrap, "late-clicks", 3, "read_committed");
        late.sort();
        assert_eq!(
            late.len(),
            expected_late.len(),
            "{window}: as many late records"
        );
        assert!(
            late == expected_late,
            "{window}: the late records are the reference's"
        );
    }
}

/// A side topic that does not exist stops the pipeline at the start, with its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_side_topic_is_a_clear_error() {
    let cluster = MockCluster::start(1).await.expect("cluster");
    cluster.create_topic("clicks", PARTITIONS);
    cluster.create_topic("counts", PARTITIONS);
    fill(&cluster, &input(100)).await;
    let pipe = spawn_pipe(
        &cluster.bootstrap(),
        "tumbling:10s",
        &["--late-to", "nowhere"],
        true,
    );
    let stderr = fails(pipe).await;
    assert!(
        stderr.contains("nowhere"),
        "the error names the topic: {stderr}"
    );
}

/// State has a bound: input that opens more windows than `--max-open-windows` allows stops
/// the pipeline with an error that says so, instead of growing without limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_past_their_bound_stop_the_pipeline_with_an_error() {
    let cluster = MockCluster::start(1).await.expect("cluster");
    cluster.create_topic("clicks", PARTITIONS);
    cluster.create_topic("counts", PARTITIONS);
    // 40 users over 4 partitions, tumbling 10 s windows: about 10 keys per partition, each
    // with a window or two open at a time.
    fill(&cluster, &input(4_000)).await;
    let started = Instant::now();
    let pipe = spawn_pipe(
        &cluster.bootstrap(),
        "tumbling:10s",
        &["--max-open-windows", "3"],
        true,
    );
    let stderr = fails(pipe).await;
    assert!(
        stderr.contains("more than the 3 allowed (max_open_windows)"),
        "the error says why: {stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it stopped at once, without retrying"
    );
    // The same input within a sufficient bound runs to its end.
    let pipe = spawn_pipe(
        &cluster.bootstrap(),
        "tumbling:10s",
        &["--max-open-windows", "100"],
        true,
    );
    finish(pipe).await;
}
