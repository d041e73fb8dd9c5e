//! `spate bench`: produce, consume and pipeline throughput, on an embedded cluster in this
//! process (the default: nothing to install) or on a real one (`-b`).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spate::cluster::{Client, NewTopic};
use spate::consumer::{Consumer, ConsumerConfig, Event, Offset};
use spate::mock::MockCluster;
use spate::pipeline::event_time::{AggregateSpec, EventTime, KeySource};
use spate::pipeline::window::{Aggregate, WindowSpec};
use spate::pipeline::{ops, Chain, Guarantee, Pipeline, Windowed};
use spate::producer::{Producer, ProducerConfig, Record};

use crate::{common, cpu};

/// Threads of the embedded cluster's runtime carry this name, so their CPU time can be told
/// apart from the client's.
const BROKER_THREAD: &str = "spate-mock";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run against this cluster instead of an embedded one (`host:port[,...]`).
    #[arg(short = 'b', long = "brokers")]
    pub brokers: Option<String>,
    /// Any client, producer or consumer key: `-X acks=1`. Repeatable.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Messages per scenario.
    #[arg(short = 'n', long = "count", default_value_t = 1_000_000)]
    pub count: usize,
    /// Message size in bytes.
    #[arg(short = 's', long = "size", default_value_t = 100)]
    pub size: usize,
    /// Partitions of the benchmark topics.
    #[arg(long = "partitions", default_value_t = 6)]
    pub partitions: i32,
    /// Compression: none, gzip, snappy, lz4, zstd.
    #[arg(short = 'z', default_value = "lz4")]
    pub codec: String,
    /// Producer linger in milliseconds.
    #[arg(long = "linger-ms", default_value_t = 5)]
    pub linger_ms: u64,
    /// Brokers of the embedded cluster.
    #[arg(long = "embedded-brokers", default_value_t = 3)]
    pub embedded_brokers: usize,
    /// The embedded cluster's finalized `transaction.version`: 2 runs transactions v2
    /// (KIP-890, as Kafka 4.x clusters), 1 the older protocol.
    #[arg(long = "embedded-transaction-version", default_value_t = 2)]
    pub embedded_transaction_version: i16,
    /// Scenarios to run (repeatable): produce, consume, pipe, latency (end to end: `--rate`
    /// messages a second for `--latency-seconds`, each timed from `send` until a consumer in
    /// this process reads it), pipe-eos (an exactly-once
    /// pipeline run by `--members` members of one group), pipe-window (the pipe scenario's
    /// pipeline counting records per key in 100 ms tumbling windows of their timestamps, its
    /// state logged to a changelog). The others read what produce wrote, so it always runs.
    /// Without `--scenario`: produce, consume and pipe.
    #[arg(long = "scenario")]
    pub scenarios: Vec<String>,
    /// Members of the pipe-eos scenario's group (in this process, each with its own consumer,
    /// producer and transactional.id).
    #[arg(long = "members", default_value_t = 1)]
    pub members: usize,
    /// Commit interval of the pipe scenarios in milliseconds (a transaction each, for
    /// pipe-eos).
    #[arg(long = "commit-interval-ms", default_value_t = 1000)]
    pub commit_interval_ms: u64,
    /// Messages a second of the latency scenario.
    #[arg(long = "rate", default_value_t = 50_000)]
    pub rate: u64,
    /// How long the latency scenario sends, in seconds.
    #[arg(long = "latency-seconds", default_value_t = 5)]
    pub latency_seconds: u64,
    /// Print the results as JSON on stdout instead of a table.
    #[arg(long = "json")]
    pub json: bool,
}

#[derive(Debug, Default)]
struct Outcome {
    scenario: String,
    messages: u64,
    bytes: u64,
    seconds: f64,
    client_cpu: f64,
    broker_cpu: Option<f64>,
    /// p50, p99 and p99.9 in milliseconds.
    latency_ms: Option<(f64, f64, f64)>,
}

/// Messages done so far, for the progress line.
type Progress = AtomicU64;

pub fn run(args: &Args) -> Result<ExitCode, String> {
    if args.size == 0 || args.count == 0 || args.partitions < 1 {
        return Err("--count, --size and --partitions must be positive".into());
    }
    let wanted = |s: &str| {
        (args.scenarios.is_empty() && !["pipe-eos", "pipe-window", "latency"].contains(&s))
            || args.scenarios.iter().any(|w| w == s)
    };
    for s in &args.scenarios {
        if ![
            "produce",
            "consume",
            "pipe",
            "pipe-eos",
            "pipe-window",
            "latency",
        ]
        .contains(&s.as_str())
        {
            return Err(format!(
                "--scenario {s}: expected produce, consume, pipe, latency, pipe-eos or pipe-window"
            ));
        }
    }
    if args.members == 0 {
        return Err("--members must be positive".into());
    }
    if args.rate == 0 || args.latency_seconds == 0 {
        return Err("--rate and --latency-seconds must be positive".into());
    }
    // The embedded cluster runs on its own runtime, so its CPU time is its own.
    let broker_runtime = match args.brokers {
        Some(_) => None,
        None => Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name(BROKER_THREAD)
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the embedded cluster: {e}"))?,
        ),
    };
    let cluster = match &broker_runtime {
        Some(rt) => Some(
            rt.block_on(MockCluster::start(args.embedded_brokers.max(1)))
                .map_err(|e| format!("cannot start the embedded cluster: {e}"))?,
        ),
        None => None,
    };
    if let Some(cluster) = &cluster {
        cluster.set_transaction_version(args.embedded_transaction_version);
    }
    let bootstrap = match (&args.brokers, &cluster) {
        (Some(b), _) => b.clone(),
        (None, Some(c)) => c.bootstrap(),
        (None, None) => unreachable!("one or the other"),
    };
    let where_ = match &cluster {
        Some(_) => format!(
            "embedded cluster ({} brokers, in this process)",
            args.embedded_brokers.max(1)
        ),
        None => bootstrap.clone(),
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let topic = format!("spate-bench-{}-{stamp}", std::process::id());
    let out_topic = format!("{topic}-out");
    let mut pairs = vec![
        ("bootstrap.servers".to_owned(), bootstrap.clone()),
        ("auto.offset.reset".to_owned(), "earliest".to_owned()),
        ("compression.type".to_owned(), args.codec.clone()),
        ("linger.ms".to_owned(), args.linger_ms.to_string()),
    ];
    pairs.extend(common::cli_defaults());
    pairs.extend(common::parse_pairs(&args.config)?);
    let statistics = common::take_statistics_interval(&mut pairs)?;
    let (consumer_config, producer_config) = common::consumer_and_producer(pairs)?;
    let client_config = consumer_config.client.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let results = runtime.block_on(async {
        let client = Client::connect(client_config)
            .await
            .map_err(|e| e.to_string())?;
        create_topics(
            cluster.as_ref(),
            &client,
            &[&topic, &out_topic],
            args.partitions,
        )
        .await?;
        eprintln!(
            "spate bench: {} messages of {} B, {}, linger {} ms, {} partitions, on {where_}",
            args.count, args.size, args.codec, args.linger_ms, args.partitions
        );
        let mut results = Vec::new();
        results.push(produce(args, producer_config.clone(), &topic, statistics).await?);
        if wanted("consume") {
            results.push(consume(args, consumer_config.clone(), &topic, statistics).await?);
        }
        let commit_interval = Duration::from_millis(args.commit_interval_ms.max(1));
        if wanted("pipe") {
            let pipeline = Pipeline::new(consumer_config.clone(), producer_config.clone())
                .from_topics(&[&topic])
                .to_topic(&out_topic)
                .operators(|| Chain::new().then(ops::uppercase()))
                .commit_interval(commit_interval)
                .stop_at_end(true);
            results.push(pipe(args, pipeline).await?);
        }
        if wanted("latency") {
            let latency_topic = format!("{topic}-latency");
            create_topics(
                cluster.as_ref(),
                &client,
                &[&latency_topic],
                args.partitions,
            )
            .await?;
            results.push(
                latency(
                    args,
                    consumer_config.clone(),
                    producer_config.clone(),
                    &latency_topic,
                )
                .await?,
            );
            if cluster.is_none() {
                let _ = client.delete_topics(&[&latency_topic]).await;
            }
        }
        if wanted("pipe-window") {
            let windowed = Windowed::new(
                KeySource::RecordKey,
                EventTime::Timestamp,
                WindowSpec::Tumbling { size: 100 },
                AggregateSpec {
                    aggregate: Aggregate::Count,
                    field: None,
                },
            );
            let pipeline = Pipeline::new(
                consumer_config.clone().group_id(&format!("{topic}-window")),
                producer_config.clone(),
            )
            .from_topics(&[&topic])
            .to_topic(&out_topic)
            .windowed(windowed)
            .commit_interval(commit_interval)
            .stop_at_end(true);
            results.push(pipe_window(args, pipeline).await?);
            if cluster.is_none() {
                let changelog = format!("{topic}-window-windows-changelog");
                let _ = client.delete_topics(&[&changelog]).await;
            }
        }
        if wanted("pipe-eos") {
            let eos_topic = format!("{topic}-eos");
            create_topics(cluster.as_ref(), &client, &[&eos_topic], args.partitions).await?;
            let pipeline = Pipeline::new(
                consumer_config.group_id(&format!("{topic}-eos")),
                producer_config,
            )
            .from_topics(&[&topic])
            .to_topic(&eos_topic)
            .operators(|| Chain::new().then(ops::uppercase()))
            .guarantee(Guarantee::ExactlyOnce)
            .commit_interval(commit_interval)
            .stop_at_end(true);
            results.push(pipe_eos(args, pipeline).await?);
            if cluster.is_none() {
                let _ = client.delete_topics(&[&eos_topic]).await;
            }
        }
        if cluster.is_none() {
            let _ = client.delete_topics(&[&topic, &out_topic]).await;
        }
        Ok::<_, String>(results)
    })?;
    if args.json {
        println!("{}", json(args, &where_, &results));
    } else {
        print!("{}", table(&results));
    }
    drop(cluster);
    Ok(ExitCode::SUCCESS)
}

/// Creates the benchmark's `topics`: on the embedded cluster directly, on a real one through
/// CreateTopics (replication factor 1).
async fn create_topics(
    cluster: Option<&MockCluster>,
    client: &Client,
    topics: &[&str],
    partitions: i32,
) -> Result<(), String> {
    match cluster {
        Some(c) => {
            for topic in topics {
                c.create_topic(topic, partitions);
            }
            Ok(())
        }
        None => {
            let new: Vec<NewTopic> = topics
                .iter()
                .map(|t| NewTopic::new(t, partitions, 1))
                .collect();
            client
                .create_topics(&new)
                .await
                .map_err(|e| format!("creating the benchmark topics: {e}"))
        }
    }
}

/// Log-line-like values, compressible the way real ones are.
fn values(size: usize) -> Vec<Vec<u8>> {
    let words = b"spate reads batches and writes them back to kafka with one copy ";
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

/// Runs `work`, showing progress, and measures wall and CPU time.
async fn measured<F: std::future::Future<Output = Result<u64, String>>>(
    scenario: &str,
    total: u64,
    progress: Arc<Progress>,
    work: F,
) -> Result<Outcome, String> {
    let cpu0 = cpu::process_seconds();
    let broker0 = cpu::thread_seconds(BROKER_THREAD);
    let started = Instant::now();
    let ticker = tokio::spawn({
        let progress = progress.clone();
        let scenario = scenario.to_owned();
        async move {
            let tty = std::io::stderr().is_terminal();
            let mut every =
                tokio::time::interval(Duration::from_millis(if tty { 250 } else { 2000 }));
            every.tick().await;
            loop {
                every.tick().await;
                let done = progress.load(Ordering::Relaxed);
                let rate = done as f64 / started.elapsed().as_secs_f64();
                let pct = done as f64 * 100.0 / total as f64;
                if tty {
                    eprint!("\r  {scenario}: {done} / {total} ({pct:.0}%), {rate:.0} msgs/s   ");
                } else {
                    eprintln!("  {scenario}: {done} / {total} ({pct:.0}%), {rate:.0} msgs/s");
                }
            }
        }
    });
    let messages = work.await;
    ticker.abort();
    let seconds = started.elapsed().as_secs_f64();
    let process = cpu::process_seconds() - cpu0;
    let broker = cpu::thread_seconds(BROKER_THREAD) - broker0;
    if std::io::stderr().is_terminal() {
        eprint!("\r{:70}\r", "");
    }
    let messages = messages?;
    eprintln!("  {scenario}: {messages} messages in {seconds:.2} s");
    Ok(Outcome {
        scenario: scenario.to_owned(),
        messages,
        seconds,
        client_cpu: process - broker,
        broker_cpu: (broker > 0.0).then_some(broker),
        ..Outcome::default()
    })
}

async fn produce(
    args: &Args,
    config: ProducerConfig,
    topic: &str,
    statistics: Option<Duration>,
) -> Result<Outcome, String> {
    let producer = Producer::new(config).await.map_err(|e| e.to_string())?;
    let _statistics = common::print_statistics(producer.client(), statistics);
    let values = values(args.size);
    let progress = Arc::new(Progress::default());
    let count = args.count;
    // About a thousand deliveries are timed from send to acknowledgement (at least every
    // 256th): each timed one costs a task, which would otherwise weigh in the figure.
    let every = (count / 1000).max(256);
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(count / every + 1)));
    let partitions = args.partitions;
    let mut outcome = measured("produce", count as u64, progress.clone(), async {
        let mut samplers = Vec::new();
        for i in 0..count {
            let record = Record::new(topic)
                .value(&values[i % values.len()])
                .partition(i as i32 % partitions);
            // The others read no clock of the benchmark's own.
            let sent = (i % every == 0).then(Instant::now);
            let delivery = producer.send(record).await.map_err(|e| e.to_string())?;
            if let Some(sent) = sent {
                let latencies = latencies.clone();
                samplers.push(tokio::spawn(async move {
                    let result = delivery.await;
                    latencies
                        .lock()
                        .unwrap()
                        .push(sent.elapsed().as_secs_f64() * 1e3);
                    result
                }));
            }
            progress.store(i as u64 + 1, Ordering::Relaxed);
        }
        producer.flush().await.map_err(|e| e.to_string())?;
        for s in samplers {
            s.await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("a message was not acknowledged: {e}"))?;
        }
        Ok(count as u64)
    })
    .await?;
    producer.close().await.map_err(|e| e.to_string())?;
    outcome.latency_ms = percentiles(std::mem::take(&mut *latencies.lock().unwrap()));
    outcome.bytes = (count * args.size) as u64;
    Ok(outcome)
}

/// p50, p99 and p99.9 of `samples`.
fn percentiles(mut samples: Vec<f64>) -> Option<(f64, f64, f64)> {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    (!samples.is_empty()).then(|| (at(0.5), at(0.99), at(0.999)))
}

/// End-to-end latency: `--rate` messages a second for `--latency-seconds`, each value starting
/// with the microseconds since the scenario began when it was sent; a consumer in this process
/// reads them and times each from send to the batch that holds it.
async fn latency(
    args: &Args,
    consumer: ConsumerConfig,
    producer: ProducerConfig,
    topic: &str,
) -> Result<Outcome, String> {
    let count = (args.rate * args.latency_seconds) as usize;
    let producer = Producer::new(producer).await.map_err(|e| e.to_string())?;
    let mut consumer = Consumer::new(consumer).await.map_err(|e| e.to_string())?;
    consumer
        .assign_topics(&[topic], Offset::Beginning)
        .await
        .map_err(|e| e.to_string())?;
    let template = values(args.size.max(8)).swap_remove(0);
    let progress = Arc::new(Progress::default());
    let origin = Instant::now();
    let reader = tokio::spawn(async move {
        let mut samples = Vec::with_capacity(count);
        while samples.len() < count {
            if let Event::Batch(b) = consumer.next().await.map_err(|e| e.to_string())? {
                let now = origin.elapsed().as_micros() as u64;
                for r in b.records() {
                    let sent = r
                        .value()
                        .and_then(|v| v.get(..8))
                        .and_then(|v| v.try_into().ok())
                        .map(u64::from_le_bytes)
                        .ok_or("a latency record without its send time")?;
                    samples.push(now.saturating_sub(sent) as f64 / 1e3);
                }
            }
        }
        Ok::<_, String>(samples)
    });
    let rate = args.rate as f64;
    let mut outcome = measured("latency", count as u64, progress.clone(), async {
        // Each millisecond, the messages due by then.
        let mut i = 0;
        let mut value = template.clone();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while i < count {
            tick.tick().await;
            let due = ((origin.elapsed().as_secs_f64() * rate) as usize + 1).min(count);
            while i < due {
                let sent = origin.elapsed().as_micros() as u64;
                value[..8].copy_from_slice(&sent.to_le_bytes());
                producer
                    .send(Record::new(topic).value(&value))
                    .await
                    .map_err(|e| e.to_string())?;
                i += 1;
            }
            progress.store(i as u64, Ordering::Relaxed);
        }
        producer.flush().await.map_err(|e| e.to_string())?;
        Ok(count as u64)
    })
    .await?;
    let samples = reader.await.map_err(|e| e.to_string())??;
    producer.close().await.map_err(|e| e.to_string())?;
    outcome.latency_ms = percentiles(samples);
    outcome.bytes = (count * args.size.max(8)) as u64;
    Ok(outcome)
}

async fn consume(
    args: &Args,
    config: ConsumerConfig,
    topic: &str,
    statistics: Option<Duration>,
) -> Result<Outcome, String> {
    let mut consumer = Consumer::new(config).await.map_err(|e| e.to_string())?;
    let _statistics = common::print_statistics(consumer.client(), statistics);
    consumer
        .assign_topics(&[topic], Offset::Beginning)
        .await
        .map_err(|e| e.to_string())?;
    let progress = Arc::new(Progress::default());
    let bytes = Arc::new(AtomicU64::new(0));
    let outcome = measured("consume", args.count as u64, progress.clone(), {
        let bytes = bytes.clone();
        async move {
            let mut ended = std::collections::HashSet::new();
            let mut n = 0u64;
            while ended.len() < consumer.assignment().len() {
                match consumer.next().await.map_err(|e| e.to_string())? {
                    Event::Batch(b) => {
                        ended.remove(&b.partition());
                        n += b.batch().len() as u64;
                        // Touch every value, as an application would.
                        let size: usize =
                            b.records().map(|r| r.value().map_or(0, <[u8]>::len)).sum();
                        bytes.fetch_add(size as u64, Ordering::Relaxed);
                        progress.store(n, Ordering::Relaxed);
                    }
                    Event::EndOfPartition { partition, .. } => {
                        ended.insert(partition);
                    }
                    _ => {}
                }
            }
            Ok(n)
        }
    })
    .await?;
    if outcome.messages != args.count as u64 {
        return Err(format!(
            "consume read {} of {} messages",
            outcome.messages, args.count
        ));
    }
    Ok(Outcome {
        bytes: bytes.load(Ordering::Relaxed),
        ..outcome
    })
}

async fn pipe(args: &Args, pipeline: Pipeline) -> Result<Outcome, String> {
    let progress = Arc::new(Progress::default());
    let outcome = measured("pipe", args.count as u64, progress, async move {
        let stats = pipeline.run().await.map_err(|e| e.to_string())?;
        if stats.records_out != stats.records_in {
            return Err(format!(
                "pipe wrote {} of {} records",
                stats.records_out, stats.records_in
            ));
        }
        Ok(stats.records_in)
    })
    .await?;
    if outcome.messages != args.count as u64 {
        return Err(format!(
            "pipe read {} of {} messages",
            outcome.messages, args.count
        ));
    }
    Ok(Outcome {
        bytes: (args.count * args.size) as u64,
        ..outcome
    })
}

/// The windowed pipeline: every record read once (the output is one record per window).
async fn pipe_window(args: &Args, pipeline: Pipeline) -> Result<Outcome, String> {
    let progress = Arc::new(Progress::default());
    let outcome = measured("pipe-window", args.count as u64, progress, async move {
        let stats = pipeline.run().await.map_err(|e| e.to_string())?;
        Ok(stats.records_in)
    })
    .await?;
    if outcome.messages != args.count as u64 {
        return Err(format!(
            "pipe-window read {} of {} messages",
            outcome.messages, args.count
        ));
    }
    Ok(Outcome {
        bytes: (args.count * args.size) as u64,
        ..outcome
    })
}

/// The exactly-once pipeline run by `--members` members of one group, all started at once;
/// each stops once its partitions are read to their end, and the group's partitions move to
/// those still running as members stop.
async fn pipe_eos(args: &Args, pipeline: Pipeline) -> Result<Outcome, String> {
    let progress = Arc::new(Progress::default());
    let name = format!(
        "pipe-eos ({} member{}, commit {} ms)",
        args.members,
        if args.members == 1 { "" } else { "s" },
        args.commit_interval_ms
    );
    let members = args.members;
    let outcome = measured(&name, args.count as u64, progress, async move {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..members {
            set.spawn(pipeline.clone().run());
        }
        let mut written = 0;
        while let Some(done) = set.join_next().await {
            let stats = done
                .map_err(|e| format!("a member failed: {e}"))?
                .map_err(|e| format!("a member failed: {e}"))?;
            written += stats.records_out;
        }
        Ok(written)
    })
    .await?;
    if outcome.messages < args.count as u64 {
        return Err(format!(
            "pipe-eos wrote {} of {} messages",
            outcome.messages, args.count
        ));
    }
    Ok(Outcome {
        messages: args.count as u64,
        bytes: (args.count * args.size) as u64,
        ..outcome
    })
}

fn table(results: &[Outcome]) -> String {
    let mut out = String::from(
        "\n| scenario | msgs/s | MB/s | client CPU s per M msgs | broker CPU s | p50 ms | p99 ms | p99.9 ms |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let (p50, p99, p999) = match r.latency_ms {
            Some((a, b, c)) => (format!("{a:.1}"), format!("{b:.1}"), format!("{c:.1}")),
            None => ("-".into(), "-".into(), "-".into()),
        };
        out += &format!(
            "| {} | {:.0} | {:.1} | {:.3} | {} | {p50} | {p99} | {p999} |\n",
            r.scenario,
            r.messages as f64 / r.seconds,
            r.bytes as f64 / r.seconds / 1e6,
            r.client_cpu * 1e6 / r.messages.max(1) as f64,
            r.broker_cpu.map_or("-".into(), |b| format!("{b:.2}")),
        );
    }
    out
}

fn json(args: &Args, where_: &str, results: &[Outcome]) -> String {
    let rows: Vec<String> = results
        .iter()
        .map(|r| {
            let (p50, p99, p999) = match r.latency_ms {
                Some((a, b, c)) => (format!("{a:.3}"), format!("{b:.3}"), format!("{c:.3}")),
                None => ("null".into(), "null".into(), "null".into()),
            };
            format!(
                "{{\"scenario\":\"{}\",\"messages\":{},\"seconds\":{:.4},\"msgs_per_sec\":{:.0},\"mb_per_sec\":{:.3},\"client_cpu_seconds\":{:.4},\"client_cpu_per_million\":{:.4},\"broker_cpu_seconds\":{},\"p50_ms\":{p50},\"p99_ms\":{p99},\"p999_ms\":{p999}}}",
                r.scenario,
                r.messages,
                r.seconds,
                r.messages as f64 / r.seconds,
                r.bytes as f64 / r.seconds / 1e6,
                r.client_cpu,
                r.client_cpu * 1e6 / r.messages.max(1) as f64,
                r.broker_cpu.map_or("null".into(), |b| format!("{b:.4}")),
            )
        })
        .collect();
    format!(
        "{{\"cluster\":\"{}\",\"count\":{},\"size\":{},\"codec\":\"{}\",\"linger_ms\":{},\"partitions\":{},\"results\":[{}]}}",
        where_.replace('"', "'"),
        args.count,
        args.size,
        args.codec,
        args.linger_ms,
        args.partitions,
        rows.join(",")
    )
}
