//! The embedded cluster's KIP-848 group coordinator (`group.protocol=consumer`), as Apache
//! Kafka's `GroupMetadataManager.consumerGroupHeartbeat` and `CurrentAssignmentBuilder` run it.
//!
//! - The **group epoch** is bumped when a member joins, leaves, is fenced or changes its
//!   subscription, and when the subscribed topics change (a topic created that a regex
//!   matches, partitions added). A newer group epoch than the target assignment's recomputes
//!   the **target assignment** with the server-side assignor (`uniform` by default, `range`;
//!   the one most members ask for).
//! - Each member is **reconciled** towards its target one heartbeat at a time: partitions it
//!   must give up are revoked first (state `UNREVOKED_PARTITIONS`, the member keeps its epoch)
//!   until it reports it no longer owns them; only then does it move to the target epoch and
//!   take new partitions, and only those no other member still owns (partition epochs; state
//!   `UNRELEASED_PARTITIONS` while it waits for them).
//! - A member silent for the session timeout (`group.consumer.session.timeout.ms`) is removed;
//!   one that does not revoke within its rebalance timeout is fenced. Epoch -1 leaves; -2 is a
//!   static member leaving for a while (its partitions wait for its `group.instance.id` until
//!   the session timeout); a new member with a held instance id gets UNRELEASED_INSTANCE_ID.
//! - A heartbeat with an epoch ahead of the member's, or behind it other than the previous
//!   epoch with owned partitions it still has (a lost response), gets FENCED_MEMBER_EPOCH;
//!   an unknown member UNKNOWN_MEMBER_ID; an offset commit with another epoch
//!   STALE_MEMBER_EPOCH, and below OffsetCommit v9 UNSUPPORTED_VERSION.
//!
//! One departure, said where it is: a classic group and a KIP-848 group cannot share an id here
//! (Kafka migrates between them); the other kind gets GROUP_ID_NOT_FOUND or
//! INCONSISTENT_GROUP_PROTOCOL.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;

use super::server_assignor::{assign, AssignMember, Tp, ASSIGNORS};
use super::State;
use crate::error::codes::{
    FENCED_INSTANCE_ID, FENCED_MEMBER_EPOCH, GROUP_ID_NOT_FOUND, INVALID_REGULAR_EXPRESSION,
    INVALID_REQUEST, STALE_MEMBER_EPOCH, UNKNOWN_MEMBER_ID, UNRELEASED_INSTANCE_ID,
    UNSUPPORTED_ASSIGNOR, UNSUPPORTED_VERSION,
};

const LEAVE: i32 = -1;
const LEAVE_STATIC: i32 = -2;

/// `group.consumer.session.timeout.ms` and `group.consumer.heartbeat.interval.ms` (Kafka's
/// defaults: 45 s and 5 s).
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub session: Duration,
    pub heartbeat: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            session: Duration::from_secs(45),
            heartbeat: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reconciliation {
    Stable,
    UnrevokedPartitions,
    UnreleasedPartitions,
}

#[derive(Debug, Clone)]
struct Member {
    instance_id: Option<String>,
    rebalance_timeout: Duration,
    topics: BTreeSet<String>,
    regex: Option<String>,
    assignor: Option<String>,
    epoch: i32,
    previous_epoch: i32,
    state: Reconciliation,
    assigned: BTreeSet<Tp>,
    pending_revocation: BTreeSet<Tp>,
    last_seen: Instant,
    revoke_deadline: Option<Instant>,
}

/// One KIP-848 group.
#[derive(Debug, Default)]
pub(super) struct ConsumerGroup {
    group_epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, Member>,
    target: BTreeMap<String, BTreeSet<Tp>>,
    /// The subscribed topics and their partition counts when the group epoch was last bumped.
    metadata: BTreeMap<String, i32>,
    /// The epoch of the member that holds each partition (assigned or pending revocation).
    partition_epochs: BTreeMap<Tp, i32>,
}

/// A read-only view of a KIP-848 member, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberInfo {
    /// The member epoch.
    pub epoch: i32,
    /// The partitions assigned to it (usable now).
    pub assigned: Vec<(String, i32)>,
    /// The partitions it must give up.
    pub pending_revocation: Vec<(String, i32)>,
    /// Its `group.instance.id`.
    pub instance_id: Option<String>,
    /// It owns its whole target assignment at the target epoch (Kafka's `isReconciledTo`).
    pub reconciled: bool,
}

/// A read-only view of a KIP-848 group, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupInfo {
    /// The group epoch.
    pub group_epoch: i32,
    /// The epoch of the target assignment.
    pub assignment_epoch: i32,
    /// The members by id.
    pub members: BTreeMap<String, ConsumerMemberInfo>,
}

fn matches(regex: &regex::Regex, topic: &str) -> bool {
    regex.find(topic).is_some_and(|m| m.len() == topic.len())
}

/// A pattern as Kafka (RE2/J `matches`) reads it: it must match a whole topic name.
fn compile(pattern: &str) -> Option<regex::Regex> {
    regex::Regex::new(&format!("^(?:{pattern})$")).ok()
}

impl ConsumerGroup {
    pub(super) fn info(&self) -> ConsumerGroupInfo {
        ConsumerGroupInfo {
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            members: self
                .members
                .iter()
                .map(|(id, m)| {
                    let info = ConsumerMemberInfo {
                        epoch: m.epoch,
                        assigned: m.assigned.iter().cloned().collect(),
                        pending_revocation: m.pending_revocation.iter().cloned().collect(),
                        instance_id: m.instance_id.clone(),
                        reconciled: m.state == Reconciliation::Stable
                            && m.epoch == self.assignment_epoch,
                    };
                    (id.clone(), info)
                })
                .collect(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The topics its members subscribe to (as of the last group epoch).
    pub(super) fn subscribed_topics(&self) -> BTreeSet<String> {
        self.metadata.keys().cloned().collect()
    }

    /// The topics `member` subscribes to now: its names that exist, and every topic its
    /// pattern matches.
    fn member_topics(member: &Member, topics: &BTreeMap<String, i32>) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = member
            .topics
            .iter()
            .filter(|t| topics.contains_key(*t))
            .cloned()
            .collect();
        if let Some(regex) = member.regex.as_deref().and_then(compile) {
            out.extend(topics.keys().filter(|t| matches(&regex, t)).cloned());
        }
        out
    }

    fn subscription_metadata(&self, topics: &BTreeMap<String, i32>) -> BTreeMap<String, i32> {
        self.members
            .values()
            .flat_map(|m| Self::member_topics(m, topics))
            .map(|t| {
                let n = topics[&t];
                (t, n)
            })
            .collect()
    }

    /// Bumps the group epoch if the subscribed topics changed since the last bump.
    fn refresh_metadata(&mut self, topics: &BTreeMap<String, i32>) -> bool {
        let metadata = self.subscription_metadata(topics);
        if metadata != self.metadata {
            self.metadata = metadata;
            return true;
        }
        false
    }

    fn set_partition_epochs(&mut self, member: &Member, add: bool) {
        for tp in member.assigned.iter().chain(&member.pending_revocation) {
            if add {
                self.partition_epochs.insert(tp.clone(), member.epoch);
            } else {
                self.partition_epochs.remove(tp);
            }
        }
    }

    /// Removes a member as its session's expiry would; false if unknown.
    pub(super) fn expire(&mut self, id: &str) -> bool {
        self.remove(id).is_some()
    }

    fn remove(&mut self, id: &str) -> Option<Member> {
        let member = self.members.remove(id)?;
        self.set_partition_epochs(&member, false);
        self.target.remove(id);
        self.group_epoch += 1;
        Some(member)
    }

    /// Removes members silent for the session timeout and fences those that did not revoke
    /// within their rebalance timeout.
    pub(super) fn tick(&mut self, now: Instant, timeouts: Timeouts) {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                now.duration_since(m.last_seen) > timeouts.session
                    || m.revoke_deadline.is_some_and(|d| now >= d)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            tracing::debug!(member = %id, "mock consumer group: member removed (session or rebalance timeout)");
            self.remove(&id);
        }
    }

    /// The assignor the group uses: the one most members ask for, else the default.
    fn assignor(&self) -> &'static str {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.assignor.as_deref() {
                *votes.entry(a).or_default() += 1;
            }
        }
        let best = votes
            .into_iter()
            .max_by_key(|(name, n)| (*n, *name == "uniform"));
        best.and_then(|(name, _)| ASSIGNORS.iter().find(|a| **a == name).copied())
            .unwrap_or(ASSIGNORS[0])
    }

    fn update_target(&mut self, topics: &BTreeMap<String, i32>) {
        let subscribed: Vec<(String, BTreeSet<String>)> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), Self::member_topics(m, topics)))
            .collect();
        let empty = BTreeSet::new();
        let members: Vec<AssignMember<'_>> = subscribed
            .iter()
            .map(|(id, topics)| AssignMember {
                id,
                instance_id: self.members[id].instance_id.as_deref(),
                topics,
                current: self.target.get(id).unwrap_or(&empty),
            })
            .collect();
        let target = assign(self.assignor(), &self.metadata, &members);
        self.target = target;
        self.assignment_epoch = self.group_epoch;
    }

    /// `CurrentAssignmentBuilder`: one step of `member` towards the target assignment.
    fn reconcile(&self, member: &Member, owned: Option<&BTreeSet<Tp>>, id: &str) -> Member {
        let target_epoch = self.assignment_epoch;
        let owns_any = |set: &BTreeSet<Tp>| owned.is_none_or(|o| !o.is_disjoint(set));
        match member.state {
            Reconciliation::Stable if member.epoch == target_epoch => member.clone(),
            Reconciliation::UnrevokedPartitions if owns_any(&member.pending_revocation) => {
                member.clone()
            }
            Reconciliation::UnrevokedPartitions => self.next(member, member.epoch + 1, owned, id),
            _ => self.next(member, member.epoch, owned, id),
        }
    }

    fn next(&self, member: &Member, epoch: i32, owned: Option<&BTreeSet<Tp>>, id: &str) -> Member {
        let empty = BTreeSet::new();
        let target = self.target.get(id).unwrap_or(&empty);
        let assigned: BTreeSet<Tp> = member.assigned.intersection(target).cloned().collect();
        let revoke: BTreeSet<Tp> = member.assigned.difference(&assigned).cloned().collect();
        let mut pending_assign: BTreeSet<Tp> = target.difference(&assigned).cloned().collect();
        let before = pending_assign.len();
        pending_assign.retain(|tp| !self.partition_epochs.contains_key(tp));
        let unreleased = pending_assign.len() < before;
        let owns_revoked = owned.is_none_or(|o| !o.is_disjoint(&revoke));
        let mut next = member.clone();
        if !revoke.is_empty() && owns_revoked {
            next.state = Reconciliation::UnrevokedPartitions;
            next.set_epoch(epoch);
            next.assigned = assigned;
            next.pending_revocation = revoke;
            return next;
        }
        next.state = if unreleased {
            Reconciliation::UnreleasedPartitions
        } else {
            Reconciliation::Stable
        };
        next.set_epoch(self.assignment_epoch);
        next.assigned = assigned.into_iter().chain(pending_assign).collect();
        next.pending_revocation.clear();
        next
    }
}

impl Member {
    fn set_epoch(&mut self, epoch: i32) {
        if epoch != self.epoch {
            self.previous_epoch = self.epoch;
            self.epoch = epoch;
        }
    }
}

fn error(code: i16, message: &str) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(code)
        .with_error_message(Some(StrBytes::from_string(message.to_owned())))
}

/// The request's checks, as Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`.
fn invalid(request: &ConsumerGroupHeartbeatRequest) -> Option<ConsumerGroupHeartbeatResponse> {
    let bad = |m: &str| Some(error(INVALID_REQUEST, m));
    let empty = |s: &Option<StrBytes>| s.as_ref().is_some_and(|s| s.is_empty());
    if request.group_id.is_empty() {
        return bad("GroupId can't be empty.");
    }
    if empty(&request.instance_id) || empty(&request.rack_id) {
        return bad("InstanceId and RackId can't be empty.");
    }
    match request.member_epoch {
        e if e > 0 || e == LEAVE => {
            if request.member_id.is_empty() {
                return bad("MemberId can't be empty.");
            }
        }
        0 => {
            if request.rebalance_timeout_ms == -1 {
                return bad("RebalanceTimeoutMs must be provided in first request.");
            }
            if request
                .topic_partitions
                .as_ref()
                .is_none_or(|t| !t.is_empty())
            {
                return bad("TopicPartitions must be empty when (re-)joining.");
            }
            let names = request.subscribed_topic_names.as_ref();
            if names.is_none_or(Vec::is_empty) && request.subscribed_topic_regex.is_none() {
                return bad(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        LEAVE_STATIC => {
            if request.member_id.is_empty() || request.instance_id.is_none() {
                return bad("MemberId and InstanceId can't be empty.");
            }
        }
        _ => return bad("MemberEpoch is invalid."),
    }
    if let Some(a) = &request.server_assignor {
        if !ASSIGNORS.contains(&a.as_str()) {
            return Some(error(
                UNSUPPORTED_ASSIGNOR,
                &format!(
                    "ServerAssignor {a} is not supported. Supported assignors: uniform, range."
                ),
            ));
        }
    }
    if let Some(regex) = &request.subscribed_topic_regex {
        if !regex.is_empty() && compile(regex).is_none() {
            return Some(error(
                INVALID_REGULAR_EXPRESSION,
                "Invalid regular expression.",
            ));
        }
    }
    None
}

/// ConsumerGroupHeartbeat.
pub(super) fn heartbeat(
    state: &mut State,
    request: &ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let now = Instant::now();
    if let Some(response) = invalid(request) {
        return response;
    }
    let group_id = request.group_id.0.to_string();
    if state
        .groups
        .get(&group_id)
        .is_some_and(|g| !g.info().members.is_empty())
        || state.shares.has_group(&group_id)
    {
        return error(
            GROUP_ID_NOT_FOUND,
            &format!("Group {group_id} is not a consumer group."),
        );
    }
    let topics: BTreeMap<String, i32> = state
        .topics
        .iter()
        .map(|(name, logs)| (name.clone(), logs.len() as i32))
        .collect();
    let ids = &state.topic_ids;
    let name_of = |id: uuid::Uuid| {
        let id = id.as_u128();
        ids.iter().find(|(_, v)| **v == id).map(|(n, _)| n.clone())
    };
    let owned: Option<BTreeSet<Tp>> = request.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .filter_map(|t| Some((name_of(t.topic_id)?, &t.partitions)))
            .flat_map(|(name, ps)| ps.iter().map(move |p| (name.clone(), *p)))
            .collect()
    });
    let timeouts = state.consumer_group_timeouts;
    if request.member_epoch != 0 && !state.consumer_groups.contains_key(&group_id) {
        return error(GROUP_ID_NOT_FOUND, &format!("Group {group_id} not found."));
    }
    let group = state.consumer_groups.entry(group_id).or_default();
    group.tick(now, timeouts);
    let mut member_id = request.member_id.to_string();
    let instance_id = request.instance_id.as_ref().map(|s| s.to_string());
    let epoch = request.member_epoch;
    let static_owner = instance_id.as_ref().and_then(|i| {
        group
            .members
            .iter()
            .find(|(_, m)| m.instance_id.as_ref() == Some(i))
            .map(|(id, m)| (id.clone(), m.epoch))
    });
    let respond = |id: &str, epoch: i32| {
        ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(id.to_owned())))
            .with_member_epoch(epoch)
            .with_heartbeat_interval_ms(timeouts.heartbeat.as_millis() as i32)
    };
    if epoch == LEAVE || epoch == LEAVE_STATIC {
        let id = match (&instance_id, &static_owner) {
            (None, _) => member_id.clone(),
            (Some(_), None) => return error(UNKNOWN_MEMBER_ID, "Instance id is unknown."),
            (Some(_), Some((owner, _))) if *owner != member_id => {
                return error(
                    FENCED_INSTANCE_ID,
                    "The instance id is owned by another member.",
                )
            }
            (Some(_), Some((owner, _))) => owner.clone(),
        };
        if !group.members.contains_key(&id) {
            return error(
                UNKNOWN_MEMBER_ID,
                &format!("Member {id} is not a member of the group."),
            );
        }
        if epoch == LEAVE_STATIC {
            let mut member = group.members[&id].clone();
            group.set_partition_epochs(&member, false);
            member.epoch = LEAVE_STATIC;
            member.pending_revocation.clear();
            member.revoke_deadline = None;
            member.last_seen = now;
            group.set_partition_epochs(&member, true);
            group.members.insert(id.clone(), member);
        } else {
            group.remove(&id);
        }
        return respond(&id, epoch);
    }
    if member_id.is_empty() {
        member_id = uuid::Uuid::from_u128(fastrand::u128(..)).to_string();
    }
    let fresh = || Member {
        instance_id: instance_id.clone(),
        rebalance_timeout: Duration::ZERO,
        topics: BTreeSet::new(),
        regex: None,
        assignor: None,
        epoch: 0,
        previous_epoch: 0,
        state: Reconciliation::Stable,
        assigned: BTreeSet::new(),
        pending_revocation: BTreeSet::new(),
        last_seen: now,
        revoke_deadline: None,
    };
    let mut replaced = false;
    let member = match (&instance_id, static_owner) {
        (None, _) => match group.members.get(&member_id) {
            Some(m) => m.clone(),
            None if epoch == 0 => fresh(),
            None => {
                return error(
                    UNKNOWN_MEMBER_ID,
                    &format!("Member {member_id} is not a member of the group."),
                )
            }
        },
        (Some(_), None) if epoch == 0 => fresh(),
        (Some(_), None) => return error(UNKNOWN_MEMBER_ID, "Instance id is unknown."),
        (Some(_), Some((owner, owner_epoch))) if epoch == 0 => {
            if owner_epoch != LEAVE_STATIC {
                return error(
                    UNRELEASED_INSTANCE_ID,
                    &format!("The instance id is owned by member {owner}, which has not left."),
                );
            }
            // The instance comes back under a new member id: it takes the old member's place
            // and assignment (Kafka's replaceMember).
            let mut m = group.members.remove(&owner).expect("found");
            group.set_partition_epochs(&m, false);
            if let Some(t) = group.target.remove(&owner) {
                group.target.insert(member_id.clone(), t);
            }
            m.epoch = 0;
            m.previous_epoch = 0;
            group.set_partition_epochs(&m, true);
            replaced = true;
            m
        }
        (Some(_), Some((owner, _))) if owner != member_id => {
            return error(
                FENCED_INSTANCE_ID,
                "The instance id is owned by another member.",
            )
        }
        (Some(_), Some(_)) => group.members[&member_id].clone(),
    };
    // The member's epoch: ahead, or behind other than a lost response, is fenced.
    if epoch > member.epoch
        || (epoch < member.epoch
            && (epoch != member.previous_epoch
                || owned
                    .as_ref()
                    .is_none_or(|o| !o.is_subset(&member.assigned))))
    {
        return error(
            FENCED_MEMBER_EPOCH,
            &format!("The member epoch {epoch} is not {}.", member.epoch),
        );
    }
    let mut updated = member.clone();
    if let Some(names) = &request.subscribed_topic_names {
        updated.topics = names.iter().map(|t| t.0.to_string()).collect();
    }
    if let Some(regex) = &request.subscribed_topic_regex {
        updated.regex = (!regex.is_empty()).then(|| regex.to_string());
    }
    if let Some(a) = &request.server_assignor {
        updated.assignor = Some(a.to_string());
    }
    if request.rebalance_timeout_ms >= 0 {
        updated.rebalance_timeout = Duration::from_millis(request.rebalance_timeout_ms as u64);
    }
    updated.last_seen = now;
    let joined = !replaced && !group.members.contains_key(&member_id);
    let subscription_changed =
        joined || updated.topics != member.topics || updated.regex != member.regex;
    group.members.insert(member_id.clone(), updated.clone());
    let mut bump = subscription_changed;
    bump |= group.refresh_metadata(&topics);
    if bump {
        group.group_epoch += 1;
    }
    if group.group_epoch > group.assignment_epoch {
        group.update_target(&topics);
    }
    let reconciled = group.reconcile(&updated, owned.as_ref(), &member_id);
    group.set_partition_epochs(&updated, false);
    let mut reconciled = reconciled;
    reconciled.revoke_deadline = match reconciled.state {
        Reconciliation::UnrevokedPartitions
            if updated.state != Reconciliation::UnrevokedPartitions
                || updated.epoch != reconciled.epoch =>
        {
            Some(now + reconciled.rebalance_timeout)
        }
        Reconciliation::UnrevokedPartitions => updated.revoke_deadline,
        _ => None,
    };
    group.set_partition_epochs(&reconciled, true);
    group.members.insert(member_id.clone(), reconciled.clone());
    let full = epoch == 0
        || (request.rebalance_timeout_ms != -1
            && (request.subscribed_topic_names.is_some()
                || request.subscribed_topic_regex.is_some())
            && request.topic_partitions.is_some());
    let mut response = respond(&member_id, reconciled.epoch);
    if full || reconciled.assigned != member.assigned {
        response.assignment = Some(assignment(&reconciled.assigned, ids));
    }
    response
}

fn assignment(
    assigned: &BTreeSet<Tp>,
    ids: &std::collections::HashMap<String, u128>,
) -> Assignment {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in assigned {
        by_topic.entry(t).or_default().push(*p);
    }
    Assignment::default().with_topic_partitions(
        by_topic
            .into_iter()
            .map(|(t, ps)| {
                let id = ids.get(t).copied().unwrap_or(0);
                TopicPartitions::default()
                    .with_topic_id(uuid::Uuid::from_u128(id))
                    .with_partitions(ps)
            })
            .collect(),
    )
}

/// OffsetCommit's check for a KIP-848 group (Kafka's `ConsumerGroup.validateOffsetCommit`):
/// `None` when the group is not one.
pub(super) fn validate_commit(
    state: &mut State,
    group_id: &str,
    member_id: &str,
    epoch: i32,
    version: i16,
    transactional: bool,
) -> Option<i16> {
    let timeouts = state.consumer_group_timeouts;
    let group = state.consumer_groups.get_mut(group_id)?;
    group.tick(Instant::now(), timeouts);
    if epoch < 0 && group.members.is_empty() {
        return Some(0);
    }
    let Some(member) = group.members.get(member_id) else {
        return Some(UNKNOWN_MEMBER_ID);
    };
    if !transactional && version < 9 {
        return Some(UNSUPPORTED_VERSION);
    }
    Some(if epoch == member.epoch {
        0
    } else {
        STALE_MEMBER_EPOCH
    })
}

#[cfg(test)]
#[path = "consumer_group_tests.rs"]
mod tests;
