//! Batches compressed on several threads (`compression.threads`), on the embedded cluster
//! (`--features mock`): batches waiting for a request are compressed ahead of their turn and
//! only re-stamped when they go, so what the log holds must be exactly what was sent, in
//! order, through retries and a new producer epoch, for every codec.

use std::collections::HashMap;
use std::time::Duration;

use spate::mock::{Fault, MockCluster};
use spate::producer::{Producer, ProducerConfig, Record};
use spate::record::Compression;
use spate::wire::ApiKey;
use spate::ClientConfig;

const REQUEST_TIMED_OUT: i16 = 7;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;

fn config(cluster: &MockCluster, codec: Compression, threads: usize) -> ProducerConfig {
    let mut client = ClientConfig::new(&cluster.bootstrap())
        .request_timeout(Duration::from_secs(5))
        .api_timeout(Duration::from_secs(10));
    client.retry_backoff = Duration::from_millis(5);
    ProducerConfig {
        client,
        compression: codec,
        compression_threads: threads,
        // One request in flight per broker and small batches: batches queue up behind it.
        max_in_flight: 1,
        ..ProducerConfig::default()
    }
    .batch_size(4096)
    .linger(Duration::from_millis(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_compressed_ahead_arrive_exactly_once_in_order() {
    for codec in [
        Compression::Lz4,
        Compression::Zstd,
        Compression::Gzip,
        Compression::Snappy,
    ] {
        let cluster = MockCluster::start(1).await.unwrap();
        let topic = "ahead";
        cluster.create_topic(topic, 4);
        let producer = Producer::new(config(&cluster, codec, 4)).await.unwrap();
        let n = 30_000;
        let mut deliveries = Vec::with_capacity(n);
        for i in 0..n {
            match i {
                5_000 => cluster.inject(ApiKey::Produce, Fault::DropResponse, 2),
                10_000 => cluster.inject(ApiKey::Produce, Fault::Error(REQUEST_TIMED_OUT), 2),
                20_000 => {
                    // Once what was sent so far is answered: a failed batch spends its
                    // sequences, the producer takes a new epoch, and batches built ahead under
                    // the old one are re-stamped with it.
                    producer.flush().await.unwrap();
                    cluster.inject(
                        ApiKey::Produce,
                        Fault::Error(OUT_OF_ORDER_SEQUENCE_NUMBER),
                        1,
                    );
                }
                _ => {}
            }
            let value = format!("{codec:?} record {i:08} {}", "x".repeat(i % 200));
            let key = format!("k{}", i % 13);
            let d = producer
                .send(
                    Record::new(topic)
                        .key(key.as_bytes())
                        .value(value.as_bytes()),
                )
                .await
                .unwrap();
            deliveries.push((value, d));
        }
        producer.flush().await.unwrap();
        let mut expected: HashMap<i32, Vec<String>> = HashMap::new();
        let mut failed = 0;
        for (value, d) in deliveries {
            let p = d.partition();
            match d.await {
                Ok(_) => expected.entry(p).or_default().push(value),
                Err(_) => failed += 1,
            }
        }
        // Only the records of the batches the broker refused fail (one request's); everything
        // acknowledged is in the log once, in the order sent.
        assert!(
            (1..2_000).contains(&failed),
            "{codec:?}: {failed} records failed"
        );
        for p in 0..4 {
            let log: Vec<String> = cluster
                .records(topic, p)
                .unwrap()
                .into_iter()
                .map(|(_, _, v)| String::from_utf8(v.unwrap().to_vec()).unwrap())
                .collect();
            let want = expected.get(&p).cloned().unwrap_or_default();
            let first_difference = log.iter().zip(&want).position(|(a, b)| a != b);
            assert!(
                log.len() == want.len() && first_difference.is_none(),
                "{codec:?} partition {p}: the log ({} records) is not what was acknowledged \
                 ({} records, {failed} failed) in order: first difference at {first_difference:?}: {:?} / {:?}",
                log.len(),
                want.len(),
                first_difference.map(|i| &log[i]),
                first_difference.map(|i| &want[i]),
            );
        }
        assert_eq!(
            cluster.pending_faults(),
            0,
            "{codec:?}: every fault was hit"
        );
        let ahead = producer.buffer_statistics().batches_built_ahead;
        assert!(
            ahead > 10,
            "{codec:?}: only {ahead} batches were built ahead"
        );

        producer.close().await.unwrap();
    }
}

/// `compression.threads=1` compresses on the sender task alone: nothing is built ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_compression_thread_builds_nothing_ahead() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("one", 2);
    let producer = Producer::new(config(&cluster, Compression::Lz4, 1))
        .await
        .unwrap();
    let value = vec![b'v'; 500];
    let batch = (0..20_000).map(|_| Record::new("one").value(&value));
    let delivery = producer.send_batch("one", batch).await.unwrap();
    delivery.wait().await.unwrap();
    assert_eq!(producer.buffer_statistics().batches_built_ahead, 0);
    let written: usize = (0..2)
        .map(|p| cluster.records("one", p).unwrap().len())
        .sum();
    assert_eq!(written, 20_000);
}
