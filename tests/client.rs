//! The client core against a real broker (tansu by default; see `tests/support`).

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use spate::cluster::{Client, NewTopic, OffsetSpec, Topics};
use spate::net::{ConnectOptions, Connection};
use spate::record::{Compression, RecordBatchBuilder};
use spate::wire::ApiKey;
use spate::{Action, ClientConfig, Error, KafkaCode};
use support::{unique_topic, TestBroker};

#[tokio::test]
async fn connects_negotiates_and_reads_metadata() {
    let broker = TestBroker::start();
    let conn = Connection::connect(&broker.bootstrap, &ConnectOptions::default())
        .await
        .unwrap();
    let versions = conn.versions().expect("negotiated");
    for api in [
        ApiKey::Metadata,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::CreateTopics,
    ] {
        let v = conn.version(api).unwrap();
        let theirs = versions.broker_range(api).unwrap();
        assert!(
            theirs.min <= v && v <= theirs.max,
            "{api:?} v{v} vs {theirs:?}"
        );
    }

    let client = Client::connect(broker.config()).await.unwrap();
    let cluster = client.describe_cluster().await.unwrap();
    assert!(!cluster.brokers.is_empty());
    assert!(
        cluster
            .brokers
            .values()
            .any(|b| b.address() == broker.bootstrap),
        "{:?} does not advertise {}",
        cluster.brokers,
        broker.bootstrap
    );
}

#[tokio::test]
async fn creates_describes_lists_and_deletes_topics() {
    let broker = TestBroker::start();
    let client = Client::connect(broker.config()).await.unwrap();
    let topic = unique_topic("admin");
    client
        .create_topics(&[NewTopic::new(&topic, 3, 1).config("retention.ms", "3600000")])
        .await
        .unwrap();

    let described = client.describe_topics(&[&topic]).await.unwrap();
    assert_eq!(described[0].name, topic);
    let partitions: Vec<i32> = described[0]
        .partitions
        .iter()
        .map(|p| p.partition)
        .collect();
    assert_eq!(partitions, [0, 1, 2]);
    let metadata = client.metadata();
    for p in 0..3 {
        assert!(metadata.leader(&topic, p).is_some(), "no leader for {p}");
    }
    assert!(client
        .list_topics()
        .await
        .unwrap()
        .iter()
        .any(|t| t.name == topic));

    let again = client
        .create_topics(&[NewTopic::new(&topic, 3, 1)])
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some(KafkaCode(36)), "{again}");
    assert_eq!(again.action(), Action::Fatal);

    client.delete_topics(&[&topic]).await.unwrap();
    let gone = client.describe_topics(&[&topic]).await.unwrap_err();
    assert_eq!(gone.code(), Some(KafkaCode(3)), "{gone}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Appends `n` single-record batches to partition 0, 200 ms apart, each stamped with the time
/// it was sent, through the raw connection (the producer is not built yet); returns the stamps.
/// Also shows the broker accepts spate's batches.
///
/// The records are stamped "now" because tansu indexes timestamps by append time, not by the
/// records' CreateTime as Apache Kafka does; with real-time stamps both answer the same.
async fn produce_one_by_one(client: &Client, topic: &str, n: usize) -> Vec<i64> {
    let conn = client.leader(topic, 0).await.unwrap();
    let mut stamps = Vec::new();
    for i in 0..n {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let ts = now_ms();
        stamps.push(ts);
        let mut builder = RecordBatchBuilder::new(Compression::None);
        builder
            .append(ts, Some(b"k"), Some(format!("v{i}").as_bytes()), &[])
            .unwrap();
        let records: Bytes = builder.build().unwrap();
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records))])]);
        let response = conn.request(&request).await.unwrap();
        let p = &response.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "produce: {:?}", p.error_message);
        assert_eq!(p.base_offset, i as i64);
    }
    stamps
}

#[tokio::test]
async fn lists_offsets() {
    let broker = TestBroker::start();
    let client = Client::connect(broker.config()).await.unwrap();
    let topic = unique_topic("offsets");
    client
        .create_topics(&[NewTopic::new(&topic, 2, 1)])
        .await
        .unwrap();
    let stamps = produce_one_by_one(&client, &topic, 3).await;

    let offsets = |listed: Vec<spate::cluster::ListedOffset>| {
        listed.iter().map(|o| o.offset).collect::<Vec<_>>()
    };
    let earliest = client
        .list_offsets(&topic, &[0, 1], OffsetSpec::Earliest)
        .await;
    assert_eq!(offsets(earliest.unwrap()), [0, 0]);
    let latest = client
        .list_offsets(&topic, &[0, 1], OffsetSpec::Latest)
        .await;
    assert_eq!(offsets(latest.unwrap()), [3, 0]);
    // The first record at or after a time between the first two stamps is the second one.
    let by_time = client
        .list_offsets(&topic, &[0], OffsetSpec::Timestamp(stamps[1] - 100))
        .await
        .unwrap();
    assert_eq!(by_time[0].offset, 1, "{by_time:?} for stamps {stamps:?}");
    assert!((stamps[1]..stamps[1] + 100).contains(&by_time[0].timestamp));
    // After every record: none (timestamp -1; Kafka says offset -1 too, tansu 0).
    let future = client
        .list_offsets(&topic, &[0], OffsetSpec::Timestamp(now_ms() + 3_600_000))
        .await
        .unwrap();
    assert_eq!(future[0].timestamp, -1, "{future:?}");
    client.delete_topics(&[&topic]).await.unwrap();
}

#[tokio::test]
async fn reconnects_after_the_broker_restarts() {
    let mut broker = TestBroker::start();
    let client = Client::connect(broker.config()).await.unwrap();
    client.describe_cluster().await.unwrap();
    let conn = client.any_broker().await.unwrap();
    let opened = client.connections_opened();

    broker.kill();
    // The old connection notices, and fails fast from then on.
    let started = Instant::now();
    while conn.is_usable() {
        assert!(started.elapsed() < Duration::from_secs(10), "never noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = conn
        .request(&kafka_protocol::messages::MetadataRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.action(), Action::Reconnect, "{err}");

    // Bring it back in a second; the next admin call rides over the gap.
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        broker.restart();
        broker
    });
    let topic = unique_topic("after-restart");
    client
        .create_topics(&[NewTopic::new(&topic, 1, 1)])
        .await
        .unwrap();
    let _broker = restarter.join().unwrap();
    assert!(client.connections_opened() > opened, "no reconnect");
    assert_eq!(client.describe_topics(&[&topic]).await.unwrap().len(), 1);
}

#[tokio::test]
async fn nothing_listening_fails_within_the_timeout() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = ClientConfig::new(&format!("127.0.0.1:{port}"))
        .api_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let err = match Client::connect(config).await {
        Ok(_) => panic!("connected to nothing"),
        Err(e) => e,
    };
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("bootstrap") && text.contains(&port.to_string()),
        "{text}"
    );
}

#[tokio::test]
async fn bootstraps_past_a_dead_address() {
    let broker = TestBroker::start();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = ClientConfig::from_pairs([
        ("bootstrap.servers", format!("{dead},{}", broker.bootstrap)),
        ("request.timeout.ms", "5000".into()),
    ])
    .unwrap();
    let client = Client::connect(config).await.unwrap();
    let m = client.refresh_metadata(Topics::All).await.unwrap();
    assert!(!m.brokers.is_empty());
}

#[tokio::test]
async fn unknown_topics_are_typed_errors() {
    let broker = TestBroker::start();
    let client = Client::connect(broker.config().api_timeout(Duration::from_secs(2)))
        .await
        .unwrap();
    let err = client
        .list_offsets("no-such-topic", &[0], OffsetSpec::Latest)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(KafkaCode(3)), "{err}");
}
