//! Metrics (`spate::telemetry`, through the `metrics` facade) equal the work done, on the
//! embedded cluster (`--features mock`), read with metrics-util's debugging recorder: records
//! and bytes produced (against the batches the cluster stored), Produce requests (against the
//! cluster's own count), transactions committed and aborted, records consumed under
//! read_committed, the group's assignment, and a lag of zero once every partition is read to
//! its end. One test in its own binary: the recorder is process-wide.

use std::collections::HashMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use spate::consumer::{Consumer, ConsumerConfig, Event, IsolationLevel, OffsetReset};
use spate::mock::MockCluster;
use spate::producer::{Producer, ProducerConfig, Record};
use spate::telemetry;
use spate::wire::ApiKey;

/// Metrics by name and sorted labels.
type Metrics = HashMap<(String, Vec<(String, String)>), f64>;

/// Every metric as `(name, sorted labels) -> value` (counters and gauges as f64, histograms as
/// their sample count).
fn snapshot(snapshotter: &metrics_util::debugging::Snapshotter) -> Metrics {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let mut labels: Vec<(String, String)> = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let value = match value {
                DebugValue::Counter(c) => c as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(h) => h.len() as f64,
            };
            ((key.key().name().to_owned(), labels), value)
        })
        .collect()
}

fn sum(metrics: &Metrics, name: &str, label: (&str, &str)) -> f64 {
    metrics
        .iter()
        .filter(|((n, labels), _)| {
            n == name && labels.iter().any(|(k, v)| k == label.0 && v == label.1)
        })
        .map(|(_, v)| *v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_equal_the_work_done() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder");

    let cluster = MockCluster::start(2).await.expect("cluster");
    cluster.create_topic("m", 2);
    let bootstrap = cluster.bootstrap();
    let producer = Producer::new(ProducerConfig::new(&bootstrap).transactional_id("metrics"))
        .await
        .unwrap();
    producer.init_transactions().await.unwrap();
    for commit in [true, false] {
        producer.begin_transaction().unwrap();
        let rounds = if commit { 6 } else { 1 };
        for i in 0..rounds {
            let values: Vec<String> = (0..100).map(|n| format!("{commit}-{i}-{n}")).collect();
            let rows = values
                .iter()
                .map(|v| Record::new("m").value(v.as_bytes()).partition(i % 2));
            producer
                .send_batch("m", rows)
                .await
                .unwrap()
                .wait()
                .await
                .unwrap();
        }
        if commit {
            producer.commit_transaction().await.unwrap();
        } else {
            producer.abort_transaction().await.unwrap();
        }
    }
    let produced = producer.client().statistics();
    producer.close().await.unwrap();

    let mut config = ConsumerConfig::new(&bootstrap)
        .group_id("mg")
        .auto_offset_reset(OffsetReset::Earliest);
    config.isolation_level = IsolationLevel::ReadCommitted;
    let mut consumer = Consumer::new(config).await.unwrap();
    consumer.subscribe(&["m"]).unwrap();
    let (mut read, mut ended) = (0, std::collections::BTreeSet::new());
    while ended.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("reading stalled")
            .unwrap()
        {
            Event::Batch(b) => {
                ended.remove(&b.partition());
                read += b.batch().len();
            }
            Event::EndOfPartition { partition, .. } => {
                ended.insert(partition);
            }
            _ => {}
        }
    }
    let consumed = consumer.client().statistics();
    consumer.close().await.unwrap();
    assert_eq!(read, 600, "the committed records");

    let metrics = snapshot(&snapshotter);
    let topic = ("topic", "m");
    // Produced: every batch the cluster acknowledged, aborted ones included.
    assert_eq!(sum(&metrics, telemetry::PRODUCED_RECORDS, topic), 700.0);
    let data_bytes: usize = (0..2)
        .flat_map(|p| cluster.batches("m", p))
        // Attributes (bytes 21..23), bit 5: a control batch (a transaction marker).
        .filter(|b| b.bytes[22] & 0x20 == 0)
        .map(|b| b.bytes.len())
        .sum();
    assert_eq!(
        sum(&metrics, telemetry::PRODUCED_BYTES, topic),
        data_bytes as f64,
        "the bytes of the batches the cluster stored"
    );
    assert_eq!(
        sum(&metrics, telemetry::REQUESTS, ("api", "Produce")),
        cluster.request_count(ApiKey::Produce) as f64,
        "as many Produce requests as the cluster received"
    );
    assert_eq!(
        sum(&metrics, telemetry::TRANSACTIONS, ("outcome", "commit")),
        1.0
    );
    assert_eq!(
        sum(&metrics, telemetry::TRANSACTIONS, ("outcome", "abort")),
        1.0
    );
    // Consumed: the committed records only.
    assert_eq!(sum(&metrics, telemetry::CONSUMED_RECORDS, topic), 600.0);
    assert!(sum(&metrics, telemetry::FETCHED_BYTES, topic) >= data_bytes as f64 * 6.0 / 7.0);
    assert!(sum(&metrics, telemetry::REBALANCES, ("group", "mg")) >= 1.0);
    for p in ["0", "1"] {
        let lag = metrics
            .iter()
            .find(|((n, labels), _)| {
                n == telemetry::CONSUMER_LAG
                    && labels.contains(&("partition".into(), p.into()))
                    && labels.contains(&("topic".into(), "m".into()))
            })
            .map(|(_, v)| *v);
        assert_eq!(lag, Some(0.0), "partition {p} read to its end");
    }
    let requests = sum(&metrics, telemetry::REQUESTS, ("api", "Fetch"));
    let latencies = sum(&metrics, telemetry::REQUEST_LATENCY, ("api", "Fetch"));
    let errors = sum(&metrics, telemetry::REQUEST_ERRORS, ("api", "Fetch"));
    assert!(requests > 0.0);
    assert_eq!(
        latencies + errors,
        requests,
        "each request answered or failed"
    );

    // The same figures as each client's own snapshot (Client::statistics).
    let m = &produced.topics["m"];
    assert_eq!(m.produced_records, 700);
    assert_eq!(m.produced_bytes, data_bytes as u64);
    // Per partition: four batches of 100 went to partition 0 (rounds 0, 2, 4 of the committed
    // transaction and the aborted one's round 0), three to partition 1; the bytes are the
    // partition's stored data batches.
    for (p, records) in [(0, 400), (1, 300)] {
        let part = &produced.partitions[&("m".to_owned(), p)];
        assert_eq!(part.produced_records, records, "partition {p}");
        let stored: usize = cluster
            .batches("m", p)
            .iter()
            .filter(|b| b.bytes[22] & 0x20 == 0)
            .map(|b| b.bytes.len())
            .sum();
        assert_eq!(part.produced_bytes, stored as u64, "partition {p}");
    }
    // Uncompressed (the default): the bytes before compression are the bytes sent.
    assert_eq!(m.produced_uncompressed_bytes, m.produced_bytes);
    assert_eq!(
        (
            produced.transactions_committed,
            produced.transactions_aborted
        ),
        (1, 1)
    );
    let produce_requests: u64 = produced
        .brokers
        .values()
        .filter_map(|b| b.requests.get("Produce"))
        .sum();
    assert_eq!(produce_requests, cluster.request_count(ApiKey::Produce));
    assert_eq!(
        m.produced_batches, produce_requests,
        "one batch per request here"
    );
    assert!(produced.connects >= 1);
    // 300 committed records on each partition reach the application.
    for p in 0..2 {
        assert_eq!(
            consumed.partitions[&("m".to_owned(), p)].consumed_records,
            300,
            "partition {p}"
        );
    }
    let c = &consumed.topics["m"];
    assert_eq!(c.consumed_records, 600);
    assert!(c.fetched_bytes as f64 >= data_bytes as f64 * 6.0 / 7.0);
    assert_eq!(c.produced_records, 0, "each client counts its own work");
    assert!(consumed.rebalances >= 1);
    // The join took some time, and less than the test did.
    let took = consumed.last_rebalance.expect("the join's duration");
    assert!(
        took > Duration::ZERO && took < Duration::from_secs(30),
        "{took:?}"
    );
    assert!(sum(&metrics, telemetry::REBALANCE_SECONDS, ("group", "mg")) >= 1.0);
    assert_eq!(
        consumed.lag,
        [(("m".to_owned(), 0), 0), (("m".to_owned(), 1), 0)].into()
    );
    for b in consumed.brokers.values() {
        let sent: u64 = b.requests.values().sum();
        assert_eq!(
            b.responses + b.errors,
            sent,
            "each request answered or failed"
        );
        assert!(b.latency_max >= b.latency_mean());
    }
    // The JSON line `spate consume` prints reads back.
    let json = consumed.to_json();
    let mut scratch = Vec::new();
    let topics = spate::json::json_field(json.as_bytes(), "topics", &mut scratch)
        .unwrap()
        .to_vec();
    let m_json = spate::json::json_field(&topics, "m", &mut scratch)
        .unwrap()
        .to_vec();
    assert_eq!(
        spate::json::json_field(&m_json, "consumed_records", &mut scratch),
        Some(&b"600"[..])
    );
    assert!(spate::json::is_json_value(json.as_bytes()), "{json}");
}
