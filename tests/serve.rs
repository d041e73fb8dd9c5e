//! `spate serve` as a standalone broker for other clients: librdkafka (confluent-kafka) and
//! kafka-python produce with every codec to topics created on first use, consume, share a
//! group, and (librdkafka) run transactions read back with read_committed
//! (`tests/support/serve_clients.py`); spate's own client too. SIGTERM stops it cleanly.
#![cfg(feature = "cli")]

mod support;

use std::process::Command;

use spate::consumer::{Consumer, ConsumerConfig, Event, Offset};
use spate::producer::{Producer, ProducerConfig, Record};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_use_spate_serve() {
    let serve = support::SpateServe::start(&["--brokers", "3", "--port", "0", "--partitions", "3"]);
    let bootstrap = serve.bootstrap.clone();
    assert_eq!(
        bootstrap.split(',').count(),
        3,
        "three brokers: {bootstrap}"
    );

    let b = bootstrap.clone();
    let out = tokio::task::spawn_blocking(move || {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/support/serve_clients.py");
        Command::new(&python).arg(script).arg(&b).output().unwrap()
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "serve_clients.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checks: Vec<&str> = report.lines().collect();
    assert_eq!(
        checks,
        [
            "ok librdkafka none",
            "ok librdkafka gzip",
            "ok librdkafka snappy",
            "ok librdkafka lz4",
            "ok librdkafka zstd",
            "ok librdkafka group",
            "ok librdkafka transactions",
            "ok kafka-python none",
            "ok kafka-python gzip",
        ],
        "{report}"
    );

    // spate's own client, on a topic created on first use.
    let producer = Producer::new(ProducerConfig::new(&bootstrap))
        .await
        .unwrap();
    producer
        .send(Record::new("auto-spate").value(b"hello").partition(2))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    producer.close().await.unwrap();
    let mut consumer = Consumer::new(ConsumerConfig::new(&bootstrap))
        .await
        .unwrap();
    consumer
        .assign(&[("auto-spate", 2, Offset::Beginning)])
        .unwrap();
    let value = loop {
        if let Event::Batch(b) = consumer.next().await.unwrap() {
            break b.records().next().unwrap().value().unwrap().to_vec();
        }
    };
    assert_eq!(value, b"hello");
    consumer.close().await.unwrap();

    // The CLI's admin commands against it.
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_spate"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let grown = cli(&[
        "topic",
        "add-partitions",
        "-b",
        &bootstrap,
        "-t",
        "auto-spate",
        "--partitions",
        "5",
    ]);
    assert_eq!(grown.trim(), "topic auto-spate now has 5 partitions");
    let listed = cli(&["topic", "list", "-b", &bootstrap]);
    assert!(listed.lines().any(|l| l == "auto-spate\t5"), "{listed}");
    let groups = cli(&["group", "list", "-b", &bootstrap]);
    assert!(groups.lines().any(|l| l == "shared"), "{groups}");

    serve.stop();
}
