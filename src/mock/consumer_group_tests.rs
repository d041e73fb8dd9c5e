//! The embedded KIP-848 coordinator against Kafka's rules (`GroupMetadataManager`,
//! `CurrentAssignmentBuilder`, `ConsumerGroup.validateOffsetCommit`); librdkafka and spate
//! members are checked against it in `tests/kip848_mock.rs`.

use std::collections::BTreeSet;

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as Owned;
use kafka_protocol::messages::{GroupId, TopicName};

use super::*;

const GROUP: &str = "g";

fn state() -> State {
    let mut state = State::new(vec![(0, 0)]);
    state.create_topic("t", 4);
    state
}

fn join(id: &str) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_member_id(StrBytes::from_string(id.to_owned()))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(1_000)
        .with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_static_str("t"))]))
        .with_topic_partitions(Some(Vec::new()))
}

fn topic(state: &State) -> uuid::Uuid {
    uuid::Uuid::from_u128(state.topic_ids["t"])
}

fn beat(topic: uuid::Uuid, id: &str, epoch: i32, owned: &[i32]) -> ConsumerGroupHeartbeatRequest {
    join(id)
        .with_member_epoch(epoch)
        .with_topic_partitions(Some(vec![Owned::default()
            .with_topic_id(topic)
            .with_partitions(owned.to_vec())]))
}

fn assigned(response: &ConsumerGroupHeartbeatResponse) -> BTreeSet<i32> {
    let a = response.assignment.as_ref().expect("an assignment");
    a.topic_partitions
        .iter()
        .flat_map(|t| t.partitions.clone())
        .collect()
}

fn set(ps: &[i32]) -> BTreeSet<i32> {
    ps.iter().copied().collect()
}

#[test]
fn a_partition_moves_only_after_its_owner_revoked_it() {
    let mut state = state();
    let t = topic(&state);
    let a = heartbeat(&mut state, &join("a"));
    assert_eq!((a.error_code, a.member_epoch), (0, 1));
    assert_eq!(assigned(&a), set(&[0, 1, 2, 3]));
    let b = heartbeat(&mut state, &join("b"));
    assert_eq!(b.member_epoch, 2);
    // Everything b should get is still a's.
    assert_eq!(assigned(&b), set(&[]));
    // a is told to give two up, at its own epoch.
    let a = heartbeat(&mut state, &beat(t, "a", 1, &[0, 1, 2, 3]));
    assert_eq!(a.member_epoch, 1);
    let keep = assigned(&a);
    assert_eq!(keep.len(), 2);
    // Not yet released: b still waits.
    let b = heartbeat(&mut state, &beat(t, "b", 2, &[]));
    assert!(b.assignment.is_none() || assigned(&b).is_empty());
    // a reports it let go: it moves to epoch 2; then b takes the rest.
    let owned: Vec<i32> = keep.iter().copied().collect();
    let a = heartbeat(&mut state, &beat(t, "a", 1, &owned));
    assert_eq!(a.member_epoch, 2);
    let b = heartbeat(&mut state, &beat(t, "b", 2, &[]));
    let rest: BTreeSet<i32> = set(&[0, 1, 2, 3]).difference(&keep).copied().collect();
    assert_eq!(assigned(&b), rest);
}

#[test]
fn epochs_ahead_or_behind_are_fenced_but_a_lost_answer_is_forgiven() {
    let mut state = state();
    let t = topic(&state);
    heartbeat(&mut state, &join("a"));
    let b = heartbeat(&mut state, &join("b"));
    assert_eq!(b.member_epoch, 2);
    let ahead = heartbeat(&mut state, &beat(t, "b", 3, &[]));
    assert_eq!(ahead.error_code, FENCED_MEMBER_EPOCH);
    // The answer that gave b epoch 2 was lost: b comes back with 0, its previous epoch,
    // owning nothing it should not: accepted.
    let lost = heartbeat(&mut state, &join("b"));
    assert_eq!(lost.error_code, 0);
    let unknown = heartbeat(&mut state, &beat(t, "zz", 5, &[]));
    assert_eq!(unknown.error_code, UNKNOWN_MEMBER_ID);
}

#[test]
fn requests_are_checked_as_kafka_checks_them() {
    let mut state = state();
    let t = topic(&state);
    let no_topics = join("a").with_subscribed_topic_names(None);
    assert_eq!(
        heartbeat(&mut state, &no_topics).error_code,
        INVALID_REQUEST
    );
    let owned_on_join = beat(t, "a", 0, &[1]);
    assert_eq!(
        heartbeat(&mut state, &owned_on_join).error_code,
        INVALID_REQUEST
    );
    let bad_epoch = join("a").with_member_epoch(-3);
    assert_eq!(
        heartbeat(&mut state, &bad_epoch).error_code,
        INVALID_REQUEST
    );
    let assignor = join("a").with_server_assignor(Some(StrBytes::from_static_str("sticky")));
    assert_eq!(
        heartbeat(&mut state, &assignor).error_code,
        UNSUPPORTED_ASSIGNOR
    );
    let regex = join("a").with_subscribed_topic_regex(Some(StrBytes::from_static_str("(")));
    assert_eq!(
        heartbeat(&mut state, &regex).error_code,
        INVALID_REGULAR_EXPRESSION
    );
    // Beyond joining, the group must exist.
    assert_eq!(
        heartbeat(&mut state, &beat(t, "a", 3, &[])).error_code,
        GROUP_ID_NOT_FOUND
    );
}

#[test]
fn a_member_that_does_not_revoke_in_time_is_fenced_and_its_partitions_move() {
    let mut state = state();
    let t = topic(&state);
    heartbeat(&mut state, &join("a"));
    heartbeat(&mut state, &join("b"));
    let a = heartbeat(&mut state, &beat(t, "a", 1, &[0, 1, 2, 3]));
    assert_eq!(assigned(&a).len(), 2);
    // a's rebalance timeout (1 s) passes without the revocation.
    let group = state.consumer_groups.get_mut(GROUP).unwrap();
    group.members.get_mut("a").unwrap().revoke_deadline = Some(Instant::now());
    let b = heartbeat(&mut state, &beat(t, "b", 2, &[]));
    assert_eq!(b.member_epoch, 3, "a was fenced: the group epoch moved");
    assert_eq!(assigned(&b), set(&[0, 1, 2, 3]));
    let a = heartbeat(&mut state, &beat(t, "a", 1, &[0, 1]));
    assert_eq!(a.error_code, UNKNOWN_MEMBER_ID);
}

#[test]
fn offset_commits_need_the_current_member_epoch_and_version_9() {
    let mut state = state();
    heartbeat(&mut state, &join("a"));
    let ok = validate_commit(&mut state, GROUP, "a", 1, 9, false);
    assert_eq!(ok, Some(0));
    assert_eq!(
        validate_commit(&mut state, GROUP, "a", 0, 9, false),
        Some(STALE_MEMBER_EPOCH)
    );
    assert_eq!(
        validate_commit(&mut state, GROUP, "a", 1, 8, false),
        Some(UNSUPPORTED_VERSION)
    );
    assert_eq!(validate_commit(&mut state, GROUP, "a", 1, 0, true), Some(0));
    assert_eq!(
        validate_commit(&mut state, GROUP, "x", 1, 9, false),
        Some(UNKNOWN_MEMBER_ID)
    );
    assert_eq!(validate_commit(&mut state, "other", "a", 1, 9, false), None);
}

#[test]
fn a_static_member_that_left_holds_its_partitions_for_its_instance_id() {
    let mut state = state();
    let t = topic(&state);
    let with_instance = |r: ConsumerGroupHeartbeatRequest, i: &'static str| {
        r.with_instance_id(Some(StrBytes::from_static_str(i)))
    };
    heartbeat(&mut state, &with_instance(join("a"), "i-a"));
    heartbeat(&mut state, &with_instance(join("b"), "i-b"));
    let a = heartbeat(
        &mut state,
        &with_instance(beat(t, "a", 1, &[0, 1, 2, 3]), "i-a"),
    );
    let owned: Vec<i32> = assigned(&a).into_iter().collect();
    heartbeat(&mut state, &with_instance(beat(t, "a", 1, &owned), "i-a"));
    let b = heartbeat(&mut state, &with_instance(beat(t, "b", 2, &[]), "i-b"));
    let b_owned = assigned(&b);
    assert_eq!(b_owned.len(), 2);
    let epoch_before = state.consumer_groups[GROUP].group_epoch;
    let leave = with_instance(beat(t, "b", 2, &[]).with_member_epoch(-2), "i-b");
    assert_eq!(heartbeat(&mut state, &leave).member_epoch, -2);
    // Another process with i-b while b holds it: refused until b has left; now it has.
    let back = heartbeat(&mut state, &with_instance(join("b2"), "i-b"));
    assert_eq!(back.error_code, 0);
    assert_eq!(assigned(&back), b_owned);
    assert_eq!(state.consumer_groups[GROUP].group_epoch, epoch_before);
    let dup = heartbeat(&mut state, &with_instance(join("b3"), "i-b"));
    assert_eq!(dup.error_code, UNRELEASED_INSTANCE_ID);
}
