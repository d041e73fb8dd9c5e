//! Incremental fetch sessions (KIP-227) end to end, on the embedded cluster (`--features
//! mock`), which keeps sessions as Kafka's FetchSessionCache does. (librdkafka fetches without
//! sessions, epoch -1: its reads of the embedded cluster in the other tests cover that path.)

use std::time::Duration;

use spate::consumer::{Consumer, ConsumerConfig, Event, Offset};
use spate::mock::{Fault, MockCluster};
use spate::producer::{Producer, ProducerConfig, Record};
use spate::wire::ApiKey;
use spate::ClientConfig;

const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;

fn consumer_config(cluster: &MockCluster) -> ConsumerConfig {
    let mut client = ClientConfig::new(&cluster.bootstrap()).api_timeout(Duration::from_secs(10));
    client.retry_backoff = Duration::from_millis(10);
    ConsumerConfig {
        client,
        ..ConsumerConfig::default()
    }
    .fetch_max_wait(Duration::from_millis(20))
}

async fn write(cluster: &MockCluster, topic: &str, partitions: &[i32], per_partition: usize) {
    let producer = Producer::new(ProducerConfig::new(&cluster.bootstrap()))
        .await
        .unwrap();
    for i in 0..per_partition {
        for p in partitions {
            let value = format!("{p}-{i}");
            producer
                .send(Record::new(topic).value(value.as_bytes()).partition(*p))
                .await
                .unwrap();
        }
    }
    producer.close().await.unwrap();
}

/// Reads until every partition in `partitions` has reported its end; the records seen.
async fn read_to_end(consumer: &mut Consumer, partitions: usize) -> Vec<(i32, i64)> {
    let mut ended = std::collections::BTreeSet::new();
    let mut seen = Vec::new();
    while ended.len() < partitions {
        match tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("progress within 10 s")
            .unwrap()
        {
            Event::Batch(b) => {
                ended.remove(&b.partition());
                seen.extend(b.records().map(|r| (b.partition(), r.offset())));
            }
            Event::EndOfPartition { partition, .. } => {
                ended.insert(partition);
            }
            _ => {}
        }
    }
    seen
}

/// 100 partitions: once read to their ends, the consumer's fetches are incremental and name
/// nothing (a few dozen bytes instead of kilobytes); new records in two partitions are read
/// through the session; a partition seeked to its end reports its end though the broker's
/// incremental answers leave it out; closing the consumer closes its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_fetches_are_incremental_and_small() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("many", 100);
    write(&cluster, "many", &[0, 7, 42], 50).await;
    let mut consumer = Consumer::new(consumer_config(&cluster)).await.unwrap();
    let all: Vec<(&str, i32, Offset)> = (0..100).map(|p| ("many", p, Offset::Beginning)).collect();
    consumer.assign(&all).unwrap();
    let seen = read_to_end(&mut consumer, 100).await;
    assert_eq!(seen.len(), 150);

    // Idle: fetches go on (long polls of 20 ms), each incremental and empty.
    let before = cluster.incremental_fetches();
    let _ = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await;
    let incremental = cluster.incremental_fetches() - before;
    let size = cluster.last_request_size(ApiKey::Fetch).unwrap();
    assert!(
        incremental >= 5,
        "{incremental} incremental fetches in 500 ms"
    );
    // A request naming the 100 partitions takes over 2,000 bytes (at least 20 per partition, at
    // any version): one this small names none of them, the session holds them.
    assert!(
        size < 120,
        "an idle incremental fetch of 100 partitions takes {size} bytes"
    );
    assert_eq!(cluster.fetch_sessions(), 1);

    // New records in two partitions come through the session, and only those.
    write(&cluster, "many", &[3, 99], 10).await;
    let mut got = Vec::new();
    while got.len() < 20 {
        if let Event::Batch(b) = consumer.next().await.unwrap() {
            got.extend(b.records().map(|r| (b.partition(), r.offset())));
        }
    }
    got.sort();
    let want: Vec<(i32, i64)> = [3, 99]
        .iter()
        .flat_map(|p| (0..10).map(move |o| (*p, o)))
        .collect();
    assert_eq!(got, want);

    // Partition 0 (read to its end long ago, idle since) is seeked to its end: the broker's
    // incremental answers leave it out, yet its end is reported again.
    consumer.seek("many", 0, Offset::End).unwrap();
    let reported = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Event::EndOfPartition {
                partition: 0,
                offset,
                ..
            } = consumer.next().await.unwrap()
            {
                return offset;
            }
        }
    })
    .await
    .expect("the end of the seeked partition is reported");
    assert_eq!(reported, 50);

    consumer.close().await.unwrap();
    assert_eq!(cluster.fetch_sessions(), 0, "closing closed the session");
}

/// Session errors (injected, and a broker that evicted every session) start a new session;
/// every record is read once, in order, and old sessions do not pile up at the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_errors_start_a_new_session_and_lose_nothing() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("errs", 4);
    let mut consumer = Consumer::new(consumer_config(&cluster)).await.unwrap();
    let all: Vec<(&str, i32, Offset)> = (0..4).map(|p| ("errs", p, Offset::Beginning)).collect();
    consumer.assign(&all).unwrap();
    let writer = {
        let bootstrap = cluster.bootstrap();
        tokio::spawn(async move {
            let producer = Producer::new(ProducerConfig::new(&bootstrap))
                .await
                .unwrap();
            for i in 0..400 {
                let value = format!("{i}");
                producer
                    .send(Record::new("errs").value(value.as_bytes()).partition(i % 4))
                    .await
                    .unwrap();
                if i % 40 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            producer.close().await.unwrap();
        })
    };
    let mut next = [0i64; 4];
    let mut faults = 0;
    while next.iter().sum::<i64>() < 400 {
        let total = next.iter().sum::<i64>();
        if faults == 0 && total > 50 {
            cluster.inject(ApiKey::Fetch, Fault::Error(FETCH_SESSION_ID_NOT_FOUND), 1);
            faults += 1;
        } else if faults == 1 && total > 150 {
            cluster.inject(ApiKey::Fetch, Fault::Error(INVALID_FETCH_SESSION_EPOCH), 1);
            faults += 1;
        } else if faults == 2 && total > 250 {
            cluster.evict_fetch_sessions();
            faults += 1;
        }
        let event = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("progress")
            .unwrap();
        if let Event::Batch(b) = event {
            for r in b.records() {
                let p = b.partition() as usize;
                assert_eq!(r.offset(), next[p], "partition {p}: in order, once");
                next[p] += 1;
            }
        }
    }
    writer.await.unwrap();
    assert_eq!(faults, 3);
    assert_eq!(
        cluster.pending_faults(),
        0,
        "every injected session error was met"
    );
    assert_eq!(
        cluster.fetch_sessions(),
        1,
        "old sessions were closed, not left behind"
    );
    consumer.close().await.unwrap();
}

/// A broker with no free session slot evicts the least recently used session; the consumer
/// whose session went starts another, and both read everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_sessions_are_replaced() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.set_fetch_session_slots(1);
    cluster.create_topic("slots", 2);
    write(&cluster, "slots", &[0, 1], 100).await;
    let mut a = Consumer::new(consumer_config(&cluster)).await.unwrap();
    let mut b = Consumer::new(consumer_config(&cluster)).await.unwrap();
    a.assign(&[
        ("slots", 0, Offset::Beginning),
        ("slots", 1, Offset::Beginning),
    ])
    .unwrap();
    b.assign(&[
        ("slots", 0, Offset::Beginning),
        ("slots", 1, Offset::Beginning),
    ])
    .unwrap();
    let (seen_a, seen_b) = tokio::join!(read_to_end(&mut a, 2), read_to_end(&mut b, 2));
    assert_eq!((seen_a.len(), seen_b.len()), (200, 200));
    assert_eq!(cluster.fetch_sessions(), 1);
    a.close().await.unwrap();
    b.close().await.unwrap();
}
