//! Running a pipeline: the source loop, the lanes, the acknowledgements and the commits.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Notify};

use super::driver::{Driver, EndGate, Purge, Stop};
use super::stateful::{ensure_topic, LaneState, StateSpec, Step};
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
    /// Changelog records read back by windowed lanes.
    pub(super) restored: u64,
    /// Records windowed lanes dropped as late.
    pub(super) late: u64,
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

/// What the source loop hands a lane.
// Batches are the traffic and the other variants rare: boxing batches would cost an
// allocation each to save a few hundred bytes in a two-slot channel.
#[allow(clippy::large_enum_variant)]
pub(super) enum LaneInput {
    /// A batch of one of the lane's partitions.
    Batch(PartitionBatch),
    /// Drop the windowed state of these partitions (all for `None`): they left this member,
    /// or were rewound to their last commit. Their state is restored when they come back.
    Forget(Option<Vec<Tp>>),
    /// The end of bounded input: emit the windows still open of these partitions (the
    /// lane's share of the assignment; the state of one it has not read since it was
    /// assigned is restored first). Answered with one acknowledgement (that moves no offset).
    Finish(Vec<Tp>),
}

/// One input's way to the acknowledger: its output's deliveries, in order.
struct Ack {
    /// The input's partition and the offset after it (`None`: output of no input, the
    /// windows emitted at the end).
    progress: Option<(Tp, i64)>,
    records: u64,
    deliveries: Vec<BatchDelivery>,
    /// The consumed batch: holds its share of the consumer's buffer until written.
    _input: Option<PartitionBatch>,
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

impl Output {
    /// The producer of a topic sink (the current one: a fenced one is replaced).
    fn producer(&self) -> Producer {
        self.producer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .expect("a topic sink has a producer")
    }

    /// Where output of `input_partition` goes (`None`: the producer's partitioner).
    fn partition_for(&self, input_partition: i32) -> Option<i32> {
        match self.partitioning {
            Partitioning::SameAsInput => Some(input_partition % self.partitions),
            Partitioning::ByKey => None,
        }
    }
}

pub(super) async fn run(
    pipeline: Pipeline,
    shutdown: impl Future<Output = ()>,
) -> Result<Stats, Error> {
    if pipeline.windowed.as_ref().is_some_and(|w| w.repartition) {
        super::repartition::run(pipeline, shutdown).await
    } else {
        run_stage(pipeline, shutdown, None).await
    }
}

/// Runs a pipeline (a stage of a repartitioned one: [`super::repartition`]); with `end_at`,
/// `stop_at_end` waits for the gate's offsets too.
pub(super) async fn run_stage(
    pipeline: Pipeline,
    shutdown: impl Future<Output = ()>,
    end_at: Option<EndGate>,
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
        windowed,
        joined,
        purge,
    } = pipeline;
    let sink = sink.ok_or_else(|| missing("an output (to_topic or to_fn)"))?;
    if inputs.is_empty() {
        return Err(missing("input topics (from_topics)"));
    }
    let stateful = match (&windowed, &joined) {
        (Some(w), None) => Some(StateSpec::Windows(w.clone())),
        (None, Some(j)) => {
            if j.left == j.right {
                return Err(Error::Config(ConfigError::InvalidValue {
                    key: "join_streams".into(),
                    value: j.left.clone(),
                    reason: "a stream joined with itself is not supported: its two sides must \
                             be two topics"
                        .into(),
                }));
            }
            let mut sides = [j.left.as_str(), j.right.as_str()];
            let mut given: Vec<&str> = inputs.iter().map(String::as_str).collect();
            sides.sort_unstable();
            given.sort_unstable();
            if given != sides {
                return Err(Error::Config(ConfigError::InvalidValue {
                    key: "input topics".into(),
                    value: inputs.join(","),
                    reason: format!("a join reads its two sides, {} and {}", j.left, j.right),
                }));
            }
            Some(StateSpec::Join(j.clone()))
        }
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(Error::Config(ConfigError::InvalidValue {
                key: "windowed".into(),
                value: "with join_streams".into(),
                reason: "a pipeline either aggregates in windows or joins streams".into(),
            }))
        }
    };
    if stateful.is_some() && !matches!(sink, Sink::Topic(_)) {
        return Err(missing(
            "an output topic (to_topic) for a stateful pipeline",
        ));
    }
    if let Some(w) = &windowed {
        w.validate().map_err(|e| {
            Error::Config(ConfigError::InvalidValue {
                key: "window".into(),
                value: format!("{:?}", w.window),
                reason: e,
            })
        })?;
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
    if stateful.is_some() && inputs.len() > 1 {
        // One state per task (partition `p` of every input): the group must give a member
        // partition `p` of every input together, as Kafka's range assignor does for inputs
        // with as many partitions each (Kafka Streams' co-partitioning).
        consumer.assignors = vec!["range".into()];
        consumer.group_remote_assignor = Some("range".into());
    }
    let grouped = consumer.group_id.is_some();
    let consumer_group = consumer.group_id.clone();
    // A windowed lane reads its changelog back with the same connection settings (and, under
    // exactly-once, read_committed).
    let restore_config = consumer.clone();
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
    // Windowed: the changelog, with a partition per input partition.
    let changelog: Option<Arc<str>> = match (&stateful, &producer) {
        (Some(w), Some(p)) => {
            let application =
                match (w.application(), &consumer_group) {
                    (Some(a), _) => a.to_owned(),
                    (None, Some(g)) => g.clone(),
                    (None, None) => return Err(missing(
                        "group.id or an application id (it names a stateful pipeline's changelog)",
                    )),
                };
            let topic = super::state::changelog_topic(&application, w.store());
            let partitions = co_partitioned(p, &inputs).await?;
            ensure_topic(p.client(), &topic, partitions, "compact").await?;
            if let Some(late_to) = w.late_to() {
                // The side topic must exist, as the output must: found now, not at the first
                // late record.
                p.partition_count(late_to).await?;
            }
            Some(Arc::from(topic.as_str()))
        }
        _ => None,
    };
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
    // Changelogs are read back on connections of their own: on the source's, every request
    // would wait behind its long-polling fetches (a broker answers a connection's requests in
    // order).
    let restore_client = match &changelog {
        Some(_) => Some(crate::cluster::Client::connect(restore_config.client.clone()).await?),
        None => None,
    };
    let mut lane_txs = Vec::with_capacity(lanes);
    let mut lane_tasks = Vec::with_capacity(lanes);
    for _ in 0..lanes {
        let (tx, rx) = mpsc::channel(2);
        lane_txs.push(tx);
        let state = match (&stateful, &changelog, &restore_client) {
            (Some(w), Some(topic), Some(client)) => {
                Some(w.lane(topic.clone(), client.clone(), restore_config.clone()))
            }
            _ => None,
        };
        lane_tasks.push(tokio::spawn(lane(
            rx,
            chain(),
            output.clone(),
            ack_tx.clone(),
            shared.clone(),
            state,
        )));
    }
    drop(ack_tx);

    let mut driver = Driver {
        lanes: lane_txs,
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
        ended: HashMap::new(),
        end_at,
        by_task: changelog.is_some(),
        purge: purge.map(|(topic, every)| Purge {
            topic: Arc::from(topic.as_str()),
            every,
            last: std::time::Instant::now(),
        }),
    };
    tokio::pin!(shutdown);
    let result = loop {
        let stop = match driver
            .drive(shutdown.as_mut(), commit_interval, stop_at_end)
            .await
        {
            Ok(stop) => stop,
            Err(e) => break Err(e),
        };
        if stop == Stop::End && changelog.is_some() {
            // Bounded input: the windows still open are emitted, and committed with the rest.
            if let Err(e) = driver.finish_lanes().await {
                break Err(e);
            }
        }
        // The last commit: everything handed to the sink or, after a failure the pipeline
        // recovers from, nothing since the last commit, which is then read again.
        driver.settle_or_fail().await;
        let aborts = driver.stats.aborts;
        match driver.commit().await {
            Ok(()) if stop == Stop::End && driver.stats.aborts > aborts => continue,
            result => break result,
        }
    };
    drop(std::mem::take(&mut driver.lanes));
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
    let progress = driver.shared.progress();
    stats.records_out = progress.records_out;
    stats.restored = progress.restored;
    stats.late = progress.late;
    Ok(stats)
}

/// The partition count of a stateful pipeline's inputs, which must all have as many (partition
/// `p` of each is one task, with one state: Kafka Streams' co-partitioning).
async fn co_partitioned(producer: &Producer, inputs: &[String]) -> Result<i32, Error> {
    let mut counts = Vec::with_capacity(inputs.len());
    for input in inputs {
        counts.push((input, producer.partition_count(input).await?));
    }
    let partitions = counts.first().map_or(1, |c| c.1);
    if counts.iter().any(|c| c.1 != partitions) {
        let listed: Vec<String> = counts.iter().map(|(t, n)| format!("{t}: {n}")).collect();
        return Err(Error::Config(ConfigError::InvalidValue {
            key: "input topics".into(),
            value: listed.join(", "),
            reason: "the inputs of a stateful pipeline must have as many partitions each \
                     (partition p of every input is one state)"
                .into(),
        }));
    }
    Ok(partitions)
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

pub(super) fn missing(what: &str) -> Error {
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

/// A lane: runs the chain over its partitions' batches and hands the output to the sink
/// (through the windows, for a windowed pipeline).
async fn lane(
    mut rx: mpsc::Receiver<LaneInput>,
    mut chain: Chain,
    output: Output,
    acks: mpsc::Sender<Ack>,
    shared: Arc<Shared>,
    mut state: Option<LaneState>,
) {
    let mut out = Vec::new();
    while let Some(input) = rx.recv().await {
        let mut input = match input {
            LaneInput::Batch(batch) => batch,
            LaneInput::Forget(tps) => {
                if let Some(state) = &mut state {
                    state.forget(tps.as_deref());
                }
                continue;
            }
            LaneInput::Finish(tps) => {
                let written = match &mut state {
                    Some(state) => match state.finish(&tps).await {
                        Ok((steps, restored)) => {
                            shared.progress().restored += restored;
                            write_steps(&output, state.changelog(), state.late_to(), &steps).await
                        }
                        Err(e) => Err(e),
                    },
                    None => Ok((Vec::new(), 0)),
                };
                let ack = written.map(|(deliveries, records)| Ack {
                    progress: None,
                    records,
                    deliveries,
                    _input: None,
                });
                match ack {
                    Ok(ack) => {
                        if acks.send(ack).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => shared.fail(e),
                }
                continue;
            }
        };
        let tp: Tp = (input.topic_arc(), input.partition());
        let next_offset = input.next_offset();
        let batch = Batch::new(tp.0.clone(), tp.1, input.take_batch());
        out.clear();
        let written = match (chain.run(batch, &mut out), &mut state) {
            (Ok(()), None) => write(&output, &out).await,
            (Ok(()), Some(state)) => match state.push(&tp, &out).await {
                Ok(step) => {
                    {
                        let mut p = shared.progress();
                        p.restored += step.restored;
                        p.late += step.late;
                    }
                    if step.skipped > 0 {
                        tracing::debug!(topic = %tp.0, partition = tp.1, skipped = step.skipped, "records without the key, time or value field");
                    }
                    let steps = [(tp.1, step)];
                    write_steps(&output, state.changelog(), state.late_to(), &steps).await
                }
                Err(e) => Err(e),
            },
            (Err(e), _) => Err(e),
        };
        match written {
            Ok((deliveries, records)) => {
                let ack = Ack {
                    progress: Some((tp, next_offset)),
                    records,
                    deliveries,
                    _input: Some(input),
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
                let producer = output.producer();
                let partition = output.partition_for(batch.partition());
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

/// Writes windowed steps: each partition's closed windows to the output, its late records to
/// `late_to` (partitioned by key), its state changes to its changelog partition. Returns the
/// deliveries and the output record count.
async fn write_steps(
    output: &Output,
    changelog: &str,
    late_to: Option<&str>,
    steps: &[(i32, Step)],
) -> Result<(Vec<BatchDelivery>, u64), Error> {
    let Sink::Topic(topic) = &output.sink else {
        return Err(missing(
            "an output topic (to_topic) for a stateful pipeline",
        ));
    };
    let producer = output.producer();
    let mut deliveries = Vec::new();
    let mut records = 0u64;
    for (task, step) in steps {
        if !step.output.is_empty() {
            let partition = output.partition_for(*task);
            records += step.output.len() as u64;
            // Collected first: an iterator with a closure held across the await would not be
            // `Send` for every lifetime.
            let batch: Vec<Record<'_>> = step
                .output
                .iter()
                .map(|(key, value, timestamp)| Record {
                    topic,
                    partition,
                    key: Some(key),
                    value: Some(value),
                    headers: Vec::new(),
                    timestamp: Some(*timestamp),
                })
                .collect();
            deliveries.push(producer.send_batch(topic, batch).await?);
        }
        if let (Some(late_to), false) = (late_to, step.late_records.is_empty()) {
            let batch: Vec<Record<'_>> = step
                .late_records
                .iter()
                .map(|r| Record {
                    topic: late_to,
                    partition: None,
                    key: r.key.as_deref(),
                    value: r.value.as_deref(),
                    headers: r
                        .headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_deref()))
                        .collect(),
                    timestamp: Some(r.timestamp),
                })
                .collect();
            deliveries.push(producer.send_batch(late_to, batch).await?);
        }
        if !step.changes.is_empty() {
            let batch: Vec<Record<'_>> = step
                .changes
                .iter()
                .map(|(key, value)| Record {
                    topic: changelog,
                    partition: Some(*task),
                    key: Some(key),
                    value: value.as_deref(),
                    headers: Vec::new(),
                    timestamp: None,
                })
                .collect();
            deliveries.push(producer.send_batch(changelog, batch).await?);
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
                if let (None, Some((tp, next_offset))) = (&p.failed, ack.progress) {
                    p.acked.insert(tp, next_offset);
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
