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

mod response;
mod starts;

use super::config::ConsumerConfig;
use super::decode::{Buffer, Pending};
use super::session::{FetchSession, Target};
use super::Offset;
use crate::cluster::{millis_i32, Client, ClusterMetadata, Topics};
use crate::error::codes::{INCONSISTENT_TOPIC_ID, OFFSET_OUT_OF_RANGE, UNKNOWN_TOPIC_ID};
use crate::error::{Action, Error};
use crate::record::DecodeOptions;
use crate::wire::fetch::FetchResponse;
use crate::wire::{by_topic, encode_request, topic_name, ApiKey, FrameCodec};
use response::handle_response;
use starts::{finish_lookup, start_lookups, Lookup};

/// The highest Fetch version the fetcher sends. v13+ names topics by id (KIP-516): it is used
/// only when every topic of the request has an id in the metadata, v12 otherwise (as Java's
/// `FetchRequest.Builder` falls back when a topic id is unknown).
const MAX_FETCH_VERSION: i16 = 16;
/// The last Fetch version that names topics.
const LAST_FETCH_BY_NAME: i16 = 12;
/// How often the fetcher looks again when nothing wakes it (retries, resets).
const TICK: Duration = Duration::from_millis(100);

/// A partition, by topic and index.
pub(crate) type Tp = (Arc<str>, i32);

/// A partition to fetch, from where, under which epoch (the consumer's seek count), and the
/// leader epoch of the record before the start if known (a committed offset's, KIP-320: -1
/// otherwise).
#[derive(Debug)]
pub(crate) struct Start {
    pub tp: Tp,
    pub offset: Offset,
    pub epoch: u64,
    pub leader_epoch: i32,
}

/// What the consumer asks of the fetcher.
#[derive(Debug)]
pub(crate) enum Command {
    /// Fetch these partitions from these starting points (replacing any earlier assignment).
    Assign(Vec<Start>),
    /// Also fetch these partitions (a group assigned them).
    Add(Vec<Start>),
    /// Stop fetching these partitions.
    Unassign(Vec<Tp>),
    /// Start again from `Offset`, under epoch `u64`.
    Seek(Tp, Offset, u64),
    /// Stop or restart fetching a partition.
    Pause(Tp, bool),
    /// The application was handed a failure for this partition (in this epoch): back off
    /// before fetching it again, longer each time.
    Backoff(Tp, u64),
    /// The consumer closes: close every fetch session at its broker, then stop.
    Close(tokio::sync::oneshot::Sender<()>),
}

/// A fetch's worth of one partition, decoding (or decoded) in the background. Handed to the
/// consumer in the order the answers arrived, so each partition's order holds.
pub(crate) enum Chunk {
    Decoding(JoinHandle<Pending>),
    /// A failure the application must hear about (a partition that cannot start under
    /// `auto.offset.reset=error`, an error retrying cannot fix), for the partition and epoch it
    /// concerns if it concerns one: the consumer drops it if that partition was seeked or
    /// given up since.
    Failed(Error, Option<(Tp, u64)>),
    /// The partition's fetch position reached its end (high watermark, or last stable offset
    /// under read_committed), at this offset.
    End(Tp, u64, i64),
    /// The log was truncated below the position (an unclean election, KIP-320): reading goes
    /// on from this offset, the first that diverged.
    Truncated(Tp, u64, i64),
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
    /// Its offset lookup is under way.
    looking_up: bool,
    /// Its end (high watermark, or last stable offset under read_committed) as the last answer
    /// that named it said: an incremental answer leaves out partitions whose end did not move.
    end: Option<i64>,
    /// The leader epoch of the last batch fetched (-1 if unknown): sent with each fetch, so the
    /// broker can say where its log and ours diverge (KIP-320).
    last_fetched_epoch: i32,
    /// Not fetched until the application seeks: it was told the partition cannot go on
    /// (truncation under `auto.offset.reset=none`, no offset to start from).
    halted: bool,
    /// The id of the topic the position belongs to (KIP-516; 0 while unknown).
    topic_id: u128,
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

/// A fetch's answer: the broker, each partition asked for (with its epoch and fetch offset),
/// whether the request was incremental, and the response.
type Answer = (i32, Vec<(Tp, u64, i64)>, bool, Result<FetchResponse, Error>);
type InFlight = Pin<Box<dyn Future<Output = Answer> + Send>>;

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
    let mut lookups: FuturesUnordered<Lookup> = FuturesUnordered::new();
    // A metadata refresh for partitions with no known leader: one at a time, in the background.
    let mut refreshing: Option<JoinHandle<()>> = None;
    let decode_options = DecodeOptions {
        max_decompressed: config.max_decompressed,
    };
    loop {
        // Apply every command already sent before deciding what to fetch.
        loop {
            match commands.try_recv() {
                Ok(Command::Close(done)) => {
                    close_sessions(&client, &config, &mut sessions).await;
                    let _ = done.send(());
                    return;
                }
                Ok(command) => apply(&mut parts, command, &config),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        // Offsets to look up: a start that is not an exact offset (in the background).
        for chunk in start_lookups(&client, &config, &mut parts, &mut lookups) {
            if chunks.send(chunk).await.is_err() {
                return;
            }
        }
        // One fetch per broker without one in flight, while the buffer has room.
        if buffer.has_room() {
            let metadata = client.metadata();
            let now = tokio::time::Instant::now();
            let mut by_broker: HashMap<i32, Vec<Target>> = HashMap::new();
            let mut need_metadata = Vec::new();
            for (tp, state) in parts.iter_mut() {
                // A topic deleted and created again under the same name has a new id: the
                // position belongs to the old topic and means nothing in the new one, so the
                // partition starts over by the policy (`none` hands the application the
                // error), rather than take the new log for a truncated old one.
                let id = metadata.topic(&tp.0).map_or(0, |t| t.id);
                if id != 0 && state.topic_id != id {
                    if state.topic_id != 0 && state.offset.is_some() {
                        tracing::warn!(topic = %tp.0, partition = tp.1, policy = ?config.auto_offset_reset, "the topic was created again (new topic id); starting over by the policy");
                        state.offset = None;
                        state.start = Offset::Reset;
                        state.last_fetched_epoch = -1;
                    }
                    state.topic_id = id;
                }
                let (Some(offset), false, false) = (state.offset, state.paused, state.halted)
                else {
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
                        current_leader_epoch: metadata.leader_epoch(&tp.0, tp.1).unwrap_or(-1),
                        last_fetched_epoch: state.last_fetched_epoch,
                    }),
                    None => need_metadata.push(tp.0.to_string()),
                }
            }
            let idle = refreshing.as_ref().is_none_or(JoinHandle::is_finished);
            if !need_metadata.is_empty() && idle {
                need_metadata.sort();
                need_metadata.dedup();
                // Their partitions wait a backoff meanwhile (the others go on).
                for (tp, state) in parts.iter_mut() {
                    if need_metadata.iter().any(|t| **t == *tp.0) {
                        state.retry_at = Some(now + config.client.retry_backoff);
                    }
                }
                let (client, chunks) = (client.clone(), chunks.clone());
                refreshing = Some(tokio::spawn(async move {
                    let names: Vec<&str> = need_metadata.iter().map(String::as_str).collect();
                    if let Err(e) = client.refresh_metadata(Topics::Only(&names)).await {
                        tracing::debug!(error = %e, "metadata refresh for the fetcher failed");
                        if e.action() == Action::Fatal {
                            let _ = chunks.send(Chunk::Failed(e, None)).await;
                        }
                    }
                }));
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
                let request = fetch_request(&config, &plan, &client.metadata());
                let client = client.clone();
                let wait = config.fetch_max_wait;
                let incremental = !plan.full;
                in_flight.push(Box::pin(async move {
                    let result = send_fetch(&client, broker, &request, wait).await;
                    (broker, epochs, incremental, result)
                }));
            }
        }
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Close(done)) => {
                    close_sessions(&client, &config, &mut sessions).await;
                    let _ = done.send(());
                    return;
                }
                Some(command) => apply(&mut parts, command, &config),
                None => return,
            },
            Some((broker, epochs, incremental, result)) = in_flight.next(), if !in_flight.is_empty() => {
                busy.insert(broker, false);
                let session = sessions.entry(broker).or_default();
                match &result {
                    Ok(response) => {
                        session.answered(response.error_code, response.session_id);
                        // A topic id the broker does not know (the topic was deleted, or
                        // created again with a new id, KIP-516): the session holds the old id,
                        // so start a new one, which names every partition by its id then.
                        let stale_id = response.topics.iter().any(|t| {
                            t.partitions.iter().any(|p| {
                                matches!(p.error_code, UNKNOWN_TOPIC_ID | INCONSISTENT_TOPIC_ID)
                            })
                        });
                        if stale_id {
                            session.restart();
                        }
                    }
                    Err(_) => session.failed(),
                }
                // A session error answers no partition: they are fetched again in full.
                let incremental = incremental
                    && result.as_ref().is_ok_and(|r| r.error_code == 0);
                let outcome = handle_response(
                    &client, &config, &mut parts, (epochs, incremental), result, &buffer,
                    &decode_options,
                );
                for chunk in outcome {
                    if chunks.send(chunk).await.is_err() {
                        return;
                    }
                }
            }
            Some(looked) = lookups.next(), if !lookups.is_empty() => {
                for chunk in finish_lookup(&config, &mut parts, looked) {
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
        looking_up: false,
        end: None,
        last_fetched_epoch: -1,
        halted: false,
        topic_id: 0,
    };
    match command {
        Command::Assign(list) => {
            parts.clear();
            for start in list {
                let mut state = new(start.offset, start.epoch);
                state.last_fetched_epoch = start.leader_epoch;
                parts.insert(start.tp, state);
            }
        }
        Command::Add(list) => {
            for start in list {
                let mut state = new(start.offset, start.epoch);
                state.last_fetched_epoch = start.leader_epoch;
                parts.insert(start.tp, state);
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
                let failures = state.failures;
                let retry_at = state.retry_at;
                let end = state.end;
                *state = new(start, epoch);
                // Where the log ends does not change with the position.
                state.end = end;
                state.paused = paused;
                state.in_flight = in_flight;
                // A seek back to a batch that failed keeps its backoff (Command::Backoff
                // follows it); a seek elsewhere starts afresh.
                state.failures = failures;
                state.retry_at = retry_at.filter(|_| failures > 0);
            }
        }
        Command::Pause(tp, paused) => {
            if let Some(state) = parts.get_mut(&tp) {
                state.paused = paused;
            }
        }
        // Handled by the task loop before it gets here.
        Command::Close(_) => {}
        Command::Backoff(tp, epoch) => {
            if let Some(state) = parts.get_mut(&tp).filter(|s| s.epoch == epoch) {
                state.failed(config, tokio::time::Instant::now());
            }
        }
    }
}

fn fetch_request(
    config: &ConsumerConfig,
    plan: &super::session::Plan,
    metadata: &ClusterMetadata,
) -> FetchRequest {
    // Names for v12 and below, ids for v13+ (nil when unknown: then v12 is sent).
    let id = |topic: &str| uuid::Uuid::from_u128(metadata.topic(topic).map_or(0, |t| t.id));
    let topics: Vec<FetchTopic> = by_topic(plan.partitions.iter().map(|t| {
        let p = FetchPartition::default()
            .with_partition(t.partition)
            .with_current_leader_epoch(t.current_leader_epoch)
            .with_fetch_offset(t.offset)
            .with_last_fetched_epoch(t.last_fetched_epoch)
            .with_log_start_offset(-1)
            .with_partition_max_bytes(t.max_bytes);
        (&*t.topic, p)
    }))
    .into_iter()
    .map(|(topic, partitions)| {
        FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_topic_id(id(topic))
            .with_partitions(partitions)
    })
    .collect();
    let forgotten: Vec<ForgottenTopic> = by_topic(plan.forgotten.iter().map(|(t, p)| (&**t, *p)))
        .into_iter()
        .map(|(topic, partitions)| {
            ForgottenTopic::default()
                .with_topic(topic_name(topic))
                .with_topic_id(id(topic))
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

/// Closes every fetch session at its broker (epoch -1, KIP-227), so brokers free the slots
/// at once rather than when they evict them; best effort, within the request timeout.
async fn close_sessions(
    client: &Client,
    config: &ConsumerConfig,
    sessions: &mut HashMap<i32, FetchSession>,
) {
    let closing = sessions.iter_mut().filter_map(|(broker, session)| {
        let plan = session.close()?;
        // Nothing to wait for: the broker answers a closing fetch at once (it would otherwise
        // hold it for fetch.max.wait.ms when no data is there, and a consumer's close with it).
        let request = fetch_request(config, &plan, &client.metadata()).with_max_wait_ms(0);
        let broker = *broker;
        Some(async move {
            let _ = send_fetch(client, broker, &request, Duration::ZERO).await;
        })
    });
    let all = futures_util::future::join_all(closing);
    let _ = tokio::time::timeout(config.client.request_timeout, all).await;
}

async fn send_fetch(
    client: &Client,
    broker: i32,
    request: &FetchRequest,
    wait: Duration,
) -> Result<FetchResponse, Error> {
    let conn = client.broker(broker).await?;
    let mut version = conn.version(ApiKey::Fetch)?.min(MAX_FETCH_VERSION);
    let mut ids = request
        .topics
        .iter()
        .map(|t| &t.topic_id)
        .chain(request.forgotten_topics_data.iter().map(|t| &t.topic_id));
    if ids.any(uuid::Uuid::is_nil) {
        version = version.min(LAST_FETCH_BY_NAME);
    }
    let codec = FrameCodec::new(i32::MAX as usize);
    // A long poll: the broker may hold the request for `wait` on top of the request timeout.
    let timeout = client.config().request_timeout + wait;
    let frame = conn
        .roundtrip(ApiKey::Fetch, version, timeout, |h, dst| {
            encode_request(&codec, h, request, dst)
        })
        .await?;
    let (_, mut response) =
        FetchResponse::decode_frame(version, &frame).map_err(|e| conn.protocol_error(e))?;
    if version > LAST_FETCH_BY_NAME {
        // v13+ answers by topic id: name each topic from the request, or from the metadata
        // (an incremental answer holds partitions of the session that this request did not
        // name). An unknown id keeps an empty name and matches no partition of ours.
        let metadata = client.metadata();
        for topic in &mut response.topics {
            let id = u128::from_be_bytes(topic.topic_id);
            let asked = request.topics.iter().find(|t| t.topic_id.as_u128() == id);
            if let Some(asked) = asked.filter(|_| id != 0) {
                topic.name = asked.topic.0.to_string();
            } else if let Some(known) = metadata.topics.values().find(|t| t.id == id && id != 0) {
                topic.name = known.name.clone();
            }
        }
    }
    Ok(response)
}
