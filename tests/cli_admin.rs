//! `spate metadata` and `spate topic` against a real broker.
#![cfg(feature = "cli")]

mod support;

use std::process::{Command, Output};

use support::{unique_topic, TestBroker};

fn spate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn topic_create_list_metadata_delete() {
    let broker = TestBroker::start();
    let b = broker.bootstrap.as_str();
    let topic = unique_topic("cli");
    let created = ok(spate(&[
        "topic",
        "create",
        "-b",
        b,
        "-t",
        &topic,
        "--partitions",
        "4",
        "--replication-factor",
        "1",
        "--config",
        "retention.ms=60000",
        "-X",
        "request.timeout.ms=5000",
    ]));
    assert_eq!(created.trim(), format!("created topic {topic}"));

    let listed = ok(spate(&["topic", "list", "-b", b]));
    assert!(
        listed.lines().any(|l| l == format!("{topic}\t4")),
        "{listed}"
    );

    let meta = ok(spate(&["metadata", "-b", b, "-t", &topic]));
    assert!(
        meta.contains(&format!("topic \"{topic}\" with 4 partitions")),
        "{meta}"
    );
    assert!(meta.contains(&format!("at {b} (controller)")), "{meta}");
    assert_eq!(meta.matches("    partition ").count(), 4, "{meta}");

    let again = spate(&[
        "topic",
        "create",
        "-b",
        b,
        "-t",
        &topic,
        "--partitions",
        "4",
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("TopicAlreadyExists"));

    ok(spate(&["topic", "delete", "-b", b, "-t", &topic]));
    let listed = ok(spate(&["topic", "list", "-b", b]));
    assert!(!listed.contains(&topic), "{listed}");
}

#[test]
fn bad_settings_and_dead_brokers_are_clear_errors() {
    let unknown = spate(&["metadata", "-b", "127.0.0.1:9", "-X", "linger.msec=5"]);
    assert!(!unknown.status.success());
    let text = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        text.contains("unknown configuration key `linger.msec`"),
        "{text}"
    );

    let malformed = spate(&["metadata", "-b", "127.0.0.1:9", "-X", "novalue"]);
    assert!(String::from_utf8_lossy(&malformed.stderr).contains("expected key=value"));

    let dead = spate(&[
        "metadata",
        "-b",
        "127.0.0.1:9",
        "-X",
        "default.api.timeout.ms=1000",
    ]);
    assert!(!dead.status.success());
    let text = String::from_utf8_lossy(&dead.stderr);
    assert!(
        text.contains("127.0.0.1:9") && text.contains("refused"),
        "{text}"
    );
}
