//! Windowed aggregation inside a pipeline ([`Pipeline::windowed`](super::Pipeline::windowed)):
//! each lane keeps one [`WindowedAggregator`] per input partition it reads, logs every change
//! to the partition's changelog, and writes the windows the watermark closes to the output.
//!
//! - **Changelog**: the compacted topic `<application>-<store>-changelog`, created if missing
//!   with as many partitions as the input, partition `p` holding input partition `p`'s state
//!   ([`super::window_log`] describes the records). A batch's output, its changelog records
//!   and (through the acknowledgements) its offsets go together: under exactly-once in one
//!   transaction, so state, output and input position always agree; under at-least-once the
//!   offsets are committed after both are acknowledged (after a crash, state may be ahead of
//!   the offsets, and replayed input counted twice, as in Kafka Streams).
//! - **Restore**: a lane meets a partition it holds no state for (first assignment, a
//!   partition back after a rebalance, or every partition after an aborted transaction) and
//!   rebuilds its state from the changelog, read to its end (read_committed under
//!   exactly-once), before it processes the partition's input. Restores are logged with the
//!   records read, and counted in [`Stats::restored`](super::Stats::restored).
//! - **End of input** (`stop_at_end`): windows still open are emitted, as Flink does at the
//!   end of bounded input.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::event_time::{extract_tagged, result_json, AggregateSpec, EventTime, KeySource};
use super::run::Tp;
use super::state::{changelog_topic, Change, StoreError};
use super::stream_join::JoinLane;
use super::window::{WindowResult, WindowSpec, WindowedAggregator};
use super::Batch;
use crate::cluster::{Client, NewTopic, OffsetSpec};
use crate::consumer::{Consumer, ConsumerConfig, Event, IsolationLevel, Offset};
use crate::error::Error;

/// When windows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Emit {
    /// Once, when the watermark closes the window (or at the end of bounded input).
    #[default]
    Final,
    /// On every change: after each batch, the new value of each window it changed (the last
    /// one a window gets is its final value). Tumbling and hopping windows only.
    Updates,
}

/// A windowed aggregation: what to group by, which time, which windows, what to compute.
#[derive(Debug, Clone)]
pub struct Windowed {
    /// The application id: names the changelog (default: the group id).
    pub application: Option<String>,
    /// The store's name in the changelog topic's (default `windows`).
    pub store: String,
    /// The grouping key.
    pub key: KeySource,
    /// The event time.
    pub time: EventTime,
    /// The windows.
    pub window: WindowSpec,
    /// The aggregate and the field it reads.
    pub aggregate: AggregateSpec,
    /// Allowed lateness in milliseconds: the watermark is the largest event time seen minus
    /// this.
    pub lateness: i64,
    /// When windows are written.
    pub emit: Emit,
    /// Where records dropped as late go (as they left the operators), in the same
    /// transaction as the output; `None`: only counted.
    pub late_to: Option<String>,
    /// The most windows (or sessions) one input partition may hold open: the state's memory
    /// bound (each costs its key and about a hundred bytes). Input that would open more (a
    /// flood of distinct keys, event times far apart) stops the pipeline with an error
    /// rather than exhausting memory. Default 10,000,000.
    pub max_open_windows: usize,
    /// Re-key the input through a repartition topic first, so every record of a key reaches
    /// one partition's state whatever partitioned the input ([`super::repartition`]).
    pub repartition: bool,
    /// With `repartition`: how often the repartition records already consumed and committed
    /// are deleted (DeleteRecords up to the committed offsets), as Kafka Streams'
    /// `repartition.purge.interval.ms`; `None`: never (the topic's retention applies).
    /// Default 30 s.
    pub purge_interval: Option<std::time::Duration>,
}

impl Windowed {
    /// Windows of `window` over `key`, at `time`, computing `aggregate`, no lateness.
    pub fn new(
        key: KeySource,
        time: EventTime,
        window: WindowSpec,
        aggregate: AggregateSpec,
    ) -> Self {
        Windowed {
            application: None,
            store: "windows".into(),
            key,
            time,
            window,
            aggregate,
            lateness: 0,
            emit: Emit::Final,
            late_to: None,
            max_open_windows: 10_000_000,
            repartition: false,
            purge_interval: Some(std::time::Duration::from_secs(30)),
        }
    }

    /// Re-keys the input through the repartition topic `<application>-<store>-repartition`
    /// first: for input not partitioned by the grouping key ([`super::repartition`]).
    pub fn repartition(mut self) -> Self {
        self.repartition = true;
        self
    }

    /// How often consumed repartition records are deleted (see the field).
    pub fn purge_interval(mut self, interval: Option<std::time::Duration>) -> Self {
        self.purge_interval = interval;
        self
    }

    /// The most windows one input partition may hold open (see the field).
    pub fn max_open_windows(mut self, n: usize) -> Self {
        self.max_open_windows = n.max(1);
        self
    }

    /// Sends records dropped as late to `topic` (a side output) instead of only counting them.
    pub fn late_to(mut self, topic: &str) -> Self {
        self.late_to = Some(topic.to_owned());
        self
    }

    /// When windows are written.
    pub fn emit(mut self, emit: Emit) -> Self {
        self.emit = emit;
        self
    }

    /// Checks the windows, and that they can emit as asked.
    pub fn validate(&self) -> Result<(), String> {
        self.window.validate()?;
        if self.emit == Emit::Updates {
            WindowedAggregator::new(self.window, self.aggregate.aggregate.clone(), 0).updates()?;
        }
        Ok(())
    }

    /// The allowed lateness (ms).
    pub fn lateness(mut self, ms: i64) -> Self {
        self.lateness = ms.max(0);
        self
    }

    /// The changelog topic, for the application id or else `group`.
    pub fn changelog(&self, group: &str) -> String {
        changelog_topic(self.application.as_deref().unwrap_or(group), &self.store)
    }
}

/// Creates a pipeline's own topic (a changelog: `compact`; a repartition topic: `delete`)
/// unless it exists.
pub(super) async fn ensure_topic(
    client: &Client,
    topic: &str,
    partitions: i32,
    cleanup_policy: &str,
) -> Result<(), Error> {
    let mut new = NewTopic::new(topic, partitions, -1);
    new.configs
        .push(("cleanup.policy".into(), cleanup_policy.into()));
    match client.create_topics(&[new]).await {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some(crate::error::KafkaCode(36)) => Ok(()), // TOPIC_ALREADY_EXISTS
        Err(e) => Err(e),
    }
}

/// A stateful pipeline's state: windows or a join.
#[derive(Clone)]
pub(super) enum StateSpec {
    Windows(Arc<Windowed>),
    Join(Arc<super::stream_join::StreamJoin>),
}

impl StateSpec {
    pub(super) fn application(&self) -> Option<&str> {
        match self {
            StateSpec::Windows(w) => w.application.as_deref(),
            StateSpec::Join(j) => j.application.as_deref(),
        }
    }

    pub(super) fn store(&self) -> &str {
        match self {
            StateSpec::Windows(w) => &w.store,
            StateSpec::Join(j) => &j.store,
        }
    }

    pub(super) fn late_to(&self) -> Option<&str> {
        match self {
            StateSpec::Windows(w) => w.late_to.as_deref(),
            StateSpec::Join(j) => j.late_to.as_deref(),
        }
    }

    /// A lane's state for it.
    pub(super) fn lane(
        &self,
        changelog: Arc<str>,
        client: Client,
        restore_config: ConsumerConfig,
    ) -> LaneState {
        match self {
            StateSpec::Windows(w) => LaneState::Windows(WindowLane::new(
                w.clone(),
                changelog,
                client,
                restore_config,
            )),
            StateSpec::Join(j) => {
                LaneState::Join(JoinLane::new(j.clone(), changelog, client, restore_config))
            }
        }
    }
}

/// What one lane of a stateful pipeline holds.
pub(super) enum LaneState {
    Windows(WindowLane),
    Join(JoinLane),
}

impl LaneState {
    pub(super) fn changelog(&self) -> &Arc<str> {
        match self {
            LaneState::Windows(w) => w.changelog(),
            LaneState::Join(j) => j.changelog(),
        }
    }

    /// The side topic for late records, if any.
    pub(super) fn late_to(&self) -> Option<&str> {
        match self {
            LaneState::Windows(w) => w.late_to(),
            LaneState::Join(j) => j.late_to(),
        }
    }

    /// Drops the state of the tasks of `tps` (all of it for `None`): it is rebuilt from the
    /// changelog when their input comes again.
    pub(super) fn forget(&mut self, tps: Option<&[Tp]>) {
        match self {
            LaneState::Windows(w) => w.forget(tps),
            LaneState::Join(j) => j.forget(tps),
        }
    }

    /// Processes the chain's output for one input batch of `tp`.
    pub(super) async fn push(&mut self, tp: &Tp, batches: &[Batch]) -> Result<Step, Error> {
        match self {
            LaneState::Windows(w) => w.push(tp, batches).await,
            LaneState::Join(j) => j.push(tp, batches).await,
        }
    }

    /// The end of bounded input for the tasks of `tps`; and the changelog records read back.
    pub(super) async fn finish(&mut self, tps: &[Tp]) -> Result<(Vec<(i32, Step)>, u64), Error> {
        match self {
            LaneState::Windows(w) => w.finish(tps).await,
            LaneState::Join(j) => j.finish(tps).await,
        }
    }
}

/// What one lane of a windowed pipeline holds: its tasks' aggregators.
pub(super) struct WindowLane {
    spec: Arc<Windowed>,
    changelog: Arc<str>,
    /// The changelog's reader: connections of its own, not the source's.
    client: Client,
    /// How the changelog is read back (no group; read_committed under exactly-once).
    restore_config: ConsumerConfig,
    /// Per task: input partition `p` of every input topic (co-partitioned).
    partitions: HashMap<i32, WindowedAggregator>,
    scratch: Vec<(Vec<u8>, i64, f64)>,
}

/// An output record: key, value, timestamp.
pub(super) type OutputRecord = (Vec<u8>, Vec<u8>, i64);

/// One task's output and changelog records for one step.
pub(super) struct Step {
    pub output: Vec<OutputRecord>,
    pub changes: Vec<Change>,
    /// Changelog records read back before this step (0 if the state was held).
    pub restored: u64,
    /// Records skipped because a field was missing or not a number.
    pub skipped: usize,
    /// Records dropped as late (no window of theirs was still open).
    pub late: u64,
    /// Those records, for the side topic ([`Windowed::late_to`]; empty without it).
    pub late_records: Vec<LateRecord>,
}

/// A record dropped as late, as it left the operators.
pub(super) struct LateRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Headers with UTF-8 keys (Kafka's API cannot write others).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: i64,
}

impl LateRecord {
    pub(super) fn of(batch: &Batch, row: usize) -> Self {
        LateRecord {
            key: batch.key(row).map(<[u8]>::to_vec),
            value: batch.value(row).map(<[u8]>::to_vec),
            headers: batch
                .headers(row)
                .filter_map(|(k, v)| {
                    Some((
                        std::str::from_utf8(k).ok()?.to_owned(),
                        v.map(<[u8]>::to_vec),
                    ))
                })
                .collect(),
            timestamp: batch.timestamp(row),
        }
    }
}

impl WindowLane {
    pub(super) fn new(
        spec: Arc<Windowed>,
        changelog: Arc<str>,
        client: Client,
        restore_config: ConsumerConfig,
    ) -> Self {
        WindowLane {
            spec,
            changelog,
            client,
            restore_config,
            partitions: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    pub(super) fn changelog(&self) -> &Arc<str> {
        &self.changelog
    }

    /// The side topic for late records, if any.
    pub(super) fn late_to(&self) -> Option<&str> {
        self.spec.late_to.as_deref()
    }

    fn fresh(&self) -> WindowedAggregator {
        let agg = &self.spec.aggregate.aggregate;
        let w = WindowedAggregator::new(self.spec.window, agg.clone(), self.spec.lateness).logged();
        let w = match self.spec.emit {
            // Checked when the pipeline starts (Windowed::validate).
            Emit::Updates => w.updates().unwrap_or_else(|_| {
                WindowedAggregator::new(self.spec.window, agg.clone(), self.spec.lateness).logged()
            }),
            Emit::Final => w,
        };
        if self.spec.late_to.is_some() {
            w.keep_late()
        } else {
            w
        }
    }

    /// Drops the state of the tasks of `tps` (all of it for `None`): it is rebuilt from the
    /// changelog when their input comes again.
    pub(super) fn forget(&mut self, tps: Option<&[Tp]>) {
        match tps {
            None => self.partitions.clear(),
            Some(tps) => {
                for tp in tps {
                    self.partitions.remove(&tp.1);
                }
            }
        }
    }

    /// The aggregator of task `partition`, restored from the changelog if this lane holds
    /// none.
    async fn aggregator(
        &mut self,
        partition: i32,
    ) -> Result<(&mut WindowedAggregator, u64), Error> {
        let mut restored = 0;
        if !self.partitions.contains_key(&partition) {
            let mut agg = self.fresh();
            restored = self
                .restorer()
                .read(partition, |key, value| agg.restore(key, value))
                .await?;
            tracing::info!(changelog = %self.changelog, partition, open_windows = agg.open(), "windows restored");
            // What restoring applied is the changelog already.
            agg.take_changes();
            self.partitions.insert(partition, agg);
        }
        Ok((
            self.partitions.get_mut(&partition).expect("inserted"),
            restored,
        ))
    }

    fn restorer(&self) -> Restorer<'_> {
        Restorer {
            client: &self.client,
            config: &self.restore_config,
            changelog: &self.changelog,
        }
    }

    /// Aggregates one batch of `tp`'s input (the chain's output for it).
    pub(super) async fn push(&mut self, tp: &Tp, batches: &[Batch]) -> Result<Step, Error> {
        let spec = self.spec.clone();
        let mut rows = std::mem::take(&mut self.scratch);
        rows.clear();
        // Where each row came from (batch, row): only needed to send late records aside.
        let mut origins: Vec<(usize, usize)> = Vec::new();
        let mut skipped = 0;
        for (b, batch) in batches.iter().enumerate() {
            let selected = batch.selected().map(|row| {
                (
                    (b, row),
                    batch.key(row),
                    batch.value(row),
                    batch.timestamp(row),
                )
            });
            skipped += if spec.late_to.is_some() {
                extract_tagged(
                    selected,
                    &spec.key,
                    &spec.time,
                    &spec.aggregate,
                    &mut rows,
                    &mut origins,
                )
            } else {
                let untagged = selected.map(|(_, k, v, t)| ((), k, v, t));
                extract_tagged(
                    untagged,
                    &spec.key,
                    &spec.time,
                    &spec.aggregate,
                    &mut rows,
                    &mut Vec::new(),
                )
            };
        }
        let (agg, restored) = self.aggregator(tp.1).await?;
        let late_before = agg.late();
        let results = agg.push(rows.iter().map(|(k, t, v)| (k.as_slice(), *t, *v)));
        let open = agg.open();
        if open > spec.max_open_windows {
            // This partition's state is no longer trusted: it is restored if it comes back.
            self.partitions.remove(&tp.1);
            return Err(Error::InvalidState(format!(
                "{}-{}: {open} windows open, more than the {} allowed (max_open_windows): \
                 the state would outgrow its memory bound",
                tp.0, tp.1, spec.max_open_windows
            )));
        }
        let late = agg.late() - late_before;
        let late_records = agg
            .late_rows()
            .iter()
            .map(|&i| {
                let (b, row) = origins[i];
                LateRecord::of(&batches[b], row)
            })
            .collect();
        let changes = agg.take_changes();
        self.scratch = rows;
        Ok(Step {
            output: results.iter().map(output_record).collect(),
            changes,
            restored,
            skipped,
            late,
            late_records,
        })
    }

    /// Every window still open of `tps` (the end of bounded input), restoring first the
    /// state of any this lane has not read since it was assigned; and the changelog records
    /// read back.
    pub(super) async fn finish(&mut self, tps: &[Tp]) -> Result<(Vec<(i32, Step)>, u64), Error> {
        let mut restored = 0;
        for tp in tps {
            restored += self.aggregator(tp.1).await?.1;
        }
        let mut out: Vec<(i32, Step)> = self
            .partitions
            .iter_mut()
            .map(|(partition, agg)| {
                let results = agg.finish();
                let changes = agg.take_changes();
                (
                    *partition,
                    Step {
                        output: results.iter().map(output_record).collect(),
                        changes,
                        restored: 0,
                        skipped: 0,
                        late: 0,
                        late_records: Vec::new(),
                    },
                )
            })
            .collect();
        out.sort_by_key(|(p, _)| *p);
        Ok((out, restored))
    }
}

/// Reads a changelog partition back, for a task's state.
pub(super) struct Restorer<'a> {
    /// Connections of the changelogs' own, not the source's.
    pub client: &'a Client,
    /// How the changelog is read (no group; read_committed under exactly-once).
    pub config: &'a ConsumerConfig,
    pub changelog: &'a str,
}

impl Restorer<'_> {
    /// Hands every record of the changelog's partition `partition` to `apply`, in offset order,
    /// up to the end it had when the read began; returns how many there were.
    pub async fn read(
        &self,
        partition: i32,
        mut apply: impl FnMut(&[u8], Option<&[u8]>) -> Result<(), StoreError>,
    ) -> Result<u64, Error> {
        let started = Instant::now();
        // The changelog's extent first: an empty one (a new application, a partition never
        // written) is restored without reading.
        let committed = self.config.isolation_level == IsolationLevel::ReadCommitted;
        let bound = |spec| async move {
            let listed = self
                .client
                .list_offsets_isolated(self.changelog, &[partition], spec, committed)
                .await?;
            Ok::<i64, Error>(listed.first().map_or(0, |l| l.offset))
        };
        let (first, end) = (
            bound(OffsetSpec::Earliest).await?,
            bound(OffsetSpec::Latest).await?,
        );
        if end <= first {
            return Ok(0);
        }
        let mut config = self.config.clone();
        config.group_id = None;
        config.group_instance_id = None;
        config.enable_auto_commit = false;
        // What is there is read; a long poll would only hold the close back.
        config.fetch_max_wait = std::time::Duration::from_millis(10);
        let mut consumer = Consumer::with_client(self.client.clone(), config);
        consumer.assign(&[(self.changelog, partition, Offset::Beginning)])?;
        let mut records = 0u64;
        let result = loop {
            match consumer.next().await {
                Ok(Event::Batch(batch)) => {
                    let applied = batch.records().try_for_each(|r| {
                        // Every record of ours has a key; one without is not ours.
                        let key = r.key().ok_or_else(|| StoreError::Corrupt {
                            what: "a changelog record without a key".into(),
                        })?;
                        apply(key, r.value())
                    });
                    if let Err(e) = applied {
                        break Err(Error::InvalidState(format!(
                            "restoring {}-{partition}: {e}",
                            self.changelog
                        )));
                    }
                    records += batch.batch().len() as u64;
                    if batch.next_offset() >= end {
                        break Ok(());
                    }
                }
                Ok(Event::EndOfPartition { .. }) => break Ok(()),
                Ok(_) => {}
                Err(e) => break Err(e),
            }
        };
        let _ = consumer.close().await;
        result?;
        tracing::info!(
            changelog = %self.changelog,
            partition,
            records,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "state restored"
        );
        Ok(records)
    }
}

/// A result as an output record: keyed by the grouping key, the JSON value, stamped with the
/// window's last millisecond.
pub(super) fn output_record(result: &WindowResult) -> OutputRecord {
    (
        result.key.clone(),
        result_json(result),
        result.end.saturating_sub(1),
    )
}
