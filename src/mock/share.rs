//! The embedded cluster's share groups (KIP-932, "queues for Kafka"): the share group
//! coordinator (ShareGroupHeartbeat) and, per partition, the share-partition state the leader
//! keeps (ShareFetch, ShareAcknowledge), as Apache Kafka 4.x runs them.
//!
//! - Membership: a group epoch bumped when members join, leave, expire or change their
//!   subscription, or the subscribed topics change; the `simple` assignor gives every partition
//!   to at least one member and every member at least one partition, so more members than
//!   partitions share partitions. The assignor computes a target assignment for every member;
//!   each member takes its target at once (no revocation: records, not partitions, are what
//!   members own), on its own next heartbeat, which carries it (Kafka's `maybeReconcile`).
//! - Records: from the share-partition start offset (SPSO; `share.auto.offset.reset`, latest by
//!   default) a fetch acquires available records for the member for the acquisition lock
//!   duration (`group.share.record.lock.duration.ms`, 30 s), counting deliveries. Accept
//!   acknowledges a record, release makes it available again, reject archives it; a lock that
//!   expires releases it. A record released or expired at `group.share.delivery.count.limit`
//!   deliveries (5) is archived instead: a poison record stops coming back. The SPSO moves past
//!   records that are acknowledged or archived. Control records (transaction markers) are
//!   never handed out. Acknowledging a record the member does not hold is INVALID_RECORD_STATE.
//! - Share sessions (per broker and member; [`super::share_fetch`]): epoch 0 opens one, each request must carry the
//!   next epoch (INVALID_SHARE_SESSION_EPOCH), -1 closes it and releases what the member
//!   acquired through it; an unknown session is SHARE_SESSION_NOT_FOUND.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::messages::share_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::State;
use crate::error::codes::{
    FENCED_MEMBER_EPOCH, GROUP_ID_NOT_FOUND, INVALID_REQUEST, UNKNOWN_MEMBER_ID,
};

pub(super) type Tp = (String, i32);

/// The share-group settings (Kafka's group configs and their defaults).
#[derive(Debug, Clone, Copy)]
pub struct ShareSettings {
    /// `group.share.record.lock.duration.ms` (30 s).
    pub lock_duration: Duration,
    /// `group.share.delivery.count.limit` (5).
    pub delivery_count_limit: i16,
    /// `share.auto.offset.reset=earliest` (latest by default).
    pub start_at_earliest: bool,
    /// `group.share.session.timeout.ms` (45 s).
    pub session_timeout: Duration,
    /// `group.share.heartbeat.interval.ms` (5 s).
    pub heartbeat_interval: Duration,
    /// `group.share.partition.max.record.locks` (2,000): records in flight per partition.
    pub max_record_locks: usize,
}

impl Default for ShareSettings {
    fn default() -> Self {
        ShareSettings {
            lock_duration: Duration::from_secs(30),
            delivery_count_limit: 5,
            start_at_earliest: false,
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(5),
            max_record_locks: 2_000,
        }
    }
}

#[derive(Debug)]
struct Member {
    topics: BTreeSet<String>,
    epoch: i32,
    previous_epoch: i32,
    assigned: BTreeSet<Tp>,
    last_seen: Instant,
}

/// One share group's membership.
#[derive(Debug, Default)]
pub(super) struct ShareGroup {
    group_epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, Member>,
    /// The target assignment of `assignment_epoch`, by member.
    target: BTreeMap<String, BTreeSet<Tp>>,
    metadata: BTreeMap<String, i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Record {
    Available { deliveries: i16 },
    Acquired { deliveries: i16, deadline: Instant },
    Acknowledged,
    Archived,
}

/// Who holds an acquired record.
pub(super) type Holder = String;

/// One partition's share state in one group.
#[derive(Debug, Default)]
pub(super) struct SharePartition {
    /// The share-partition start offset; `None` until the first fetch sets it.
    pub(super) spso: Option<i64>,
    /// Offsets at and above the SPSO that were handed out at least once.
    pub(super) records: BTreeMap<i64, (Record, Option<Holder>)>,
}

/// A read-only view of a share partition, for tests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SharePartitionInfo {
    /// The share-partition start offset.
    pub start_offset: i64,
    /// Offsets archived (rejected, or at the delivery count limit).
    pub archived: Vec<i64>,
    /// Offsets acquired now, with their delivery counts.
    pub acquired: Vec<(i64, i16)>,
}

#[derive(Debug, Default)]
pub(super) struct ShareSession {
    pub(super) epoch: i32,
    pub(super) partitions: BTreeSet<Tp>,
}

/// Session key: broker, group, member.
pub(super) type SessionKey = (i32, String, String);

/// Every share group's state.
#[derive(Debug, Default)]
pub(super) struct Shares {
    pub settings: ShareSettings,
    groups: HashMap<String, ShareGroup>,
    pub(super) partitions: HashMap<(String, String, i32), SharePartition>,
    pub(super) sessions: HashMap<SessionKey, ShareSession>,
}

impl Shares {
    pub(super) fn partition_info(
        &self,
        group: &str,
        topic: &str,
        p: i32,
    ) -> Option<SharePartitionInfo> {
        let sp = self
            .partitions
            .get(&(group.to_owned(), topic.to_owned(), p))?;
        Some(SharePartitionInfo {
            start_offset: sp.spso.unwrap_or(-1),
            archived: sp
                .records
                .iter()
                .filter(|(_, (r, _))| *r == Record::Archived)
                .map(|(o, _)| *o)
                .collect(),
            acquired: sp
                .records
                .iter()
                .filter_map(|(o, (r, _))| match r {
                    Record::Acquired { deliveries, .. } => Some((*o, *deliveries)),
                    _ => None,
                })
                .collect(),
        })
    }

    /// The members of a share group and their partitions, for tests.
    pub(super) fn members(&self, group: &str) -> Option<BTreeMap<String, Vec<Tp>>> {
        let g = self.groups.get(group)?;
        Some(
            g.members
                .iter()
                .map(|(id, m)| (id.clone(), m.assigned.iter().cloned().collect()))
                .collect(),
        )
    }

    pub(super) fn has_group(&self, group: &str) -> bool {
        self.groups
            .get(group)
            .is_some_and(|g| !g.members.is_empty())
    }
}

fn simple_assign(members: &[&String], partitions: &[Tp]) -> BTreeMap<String, BTreeSet<Tp>> {
    let mut out: BTreeMap<String, BTreeSet<Tp>> = members
        .iter()
        .map(|m| ((*m).clone(), BTreeSet::new()))
        .collect();
    if members.is_empty() || partitions.is_empty() {
        return out;
    }
    if members.len() <= partitions.len() {
        for (i, tp) in partitions.iter().enumerate() {
            out.get_mut(members[i % members.len()])
                .expect("listed")
                .insert(tp.clone());
        }
    } else {
        for (j, m) in members.iter().enumerate() {
            out.get_mut(*m)
                .expect("listed")
                .insert(partitions[j % partitions.len()].clone());
        }
    }
    out
}

impl ShareGroup {
    fn tick(&mut self, now: Instant, session: Duration) {
        let before = self.members.len();
        self.members
            .retain(|_, m| now.duration_since(m.last_seen) <= session);
        if self.members.len() != before {
            self.group_epoch += 1;
        }
    }

    /// The target assignment of every member, per subscription: each topic's partitions among
    /// its subscribers. Members take it on their own heartbeats ([`Self::reconcile`]).
    fn assign(&mut self, topics: &BTreeMap<String, i32>) {
        let mut result: BTreeMap<String, BTreeSet<Tp>> = BTreeMap::new();
        for (topic, &count) in topics {
            let subscribers: Vec<&String> = self
                .members
                .iter()
                .filter(|(_, m)| m.topics.contains(topic))
                .map(|(id, _)| id)
                .collect();
            let partitions: Vec<Tp> = (0..count).map(|p| (topic.clone(), p)).collect();
            for (id, tps) in simple_assign(&subscribers, &partitions) {
                result.entry(id).or_default().extend(tps);
            }
        }
        self.target = result;
        self.assignment_epoch = self.group_epoch;
    }

    /// Moves a member to the target assignment's epoch and partitions.
    fn reconcile(&mut self, id: &str) {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let epoch = self.assignment_epoch;
        let Some(m) = self.members.get_mut(id) else {
            return;
        };
        if m.epoch != epoch {
            m.previous_epoch = m.epoch;
            m.epoch = epoch;
        }
        m.assigned = target;
    }
}

fn hb_error(code: i16, message: &str) -> ShareGroupHeartbeatResponse {
    ShareGroupHeartbeatResponse::default()
        .with_error_code(code)
        .with_error_message(Some(StrBytes::from_string(message.to_owned())))
}

/// ShareGroupHeartbeat.
pub(super) fn heartbeat(
    state: &mut State,
    request: &ShareGroupHeartbeatRequest,
) -> ShareGroupHeartbeatResponse {
    let now = Instant::now();
    let group_id = request.group_id.0.to_string();
    let epoch = request.member_epoch;
    if group_id.is_empty() {
        return hb_error(INVALID_REQUEST, "GroupId can't be empty.");
    }
    match epoch {
        0 if request
            .subscribed_topic_names
            .as_ref()
            .is_none_or(Vec::is_empty) =>
        {
            return hb_error(
                INVALID_REQUEST,
                "SubscribedTopicNames must be set in first request.",
            )
        }
        0 => {}
        e if (e > 0 || e == -1) && request.member_id.is_empty() => {
            return hb_error(INVALID_REQUEST, "MemberId can't be empty.")
        }
        e if e > 0 || e == -1 => {}
        _ => return hb_error(INVALID_REQUEST, "MemberEpoch is invalid."),
    }
    let other_kind = state
        .groups
        .get(&group_id)
        .is_some_and(|g| !g.info().members.is_empty())
        || state
            .consumer_groups
            .get(&group_id)
            .is_some_and(|g| !g.is_empty());
    if other_kind {
        return hb_error(
            GROUP_ID_NOT_FOUND,
            &format!("Group {group_id} is not a share group."),
        );
    }
    let topics: BTreeMap<String, i32> = state
        .topics
        .iter()
        .map(|(n, logs)| (n.clone(), logs.len() as i32))
        .collect();
    let settings = state.shares.settings;
    if epoch != 0 && !state.shares.groups.contains_key(&group_id) {
        return hb_error(GROUP_ID_NOT_FOUND, &format!("Group {group_id} not found."));
    }
    let group = state.shares.groups.entry(group_id).or_default();
    group.tick(now, settings.session_timeout);
    let mut member_id = request.member_id.to_string();
    if epoch == -1 {
        if group.members.remove(&member_id).is_none() {
            return hb_error(UNKNOWN_MEMBER_ID, "Unknown member.");
        }
        group.group_epoch += 1;
        return ShareGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(member_id)))
            .with_member_epoch(-1);
    }
    if member_id.is_empty() {
        member_id = uuid::Uuid::from_u128(fastrand::u128(..)).to_string();
    }
    let mut bump = false;
    match group.members.get_mut(&member_id) {
        None if epoch == 0 => {
            group.members.insert(
                member_id.clone(),
                Member {
                    topics: BTreeSet::new(),
                    epoch: 0,
                    previous_epoch: 0,
                    assigned: BTreeSet::new(),
                    last_seen: now,
                },
            );
            bump = true;
        }
        None => return hb_error(UNKNOWN_MEMBER_ID, "Unknown member."),
        Some(m) => {
            if epoch > m.epoch || (epoch < m.epoch && epoch != m.previous_epoch && epoch != 0) {
                return hb_error(FENCED_MEMBER_EPOCH, "The member epoch is fenced.");
            }
        }
    }
    let member = group.members.get_mut(&member_id).expect("present");
    member.last_seen = now;
    let before = member.assigned.clone();
    if let Some(names) = &request.subscribed_topic_names {
        let names: BTreeSet<String> = names.iter().map(|t| t.0.to_string()).collect();
        if names != member.topics {
            member.topics = names;
            bump = true;
        }
    }
    let subscribed: BTreeMap<String, i32> = topics
        .into_iter()
        .filter(|(t, _)| group.members.values().any(|m| m.topics.contains(t)))
        .collect();
    if subscribed != group.metadata {
        group.metadata = subscribed;
        bump = true;
    }
    if bump {
        group.group_epoch += 1;
    }
    if group.group_epoch > group.assignment_epoch {
        let metadata = group.metadata.clone();
        group.assign(&metadata);
    }
    group.reconcile(&member_id);
    let member = &group.members[&member_id];
    let mut response = ShareGroupHeartbeatResponse::default()
        .with_member_id(Some(StrBytes::from_string(member_id.clone())))
        .with_member_epoch(member.epoch)
        .with_heartbeat_interval_ms(settings.heartbeat_interval.as_millis() as i32);
    if epoch == 0 || member.assigned != before {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in &member.assigned {
            by_topic.entry(t).or_default().push(*p);
        }
        let ids = &state.topic_ids;
        response.assignment = Some(
            Assignment::default().with_topic_partitions(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        TopicPartitions::default()
                            .with_topic_id(uuid::Uuid::from_u128(ids.get(t).copied().unwrap_or(0)))
                            .with_partitions(ps)
                    })
                    .collect(),
            ),
        );
    }
    response
}
