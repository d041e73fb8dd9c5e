//! `spate bench` on the embedded cluster (what the README's first command runs) and on a real
//! broker: every scenario moves every message, and the JSON says so.
#![cfg(feature = "cli")]

mod support;

use std::process::Command;

use support::TestBroker;

fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_spate"))
        .arg("bench")
        .args(args)
        .args(["--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "spate bench {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--json prints one JSON object")
}

fn check(json: &serde_json::Value, count: u64) {
    let results = json["results"].as_array().unwrap();
    let scenarios: Vec<&str> = results
        .iter()
        .map(|r| r["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(scenarios, ["produce", "consume", "pipe"]);
    for r in results {
        assert_eq!(r["messages"].as_u64(), Some(count), "{r}");
        assert!(r["msgs_per_sec"].as_f64().unwrap() > 0.0, "{r}");
    }
    let p99 = results[0]["p99_ms"].as_f64().expect("produce latency");
    assert!(p99 >= results[0]["p50_ms"].as_f64().unwrap());
}

#[test]
fn bench_runs_on_the_embedded_cluster() {
    let json = bench(&[
        "-n",
        "30000",
        "-s",
        "200",
        "-z",
        "zstd",
        "--partitions",
        "3",
    ]);
    check(&json, 30_000);
    assert!(json["cluster"].as_str().unwrap().contains("embedded"));
}

#[test]
fn bench_runs_against_a_real_broker() {
    let broker = TestBroker::start();
    let json = bench(&["-b", &broker.bootstrap, "-n", "30000"]);
    check(&json, 30_000);
    assert_eq!(json["cluster"].as_str(), Some(broker.bootstrap.as_str()));
}

/// The exactly-once pipeline scenario with three members of one group, a transaction every
/// 50 ms: every message gets through.
#[test]
fn bench_runs_an_exactly_once_pipeline_with_three_members() {
    let json = bench(&[
        "-n",
        "30000",
        "--scenario",
        "pipe-eos",
        "--members",
        "3",
        "--commit-interval-ms",
        "50",
    ]);
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{json}");
    assert_eq!(
        results[1]["scenario"].as_str(),
        Some("pipe-eos (3 members, commit 50 ms)")
    );
    assert_eq!(results[1]["messages"].as_u64(), Some(30_000));
}

/// The windowed pipeline scenario reads every message (and writes one per window).
#[test]
fn bench_runs_a_windowed_pipeline() {
    let json = bench(&["-n", "30000", "--scenario", "pipe-window"]);
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{json}");
    assert_eq!(results[1]["scenario"].as_str(), Some("pipe-window"));
    assert_eq!(results[1]["messages"].as_u64(), Some(30_000));
}

/// The latency scenario sends `--rate` messages a second for `--latency-seconds` and times
/// every one of them from `send` until the consumer reads it.
#[test]
fn bench_measures_end_to_end_latency_at_a_fixed_rate() {
    let json = bench(&[
        "-n",
        "10000",
        "--scenario",
        "latency",
        "--rate",
        "5000",
        "--latency-seconds",
        "2",
        "--linger-ms",
        "0",
    ]);
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{json}");
    let latency = &results[1];
    assert_eq!(latency["scenario"].as_str(), Some("latency"));
    assert_eq!(latency["messages"].as_u64(), Some(10_000));
    // Paced: two seconds for 10,000 messages, not the fraction of a second they take unpaced.
    let seconds = latency["seconds"].as_f64().unwrap();
    assert!((1.9..10.0).contains(&seconds), "{latency}");
    let (p50, p99, p999) = (
        latency["p50_ms"].as_f64().unwrap(),
        latency["p99_ms"].as_f64().unwrap(),
        latency["p999_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= p999, "{latency}");
    assert!(
        p999 < 2_000.0,
        "records wait for nothing on the embedded cluster: {latency}"
    );
}

#[test]
fn bad_bench_arguments_are_clear_errors() {
    for (args, needle) in [
        (
            &["--scenario", "nope"][..],
            "expected produce, consume, pipe, latency, pipe-eos or pipe-window",
        ),
        (&["-X", "no.such.key=1"][..], "unknown key no.such.key"),
        (&["-n", "0"][..], "must be positive"),
        (&["--members", "0"][..], "--members must be positive"),
        (
            &["--rate", "0"][..],
            "--rate and --latency-seconds must be positive",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_spate"))
            .arg("bench")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

/// `-X statistics.interval.ms` (librdkafka's key): the client's statistics as JSON lines on
/// stderr while the scenarios run, with the work done so far.
#[test]
fn bench_prints_statistics_periodically() {
    let out = Command::new(env!("CARGO_BIN_EXE_spate"))
        .args([
            "bench",
            "-n",
            "200000",
            "--scenario",
            "consume",
            "-X",
            "statistics.interval.ms=1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with("{\"brokers\""))
        .map(|l| serde_json::from_str(l).expect("a statistics line is JSON"))
        .collect();
    assert!(!lines.is_empty(), "no statistics line: {stderr}");
    let work: u64 = lines
        .iter()
        .flat_map(|s| s["topics"].as_object().unwrap().values())
        .map(|t| t["produced_records"].as_u64().unwrap() + t["consumed_records"].as_u64().unwrap())
        .max()
        .unwrap_or(0);
    assert!(work > 0, "the statistics show no work: {stderr}");
    for s in &lines {
        let requests: u64 = s["brokers"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|b| b["requests"].as_object().unwrap().values())
            .map(|n| n.as_u64().unwrap())
            .sum();
        assert!(requests > 0, "{s}");
    }
}
