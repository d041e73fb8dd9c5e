//! The producer against a real broker (tansu by default; see `tests/support`), read back by an
//! independent client (librdkafka).

mod support;

use std::time::Duration;

use spate::cluster::{Client, NewTopic};
use spate::producer::{Producer, ProducerConfig, Record};
use spate::record::Compression;
use support::{read_with_librdkafka, unique_topic, Digest, TestBroker};

/// Records per codec in the interop test (`SPATE_INTEROP_MESSAGES`; the figure is
/// 1,000,000).
fn interop_messages() -> usize {
    std::env::var("SPATE_INTEROP_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn producer_config(broker: &TestBroker) -> ProducerConfig {
    ProducerConfig {
        client: broker.config(),
        ..ProducerConfig::default()
    }
}

/// Every codec: N keyed records with headers, all acknowledged with consecutive offsets per
/// partition, then read back by librdkafka byte for byte and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_is_read_back_by_librdkafka() {
    let broker = TestBroker::start();
    let client = Client::connect(broker.config()).await.unwrap();
    let n = interop_messages();
    let partitions = 3;
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let topic = unique_topic(&format!("interop-{codec}"));
        client
            .create_topics(&[NewTopic::new(&topic, partitions, 1)])
            .await
            .unwrap();
        let producer =
            Producer::with_client(client.clone(), producer_config(&broker).compression(codec))
                .await
                .unwrap();
        let mut digests = vec![Digest::default(); partitions as usize];
        let mut deliveries = Vec::with_capacity(n);
        let pad = "x".repeat(60);
        for i in 0..n {
            let key = format!("key-{}", i % 1000);
            let value = format!("value-{i:09}-{pad}");
            let seq = (i as u64).to_be_bytes();
            let headers: Vec<(&str, Option<&[u8]>)> = match i % 3 {
                0 => vec![],
                1 => vec![("seq", Some(&seq[..]))],
                _ => vec![("seq", Some(&seq[..])), ("null", None)],
            };
            let mut record = Record::new(&topic)
                .key(key.as_bytes())
                .value(value.as_bytes());
            record.headers = headers.clone();
            let delivery = producer.send(record).await.unwrap();
            digests[delivery.partition() as usize].add(
                Some(key.as_bytes()),
                Some(value.as_bytes()),
                &headers,
            );
            deliveries.push(delivery);
        }
        producer.flush().await.unwrap();
        let mut next = vec![0i64; partitions as usize];
        for d in deliveries {
            let meta = d
                .await
                .unwrap_or_else(|e| panic!("{codec}: a record failed: {e}"));
            assert_eq!(
                meta.offset, next[meta.partition as usize],
                "{codec}: offsets of partition {} are consecutive in send order",
                meta.partition
            );
            next[meta.partition as usize] += 1;
        }
        let read = read_with_librdkafka(&broker.bootstrap, &topic, partitions, "read_uncommitted");
        for (p, got) in read.iter().enumerate() {
            assert_eq!(got.count, digests[p].count, "{codec}: partition {p} count");
            assert_eq!(
                got.sha256,
                digests[p].hex(),
                "{codec}: partition {p}: keys, values and headers in order"
            );
        }
        assert_eq!(read.iter().map(|d| d.count).sum::<u64>(), n as u64);
        producer.close().await.unwrap();
        client.delete_topics(&[&topic]).await.unwrap();
    }
}

#[tokio::test]
async fn unknown_topics_and_oversized_records_are_typed_errors() {
    let broker = TestBroker::start();
    let config = producer_config(&broker);
    let mut config = config.max_request_size(10_000);
    config.client = config.client.api_timeout(Duration::from_secs(2));
    let producer = Producer::new(config).await.unwrap();
    let err = producer
        .send(Record::new("no-such-topic").value(b"v"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-topic"), "{err}");
    let topic = unique_topic("too-large");
    producer
        .client()
        .create_topics(&[NewTopic::new(&topic, 1, 1)])
        .await
        .unwrap();
    let big = vec![0u8; 20_000];
    let err = producer
        .send(Record::new(&topic).value(&big))
        .await
        .unwrap_err();
    assert!(
        matches!(err, spate::Error::RecordTooLarge { limit: 10_000, .. }),
        "{err}"
    );
    let err = producer
        .send(Record::new(&topic).value(b"v").partition(7))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("partition 7"), "{err}");
    producer.close().await.unwrap();
    let err = producer
        .send(Record::new(&topic).value(b"v"))
        .await
        .unwrap_err();
    assert!(matches!(err, spate::Error::ProducerClosed), "{err}");
}
