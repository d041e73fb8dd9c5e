//! The producer against a real broker (tansu by default; see `tests/support`), read back by an
//! independent client (librdkafka).

mod support;

use std::time::Duration;

use spate::cluster::{Client, NewTopic};
use spate::producer::{Producer, ProducerConfig, Record};
use spate::record::Compression;
use support::{
    committed_offset, interop_messages, read_with_librdkafka, unique_topic, Digest, TestBroker,
};

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
    // Producers ask brokers to create unknown topics by default (tansu does): not here.
    config.client.allow_auto_create_topics = Some(false);
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

/// Every batch of a partition, fetched raw (control batches included) with Fetch v12.
async fn fetch_batches(client: &Client, topic: &str) -> Vec<spate::record::ColumnarBatch> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let conn = client.leader(topic, 0).await.unwrap();
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(100)
            .with_max_bytes(8 << 20)
            .with_isolation_level(0)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(8 << 20)])]);
        let response = conn.request_at(&request, 12).await.unwrap();
        let p = &response.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        let records = p.records.clone().unwrap_or_default();
        let before = out.len();
        for batch in spate::record::RecordBatches::new(records) {
            let batch = batch.unwrap().decode().unwrap();
            offset = batch.header().next_offset();
            out.push(batch);
        }
        if out.len() == before || offset >= p.high_watermark {
            return out;
        }
    }
}

/// Commit, abort, commit with consumed offsets: the log holds each transaction's records as
/// transactional batches followed by its COMMIT or ABORT marker, and the offsets are committed
/// with the transaction. tansu does not filter aborted records for read_committed readers (no
/// aborted-transactions list), so what a reader sees is checked through the markers here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_abort_and_commit_offsets() {
    use spate::producer::{GroupMetadata, OffsetToCommit};
    use spate::record::ControlRecordType;
    let broker = TestBroker::start();
    let client = Client::connect(broker.config()).await.unwrap();
    let topic = unique_topic("txn");
    client
        .create_topics(&[NewTopic::new(&topic, 1, 1)])
        .await
        .unwrap();
    let txn_id = unique_topic("txn-id");
    let config = producer_config(&broker).transactional_id(&txn_id);
    let producer = Producer::with_client(client.clone(), config.clone())
        .await
        .unwrap();
    let err = producer
        .send(Record::new(&topic).value(b"early"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("init_transactions"), "{err}");
    producer.init_transactions().await.unwrap();
    let err = producer
        .send(Record::new(&topic).value(b"early"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("begin_transaction"), "{err}");

    let mut deliveries = Vec::new();
    for (prefix, n, commit) in [("c1", 100, true), ("ab", 50, false), ("c2", 10, true)] {
        producer.begin_transaction().unwrap();
        for i in 0..n {
            let v = format!("{prefix}-{i}");
            deliveries.push(
                producer
                    .send(Record::new(&topic).value(v.as_bytes()))
                    .await
                    .unwrap(),
            );
        }
        if commit {
            if prefix == "c2" {
                producer
                    .send_offsets_to_transaction(
                        &[OffsetToCommit {
                            topic: topic.clone(),
                            partition: 0,
                            offset: 42,
                            metadata: None,
                        }],
                        &GroupMetadata::new("spate-txn-group"),
                    )
                    .await
                    .unwrap();
            }
            producer.commit_transaction().await.unwrap();
        } else {
            producer.flush().await.unwrap();
            producer.abort_transaction().await.unwrap();
        }
    }
    for d in deliveries {
        d.await.unwrap();
    }
    let batches = fetch_batches(&client, &topic).await;
    let mut seen = Vec::new();
    for batch in &batches {
        assert!(
            batch.header().is_transactional(),
            "every batch is transactional"
        );
        match batch.control_record() {
            Some(control) => seen.push(format!("{:?}", control.unwrap().kind)),
            None => {
                let first = String::from_utf8(batch.value(0).unwrap().to_vec()).unwrap();
                let prefix = first.split('-').next().unwrap().to_owned();
                if seen.last() != Some(&prefix) {
                    seen.push(prefix);
                }
            }
        }
    }
    assert_eq!(
        seen,
        [
            "c1".to_owned(),
            format!("{:?}", ControlRecordType::Commit),
            "ab".to_owned(),
            format!("{:?}", ControlRecordType::Abort),
            "c2".to_owned(),
            format!("{:?}", ControlRecordType::Commit),
        ]
    );
    assert_eq!(
        committed_offset(&client, "spate-txn-group", &topic).await,
        42
    );

    // A second producer with the same transactional.id fences the first.
    let newer = Producer::with_client(client.clone(), config).await.unwrap();
    newer.init_transactions().await.unwrap();
    producer.begin_transaction().unwrap();
    let d = producer
        .send(Record::new(&topic).value(b"zombie"))
        .await
        .unwrap();
    let err = producer.commit_transaction().await.unwrap_err();
    assert!(
        matches!(err, spate::Error::ProducerFenced { .. }),
        "the old producer is fenced: {err}"
    );
    assert!(d.await.is_err(), "the zombie's record is not acknowledged");
}
