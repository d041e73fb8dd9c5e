//! The embedded cluster's Fetch: reading the logs, the long poll, incremental fetch sessions
//! (KIP-227) kept as Kafka's `FetchSessionCache` keeps them, and leader epochs (KIP-320):
//! FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH for a client's stale or future epoch, the
//! diverging epoch when the client's last fetched epoch ended before its fetch offset (an
//! unclean election truncated the log), and OffsetForLeaderEpoch.
//!
//! - Epoch 0 asks for a new session (closing the one named, if any); the answer carries every
//!   partition asked for and the new session id (0 when every slot is taken).
//! - Epoch -1 closes the session named; the fetch is answered whole, without a session.
//! - A later epoch is incremental: the request names only the partitions whose fetch offset or
//!   size changed and those to forget; the session keeps the rest. The answer names only the
//!   partitions with records, an error, or a high watermark, last stable offset or log start
//!   offset that changed since the session last reported them. An unknown session id gets
//!   FETCH_SESSION_ID_NOT_FOUND, a wrong epoch INVALID_FETCH_SESSION_EPOCH.
//! - Sessions take one of a fixed number of slots (Kafka's
//!   `max.incremental.fetch.session.cache.slots`, 1000); when all are taken, the one used
//!   least recently is evicted.
//!
//! - v13+ names topics by id (KIP-516): an id the cluster does not know is answered
//!   UNKNOWN_TOPIC_ID; a session started by id must go on by id and one started by name by name
//!   (FETCH_SESSION_TOPIC_ID_ERROR otherwise, as Kafka's `FetchSession` answers).
//! - v16+ answers NOT_LEADER_OR_FOLLOWER and FENCED_LEADER_EPOCH with the current leader and its
//!   endpoint (KIP-951, Kafka's `handleFetchRequest`).
//!
//! # References
//! - KIP-227, and Kafka's `FetchSession.scala` / `FetchSessionCache`.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint,
    PartitionData,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset as EpochEndOffsetAnswer, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::State;
use crate::error::codes::{
    FENCED_LEADER_EPOCH, FETCH_SESSION_ID_NOT_FOUND, FETCH_SESSION_TOPIC_ID_ERROR,
    INVALID_FETCH_SESSION_EPOCH, NOT_LEADER_OR_FOLLOWER, UNKNOWN_LEADER_EPOCH, UNKNOWN_TOPIC_ID,
    UNKNOWN_TOPIC_OR_PARTITION,
};

/// A v13+ request names topics by id, and a session keeps them by id (Kafka's
/// `TopicIdPartition`): such a key stands where a topic name goes, and is resolved to the topic
/// at each read (no topic name holds a NUL).
const ID_KEY_PREFIX: &str = "\0id-";

/// Kafka's default `max.incremental.fetch.session.cache.slots`.
pub(super) const DEFAULT_SLOTS: usize = 1000;
const INITIAL_EPOCH: i32 = 0;
const FINAL_EPOCH: i32 = -1;

type Key = (String, i32);

/// What a session last told the client about a partition, and where the client fetches it.
#[derive(Debug, Clone, Copy)]
struct Cached {
    fetch_offset: i64,
    max_bytes: i32,
    current_leader_epoch: i32,
    last_fetched_epoch: i32,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

#[derive(Debug)]
struct Session {
    /// The broker that keeps it (each broker has its own cache).
    broker: i32,
    /// The epoch the next request must carry.
    epoch: i32,
    partitions: BTreeMap<Key, Cached>,
    last_used: Instant,
    /// Started by a v13+ request, which names topics by id.
    by_id: bool,
}

/// Every broker's fetch sessions (ids are unique across the cluster).
#[derive(Debug)]
pub(super) struct Sessions {
    by_id: HashMap<i32, Session>,
    next_id: i32,
    pub(super) slots: usize,
    /// Incremental requests answered, for tests.
    pub(super) incremental: u64,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            by_id: HashMap::new(),
            next_id: 1,
            slots: DEFAULT_SLOTS,
            incremental: 0,
        }
    }
}

impl Sessions {
    /// Drops a broker's sessions, as its restart would (every broker's with `None`).
    pub(super) fn clear(&mut self, broker: Option<i32>) {
        self.by_id
            .retain(|_, s| broker.is_some_and(|b| b != s.broker));
    }

    fn remove(&mut self, broker: i32, id: i32) {
        if self.by_id.get(&id).is_some_and(|s| s.broker == broker) {
            self.by_id.remove(&id);
        }
    }

    /// How many sessions exist.
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    fn create(&mut self, broker: i32, now: Instant, by_id: bool) -> i32 {
        if self.slots == 0 {
            return 0;
        }
        if self.by_id.len() >= self.slots {
            if let Some(oldest) = self
                .by_id
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| *id)
            {
                self.by_id.remove(&oldest);
            }
        }
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        self.by_id.insert(
            id,
            Session {
                broker,
                epoch: 1,
                partitions: BTreeMap::new(),
                last_used: now,
                by_id,
            },
        );
        id
    }
}

/// One partition a fetch reads.
#[derive(Debug, Clone)]
struct Wanted {
    key: Key,
    fetch_offset: i64,
    max_bytes: i32,
    /// The leader epoch the client believes current (-1: unchecked).
    current_leader_epoch: i32,
    /// The epoch of the last batch the client fetched (-1: unknown), to detect divergence.
    last_fetched_epoch: i32,
}

/// A request after its session work: what to read, and how to answer.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    /// The session id to answer with (0: none).
    session_id: i32,
    /// Incremental: only what changed is answered.
    incremental: bool,
    /// For a full fetch, the partitions asked for (in order); for an incremental one, the
    /// session's.
    partitions: Vec<Wanted>,
}

/// Does the session work of a request (create, close, update) once; a session error is the
/// top-level error to answer with.
pub(super) fn open(
    state: &mut State,
    broker: i32,
    request: &FetchRequest,
    version: i16,
) -> Result<Plan, i16> {
    let now = Instant::now();
    let by_id = version >= 13;
    // The topic a request entry names: by name below v13, by id from v13 on.
    let name = |name: &TopicName, id: &uuid::Uuid| -> String {
        if by_id {
            format!("{ID_KEY_PREFIX}{:032x}", id.as_u128())
        } else {
            name.0.to_string()
        }
    };
    let asked: Vec<Wanted> = request
        .topics
        .iter()
        .flat_map(|t| {
            let topic = name(&t.topic, &t.topic_id);
            t.partitions.iter().map(move |p| Wanted {
                key: (topic.clone(), p.partition),
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
                last_fetched_epoch: p.last_fetched_epoch,
            })
        })
        .collect();
    let forgotten: Vec<Key> = request
        .forgotten_topics_data
        .iter()
        .flat_map(|t| {
            let topic = name(&t.topic, &t.topic_id);
            t.partitions.iter().map(move |p| (topic.clone(), *p))
        })
        .collect();
    let sessions = &mut state.fetch_sessions;
    if version < 7 {
        return Ok(full(0, asked));
    }
    let (id, epoch) = (request.session_id, request.session_epoch);
    match epoch {
        FINAL_EPOCH => {
            sessions.remove(broker, id);
            Ok(full(0, asked))
        }
        INITIAL_EPOCH => {
            sessions.remove(broker, id);
            let id = sessions.create(broker, now, by_id);
            if let Some(session) = sessions.by_id.get_mut(&id) {
                for w in &asked {
                    session.partitions.insert(w.key.clone(), cached(w));
                }
            }
            Ok(full(id, asked))
        }
        _ => {
            let session = sessions
                .by_id
                .get_mut(&id)
                .filter(|s| s.broker == broker)
                .ok_or(FETCH_SESSION_ID_NOT_FOUND)?;
            if session.epoch != epoch {
                return Err(INVALID_FETCH_SESSION_EPOCH);
            }
            if session.by_id != by_id {
                return Err(FETCH_SESSION_TOPIC_ID_ERROR);
            }
            session.epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
            session.last_used = now;
            for w in &asked {
                match session.partitions.get_mut(&w.key) {
                    Some(c) => {
                        c.fetch_offset = w.fetch_offset;
                        c.max_bytes = w.max_bytes;
                        c.current_leader_epoch = w.current_leader_epoch;
                        c.last_fetched_epoch = w.last_fetched_epoch;
                    }
                    None => {
                        session.partitions.insert(w.key.clone(), cached(w));
                    }
                }
            }
            for key in &forgotten {
                session.partitions.remove(key);
            }
            sessions.incremental += 1;
            let partitions = session
                .partitions
                .iter()
                .map(|(key, c)| Wanted {
                    key: key.clone(),
                    fetch_offset: c.fetch_offset,
                    max_bytes: c.max_bytes,
                    current_leader_epoch: c.current_leader_epoch,
                    last_fetched_epoch: c.last_fetched_epoch,
                })
                .collect();
            Ok(Plan {
                session_id: id,
                incremental: true,
                partitions,
            })
        }
    }
}

fn full(session_id: i32, partitions: Vec<Wanted>) -> Plan {
    Plan {
        session_id,
        incremental: false,
        partitions,
    }
}

fn cached(w: &Wanted) -> Cached {
    Cached {
        fetch_offset: w.fetch_offset,
        max_bytes: w.max_bytes,
        current_leader_epoch: w.current_leader_epoch,
        last_fetched_epoch: w.last_fetched_epoch,
        // Unknown: the first answer reports them.
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
    }
}

/// The answer to a session error: the code, no partitions, no session.
pub(super) fn session_error(code: i16) -> FetchResponse {
    FetchResponse::default()
        .with_error_code(code)
        .with_session_id(0)
}

/// Reads what `plan` asks for. With `commit`, an incremental session remembers what it
/// reported (a long poll reads without it until it answers). The flag says whether no
/// partition had records.
pub(super) fn read(
    state: &mut State,
    broker: i32,
    request: &FetchRequest,
    version: i16,
    plan: &Plan,
    error: Option<i16>,
    commit: bool,
) -> (FetchResponse, bool) {
    let committed_only = request.isolation_level == 1;
    let mut budget = request.max_bytes.max(0) as usize;
    let mut empty = true;
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut hinted: Vec<i32> = Vec::new();
    for w in &plan.partitions {
        let mut answer = partition(state, broker, w, committed_only, &mut budget, error);
        if version >= 16
            && matches!(
                answer.error_code,
                NOT_LEADER_OR_FOLLOWER | FENCED_LEADER_EPOCH
            )
        {
            // KIP-951: the current leader, and its endpoint below.
            if let Some(log) = resolve(state, &w.key.0)
                .and_then(|name| state.topics.get(name))
                .and_then(|l| l.get(w.key.1 as usize))
            {
                answer.current_leader = LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(log.leader))
                    .with_leader_epoch(log.leader_epoch);
                hinted.push(log.leader);
            }
        }
        empty &= answer.records.as_ref().is_none_or(|r| r.is_empty());
        if plan.incremental {
            let Some(session) = state.fetch_sessions.by_id.get_mut(&plan.session_id) else {
                continue;
            };
            let Some(c) = session.partitions.get_mut(&w.key) else {
                continue;
            };
            // Kafka's CachedPartition.maybeUpdateResponseData: answer what changed.
            let changed = answer.records.as_ref().is_some_and(|r| !r.is_empty())
                || answer.error_code != 0
                || answer.diverging_epoch.epoch >= 0
                || c.high_watermark != answer.high_watermark
                || c.last_stable_offset != answer.last_stable_offset
                || c.log_start_offset != answer.log_start_offset;
            if !changed {
                continue;
            }
            if commit {
                c.high_watermark = if answer.error_code != 0 {
                    -1
                } else {
                    answer.high_watermark
                };
                c.last_stable_offset = answer.last_stable_offset;
                c.log_start_offset = answer.log_start_offset;
            }
        } else if commit && plan.session_id != 0 {
            if let Some(c) = state
                .fetch_sessions
                .by_id
                .get_mut(&plan.session_id)
                .and_then(|s| s.partitions.get_mut(&w.key))
            {
                c.high_watermark = answer.high_watermark;
                c.last_stable_offset = answer.last_stable_offset;
                c.log_start_offset = answer.log_start_offset;
            }
        }
        match topics.last_mut() {
            Some(t) if t.topic.0.as_str() == w.key.0 => t.partitions.push(answer),
            _ => topics.push(
                FetchableTopicResponse::default()
                    .with_topic(TopicName(w.key.0.clone().into()))
                    .with_topic_id(uuid::Uuid::from_u128(topic_id(state, &w.key.0)))
                    .with_partitions(vec![answer]),
            ),
        }
    }
    let node_endpoints = state.endpoints(hinted, |id, port| {
        NodeEndpoint::default()
            .with_node_id(BrokerId(id))
            .with_host(StrBytes::from_static_str("127.0.0.1"))
            .with_port(port)
    });
    let response = FetchResponse::default()
        .with_session_id(plan.session_id)
        .with_responses(topics)
        .with_node_endpoints(node_endpoints);
    (response, empty)
}

/// The id of the topic a key names.
fn topic_id(state: &State, key: &str) -> u128 {
    match key.strip_prefix(ID_KEY_PREFIX) {
        Some(hex) => u128::from_str_radix(hex, 16).unwrap_or(0),
        None => state.topic_ids.get(key).copied().unwrap_or(0),
    }
}

/// The topic a key names now, if it exists (an id key of a deleted or re-created topic names
/// none).
fn resolve<'a>(state: &'a State, key: &'a str) -> Option<&'a str> {
    match key.strip_prefix(ID_KEY_PREFIX) {
        Some(hex) => state.topic_by_id(u128::from_str_radix(hex, 16).ok()?),
        None => Some(key),
    }
}

fn partition(
    state: &State,
    broker: i32,
    w: &Wanted,
    committed_only: bool,
    budget: &mut usize,
    error: Option<i16>,
) -> PartitionData {
    let answer = PartitionData::default()
        .with_partition_index(w.key.1)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(0)
        .with_preferred_read_replica(BrokerId(-1));
    if let Some(code) = error {
        return answer.with_error_code(code);
    }
    let Some(topic) = resolve(state, &w.key.0) else {
        return answer.with_error_code(UNKNOWN_TOPIC_ID);
    };
    let Some(log) = state
        .topics
        .get(topic)
        .and_then(|l| l.get(w.key.1 as usize))
    else {
        return answer.with_error_code(UNKNOWN_TOPIC_OR_PARTITION);
    };
    if log.leader != broker {
        return answer.with_error_code(NOT_LEADER_OR_FOLLOWER);
    }
    // KIP-320: the client's idea of the leader epoch is checked first (Kafka's
    // Partition.checkCurrentLeaderEpoch), then whether its log diverged from this one.
    if let Some(code) = check_leader_epoch(w.current_leader_epoch, log.leader_epoch) {
        return answer.with_error_code(code);
    }
    if w.last_fetched_epoch >= 0 && w.fetch_offset > 0 {
        let (epoch, end_offset) = log.end_offset_for(w.last_fetched_epoch);
        if end_offset < w.fetch_offset || epoch < w.last_fetched_epoch {
            // Kafka's validateFetchOffsetAndEpoch: no records, where the logs part.
            return answer
                .with_high_watermark(log.next_offset)
                .with_last_stable_offset(log.last_stable_offset())
                .with_log_start_offset(log.log_start)
                .with_diverging_epoch(
                    EpochEndOffset::default()
                        .with_epoch(epoch)
                        .with_end_offset(end_offset),
                );
        }
    }
    let max = (w.max_bytes.max(0) as usize).min(*budget);
    match log.read(w.fetch_offset, max, committed_only) {
        Err(code) => answer.with_error_code(code),
        Ok(read) => {
            *budget = budget.saturating_sub(read.records.len());
            let aborted = committed_only.then(|| {
                read.aborted
                    .iter()
                    .map(|a| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(a.producer_id))
                            .with_first_offset(a.first_offset)
                    })
                    .collect()
            });
            answer
                .with_high_watermark(read.high_watermark)
                .with_last_stable_offset(read.last_stable_offset)
                .with_log_start_offset(log.log_start)
                .with_aborted_transactions(aborted)
                .with_records(Some(read.records))
        }
    }
}

/// FENCED_LEADER_EPOCH when the client's epoch is older than the leader's, UNKNOWN_LEADER_EPOCH
/// when newer (this broker has not caught up), nothing when it is -1 (unchecked) or the same.
pub(super) fn check_leader_epoch(client: i32, leader: i32) -> Option<i16> {
    match client {
        c if c < 0 || c == leader => None,
        c if c < leader => Some(FENCED_LEADER_EPOCH),
        _ => Some(UNKNOWN_LEADER_EPOCH),
    }
}

/// OffsetForLeaderEpoch (KIP-320): for each partition, the end offset of the requested epoch
/// in this leader's log, after the same leader and current-epoch checks as a fetch.
pub(super) fn offsets_for_leader_epoch(
    state: &State,
    broker: i32,
    request: &OffsetForLeaderEpochRequest,
    error: Option<i16>,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let answer = EpochEndOffsetAnswer::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let log = state
                        .topics
                        .get(t.topic.0.as_str())
                        .and_then(|l| l.get(p.partition as usize));
                    let code = match log {
                        _ if error.is_some() => error,
                        None => Some(UNKNOWN_TOPIC_OR_PARTITION),
                        Some(log) if log.leader != broker => Some(NOT_LEADER_OR_FOLLOWER),
                        Some(log) => check_leader_epoch(p.current_leader_epoch, log.leader_epoch),
                    };
                    match (code, log) {
                        (Some(code), _) => answer.with_error_code(code),
                        (None, Some(log)) => {
                            let (epoch, end) = log.end_offset_for(p.leader_epoch);
                            answer.with_leader_epoch(epoch).with_end_offset(end)
                        }
                        (None, None) => answer.with_error_code(UNKNOWN_TOPIC_OR_PARTITION),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
