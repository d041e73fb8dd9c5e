//! Pipelines against a real broker (tansu by default): the seed job (consume → uppercase →
//! produce) over a million records written and read back by librdkafka, and an at-least-once
//! pipeline process killed in the middle and started again.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use spate::cluster::{Client, NewTopic};
use spate::consumer::{Consumer, ConsumerConfig};
use spate::pipeline::{ops, Chain, Pipeline};
use spate::producer::ProducerConfig;
use support::{
    interop_messages, librdkafka_layout, read_values, read_with_librdkafka, unique_topic,
    write_with_librdkafka, Digest, TestBroker,
};

fn group_config(broker: &TestBroker, group: &str) -> ConsumerConfig {
    let mut c = ConsumerConfig {
        client: broker.config(),
        ..ConsumerConfig::default()
    }
    .group_id(group)
    // tansu completes a group's first join after about half the session timeout.
    .session_timeout(Duration::from_secs(6), Duration::from_secs(1))
    .auto_offset_reset(spate::consumer::OffsetReset::Earliest);
    c.rebalance_timeout = Duration::from_secs(10);
    c
}

/// The seed job: librdkafka writes N records (lz4, keys, headers) to a 4-partition topic; the
/// pipeline upper-cases every value into another 4-partition topic; librdkafka reads it back.
/// Per partition the output is the upper-cased input, in order, keys and headers kept, and the
/// group's committed offsets are at the input's ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_records_are_uppercased_in_order() {
    let broker = TestBroker::start();
    let client = Client::connect(broker.config()).await.unwrap();
    let n = interop_messages();
    let partitions = 4;
    let input = unique_topic("pipe-in");
    let output = unique_topic("pipe-out");
    let group = unique_topic("pipe-group");
    client
        .create_topics(&[
            NewTopic::new(&input, partitions, 1),
            NewTopic::new(&output, partitions, 1),
        ])
        .await
        .unwrap();
    write_with_librdkafka(&broker.bootstrap, &input, partitions, n, "lz4");
    let mut expected = vec![Digest::default(); partitions as usize];
    librdkafka_layout(partitions, n, |p, key, value, headers| {
        expected[p].add(Some(key), Some(&value.to_ascii_uppercase()), headers)
    });

    let stats = Pipeline::new(
        group_config(&broker, &group),
        ProducerConfig {
            client: broker.config(),
            ..ProducerConfig::default()
        }
        .compression(spate::record::Compression::Lz4),
    )
    .from_topics(&[&input])
    .to_topic(&output)
    .operators(|| Chain::new().then(ops::uppercase()))
    .lanes(2)
    .stop_at_end(true)
    .run()
    .await
    .unwrap();
    assert_eq!(stats.records_in, n as u64);
    assert_eq!(stats.records_out, n as u64);
    assert!(stats.commits >= 1);

    let read = read_with_librdkafka(&broker.bootstrap, &output, partitions, "read_uncommitted");
    for (p, (got, want)) in read.iter().zip(&expected).enumerate() {
        assert_eq!(got.count, want.count, "partition {p}: count");
        assert_eq!(got.sha256, want.hex(), "partition {p}: content and order");
    }
    let reader = Consumer::new(group_config(&broker, &group)).await.unwrap();
    let tps: Vec<(&str, i32)> = (0..partitions).map(|p| (input.as_str(), p)).collect();
    for ((_, p), offset) in reader.committed(&tps).await.unwrap() {
        assert_eq!(
            offset,
            Some(expected[p as usize].count as i64),
            "partition {p}: committed at the input's end"
        );
    }
    client.delete_topics(&[&input, &output]).await.unwrap();
}

fn spawn_pipe(bootstrap: &str, input: &str, output: &str, group: &str, exit_at_end: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spate"));
    cmd.args([
        "pipe", "-b", bootstrap, "--from", input, "--to", output, "-G", group,
    ])
    .args(["--map", "uppercase", "--commit-interval-ms", "200"])
    .args([
        "-X",
        "session.timeout.ms=6000",
        "-X",
        "heartbeat.interval.ms=1000",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if exit_at_end {
        cmd.arg("-e");
    }
    cmd.spawn().expect("spawn spate pipe")
}

/// At-least-once: `spate pipe` is killed (SIGKILL) while it works, then started again and run
/// to the end. Every input record is in the output, upper-cased, in its partition; what
/// repeats is only what the killed run wrote after its last commit, replayed in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pipeline_resumes_and_nothing_is_missing() {
    let broker = TestBroker::start();
    let client = Client::connect(broker.config()).await.unwrap();
    let n = 300_000;
    let partitions = 2;
    let input = unique_topic("crash-in");
    let output = unique_topic("crash-out");
    let group = unique_topic("crash-group");
    client
        .create_topics(&[
            NewTopic::new(&input, partitions, 1),
            NewTopic::new(&output, partitions, 1),
        ])
        .await
        .unwrap();
    write_with_librdkafka(&broker.bootstrap, &input, partitions, n, "none");

    let mut first = spawn_pipe(&broker.bootstrap, &input, &output, &group, false);
    // Kill it once output is arriving but far from done.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ps: Vec<i32> = (0..partitions).collect();
        let written: i64 = client
            .list_offsets(&output, &ps, spate::cluster::OffsetSpec::Latest)
            .await
            .unwrap()
            .iter()
            .map(|o| o.offset.max(0))
            .sum();
        if written > 5_000 {
            assert!(
                written < n as i64,
                "killed in the middle, not after the end"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pipeline wrote nothing in 60 s"
        );
        if let Some(status) = first.try_wait().unwrap() {
            panic!("spate pipe exited early: {status}");
        }
        // Short: once joined, the pipeline moves hundreds of thousands of records per second.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();

    let second = spawn_pipe(&broker.bootstrap, &input, &output, &group, true);
    let done = tokio::task::spawn_blocking(move || second.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        done.status.success(),
        "the restarted pipeline failed: {}",
        String::from_utf8_lossy(&done.stderr)
    );

    let mut inputs = vec![Vec::new(); partitions as usize];
    librdkafka_layout(partitions, n, |p, _, value, _| {
        inputs[p].push(value.to_ascii_uppercase())
    });
    let outputs = read_values(&client, &output, partitions).await;
    for p in 0..partitions as usize {
        let (got, want) = (&outputs[p], &inputs[p]);
        assert!(
            got.len() >= want.len(),
            "partition {p}: {} < {}",
            got.len(),
            want.len()
        );
        // The output is the input in order, except that a run that died replays from its
        // last commit: one step back, then in order again.
        let index: std::collections::HashMap<&[u8], usize> = want
            .iter()
            .enumerate()
            .map(|(i, w)| (w.as_slice(), i))
            .collect();
        let position = |v: &Vec<u8>| *index.get(v.as_slice()).expect("only input values");
        let mut expected_next = 0usize;
        let mut rewinds = 0;
        for v in got {
            let at = position(v);
            if at != expected_next {
                assert!(
                    at < expected_next,
                    "partition {p}: a record was skipped at {expected_next}"
                );
                rewinds += 1;
            }
            expected_next = at + 1;
        }
        assert_eq!(
            expected_next,
            want.len(),
            "partition {p}: the output reaches the input's end"
        );
        assert!(
            rewinds <= 1,
            "partition {p}: one replay at most, saw {rewinds}"
        );
    }
    client.delete_topics(&[&input, &output]).await.unwrap();
}

/// `spate pipe` refuses contradictory or unknown arguments with a message that says why,
/// before connecting anywhere.
#[test]
fn bad_pipe_arguments_are_clear_errors() {
    for (args, needle) in [
        (&["--exactly-once"][..], "--exactly-once needs -G GROUP"),
        (
            &["--map", "lowercase"][..],
            "expected uppercase or json:FIELD",
        ),
        (&["-X", "no.such.key=1"][..], "unknown key no.such.key"),
        (&["-X", "linger.ms=soon"][..], "linger.ms"),
        (&["--join-as", "p"][..], "--join-as needs --join-table"),
        (
            &["--join-table", "t", "--join-on", "value"][..],
            "expected key or json:FIELD",
        ),
        (&["--late-to", "t"][..], "--late-to needs --window"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_spate"))
            .args(["pipe", "-b", "127.0.0.1:1", "--from", "a", "--to", "b"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
