//! Running a pipeline: the source loop, the lanes, the acknowledgements and the commits.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Notify};

use super::{Batch, Chain, Guarantee, Partitioning, Pipeline, Sink, Stats};
use crate::config::ConfigError;
use crate::consumer::{Consumer, Event, IsolationLevel, Offset, PartitionBatch};
use crate::error::Error;
use crate::producer::{BatchDelivery, OffsetToCommit, Producer, Record};

type Tp = (Arc<str>, i32);

/// How far the output has been acknowledged.
#[derive(Default)]
struct Progress {
    /// Per source partition: the offset after the last input whose output is acknowledged.
    acked: HashMap<Tp, i64>,
    /// Inputs finished (acknowledged or failed).
    done: u64,
    records_out: u64,
    failed: Option<Error>,
}

struct Shared {
    progress: Mutex<Progress>,
    /// Something was acknowledged or failed.
    changed: Notify,
    /// Something failed.
    failure: Notify,
}

impl Shared {
    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
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

/// Where lanes write.
#[derive(Clone)]
struct Output {
    sink: Sink,
    producer: Option<Producer>,
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
        producer
            .transactional_id
            .get_or_insert_with(|| format!("spate-pipe-{group}"));
    } else {
        producer.transactional_id = None;
    }
    let grouped = consumer.group_id.is_some();
    let mut source = Consumer::new(consumer).await?;
    let topics: Vec<&str> = inputs.iter().map(String::as_str).collect();
    if grouped {
        source.subscribe(&topics)?;
    } else {
        source.assign_topics(&topics, Offset::Reset).await?;
    }
    let (producer, output) = match &sink {
        Sink::Topic(topic) => {
            let producer = Producer::new(producer).await?;
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
        producer: producer.clone(),
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
        shared,
        exactly_once,
        grouped,
        stats: Stats::default(),
        dispatched: 0,
        committed: HashMap::new(),
        in_transaction: false,
    };
    let result = driver
        .drive(&lane_txs, shutdown, commit_interval, stop_at_end)
        .await;
    let result = match result {
        Ok(()) => match driver.drain().await {
            Ok(()) => driver.commit().await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
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

fn missing(what: &str) -> Error {
    Error::Config(ConfigError::Missing {
        key: what.to_owned(),
        context: "to run a pipeline".to_owned(),
    })
}

struct Driver {
    source: Consumer,
    producer: Option<Producer>,
    shared: Arc<Shared>,
    exactly_once: bool,
    grouped: bool,
    stats: Stats,
    dispatched: u64,
    /// What was last committed, per partition.
    committed: HashMap<Tp, i64>,
    /// Records were handed to the sink since the transaction began.
    in_transaction: bool,
}

impl Driver {
    async fn drive(
        &mut self,
        lanes: &[mpsc::Sender<PartitionBatch>],
        shutdown: impl Future<Output = ()>,
        commit_interval: std::time::Duration,
        stop_at_end: bool,
    ) -> Result<(), Error> {
        let mut ticker = tokio::time::interval(commit_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut ended: HashSet<Tp> = HashSet::new();
        tokio::pin!(shutdown);
        let shared = self.shared.clone();
        loop {
            // Registered before the check, so a lane failing in between still wakes the loop
            // (it may be waiting for input that never comes).
            let failed = shared.failure.notified();
            tokio::pin!(failed);
            failed.as_mut().enable();
            if let Some(e) = self.shared.progress().failed.clone() {
                return Err(e);
            }
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = &mut failed => continue,
                _ = ticker.tick() => self.commit().await?,
                event = self.source.next() => match event? {
                    Event::Batch(batch) => {
                        let tp: Tp = (batch.topic_arc(), batch.partition());
                        ended.remove(&tp);
                        self.stats.batches += 1;
                        self.stats.records_in += batch.batch().len() as u64;
                        self.dispatched += 1;
                        self.in_transaction = true;
                        let lane = lane_of(&tp, lanes.len());
                        if lanes[lane].send(batch).await.is_err() {
                            // A lane stops only after reporting why.
                            let failed = self.shared.progress().failed.clone();
                            return Err(failed.unwrap_or(Error::ConsumerClosed));
                        }
                    }
                    Event::EndOfPartition { topic, partition, .. } => {
                        ended.insert((Arc::from(topic.as_str()), partition));
                        let assignment = self.source.assignment();
                        let all = !assignment.is_empty()
                            && assignment
                                .iter()
                                .all(|(t, p)| ended.contains(&(Arc::from(t.as_str()), *p)));
                        if stop_at_end && all {
                            return Ok(());
                        }
                    }
                    Event::Revoked(_) => {
                        // Commit what was written before the partitions go to another member.
                        self.drain().await?;
                        self.commit().await?;
                    }
                    Event::Lost(_) => {
                        // Fenced: a commit would be refused. Wait for what is in flight, and
                        // (exactly-once) abort it; the new owner starts from the last commit.
                        self.drain().await?;
                        if self.exactly_once && self.in_transaction {
                            self.abort_and_rewind().await?;
                        }
                    }
                    _ => {}
                },
            }
        }
    }

    /// Waits until every dispatched input is acknowledged (or one failed).
    async fn drain(&self) -> Result<(), Error> {
        loop {
            let changed = self.shared.changed.notified();
            {
                let p = self.shared.progress();
                if let Some(e) = &p.failed {
                    return Err(e.clone());
                }
                if p.done >= self.dispatched {
                    return Ok(());
                }
            }
            changed.await;
        }
    }

    /// Commits the acknowledged progress (at-least-once), or ends the transaction with the
    /// consumed offsets in it and begins the next (exactly-once).
    async fn commit(&mut self) -> Result<(), Error> {
        if self.exactly_once {
            if !self.in_transaction {
                return Ok(());
            }
            self.drain().await?;
        }
        let offsets: Vec<(Tp, i64)> = {
            let p = self.shared.progress();
            p.acked
                .iter()
                .filter(|(tp, o)| self.committed.get(*tp) != Some(o))
                .map(|(tp, o)| (tp.clone(), *o))
                .collect()
        };
        if self.exactly_once {
            let producer = self.producer.as_ref().expect("exactly-once has a producer");
            let group = self
                .source
                .group_metadata()
                .expect("exactly-once has a group");
            let to_commit: Vec<OffsetToCommit> = offsets
                .iter()
                .map(|((t, p), o)| OffsetToCommit {
                    topic: t.to_string(),
                    partition: *p,
                    offset: *o,
                    metadata: None,
                })
                .collect();
            let committed = async {
                if !to_commit.is_empty() {
                    producer
                        .send_offsets_to_transaction(&to_commit, &group)
                        .await?;
                }
                producer.commit_transaction().await
            }
            .await;
            if let Err(e) = committed {
                let _ = self.abort_and_rewind().await;
                return Err(e);
            }
            producer.begin_transaction()?;
            self.in_transaction = false;
        } else if self.grouped && !offsets.is_empty() {
            let list: Vec<(String, i32, i64)> = offsets
                .iter()
                .map(|((t, p), o)| (t.to_string(), *p, *o))
                .collect();
            self.source.commit_offsets(&list).await?;
        } else if offsets.is_empty() {
            return Ok(());
        }
        self.committed.extend(offsets);
        self.stats.commits += 1;
        Ok(())
    }

    /// Aborts the open transaction and moves every partition back to its last commit, so the
    /// aborted input is read again.
    async fn abort_and_rewind(&mut self) -> Result<(), Error> {
        let producer = self.producer.as_ref().expect("exactly-once has a producer");
        producer.abort_transaction().await?;
        let assignment = self.source.assignment();
        let list: Vec<(&str, i32)> = assignment.iter().map(|(t, p)| (t.as_str(), *p)).collect();
        for ((topic, partition), offset) in self.source.committed(&list).await? {
            let start = offset.map_or(Offset::Reset, Offset::At);
            self.source.seek(&topic, partition, start)?;
        }
        self.shared.progress().acked.clear();
        self.in_transaction = false;
        producer.begin_transaction()
    }
}

fn lane_of(tp: &Tp, lanes: usize) -> usize {
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
            Err(e) => {
                shared.fail(e);
                return;
            }
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
                    .as_ref()
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
                p.acked.insert(ack.tp, ack.next_offset);
                p.done += 1;
                p.records_out += ack.records;
                drop(p);
                shared.changed.notify_waiters();
            }
            Err(e) => {
                shared.fail(e);
                return;
            }
        }
    }
}
