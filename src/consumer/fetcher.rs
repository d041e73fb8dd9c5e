//! The fetcher task: one fetch in flight per broker for all of that broker's assigned
//! partitions, the next one sent as soon as the previous answer is in (while the application
//! works on it), incremental fetch sessions, and decoding on the runtime's worker threads.
//!
//! Positions here are *fetch* positions: they move when an answer arrives, before its records
//! are decoded or consumed. Each partition carries an epoch, bumped by every seek or
//! reassignment, so records fetched before a seek are recognised and dropped.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::aborted::AbortedFilter;
use super::config::{ConsumerConfig, IsolationLevel, OffsetReset};
use super::decode::{records_error, Buffer, Pending};
use super::session::{FetchSession, Target};
use super::Offset;
use crate::cluster::{millis_i32, Client, OffsetSpec, Topics};
use crate::error::{Action, Error, KafkaCode};
use crate::record::{DecodeOptions, RecordBatches};
use crate::wire::fetch::FetchResponse;
use crate::wire::{by_topic, encode_request, topic_name, ApiKey, FrameCodec};

/// The highest Fetch version the fetcher sends: v13+ names topics by id.
const MAX_FETCH_VERSION: i16 = 12;
const OFFSET_OUT_OF_RANGE: i16 = 1;
/// How often the fetcher looks again when nothing wakes it (retries, resets).
const TICK: Duration = Duration::from_millis(100);

/// A partition, by topic and index.
pub(crate) type Tp = (Arc<str>, i32);

/// What the consumer asks of the fetcher.
#[derive(Debug)]
pub(crate) enum Command {
    /// Fetch these partitions from these starting points (replacing any earlier assignment).
    Assign(Vec<(Tp, Offset, u64)>),
    /// Also fetch these partitions (a group assigned them).
    Add(Vec<(Tp, Offset, u64)>),
    /// Stop fetching these partitions.
    Unassign(Vec<Tp>),
    /// Start again from `Offset`, under epoch `u64`.
    Seek(Tp, Offset, u64),
    /// Stop or restart fetching a partition.
    Pause(Tp, bool),
}

/// A fetch's worth of one partition, decoding (or decoded) in the background. Handed to the
/// consumer in the order the answers arrived, so each partition's order holds.
pub(crate) enum Chunk {
    Decoding(JoinHandle<Pending>),
    /// A partition failed in a way the application must hear about (reset policy `error`).
    Failed(Error),
    /// The partition's fetch position reached its end (high watermark, or last stable offset
    /// under read_committed), at this offset.
    End(Tp, u64, i64),
}

struct PartitionState {
    epoch: u64,
    /// The next offset to fetch; `None` while it is being looked up.
    offset: Option<i64>,
    /// Where to start, when `offset` is `None`.
    start: Offset,
    paused: bool,
    /// Bytes to ask for; grows if a batch is larger than the partition limit.
    max_bytes: i32,
    /// A fetch naming this partition is in flight.
    in_flight: bool,
    /// No retry before this time (after an error).
    retry_at: Option<tokio::time::Instant>,
    /// Start this many records before the end, as the next fetch answer reports the end. The
    /// end comes from the fetch's high watermark (or last stable offset), which every broker
    /// reports exactly, rather than from ListOffsets alone, which some (tansu) answer with the
    /// last batch's base offset + 1.
    snap: Option<i64>,
    /// The end was reported and nothing new has arrived since.
    at_end: bool,
    /// Failed fetches in a row, for the retry backoff.
    failures: u32,
}

impl PartitionState {
    /// Backs off after a failed fetch: `retry.backoff.ms`, doubling with each failure in a row
    /// up to `retry.backoff.max.ms`.
    fn failed(&mut self, config: &ConsumerConfig, now: tokio::time::Instant) {
        let backoff = config
            .client
            .retry_backoff
            .saturating_mul(1 << self.failures.min(16))
            .min(
                config
                    .client
                    .retry_backoff_max
                    .max(config.client.retry_backoff),
            );
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + backoff);
    }
}

type InFlight =
    Pin<Box<dyn Future<Output = (i32, Vec<(Tp, u64, i64)>, Result<FetchResponse, Error>)> + Send>>;

/// The fetcher task. Ends when the consumer is dropped (its command channel closes).
pub(crate) async fn run(
    client: Client,
    config: ConsumerConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    chunks: mpsc::Sender<Chunk>,
    buffer: Arc<Buffer>,
) {
    let mut parts: HashMap<Tp, PartitionState> = HashMap::new();
    let mut sessions: HashMap<i32, FetchSession> = HashMap::new();
    let mut in_flight: FuturesUnordered<InFlight> = FuturesUnordered::new();
    let mut busy: HashMap<i32, bool> = HashMap::new();
    let decode_options = DecodeOptions {
        max_decompressed: config.max_decompressed,
    };
    loop {
        // Apply every command already sent before deciding what to fetch.
        loop {
            match commands.try_recv() {
                Ok(command) => apply(&mut parts, command, &config),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        // Offsets to look up: a start that is not an exact offset.
        resolve_starts(&client, &config, &mut parts, &chunks).await;
        // Commands that came in meanwhile (a pause, a seek) count before anything is fetched.
        loop {
            match commands.try_recv() {
                Ok(command) => apply(&mut parts, command, &config),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        // One fetch per broker without one in flight, while the buffer has room.
        if buffer.has_room() {
            let metadata = client.metadata();
            let now = tokio::time::Instant::now();
            let mut by_broker: HashMap<i32, Vec<Target>> = HashMap::new();
            let mut need_metadata = Vec::new();
            for (tp, state) in parts.iter() {
                let (Some(offset), false) = (state.offset, state.paused) else {
                    continue;
                };
                if state.in_flight || state.retry_at.is_some_and(|t| t > now) {
                    continue;
                }
                match metadata.leader(&tp.0, tp.1) {
                    Some(leader) => by_broker.entry(leader.id).or_default().push(Target {
                        topic: tp.0.clone(),
                        partition: tp.1,
                        offset,
                        max_bytes: state.max_bytes,
                    }),
                    None => need_metadata.push(tp.0.to_string()),
                }
            }
            if !need_metadata.is_empty() {
                need_metadata.sort();
                need_metadata.dedup();
                let names: Vec<&str> = need_metadata.iter().map(String::as_str).collect();
                if let Err(e) = client.refresh_metadata(Topics::Only(&names)).await {
                    tracing::debug!(error = %e, "metadata refresh for the fetcher failed");
                    if e.action() == Action::Fatal {
                        let now = tokio::time::Instant::now();
                        for (tp, state) in parts.iter_mut() {
                            if need_metadata.iter().any(|t| **t == *tp.0) {
                                state.failed(&config, now);
                            }
                        }
                        if chunks.send(Chunk::Failed(e)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            for (broker, mut targets) in by_broker {
                if *busy.get(&broker).unwrap_or(&false) {
                    continue;
                }
                targets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
                let plan = sessions.entry(broker).or_default().plan(&targets);
                let epochs: Vec<(Tp, u64, i64)> = targets
                    .iter()
                    .map(|t| {
                        let tp = (t.topic.clone(), t.partition);
                        let state = parts.get_mut(&tp).expect("targets come from parts");
                        state.in_flight = true;
                        (tp, state.epoch, t.offset)
                    })
                    .collect();
                busy.insert(broker, true);
                let request = fetch_request(&config, &plan);
                let client = client.clone();
                let wait = config.fetch_max_wait;
                in_flight.push(Box::pin(async move {
                    let result = send_fetch(&client, broker, &request, wait).await;
                    (broker, epochs, result)
                }));
            }
        }
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => apply(&mut parts, command, &config),
                None => return,
            },
            Some((broker, epochs, result)) = in_flight.next(), if !in_flight.is_empty() => {
                busy.insert(broker, false);
                let session = sessions.entry(broker).or_default();
                match &result {
                    Ok(response) => session.answered(response.error_code, response.session_id),
                    Err(_) => session.failed(),
                }
                let outcome = handle_response(
                    &client, &config, &mut parts, epochs, result, &buffer, &decode_options,
                );
                for chunk in outcome {
                    if chunks.send(chunk).await.is_err() {
                        return;
                    }
                }
            }
            () = buffer.freed.notified() => {}
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

fn apply(parts: &mut HashMap<Tp, PartitionState>, command: Command, config: &ConsumerConfig) {
    let new = |start: Offset, epoch: u64| PartitionState {
        epoch,
        offset: match start {
            Offset::At(o) => Some(o),
            _ => None,
        },
        start,
        paused: false,
        max_bytes: config.max_partition_fetch_bytes,
        in_flight: false,
        retry_at: None,
        at_end: false,
        snap: None,
        failures: 0,
    };
    match command {
        Command::Assign(list) => {
            parts.clear();
            for (tp, start, epoch) in list {
                parts.insert(tp, new(start, epoch));
            }
        }
        Command::Add(list) => {
            for (tp, start, epoch) in list {
                parts.insert(tp, new(start, epoch));
            }
        }
        Command::Unassign(list) => {
            for tp in list {
                parts.remove(&tp);
            }
        }
        Command::Seek(tp, start, epoch) => {
            if let Some(state) = parts.get_mut(&tp) {
                let paused = state.paused;
                let in_flight = state.in_flight;
                *state = new(start, epoch);
                state.paused = paused;
                state.in_flight = in_flight;
            }
        }
        Command::Pause(tp, paused) => {
            if let Some(state) = parts.get_mut(&tp) {
                state.paused = paused;
            }
        }
    }
}

/// Looks up the offsets of partitions that start at the beginning, the end, a timestamp, or
/// (with no committed offset) the reset policy.
async fn resolve_starts(
    client: &Client,
    config: &ConsumerConfig,
    parts: &mut HashMap<Tp, PartitionState>,
    chunks: &mpsc::Sender<Chunk>,
) {
    let mut wanted: HashMap<(Arc<str>, OffsetSpec), Vec<i32>> = HashMap::new();
    let now = tokio::time::Instant::now();
    for (tp, state) in parts.iter() {
        if state.offset.is_some() || state.retry_at.is_some_and(|t| t > now) {
            continue;
        }
        let spec = match state.start {
            Offset::At(_) => continue,
            Offset::Beginning => OffsetSpec::Earliest,
            Offset::End | Offset::FromEnd(_) => OffsetSpec::Latest,
            Offset::Timestamp(ts) => OffsetSpec::Timestamp(ts),
            Offset::Reset => match config.auto_offset_reset {
                OffsetReset::Earliest => OffsetSpec::Earliest,
                OffsetReset::Latest => OffsetSpec::Latest,
                OffsetReset::Error => continue,
            },
        };
        wanted.entry((tp.0.clone(), spec)).or_default().push(tp.1);
    }
    // Partitions told to fail rather than reset.
    let failing: Vec<Tp> = parts
        .iter()
        .filter(|(_, s)| {
            s.offset.is_none()
                && s.start == Offset::Reset
                && config.auto_offset_reset == OffsetReset::Error
        })
        .map(|(tp, _)| tp.clone())
        .collect();
    for tp in failing {
        parts.remove(&tp);
        let error = Error::kafka(
            KafkaCode(OFFSET_OUT_OF_RANGE),
            format!(
                "{}-{}: no offset to start from, and auto.offset.reset=error",
                tp.0, tp.1
            ),
            None,
        );
        let _ = chunks.send(Chunk::Failed(error)).await;
    }
    for ((topic, spec), partitions) in wanted {
        let committed = config.isolation_level == IsolationLevel::ReadCommitted;
        match client
            .list_offsets_isolated(&topic, &partitions, spec, committed)
            .await
        {
            Ok(listed) => {
                for o in listed {
                    if let Some(state) = parts.get_mut(&(topic.clone(), o.partition)) {
                        // A timestamp past the last record resolves to the end.
                        state.offset = Some(if o.offset < 0 { i64::MAX } else { o.offset });
                        if spec == OffsetSpec::Latest {
                            state.snap = Some(match state.start {
                                Offset::FromEnd(n) => n.max(0),
                                _ => 0,
                            });
                        }
                    }
                }
                // i64::MAX above is "the end": look it up.
                for p in &partitions {
                    if let Some(state) = parts.get_mut(&(topic.clone(), *p)) {
                        if state.offset == Some(i64::MAX) {
                            state.offset = None;
                            state.start = Offset::End;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::debug!(topic = %topic, error = %e, "offset lookup failed; retrying");
                for p in &partitions {
                    if let Some(state) = parts.get_mut(&(topic.clone(), *p)) {
                        state.failed(config, now);
                    }
                }
                if e.action() == Action::Fatal {
                    let _ = chunks.send(Chunk::Failed(e)).await;
                }
            }
        }
    }
}

fn fetch_request(config: &ConsumerConfig, plan: &super::session::Plan) -> FetchRequest {
    let topics: Vec<FetchTopic> = by_topic(plan.partitions.iter().map(|t| {
        let p = FetchPartition::default()
            .with_partition(t.partition)
            .with_current_leader_epoch(-1)
            .with_fetch_offset(t.offset)
            .with_last_fetched_epoch(-1)
            .with_log_start_offset(-1)
            .with_partition_max_bytes(t.max_bytes);
        (&*t.topic, p)
    }))
    .into_iter()
    .map(|(topic, partitions)| {
        FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(partitions)
    })
    .collect();
    let forgotten: Vec<ForgottenTopic> = by_topic(plan.forgotten.iter().map(|(t, p)| (&**t, *p)))
        .into_iter()
        .map(|(topic, partitions)| {
            ForgottenTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(partitions)
        })
        .collect();
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(millis_i32(config.fetch_max_wait))
        .with_min_bytes(config.fetch_min_bytes)
        .with_max_bytes(config.fetch_max_bytes)
        .with_isolation_level(config.isolation_level.wire())
        .with_session_id(plan.session_id)
        .with_session_epoch(plan.epoch)
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten)
        .with_rack_id(StrBytes::from_string(
            config.client_rack.clone().unwrap_or_default(),
        ))
}

async fn send_fetch(
    client: &Client,
    broker: i32,
    request: &FetchRequest,
    wait: Duration,
) -> Result<FetchResponse, Error> {
    let conn = client.broker(broker).await?;
    let version = conn.version(ApiKey::Fetch)?.min(MAX_FETCH_VERSION);
    let codec = FrameCodec::new(i32::MAX as usize);
    // A long poll: the broker may hold the request for `wait` on top of the request timeout.
    let timeout = client.config().request_timeout + wait;
    let frame = conn
        .roundtrip(ApiKey::Fetch, version, timeout, |h, dst| {
            encode_request(&codec, h, request, dst)
        })
        .await?;
    let (_, response) =
        FetchResponse::decode_frame(version, &frame).map_err(|e| conn.protocol_error(e))?;
    Ok(response)
}

/// Moves positions on and starts decoding what a fetch returned.
#[allow(clippy::too_many_arguments)]
fn handle_response(
    client: &Client,
    config: &ConsumerConfig,
    parts: &mut HashMap<Tp, PartitionState>,
    epochs: Vec<(Tp, u64, i64)>,
    result: Result<FetchResponse, Error>,
    buffer: &Arc<Buffer>,
    options: &DecodeOptions,
) -> Vec<Chunk> {
    // The broker's fetch is over, whatever epoch each partition is in now.
    for (tp, _, _) in &epochs {
        if let Some(state) = parts.get_mut(tp) {
            state.in_flight = false;
        }
    }
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            let now = tokio::time::Instant::now();
            for (tp, _, _) in &epochs {
                if let Some(state) = parts.get_mut(tp) {
                    state.in_flight = false;
                    state.failed(config, now);
                }
            }
            if matches!(e.action(), Action::RefreshMetadata | Action::Reconnect) {
                tracing::debug!(error = %e, "fetch failed");
                refresh_later(
                    client,
                    epochs.iter().map(|(tp, _, _)| tp.0.to_string()).collect(),
                );
                return Vec::new();
            }
            // Retrying cannot fix it (a response that breaks the protocol, an unsupported
            // version): the application hears of every such failure, and the partitions back
            // off further each time instead of asking ten times a second.
            tracing::warn!(error = %e, "fetch failed");
            return vec![Chunk::Failed(e)];
        }
    };
    let mut chunks = Vec::new();
    let mut refresh = Vec::new();
    for topic in response.topics {
        for p in topic.partitions {
            let tp: Tp = (Arc::from(topic.name.as_str()), p.partition_index);
            let Some(&(_, epoch, fetched_at)) = epochs.iter().find(|(t, _, _)| *t == tp) else {
                continue;
            };
            let Some(state) = parts.get_mut(&tp) else {
                continue; // unassigned meanwhile
            };
            if state.epoch != epoch {
                continue; // seeked meanwhile: these records are from before
            }
            if p.error_code != 0 {
                let code = KafkaCode(p.error_code);
                if p.error_code == OFFSET_OUT_OF_RANGE {
                    tracing::info!(topic = %tp.0, partition = tp.1, offset = fetched_at, "offset out of range; resetting");
                    state.offset = None;
                    state.start = Offset::Reset;
                    continue;
                }
                if code.action() == Action::RefreshMetadata {
                    refresh.push(tp.0.to_string());
                }
                tracing::debug!(topic = %tp.0, partition = tp.1, error = %code, "fetch error");
                state.retry_at = Some(tokio::time::Instant::now() + config.client.retry_backoff);
                continue;
            }
            state.failures = 0;
            let end = match config.isolation_level {
                IsolationLevel::ReadCommitted if p.last_stable_offset >= 0 => p.last_stable_offset,
                _ => p.high_watermark,
            };
            if let Some(before_end) = state.snap.take() {
                let log_start = p.log_start_offset.max(0);
                let target = (end - before_end).max(log_start);
                if target != fetched_at {
                    // Fetch again from where the end says to start; drop these records.
                    state.offset = Some(target);
                    continue;
                }
            }
            if p.records.is_empty() {
                if fetched_at >= end && !state.at_end {
                    state.at_end = true;
                    chunks.push(Chunk::End(tp, epoch, fetched_at));
                }
                continue;
            }
            // Where the next fetch starts: after the last complete batch.
            let mut next = fetched_at;
            let mut raw = Vec::new();
            let mut batches = RecordBatches::new(p.records.clone());
            for batch in batches.by_ref() {
                match batch {
                    Ok(b) => {
                        next = next.max(b.header().next_offset());
                        raw.push(b);
                    }
                    Err(e) => {
                        // A corrupt batch: tell the application, and do not move on.
                        chunks.push(Chunk::Failed(records_error(&tp, e)));
                        raw.clear();
                        break;
                    }
                }
            }
            if raw.is_empty() {
                if batches.partial().is_some() && state.max_bytes < config.fetch_max_bytes {
                    // A batch larger than we asked for: ask for more next time.
                    state.max_bytes = state
                        .max_bytes
                        .saturating_mul(2)
                        .min(config.fetch_max_bytes);
                }
                continue;
            }
            state.offset = Some(next);
            let aborted = p
                .aborted_transactions
                .unwrap_or_default()
                .into_iter()
                .map(|a| (a.producer_id, a.first_offset));
            let filter = (config.isolation_level == IsolationLevel::ReadCommitted)
                .then(|| AbortedFilter::new(aborted));
            let reached_end = next >= end;
            state.at_end = reached_end;
            let raw_bytes = p.records.len();
            let mut pending = Pending::new(
                tp.clone(),
                epoch,
                p.high_watermark,
                fetched_at,
                raw,
                filter,
                buffer.take(raw_bytes),
            );
            let (buffer, options) = (buffer.clone(), *options);
            chunks.push(Chunk::Decoding(tokio::spawn(async move {
                pending.decode_while_room(&buffer, &options);
                pending
            })));
            if reached_end {
                chunks.push(Chunk::End(tp, epoch, next));
            }
        }
    }
    if !refresh.is_empty() {
        refresh_later(client, refresh);
    }
    chunks
}

fn refresh_later(client: &Client, mut topics: Vec<String>) {
    topics.sort();
    topics.dedup();
    let client = client.clone();
    tokio::spawn(async move {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(e) = client.refresh_metadata(Topics::Only(&names)).await {
            tracing::debug!(error = %e, "metadata refresh after a fetch error failed");
        }
    });
}
