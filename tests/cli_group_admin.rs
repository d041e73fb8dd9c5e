//! `spate group` against a real broker (tansu): `describe` agrees with what kafka-python (an
//! independent client) reports for the same group; `reset-offsets` refuses a group with
//! members, prints without committing unless `--execute`, and with it moves the group so
//! that the next member starts where it said; `list` and `delete` (once the group is empty).
#![cfg(feature = "cli")]

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use spate::cluster::{Client, NewTopic};
use spate::consumer::{Consumer, ConsumerConfig, Event, OffsetReset};
use spate::producer::{Producer, ProducerConfig, Record};
use spate::ClientConfig;
use support::{unique_topic, TestBroker};

const PARTITIONS: i32 = 3;

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

/// kafka-python's `PARTITION COMMITTED LOG_END LAG` lines (run off the runtime's threads).
async fn kafka_python(bootstrap: &str, group: &str, topic: &str) -> Vec<String> {
    let args = [bootstrap.to_owned(), group.to_owned(), topic.to_owned()];
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        support::python_lines("kafka_python_group.py", &args)
    })
    .await
    .unwrap()
}

/// `spate group describe`'s rows as `PARTITION CURRENT LOG_END LAG`.
fn described(bootstrap: &str, group: &str, topic: &str) -> Vec<String> {
    let out = ok(spate(&["group", "describe", "-b", bootstrap, "-G", group]));
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID"
        ]
    );
    lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols[1] == topic)
        .map(|cols| format!("{} {} {} {}", cols[2], cols[3], cols[4], cols[5]))
        .collect()
}

/// A member of `group` on `topic` (session 6 s, as tansu needs), once assigned.
async fn member(bootstrap: &str, group: &str, topic: &str) -> Consumer {
    let mut config = ConsumerConfig::new(bootstrap)
        .group_id(group)
        .auto_offset_reset(OffsetReset::Earliest);
    config.enable_auto_commit = false;
    config.session_timeout = Duration::from_secs(6);
    config.heartbeat_interval = Duration::from_secs(1);
    let mut consumer = Consumer::new(config).await.unwrap();
    consumer.subscribe(&[topic]).unwrap();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), consumer.next())
            .await
            .expect("assigned")
            .unwrap();
        if matches!(event, Event::Assigned(_)) {
            return consumer;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_describe_agrees_with_kafka_python_and_reset_moves_the_group() {
    let broker = TestBroker::start();
    let b = broker.bootstrap.clone();
    let topic = unique_topic("groups");
    let group = unique_topic("g");
    let client = Client::connect(ClientConfig::new(&b)).await.unwrap();
    client
        .create_topics(&[NewTopic::new(&topic, PARTITIONS, 1)])
        .await
        .unwrap();
    let producer = Producer::new(ProducerConfig::new(&b)).await.unwrap();
    // One record per batch: tansu answers ListOffsets(latest) with the last batch's base
    // offset + 1, which is then the log end (both clients below ask it so).
    for p in 0..PARTITIONS {
        for i in 0..10 {
            let value = format!("{p}-{i}");
            let rows = std::iter::once(Record::new(&topic).value(value.as_bytes()).partition(p));
            producer
                .send_batch(&topic, rows)
                .await
                .unwrap()
                .wait()
                .await
                .unwrap();
        }
    }
    producer.close().await.unwrap();

    // A member commits 3, 4 and 5 and stays.
    let consumer = member(&b, &group, &topic).await;
    consumer
        .commit_offsets(&[
            (topic.clone(), 0, 3),
            (topic.clone(), 1, 4),
            (topic.clone(), 2, 5),
        ])
        .await
        .unwrap();
    let theirs = kafka_python(&b, &group, &topic).await;
    assert_eq!(theirs, ["0 3 10 7", "1 4 10 6", "2 5 10 5"]);
    assert_eq!(
        described(&b, &group, &topic),
        theirs,
        "spate agrees with kafka-python"
    );
    let listed = ok(spate(&["group", "list", "-b", &b]));
    assert!(listed.lines().any(|l| l == group), "{listed}");

    // A group with members is not reset.
    let refused = spate(&[
        "group",
        "reset-offsets",
        "-b",
        &b,
        "-G",
        &group,
        "-t",
        &topic,
        "--to-earliest",
        "--execute",
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("inactive"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    consumer.close().await.unwrap();
    // A dry run prints and commits nothing.
    let dry = ok(spate(&[
        "group",
        "reset-offsets",
        "-b",
        &b,
        "-G",
        &group,
        "-t",
        &topic,
        "--to-offset",
        "2",
    ]));
    let new: Vec<String> = dry
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().skip(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(new, ["0 2", "1 2", "2 2"]);
    assert_eq!(
        described(&b, &group, &topic),
        theirs,
        "a dry run commits nothing"
    );
    // --execute moves the group.
    ok(spate(&[
        "group",
        "reset-offsets",
        "-b",
        &b,
        "-G",
        &group,
        "-t",
        &topic,
        "--shift-by",
        "4",
        "--execute",
    ]));
    let theirs = kafka_python(&b, &group, &topic).await;
    assert_eq!(theirs, ["0 7 10 3", "1 8 10 2", "2 9 10 1"]);
    // The next member starts where the reset said.
    let mut next = member(&b, &group, &topic).await;
    let mut first = std::collections::BTreeMap::new();
    while first.len() < PARTITIONS as usize {
        let event = tokio::time::timeout(Duration::from_secs(30), next.next())
            .await
            .expect("records")
            .unwrap();
        if let Event::Batch(batch) = event {
            let offset = batch.records().next().expect("a record").offset();
            first.entry(batch.partition()).or_insert(offset);
        }
    }
    assert_eq!(
        first.into_iter().collect::<Vec<_>>(),
        [(0, 7), (1, 8), (2, 9)]
    );
    next.close().await.unwrap();
}
