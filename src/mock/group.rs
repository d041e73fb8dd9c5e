//! The embedded cluster's group coordinator: the classic protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, OffsetCommit) as Kafka's `GroupCoordinator` runs it.
//!
//! - A join starts a rebalance (or joins the one under way) and is answered when every known
//!   member has joined again, or when the rebalance timeout removes the ones that did not.
//!   The leader (the previous one if it rejoined, else the first to join) gets the members'
//!   metadata. Version 4 and later ask a new member to join again with an id
//!   (MEMBER_ID_REQUIRED, KIP-394).
//! - SyncGroup from the leader stores every assignment; a follower's waits for it.
//! - A member that sends nothing for its session timeout is removed, which starts a rebalance.
//! - Static members (KIP-345): a known `group.instance.id` that joins again while the group is
//!   stable takes its old place with a new member id and gets its old assignment, with no
//!   rebalance; the old member id is fenced (FENCED_INSTANCE_ID).
//! - Every request from a member of an older generation, an unknown member, or during a
//!   rebalance gets ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID or REBALANCE_IN_PROGRESS, as Kafka's;
//!   an offset commit in the current generation is accepted while the rebalance waits for
//!   joins (members commit what they revoke), and refused once it waits for the assignment.
//!
//! Everything here runs under the cluster's lock. A request that must wait (a join, a
//! follower's sync) is answered by a [`Poll`] the connection calls until it is ready.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::handlers::{Poll, Ready};
use super::State;
use crate::error::codes::{
    FENCED_INSTANCE_ID, ILLEGAL_GENERATION, INCONSISTENT_GROUP_PROTOCOL, MEMBER_ID_REQUIRED,
    REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID, UNKNOWN_TOPIC_OR_PARTITION,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Empty,
    /// Waiting for members to join, until the deadline.
    Preparing {
        deadline: Instant,
    },
    /// Joined; waiting for the leader's assignments.
    Completing,
    Stable,
}

#[derive(Debug)]
struct Member {
    instance_id: Option<String>,
    /// The `client.id` it joined with.
    client_id: String,
    protocols: Vec<(String, Bytes)>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    last_seen: Instant,
    /// Joined the rebalance under way.
    joined: bool,
    assignment: Bytes,
}

/// One group's coordinator state.
#[derive(Debug)]
pub(super) struct Group {
    phase: Phase,
    generation: i32,
    protocol_type: String,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Join responses of the last completed rebalance, taken by the waiting requests.
    join_results: BTreeMap<String, JoinGroupResponse>,
    /// Ids handed out with MEMBER_ID_REQUIRED, not yet joined with.
    pending: BTreeSet<String>,
    next_member: u64,
}

impl Default for Group {
    fn default() -> Self {
        Group {
            phase: Phase::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            join_results: BTreeMap::new(),
            pending: BTreeSet::new(),
            next_member: 0,
        }
    }
}

/// A read-only view of a group, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// Generation of the last completed rebalance.
    pub generation: i32,
    /// Member ids, in order.
    pub members: Vec<String>,
    /// The leader's member id.
    pub leader: Option<String>,
    /// The group is stable (every member has its assignment).
    pub stable: bool,
    /// Static members: member id by `group.instance.id`.
    pub instances: BTreeMap<String, String>,
}

/// A member as DescribeGroups shows it: id, instance id, client id, and (in a stable group)
/// its metadata for the group's protocol and its assignment.
pub(super) type DescribedMember = (String, Option<String>, String, Bytes, Bytes);

impl Group {
    /// The state's name, as Kafka's `ClassicGroupState`.
    pub(super) fn state_name(&self) -> &'static str {
        match self.phase {
            Phase::Empty => "Empty",
            Phase::Preparing { .. } => "PreparingRebalance",
            Phase::Completing => "CompletingRebalance",
            Phase::Stable => "Stable",
        }
    }

    pub(super) fn protocol_type(&self) -> &str {
        &self.protocol_type
    }

    /// Each member's metadata for the protocol the group chose (`None` before it chose one).
    pub(super) fn chosen_metadata(&self) -> Option<Vec<Bytes>> {
        let chosen = self.protocol.as_ref()?;
        Some(
            self.members
                .values()
                .map(|m| {
                    m.protocols
                        .iter()
                        .find(|(name, _)| name == chosen)
                        .map(|(_, meta)| meta.clone())
                        .unwrap_or_default()
                })
                .collect(),
        )
    }

    /// Whether it has no members (and may be deleted, or take admin offset commits).
    pub(super) fn is_empty(&self) -> bool {
        self.phase == Phase::Empty
    }

    /// Its protocol (in a stable group) and members, as Kafka's `GroupMetadataManager
    /// .describeGroups`: metadata and assignments only once stable.
    pub(super) fn describe(&self) -> (Option<String>, Vec<DescribedMember>) {
        let stable = self.phase == Phase::Stable;
        let protocol = self.protocol.clone().filter(|_| stable);
        let members = self
            .members
            .iter()
            .map(|(id, m)| {
                let (metadata, assignment) = match &protocol {
                    Some(p) => (
                        m.protocols
                            .iter()
                            .find(|(name, _)| name == p)
                            .map(|(_, meta)| meta.clone())
                            .unwrap_or_default(),
                        m.assignment.clone(),
                    ),
                    None => (Bytes::new(), Bytes::new()),
                };
                (
                    id.clone(),
                    m.instance_id.clone(),
                    m.client_id.clone(),
                    metadata,
                    assignment,
                )
            })
            .collect();
        (protocol, members)
    }

    pub(super) fn info(&self) -> GroupInfo {
        GroupInfo {
            generation: self.generation,
            members: self.members.keys().cloned().collect(),
            leader: self.leader.clone(),
            stable: self.phase == Phase::Stable,
            instances: self
                .members
                .iter()
                .filter_map(|(id, m)| Some((m.instance_id.clone()?, id.clone())))
                .collect(),
        }
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_member += 1;
        format!("{client_id}-{:08x}", self.next_member)
    }

    fn rebalance(&mut self, now: Instant) {
        if self.members.is_empty() {
            self.phase = Phase::Empty;
            self.leader = None;
            self.protocol = None;
            return;
        }
        if !matches!(self.phase, Phase::Preparing { .. }) {
            let timeout = self
                .members
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or_default();
            self.phase = Phase::Preparing {
                deadline: now + timeout,
            };
            for member in self.members.values_mut() {
                member.joined = false;
            }
        }
    }

    /// Expires silent members and completes a rebalance that is ready.
    pub(super) fn tick(&mut self, now: Instant) {
        let preparing = matches!(self.phase, Phase::Preparing { .. });
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| !(preparing && m.joined))
            .filter(|(_, m)| now.duration_since(m.last_seen) > m.session_timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            tracing::debug!(member = id, "mock group: session expired");
            self.members.remove(id);
        }
        if !expired.is_empty() {
            self.rebalance(now);
        }
        if let Phase::Preparing { deadline } = self.phase {
            if self.members.values().all(|m| m.joined) || now >= deadline {
                self.complete_join(now);
            }
        }
    }

    fn complete_join(&mut self, now: Instant) {
        self.members.retain(|_, m| m.joined);
        if self.members.is_empty() {
            self.rebalance(now);
            return;
        }
        self.generation += 1;
        let leader = self.next_leader().expect("not empty");
        let protocol = self.select_protocol();
        self.leader = Some(leader.clone());
        self.protocol = protocol.clone();
        self.phase = Phase::Completing;
        let protocol = protocol.unwrap_or_default();
        let metadata: Vec<JoinGroupResponseMember> = self
            .members
            .iter()
            .map(|(id, m)| {
                let meta = m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, meta)| meta.clone())
                    .unwrap_or_default();
                JoinGroupResponseMember::default()
                    .with_member_id(StrBytes::from_string(id.clone()))
                    .with_group_instance_id(m.instance_id.clone().map(StrBytes::from_string))
                    .with_metadata(meta)
            })
            .collect();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let members = if id == leader {
                metadata.clone()
            } else {
                Vec::new()
            };
            let response = self.join_response(&id).with_members(members);
            let member = self.members.get_mut(&id).expect("listed");
            member.joined = false;
            member.last_seen = now;
            self.join_results.insert(id, response);
        }
    }

    /// The leader of the next generation: the current one if still a member, else the first.
    fn next_leader(&self) -> Option<String> {
        match &self.leader {
            Some(l) if self.members.contains_key(l) => Some(l.clone()),
            _ => self.members.keys().next().cloned(),
        }
    }

    /// The protocol the next generation would use: the first of the leader's that every
    /// member supports.
    fn select_protocol(&self) -> Option<String> {
        let leader = self.next_leader()?;
        self.members[&leader]
            .protocols
            .iter()
            .map(|(name, _)| name.clone())
            .find(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    fn join_response(&self, member_id: &str) -> JoinGroupResponse {
        JoinGroupResponse::default()
            .with_generation_id(self.generation)
            .with_protocol_type(Some(StrBytes::from_string(self.protocol_type.clone())))
            .with_protocol_name(self.protocol.clone().map(StrBytes::from_string))
            .with_leader(StrBytes::from_string(
                self.leader.clone().unwrap_or_default(),
            ))
            .with_member_id(StrBytes::from_string(member_id.to_owned()))
    }

    /// Checks a request's member, instance and generation (`None`: no generation check).
    pub(super) fn check(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: Option<i32>,
    ) -> i16 {
        if let Some(instance) = instance_id {
            let owner = self
                .members
                .iter()
                .find(|(_, m)| m.instance_id.as_deref() == Some(instance));
            if let Some((owner, _)) = owner {
                if owner != member_id {
                    return FENCED_INSTANCE_ID;
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return UNKNOWN_MEMBER_ID;
        }
        match generation {
            Some(g) if g != self.generation => ILLEGAL_GENERATION,
            _ => 0,
        }
    }

    /// Removes a member as its session's expiry would (a rebalance starts); false if unknown.
    pub(super) fn expire(&mut self, member_id: &str, now: Instant) -> bool {
        if self.members.remove(member_id).is_none() {
            return false;
        }
        self.rebalance(now);
        true
    }

    fn seen(&mut self, member_id: &str, now: Instant) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_seen = now;
        }
    }
}

fn join_error(code: i16, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(code)
        .with_generation_id(-1)
        .with_member_id(StrBytes::from_string(member_id.to_owned()))
}

/// JoinGroup: an immediate answer, or a [`Poll`] that waits for the rebalance.
pub(super) fn join(
    state: &mut State,
    request: &JoinGroupRequest,
    version: i16,
    client_id: &str,
) -> Result<JoinGroupResponse, Poll> {
    let now = Instant::now();
    let group_id = request.group_id.0.to_string();
    // A KIP-848 group with members is not joined by the classic protocol here (see
    // consumer_group's module docs).
    if state
        .consumer_groups
        .get(&group_id)
        .is_some_and(|g| !g.is_empty())
    {
        return Ok(join_error(INCONSISTENT_GROUP_PROTOCOL, ""));
    }
    let group = state.groups.entry(group_id.clone()).or_default();
    group.tick(now);
    let protocols: Vec<(String, Bytes)> = request
        .protocols
        .iter()
        .map(|p| (p.name.to_string(), p.metadata.clone()))
        .collect();
    if request.protocol_type.is_empty() || protocols.is_empty() {
        return Ok(join_error(INCONSISTENT_GROUP_PROTOCOL, ""));
    }
    if group.phase != Phase::Empty
        && (group.protocol_type != request.protocol_type.as_str()
            || !protocols.iter().any(|(name, _)| {
                group
                    .members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            }))
    {
        return Ok(join_error(INCONSISTENT_GROUP_PROTOCOL, ""));
    }
    let instance_id = request.group_instance_id.as_ref().map(|s| s.to_string());
    let mut member_id = request.member_id.to_string();
    let known_static = instance_id.as_ref().and_then(|instance| {
        group
            .members
            .iter()
            .find(|(_, m)| m.instance_id.as_ref() == Some(instance))
            .map(|(id, _)| id.clone())
    });
    if member_id.is_empty() {
        member_id = group.new_member_id(client_id);
        if version >= 4 && instance_id.is_none() {
            // KIP-394: the member joins again with this id.
            group.pending.insert(member_id.clone());
            return Ok(join_error(MEMBER_ID_REQUIRED, &member_id));
        }
    } else if known_static
        .as_ref()
        .is_some_and(|owner| *owner != member_id)
    {
        return Ok(join_error(FENCED_INSTANCE_ID, &member_id));
    } else if !group.pending.remove(&member_id) && !group.members.contains_key(&member_id) {
        return Ok(join_error(UNKNOWN_MEMBER_ID, &member_id));
    }
    let session_timeout = Duration::from_millis(request.session_timeout_ms.max(1) as u64);
    let rebalance_timeout = if version >= 1 {
        Duration::from_millis(request.rebalance_timeout_ms.max(1) as u64)
    } else {
        session_timeout
    };
    group.protocol_type = request.protocol_type.to_string();
    // A static member back while the group is stable takes its old place, under a new id,
    // with no rebalance. Its old leadership is not handed to it (Kafka answers the old
    // leader id, or from v9 the new one with skip_assignment, KIP-814): the assignment stands.
    if let Some(old) = known_static.filter(|old| *old != member_id) {
        let mut member = group.members.remove(&old).expect("found above");
        member.last_seen = now;
        member.protocols = protocols.clone();
        group.members.insert(member_id.clone(), member);
        group.pending.remove(&old);
        let was_leader = group.leader.as_deref() == Some(old.as_str());
        if was_leader {
            group.leader = Some(member_id.clone());
        }
        // As Kafka's GroupCoordinator: in a stable group, the static member takes its place
        // without a rebalance unless the protocol the group would now select changes (its
        // metadata bytes may differ: a restarted process owns nothing yet).
        let same = group.select_protocol() == group.protocol;
        if group.phase == Phase::Stable && same {
            let response = group.join_response(&member_id);
            return Ok(match (was_leader, version >= 9) {
                (true, true) => response.with_skip_assignment(true),
                (true, false) => response.with_leader(StrBytes::from_string(old)),
                (false, _) => response,
            });
        }
    }
    let member = group
        .members
        .entry(member_id.clone())
        .or_insert_with(|| Member {
            instance_id: instance_id.clone(),
            client_id: client_id.to_owned(),
            protocols: protocols.clone(),
            session_timeout,
            rebalance_timeout,
            last_seen: now,
            joined: false,
            assignment: Bytes::new(),
        });
    member.protocols = protocols;
    member.session_timeout = session_timeout;
    member.rebalance_timeout = rebalance_timeout;
    member.last_seen = now;
    // Any join outside a rebalance starts one. (Kafka answers a follower whose metadata did
    // not change with the current generation instead; a rebalance is the stricter test.)
    group.rebalance(now);
    group.join_results.remove(&member_id);
    if let Some(m) = group.members.get_mut(&member_id) {
        m.joined = true;
    }
    group.tick(now);
    Err(Box::new(move |state: &mut State| {
        let group = state.groups.get_mut(&group_id)?;
        group.tick(Instant::now());
        if let Some(response) = group.join_results.remove(&member_id) {
            return Some(Ready::Join(response));
        }
        if !group.members.contains_key(&member_id) {
            return Some(Ready::Join(join_error(UNKNOWN_MEMBER_ID, &member_id)));
        }
        None
    }))
}

/// SyncGroup: the leader's stores the assignments; a follower's waits for them.
pub(super) fn sync(
    state: &mut State,
    request: &SyncGroupRequest,
) -> Result<SyncGroupResponse, Poll> {
    let now = Instant::now();
    let group_id = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    let generation = request.generation_id;
    let Some(group) = state.groups.get_mut(&group_id) else {
        return Ok(SyncGroupResponse::default().with_error_code(UNKNOWN_MEMBER_ID));
    };
    group.tick(now);
    let instance = request.group_instance_id.as_ref().map(|s| s.as_str());
    let code = group.check(&member_id, instance, Some(generation));
    if code != 0 {
        return Ok(SyncGroupResponse::default().with_error_code(code));
    }
    group.seen(&member_id, now);
    if matches!(group.phase, Phase::Preparing { .. }) {
        return Ok(SyncGroupResponse::default().with_error_code(REBALANCE_IN_PROGRESS));
    }
    if group.phase == Phase::Completing && group.leader.as_deref() == Some(member_id.as_str()) {
        for member in group.members.values_mut() {
            member.assignment = Bytes::new();
        }
        for a in &request.assignments {
            if let Some(m) = group.members.get_mut(a.member_id.as_str()) {
                m.assignment = a.assignment.clone();
            }
        }
        group.phase = Phase::Stable;
    }
    let protocol_type = Some(StrBytes::from_string(group.protocol_type.clone()));
    let protocol_name = group.protocol.clone().map(StrBytes::from_string);
    let ready = move |group: &Group| -> Option<SyncGroupResponse> {
        let response = SyncGroupResponse::default()
            .with_protocol_type(protocol_type.clone())
            .with_protocol_name(protocol_name.clone());
        match group.phase {
            Phase::Stable if group.generation == generation => {
                let assignment = group.members.get(&member_id)?.assignment.clone();
                Some(response.with_assignment(assignment))
            }
            Phase::Completing if group.generation == generation => None,
            _ => {
                let code = match group.check(&member_id, None, Some(generation)) {
                    0 => REBALANCE_IN_PROGRESS,
                    code => code,
                };
                Some(response.with_error_code(code))
            }
        }
    };
    if let Some(response) = ready(group) {
        return Ok(response);
    }
    Err(Box::new(move |state: &mut State| {
        let group = state.groups.get_mut(&group_id)?;
        group.tick(Instant::now());
        ready(group).map(Ready::Sync)
    }))
}

/// Heartbeat: the member's standing in the group.
pub(super) fn heartbeat(state: &mut State, request: &HeartbeatRequest) -> i16 {
    let now = Instant::now();
    let Some(group) = state.groups.get_mut(request.group_id.0.as_str()) else {
        return UNKNOWN_MEMBER_ID;
    };
    group.tick(now);
    let member_id = request.member_id.as_str();
    let instance = request.group_instance_id.as_ref().map(|s| s.as_str());
    let code = group.check(member_id, instance, None);
    if code != 0 {
        return code;
    }
    group.seen(member_id, now);
    match group.phase {
        Phase::Preparing { .. } => REBALANCE_IN_PROGRESS,
        _ if request.generation_id != group.generation => ILLEGAL_GENERATION,
        _ => 0,
    }
}

/// LeaveGroup: removes the members (v3 and later name several), starting a rebalance.
pub(super) fn leave(
    state: &mut State,
    request: &LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let now = Instant::now();
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let Some(group) = state.groups.get_mut(request.group_id.0.as_str()) else {
        return LeaveGroupResponse::default().with_error_code(UNKNOWN_MEMBER_ID);
    };
    let mut results = Vec::new();
    let mut removed = false;
    for (member_id, instance) in leaving {
        // A static member may leave by instance id alone.
        let id = match (&instance, member_id.is_empty()) {
            (Some(instance), true) => group
                .members
                .iter()
                .find(|(_, m)| m.instance_id.as_ref() == Some(instance))
                .map(|(id, _)| id.clone())
                .unwrap_or_default(),
            _ => member_id.clone(),
        };
        let code = group.check(&id, instance.as_deref(), None);
        if code == 0 {
            group.members.remove(&id);
            group.join_results.remove(&id);
            removed = true;
        }
        results.push(
            MemberResponse::default()
                .with_member_id(StrBytes::from_string(member_id))
                .with_group_instance_id(instance.map(StrBytes::from_string))
                .with_error_code(code),
        );
    }
    if removed {
        group.rebalance(now);
        group.tick(now);
    }
    let top = if version < 3 {
        results.first().map_or(0, |r| r.error_code)
    } else {
        0
    };
    LeaveGroupResponse::default()
        .with_error_code(top)
        .with_members(if version >= 3 { results } else { Vec::new() })
}

/// OffsetCommit: a group member's commit is checked against its generation; a commit with
/// generation -1 is a simple (standalone) one.
pub(super) fn offset_commit(
    state: &mut State,
    request: &OffsetCommitRequest,
    version: i16,
    error: Option<i16>,
) -> OffsetCommitResponse {
    let now = Instant::now();
    let group_id = request.group_id.0.to_string();
    let generation = request.generation_id_or_member_epoch;
    let mut code = error.unwrap_or(0);
    let modern = (code == 0)
        .then(|| {
            let member = request.member_id.as_str();
            super::consumer_group::validate_commit(
                state, &group_id, member, generation, version, false,
            )
        })
        .flatten();
    let admin =
        generation < 0 && request.member_id.is_empty() && request.group_instance_id.is_none();
    if let Some(modern) = modern {
        code = modern;
    } else if code == 0 && admin {
        // As Kafka's ClassicGroup.validateOffsetCommit: a commit from outside the group (an
        // admin client, a consumer without group management) only while it has no members.
        if state.groups.get(&group_id).is_some_and(|g| !g.is_empty()) {
            code = UNKNOWN_MEMBER_ID;
        }
    } else if code == 0 && generation >= 0 {
        code = match state.groups.get_mut(&group_id) {
            None => ILLEGAL_GENERATION,
            Some(group) => {
                group.tick(now);
                let instance = request.group_instance_id.as_ref().map(|s| s.as_str());
                match group.check(request.member_id.as_str(), instance, Some(generation)) {
                    // As Kafka's ClassicGroup.validateOffsetCommit: a member of the current
                    // generation may commit while the group prepares a rebalance (it is
                    // revoking partitions); only once the join is done and the new generation
                    // awaits its assignment is the commit refused.
                    0 if group.phase == Phase::Completing => REBALANCE_IN_PROGRESS,
                    0 => {
                        group.seen(request.member_id.as_str(), now);
                        0
                    }
                    code => code,
                }
            }
        };
    }
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let known = state.topics.get(t.name.0.as_str()).map_or(0, Vec::len) as i32;
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = if code == 0 && !(0..known).contains(&p.partition_index) {
                        UNKNOWN_TOPIC_OR_PARTITION
                    } else {
                        code
                    };
                    if code == 0 {
                        let key = (group_id.clone(), t.name.0.to_string(), p.partition_index);
                        state
                            .offset_epochs
                            .insert(key.clone(), p.committed_leader_epoch);
                        state.offsets.insert(key, p.committed_offset);
                    }
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
