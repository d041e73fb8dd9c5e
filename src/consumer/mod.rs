//! The consumer: batch-native fetching.
//!
//! ```text
//! fetcher task: one fetch in flight per broker (incremental sessions, long poll)
//!      │ answer: positions move on, the next fetch goes out at once
//!      ▼
//! decode tasks (worker threads): CRC, decompress once, columns; aborted and control batches
//!      │ dropped (read_committed); room taken from fetch.buffer.bytes
//!      ▼
//! Consumer::next ──▶ PartitionBatch (one partition's ColumnarBatch, zero-copy) ──▶ application
//! ```
//!
//! A [`PartitionBatch`] holds its share of `fetch.buffer.bytes` (counted in *decoded* bytes)
//! until it is dropped, so what the consumer buffers is bounded however compressed the topic
//! is; fetching pauses while the buffer is full. [`PartitionBatch::records`] iterates records
//! on top of the columns for code that wants one at a time.
//!
//! Two modes: [`Consumer::assign`] (you pick the partitions and where to start), and
//! [`Consumer::subscribe`] (a member of `group.id`, classic protocol type "consumer", so it can
//! share a group with Java or librdkafka members). In a group, [`Consumer::next`] also yields
//! the rebalance listener's news as typed events ([`Event::Assigned`], [`Event::Revoked`],
//! [`Event::Lost`]); positions are committed before a revocation and every
//! `auto.commit.interval.ms` when `enable.auto.commit` is on, and [`Consumer::commit`] commits
//! on demand.

mod aborted;
mod config;
mod decode;
mod fetcher;
pub mod group;
mod grouped;
mod session;
pub mod share;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use self::config::{ConsumerConfig, GroupProtocol, IsolationLevel, OffsetReset};
use self::decode::{Buffer, Pending, Room};
use self::fetcher::{Chunk, Command, Start, Tp};
use self::group::assignor::TopicPartition;
use self::group::driver::{GroupEvent, Identity, PollClock};
use self::group::membership::Change;
use crate::cluster::Client;
use crate::error::Error;
use crate::record::{ColumnarBatch, DecodeOptions, RecordRef};

/// Decoded fetches waiting for the application, besides `fetch.buffer.bytes` (each holds one
/// partition's share of one fetch).
const CHUNK_QUEUE: usize = 64;

/// Where to start reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// This offset.
    At(i64),
    /// The log start.
    Beginning,
    /// The log end (the last stable offset under read_committed).
    End,
    /// This many records before the end (the log start if there are fewer).
    FromEnd(i64),
    /// The first record with a timestamp at or after this one (milliseconds since the epoch);
    /// the end if there is none.
    Timestamp(i64),
    /// Per `auto.offset.reset`.
    Reset,
}

/// One partition's records from one batch, decoded, zero-copy. Holds its share of the
/// consumer's buffer until dropped.
pub struct PartitionBatch {
    topic: Arc<str>,
    partition: i32,
    batch: ColumnarBatch,
    high_watermark: i64,
    _room: Room,
}

impl std::fmt::Debug for PartitionBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionBatch")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("records", &self.batch.len())
            .field("first_offset", &self.first_offset())
            .finish()
    }
}

impl PartitionBatch {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The records, as columns.
    pub fn batch(&self) -> &ColumnarBatch {
        &self.batch
    }

    /// The partition's high watermark when this was fetched.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Offset of the first record.
    pub fn first_offset(&self) -> i64 {
        if self.batch.is_empty() {
            return self.next_offset();
        }
        self.batch.offset(0)
    }

    /// The offset after this batch: where the partition's position moves once it is consumed.
    pub fn next_offset(&self) -> i64 {
        self.batch.header().next_offset()
    }

    /// Moves the decoded records out (the pipeline's lanes keep this handle, and with it the
    /// buffer share, until the output is written).
    pub(crate) fn take_batch(&mut self) -> ColumnarBatch {
        std::mem::take(&mut self.batch)
    }

    /// The topic, shared.
    pub(crate) fn topic_arc(&self) -> Arc<str> {
        self.topic.clone()
    }

    /// The records one at a time.
    pub fn records(&self) -> impl ExactSizeIterator<Item = RecordRef<'_>> + '_ {
        self.batch.records()
    }
}

/// What [`Consumer::next`] yields.
// A batch is returned by value: boxing it would allocate once per batch.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// Records.
    Batch(PartitionBatch),
    /// The group assigned these partitions (they start at their committed offsets, or per
    /// `auto.offset.reset`).
    Assigned(Vec<TopicPartition>),
    /// These partitions were taken away in a rebalance; their positions were committed first
    /// if `enable.auto.commit` is on.
    Revoked(Vec<TopicPartition>),
    /// These partitions were lost: the member was fenced (a missed session, a newer
    /// generation), and their positions could not be committed.
    Lost(Vec<TopicPartition>),
    /// As the group's leader, this consumer could not read a member's subscription (its bytes
    /// break the consumer protocol): that member was assigned nothing, the others as usual.
    UnreadableMember {
        /// The member.
        member_id: String,
        /// What is wrong with its subscription.
        reason: String,
    },
    /// This consumer's assignment, as the group's leader wrote it, could not be read: nothing
    /// is assigned to it until the next rebalance.
    UnreadableAssignment {
        /// What is wrong with it.
        reason: String,
    },
    /// The partition has no more records for now: the position reached the high watermark
    /// (the last stable offset under read_committed). Reported once each time it gets there.
    EndOfPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The position.
        offset: i64,
    },
}

struct View {
    epoch: u64,
    position: Option<i64>,
    paused: bool,
    /// The leader epoch of the record before the position (-1 if unknown): committed with it.
    leader_epoch: i32,
}

/// A consumer of assigned partitions. Dropping it stops its fetcher.
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    commands: mpsc::UnboundedSender<Command>,
    chunks: mpsc::Receiver<Chunk>,
    /// The fetch being handed out, and the ones after it that a seek left in place.
    current: VecDeque<Pending>,
    /// A fetch still being decoded, kept here so a cancelled `next` loses none of it.
    decoding: Option<JoinHandle<Pending>>,
    views: HashMap<Tp, View>,
    next_epoch: u64,
    buffer: Arc<Buffer>,
    options: DecodeOptions,
    task: JoinHandle<()>,
    group: Option<Group>,
    /// Group news already turned into events, waiting to be returned.
    events: VecDeque<Event>,
    /// Group changes not yet acted on (kept here so a cancelled `next` loses none), and the
    /// group task's acknowledgement to send once they are done.
    changes: VecDeque<Change>,
    changes_ack: Vec<oneshot::Sender<()>>,
    /// Partitions revoked and handed to the application, which may still commit them: they
    /// keep their positions until it asks for more (or closes), and only then does the group
    /// task hear (this acknowledgement) and join the rebalance.
    revoking: Vec<Tp>,
    revoke_ack: Vec<oneshot::Sender<()>>,
    /// When the rebalance under way began (subscribing, or the first revocation), for its
    /// duration in the statistics.
    rebalance_started: Option<std::time::Instant>,
}

/// A subscribed consumer's group membership.
struct Group {
    events: mpsc::Receiver<GroupEvent>,
    identity: Arc<Mutex<Identity>>,
    leave: Option<oneshot::Sender<oneshot::Sender<()>>>,
    task: JoinHandle<()>,
    last_commit: Instant,
    /// When the application last asked for records (`max.poll.interval.ms`).
    polled: Arc<PollClock>,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(group) = &self.group {
            // Dropped without close: no LeaveGroup; the group notices at the session timeout.
            group.task.abort();
        }
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("assigned", &self.views.len())
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Connects to the cluster and starts the fetcher (with nothing assigned yet). Must be
    /// called within a tokio runtime.
    pub async fn new(config: ConsumerConfig) -> Result<Consumer, Error> {
        config.validate()?;
        let client = Client::connect(config.client.clone()).await?;
        Ok(Consumer::with_client(client, config))
    }

    /// A consumer over an existing client (its connections and metadata are shared).
    pub fn with_client(client: Client, config: ConsumerConfig) -> Consumer {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (chunk_tx, chunks) = mpsc::channel(CHUNK_QUEUE);
        let buffer = Buffer::new(config.buffer_bytes);
        let task = tokio::spawn(fetcher::run(
            client.clone(),
            config.clone(),
            command_rx,
            chunk_tx,
            buffer.clone(),
        ));
        Consumer {
            client,
            options: DecodeOptions {
                max_decompressed: config.max_decompressed,
            },
            config,
            commands,
            chunks,
            current: VecDeque::new(),
            decoding: None,
            views: HashMap::new(),
            next_epoch: 1,
            buffer,
            task,
            group: None,
            events: VecDeque::new(),
            changes: VecDeque::new(),
            changes_ack: Vec::new(),
            revoking: Vec::new(),
            rebalance_started: None,
            revoke_ack: Vec::new(),
        }
    }

    /// The cluster client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The settings.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// Bytes of decoded records held by the application or waiting for it: at most
    /// `fetch.buffer.bytes` plus one batch per partition being decoded.
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.used()
    }

    fn send(&self, command: Command) -> Result<(), Error> {
        self.commands
            .send(command)
            .map_err(|_| Error::ConsumerClosed)
    }

    /// Reads exactly these partitions, each from its starting point (replacing any earlier
    /// assignment).
    pub fn assign(&mut self, partitions: &[(&str, i32, Offset)]) -> Result<(), Error> {
        self.views.clear();
        self.current.clear();
        let mut list = Vec::with_capacity(partitions.len());
        for (topic, partition, start) in partitions {
            let tp: Tp = (Arc::from(*topic), *partition);
            let epoch = self.bump();
            self.views.insert(
                tp.clone(),
                View {
                    epoch,
                    position: match start {
                        Offset::At(o) => Some(*o),
                        _ => None,
                    },
                    paused: false,
                    leader_epoch: -1,
                },
            );
            list.push(Start {
                tp,
                offset: *start,
                epoch,
                leader_epoch: -1,
            });
        }
        self.send(Command::Assign(list))
    }

    /// Reads every partition of `topics` from `start`.
    pub async fn assign_topics(&mut self, topics: &[&str], start: Offset) -> Result<(), Error> {
        let mut partitions = Vec::new();
        for topic in topics {
            let meta = self.client.topic_metadata(topic).await?;
            for p in &meta.partitions {
                partitions.push((*topic, p.partition, start));
            }
        }
        self.assign(&partitions)
    }

    /// Stops reading these partitions; what was fetched for them is dropped.
    pub fn unassign(&mut self, partitions: &[(&str, i32)]) -> Result<(), Error> {
        let tps: Vec<Tp> = partitions
            .iter()
            .map(|(t, p)| (Arc::from(*t), *p))
            .collect();
        for tp in &tps {
            self.views.remove(tp);
        }
        self.current.retain(|p| !tps.contains(&p.tp));
        self.send(Command::Unassign(tps))
    }

    /// The partitions assigned, sorted.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        let mut out: Vec<(String, i32)> = self
            .views
            .keys()
            .map(|(t, p)| (t.to_string(), *p))
            .collect();
        out.sort();
        out
    }

    fn bump(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    fn view(&mut self, topic: &str, partition: i32) -> Result<(Tp, &mut View), Error> {
        let tp: Tp = (Arc::from(topic), partition);
        match self.views.get_mut(&tp) {
            Some(view) => Ok((tp, view)),
            None => Err(Error::UnknownInMetadata(format!(
                "{topic}-{partition} is not assigned to this consumer"
            ))),
        }
    }

    /// Reads a partition from `start` next; records fetched before are dropped.
    pub fn seek(&mut self, topic: &str, partition: i32, start: Offset) -> Result<(), Error> {
        let epoch = self.bump();
        let (tp, view) = self.view(topic, partition)?;
        view.epoch = epoch;
        view.leader_epoch = -1;
        view.position = match start {
            Offset::At(o) => Some(o),
            _ => None,
        };
        self.current.retain(|p| p.tp != tp);
        self.send(Command::Seek(tp, start, epoch))
    }

    /// Stops fetching a partition (what is already buffered is still delivered).
    pub fn pause(&mut self, topic: &str, partition: i32) -> Result<(), Error> {
        let (tp, view) = self.view(topic, partition)?;
        view.paused = true;
        self.send(Command::Pause(tp, true))
    }

    /// Fetches a paused partition again.
    pub fn resume(&mut self, topic: &str, partition: i32) -> Result<(), Error> {
        let (tp, view) = self.view(topic, partition)?;
        view.paused = false;
        self.send(Command::Pause(tp, false))
    }

    /// Whether a partition is paused.
    pub fn is_paused(&self, topic: &str, partition: i32) -> bool {
        self.views
            .get(&(Arc::from(topic), partition))
            .is_some_and(|v| v.paused)
    }

    /// The offset of the next record the application will get from a partition: after the
    /// last batch handed out, or the starting offset. `None` while a start (beginning, end,
    /// timestamp) is still being looked up.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.views
            .get(&(Arc::from(topic), partition))
            .and_then(|v| v.position)
    }

    /// The next batch of any assigned partition, or the news that one reached its end. Waits
    /// for records; fails on a corrupt batch or a partition that cannot start
    /// (`auto.offset.reset=error`).
    pub async fn next(&mut self) -> Result<Event, Error> {
        // Time spent in here counts as asking for records (max.poll.interval.ms).
        let _asking = self.group.as_ref().map(|g| g.polled.asking());
        // Asking again means the application is done with partitions revoked last time.
        self.finish_revoke();
        self.auto_commit().await;
        loop {
            // Every piece of group news already sent, before acting on any: a later one may
            // change an earlier one's meaning (a revocation the application never saw, then
            // lost at max.poll.interval.ms, is reported lost).
            while let Some(event) = self.group.as_mut().and_then(|g| g.events.try_recv().ok()) {
                self.on_group_event(event)?;
            }
            if !self.changes.is_empty() || !self.changes_ack.is_empty() {
                self.act_on_changes().await?;
            }
            if let Some(event) = self.events.pop_front() {
                return Ok(event);
            }
            if let Some(handle) = &mut self.decoding {
                // Awaited in place: cancelled here, the next call awaits it again.
                let decoded = handle.await;
                self.decoding = None;
                match decoded {
                    Ok(pending) => self.current.push_back(pending),
                    Err(join) => {
                        return Err(Error::TaskFailed {
                            task: "record decoding",
                            reason: join.to_string(),
                        })
                    }
                }
            }
            while let Some(pending) = self.current.front_mut() {
                let current = self
                    .views
                    .get(&pending.tp)
                    .is_some_and(|v| v.epoch == pending.epoch);
                if !current {
                    self.current.pop_front();
                    continue;
                }
                let next = match pending.next(&self.buffer, &self.options) {
                    Ok(next) => next,
                    Err(e) => {
                        // Do not move past a bad batch: fetch it again from the position,
                        // so the application sees this error until it seeks past it.
                        let tp = pending.tp.clone();
                        let position = self.views.get(&tp).and_then(|v| v.position);
                        let offset = position.unwrap_or(pending.from);
                        self.seek(&tp.0, tp.1, Offset::At(offset))?;
                        // Fetched again only after a backoff, longer each time.
                        let epoch = self.views.get(&tp).map_or(0, |v| v.epoch);
                        self.send(Command::Backoff(tp, epoch))?;
                        return Err(e);
                    }
                };
                match next {
                    Some((batch, room)) => {
                        let batch = PartitionBatch {
                            topic: pending.tp.0.clone(),
                            partition: pending.tp.1,
                            batch,
                            high_watermark: pending.high_watermark,
                            _room: room,
                        };
                        if pending.is_done() {
                            self.current.pop_front();
                        }
                        let view = self
                            .views
                            .get_mut(&(batch.topic.clone(), batch.partition))
                            .expect("checked above");
                        view.position = Some(batch.next_offset());
                        let leader_epoch = batch.batch.header().partition_leader_epoch;
                        if leader_epoch >= 0 {
                            view.leader_epoch = leader_epoch;
                        }
                        crate::telemetry::consumed(
                            self.client.stats(),
                            &batch.topic,
                            batch.partition,
                            batch.batch.len(),
                        );
                        return Ok(Event::Batch(batch));
                    }
                    None => {
                        self.current.pop_front();
                    }
                }
            }
            let commit_due = self
                .group
                .as_ref()
                .filter(|_| self.config.enable_auto_commit)
                .map(|g| {
                    tokio::time::Instant::from_std(g.last_commit + self.config.auto_commit_interval)
                });
            let chunk = match &mut self.group {
                Some(group) => tokio::select! {
                    () = tokio::time::sleep_until(commit_due.unwrap_or_else(tokio::time::Instant::now)), if commit_due.is_some() => {
                        self.auto_commit().await;
                        continue;
                    }
                    event = group.events.recv() => {
                        match event {
                            Some(event) => self.on_group_event(event)?,
                            None => return Err(Error::ConsumerClosed),
                        }
                        continue;
                    }
                    chunk = self.chunks.recv() => chunk.ok_or(Error::ConsumerClosed)?,
                },
                None => self.chunks.recv().await.ok_or(Error::ConsumerClosed)?,
            };
            match chunk {
                Chunk::Failed(e, scope) => {
                    // Not for a partition seeked or given up since.
                    let current = scope.as_ref().is_none_or(|(tp, epoch)| {
                        self.views.get(tp).is_some_and(|v| v.epoch == *epoch)
                    });
                    if current {
                        return Err(e);
                    }
                }
                Chunk::End(tp, epoch, offset) => {
                    if let Some(view) = self.views.get_mut(&tp) {
                        if view.epoch == epoch {
                            view.position = Some(offset);
                            return Ok(Event::EndOfPartition {
                                topic: tp.0.to_string(),
                                partition: tp.1,
                                offset,
                            });
                        }
                    }
                }
                Chunk::Truncated(tp, epoch, offset) => {
                    // Records from here on replace the ones truncated away: they are read next.
                    if let Some(view) = self.views.get_mut(&tp).filter(|v| v.epoch == epoch) {
                        view.position = Some(offset);
                        view.leader_epoch = -1;
                    }
                }
                Chunk::Decoding(handle) => self.decoding = Some(handle),
            }
        }
    }

    /// The next batch, skipping end-of-partition news.
    pub async fn next_batch(&mut self) -> Result<PartitionBatch, Error> {
        loop {
            if let Event::Batch(b) = self.next().await? {
                return Ok(b);
            }
        }
    }

    /// The batches ([`next_batch`](Self::next_batch)) as a [`Stream`](futures_util::Stream),
    /// for `StreamExt` combinators and `select!` over streams. It ends after the first error,
    /// which it yields: the consumer does not move past a corrupt batch, so asking again would
    /// only repeat it (deal with it, for example by seeking, then take a new stream). The
    /// consumer is borrowed, so it can still be [`close`](Self::close)d once the stream is
    /// dropped.
    ///
    /// ```no_run
    /// # async fn run(mut consumer: spate::consumer::Consumer) -> Result<(), spate::Error> {
    /// use futures_util::StreamExt;
    ///
    /// let mut records = 0;
    /// let mut batches = std::pin::pin!(consumer.stream());
    /// while let Some(batch) = batches.next().await {
    ///     records += batch?.batch().len();
    /// }
    /// # Ok(()) }
    /// ```
    pub fn stream(
        &mut self,
    ) -> impl futures_util::Stream<Item = Result<PartitionBatch, Error>> + '_ {
        futures_util::stream::unfold(Some(self), |consumer| async move {
            let consumer = consumer?;
            match consumer.next_batch().await {
                Ok(batch) => Some((Ok(batch), Some(consumer))),
                Err(e) => Some((Err(e), None)),
            }
        })
    }
}
