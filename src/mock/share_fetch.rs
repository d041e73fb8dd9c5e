//! The share-partition side of share groups (KIP-932), as a partition's leader keeps it:
//! acquiring records for members (ShareFetch), their acknowledgements (ShareFetch and
//! ShareAcknowledge), lock expiry, the delivery count limit, the start offset, and share
//! sessions. The rules are listed in [`super::share`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, PartitionData, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::*;

use super::share::{Record, SessionKey, SharePartition, ShareSession, ShareSettings, Tp};
use super::State;
use crate::error::codes::{
    INVALID_RECORD_STATE, INVALID_REQUEST, INVALID_SHARE_SESSION_EPOCH, NOT_LEADER_OR_FOLLOWER,
    SHARE_SESSION_NOT_FOUND, UNKNOWN_TOPIC_ID, UNKNOWN_TOPIC_OR_PARTITION,
};

/// Whether the stored batch holding `offset` is a control batch (attributes bit 5).
fn control_offsets(batches: &[super::StoredBatch], from: i64, to: i64) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    for b in batches {
        let next = b.next_offset();
        if next <= from || b.base_offset >= to {
            continue;
        }
        let attributes = i16::from_be_bytes([b.bytes[21], b.bytes[22]]);
        if attributes & 0x20 != 0 {
            out.extend(b.base_offset.max(from)..next.min(to));
        }
    }
    out
}

impl SharePartition {
    /// Expired locks release their records (or archive them at the delivery limit).
    fn expire(&mut self, now: Instant, limit: i16) {
        for (record, holder) in self.records.values_mut() {
            if let Record::Acquired {
                deliveries,
                deadline,
            } = *record
            {
                if now >= deadline {
                    *record = release(deliveries, limit);
                    *holder = None;
                }
            }
        }
    }

    /// Moves the SPSO past records that are done with, and forgets them.
    fn advance(&mut self) {
        let Some(mut spso) = self.spso else { return };
        while let Some((record, _)) = self.records.get(&spso) {
            if !matches!(record, Record::Acknowledged | Record::Archived) {
                break;
            }
            self.records.remove(&spso);
            spso += 1;
        }
        self.spso = Some(spso);
    }

    fn in_flight(&self) -> usize {
        self.records
            .values()
            .filter(|(r, _)| matches!(r, Record::Acquired { .. }))
            .count()
    }
}

fn release(deliveries: i16, limit: i16) -> Record {
    if deliveries >= limit {
        Record::Archived
    } else {
        Record::Available { deliveries }
    }
}

/// Applies one partition's acknowledgements from `member`; the partition's acknowledge
/// error code.
fn acknowledge(
    sp: &mut SharePartition,
    member: &str,
    batches: &[(i64, i64, Vec<i8>)],
    limit: i16,
) -> i16 {
    let mut code = 0;
    for (first, last, types) in batches {
        // i128: a hostile range (i64::MIN..=i64::MAX) must not overflow.
        let span = i128::from(*last) - i128::from(*first) + 1;
        if span <= 0 || types.is_empty() || (types.len() > 1 && types.len() as i128 != span) {
            code = INVALID_REQUEST;
            continue;
        }
        // Only tracked offsets can be held: walking the tracked ones bounds the work by what
        // the partition holds, whatever range is claimed.
        let tracked = sp.records.range((*first)..=(*last)).count() as i128;
        if tracked != span {
            code = INVALID_RECORD_STATE;
        }
        for (offset, (record, holder)) in sp.records.range_mut((*first)..=(*last)) {
            let kind = if types.len() == 1 {
                types[0]
            } else {
                types[(offset - first) as usize]
            };
            let deliveries = match *record {
                Record::Acquired { deliveries, .. } if holder.as_deref() == Some(member) => {
                    deliveries
                }
                _ => {
                    code = INVALID_RECORD_STATE;
                    continue;
                }
            };
            *record = match kind {
                1 => Record::Acknowledged,
                2 => release(deliveries, limit),
                0 | 3 => Record::Archived,
                _ => {
                    code = INVALID_REQUEST;
                    continue;
                }
            };
            *holder = None;
        }
    }
    sp.advance();
    code
}

/// Acquires up to `max_records` for `member` from one partition; the batches that hold them
/// and the acquired ranges.
fn acquire(
    sp: &mut SharePartition,
    log: &super::PartitionLog,
    member: &str,
    max_records: &mut usize,
    settings: &ShareSettings,
    now: Instant,
) -> (Bytes, Vec<AcquiredRecords>) {
    let end = log.next_offset;
    let spso = *sp.spso.get_or_insert(if settings.start_at_earliest {
        log.batches.first().map_or(end, |b| b.base_offset)
    } else {
        end
    });
    sp.expire(now, settings.delivery_count_limit);
    let controls = control_offsets(&log.batches, spso, end);
    let mut acquired: Vec<(i64, i16)> = Vec::new();
    let mut room = settings.max_record_locks.saturating_sub(sp.in_flight());
    let mut offset = spso;
    while offset < end && *max_records > 0 && room > 0 {
        if controls.contains(&offset) {
            sp.records.entry(offset).or_insert((Record::Archived, None));
            offset += 1;
            continue;
        }
        let entry = sp
            .records
            .entry(offset)
            .or_insert((Record::Available { deliveries: 0 }, None));
        if let Record::Available { deliveries } = entry.0 {
            let deliveries = deliveries.saturating_add(1);
            *entry = (
                Record::Acquired {
                    deliveries,
                    deadline: now + settings.lock_duration,
                },
                Some(member.to_owned()),
            );
            acquired.push((offset, deliveries));
            *max_records -= 1;
            room -= 1;
        }
        offset += 1;
    }
    sp.advance();
    let mut ranges: Vec<AcquiredRecords> = Vec::new();
    for (o, d) in &acquired {
        match ranges.last_mut() {
            Some(r) if r.last_offset + 1 == *o && r.delivery_count == *d => r.last_offset = *o,
            _ => ranges.push(
                AcquiredRecords::default()
                    .with_first_offset(*o)
                    .with_last_offset(*o)
                    .with_delivery_count(*d),
            ),
        }
    }
    let mut records = BytesMut::new();
    for b in &log.batches {
        let holds = ranges
            .iter()
            .any(|r| b.base_offset <= r.last_offset && b.next_offset() > r.first_offset);
        if holds {
            records.extend_from_slice(&b.bytes);
        }
    }
    (records.freeze(), ranges)
}

/// The partitions a ShareFetch or ShareAcknowledge names, with their acknowledgements (the two
/// requests' topic types differ but have the same fields).
macro_rules! asks {
    ($topics:expr) => {
        $topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| PartitionAsk {
                    topic_id: t.topic_id,
                    partition: p.partition_index,
                    acks: p
                        .acknowledgement_batches
                        .iter()
                        .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()))
                        .collect(),
                })
            })
            .collect()
    };
}

/// What one ShareFetch or ShareAcknowledge request asks of one partition.
pub(super) struct PartitionAsk {
    pub topic_id: uuid::Uuid,
    pub partition: i32,
    pub acks: Vec<(i64, i64, Vec<i8>)>,
}

/// Opens, checks or closes the member's share session on this broker (`Err`: a top-level
/// error code).
pub(super) fn session(
    state: &mut State,
    broker: i32,
    group: &str,
    member: &str,
    epoch: i32,
    opening_allowed: bool,
) -> Result<(), i16> {
    let key = (broker, group.to_owned(), member.to_owned());
    match epoch {
        0 if opening_allowed => {
            // A new session replaces the member's old one, releasing what it held there.
            if state.shares.sessions.contains_key(&key) {
                close(state, &key);
            }
            state.shares.sessions.insert(key, ShareSession::default());
            Ok(())
        }
        0 => Err(INVALID_SHARE_SESSION_EPOCH),
        -1 => {
            if state.shares.sessions.contains_key(&key) {
                Ok(())
            } else {
                Err(SHARE_SESSION_NOT_FOUND)
            }
        }
        e => match state.shares.sessions.get_mut(&key) {
            None => Err(SHARE_SESSION_NOT_FOUND),
            Some(s) if s.epoch.wrapping_add(1) != e => Err(INVALID_SHARE_SESSION_EPOCH),
            Some(s) => {
                s.epoch = e;
                Ok(())
            }
        },
    }
}

/// Closes a session: what its member acquired in its partitions is released.
pub(super) fn close(state: &mut State, key: &SessionKey) {
    let Some(session) = state.shares.sessions.remove(key) else {
        return;
    };
    let limit = state.shares.settings.delivery_count_limit;
    for (topic, p) in session.partitions {
        if let Some(sp) = state.shares.partitions.get_mut(&(key.1.clone(), topic, p)) {
            for (record, holder) in sp.records.values_mut() {
                if let Record::Acquired { deliveries, .. } = *record {
                    if holder.as_deref() == Some(key.2.as_str()) {
                        *record = release(deliveries, limit);
                        *holder = None;
                    }
                }
            }
            sp.advance();
        }
    }
}

/// The acknowledgements (and, for a fetch, the acquisitions) of one request on this broker.
/// Returns the per-topic answers and whether any record was acquired.
pub(super) fn serve(
    state: &mut State,
    broker: i32,
    group: &str,
    member: &str,
    asks: &[PartitionAsk],
    fetch: Option<usize>,
) -> (Vec<ShareFetchableTopicResponse>, bool) {
    let now = Instant::now();
    let settings = state.shares.settings;
    let mut budget = fetch.unwrap_or(0);
    let key = (broker, group.to_owned(), member.to_owned());
    let mut by_topic: BTreeMap<uuid::Uuid, Vec<PartitionData>> = BTreeMap::new();
    let mut any = false;
    for ask in asks {
        let answer = PartitionData::default().with_partition_index(ask.partition);
        let Some(topic) = state.topic_by_id(ask.topic_id.as_u128()).map(str::to_owned) else {
            by_topic
                .entry(ask.topic_id)
                .or_default()
                .push(answer.with_error_code(UNKNOWN_TOPIC_ID));
            continue;
        };
        let Some(log) = state
            .topics
            .get(&topic)
            .and_then(|l| l.get(ask.partition as usize))
        else {
            by_topic
                .entry(ask.topic_id)
                .or_default()
                .push(answer.with_error_code(UNKNOWN_TOPIC_OR_PARTITION));
            continue;
        };
        if log.leader != broker {
            let leader =
                kafka_protocol::messages::share_fetch_response::LeaderIdAndEpoch::default()
                    .with_leader_id(log.leader)
                    .with_leader_epoch(log.leader_epoch);
            by_topic.entry(ask.topic_id).or_default().push(
                answer
                    .with_error_code(NOT_LEADER_OR_FOLLOWER)
                    .with_current_leader(leader),
            );
            continue;
        }
        if let Some(s) = state.shares.sessions.get_mut(&key) {
            s.partitions.insert((topic.clone(), ask.partition));
        }
        let sp = state
            .shares
            .partitions
            .entry((group.to_owned(), topic.clone(), ask.partition))
            .or_default();
        sp.expire(now, settings.delivery_count_limit);
        let ack_code = acknowledge(sp, member, &ask.acks, settings.delivery_count_limit);
        let mut answer = answer.with_acknowledge_error_code(ack_code);
        if fetch.is_some() {
            let (records, ranges) = acquire(sp, log, member, &mut budget, &settings, now);
            any |= !ranges.is_empty();
            answer.records = Some(records);
            answer.acquired_records = ranges;
        }
        by_topic.entry(ask.topic_id).or_default().push(answer);
    }
    let topics = by_topic
        .into_iter()
        .map(|(id, partitions)| {
            ShareFetchableTopicResponse::default()
                .with_topic_id(id)
                .with_partitions(partitions)
        })
        .collect();
    (topics, any)
}

/// Whether a fetch would acquire anything now (for a long poll), without acquiring.
pub(super) fn available(state: &State, group: &str, asks: &[PartitionAsk]) -> bool {
    let now = Instant::now();
    asks.iter().any(|ask| {
        let Some(topic) = state.topic_by_id(ask.topic_id.as_u128()) else {
            return false;
        };
        let Some(log) = state
            .topics
            .get(topic)
            .and_then(|l| l.get(ask.partition as usize))
        else {
            return false;
        };
        let key = (group.to_owned(), topic.to_owned(), ask.partition);
        match state.shares.partitions.get(&key) {
            None => state.shares.settings.start_at_earliest && log.next_offset > 0,
            Some(sp) => {
                let tracked_end = sp
                    .records
                    .keys()
                    .next_back()
                    .map_or(sp.spso.unwrap_or(0), |o| o + 1);
                log.next_offset > tracked_end
                    || sp.records.values().any(|(r, _)| match r {
                        Record::Available { .. } => true,
                        Record::Acquired { deadline, .. } => now >= *deadline,
                        _ => false,
                    })
            }
        }
    })
}

/// The group and member a share request names (empty when missing).
fn who(
    group: Option<&GroupId>,
    member: Option<&kafka_protocol::protocol::StrBytes>,
) -> (String, String) {
    (
        group.map(|g| g.0.to_string()).unwrap_or_default(),
        member.map(|m| m.to_string()).unwrap_or_default(),
    )
}

fn fetch_error(code: i16) -> ShareFetchResponse {
    ShareFetchResponse::default().with_error_code(code)
}

/// The request's partitions (with their acknowledgements) joined to the session's: a share
/// fetch reads every partition of its session, the ones it names being added to it and the
/// forgotten ones removed.
fn session_asks(
    state: &mut State,
    key: &SessionKey,
    request: &ShareFetchRequest,
) -> Vec<PartitionAsk> {
    let mut asks: Vec<PartitionAsk> = asks!(request.topics);
    let forgotten: BTreeSet<Tp> = request
        .forgotten_topics_data
        .iter()
        .filter_map(|t| {
            Some((
                state.topic_by_id(t.topic_id.as_u128())?.to_owned(),
                &t.partitions,
            ))
        })
        .flat_map(|(name, ps)| ps.iter().map(move |p| (name.clone(), *p)))
        .collect();
    let listed: BTreeSet<Tp> = asks
        .iter()
        .filter_map(|a| {
            Some((
                state.topic_by_id(a.topic_id.as_u128())?.to_owned(),
                a.partition,
            ))
        })
        .collect();
    let ids = state.topic_ids.clone();
    if let Some(session) = state.shares.sessions.get_mut(key) {
        for tp in &forgotten {
            session.partitions.remove(tp);
        }
        for (topic, p) in &session.partitions {
            if listed.contains(&(topic.clone(), *p)) {
                continue;
            }
            if let Some(id) = ids.get(topic) {
                asks.push(PartitionAsk {
                    topic_id: uuid::Uuid::from_u128(*id),
                    partition: *p,
                    acks: Vec::new(),
                });
            }
        }
    }
    asks
}

/// ShareFetch: acknowledgements first, then records acquired for the member; a long poll
/// ([`super::handlers::Poll`]) while none are available, up to `max_wait_ms`.
pub(super) fn fetch(
    state: &mut State,
    broker: i32,
    request: ShareFetchRequest,
    error: Option<i16>,
) -> Result<ShareFetchResponse, super::handlers::Poll> {
    if let Some(code) = error {
        return Ok(fetch_error(code));
    }
    let (group, member) = who(request.group_id.as_ref(), request.member_id.as_ref());
    if group.is_empty() || member.is_empty() {
        return Ok(fetch_error(INVALID_REQUEST));
    }
    let epoch = request.share_session_epoch;
    if let Err(code) = session(state, broker, &group, &member, epoch, true) {
        return Ok(fetch_error(code));
    }
    let key: SessionKey = (broker, group.clone(), member.clone());
    let asks = session_asks(state, &key, &request);
    let lock_ms = state.shares.settings.lock_duration.as_millis() as i32;
    let respond = move |topics| {
        ShareFetchResponse::default()
            .with_acquisition_lock_timeout_ms(lock_ms)
            .with_responses(topics)
    };
    if epoch == -1 {
        // The last acknowledgements, then the session closes: nothing is fetched.
        let (topics, _) = serve(state, broker, &group, &member, &asks, None);
        close(state, &key);
        return Ok(respond(topics));
    }
    let max_records = request.max_records.max(1) as usize;
    let (topics, any) = serve(state, broker, &group, &member, &asks, Some(max_records));
    if any || request.max_wait_ms <= 0 {
        return Ok(respond(topics));
    }
    // Long poll. The acknowledgements are done; their outcomes go in the final answer.
    let acked: BTreeMap<(uuid::Uuid, i32), i16> = topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| ((t.topic_id, p.partition_index), p.acknowledge_error_code))
        })
        .collect();
    let asks: Vec<PartitionAsk> = asks
        .into_iter()
        .map(|a| PartitionAsk {
            acks: Vec::new(),
            ..a
        })
        .collect();
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms as u64);
    Err(Box::new(move |state: &mut State| {
        if !available(state, &group, &asks) && Instant::now() < deadline {
            return None;
        }
        if !state.shares.sessions.contains_key(&key) {
            return Some(super::handlers::Ready::ShareFetch(fetch_error(
                SHARE_SESSION_NOT_FOUND,
            )));
        }
        let (mut topics, _) = serve(state, broker, &group, &member, &asks, Some(max_records));
        for t in &mut topics {
            for p in &mut t.partitions {
                if let Some(code) = acked.get(&(t.topic_id, p.partition_index)) {
                    p.acknowledge_error_code = *code;
                }
            }
        }
        Some(super::handlers::Ready::ShareFetch(respond(topics)))
    }))
}

/// ShareAcknowledge: acknowledgements in an open session (-1 closes it after them).
pub(super) fn acknowledge_request(
    state: &mut State,
    broker: i32,
    request: &ShareAcknowledgeRequest,
    error: Option<i16>,
) -> ShareAcknowledgeResponse {
    use kafka_protocol::messages::share_acknowledge_response::{
        PartitionData as AckData, ShareAcknowledgeTopicResponse,
    };
    let top = |code| ShareAcknowledgeResponse::default().with_error_code(code);
    if let Some(code) = error {
        return top(code);
    }
    let (group, member) = who(request.group_id.as_ref(), request.member_id.as_ref());
    let epoch = request.share_session_epoch;
    if let Err(code) = session(state, broker, &group, &member, epoch, false) {
        return top(code);
    }
    let asks: Vec<PartitionAsk> = asks!(request.topics);
    let (topics, _) = serve(state, broker, &group, &member, &asks, None);
    if epoch == -1 {
        close(state, &(broker, group, member));
    }
    top(0).with_responses(
        topics
            .into_iter()
            .map(|t| {
                ShareAcknowledgeTopicResponse::default()
                    .with_topic_id(t.topic_id)
                    .with_partitions(
                        t.partitions
                            .into_iter()
                            .map(|p| {
                                let code = if p.error_code != 0 {
                                    p.error_code
                                } else {
                                    p.acknowledge_error_code
                                };
                                AckData::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

#[cfg(test)]
#[path = "share_fetch_tests.rs"]
mod tests;
