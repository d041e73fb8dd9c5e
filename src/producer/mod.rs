//! The producer: batched, compressed, idempotent, transactional.
//!
//! ```text
//! send(record) ──▶ partitioner ──▶ accumulator (one open batch per partition)
//!                                      │ full, linger expired, or flush
//!                                      ▼
//!                   sender task: one produce request per broker, ≤ max.in.flight each
//!                                      │ responses
//!                                      ▼
//!               delivery futures resolved; retriable errors go back in sequence order
//! ```
//!
//! [`Producer::send`] copies the record into its partition's open batch (no per-record
//! allocation) and returns a [`Delivery`], which resolves to the record's partition and offset
//! once the broker has acknowledged its batch. `send` waits only when `buffer.memory` is used
//! up. Batches are encoded and compressed once, by the sender task, when they first leave.
//!
//! Idempotence is on by default: the producer takes a producer id (InitProducerId) and numbers
//! each partition's batches, so a retry after a lost response is recognised by the broker as a
//! duplicate instead of written twice, and up to 5 requests per broker stay in flight without
//! reordering. With `transactional.id`, the same batches are written inside transactions
//! ([`Producer::begin_transaction`], [`Producer::commit_transaction`], …).
//!
//! # References
//! - Java client `RecordAccumulator`, `Sender`, `TransactionManager`.
//! - KIP-98 (idempotence, transactions), KIP-360 (epoch bump after a failed batch), KIP-447
//!   (`send_offsets_to_transaction` with the consumer's group metadata), KIP-794.

mod accumulator;
mod batch;
mod config;
mod message;
pub mod partitioner;
mod sender;
mod transaction;
mod txn_errors;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, Semaphore};

use self::accumulator::{record_size_bound, Accumulator, Limits};
pub use self::config::{Acks, ProducerConfig};
pub use self::message::{BatchDelivery, Delivery, Record, RecordMetadata};
pub use self::partitioner::{DefaultPartitioner, Partitioner, StickyPartitioner};
pub use self::transaction::OffsetToCommit;
use crate::cluster::Client;
/// A consumer's group membership (defined with the coordinators, below the consumer and the
/// producer, which both use it).
pub use crate::cluster::GroupMetadata;
use crate::error::Error;

/// A Kafka producer. Cheap to clone; every clone feeds the same batches and sender task. The
/// sender stops once the last clone is dropped and what was buffered has been sent; call
/// [`close`](Producer::close) to wait for that.
#[derive(Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("transactional_id", &self.shared().config.transactional_id)
            .finish_non_exhaustive()
    }
}

struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

/// A producer's buffer now ([`Producer::buffer_statistics`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferStatistics {
    /// `buffer.memory`.
    pub buffer_memory: usize,
    /// The part of it records hold now (not yet acknowledged).
    pub buffered_bytes: usize,
    /// Batches still taking records.
    pub open_batches: usize,
    /// Batches closed, waiting to be sent (or sent again).
    pub queued_batches: usize,
    /// Batches sent, not yet answered.
    pub in_flight_batches: usize,
    /// Batches compressed while they waited for a request, beside the sender's own
    /// (`compression.threads`), since the producer started.
    pub batches_built_ahead: u64,
}

/// A `send` that waits for room in `buffer.memory` or for its topic's partitions.
type Waiting<'a> = Pin<Box<dyn Future<Output = Result<Delivery, Error>> + Send + 'a>>;

/// Bytes of `buffer.memory` a record holds until it is appended; given back if dropped first.
struct Reserved<'a> {
    shared: &'a Shared,
    bytes: usize,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.shared.release(self.bytes);
        }
    }
}

/// What the producer's handles share with its sender task.
pub(crate) struct Shared {
    pub config: ProducerConfig,
    pub client: Client,
    pub acc: Mutex<Accumulator>,
    /// Wakes the sender: a batch opened or closed, a flush, close.
    pub wake: Notify,
    /// `buffer.memory`, in bytes.
    pub memory: Semaphore,
    pub closing: AtomicBool,
    /// Set when the sender task has stopped.
    pub stopped: Notify,
    pub sender_done: AtomicBool,
    /// An error that ends the producer (fenced).
    pub fatal: Mutex<Option<Error>>,
    /// Topics whose partitions `try_send` is looking up.
    pub looking_up: Mutex<std::collections::HashSet<String>>,
    /// Whether `fatal` is set (read on every send without taking the lock).
    pub has_fatal: AtomicBool,
    /// The largest record a batch can take (`max.request.size` less request overhead).
    pub max_batch: usize,
    /// Record timestamps.
    pub clock: Clock,
    pub txn: Option<transaction::Txn>,
}

impl Shared {
    pub fn acc(&self) -> MutexGuard<'_, Accumulator> {
        self.acc.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn looking_up(&self) -> MutexGuard<'_, std::collections::HashSet<String>> {
        self.looking_up.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn release(&self, bytes: usize) {
        if bytes > 0 {
            self.memory.add_permits(bytes);
        }
    }

    pub fn fatal(&self) -> Option<Error> {
        if !self.has_fatal.load(Ordering::Acquire) {
            return None;
        }
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_fatal(&self, error: Error) {
        let mut fatal = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        if fatal.is_none() {
            tracing::error!(error = %error, "producer stopped by a fatal error");
            *fatal = Some(error);
            self.has_fatal.store(true, Ordering::Release);
        }
    }
}

impl Producer {
    /// Connects to the cluster, takes a producer id if idempotent (a transactional producer
    /// takes its id in [`init_transactions`](Producer::init_transactions)), and starts the
    /// sender task. Must be called within a tokio runtime.
    pub async fn new(config: ProducerConfig) -> Result<Producer, Error> {
        config.validate()?;
        let mut client_config = config.client.clone();
        // A producer asks for a topic it writes to be created if the broker allows it.
        client_config.allow_auto_create_topics.get_or_insert(true);
        let client = Client::connect(client_config).await?;
        Producer::with_client(client, config).await
    }

    /// A producer over an existing client (its connections and metadata are shared).
    pub async fn with_client(client: Client, config: ProducerConfig) -> Result<Producer, Error> {
        config.validate()?;
        let limits = Limits {
            linger: config.linger,
            batch_size: config.batch_size,
            max_request_size: config.max_request_size,
            compression: config.compression,
            idempotent: config.is_idempotent(),
            transactional: config.transactional_id.is_some(),
            max_in_flight: config.max_in_flight,
        };
        let txn = config.transactional_id.clone().map(transaction::Txn::new);
        let limits_max_batch = limits.max_batch();
        let mut acc = Accumulator::new(limits);
        if config.idempotence && txn.is_none() {
            let id = transaction::init_producer_id(&client, None, (-1, -1), &config).await?;
            acc.reset_sequences(id);
        }
        let max_batch = limits_max_batch;
        let shared = Arc::new(Shared {
            has_fatal: AtomicBool::new(false),
            max_batch,
            clock: Clock::new(),
            memory: Semaphore::new(config.buffer_memory.min(Semaphore::MAX_PERMITS)),
            config,
            client,
            acc: Mutex::new(acc),
            wake: Notify::new(),
            closing: AtomicBool::new(false),
            stopped: Notify::new(),
            sender_done: AtomicBool::new(false),
            fatal: Mutex::new(None),
            looking_up: Mutex::default(),
            txn,
        });
        tokio::spawn(sender::run(shared.clone()));
        Ok(Producer {
            handle: Arc::new(Handle { shared }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// What the producer holds now: `buffer.memory` in use, and its batches by stage.
    pub fn buffer_statistics(&self) -> BufferStatistics {
        let shared = self.shared();
        let (open, queued, in_flight, built_ahead) = {
            let acc = shared.acc();
            let (open, queued, in_flight) = acc.batch_counts();
            (open, queued, in_flight, acc.built_ahead)
        };
        let limit = shared.config.buffer_memory.min(Semaphore::MAX_PERMITS);
        BufferStatistics {
            buffer_memory: limit,
            buffered_bytes: limit.saturating_sub(shared.memory.available_permits()),
            open_batches: open,
            queued_batches: queued,
            in_flight_batches: in_flight,
            batches_built_ahead: built_ahead,
        }
    }

    /// The cluster client underneath (metadata, admin operations, [`Client::statistics`]).
    pub fn client(&self) -> &Client {
        &self.shared().client
    }

    /// The settings.
    pub fn config(&self) -> &ProducerConfig {
        &self.shared().config
    }

    /// Copies `record` into its partition's batch. Waits only while `buffer.memory` is full, or
    /// to learn a topic's partitions the first time it is used. The returned [`Delivery`]
    /// resolves once the broker has acknowledged the record.
    pub fn send<'a>(
        &'a self,
        record: Record<'a>,
    ) -> impl Future<Output = Result<Delivery, Error>> + Send + 'a {
        // A future written by hand: the common case (room in `buffer.memory`, the topic's
        // partitions known) appends in the first poll, reading the record where the caller
        // put it; an `async fn` first moves it into its own state (5% of `send` in a
        // profile). Nothing is appended before the first poll, as with any future.
        let mut record = Some(record);
        let mut waiting: Option<Waiting<'a>> = None;
        std::future::poll_fn(move |cx| {
            if let Some(waiting) = &mut waiting {
                return waiting.as_mut().poll(cx);
            }
            // Read where it lies; forgotten once done, so that polled again the future panics
            // as an `async fn` does.
            let fast = record.as_ref().expect("`send` polled after it completed");
            let size = match self.check_record(fast) {
                Ok(size) => size,
                Err(e) => {
                    record = None;
                    return Poll::Ready(Err(e));
                }
            };
            let reserved = self.try_reserve(size);
            if reserved {
                if let Some(delivery) = self.append(fast, size) {
                    record = None;
                    return Poll::Ready(delivery);
                }
            }
            let record = record.take().expect("checked");
            waiting
                .insert(Box::pin(self.send_waiting(record, size, reserved)))
                .as_mut()
                .poll(cx)
        })
    }

    /// [`send`](Self::send) when the record must wait: for room in `buffer.memory` (unless
    /// `reserved`), or to learn its topic's partitions.
    async fn send_waiting(
        &self,
        record: Record<'_>,
        size: usize,
        reserved: bool,
    ) -> Result<Delivery, Error> {
        if !reserved {
            self.reserve(size).await?;
        }
        // Given back if the record is not appended: the lookup failed, or this future was
        // dropped while it waited for the lookup.
        let mut reserved = Reserved {
            shared: self.shared(),
            bytes: size,
        };
        loop {
            if let Some(delivery) = self.append(&record, size) {
                // Appended (its batch holds the bytes now), or failed and given back.
                reserved.bytes = 0;
                return delivery;
            }
            self.partition_count(record.topic).await?;
        }
    }

    /// [`send`](Self::send) that never waits (librdkafka's `produce`): when `buffer.memory` is
    /// full, or the topic's partitions are not known yet (they are then looked up in the
    /// background), it fails at once with [`Error::WouldBlock`], which the caller may retry
    /// later; nothing was buffered then.
    pub fn try_send(&self, record: Record<'_>) -> Result<Delivery, Error> {
        let size = self.check_record(&record)?;
        let shared = self.shared();
        let known = shared.acc().partitions(record.topic).is_some_and(|n| n > 0);
        if !known {
            self.look_up_in_background(record.topic);
            return Err(Error::WouldBlock {
                reason: "the topic's partitions are not known yet (being looked up)",
            });
        }
        if !self.try_reserve(size) {
            // The sender drains the buffer; the caller tries again later.
            shared.wake.notify_one();
            return Err(Error::WouldBlock {
                reason: "buffer.memory is full",
            });
        }
        match self.append(&record, size) {
            Some(delivery) => delivery,
            // Partition counts only grow: known above, known now.
            None => {
                shared.release(size);
                Err(Error::WouldBlock {
                    reason: "the topic's partitions are not known yet (being looked up)",
                })
            }
        }
    }

    /// Checks that the producer takes records and that this one fits; its reserved size.
    fn check_record(&self, record: &Record<'_>) -> Result<usize, Error> {
        self.check_open()?;
        let size = record_size_bound(record.key, record.value, &record.headers);
        if size > self.shared().max_batch {
            return Err(self.too_large(size));
        }
        Ok(size)
    }

    /// Appends a record whose `size` is reserved in `buffer.memory` (released if it fails);
    /// `None` if the topic's partitions are not known (still reserved).
    fn append(&self, record: &Record<'_>, size: usize) -> Option<Result<Delivery, Error>> {
        let shared = self.shared();
        // One clock read, for the timestamp and (if it opens a batch) the linger; none for a
        // record with a timestamp of its own.
        let (timestamp, now) = match record.timestamp {
            Some(t) => (t, None),
            None => {
                let now = Instant::now();
                (shared.clock.millis(now), Some(now))
            }
        };
        // One lock for the common case: the topic's partitions are known.
        let appended = {
            let mut acc = shared.acc();
            match acc.partitions(record.topic) {
                Some(partitions) if partitions > 0 => self.place(
                    &mut acc,
                    record.topic,
                    record,
                    partitions,
                    (size, timestamp, now),
                ),
                _ => return None,
            }
        };
        Some(match appended {
            Ok(appended) => {
                if appended.wake {
                    shared.wake.notify_one();
                }
                Ok(Delivery {
                    outcome: appended.outcome,
                    partition: appended.partition,
                    offset_delta: appended.offset_delta,
                })
            }
            Err(e) => {
                shared.release(size);
                Err(e)
            }
        })
    }

    /// Looks `topic`'s partitions up on a task of its own (one at a time per topic).
    fn look_up_in_background(&self, topic: &str) {
        let shared = self.handle.shared.clone();
        if !shared.looking_up().insert(topic.to_owned()) {
            return;
        }
        let topic = topic.to_owned();
        tokio::spawn(async move {
            match shared.client.partition_count(&topic).await {
                Ok(count) => shared.acc().set_partitions(&topic, count),
                Err(e) => {
                    tracing::debug!(%topic, error = %e, "partition lookup for try_send failed")
                }
            }
            shared.looking_up().remove(&topic);
        });
    }

    /// Hands in many records of one topic at once: one lock, one metadata lookup, records
    /// encoded straight into their partitions' batches. The fused path for whole batches; each
    /// record's `topic` is ignored.
    pub async fn send_batch<'a>(
        &self,
        topic: &str,
        records: impl IntoIterator<Item = Record<'a>>,
    ) -> Result<BatchDelivery, Error> {
        let shared = self.shared();
        self.check_open()?;
        let partitions = self.partition_count(topic).await?;
        let mut delivery = BatchDelivery::default();
        let mut records = records.into_iter();
        let now = shared.clock.millis(Instant::now());
        loop {
            let (waiting_for, wake) =
                self.append_all(topic, &mut records, partitions, now, &mut delivery)?;
            if wake {
                shared.wake.notify_one();
            }
            let Some(record) = waiting_for else {
                break;
            };
            // buffer.memory is full: wait for room like `send` does, then go on.
            let delivered = Box::pin(self.send(Record { topic, ..record })).await?;
            delivery.outcomes.push(delivered.outcome);
            delivery.records += 1;
        }
        delivery.outcomes.sort_by_key(|o| Arc::as_ptr(o) as usize);
        delivery.outcomes.dedup_by(|a, b| Arc::ptr_eq(a, b));
        Ok(delivery)
    }

    /// Appends records under one lock until they run out or `buffer.memory` does; returns the
    /// record that found no room, and whether the sender should look now.
    fn append_all<'a>(
        &self,
        topic: &str,
        records: &mut impl Iterator<Item = Record<'a>>,
        partitions: i32,
        now: i64,
        delivery: &mut BatchDelivery,
    ) -> Result<(Option<Record<'a>>, bool), Error> {
        let shared = self.shared();
        let mut acc = shared.acc();
        let mut wake = false;
        let appended_at = Instant::now();
        for record in records {
            let timestamp = record.timestamp.unwrap_or(now);
            let size = record_size_bound(record.key, record.value, &record.headers);
            if size > shared.max_batch {
                return Err(self.too_large(size));
            }
            match shared.memory.try_acquire_many(size as u32) {
                Ok(permit) => permit.forget(),
                Err(_) => return Ok((Some(record), wake)),
            }
            let result = self.place(
                &mut acc,
                topic,
                &record,
                partitions,
                (size, timestamp, Some(appended_at)),
            );
            match result {
                Ok(appended) => {
                    wake |= appended.wake;
                    if delivery
                        .outcomes
                        .last()
                        .is_none_or(|o| !Arc::ptr_eq(o, &appended.outcome))
                    {
                        delivery.outcomes.push(appended.outcome);
                    }
                    delivery.records += 1;
                }
                Err(e) => {
                    shared.release(size);
                    if wake {
                        shared.wake.notify_one();
                    }
                    return Err(e);
                }
            }
        }
        Ok((None, wake))
    }

    /// Sends every batch now, whatever its linger, and waits until each record handed in before
    /// this call has been answered (acknowledged or failed; each [`Delivery`] tells which).
    pub async fn flush(&self) -> Result<(), Error> {
        let outcomes = self.shared().acc().flush();
        self.shared().wake.notify_one();
        for outcome in outcomes {
            let _ = outcome.wait().await;
        }
        match self.shared().fatal() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Flushes, then stops the sender. Later sends fail with [`Error::ProducerClosed`].
    pub async fn close(&self) -> Result<(), Error> {
        let flushed = self.flush().await;
        let shared = self.shared();
        shared.closing.store(true, Ordering::Release);
        loop {
            let stopped = shared.stopped.notified();
            tokio::pin!(stopped);
            stopped.as_mut().enable();
            if shared.sender_done.load(Ordering::Acquire) {
                break;
            }
            shared.wake.notify_one();
            stopped.await;
        }
        flushed
    }

    /// The error that stopped this producer, if one did (fenced by a newer producer with its
    /// `transactional.id`, a protocol violation, …): it can only be closed. After any other
    /// failed transaction call the transaction is aborted and the producer goes on.
    pub fn fatal_error(&self) -> Option<Error> {
        self.shared().fatal()
    }

    fn check_open(&self) -> Result<(), Error> {
        let shared = self.shared();
        if let Some(e) = shared.fatal() {
            return Err(e);
        }
        if shared.closing.load(Ordering::Acquire) {
            return Err(Error::ProducerClosed);
        }
        if let Some(txn) = &shared.txn {
            txn.check_can_send()?;
        }
        Ok(())
    }

    fn too_large(&self, size: usize) -> Error {
        Error::RecordTooLarge {
            size,
            setting: "max.request.size",
            limit: self.shared().config.max_request_size,
        }
    }

    /// Takes `size` bytes of `buffer.memory` if they are free now.
    fn try_reserve(&self, size: usize) -> bool {
        u32::try_from(size)
            .ok()
            .and_then(|permits| self.shared().memory.try_acquire_many(permits).ok())
            .map(|permit| permit.forget())
            .is_some()
    }

    /// Waits for `size` bytes of `buffer.memory` and takes them; called once
    /// [`try_reserve`](Self::try_reserve) found no room.
    async fn reserve(&self, size: usize) -> Result<(), Error> {
        let memory = &self.shared().memory;
        let permits = u32::try_from(size).map_err(|_| Error::RecordTooLarge {
            size,
            setting: "buffer.memory",
            limit: u32::MAX as usize,
        })?;
        // Wake the sender so the buffer drains, then wait for room (taken at once if some
        // came back meanwhile).
        self.shared().wake.notify_one();
        memory
            .acquire_many(permits)
            .await
            .map_err(|_| Error::ProducerClosed)?
            .forget();
        Ok(())
    }

    /// How many partitions `topic` has (from metadata, fetched if not known yet).
    pub async fn partition_count(&self, topic: &str) -> Result<i32, Error> {
        let shared = self.shared();
        if let Some(n) = shared.acc().partitions(topic) {
            if n > 0 {
                return Ok(n);
            }
        }
        let count = shared.client.partition_count(topic).await?;
        shared.acc().set_partitions(topic, count);
        Ok(count)
    }

    /// Chooses the record's partition and appends it there. `at` is the record's reserved
    /// size, its timestamp, and the time of the append.
    fn place(
        &self,
        acc: &mut Accumulator,
        topic: &str,
        record: &Record<'_>,
        partitions: i32,
        at: (usize, i64, Option<Instant>),
    ) -> Result<accumulator::Appended, Error> {
        let (size, timestamp, now) = at;
        let partition =
            self.choose_partition(acc, topic, record.partition, record.key, partitions, size)?;
        acc.append(
            topic,
            partition,
            timestamp,
            record.key,
            record.value,
            &record.headers,
            size,
            now,
        )
    }

    fn choose_partition(
        &self,
        acc: &mut Accumulator,
        topic: &str,
        explicit: Option<i32>,
        key: Option<&[u8]>,
        partitions: i32,
        size: usize,
    ) -> Result<i32, Error> {
        let partition = match explicit {
            Some(p) => p,
            None => match self
                .shared()
                .config
                .partitioner
                .partition(topic, key, partitions)
            {
                Some(p) => p,
                None => acc
                    .sticky_partition(topic, size)
                    .ok_or_else(|| Error::UnknownInMetadata(format!("topic {topic}")))?,
            },
        };
        if !(0..partitions).contains(&partition) {
            return Err(Error::UnknownInMetadata(format!(
                "partition {partition} of topic {topic} (it has {partitions})"
            )));
        }
        Ok(partition)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Wall-clock milliseconds from a monotonic reading: one clock read per record serves both the
/// record's timestamp and the batch's linger. The sender task re-reads the wall clock on every
/// turn of its loop, so a stepped system clock is followed within a tick.
pub(crate) struct Clock {
    base: Instant,
    /// Wall-clock milliseconds at `base`, as last measured.
    base_ms: std::sync::atomic::AtomicI64,
}

impl Clock {
    fn new() -> Clock {
        let clock = Clock {
            base: Instant::now(),
            base_ms: std::sync::atomic::AtomicI64::new(0),
        };
        clock.resync();
        clock
    }

    /// Measures the wall clock against the monotonic one again.
    pub fn resync(&self) {
        let mono = Instant::now()
            .saturating_duration_since(self.base)
            .as_millis() as i64;
        self.base_ms.store(now_ms() - mono, Ordering::Relaxed);
    }

    /// Milliseconds since the epoch at `now`.
    pub fn millis(&self, now: Instant) -> i64 {
        self.base_ms.load(Ordering::Relaxed)
            + now.saturating_duration_since(self.base).as_millis() as i64
    }
}
