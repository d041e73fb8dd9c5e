//! The embedded cluster's server-side assignors for KIP-848 groups (`group.remote.assignor`):
//! `uniform` (the default) and `range`, as Apache Kafka's group coordinator names them.
//!
//! - **uniform** (Kafka's `UniformAssignor`): balanced (member counts differ by at most one
//!   among members that could take the same partitions) and sticky: a member keeps what the last
//!   target assignment gave it, within its share, and only the surplus moves.
//! - **range** (Kafka's `RangeAssignor`): per topic, the subscribed members in order (by
//!   `group.instance.id` when static, else member id) take contiguous ranges, the first ones one
//!   more when the count does not divide; members subscribed to the same co-partitioned topics get
//!   the same partition numbers of each.

use std::collections::{BTreeMap, BTreeSet};

/// A topic partition by name.
pub(super) type Tp = (String, i32);

/// One member as an assignor sees it.
pub(super) struct AssignMember<'a> {
    pub id: &'a str,
    pub instance_id: Option<&'a str>,
    pub topics: &'a BTreeSet<String>,
    /// What the last target assignment gave it.
    pub current: &'a BTreeSet<Tp>,
}

/// The assignor names the coordinator knows, the default first (`group.consumer.assignors`).
pub(super) const ASSIGNORS: &[&str] = &["uniform", "range"];

/// The new target assignment: every member's partitions. `partitions` holds each subscribed
/// topic's partition count.
pub(super) fn assign(
    assignor: &str,
    partitions: &BTreeMap<String, i32>,
    members: &[AssignMember<'_>],
) -> BTreeMap<String, BTreeSet<Tp>> {
    match assignor {
        "range" => range(partitions, members),
        _ => uniform(partitions, members),
    }
}

fn range(
    partitions: &BTreeMap<String, i32>,
    members: &[AssignMember<'_>],
) -> BTreeMap<String, BTreeSet<Tp>> {
    let mut out: BTreeMap<String, BTreeSet<Tp>> = members
        .iter()
        .map(|m| (m.id.to_owned(), BTreeSet::new()))
        .collect();
    for (topic, &count) in partitions {
        let mut subscribed: Vec<&AssignMember<'_>> = members
            .iter()
            .filter(|m| m.topics.contains(topic))
            .collect();
        if subscribed.is_empty() {
            continue;
        }
        subscribed.sort_by_key(|m| (m.instance_id.unwrap_or(m.id), m.id));
        let n = subscribed.len() as i32;
        let (each, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in subscribed.iter().enumerate() {
            let take = each + i32::from((i as i32) < extra);
            let set = out.get_mut(m.id).expect("listed");
            set.extend((next..next + take).map(|p| (topic.clone(), p)));
            next += take;
        }
    }
    out
}

fn uniform(
    partitions: &BTreeMap<String, i32>,
    members: &[AssignMember<'_>],
) -> BTreeMap<String, BTreeSet<Tp>> {
    let exists = |(t, p): &Tp| partitions.get(t).is_some_and(|n| (0..*n).contains(p));
    let subscribed = |m: &AssignMember<'_>, t: &str| m.topics.contains(t);
    let mut out: BTreeMap<String, BTreeSet<Tp>> = BTreeMap::new();
    let mut taken: BTreeSet<Tp> = BTreeSet::new();
    // Stickiness: each member keeps what it had, if it still exists and is still subscribed.
    for m in members {
        let keep: BTreeSet<Tp> = m
            .current
            .iter()
            .filter(|tp| exists(tp) && subscribed(m, &tp.0) && !taken.contains(*tp))
            .cloned()
            .collect();
        taken.extend(keep.iter().cloned());
        out.insert(m.id.to_owned(), keep);
    }
    // Every free partition goes to the least loaded member that may take it.
    for (topic, &count) in partitions {
        for p in 0..count {
            let tp = (topic.clone(), p);
            if taken.contains(&tp) {
                continue;
            }
            let least = members
                .iter()
                .filter(|m| subscribed(m, topic))
                .min_by_key(|m| (out[m.id].len(), m.id));
            if let Some(m) = least {
                out.get_mut(m.id).expect("listed").insert(tp.clone());
                taken.insert(tp);
            }
        }
    }
    // Balance: while a member has two more than another that could take one of its
    // partitions, move one (the highest-numbered, so the sticky part stays low).
    loop {
        let mut moved = false;
        let mut order: Vec<&AssignMember<'_>> = members.iter().collect();
        order.sort_by_key(|m| std::cmp::Reverse((out[m.id].len(), m.id)));
        'outer: for rich in &order {
            for poor in order.iter().rev() {
                if out[rich.id].len() < out[poor.id].len() + 2 {
                    continue;
                }
                let give = out[rich.id]
                    .iter()
                    .rev()
                    .find(|tp| subscribed(poor, &tp.0))
                    .cloned();
                if let Some(tp) = give {
                    out.get_mut(rich.id).expect("listed").remove(&tp);
                    out.get_mut(poor.id).expect("listed").insert(tp);
                    moved = true;
                    break 'outer;
                }
            }
        }
        if !moved {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members<'a>(
        ids: &'a [&'a str],
        topics: &'a BTreeSet<String>,
        current: &'a [BTreeSet<Tp>],
    ) -> Vec<AssignMember<'a>> {
        ids.iter()
            .zip(current)
            .map(|(id, current)| AssignMember {
                id,
                instance_id: None,
                topics,
                current,
            })
            .collect()
    }

    fn counts(a: &BTreeMap<String, BTreeSet<Tp>>) -> Vec<usize> {
        a.values().map(BTreeSet::len).collect()
    }

    #[test]
    fn uniform_is_balanced_and_keeps_what_it_can() {
        let topics: BTreeSet<String> = ["a".to_owned()].into();
        let partitions: BTreeMap<String, i32> = [("a".to_owned(), 7)].into();
        let empty = vec![BTreeSet::new(); 3];
        let first = assign(
            "uniform",
            &partitions,
            &members(&["m1", "m2"], &topics, &empty),
        );
        assert_eq!(counts(&first), vec![4, 3]);
        // A third member joins: it takes two, and the others give up only their surplus.
        let current = vec![first["m1"].clone(), first["m2"].clone(), BTreeSet::new()];
        let second = assign(
            "uniform",
            &partitions,
            &members(&["m1", "m2", "m3"], &topics, &current),
        );
        let mut sizes = counts(&second);
        sizes.sort();
        assert_eq!(sizes, vec![2, 2, 3]);
        assert!(second["m1"].is_subset(&first["m1"]));
        assert!(second["m2"].is_subset(&first["m2"]));
        let all: BTreeSet<Tp> = second.values().flatten().cloned().collect();
        assert_eq!(all.len(), 7);
    }

    #[test]
    fn uniform_gives_a_topic_only_to_its_subscribers() {
        let ab: BTreeSet<String> = ["a".to_owned(), "b".to_owned()].into();
        let a: BTreeSet<String> = ["a".to_owned()].into();
        let partitions: BTreeMap<String, i32> = [("a".to_owned(), 2), ("b".to_owned(), 4)].into();
        let none = BTreeSet::new();
        let ms = vec![
            AssignMember {
                id: "m1",
                instance_id: None,
                topics: &ab,
                current: &none,
            },
            AssignMember {
                id: "m2",
                instance_id: None,
                topics: &a,
                current: &none,
            },
        ];
        let out = assign("uniform", &partitions, &ms);
        assert!(out["m2"].iter().all(|(t, _)| t == "a"));
        assert_eq!(out.values().map(BTreeSet::len).sum::<usize>(), 6);
        assert_eq!(out["m2"].len(), 2, "{out:?}");
    }

    #[test]
    fn range_gives_contiguous_co_partitioned_ranges() {
        let topics: BTreeSet<String> = ["t1".to_owned(), "t2".to_owned()].into();
        let partitions: BTreeMap<String, i32> = [("t1".to_owned(), 3), ("t2".to_owned(), 3)].into();
        let empty = vec![BTreeSet::new(); 2];
        let out = assign(
            "range",
            &partitions,
            &members(&["m0", "m1"], &topics, &empty),
        );
        let tp = |t: &str, p| (t.to_owned(), p);
        assert_eq!(
            out["m0"],
            [tp("t1", 0), tp("t1", 1), tp("t2", 0), tp("t2", 1)].into()
        );
        assert_eq!(out["m1"], [tp("t1", 2), tp("t2", 2)].into());
    }
}
