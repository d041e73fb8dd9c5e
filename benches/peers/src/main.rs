//! One client, one scenario, one process: prints a JSON line with the wall time and the
//! process's CPU time (user + sys, from getrusage), so librdkafka's background threads count.
//!
//!     spate-peers CLIENT SCENARIO BOOTSTRAP TOPIC PARTITIONS COUNT SIZE [CODEC]
//!     CLIENT: spate | rdkafka | rskafka; SCENARIO: produce | send | consume | pipe;
//!     CODEC: lz4 (default) | none
//!
//! produce: COUNT records of SIZE bytes (log-line-like text), CODEC, linger 5 ms, acks=all,
//! spread over PARTITIONS; the process ends once every record is acknowledged. spate's
//! produce hands records in 10,000 at a time (`send_batch`); its send scenario calls `send`
//! once per record, as rdkafka's produce does.
//! consume: the whole topic from the beginning to its end (COUNT records expected).
//! pipe: the seed job: TOPIC from the beginning to its end, every value upper-cased, written
//! to TOPIC-out-CLIENT (same partition, CODEC, linger 5 ms, acks=all); ends when all is
//! acknowledged. spate runs its pipeline; rdkafka the loop an application would write.

use std::time::{Duration, Instant};

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass and reads nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Extra spate producer settings from `SPATE_PRODUCER` (`key=value,key=value`), for runs that
/// vary one (`compression.threads=1`).
fn spate_producer_config(pairs: &[(&str, &str)]) -> spate::producer::ProducerConfig {
    let extra = std::env::var("SPATE_PRODUCER").unwrap_or_default();
    let extra = extra
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').expect("SPATE_PRODUCER: key=value,..."));
    spate::producer::ProducerConfig::from_pairs(pairs.iter().copied().chain(extra)).unwrap()
}

/// The process's peak resident set (getrusage's ru_maxrss, KiB on Linux).
fn peak_rss_kib() -> i64 {
    // SAFETY: as in cpu_seconds.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as i64
}

/// The latency scenario's percentiles, for the JSON line.
static LATENCY: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn latency_report(mut latencies_us: Vec<u64>) -> usize {
    latencies_us.sort_unstable();
    let at = |q: f64| latencies_us[((latencies_us.len() - 1) as f64 * q) as usize] as f64 / 1e3;
    *LATENCY.lock().unwrap() = Some(format!(
        ",\"rate\":{},\"linger_ms\":{},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3},\"max_ms\":{:.3}",
        rate(),
        linger_ms(),
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0)
    ));
    latencies_us.len()
}

/// Messages per second of the latency scenario (`RATE`, 50,000 by default).
fn rate() -> u64 {
    std::env::var("RATE").map_or(50_000, |r| r.parse().expect("RATE"))
}

/// `LINGER_MS` of the latency scenario (5 by default).
fn linger_ms() -> u64 {
    std::env::var("LINGER_MS").map_or(5, |r| r.parse().expect("LINGER_MS"))
}

/// Microseconds since the process started: both ends of the latency scenario are in it.
fn now_us() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// A value of `size` bytes (at least 8) starting with the time it is sent.
fn stamped(size: usize, template: &[u8]) -> Vec<u8> {
    let mut v = template.to_vec();
    v.resize(size.max(8), b'.');
    v[..8].copy_from_slice(&now_us().to_le_bytes());
    v
}

fn sent_at(value: &[u8]) -> u64 {
    u64::from_le_bytes(value[..8].try_into().unwrap())
}

/// Paces `count` sends at `rate()` a second: each millisecond, the messages due by then.
fn paced(count: usize, mut send: impl FnMut(usize)) {
    let rate = rate() as f64;
    let started = Instant::now();
    let mut i = 0;
    while i < count {
        let due = ((started.elapsed().as_secs_f64() * rate) as usize + 1).min(count);
        while i < due {
            send(i);
            i += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// End-to-end latency: records sent at a fixed rate, each carrying its send time, read back by
/// a consumer in the same process; the time from send to the consumer seeing it.
async fn spate_latency(b: &str, topic: &str, count: usize, size: usize, codec: &str) -> Vec<u64> {
    use spate::consumer::{Consumer, ConsumerConfig, Event, Offset};
    use spate::producer::Record;
    let producer = spate_producer(b, codec, &linger_ms().to_string()).await;
    let mut consumer =
        Consumer::new(ConsumerConfig::from_pairs([("bootstrap.servers", b)]).unwrap())
            .await
            .unwrap();
    consumer
        .assign_topics(&[topic], Offset::Beginning)
        .await
        .unwrap();
    let reader = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(count);
        while latencies.len() < count {
            if let Event::Batch(batch) = consumer.next().await.unwrap() {
                let now = now_us();
                for r in batch.records() {
                    latencies.push(now - sent_at(r.value().unwrap()));
                }
            }
        }
        latencies
    });
    let template = values(size).swap_remove(0);
    let handle = tokio::runtime::Handle::current();
    let topic = topic.to_owned();
    let sender = producer.clone();
    tokio::task::spawn_blocking(move || {
        paced(count, |_| {
            let value = stamped(size, &template);
            // try_send never waits; at this rate the buffer never fills.
            let record = Record::new(&topic).value(&value);
            match sender.try_send(record) {
                Ok(_) => {}
                Err(_) => {
                    handle
                        .block_on(sender.send(Record::new(&topic).value(&value)))
                        .unwrap();
                }
            }
        })
    })
    .await
    .unwrap();
    producer.flush().await.unwrap();
    let latencies = reader.await.unwrap();
    producer.close().await.unwrap();
    latencies
}

fn rdkafka_latency(
    b: &str,
    topic: &str,
    partitions: i32,
    count: usize,
    size: usize,
    codec: &str,
) -> Vec<u64> {
    use rdkafka::config::ClientConfig;
    use rdkafka::message::Message;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", b)
        .set("compression.codec", codec)
        .set("linger.ms", linger_ms().to_string())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let consumer = rdkafka_assigned(b, topic, partitions);
    let reader = std::thread::spawn(move || {
        let mut latencies = Vec::with_capacity(count);
        while latencies.len() < count {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                latencies.push(now_us() - sent_at(m.payload().unwrap()));
            }
        }
        latencies
    });
    let template = values(size).swap_remove(0);
    paced(count, |i| {
        let value = stamped(size, &template);
        rdkafka_send(
            &producer,
            BaseRecord::<'_, (), [u8]>::to(topic).payload(&value[..]),
        );
        if i % 100 == 0 {
            producer.poll(Duration::ZERO);
        }
    });
    producer.flush(Duration::from_secs(60)).unwrap();
    reader.join().unwrap()
}

/// A spate producer of `b` with the codec and linger given (and `SPATE_PRODUCER`'s settings).
async fn spate_producer(b: &str, codec: &str, linger_ms: &str) -> spate::producer::Producer {
    let config = spate_producer_config(&[
        ("bootstrap.servers", b),
        ("compression.type", codec),
        ("linger.ms", linger_ms),
    ]);
    spate::producer::Producer::new(config).await.unwrap()
}

fn values(size: usize) -> Vec<Vec<u8>> {
    let words = b"spate produces batched compressed idempotent records to kafka ";
    (0..1024)
        .map(|i| {
            let mut v = format!("{i:06} ").into_bytes();
            while v.len() < size {
                v.push(words[(v.len() * 7 + i) % words.len()]);
            }
            v.truncate(size);
            v
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 8 {
        eprintln!("usage: spate-peers CLIENT SCENARIO BOOTSTRAP TOPIC PARTITIONS COUNT SIZE");
        std::process::exit(2);
    }
    let (client, scenario, bootstrap, topic) = (a[1].as_str(), a[2].as_str(), &a[3], &a[4]);
    let partitions: i32 = a[5].parse().unwrap();
    let count: usize = a[6].parse().unwrap();
    let size: usize = a[7].parse().unwrap();
    let codec = a.get(8).map_or("lz4", String::as_str);
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let got = match (client, scenario) {
        ("spate", "produce") => {
            spate_produce(bootstrap, topic, partitions, count, size, codec).await
        }
        ("spate", "send") => spate_send(bootstrap, topic, partitions, count, size, codec).await,
        ("spate", "consume") => spate_consume(bootstrap, topic).await,
        ("rdkafka", "produce") => rdkafka_produce(bootstrap, topic, partitions, count, size, codec),
        ("rdkafka", "consume") => rdkafka_consume(bootstrap, topic, partitions),
        ("rskafka", "produce") => {
            rskafka_produce(bootstrap, topic, partitions, count, size, codec).await
        }
        ("rskafka", "consume") => rskafka_consume(bootstrap, topic, partitions).await,
        ("spate", "pipe") => spate_pipe(bootstrap, topic, codec).await,
        ("spate", "latency") => {
            latency_report(spate_latency(bootstrap, topic, count, size, codec).await)
        }
        ("rdkafka", "latency") => latency_report(rdkafka_latency(
            bootstrap, topic, partitions, count, size, codec,
        )),
        ("rdkafka", "pipe") => rdkafka_pipe(bootstrap, topic, partitions, codec),
        _ => panic!("unknown client or scenario"),
    };
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    assert_eq!(got, count, "{client} {scenario}: records");
    let extra = LATENCY.lock().unwrap().take().unwrap_or_default();
    println!(
        "{{\"client\":\"{client}\",\"scenario\":\"{scenario}\",\"size\":{size},\"count\":{count},\"wall\":{wall:.4},\"cpu\":{cpu:.4},\"peak_rss_kib\":{}{extra}}}",
        peak_rss_kib()
    );
}

async fn spate_produce(
    b: &str,
    topic: &str,
    partitions: i32,
    count: usize,
    size: usize,
    codec: &str,
) -> usize {
    use spate::producer::Record;
    let producer = spate_producer(b, codec, "5").await;
    let values = values(size);
    let records = (0..count).map(|i| {
        Record::new(topic)
            .value(&values[i % values.len()])
            .partition((i % partitions as usize) as i32)
    });
    // The fused path, as a pipeline would use it: many records per call.
    let mut deliveries = Vec::new();
    let mut records = records.peekable();
    while records.peek().is_some() {
        let chunk: Vec<Record<'_>> = records.by_ref().take(10_000).collect();
        deliveries.push(producer.send_batch(topic, chunk).await.unwrap());
    }
    producer.flush().await.unwrap();
    let mut n = 0;
    for d in deliveries {
        n += d.records();
        d.wait().await.unwrap();
    }
    producer.close().await.unwrap();
    n
}

/// The per-record path most applications take: one `send` per record, as rdkafka's produce.
async fn spate_send(
    b: &str,
    topic: &str,
    partitions: i32,
    count: usize,
    size: usize,
    codec: &str,
) -> usize {
    use spate::producer::Record;
    let producer = spate_producer(b, codec, "5").await;
    let values = values(size);
    // Every 1000th delivery is kept and awaited; the rest are dropped (the record is sent
    // all the same), as an application that only counts failures would.
    let mut kept = Vec::with_capacity(count / 1000 + 1);
    for i in 0..count {
        let record = Record::new(topic)
            .value(&values[i % values.len()])
            .partition((i % partitions as usize) as i32);
        let delivery = producer.send(record).await.unwrap();
        if i % 1000 == 0 {
            kept.push(delivery);
        }
    }
    producer.flush().await.unwrap();
    for d in kept {
        d.await.unwrap();
    }
    assert!(producer.fatal_error().is_none());
    producer.close().await.unwrap();
    count
}

async fn spate_consume(b: &str, topic: &str) -> usize {
    use spate::consumer::{Consumer, ConsumerConfig, Event, Offset};
    let config = ConsumerConfig::from_pairs([("bootstrap.servers", b)]).unwrap();
    let mut consumer = Consumer::new(config).await.unwrap();
    consumer
        .assign_topics(&[topic], Offset::Beginning)
        .await
        .unwrap();
    let partitions = consumer.assignment().len();
    let mut ended = std::collections::HashSet::new();
    let (mut n, mut bytes) = (0, 0usize);
    while ended.len() < partitions {
        match consumer.next().await.unwrap() {
            Event::Batch(batch) => {
                ended.remove(&batch.partition());
                n += batch.batch().len();
                bytes += batch
                    .records()
                    .map(|r| r.value().map_or(0, <[u8]>::len))
                    .sum::<usize>();
            }
            Event::EndOfPartition { partition, .. } => {
                ended.insert(partition);
            }
            _ => {}
        }
    }
    std::hint::black_box(bytes);
    n
}

fn rdkafka_produce(
    b: &str,
    topic: &str,
    partitions: i32,
    count: usize,
    size: usize,
    codec: &str,
) -> usize {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", b)
        .set("compression.codec", codec)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let values = values(size);
    for i in 0..count {
        let value = &values[i % values.len()];
        let partition = (i % partitions as usize) as i32;
        rdkafka_send(
            &producer,
            BaseRecord::<'_, (), [u8]>::to(topic)
                .payload(&value[..])
                .partition(partition),
        );
        if i % 1000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    count
}

/// Hands librdkafka a record, polling while its queue is full, as an application does.
fn rdkafka_send<K: rdkafka::message::ToBytes + ?Sized>(
    producer: &rdkafka::producer::BaseProducer,
    mut record: rdkafka::producer::BaseRecord<'_, K, [u8]>,
) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                record = back;
                producer.poll(Duration::from_millis(1));
            }
        }
    }
}

/// A librdkafka consumer assigned every partition of `topic` from the beginning, with
/// end-of-partition events.
fn rdkafka_assigned(b: &str, topic: &str, partitions: i32) -> rdkafka::consumer::BaseConsumer {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", b)
        .set("group.id", "spate-peers")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    consumer
}

fn rdkafka_consume(b: &str, topic: &str, partitions: i32) -> usize {
    use rdkafka::error::KafkaError;
    use rdkafka::message::Message;
    let consumer = rdkafka_assigned(b, topic, partitions);
    let mut ended = std::collections::HashSet::new();
    let (mut n, mut bytes) = (0, 0usize);
    while ended.len() < partitions as usize {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                ended.remove(&m.partition());
                n += 1;
                bytes += m.payload().map_or(0, <[u8]>::len);
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    }
    std::hint::black_box(bytes);
    n
}

async fn spate_pipe(b: &str, topic: &str, codec: &str) -> usize {
    use spate::consumer::ConsumerConfig;
    use spate::pipeline::{ops, Chain, Pipeline};
    let consumer =
        ConsumerConfig::from_pairs([("bootstrap.servers", b), ("auto.offset.reset", "earliest")])
            .unwrap();
    let producer = spate_producer_config(&[
        ("bootstrap.servers", b),
        ("compression.type", codec),
        ("linger.ms", "5"),
    ]);
    let mut pipeline = Pipeline::new(consumer, producer);
    // LANES: partitions processed side by side (default: the pipeline's, one per core).
    if let Ok(lanes) = std::env::var("LANES") {
        pipeline = pipeline.lanes(lanes.parse().expect("LANES"));
    }
    let stats = pipeline
        .from_topics(&[topic])
        .to_topic(&format!("{topic}-out-spate"))
        .operators(|| Chain::new().then(ops::uppercase()))
        .stop_at_end(true)
        .run()
        .await
        .unwrap();
    assert_eq!(stats.records_in, stats.records_out);
    stats.records_out as usize
}

fn rdkafka_pipe(b: &str, topic: &str, partitions: i32, codec: &str) -> usize {
    use rdkafka::error::KafkaError;
    use rdkafka::message::Message;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::ClientConfig;
    let consumer = rdkafka_assigned(b, topic, partitions);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", b)
        .set("compression.codec", codec)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let out = format!("{topic}-out-rdkafka");
    let mut ended = std::collections::HashSet::new();
    let mut n = 0;
    while ended.len() < partitions as usize {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                ended.remove(&m.partition());
                let value = m.payload().unwrap_or_default().to_ascii_uppercase();
                let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&out)
                    .payload(&value[..])
                    .partition(m.partition());
                if let Some(k) = m.key() {
                    record = record.key(k);
                }
                rdkafka_send(&producer, record);
                n += 1;
                if n % 1000 == 0 {
                    producer.poll(Duration::ZERO);
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    n
}

async fn rskafka_produce(
    b: &str,
    topic: &str,
    partitions: i32,
    count: usize,
    size: usize,
    codec: &str,
) -> usize {
    use rskafka::client::partition::{Compression, UnknownTopicHandling};
    use rskafka::client::ClientBuilder;
    use rskafka::record::Record;
    let client = ClientBuilder::new(vec![b.to_owned()])
        .build()
        .await
        .unwrap();
    let values = values(size);
    // rskafka leaves batching to the caller: each partition's records go in ~1 MB batches,
    // one produce call each, every partition in its own task.
    let per_batch = (1_000_000 / (size + 20)).max(1);
    let mut tasks = Vec::new();
    for p in 0..partitions {
        let pc = client
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let values = values.clone();
        let codec = codec.to_owned();
        let mine: Vec<usize> = (0..count)
            .filter(|i| i % partitions as usize == p as usize)
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            for chunk in mine.chunks(per_batch) {
                let now = chrono::Utc::now();
                let records = chunk
                    .iter()
                    .map(|i| Record {
                        key: None,
                        value: Some(values[i % values.len()].clone()),
                        headers: Default::default(),
                        timestamp: now,
                    })
                    .collect();
                let compression = if codec == "none" {
                    Compression::NoCompression
                } else {
                    Compression::Lz4
                };
                n += pc.produce(records, compression).await.unwrap().len();
            }
            n
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += t.await.unwrap();
    }
    n
}

async fn rskafka_consume(b: &str, topic: &str, partitions: i32) -> usize {
    use rskafka::client::partition::UnknownTopicHandling;
    use rskafka::client::ClientBuilder;
    let client = ClientBuilder::new(vec![b.to_owned()])
        .build()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for p in 0..partitions {
        let pc = client
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let (mut n, mut bytes, mut offset) = (0, 0usize, 0i64);
            loop {
                let (records, high_watermark) =
                    pc.fetch_records(offset, 1..1_048_576, 500).await.unwrap();
                for r in &records {
                    n += 1;
                    bytes += r.record.value.as_ref().map_or(0, Vec::len);
                    offset = r.offset + 1;
                }
                if offset >= high_watermark {
                    break;
                }
            }
            std::hint::black_box(bytes);
            n
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += t.await.unwrap();
    }
    n
}
