//! `spate consume` against a real broker: kcat's -C options and -f tokens, byte for byte.
#![cfg(feature = "cli")]

mod support;

use std::process::Command;

use spate::cluster::{Client, NewTopic};
use spate::producer::{Producer, ProducerConfig, Record};
use support::{unique_topic, TestBroker};

fn consume(bootstrap: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(["consume", "-b", bootstrap])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_records_like_kcat() {
    let broker = TestBroker::start();
    let client = Client::connect(broker.config()).await.unwrap();
    let topic = unique_topic("cli-consume");
    client
        .create_topics(&[NewTopic::new(&topic, 2, 1)])
        .await
        .unwrap();
    let producer = Producer::with_client(
        client.clone(),
        ProducerConfig {
            client: broker.config(),
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    // Binary values (a newline and a zero byte) come out untouched.
    for i in 0..10u8 {
        let value = [b'v', i, b'\n', 0];
        let mut record = Record::new(&topic)
            .value(&value)
            .partition(i32::from(i % 2));
        if i % 2 == 1 {
            record = record.key(b"odd").header("n", Some(&value[1..2]));
        }
        producer.send(record).await.unwrap();
    }
    producer.close().await.unwrap();
    let b = broker.bootstrap.as_str();

    let out = consume(
        b,
        &[
            "-t",
            &topic,
            "-p",
            "1",
            "-e",
            "-f",
            "%p|%o|%k|%K|%S|%h|%s\\n",
        ],
    );
    let mut want = Vec::new();
    for (o, i) in (1..10u8).step_by(2).enumerate() {
        want.extend_from_slice(format!("1|{o}|odd|3|4|n=").as_bytes());
        want.push(i);
        want.extend_from_slice(b"|v");
        want.extend_from_slice(&[i, b'\n', 0, b'\n']);
    }
    assert_eq!(out, want);

    // Every partition, -c, the default format (value and newline).
    let out = consume(b, &["-t", &topic, "-c", "3", "-o", "beginning"]);
    assert_eq!(out.len(), 3 * 5);
    // -o -N: the last N of each partition; -K: key, delimiter, value.
    let out = consume(b, &["-t", &topic, "-p", "0", "-o", "-2", "-e", "-K", "@"]);
    assert_eq!(out, [&b"@v\x06\n\x00\n"[..], b"@v\x08\n\x00\n"].concat());
    // The end: nothing, and -e exits.
    let out = consume(b, &["-t", &topic, "-o", "end", "-e"]);
    assert!(out.is_empty());
}

#[test]
fn bad_options_are_clear_errors() {
    let broker = TestBroker::start();
    for (args, needle) in [
        (vec!["-t", "x", "-o", "stored"], "-o stored"),
        (vec!["-t", "x", "-f", "%z"], "-f"),
        (vec!["-t", "x", "-G", "g", "-p", "0"], "-G and -p"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_spate"))
            .args(["consume", "-b", &broker.bootstrap])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
