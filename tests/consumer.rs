//! The consumer against a real broker (tansu by default; see `tests/support`): records written
//! by spate's producer and by librdkafka, in every codec, read back byte for byte and in order.

mod support;

use std::collections::HashSet;

use spate::cluster::{Client, NewTopic};
use spate::consumer::{Consumer, ConsumerConfig, Event, Offset};
use spate::producer::{Producer, ProducerConfig, Record};
use spate::record::Compression;
use support::{interop_messages, unique_topic, write_with_librdkafka, Digest, TestBroker};

/// Reads every partition of `topic` from the beginning to its end; per partition, the digest
/// of what was read, checking offsets are consecutive.
async fn read_all(client: &Client, topic: &str, partitions: i32) -> Vec<Digest> {
    let mut consumer = Consumer::with_client(
        client.clone(),
        ConsumerConfig {
            client: client.config().clone(),
            ..ConsumerConfig::default()
        },
    );
    consumer
        .assign_topics(&[topic], Offset::Beginning)
        .await
        .unwrap();
    let mut digests = vec![Digest::default(); partitions as usize];
    let mut next = vec![0i64; partitions as usize];
    let mut ended = HashSet::new();
    while ended.len() < partitions as usize {
        match consumer.next().await.unwrap() {
            Event::Batch(b) => {
                let p = b.partition() as usize;
                ended.remove(&p);
                let batch = b.batch();
                for i in 0..batch.len() {
                    assert_eq!(
                        batch.offset(i),
                        next[p],
                        "partition {p}: consecutive offsets"
                    );
                    next[p] += 1;
                    digests[p].add_raw(batch.key(i), batch.value(i), batch.headers(i));
                }
            }
            Event::EndOfPartition {
                partition, offset, ..
            } => {
                assert_eq!(offset, next[partition as usize]);
                ended.insert(partition as usize);
            }
            other => panic!("assignment mode has no group events: {other:?}"),
        }
    }
    digests
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_what_spate_and_librdkafka_wrote_in_every_codec() {
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
        // Written by librdkafka (raw snappy, its own batching).
        let topic = unique_topic(&format!("consume-rdk-{codec}"));
        client
            .create_topics(&[NewTopic::new(&topic, partitions, 1)])
            .await
            .unwrap();
        let expected =
            write_with_librdkafka(&broker.bootstrap, &topic, partitions, n, codec.name());
        let got = read_all(&client, &topic, partitions).await;
        for p in 0..partitions as usize {
            assert_eq!(
                got[p].count, expected[p].count,
                "{codec} librdkafka partition {p}"
            );
            assert_eq!(
                got[p].hex(),
                expected[p].hex(),
                "{codec} librdkafka partition {p}"
            );
        }
        client.delete_topics(&[&topic]).await.unwrap();

        // Written by spate.
        let topic = unique_topic(&format!("consume-spate-{codec}"));
        client
            .create_topics(&[NewTopic::new(&topic, partitions, 1)])
            .await
            .unwrap();
        let producer = Producer::with_client(
            client.clone(),
            ProducerConfig {
                client: client.config().clone(),
                ..ProducerConfig::default()
            }
            .compression(codec),
        )
        .await
        .unwrap();
        let mut expected = vec![Digest::default(); partitions as usize];
        for i in 0..n {
            let key = format!("k{}", i % 777);
            let value = format!("spate-{i:09}");
            let p = (i % partitions as usize) as i32;
            producer
                .send(
                    Record::new(&topic)
                        .key(key.as_bytes())
                        .value(value.as_bytes())
                        .partition(p),
                )
                .await
                .unwrap();
            expected[p as usize].add(Some(key.as_bytes()), Some(value.as_bytes()), &[]);
        }
        producer.close().await.unwrap();
        let got = read_all(&client, &topic, partitions).await;
        for p in 0..partitions as usize {
            assert_eq!(
                got[p].count, expected[p].count,
                "{codec} spate partition {p}"
            );
            assert_eq!(
                got[p].hex(),
                expected[p].hex(),
                "{codec} spate partition {p}"
            );
        }
        client.delete_topics(&[&topic]).await.unwrap();
    }
}

/// Manual commits, synchronous and asynchronous, in assignment mode with a group id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_positions_sync_and_async() {
    let broker = TestBroker::start();
    let client = Client::connect(broker.config()).await.unwrap();
    let topic = unique_topic("commit");
    client
        .create_topics(&[NewTopic::new(&topic, 1, 1)])
        .await
        .unwrap();
    let producer = Producer::with_client(
        client.clone(),
        ProducerConfig {
            client: broker.config(),
            ..ProducerConfig::default()
        }
        .batch_size(200),
    )
    .await
    .unwrap();
    for i in 0..100 {
        producer
            .send(Record::new(&topic).value(format!("{i}").as_bytes()))
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    let group = unique_topic("commit-group");
    let config = ConsumerConfig {
        client: broker.config(),
        ..ConsumerConfig::default()
    }
    .group_id(&group);
    let mut consumer = Consumer::new(config.clone()).await.unwrap();
    consumer.assign(&[(&topic, 0, Offset::Beginning)]).unwrap();
    let first = consumer.next_batch().await.unwrap();
    let position = first.next_offset();
    assert!(position < 100, "several batches");
    consumer.commit_async().await.unwrap().unwrap();
    let committed = consumer.committed(&[(&topic, 0)]).await.unwrap();
    assert_eq!(committed[0].1, Some(position));
    while consumer.position(&topic, 0) != Some(100) {
        consumer.next_batch().await.unwrap();
    }
    consumer.commit().await.unwrap();
    // A new consumer of the group starts where the last commit left off.
    let other = Consumer::new(config).await.unwrap();
    assert_eq!(
        other.committed(&[(&topic, 0)]).await.unwrap()[0].1,
        Some(100)
    );
    // Without a group id: a typed error naming the key.
    let lone = Consumer::new(ConsumerConfig {
        client: broker.config(),
        ..ConsumerConfig::default()
    })
    .await
    .unwrap();
    let err = lone.commit().await.unwrap_err();
    assert!(err.to_string().contains("group.id"), "{err}");
}
