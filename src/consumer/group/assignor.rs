//! Partition assignors of the classic "consumer" protocol: range, roundrobin and
//! cooperative-sticky, with the names and placements Java's and librdkafka's use, so a group's
//! leader may be any of them.
//!
//! # References
//! - Java client `RangeAssignor`, `RoundRobinAssignor`, `CooperativeStickyAssignor`.
//! - KIP-54 (sticky), KIP-429 (incremental cooperative rebalancing), KIP-345 (static
//!   membership: members ordered by group instance id when they have one).

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A partition.
pub type TopicPartition = (String, i32);

/// What a member told the group when it joined.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    /// Member id.
    pub member_id: String,
    /// Static member id (KIP-345), if any.
    pub group_instance_id: Option<String>,
    /// Topics it wants.
    pub topics: Vec<String>,
    /// Partitions it owns now (cooperative protocols).
    pub owned: Vec<TopicPartition>,
    /// The generation its `owned` partitions are from (-1 if unknown).
    pub generation: i32,
}

/// Whether a rebalance revokes everything first (eager) or only what moves (cooperative).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebalanceProtocol {
    /// Every member gives up every partition before the group syncs.
    Eager,
    /// Members keep what they are assigned again; a partition that moves is revoked by its
    /// owner first, and handed to its new owner in a follow-up rebalance.
    Cooperative,
}

/// Assigns a group's partitions to its members (the group leader runs it).
pub trait Assignor: Send + Sync + std::fmt::Debug {
    /// The protocol name members agree on (`range`, `roundrobin`, `cooperative-sticky`).
    fn name(&self) -> &'static str;
    /// Eager or cooperative.
    fn protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Eager
    }
    /// The assignment: member id → partitions. `partitions` is each subscribed topic's
    /// partition count. Every member appears in the result, possibly with nothing.
    fn assign(
        &self,
        partitions: &BTreeMap<String, i32>,
        members: &[Subscription],
    ) -> BTreeMap<String, Vec<TopicPartition>>;
}

/// Members in the order assignors use: by group instance id when set, else by member id.
fn ordered(members: &[Subscription]) -> Vec<&Subscription> {
    let mut out: Vec<&Subscription> = members.iter().collect();
    out.sort_by(|a, b| {
        let key = |m: &Subscription| {
            (
                m.group_instance_id.is_none(),
                m.group_instance_id.clone().unwrap_or_default(),
                m.member_id.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    out
}

fn empty_result(members: &[Subscription]) -> BTreeMap<String, Vec<TopicPartition>> {
    members
        .iter()
        .map(|m| (m.member_id.clone(), Vec::new()))
        .collect()
}

/// Java's range assignor: per topic, partitions in contiguous ranges over the members
/// subscribed to it; the first `count % members` members get one more.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

impl Assignor for RangeAssignor {
    fn name(&self) -> &'static str {
        "range"
    }

    fn assign(
        &self,
        partitions: &BTreeMap<String, i32>,
        members: &[Subscription],
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let mut out = empty_result(members);
        let members = ordered(members);
        for (topic, &count) in partitions {
            let subscribed: Vec<&&Subscription> = members
                .iter()
                .filter(|m| m.topics.contains(topic))
                .collect();
            if subscribed.is_empty() {
                continue;
            }
            let n = subscribed.len() as i32;
            let (per, extra) = (count / n, count % n);
            let mut next = 0;
            for (i, m) in subscribed.iter().enumerate() {
                let take = per + i32::from((i as i32) < extra);
                let list = out.get_mut(&m.member_id).expect("every member is in out");
                list.extend((next..next + take).map(|p| (topic.clone(), p)));
                next += take;
            }
        }
        out
    }
}

/// Java's roundrobin assignor: every partition of every topic, in (topic, partition) order,
/// dealt to the members in turn, skipping members not subscribed to its topic.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinAssignor;

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &'static str {
        "roundrobin"
    }

    fn assign(
        &self,
        partitions: &BTreeMap<String, i32>,
        members: &[Subscription],
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let mut out = empty_result(members);
        let members = ordered(members);
        if members.is_empty() {
            return out;
        }
        let mut turn = 0;
        for (topic, &count) in partitions {
            for p in 0..count {
                // The next member in turn that wants this topic.
                for step in 0..members.len() {
                    let m = members[(turn + step) % members.len()];
                    if m.topics.contains(topic) {
                        out.get_mut(&m.member_id)
                            .expect("every member is in out")
                            .push((topic.clone(), p));
                        turn = (turn + step + 1) % members.len();
                        break;
                    }
                }
            }
        }
        out
    }
}

/// Cooperative sticky: as balanced as the subscriptions allow, moving as few partitions as it
/// can from their current owners, and never handing a partition to a new owner in the same
/// rebalance its old owner gives it up (KIP-429): the old owner revokes it, rejoins, and the
/// follow-up rebalance assigns it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CooperativeStickyAssignor;

impl Assignor for CooperativeStickyAssignor {
    fn name(&self) -> &'static str {
        "cooperative-sticky"
    }

    fn protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Cooperative
    }

    fn assign(
        &self,
        partitions: &BTreeMap<String, i32>,
        members: &[Subscription],
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let target = sticky(partitions, members);
        // Partitions changing owner are withheld from their new owner this round.
        let mut previous: HashMap<&TopicPartition, &str> = HashMap::new();
        for m in members {
            for tp in &m.owned {
                previous.insert(tp, &m.member_id);
            }
        }
        target
            .into_iter()
            .map(|(member, tps)| {
                let kept = tps
                    .into_iter()
                    .filter(|tp| previous.get(tp).is_none_or(|owner| *owner == member))
                    .collect();
                (member, kept)
            })
            .collect()
    }
}

/// The balanced, sticky target assignment (before cooperative withholding).
fn sticky(
    partitions: &BTreeMap<String, i32>,
    members: &[Subscription],
) -> BTreeMap<String, Vec<TopicPartition>> {
    let members = ordered(members);
    let mut out: BTreeMap<String, BTreeSet<TopicPartition>> = members
        .iter()
        .map(|m| (m.member_id.clone(), BTreeSet::new()))
        .collect();
    if members.is_empty() {
        return BTreeMap::new();
    }
    let exists = |tp: &TopicPartition| {
        partitions
            .get(&tp.0)
            .is_some_and(|n| tp.1 >= 0 && tp.1 < *n)
    };
    // 1. Keep what members own and still may have; a partition claimed twice goes to the
    //    claim from the newest generation.
    let mut claims: BTreeMap<TopicPartition, (i32, &str)> = BTreeMap::new();
    for m in &members {
        for tp in &m.owned {
            if !exists(tp) || !m.topics.contains(&tp.0) {
                continue;
            }
            let newer = claims.get(tp).is_none_or(|(g, _)| m.generation > *g);
            if newer {
                claims.insert(tp.clone(), (m.generation, &m.member_id));
            }
        }
    }
    for (tp, (_, member)) in &claims {
        out.get_mut(*member).expect("a member").insert(tp.clone());
    }
    // 2. Quotas: with n partitions over m members, nobody holds more than ceil(n / m).
    let all: Vec<TopicPartition> = partitions
        .iter()
        .flat_map(|(t, &n)| (0..n).map(move |p| (t.clone(), p)))
        .filter(|tp| members.iter().any(|m| m.topics.contains(&tp.0)))
        .collect();
    let max_quota = all.len().div_ceil(members.len());
    let mut unassigned: BTreeSet<TopicPartition> = all
        .iter()
        .filter(|tp| !claims.contains_key(*tp))
        .cloned()
        .collect();
    for set in out.values_mut() {
        while set.len() > max_quota {
            let last = set.iter().next_back().cloned().expect("non-empty");
            set.remove(&last);
            unassigned.insert(last);
        }
    }
    // 3. Hand out the rest, each to the least loaded member that wants it.
    for tp in unassigned {
        let chosen = members
            .iter()
            .filter(|m| m.topics.contains(&tp.0))
            .min_by_key(|m| (out[&m.member_id].len(), m.member_id.clone()));
        if let Some(m) = chosen {
            out.get_mut(&m.member_id).expect("a member").insert(tp);
        }
    }
    // 4. Even out: move from the most to the least loaded while they differ by two or more
    //    and the receiver wants the topic.
    loop {
        let (most, least) = {
            let by_load = |a: &&&Subscription, b: &&&Subscription| {
                out[&a.member_id].len().cmp(&out[&b.member_id].len())
            };
            let most = members.iter().max_by(by_load).expect("members");
            let least = members.iter().min_by(by_load).expect("members");
            (most.member_id.clone(), *least)
        };
        if out[&most].len() < out[&least.member_id].len() + 2 {
            break;
        }
        let movable = out[&most]
            .iter()
            .find(|tp| least.topics.contains(&tp.0))
            .cloned();
        let Some(tp) = movable else {
            break;
        };
        out.get_mut(&most).expect("a member").remove(&tp);
        out.get_mut(&least.member_id).expect("a member").insert(tp);
    }
    out.into_iter()
        .map(|(m, set)| (m, set.into_iter().collect()))
        .collect()
}

/// An assignor by its protocol name.
pub fn by_name(name: &str) -> Option<Box<dyn Assignor>> {
    match name {
        "range" => Some(Box::new(RangeAssignor)),
        "roundrobin" => Some(Box::new(RoundRobinAssignor)),
        "cooperative-sticky" => Some(Box::new(CooperativeStickyAssignor)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
