//! `buffer.memory` shared by many senders at once, on the embedded cluster (`--features mock`):
//! `send`, `send_batch` and `try_send` from several tasks, records of many sizes, sends given up
//! while they wait for room, and a slow broker that keeps the buffer full. Whatever the
//! interleaving, the buffer must never hold more than the setting, every acknowledged record
//! must be in the log once, and every byte must come back.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use spate::mock::{Fault, MockCluster};
use spate::producer::{BatchDelivery, Delivery, Producer, ProducerConfig, Record};
use spate::wire::ApiKey;
use spate::ClientConfig;

const BUFFER: usize = 48 * 1024;

fn payload(task: usize, i: usize) -> Vec<u8> {
    // 20 bytes to 4 KiB, varying by record: small ones fit in what large ones leave.
    let len = 20 + (i * 7919 + task * 104_729) % 4096;
    let mut v = format!("{task:02}-{i:05}-").into_bytes();
    v.resize(len, b'a' + (i % 26) as u8);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_of_every_kind_share_a_full_buffer_and_every_byte_comes_back() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("mem", 3);
    let mut client = ClientConfig::new(&cluster.bootstrap())
        .request_timeout(Duration::from_secs(5))
        .api_timeout(Duration::from_secs(10));
    client.retry_backoff = Duration::from_millis(5);
    let config = ProducerConfig {
        client,
        ..ProducerConfig::default()
    }
    .batch_size(8 * 1024)
    .linger(Duration::from_millis(1))
    .max_request_size(16 * 1024)
    .buffer_memory(BUFFER);
    let producer = Producer::new(config).await.unwrap();
    // The broker is slow for a while: the buffer fills and senders queue for room.
    cluster.inject(ApiKey::Produce, Fault::Delay(Duration::from_millis(150)), 6);

    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (producer, done, peak) = (producer.clone(), done.clone(), peak.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let stats = producer.buffer_statistics();
                peak.fetch_max(stats.buffered_bytes, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        })
    };

    let per_task = 300;
    let mut tasks = Vec::new();
    for task in 0..6 {
        let producer = producer.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent: Vec<(Vec<u8>, Delivery)> = Vec::new();
            let mut batches: Vec<(Vec<Vec<u8>>, BatchDelivery)> = Vec::new();
            let mut given_up = 0;
            let mut i = 0;
            while i < per_task {
                let value = payload(task, i);
                match task {
                    // send_batch: ten records a call, some of them waiting for room.
                    0 => {
                        let values: Vec<Vec<u8>> = (i..i + 10).map(|j| payload(task, j)).collect();
                        let records: Vec<Record<'_>> = values
                            .iter()
                            .map(|v| Record::new("mem").value(v.as_slice()))
                            .collect();
                        let delivery = producer.send_batch("mem", records).await.unwrap();
                        assert_eq!(delivery.records(), 10);
                        batches.push((values, delivery));
                        i += 10;
                        continue;
                    }
                    // try_send: refused while the buffer is full, tried again.
                    1 => match producer.try_send(Record::new("mem").value(&value)) {
                        Ok(d) => sent.push((value, d)),
                        Err(spate::Error::WouldBlock { .. }) => {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            continue;
                        }
                        Err(e) => panic!("try_send: {e}"),
                    },
                    // A send given up after 2 ms of waiting for room: nothing is buffered.
                    2 => {
                        let send = producer.send(Record::new("mem").value(&value));
                        match tokio::time::timeout(Duration::from_millis(2), send).await {
                            Ok(d) => sent.push((value, d.unwrap())),
                            Err(_) => given_up += 1,
                        }
                    }
                    _ => {
                        let d = producer.send(Record::new("mem").value(&value)).await;
                        sent.push((value, d.unwrap()));
                    }
                }
                i += 1;
            }
            let mut acked = Vec::new();
            for (value, delivery) in sent {
                delivery.await.unwrap();
                acked.push(value);
            }
            for (values, delivery) in batches {
                delivery.wait().await.unwrap();
                acked.extend(values);
            }
            (acked, given_up)
        }));
    }
    let mut acked: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut given_up = 0;
    for t in tasks {
        let (values, gave_up) = t.await.unwrap();
        given_up += gave_up;
        for v in values {
            *acked.entry(v).or_default() += 1;
        }
    }
    producer.flush().await.unwrap();
    done.store(true, Ordering::Relaxed);
    watcher.await.unwrap();

    // The buffer filled (senders waited or were refused) and never held more than the setting.
    let peak = peak.load(Ordering::Relaxed);
    assert!(peak > BUFFER / 2, "the buffer filled: peak {peak}");
    assert!(peak <= BUFFER, "buffered {peak} of {BUFFER}");
    assert!(given_up > 0, "some sends gave up while waiting for room");
    // Every byte comes back, and the producer goes on at full speed (no sender left waiting).
    support::wait_for("the buffer to be released", || {
        let s = producer.buffer_statistics();
        (s.buffered_bytes, s.in_flight_batches, s.queued_batches) == (0, 0, 0)
    })
    .await;
    let d = producer
        .send(Record::new("mem").value(&payload(9, 0)))
        .await
        .unwrap();
    d.await.unwrap();
    *acked.entry(payload(9, 0)).or_default() += 1;

    // What the log holds: each acknowledged record once, nothing else.
    let mut log: HashMap<Vec<u8>, usize> = HashMap::new();
    for p in 0..3 {
        for (_, _, value) in cluster.records("mem", p).unwrap() {
            *log.entry(value.unwrap().to_vec()).or_default() += 1;
        }
    }
    assert_eq!(log.len(), acked.len());
    assert_eq!(log, acked, "the log holds every acknowledged record once");
    assert_eq!(
        acked.values().sum::<usize>(),
        6 * per_task + 1 - given_up,
        "every send that did not give up was acknowledged"
    );
    producer.close().await.unwrap();
}

/// A send given up while it learns a new topic's partitions (its first record) holds nothing:
/// the room it took goes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_given_up_while_the_topic_is_looked_up_gives_its_room_back() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("new", 1);
    let client = ClientConfig::new(&cluster.bootstrap());
    let config = ProducerConfig {
        client,
        ..ProducerConfig::default()
    }
    .max_request_size(16 * 1024)
    .buffer_memory(BUFFER);
    let producer = Producer::new(config).await.unwrap();
    cluster.inject(
        ApiKey::Metadata,
        Fault::Delay(Duration::from_millis(500)),
        1,
    );
    let value = payload(0, 1);
    let send = producer.send(Record::new("new").value(&value));
    let gave_up = tokio::time::timeout(Duration::from_millis(50), send).await;
    assert!(gave_up.is_err(), "the lookup was delayed: {gave_up:?}");
    assert_eq!(producer.buffer_statistics().buffered_bytes, 0);
    // The topic is learnt on the next send, which goes through.
    let d = producer
        .send(Record::new("new").value(&value))
        .await
        .unwrap();
    d.await.unwrap();
    assert_eq!(cluster.records("new", 0).unwrap().len(), 1);
    support::wait_for("the buffer to be released", || {
        producer.buffer_statistics().buffered_bytes == 0
    })
    .await;
}
