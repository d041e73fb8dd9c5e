//! Running a pipeline: the source loop, the lanes, the acknowledgements and the commits.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Notify};

use super::driver::{Driver, Stop};
use super::{Batch, Chain, Guarantee, Partitioning, Pipeline, Sink, Stats};
use crate::config::ConfigError;
use crate::consumer::{Consumer, IsolationLevel, Offset, PartitionBatch};
use crate::error::Error;
use crate::producer::{BatchDelivery, Producer, Record};

pub(super) type Tp = (Arc<str>, i32);

/// How far the output has been acknowledged.
#[derive(Default)]
pub(super) struct Progress {
    /// Per source partition: the offset after the last input whose output is acknowledged.
    pub(super) acked: HashMap<Tp, i64>,
    /// Inputs finished (acknowledged or failed).
    pub(super) done: u64,
    pub(super) records_out: u64,
    /// The first failure since the driver last cleared it. Lanes go on after a failure (the
    /// driver decides whether the pipeline can), but nothing acknowledged after it counts.
    pub(super) failed: Option<Error>,
}

pub(super) struct Shared {
    progress: Mutex<Progress>,
    /// Something was acknowledged or failed.
    pub(super) changed: Notify,
    /// Something failed.
    pub(super) failure: Notify,
}

impl Shared {
    pub(super) fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail(&self, error: Error) {
        let mut p = self.progress();
        p.done += 1;
        p.failed.get_or_insert(error);
        drop(p);
        self.changed.notify_waiters();
        self.failure.notify_waiters();
    }
}

/// One input's way to the acknowledger: its output's deliveries, in order.
struct Ack {
    tp: Tp,
    next_offset: i64,
    records: u64,
    deliveries: Vec<BatchDelivery>,
    /// The consumed batch: holds its share of the consumer's buffer until written.
    _input: PartitionBatch,
}

/// The producer lanes write with: replaced when a fenced one is recreated.
pub(super) type ProducerSlot = Arc<Mutex<Option<Producer>>>;

/// Where lanes write.
#[derive(Clone)]
struct Output {
    sink: Sink,
    producer: ProducerSlot,
    partitioning: Partitioning,
    partitions: i32,
}

pub(super) async fn run(
    pipeline: Pipeline,
    shutdown: impl Future<Output = ()>,
) -> Result<Stats, Error> {
    let Pipeline {
        mut consumer,
        mut producer,
        inputs,
        sink,
        chain,
        lanes,
        guarantee,
        partitioning,
        commit_interval,
        stop_at_end,
    } = pipeline;
    let sink = sink.ok_or_else(|| missing("an output (to_topic or to_fn)"))?;
    if inputs.is_empty() {
        return Err(missing("input topics (from_topics)"));
    }
    let exactly_once = guarantee == Guarantee::ExactlyOnce;
    // The pipeline commits what the sink acknowledged, never the consumer's positions.
    consumer.enable_auto_commit = false;
    if exactly_once {
        let group = consumer
            .group_id
            .clone()
            .ok_or_else(|| missing("group.id (exactly-once commits offsets in transactions)"))?;
        consumer.isolation_level = IsolationLevel::ReadCommitted;
        producer.transactional_id = Some(member_transactional_id(
            producer.transactional_id.as_deref(),
            &group,
            consumer.group_instance_id.as_deref(),
        ));
    } else {
        producer.transactional_id = None;
    }
    let grouped = consumer.group_id.is_some();
    let consumer_is_static = consumer.group_instance_id.is_some();
    let mut source = Consumer::new(consumer).await?;
    let topics: Vec<&str> = inputs.iter().map(String::as_str).collect();
    if grouped {
        source.subscribe(&topics)?;
    } else {
        source.assign_topics(&topics, Offset::Reset).await?;
    }
    let producer_config = producer;
    let (producer, output) = match &sink {
        Sink::Topic(topic) => {
            let producer = Producer::new(producer_config.clone()).await?;
            let partitions = producer.partition_count(topic).await?;
            (Some(producer), Some(partitions))
        }
        Sink::Fn(_) => (None, None),
    };
    if exactly_once {
        let p = producer
            .as_ref()
            .ok_or_else(|| missing("an output topic for exactly-once"))?;
        p.init_transactions().await?;
        p.begin_transaction()?;
    }
    let output = Output {
        sink,
        producer: Arc::new(Mutex::new(producer.clone())),
        partitioning,
        partitions: output.unwrap_or(1),
    };
    let shared = Arc::new(Shared {
        progress: Mutex::default(),
        changed: Notify::new(),
        failure: Notify::new(),
    });
    let (ack_tx, ack_rx) = mpsc::channel(64);
    let acker = tokio::spawn(acknowledge(ack_rx, shared.clone()));
    let mut lane_txs = Vec::with_capacity(lanes);
    let mut lane_tasks = Vec::with_capacity(lanes);
    for _ in 0..lanes {
        let (tx, rx) = mpsc::channel(2);
        lane_txs.push(tx);
        lane_tasks.push(tokio::spawn(lane(
            rx,
            chain(),
            output.clone(),
            ack_tx.clone(),
            shared.clone(),
        )));
    }
    drop(ack_tx);

    let mut driver = Driver {
        source,
        producer,
        slot: output.producer.clone(),
        producer_config,
        static_member: consumer_is_static,
        shared,
        exactly_once,
        grouped,
        stats: Stats::default(),
        dispatched: 0,
        committed: HashMap::new(),
        in_transaction: false,
        failed_in_a_row: 0,
        ended: HashSet::new(),
    };
    tokio::pin!(shutdown);
    let result = loop {
        let stop = match driver
            .drive(&lane_txs, shutdown.as_mut(), commit_interval, stop_at_end)
            .await
        {
            Ok(stop) => stop,
            Err(e) => break Err(e),
        };
        // The last commit: everything handed to the sink or, after a failure the pipeline
        // recovers from, nothing since the last commit, which is then read again.
        driver.settle_or_fail().await;
        let aborts = driver.stats.aborts;
        match driver.commit().await {
            Ok(()) if stop == Stop::End && driver.stats.aborts > aborts => continue,
            result => break result,
        }
    };
    drop(lane_txs);
    for task in lane_tasks {
        let _ = task.await;
    }
    let _ = acker.await;
    if result.is_err() && driver.exactly_once && driver.in_transaction {
        if let Some(p) = &driver.producer {
            let _ = p.abort_transaction().await;
        }
    }
    let closed = match &driver.producer {
        Some(p) => p.close().await,
        None => Ok(()),
    };
    let left = driver.source.close().await;
    result?;
    closed?;
    left?;
    let mut stats = driver.stats;
    stats.records_out = driver.shared.progress().records_out;
    Ok(stats)
}

/// Each member of an exactly-once pipeline needs its own `transactional.id`: since KIP-447 the
/// group generation fences zombies, so the id only has to be unique and, for a static member,
/// stable. It is `<prefix>-<group.instance.id>` for a static member (a restarted member fences
/// and aborts what its previous incarnation left open) and `<prefix>-<random>` otherwise. The
/// prefix is the configured `transactional.id`, or `spate-pipe-<group>`.
pub(super) fn member_transactional_id(
    prefix: Option<&str>,
    group: &str,
    instance: Option<&str>,
) -> String {
    let prefix = match prefix {
        Some(p) => p.to_owned(),
        None => format!("spate-pipe-{group}"),
    };
    match instance {
        Some(instance) => format!("{prefix}-{instance}"),
        None => format!("{prefix}-{}", random_suffix()),
    }
}

/// 64 random bits in hex (std's per-process hash keys, mixed with the time and process id).
fn random_suffix() -> String {
    use std::hash::BuildHasher;
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    std::time::SystemTime::now().hash(&mut h);
    std::process::id().hash(&mut h);
    format!("{:016x}", h.finish())
}

fn missing(what: &str) -> Error {
    Error::Config(ConfigError::Missing {
        key: what.to_owned(),
        context: "to run a pipeline".to_owned(),
    })
}

pub(super) fn lane_of(tp: &Tp, lanes: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tp.hash(&mut h);
    (h.finish() % lanes as u64) as usize
}

/// A lane: runs the chain over its partitions' batches and hands the output to the sink.
async fn lane(
    mut rx: mpsc::Receiver<PartitionBatch>,
    mut chain: Chain,
    output: Output,
    acks: mpsc::Sender<Ack>,
    shared: Arc<Shared>,
) {
    let mut out = Vec::new();
    while let Some(mut input) = rx.recv().await {
        let tp: Tp = (input.topic_arc(), input.partition());
        let next_offset = input.next_offset();
        let batch = Batch::new(tp.0.clone(), tp.1, input.take_batch());
        out.clear();
        let written = match chain.run(batch, &mut out) {
            Ok(()) => write(&output, &out).await,
            Err(e) => Err(e),
        };
        match written {
            Ok((deliveries, records)) => {
                let ack = Ack {
                    tp,
                    next_offset,
                    records,
                    deliveries,
                    _input: input,
                };
                if acks.send(ack).await.is_err() {
                    return;
                }
            }
            // Counted as done; the driver decides whether the pipeline goes on.
            Err(e) => shared.fail(e),
        }
    }
}

/// Writes a lane's output batches; returns their deliveries and record count.
async fn write(output: &Output, batches: &[Batch]) -> Result<(Vec<BatchDelivery>, u64), Error> {
    let mut deliveries = Vec::new();
    let mut records = 0u64;
    for batch in batches {
        records += batch.len() as u64;
        match &output.sink {
            Sink::Fn(f) => f(batch)?,
            Sink::Topic(topic) => {
                let producer = output
                    .producer
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .expect("a topic sink has a producer");
                let partition = match output.partitioning {
                    Partitioning::SameAsInput => Some(batch.partition() % output.partitions),
                    Partitioning::ByKey => None,
                };
                let rows = batch.selected().map(|row| Record {
                    topic,
                    partition,
                    key: batch.key(row),
                    value: batch.value(row),
                    // Header keys are UTF-8 in Kafka's API; others cannot be written.
                    headers: batch
                        .headers(row)
                        .filter_map(|(k, v)| Some((std::str::from_utf8(k).ok()?, v)))
                        .collect(),
                    timestamp: Some(batch.timestamp(row)),
                });
                deliveries.push(producer.send_batch(topic, rows).await?);
            }
        }
    }
    Ok((deliveries, records))
}

/// Awaits each input's deliveries in order and records the progress.
async fn acknowledge(mut rx: mpsc::Receiver<Ack>, shared: Arc<Shared>) {
    while let Some(ack) = rx.recv().await {
        let mut result = Ok(());
        for delivery in ack.deliveries {
            if let Err(e) = delivery.wait().await {
                result = Err(e);
                break;
            }
        }
        match result {
            Ok(()) => {
                let mut p = shared.progress();
                // After a failure nothing counts as acknowledged until the driver has dealt
                // with it: a later input of the failed one's partition must not move past it.
                if p.failed.is_none() {
                    p.acked.insert(ack.tp, ack.next_offset);
                }
                p.done += 1;
                p.records_out += ack.records;
                drop(p);
                shared.changed.notify_waiters();
            }
            Err(e) => shared.fail(e),
        }
    }
}
