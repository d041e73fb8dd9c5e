//! Log truncation (KIP-320) on the embedded cluster (`--features mock`): a partition's log is
//! truncated by an unclean election after a consumer has read past the truncation point, and
//! new records take the lost offsets in a new leader epoch. librdkafka first (checking that
//! the embedded cluster's leader epochs, FENCED_LEADER_EPOCH and OffsetForLeaderEpoch answers
//! are what a Kafka client expects), then spate: with `auto.offset.reset=none` it reports the
//! truncation and waits for a seek; otherwise it warns and reads on from where the logs part.
//! Never a silent skip.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spate::consumer::{Consumer, ConsumerConfig, Event, Offset, OffsetReset};
use spate::mock::MockCluster;
use spate::producer::{Producer, ProducerConfig, Record};
use spate::ClientConfig;

const TOPIC: &str = "trunc";

/// Writes `n` records "PREFIX-i" to partition 0, ten per batch (each ten flushed).
async fn write(cluster: &MockCluster, prefix: &str, n: usize) {
    let producer =
        Producer::new(ProducerConfig::new(&cluster.bootstrap()).linger(Duration::from_secs(60)))
            .await
            .unwrap();
    for i in 0..n {
        let value = format!("{prefix}-{i}");
        producer
            .send(Record::new(TOPIC).value(value.as_bytes()).partition(0))
            .await
            .unwrap();
        if i % 10 == 9 {
            producer.flush().await.unwrap();
        }
    }
    producer.close().await.unwrap();
}

/// 100 records in epoch 0, then an unclean election keeping 0..60 and 20 new records
/// (offsets 60..80) in epoch 1.
async fn truncate(cluster: &MockCluster) {
    assert_eq!(cluster.unclean_election(TOPIC, 0, 0, 60), 60);
    write(cluster, "new", 20).await;
}

fn config(cluster: &MockCluster, reset: OffsetReset) -> ConsumerConfig {
    let mut client = ClientConfig::new(&cluster.bootstrap()).api_timeout(Duration::from_secs(10));
    client.retry_backoff = Duration::from_millis(20);
    ConsumerConfig {
        client,
        ..ConsumerConfig::default()
    }
    .fetch_max_wait(Duration::from_millis(50))
    .auto_offset_reset(reset)
}

async fn read_to(consumer: &mut Consumer, end: i64) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("progress")
            .unwrap()
        {
            Event::Batch(b) => out.extend(b.records().map(|r| {
                (
                    r.offset(),
                    String::from_utf8(r.value().unwrap().to_vec()).unwrap(),
                )
            })),
            Event::EndOfPartition { offset, .. } if offset >= end => return out,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_detects_the_truncation_on_the_embedded_cluster() {
    for (reset, expect) in [("error", "error"), ("earliest", "new-0")] {
        let cluster = MockCluster::start(1).await.unwrap();
        cluster.create_topic(TOPIC, 1);
        write(&cluster, "old", 100).await;
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/truncation_reader.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .args([&cluster.bootstrap(), TOPIC, reset, "20"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let reader = {
            let lines = lines.clone();
            let stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    lines.lock().unwrap().push(line.unwrap());
                }
            })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !lines.lock().unwrap().iter().any(|l| l == "eof 100") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "librdkafka never read to 100"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        truncate(&cluster).await;
        let seen = |lines: &[String]| match expect {
            // librdkafka reports it as _AUTO_OFFSET_RESET: "Partition log truncation
            // detected at offset 100 (leader epoch 0): broker end offset is 60".
            "error" => lines.iter().any(|l| {
                l.starts_with("error") && l.contains("truncation") && l.contains("end offset is 60")
            }),
            _ => lines.iter().any(|l| l == "record 60 new-0"),
        };
        while !seen(&lines.lock().unwrap()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "librdkafka with auto.offset.reset={reset}: {:?}",
                lines.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        reader.join().unwrap();
        assert!(
            cluster.request_count(spate::wire::ApiKey::OffsetForLeaderEpoch) > 0,
            "librdkafka validated its position with OffsetForLeaderEpoch"
        );
    }
}

/// `auto.offset.reset=none`: the truncation is an error naming where the logs part; the
/// partition waits for a seek, then the records that replaced the lost ones are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spate_reports_the_truncation_under_policy_none() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic(TOPIC, 1);
    write(&cluster, "old", 100).await;
    let mut consumer = Consumer::new(config(&cluster, OffsetReset::Error))
        .await
        .unwrap();
    consumer.assign(&[(TOPIC, 0, Offset::At(0))]).unwrap();
    assert_eq!(read_to(&mut consumer, 100).await.len(), 100);
    truncate(&cluster).await;
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("the truncation is reported")
        {
            Ok(Event::Batch(b)) => panic!("records after the truncation: {}", b.first_offset()),
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    match &err {
        spate::Error::LogTruncation {
            offset,
            divergent_offset,
            divergent_epoch,
            ..
        } => assert_eq!((*offset, *divergent_offset, *divergent_epoch), (100, 60, 0)),
        other => panic!("{other:?}"),
    }
    // Halted: nothing more until the application seeks.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), consumer.next())
            .await
            .is_err(),
        "the partition waits for a seek"
    );
    consumer.seek(TOPIC, 0, Offset::At(60)).unwrap();
    let replaced = read_to(&mut consumer, 80).await;
    let want: Vec<(i64, String)> = (0..20).map(|i| (60 + i, format!("new-{i}"))).collect();
    assert_eq!(replaced, want);
}

/// Any other policy: reading goes on from the first offset that diverged, so the records that
/// replaced the lost ones are read, and the position (what a commit would store) moves back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spate_reads_on_from_where_the_logs_part_otherwise() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic(TOPIC, 1);
    write(&cluster, "old", 100).await;
    let mut consumer = Consumer::new(config(&cluster, OffsetReset::Earliest).group_id("t"))
        .await
        .unwrap();
    consumer.assign(&[(TOPIC, 0, Offset::At(0))]).unwrap();
    assert_eq!(read_to(&mut consumer, 100).await.len(), 100);
    consumer.commit().await.unwrap();
    assert_eq!(cluster.committed("t", TOPIC, 0), Some(100));
    truncate(&cluster).await;
    let replaced = read_to(&mut consumer, 80).await;
    let want: Vec<(i64, String)> = (0..20).map(|i| (60 + i, format!("new-{i}"))).collect();
    assert_eq!(replaced, want, "nothing skipped: the new records at 60..80");
    consumer.commit().await.unwrap();
    assert_eq!(cluster.committed("t", TOPIC, 0), Some(80));
}

/// A group member that starts from a committed offset past the truncation point (committed
/// with its leader epoch) is told where the logs part on its first fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_offset_past_a_truncation_is_caught() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic(TOPIC, 1);
    write(&cluster, "old", 100).await;
    let group_config = |reset| config(&cluster, reset).group_id("g").auto_commit(false);
    let mut first = Consumer::new(group_config(OffsetReset::Earliest))
        .await
        .unwrap();
    first.subscribe(&[TOPIC]).unwrap();
    assert_eq!(read_to(&mut first, 100).await.len(), 100);
    first.commit().await.unwrap();
    first.close().await.unwrap();
    truncate(&cluster).await;
    let mut second = Consumer::new(group_config(OffsetReset::Error))
        .await
        .unwrap();
    second.subscribe(&[TOPIC]).unwrap();
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(20), second.next())
            .await
            .expect("the truncation is reported")
        {
            Ok(Event::Batch(b)) => panic!("records after the truncation: {}", b.first_offset()),
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            err,
            spate::Error::LogTruncation {
                divergent_offset: 60,
                ..
            }
        ),
        "{err:?}"
    );
    second.close().await.unwrap();
}
