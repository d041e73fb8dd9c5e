//! Administration on the embedded cluster (`--features mock`), each behaviour checked first
//! with librdkafka's AdminClient (confluent-kafka) as the independent client, then with spate:
//! CreateTopics creates what it may and refuses, per topic, what Apache Kafka refuses;
//! DeleteRecords moves log start offsets as Kafka does.

mod support;

use spate::cluster::{Client, NewTopic, OffsetSpec, Topics};
use spate::consumer::{Consumer, ConsumerConfig, Event, Offset};
use spate::error::codes::{
    INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR, INVALID_TOPIC_EXCEPTION, OFFSET_OUT_OF_RANGE,
    POLICY_VIOLATION, TOPIC_ALREADY_EXISTS,
};
use spate::mock::MockCluster;
use spate::producer::{Producer, ProducerConfig, Record};
use spate::ClientConfig;

fn librdkafka_creates(bootstrap: &str, args: &[&str]) -> Vec<String> {
    let mut lines = support::python_lines("create_topics.py", &[&[bootstrap][..], args].concat());
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_creates_and_refuses_as_kafka_does() {
    let cluster = MockCluster::start(2).await.expect("cluster");
    cluster.create_topic("exists", 1);
    let bootstrap = cluster.bootstrap();
    // librdkafka first: the judge of what the cluster answers.
    let got = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || {
            librdkafka_creates(
                &bootstrap,
                &[
                    "fresh:3:1",
                    "defaults:-1:-1",
                    "exists:1:1",
                    "bad/name:1:1",
                    "zero:0:1",
                    "wide:1:3",
                ],
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(
        got,
        [
            // librdkafka's name for INVALID_TOPIC_EXCEPTION (17).
            "bad/name TOPIC_EXCEPTION",
            "defaults ok",
            "defaults partitions 1",
            "exists TOPIC_ALREADY_EXISTS",
            "exists partitions 1",
            "fresh ok",
            "fresh partitions 3",
            "wide INVALID_REPLICATION_FACTOR",
            "zero INVALID_PARTITIONS",
        ]
    );
    // validate_only creates nothing.
    let got = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || librdkafka_creates(&bootstrap, &["dry:2:1", "--validate-only"])
    })
    .await
    .unwrap();
    assert_eq!(got, ["dry ok"]);
    // More metadata records than the controller writes for one request: all refused, whole.
    let got = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || librdkafka_creates(&bootstrap, &["huge:20000:1", "small:1:1"])
    })
    .await
    .unwrap();
    assert_eq!(got, ["huge POLICY_VIOLATION", "small POLICY_VIOLATION"]);

    // Then spate.
    let client = Client::connect(ClientConfig::new(&bootstrap))
        .await
        .expect("client");
    client
        .create_topics(&[NewTopic::new("spate-made", 4, -1)])
        .await
        .expect("created");
    let metadata = client
        .refresh_metadata(Topics::Only(&["spate-made", "dry"]))
        .await
        .expect("metadata");
    assert_eq!(metadata.topics["spate-made"].partitions.len(), 4);
    assert!(
        metadata
            .topics
            .get("dry")
            .is_none_or(|t| t.partitions.is_empty()),
        "validate_only created nothing"
    );
    for (topic, partitions, replication, code) in [
        ("spate-made", 1, 1, TOPIC_ALREADY_EXISTS),
        ("no good", 1, 1, INVALID_TOPIC_EXCEPTION),
        ("none", -5, 1, INVALID_PARTITIONS),
        ("many", 1, 5, INVALID_REPLICATION_FACTOR),
        ("lying", i32::MAX, 1, POLICY_VIOLATION),
    ] {
        let e = client
            .create_topics(&[NewTopic::new(topic, partitions, replication)])
            .await
            .expect_err(topic);
        assert_eq!(e.code().map(|c| c.0), Some(code), "{topic}: {e}");
    }
}

fn librdkafka_deletes(bootstrap: String, args: &'static [&'static str]) -> Vec<String> {
    support::python_lines("delete_records.py", &[&[&bootstrap[..]][..], args].concat())
}

/// Ten records in each partition of `topic`, in batches of two.
async fn ten_each(bootstrap: &str, topic: &str, partitions: i32) {
    let producer = Producer::new(ProducerConfig::new(bootstrap))
        .await
        .expect("producer");
    for p in 0..partitions {
        for pair in 0..5 {
            let values: Vec<String> = (0..2).map(|i| format!("{p}-{pair}-{i}")).collect();
            let rows = values
                .iter()
                .map(|v| Record::new(topic).value(v.as_bytes()).partition(p));
            producer
                .send_batch(topic, rows)
                .await
                .expect("send")
                .wait()
                .await
                .expect("written");
        }
    }
    producer.close().await.expect("close");
}

/// DeleteRecords moves a partition's log start offset as Kafka does (`-1` is the high
/// watermark, never backwards, refused past the high watermark and on a compacted topic), and
/// consumers then start there. librdkafka first, then spate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_log_start_as_kafka_does() {
    let cluster = MockCluster::start(2).await.expect("cluster");
    let bootstrap = cluster.bootstrap();
    let client = Client::connect(ClientConfig::new(&bootstrap))
        .await
        .unwrap();
    client
        .create_topics(&[
            NewTopic::new("logs", 2, 1),
            NewTopic::new("table", 1, 1).config("cleanup.policy", "compact"),
        ])
        .await
        .unwrap();
    ten_each(&bootstrap, "logs", 2).await;
    ten_each(&bootstrap, "table", 1).await;
    // librdkafka first: the judge of what the cluster answers.
    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || {
        librdkafka_deletes(b, &["logs:0:4", "logs:1:-1", "table:0:2"])
    })
    .await
    .unwrap();
    assert_eq!(
        got,
        [
            "logs-0 low 4",
            "logs-1 low 10",
            "table-0 POLICY_VIOLATION",
            "logs-0 watermarks 4 10",
            "logs-0 first 4",
            "logs-1 watermarks 10 10",
            "logs-1 first none",
        ]
    );
    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || librdkafka_deletes(b, &["logs:0:11"]))
        .await
        .unwrap();
    assert_eq!(got, ["logs-0 OFFSET_OUT_OF_RANGE"]);

    // Then spate.
    assert_eq!(
        client.delete_records("logs", &[(0, 6)]).await.unwrap(),
        [(0, 6)]
    );
    assert_eq!(
        client.delete_records("logs", &[(0, 2)]).await.unwrap(),
        [(0, 6)],
        "the log start never moves back"
    );
    let refused = |e: spate::Error| e.code().map(|c| c.0);
    assert_eq!(
        refused(client.delete_records("logs", &[(0, 11)]).await.unwrap_err()),
        Some(OFFSET_OUT_OF_RANGE)
    );
    assert_eq!(
        refused(client.delete_records("table", &[(0, 1)]).await.unwrap_err()),
        Some(POLICY_VIOLATION)
    );
    let earliest = client
        .list_offsets("logs", &[0], OffsetSpec::Earliest)
        .await
        .unwrap();
    assert_eq!(earliest[0].offset, 6);
    let mut consumer = Consumer::with_client(
        client.clone(),
        ConsumerConfig {
            client: client.config().clone(),
            ..ConsumerConfig::default()
        },
    );
    consumer.assign(&[("logs", 0, Offset::Beginning)]).unwrap();
    let first = loop {
        if let Event::Batch(b) = consumer.next().await.unwrap() {
            break b.records().next().expect("a record").offset();
        }
    };
    assert_eq!(
        first, 6,
        "a consumer from the beginning starts at the log start"
    );
    consumer.close().await.unwrap();
}

fn librdkafka_grows(bootstrap: String, args: &'static [&'static str]) -> Vec<String> {
    support::python_lines(
        "create_partitions.py",
        &[&[&bootstrap[..]][..], args].concat(),
    )
}

/// CreatePartitions grows a topic and refuses what Kafka refuses (no increase, an unknown
/// topic, more new partitions than the controller takes at once); validate_only changes nothing; new
/// partitions take records. librdkafka first, then spate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_partitions_grows_and_refuses_as_kafka_does() {
    let cluster = MockCluster::start(2).await.expect("cluster");
    for t in ["a", "b", "c", "d"] {
        cluster.create_topic(t, 2);
    }
    let bootstrap = cluster.bootstrap();
    let b = bootstrap.clone();
    let got =
        tokio::task::spawn_blocking(move || librdkafka_grows(b, &["a:4", "b:2", "c:1", "nope:3"]))
            .await
            .unwrap();
    assert_eq!(
        got,
        [
            "a ok",
            "b INVALID_PARTITIONS",
            "c INVALID_PARTITIONS",
            "nope UNKNOWN_TOPIC_OR_PART",
            "a partitions 4",
            "b partitions 2",
            "c partitions 2",
        ]
    );
    // More new partitions than the controller writes in one operation: refused whole.
    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || librdkafka_grows(b, &["d:50000"]))
        .await
        .unwrap();
    assert_eq!(got, ["d POLICY_VIOLATION", "d partitions 2"]);
    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || librdkafka_grows(b, &["b:5", "--validate-only"]))
        .await
        .unwrap();
    assert_eq!(got, ["b ok", "b partitions 2"]);

    // Then spate.
    let client = Client::connect(ClientConfig::new(&bootstrap))
        .await
        .unwrap();
    client.create_partitions(&[("b", 3)]).await.unwrap();
    assert_eq!(client.partition_count("b").await.unwrap(), 3);
    let refused = |e: spate::Error| e.code().map(|c| c.0);
    assert_eq!(
        refused(client.create_partitions(&[("b", 3)]).await.unwrap_err()),
        Some(INVALID_PARTITIONS)
    );
    assert_eq!(
        refused(
            client
                .create_partitions(&[("d", i32::MAX)])
                .await
                .unwrap_err()
        ),
        Some(POLICY_VIOLATION)
    );
    // The new partition takes records.
    let producer = Producer::new(ProducerConfig::new(&bootstrap))
        .await
        .unwrap();
    producer
        .send(Record::new("b").value(b"new").partition(2))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    producer.close().await.unwrap();
    assert_eq!(cluster.log_end("b", 2), 1);
}
