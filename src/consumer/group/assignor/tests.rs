//! Assignors, deterministically: Java's documented placements, and properties over random
//! groups (every partition once, balance, stickiness, cooperative withholding).

use proptest::prelude::*;

use super::*;

fn member(id: &str, topics: &[&str]) -> Subscription {
    Subscription {
        member_id: id.to_owned(),
        topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        generation: -1,
        ..Subscription::default()
    }
}

fn tp(t: &str, p: i32) -> TopicPartition {
    (t.to_owned(), p)
}

fn topics(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
    list.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
}

#[test]
fn range_places_partitions_as_java_does() {
    // The RangeAssignor javadoc's example.
    let parts = topics(&[("t0", 3), ("t1", 3)]);
    let members = [member("C0", &["t0", "t1"]), member("C1", &["t0", "t1"])];
    let out = RangeAssignor.assign(&parts, &members);
    assert_eq!(
        out["C0"],
        [tp("t0", 0), tp("t0", 1), tp("t1", 0), tp("t1", 1)]
    );
    assert_eq!(out["C1"], [tp("t0", 2), tp("t1", 2)]);
}

#[test]
fn roundrobin_places_partitions_as_java_does() {
    // The RoundRobinAssignor javadoc's examples.
    let parts = topics(&[("t0", 3), ("t1", 3)]);
    let members = [member("C0", &["t0", "t1"]), member("C1", &["t0", "t1"])];
    let out = RoundRobinAssignor.assign(&parts, &members);
    assert_eq!(out["C0"], [tp("t0", 0), tp("t0", 2), tp("t1", 1)]);
    assert_eq!(out["C1"], [tp("t0", 1), tp("t1", 0), tp("t1", 2)]);
    // Different subscriptions: C0 t0; C1 t0, t1; C2 t0, t1, t2 (1, 2 and 3 partitions).
    let parts = topics(&[("t0", 1), ("t1", 2), ("t2", 3)]);
    let members = [
        member("C0", &["t0"]),
        member("C1", &["t0", "t1"]),
        member("C2", &["t0", "t1", "t2"]),
    ];
    let out = RoundRobinAssignor.assign(&parts, &members);
    assert_eq!(out["C0"], [tp("t0", 0)]);
    assert_eq!(out["C1"], [tp("t1", 0)]);
    assert_eq!(
        out["C2"],
        [tp("t1", 1), tp("t2", 0), tp("t2", 1), tp("t2", 2)]
    );
}

#[test]
fn static_members_are_ordered_by_instance_id() {
    let parts = topics(&[("t", 2)]);
    let mut a = member("zzz-dynamic-id", &["t"]);
    a.group_instance_id = Some("a".into());
    let mut b = member("aaa-dynamic-id", &["t"]);
    b.group_instance_id = Some("b".into());
    let out = RangeAssignor.assign(&parts, &[b, a]);
    assert_eq!(
        out["zzz-dynamic-id"],
        [tp("t", 0)],
        "instance id a sorts first"
    );
}

#[test]
fn cooperative_sticky_keeps_owners_and_withholds_moves() {
    let parts = topics(&[("t", 6)]);
    // Three members own two partitions each; a fourth joins.
    let mut members: Vec<Subscription> = (0..3)
        .map(|i| {
            let mut m = member(&format!("m{i}"), &["t"]);
            m.owned = vec![tp("t", 2 * i), tp("t", 2 * i + 1)];
            m.generation = 5;
            m
        })
        .collect();
    members.push(member("m3", &["t"]));
    let first = CooperativeStickyAssignor.assign(&parts, &members);
    // Nobody gets a partition someone else owns; owners keep all but what must move.
    for (id, tps) in &first {
        for p in tps {
            let owner = members.iter().find(|m| m.owned.contains(p));
            assert!(
                owner.is_none_or(|o| o.member_id == *id),
                "{p:?} went to {id} in the same round"
            );
        }
    }
    assert!(first["m3"].is_empty(), "the newcomer waits for revocations");
    let kept: usize = first.values().map(Vec::len).sum();
    // 6 over 4 members is 2, 2, 1, 1: one owner gives up one partition for the newcomer.
    assert_eq!(kept, 5, "exactly one partition is revoked");
    // Second round: members own what they were given; the revoked ones are free.
    for m in members.iter_mut() {
        m.owned = first[&m.member_id].clone();
        m.generation = 6;
    }
    let second = CooperativeStickyAssignor.assign(&parts, &members);
    let sizes: Vec<usize> = second.values().map(Vec::len).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 6);
    assert!(sizes.iter().all(|n| (1..=2).contains(n)), "{sizes:?}");
    assert_eq!(
        second["m3"].len(),
        1,
        "the newcomer got the revoked partition"
    );
    for m in &members[..3] {
        for p in &m.owned {
            assert!(
                second[&m.member_id].contains(p),
                "{} kept {p:?}",
                m.member_id
            );
        }
    }
}

#[test]
fn a_partition_claimed_twice_goes_to_the_newest_generation() {
    let parts = topics(&[("t", 2)]);
    let mut old = member("old", &["t"]);
    old.owned = vec![tp("t", 0)];
    old.generation = 3;
    let mut new = member("new", &["t"]);
    new.owned = vec![tp("t", 0)];
    new.generation = 4;
    let out = sticky(&parts, &[old, new]);
    assert_eq!(out["new"], [tp("t", 0)]);
    assert_eq!(out["old"], [tp("t", 1)]);
}

fn group() -> impl Strategy<Value = (BTreeMap<String, i32>, usize)> {
    (
        proptest::collection::btree_map("[a-d]", 1..12i32, 1..4),
        1..8usize,
    )
}

proptest! {
    #[test]
    fn every_partition_once_and_balanced((parts, n) in group()) {
        let names: Vec<&str> = parts.keys().map(String::as_str).collect();
        let members: Vec<Subscription> = (0..n).map(|i| member(&format!("m{i}"), &names)).collect();
        let total: i32 = parts.values().sum();
        for assignor in [&RangeAssignor as &dyn Assignor, &RoundRobinAssignor, &CooperativeStickyAssignor] {
            let out = assignor.assign(&parts, &members);
            prop_assert_eq!(out.len(), n);
            let mut seen = BTreeSet::new();
            for tps in out.values() {
                for p in tps {
                    prop_assert!(seen.insert(p.clone()), "{} assigned {:?} twice", assignor.name(), p);
                }
            }
            prop_assert_eq!(seen.len() as i32, total, "{} assigned every partition", assignor.name());
            if assignor.name() != "range" {
                let sizes: Vec<usize> = out.values().map(Vec::len).collect();
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                prop_assert!(hi - lo <= 1, "{} unbalanced: {:?}", assignor.name(), sizes);
            }
        }
    }

    #[test]
    fn sticky_moves_only_what_balance_needs((parts, n) in group(), leaving in 0..8usize) {
        let names: Vec<&str> = parts.keys().map(String::as_str).collect();
        let mut members: Vec<Subscription> = (0..n).map(|i| member(&format!("m{i}"), &names)).collect();
        let start = sticky(&parts, &members);
        // One member leaves; the others own what they had.
        let gone = format!("m{}", leaving % n);
        members.retain(|m| m.member_id != gone);
        for m in members.iter_mut() {
            m.owned = start[&m.member_id].clone();
            m.generation = 1;
        }
        let next = sticky(&parts, &members);
        for m in &members {
            let kept = m.owned.iter().filter(|p| next[&m.member_id].contains(p)).count();
            // Members only gain when one leaves: everyone keeps all it had, unless it held
            // more than the new quota allows (it cannot here, since quotas only grow).
            prop_assert_eq!(kept, m.owned.len(), "{} lost partitions", m.member_id);
        }
        let total: usize = next.values().map(Vec::len).sum();
        prop_assert_eq!(total as i32, if members.is_empty() { 0 } else { parts.values().sum::<i32>() });
    }
}
