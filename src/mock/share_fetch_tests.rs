//! The embedded share partitions against KIP-932's rules (Kafka's `SharePartition`); the
//! clients (librdkafka's share consumer, then spate's) are checked in `tests/share_mock.rs`.

use bytes::Bytes;

use super::*;
use crate::record::{Compression, RecordBatchBuilder};

const GROUP: &str = "g";

fn state(records: usize, settings: ShareSettings) -> State {
    let mut state = State::new(vec![(0, 0)]);
    state.create_topic("t", 1);
    state.shares.settings = settings;
    for i in 0..records {
        let mut b = RecordBatchBuilder::new(Compression::None);
        b.append(0, None, Some(format!("v{i}").as_bytes()), &[])
            .unwrap();
        let bytes: Bytes = b.build().unwrap();
        state.topics.get_mut("t").unwrap()[0]
            .append(bytes, 1 << 20, |_| false)
            .unwrap();
    }
    state
}

fn settings() -> ShareSettings {
    ShareSettings {
        start_at_earliest: true,
        ..ShareSettings::default()
    }
}

fn ask(state: &State, acks: Vec<(i64, i64, Vec<i8>)>) -> Vec<PartitionAsk> {
    vec![PartitionAsk {
        topic_id: uuid::Uuid::from_u128(state.topic_ids["t"]),
        partition: 0,
        acks,
    }]
}

/// What `member` acquires (offset, delivery count) and the acknowledge error code.
fn fetch_as(
    state: &mut State,
    member: &str,
    max: usize,
    acks: Vec<(i64, i64, Vec<i8>)>,
) -> (Vec<(i64, i16)>, i16) {
    let asks = ask(state, acks);
    let (topics, _) = serve(state, 0, GROUP, member, &asks, Some(max));
    let p = &topics[0].partitions[0];
    let got = p
        .acquired_records
        .iter()
        .flat_map(|r| (r.first_offset..=r.last_offset).map(move |o| (o, r.delivery_count)))
        .collect();
    (got, p.acknowledge_error_code)
}

#[test]
fn members_acquire_different_records_and_count_deliveries() {
    let mut state = state(6, settings());
    let (a, _) = fetch_as(&mut state, "a", 4, vec![]);
    assert_eq!(a, vec![(0, 1), (1, 1), (2, 1), (3, 1)]);
    let (b, _) = fetch_as(&mut state, "b", 4, vec![]);
    assert_eq!(b, vec![(4, 1), (5, 1)], "never what another member holds");
    // a accepts 0..=1 and releases 2..=3: b gets them, a second time each.
    let (_, code) = fetch_as(&mut state, "a", 0, vec![(0, 1, vec![1]), (2, 3, vec![2])]);
    assert_eq!(code, 0);
    let (b, _) = fetch_as(&mut state, "b", 4, vec![]);
    assert_eq!(b, vec![(2, 2), (3, 2)]);
    let info = state.shares.partition_info(GROUP, "t", 0).unwrap();
    assert_eq!(
        info.start_offset, 2,
        "the start moves past what is acknowledged"
    );
}

#[test]
fn acknowledging_a_record_not_held_is_invalid_record_state() {
    let mut state = state(3, settings());
    fetch_as(&mut state, "a", 3, vec![]);
    let (_, code) = fetch_as(&mut state, "b", 0, vec![(0, 0, vec![1])]);
    assert_eq!(code, INVALID_RECORD_STATE, "held by a, not b");
    let (_, code) = fetch_as(&mut state, "a", 0, vec![(0, 0, vec![1])]);
    assert_eq!(code, 0);
    let (_, code) = fetch_as(&mut state, "a", 0, vec![(0, 0, vec![1])]);
    assert_eq!(code, INVALID_RECORD_STATE, "already acknowledged");
    // One type per offset, or one for the whole range; anything else is malformed.
    let (_, code) = fetch_as(&mut state, "a", 0, vec![(1, 2, vec![1, 1, 1])]);
    assert_eq!(code, INVALID_REQUEST);
}

#[test]
fn expired_locks_redeliver_until_the_delivery_count_limit_archives() {
    let mut state = state(
        2,
        ShareSettings {
            lock_duration: Duration::ZERO,
            delivery_count_limit: 2,
            ..settings()
        },
    );
    let (first, _) = fetch_as(&mut state, "a", 1, vec![]);
    assert_eq!(first, vec![(0, 1)]);
    // The lock (zero) has expired: delivered again, counted.
    let (second, _) = fetch_as(&mut state, "b", 1, vec![]);
    assert_eq!(second, vec![(0, 2)]);
    // At the limit an expired record is archived, and the next one comes.
    let (third, _) = fetch_as(&mut state, "c", 1, vec![]);
    assert_eq!(third, vec![(1, 1)]);
    let info = state.shares.partition_info(GROUP, "t", 0).unwrap();
    assert_eq!(info.start_offset, 1, "the archived record is left behind");
}

#[test]
fn rejected_records_are_archived_and_never_delivered_again() {
    let mut state = state(3, settings());
    fetch_as(&mut state, "a", 3, vec![]);
    fetch_as(&mut state, "a", 0, vec![(0, 2, vec![1, 3, 2])]);
    let (again, _) = fetch_as(&mut state, "b", 10, vec![]);
    assert_eq!(again, vec![(2, 2)], "only the released one");
    let info = state.shares.partition_info(GROUP, "t", 0).unwrap();
    assert_eq!(info.start_offset, 2);
}

#[test]
fn share_sessions_check_epochs_and_closing_releases() {
    let mut state = state(2, settings());
    assert_eq!(
        session(&mut state, 0, GROUP, "a", 1, true),
        Err(SHARE_SESSION_NOT_FOUND)
    );
    assert_eq!(
        session(&mut state, 0, GROUP, "a", 0, false),
        Err(INVALID_SHARE_SESSION_EPOCH)
    );
    assert_eq!(session(&mut state, 0, GROUP, "a", 0, true), Ok(()));
    assert_eq!(
        session(&mut state, 0, GROUP, "a", 2, true),
        Err(INVALID_SHARE_SESSION_EPOCH)
    );
    assert_eq!(session(&mut state, 0, GROUP, "a", 1, true), Ok(()));
    let (got, _) = fetch_as(&mut state, "a", 2, vec![]);
    assert_eq!(got.len(), 2);
    close(&mut state, &(0, GROUP.to_owned(), "a".to_owned()));
    let (again, _) = fetch_as(&mut state, "b", 2, vec![]);
    assert_eq!(
        again,
        vec![(0, 2), (1, 2)],
        "released when a's session closed"
    );
}

#[test]
fn a_lying_acknowledgement_range_costs_what_the_partition_holds() {
    let mut state = state(2, settings());
    fetch_as(&mut state, "a", 2, vec![]);
    let (_, code) = fetch_as(&mut state, "a", 0, vec![(i64::MIN, i64::MAX, vec![1])]);
    assert_eq!(code, INVALID_RECORD_STATE, "most of the range is not held");
    let (_, code) = fetch_as(&mut state, "a", 0, vec![(5, 1, vec![1])]);
    assert_eq!(code, INVALID_REQUEST);
}

/// One heartbeat of `member` at `epoch`: (epoch, assignment carried, if any).
fn heartbeat_as(state: &mut State, member: &str, epoch: i32) -> (i32, Option<Vec<i32>>) {
    let request = ShareGroupHeartbeatRequest::default()
        .with_group_id(GroupId(
            kafka_protocol::protocol::StrBytes::from_static_str(GROUP),
        ))
        .with_member_id(kafka_protocol::protocol::StrBytes::from_string(
            member.to_owned(),
        ))
        .with_member_epoch(epoch)
        .with_subscribed_topic_names(Some(vec![TopicName(
            kafka_protocol::protocol::StrBytes::from_static_str("u"),
        )]));
    let response = super::super::share::heartbeat(state, &request);
    assert_eq!(response.error_code, 0, "{:?}", response.error_message);
    let assigned = response.assignment.map(|a| {
        a.topic_partitions
            .iter()
            .flat_map(|t| t.partitions.clone())
            .collect()
    });
    (response.member_epoch, assigned)
}

#[test]
fn a_member_whose_target_changed_gets_it_on_its_own_next_heartbeat() {
    let mut state = state(0, settings());
    state.create_topic("u", 2);
    let (e1, a) = heartbeat_as(&mut state, "a", 0);
    assert_eq!(a, Some(vec![0, 1]), "alone, a gets both partitions");
    let (_, b) = heartbeat_as(&mut state, "b", 0);
    assert_eq!(b.as_ref().map(Vec::len), Some(1), "b gets one");
    // a learns about its smaller share on its own heartbeat, with a new epoch, even though the
    // target changed on b's.
    let (e2, a) = heartbeat_as(&mut state, "a", e1);
    assert!(e2 > e1, "a moved to the new epoch");
    let a = a.expect("a's heartbeat carries the changed assignment");
    assert_eq!(a.len(), 1);
    assert_ne!(Some(a), b, "a and b got different partitions");
    // Nothing changed since: no assignment in the next heartbeat.
    assert_eq!(heartbeat_as(&mut state, "a", e2), (e2, None));
}
