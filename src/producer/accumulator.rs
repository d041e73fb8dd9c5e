//! The record accumulator: per-partition batches, which of them are ready, and what goes into
//! each produce request. Sans-IO: the sender task drives it with the time and the cluster's
//! leaders, and hands back what the brokers answered.
//!
//! Ordering rules (what keeps retries from duplicating or reordering):
//! - a partition's batches leave in the order they were closed, and each gets its sequence
//!   numbers when it first leaves (idempotence);
//! - a batch sent back for retry goes in front of every batch not yet sent, in sequence order;
//! - while a partition has a batch being retried, it has at most one batch in flight.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub(crate) use super::batch::{Batch, BatchAck, Outcome};
use super::partitioner::next_sticky;
use crate::error::Error;
use crate::record::{
    increment_sequence, Compression, Header, RecordBatchBuilder, BATCH_HEADER_LEN,
};

/// Bytes of a produce request besides its batches: header, transactional id, and per topic and
/// partition framing. Generous, so a request of batches that fit never exceeds
/// `max.request.size`.
pub(crate) const REQUEST_OVERHEAD: usize = 1024;

struct Open {
    id: u64,
    builder: RecordBatchBuilder,
    created: Instant,
    outcome: Arc<Outcome>,
    reserved: usize,
}

struct PartitionState {
    topic: Arc<str>,
    partition: i32,
    open: Option<Open>,
    queue: VecDeque<Batch>,
    /// Batches of this partition in flight.
    in_flight: usize,
    /// Sequences sent and not yet answered (idempotence).
    unacked: BTreeSet<i32>,
    next_sequence: i32,
    /// A batch came back for retry: one batch in flight at a time until the queue of
    /// sequenced batches has drained.
    retrying: bool,
    /// Added to the current transaction.
    in_txn: bool,
}

struct TopicState {
    name: Arc<str>,
    /// Accumulator slot of each partition.
    slots: Vec<usize>,
    sticky: Option<i32>,
    sticky_bytes: usize,
}

/// Settings the accumulator needs.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub linger: Duration,
    pub batch_size: usize,
    pub max_request_size: usize,
    pub compression: Compression,
    pub idempotent: bool,
    pub transactional: bool,
    pub max_in_flight: usize,
}

impl Limits {
    /// The largest batch a request can carry.
    pub fn max_batch(&self) -> usize {
        self.max_request_size.saturating_sub(REQUEST_OVERHEAD)
    }
}

/// Where an appended record went.
pub(crate) struct Appended {
    pub outcome: Arc<Outcome>,
    pub offset_delta: i32,
    pub partition: i32,
    /// A batch was opened (the sender must learn its linger deadline) or closed (it can go).
    pub wake: bool,
}

/// One produce request to build: a broker and one batch per partition.
pub(crate) struct Drained {
    pub broker: i32,
    pub batches: Vec<Batch>,
}

/// What a drain found besides requests.
#[derive(Default)]
pub(crate) struct DrainReport {
    pub requests: Vec<Drained>,
    /// When to look again if nothing else happens.
    pub next_check: Option<Instant>,
    /// Topics whose leaders are unknown.
    pub need_metadata: Vec<Arc<str>>,
    /// Partitions to add to the transaction before their batches may go.
    pub need_txn_add: Vec<(Arc<str>, i32)>,
}

/// The accumulator.
pub(crate) struct Accumulator {
    limits: Limits,
    topics: Vec<TopicState>,
    topic_index: HashMap<Arc<str>, usize>,
    /// The topic looked up last: most producers write one topic, and comparing its name is
    /// cheaper than hashing it for every record.
    last_topic: std::cell::Cell<usize>,
    parts: Vec<PartitionState>,
    next_id: u64,
    /// Batches with an id below this are ready whatever their linger (flush).
    flush_below: u64,
    /// Every batch not yet completed, by id: open, queued or in flight.
    incomplete: HashMap<u64, Arc<Outcome>>,
    /// Rotates where a drain starts, so no partition is always last.
    drain_start: usize,
    /// Producer id and epoch for new batches (-1, -1 without idempotence).
    pub producer: (i64, i16),
    /// A batch failed after taking sequence numbers: new sequences need a new epoch.
    pub needs_epoch_bump: bool,
    /// Batches currently in flight, all partitions.
    pub in_flight_batches: usize,
    /// Record buffers of encoded batches, and the bytes of acknowledged ones, for new batches
    /// to reuse (fresh memory costs a page fault per 4 KiB, and growing a buffer copies it);
    /// at most `ahead::SPARE_BYTES` of capacity.
    spare: Vec<Vec<u8>>,
    spare_out: Vec<Vec<u8>>,
    spare_bytes: usize,
    /// Batches built ahead of their turn ([`put_built`](Self::put_built)), for statistics.
    pub built_ahead: u64,
}

impl Accumulator {
    pub fn new(limits: Limits) -> Self {
        Accumulator {
            limits,
            topics: Vec::new(),
            topic_index: HashMap::new(),
            last_topic: std::cell::Cell::new(0),
            parts: Vec::new(),
            next_id: 0,
            flush_below: 0,
            incomplete: HashMap::new(),
            drain_start: 0,
            producer: (-1, -1),
            needs_epoch_bump: false,
            in_flight_batches: 0,
            spare: Vec::new(),
            spare_out: Vec::new(),
            spare_bytes: 0,
            built_ahead: 0,
        }
    }

    fn topic(&self, name: &str) -> Option<usize> {
        let last = self.last_topic.get();
        if self.topics.get(last).is_some_and(|t| *t.name == *name) {
            return Some(last);
        }
        let index = *self.topic_index.get(name)?;
        self.last_topic.set(index);
        Some(index)
    }

    /// The accumulator slot of a partition.
    fn slot(&self, topic: &str, partition: i32) -> Option<usize> {
        let t = self.topic(topic)?;
        self.topics[t]
            .slots
            .get(usize::try_from(partition).ok()?)
            .copied()
    }

    /// The partition count known for `topic`, if any.
    pub fn partitions(&self, topic: &str) -> Option<i32> {
        self.topic(topic).map(|t| self.topics[t].slots.len() as i32)
    }

    /// The topics records were sent to.
    pub fn topic_names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.topics.iter().map(|t| &t.name)
    }

    /// Records (or updates) a topic's partition count. Counts only grow.
    pub fn set_partitions(&mut self, topic: &str, count: i32) {
        let count = count.max(0) as usize;
        let index = match self.topic(topic) {
            Some(i) => i,
            None => {
                let name: Arc<str> = Arc::from(topic);
                self.topics.push(TopicState {
                    name: name.clone(),
                    slots: Vec::new(),
                    sticky: None,
                    sticky_bytes: 0,
                });
                self.topic_index.insert(name, self.topics.len() - 1);
                self.topics.len() - 1
            }
        };
        let state = &mut self.topics[index];
        let name = state.name.clone();
        while state.slots.len() < count {
            state.slots.push(self.parts.len());
            self.parts.push(PartitionState {
                topic: name.clone(),
                partition: (state.slots.len() - 1) as i32,
                open: None,
                queue: VecDeque::new(),
                in_flight: 0,
                unacked: BTreeSet::new(),
                next_sequence: 0,
                retrying: false,
                in_txn: false,
            });
        }
    }

    /// The partition a keyless record goes to: the topic's sticky partition, which moves on
    /// once it has had `batch.size` bytes or its batch has left.
    pub fn sticky_partition(&mut self, topic: &str, size: usize) -> Option<i32> {
        let batch_size = self.limits.batch_size;
        let index = self.topic(topic)?;
        let state = &mut self.topics[index];
        let count = state.slots.len() as i32;
        let current = state.sticky.filter(|p| *p < count);
        let moved_on = match current {
            None => true,
            Some(p) => {
                state.sticky_bytes >= batch_size
                    || self.parts[state.slots[p as usize]].open.is_none()
            }
        };
        if moved_on && (current.is_none() || state.sticky_bytes > 0) {
            state.sticky = Some(next_sticky(current, count));
            state.sticky_bytes = 0;
        }
        state.sticky_bytes += size;
        state.sticky
    }

    /// Appends a record to its partition's open batch, closing that batch first if the record
    /// does not fit and after if it is full. `reserved` is what the caller took from
    /// `buffer.memory` for it.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
        reserved: usize,
        now: Option<Instant>,
    ) -> Result<Appended, Error> {
        let slot = self.slot(topic, partition).ok_or_else(|| {
            Error::UnknownInMetadata(format!("partition {partition} of topic {topic}"))
        })?;
        let max_batch = self.limits.max_batch();
        let batch_size = self.limits.batch_size.min(max_batch);
        if let Some(open) = &mut self.parts[slot].open {
            if open
                .builder
                .try_append(
                    timestamp,
                    key,
                    value,
                    headers,
                    max_batch.min(batch_size.max(1)),
                )
                .map_err(record_error)?
            {
                open.reserved += reserved;
                let appended = Appended {
                    outcome: open.outcome.clone(),
                    offset_delta: open.builder.len() as i32 - 1,
                    partition,
                    wake: false,
                };
                if open.builder.size_in_bytes() >= batch_size {
                    self.close(slot);
                    return Ok(Appended {
                        wake: true,
                        ..appended
                    });
                }
                return Ok(appended);
            }
            self.close(slot);
        }
        // A new batch.
        let mut builder = self.new_builder(batch_size);
        builder
            .append(timestamp, key, value, headers)
            .map_err(record_error)?;
        let id = self.next_id;
        self.next_id += 1;
        let outcome = Arc::new(Outcome::default());
        self.incomplete.insert(id, outcome.clone());
        let full = builder.size_in_bytes() >= batch_size;
        self.parts[slot].open = Some(Open {
            id,
            builder,
            // A record with its own timestamp did not read the clock: a new batch does.
            created: now.unwrap_or_else(Instant::now),
            outcome: outcome.clone(),
            reserved,
        });
        if full {
            self.close(slot);
        }
        // A new batch: the sender must learn its linger deadline (or send it, if full).
        Ok(Appended {
            outcome,
            offset_delta: 0,
            partition,
            wake: true,
        })
    }

    fn close(&mut self, slot: usize) {
        let part = &mut self.parts[slot];
        if let Some(open) = part.open.take() {
            part.queue.push_back(Batch {
                id: open.id,
                slot,
                topic: part.topic.clone(),
                partition: part.partition,
                records: open.builder.len() as i32,
                uncompressed: open.builder.size_in_bytes(),
                builder: Some(open.builder),
                data: Bytes::new(),
                reserved: open.reserved,
                created: open.created,
                outcome: open.outcome,
                sequence: None,
                stamped: (-1, -1, -1),
                attempts: 0,
                not_before: None,
                last_error: None,
            });
        }
    }

    /// Makes every batch that exists now ready, and returns their outcomes (for `flush`).
    pub fn flush(&mut self) -> Vec<Arc<Outcome>> {
        self.flush_below = self.next_id;
        self.incomplete.values().cloned().collect()
    }

    /// Whether any batch is open, queued or in flight.
    pub fn is_idle(&self) -> bool {
        self.incomplete.is_empty()
    }

    /// Fails every batch not yet sent (abort, close after a fatal error). Returns the
    /// `buffer.memory` bytes they held.
    pub fn fail_unsent(&mut self, error: &Error) -> usize {
        let mut released = 0;
        for slot in 0..self.parts.len() {
            self.close(slot);
            let part = &mut self.parts[slot];
            for batch in part.queue.drain(..) {
                released += batch.reserved;
                batch.outcome.complete(Err(error.clone()));
                self.incomplete.remove(&batch.id);
                if let Some(seq) = batch.sequence {
                    part.unacked.remove(&seq);
                }
            }
            part.retrying = false;
        }
        released
    }

    /// Fails batches (open or queued, not in flight) older than `timeout`. Returns the
    /// `buffer.memory` bytes released and how many batches failed.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> (usize, usize) {
        let mut released = 0;
        let mut failed = 0;
        let mut spent_sequences = false;
        for slot in 0..self.parts.len() {
            if self.parts[slot]
                .open
                .as_ref()
                .is_some_and(|o| o.created + timeout <= now)
            {
                self.close(slot);
            }
            let part = &mut self.parts[slot];
            while part
                .queue
                .front()
                .is_some_and(|b| b.created + timeout <= now)
            {
                let batch = part.queue.pop_front().expect("checked");
                if let Some(seq) = batch.sequence {
                    part.unacked.remove(&seq);
                    spent_sequences = true;
                }
                released += batch.reserved;
                failed += 1;
                self.incomplete.remove(&batch.id);
                let last = batch.last_error.clone().unwrap_or_else(|| {
                    Error::UnknownInMetadata(format!(
                        "no leader for {}-{} was found",
                        batch.topic, batch.partition
                    ))
                });
                batch.outcome.complete(Err(Error::Timeout {
                    what: format!(
                        "delivery of {} records to {}-{}",
                        batch.records, batch.topic, batch.partition
                    ),
                    after_ms: timeout.as_millis() as u64,
                    last: Box::new(last),
                }));
            }
            if part.queue.iter().all(|b| b.sequence.is_none()) && part.in_flight == 0 {
                part.retrying = false;
            }
        }
        self.needs_epoch_bump |= spent_sequences;
        (released, failed)
    }

    /// Fails every batch not yet answered, in flight included (the sender has stopped).
    pub fn fail_all(&mut self, error: &Error) {
        self.fail_unsent(error);
        for (_, outcome) in self.incomplete.drain() {
            outcome.complete(Err(error.clone()));
        }
    }

    /// Picks the batches to send now: for each broker with room for another request, one batch
    /// per ready partition, up to `max.request.size`.
    ///
    /// `leader` maps a partition to its leader's id; `broker_room` says how many more requests a
    /// broker may have in flight.
    pub fn drain(
        &mut self,
        now: Instant,
        mut leader: impl FnMut(&str, i32) -> Option<i32>,
        mut broker_room: impl FnMut(i32) -> usize,
        hold: bool,
    ) -> DrainReport {
        let mut report = DrainReport::default();
        let mut requests: HashMap<i32, (usize, Drained)> = HashMap::new();
        let mut room: HashMap<i32, usize> = HashMap::new();
        let n = self.parts.len();
        if n == 0 {
            return report;
        }
        let start = self.drain_start % n;
        self.drain_start = self.drain_start.wrapping_add(1);
        let limits = self.limits.clone();
        let mut flushed_requests: Vec<Drained> = Vec::new();
        // Passes: each takes at most one batch per partition into each broker's current
        // request; a full request is set aside and the broker starts another if it has room.
        loop {
            let mut took = false;
            for i in 0..n {
                let slot = (start + i) % n;
                // Linger: an open batch becomes a closed one when its time is up or a flush
                // wants it.
                {
                    let part = &mut self.parts[slot];
                    if part.queue.is_empty() {
                        if let Some(open) = &part.open {
                            let due = open.created + limits.linger;
                            if due <= now || open.id < self.flush_below {
                                self.close(slot);
                            } else {
                                report.next_check = earliest(report.next_check, due);
                            }
                        }
                    }
                }
                let part = &mut self.parts[slot];
                let Some(head) = part.queue.front() else {
                    continue;
                };
                if part.retrying && part.in_flight > 0 {
                    continue;
                }
                if limits.idempotent && part.in_flight >= limits.max_in_flight {
                    continue;
                }
                if let Some(at) = head.not_before {
                    if at > now {
                        report.next_check = earliest(report.next_check, at);
                        continue;
                    }
                }
                // Nothing goes while the producer needs a new epoch: sequences restart then.
                if hold {
                    continue;
                }
                if limits.transactional && !part.in_txn {
                    if !report
                        .need_txn_add
                        .iter()
                        .any(|(t, p)| *t == part.topic && *p == part.partition)
                    {
                        report
                            .need_txn_add
                            .push((part.topic.clone(), part.partition));
                    }
                    continue;
                }
                let Some(broker) = leader(&part.topic, part.partition) else {
                    if !report.need_metadata.contains(&part.topic) {
                        report.need_metadata.push(part.topic.clone());
                    }
                    continue;
                };
                let room = room.entry(broker).or_insert_with(|| broker_room(broker));
                let size = head
                    .builder
                    .as_ref()
                    .map_or(head.data.len(), |b| b.size_in_bytes());
                let entry = requests.entry(broker).or_insert_with(|| {
                    (
                        REQUEST_OVERHEAD,
                        Drained {
                            broker,
                            batches: Vec::new(),
                        },
                    )
                });
                if entry.1.batches.iter().any(|b| b.slot == slot) {
                    continue;
                }
                if entry.0 + size > limits.max_request_size && !entry.1.batches.is_empty() {
                    // This request is full: set it aside if the broker has room for another.
                    if *room <= 1 {
                        continue;
                    }
                    *room -= 1;
                    let full = std::mem::replace(
                        entry,
                        (
                            REQUEST_OVERHEAD,
                            Drained {
                                broker,
                                batches: Vec::new(),
                            },
                        ),
                    );
                    flushed_requests.push(full.1);
                }
                if *room == 0 {
                    continue;
                }
                let mut batch = part.queue.pop_front().expect("head exists");
                if limits.idempotent && batch.sequence.is_none() {
                    batch.sequence = Some(part.next_sequence);
                    part.next_sequence = increment_sequence(part.next_sequence, batch.records);
                }
                if let Some(seq) = batch.sequence {
                    part.unacked.insert(seq);
                }
                part.in_flight += 1;
                self.in_flight_batches += 1;
                entry.0 += size;
                entry.1.batches.push(batch);
                took = true;
            }
            if !took {
                break;
            }
            // Another pass only for brokers that can take another request.
            let mut any_room = false;
            for (broker, (_, drained)) in requests.iter_mut() {
                let room = room.get_mut(broker).expect("room was computed");
                if !drained.batches.is_empty() && *room > 1 {
                    *room -= 1;
                    flushed_requests.push(std::mem::replace(
                        drained,
                        Drained {
                            broker: *broker,
                            batches: Vec::new(),
                        },
                    ));
                    any_room = true;
                }
            }
            for (_, (size, drained)) in requests.iter_mut() {
                if drained.batches.is_empty() {
                    *size = REQUEST_OVERHEAD;
                }
            }
            if !any_room {
                break;
            }
        }
        report.requests = flushed_requests;
        report.requests.extend(
            requests
                .into_values()
                .map(|(_, d)| d)
                .filter(|d| !d.batches.is_empty()),
        );
        report
    }

    /// Batches `(open, queued, in flight)` across every partition.
    pub fn batch_counts(&self) -> (usize, usize, usize) {
        self.parts.iter().fold((0, 0, 0), |(o, q, f), p| {
            (
                o + usize::from(p.open.is_some()),
                q + p.queue.len(),
                f + p.in_flight,
            )
        })
    }

    /// A batch the broker accepted (or, for acks=0, that was written).
    pub fn succeeded(&mut self, mut batch: Batch, ack: BatchAck) -> usize {
        self.finish(&batch);
        self.recycle_output(std::mem::take(&mut batch.data));
        let part = &mut self.parts[batch.slot];
        if part.retrying && part.in_flight == 0 && !part.queue.iter().any(|b| b.sequence.is_some())
        {
            part.retrying = false;
        }
        batch.outcome.complete(Ok(ack));
        batch.reserved
    }

    /// A batch that will not be retried. Returns the `buffer.memory` bytes it held.
    pub fn failed(&mut self, mut batch: Batch, error: Error) -> usize {
        self.finish(&batch);
        self.recycle_output(std::mem::take(&mut batch.data));
        if batch.sequence.is_some() {
            // Its sequence numbers are spent but the broker never saw them: later batches of
            // every partition need a new epoch to start from 0 again.
            self.needs_epoch_bump = true;
        }
        tracing::warn!(
            topic = %batch.topic,
            partition = batch.partition,
            records = batch.records,
            error = %error,
            "batch failed"
        );
        batch.outcome.complete(Err(error));
        batch.reserved
    }

    fn finish(&mut self, batch: &Batch) {
        let part = &mut self.parts[batch.slot];
        part.in_flight = part.in_flight.saturating_sub(1);
        self.in_flight_batches = self.in_flight_batches.saturating_sub(1);
        if let Some(seq) = batch.sequence {
            part.unacked.remove(&seq);
        }
        self.incomplete.remove(&batch.id);
    }

    /// Whether a batch of this partition with a lower sequence is not yet acknowledged (in
    /// flight or waiting for its retry), which explains an OUT_OF_ORDER_SEQUENCE_NUMBER for
    /// `batch`: it is retriable then.
    pub fn has_earlier_unacked(&self, batch: &Batch) -> bool {
        match batch.sequence {
            Some(seq) => self.parts[batch.slot]
                .unacked
                .iter()
                .any(|&other| sequence_before(other, seq)),
            None => false,
        }
    }

    /// Puts a batch back for another attempt, in front of every unsent batch and in sequence
    /// order; the partition then sends one batch at a time until its retries are through.
    pub fn retry(&mut self, mut batch: Batch, error: Error, at: Instant) {
        let part = &mut self.parts[batch.slot];
        part.in_flight = part.in_flight.saturating_sub(1);
        self.in_flight_batches = self.in_flight_batches.saturating_sub(1);
        // Its sequence stays unacknowledged: a later batch's OUT_OF_ORDER_SEQUENCE_NUMBER is
        // explained by this one, and is retriable.
        part.retrying = true;
        batch.attempts += 1;
        batch.not_before = Some(at);
        batch.last_error = Some(error);
        let seq = batch.sequence;
        let pos = part
            .queue
            .iter()
            .position(|b| match (b.sequence, seq) {
                (None, _) => true,
                (Some(other), Some(mine)) => sequence_before(mine, other),
                (Some(_), None) => false,
            })
            .unwrap_or(part.queue.len());
        part.queue.insert(pos, batch);
    }

    /// Starts sequences again at 0 under a new producer id or epoch, re-stamping the batches
    /// that already had sequence numbers (they are re-sent under the new epoch).
    pub fn reset_sequences(&mut self, producer: (i64, i16)) {
        self.producer = producer;
        self.needs_epoch_bump = false;
        for part in &mut self.parts {
            part.next_sequence = 0;
            part.unacked.clear();
            for batch in part.queue.iter_mut() {
                if batch.sequence.is_some() {
                    batch.sequence = Some(part.next_sequence);
                    part.next_sequence = increment_sequence(part.next_sequence, batch.records);
                }
            }
        }
    }

    /// Marks a partition as added to the current transaction.
    pub fn added_to_txn(&mut self, topic: &str, partition: i32) {
        if let Some(slot) = self.slot(topic, partition) {
            self.parts[slot].in_txn = true;
        }
    }

    /// A transaction ended: partitions must be added again to the next one.
    pub fn end_txn(&mut self) {
        for part in &mut self.parts {
            part.in_txn = false;
        }
    }
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

fn record_error(e: crate::record::RecordError) -> Error {
    match e {
        crate::record::RecordError::TooLarge { actual, limit, .. } => Error::RecordTooLarge {
            size: actual,
            setting: "a record batch",
            limit,
        },
        other => Error::Transaction(format!("cannot append record: {other}")),
    }
}

/// An upper bound of the size a lone record gives its batch (header included): lengths at their
/// widest varint encoding. Cheaper than the exact size, and what `buffer.memory` and
/// `max.request.size` are checked against.
pub(crate) fn record_size_bound(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header<'_>],
) -> usize {
    const VARINT: usize = 5;
    const VARLONG: usize = 10;
    let bytes = |b: Option<&[u8]>| VARINT + b.map_or(0, <[u8]>::len);
    BATCH_HEADER_LEN
        + VARINT // length
        + 1 // attributes
        + VARLONG // timestamp delta
        + VARINT // offset delta
        + bytes(key)
        + bytes(value)
        + VARINT // header count
        + headers
            .iter()
            .map(|(k, v)| VARINT + k.len() + bytes(*v))
            .sum::<usize>()
}

mod ahead;
#[cfg(test)]
mod tests;

/// Whether sequence `a` comes before `b` on a partition whose sequences wrap from `i32::MAX` to
/// 0 ([`increment_sequence`]): the batches in flight at once span far less than half the range.
fn sequence_before(a: i32, b: i32) -> bool {
    let distance = (i64::from(b) - i64::from(a)).rem_euclid(1 << 31);
    distance > 0 && distance < 1 << 30
}
