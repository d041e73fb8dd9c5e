//! The membership state machine under simulated time.

use super::*;
use crate::error::codes::{COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR, UNKNOWN_SERVER_ERROR};

fn config(protocol: RebalanceProtocol) -> MemberConfig {
    MemberConfig {
        group_instance_id: None,
        session_timeout: Duration::from_secs(10),
        heartbeat_interval: Duration::from_secs(3),
        retry_backoff: Duration::from_millis(100),
        protocol,
        rebalance_timeout: Duration::from_secs(60),
    }
}

fn tp(p: i32) -> TopicPartition {
    ("t".to_owned(), p)
}

/// Drives a member through find, join (MEMBER_ID_REQUIRED first) and sync, as leader.
fn stable(protocol: RebalanceProtocol, t0: Instant, assignment: Vec<TopicPartition>) -> Membership {
    let mut m = Membership::new(config(protocol), t0);
    assert_eq!(m.poll(t0), Some(Request::FindCoordinator));
    assert_eq!(m.poll(t0), None, "one request at a time");
    m.coordinator_found(true, t0);
    assert!(
        matches!(m.poll(t0), Some(Request::Join { ref member_id, .. }) if member_id.is_empty())
    );
    m.joined(
        JoinResult {
            error: MEMBER_ID_REQUIRED,
            member_id: "m-1".into(),
            ..JoinResult::default()
        },
        t0,
    );
    assert!(matches!(m.poll(t0), Some(Request::Join { ref member_id, .. }) if member_id == "m-1"));
    m.joined(
        JoinResult {
            error: 0,
            member_id: "m-1".into(),
            generation: 7,
            leader: "m-1".into(),
            members: vec![Subscription {
                member_id: "m-1".into(),
                topics: vec!["t".into()],
                ..Subscription::default()
            }],
            skip_assignment: false,
        },
        t0,
    );
    match m.poll(t0) {
        Some(Request::Sync {
            generation: 7,
            members: Some(members),
            ..
        }) => {
            assert_eq!(members.len(), 1, "the leader gets the members to assign")
        }
        other => panic!("{other:?}"),
    }
    let changes = m.synced(0, assignment.clone(), t0);
    if !assignment.is_empty() {
        assert_eq!(changes, [Change::Assigned(assignment)]);
    }
    assert_eq!(m.state(), &State::Stable);
    m
}

#[test]
fn joins_syncs_and_heartbeats_on_time() {
    let t0 = Instant::now();
    let mut m = stable(RebalanceProtocol::Eager, t0, vec![tp(0), tp(1)]);
    assert_eq!(m.generation(), 7);
    assert_eq!(m.poll(t0 + Duration::from_secs(2)), None, "not due yet");
    assert_eq!(m.next_deadline(), Some(t0 + Duration::from_secs(3)));
    let t = t0 + Duration::from_secs(3);
    assert!(matches!(
        m.poll(t),
        Some(Request::Heartbeat { generation: 7, .. })
    ));
    assert!(m.heartbeat_answered(0, t).is_empty());
    assert_eq!(m.next_deadline(), Some(t + Duration::from_secs(3)));
    // Heartbeats keep the session alive well past one session timeout.
    let mut now = t;
    for _ in 0..10 {
        now += Duration::from_secs(3);
        assert!(m.tick(now).is_empty());
        assert!(m.poll(now).is_some());
        m.heartbeat_answered(0, now);
    }
    assert_eq!(m.owned(), [tp(0), tp(1)]);
}

#[test]
fn eager_rebalance_revokes_everything_then_assigns() {
    let t0 = Instant::now();
    let mut m = stable(RebalanceProtocol::Eager, t0, vec![tp(0), tp(1)]);
    let t = t0 + Duration::from_secs(3);
    m.poll(t);
    assert_eq!(
        m.heartbeat_answered(REBALANCE_IN_PROGRESS, t),
        [Change::Revoked(vec![tp(0), tp(1)])]
    );
    // No join until the application is done with the revoked partitions.
    assert_eq!(m.poll(t), None);
    m.revoke_done();
    assert!(matches!(m.poll(t), Some(Request::Join { ref owned, .. }) if owned.is_empty()));
    m.joined(
        JoinResult {
            error: 0,
            member_id: "m-1".into(),
            generation: 8,
            leader: "other".into(),
            members: vec![],
            skip_assignment: false,
        },
        t,
    );
    assert!(matches!(
        m.poll(t),
        Some(Request::Sync {
            members: None,
            generation: 8,
            ..
        })
    ));
    assert_eq!(m.synced(0, vec![tp(1)], t), [Change::Assigned(vec![tp(1)])]);
}

#[test]
fn cooperative_rebalance_revokes_only_what_moves_then_rejoins() {
    let t0 = Instant::now();
    let mut m = stable(
        RebalanceProtocol::Cooperative,
        t0,
        vec![tp(0), tp(1), tp(2)],
    );
    let t = t0 + Duration::from_secs(3);
    m.poll(t);
    assert!(
        m.heartbeat_answered(REBALANCE_IN_PROGRESS, t).is_empty(),
        "nothing revoked up front"
    );
    match m.poll(t) {
        Some(Request::Join {
            owned, generation, ..
        }) => {
            assert_eq!(owned, [tp(0), tp(1), tp(2)]);
            assert_eq!(generation, 7);
        }
        other => panic!("{other:?}"),
    }
    m.joined(
        JoinResult {
            error: 0,
            member_id: "m-1".into(),
            generation: 8,
            leader: "other".into(),
            members: vec![],
            skip_assignment: false,
        },
        t,
    );
    m.poll(t);
    // The new assignment takes partition 2 away: revoke it, and rejoin so it can move.
    assert_eq!(
        m.synced(0, vec![tp(0), tp(1)], t),
        [Change::Revoked(vec![tp(2)])]
    );
    assert_eq!(m.state(), &State::Unjoined);
    assert_eq!(
        m.poll(t),
        None,
        "the application is not done with partition 2 yet"
    );
    m.revoke_done();
    assert!(matches!(m.poll(t), Some(Request::Join { ref owned, .. }) if owned.len() == 2));
    m.joined(
        JoinResult {
            error: 0,
            member_id: "m-1".into(),
            generation: 9,
            leader: "other".into(),
            members: vec![],
            skip_assignment: false,
        },
        t,
    );
    m.poll(t);
    assert!(
        m.synced(0, vec![tp(0), tp(1)], t).is_empty(),
        "nothing changes for us"
    );
    assert_eq!(m.state(), &State::Stable);
}

#[test]
fn a_fenced_generation_loses_partitions_and_starts_over() {
    let t0 = Instant::now();
    for code in [ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID] {
        let mut m = stable(RebalanceProtocol::Eager, t0, vec![tp(0)]);
        let t = t0 + Duration::from_secs(3);
        m.poll(t);
        assert_eq!(m.heartbeat_answered(code, t), [Change::Lost(vec![tp(0)])]);
        assert_eq!(m.generation(), -1);
        assert!(
            matches!(m.poll(t), Some(Request::Join { ref member_id, .. }) if member_id.is_empty())
        );
    }
}

#[test]
fn a_silent_coordinator_means_lost_partitions_after_the_session_timeout() {
    let t0 = Instant::now();
    let mut m = stable(RebalanceProtocol::Eager, t0, vec![tp(0)]);
    let t = t0 + Duration::from_secs(3);
    assert!(m.poll(t).is_some());
    // The heartbeat is never answered: nothing may be sent meanwhile.
    assert_eq!(m.poll(t + Duration::from_secs(4)), None);
    assert!(m.tick(t0 + Duration::from_secs(9)).is_empty());
    assert_eq!(
        m.tick(t0 + Duration::from_secs(10)),
        [Change::Lost(vec![tp(0)])]
    );
    assert_eq!(
        m.poll(t0 + Duration::from_secs(10)),
        Some(Request::FindCoordinator)
    );
}

#[test]
fn a_moved_coordinator_is_found_again_without_a_rebalance() {
    let t0 = Instant::now();
    let mut m = stable(RebalanceProtocol::Eager, t0, vec![tp(0)]);
    let t = t0 + Duration::from_secs(3);
    m.poll(t);
    assert!(m.heartbeat_answered(NOT_COORDINATOR, t).is_empty());
    assert_eq!(m.poll(t), None, "backoff first");
    let t = t + Duration::from_millis(100);
    assert_eq!(m.poll(t), Some(Request::FindCoordinator));
    m.coordinator_found(true, t);
    assert!(
        matches!(m.poll(t), Some(Request::Heartbeat { generation: 7, .. })),
        "same generation"
    );
    m.heartbeat_answered(0, t);
    assert_eq!(m.owned(), [tp(0)]);
    // A connection lost mid-request also finds the coordinator again.
    let t = t + Duration::from_secs(3);
    m.poll(t);
    m.request_failed(t);
    assert_eq!(
        m.poll(t + Duration::from_millis(100)),
        Some(Request::FindCoordinator)
    );
}

#[test]
fn leaving_revokes_and_static_members_do_not_send_leave() {
    let t0 = Instant::now();
    let mut m = stable(RebalanceProtocol::Eager, t0, vec![tp(0), tp(1)]);
    let (changes, request) = m.leave();
    assert_eq!(changes, [Change::Revoked(vec![tp(0), tp(1)])]);
    assert_eq!(
        request,
        Some(Request::Leave {
            member_id: "m-1".into()
        })
    );
    assert_eq!(m.state(), &State::Left);
    assert_eq!(m.poll(t0 + Duration::from_secs(60)), None);

    let mut config = config(RebalanceProtocol::Eager);
    config.group_instance_id = Some("worker-1".into());
    let mut m = Membership::new(config, t0);
    m.poll(t0);
    m.coordinator_found(true, t0);
    m.poll(t0);
    m.joined(
        JoinResult {
            error: 0,
            member_id: "static-1".into(),
            generation: 1,
            leader: "x".into(),
            members: vec![],
            skip_assignment: false,
        },
        t0,
    );
    m.poll(t0);
    m.synced(0, vec![tp(3)], t0);
    // A static member does not leave on close.
    let (_, request) = m.leave();
    assert_eq!(request, None);
}

/// A static member whose member id the coordinator forgot (UNKNOWN_MEMBER_ID) starts over with
/// an empty one, as Java does; the coordinator maps its instance id to the new id.
#[test]
fn a_static_member_the_coordinator_forgot_joins_again_as_new() {
    let t0 = Instant::now();
    let mut config = config(RebalanceProtocol::Eager);
    config.group_instance_id = Some("worker-1".into());
    let mut m = Membership::new(config, t0);
    m.poll(t0);
    m.coordinator_found(true, t0);
    m.poll(t0);
    m.joined(
        JoinResult {
            error: 0,
            member_id: "static-1".into(),
            generation: 1,
            leader: "x".into(),
            members: vec![],
            skip_assignment: false,
        },
        t0,
    );
    m.poll(t0);
    m.synced(0, vec![tp(3)], t0);
    let t = t0 + Duration::from_secs(3);
    m.poll(t);
    assert_eq!(
        m.heartbeat_answered(UNKNOWN_MEMBER_ID, t),
        [Change::Lost(vec![tp(3)])]
    );
    assert_eq!(m.member_id(), "");
    assert!(matches!(m.poll(t), Some(Request::Join { ref member_id, .. }) if member_id.is_empty()));
}

/// While the application works on revoked partitions, the member heartbeats in its generation
/// (REBALANCE_IN_PROGRESS answers keep it alive), however long past the session timeout; it
/// joins when done, or at max.poll.interval.ms.
#[test]
fn a_slow_revocation_heartbeats_until_done_or_the_rebalance_timeout() {
    let t0 = Instant::now();
    let mut m = stable(RebalanceProtocol::Eager, t0, vec![tp(0)]);
    let mut t = t0 + Duration::from_secs(3);
    m.poll(t);
    assert_eq!(
        m.heartbeat_answered(REBALANCE_IN_PROGRESS, t),
        [Change::Revoked(vec![tp(0)])]
    );
    assert!(m.is_revoking());
    // 30 s of revocation, three session timeouts: heartbeats every interval, same generation.
    for _ in 0..10 {
        assert!(m.tick(t).is_empty(), "not evicted");
        assert_eq!(m.poll(t + Duration::from_secs(2)), None, "not due yet");
        t += Duration::from_secs(3);
        assert_eq!(m.next_deadline(), Some(t));
        assert!(matches!(
            m.poll(t),
            Some(Request::Heartbeat { generation: 7, .. })
        ));
        assert!(m.heartbeat_answered(REBALANCE_IN_PROGRESS, t).is_empty());
    }
    m.revoke_done();
    assert!(matches!(m.poll(t), Some(Request::Join { .. })));

    // An application that never finishes: the member joins at the rebalance timeout.
    let mut m = stable(RebalanceProtocol::Eager, t0, vec![tp(0)]);
    let t = t0 + Duration::from_secs(3);
    m.poll(t);
    m.heartbeat_answered(REBALANCE_IN_PROGRESS, t);
    let late = t + Duration::from_secs(60);
    m.poll(late - Duration::from_secs(1)); // a heartbeat, unanswered here
    m.heartbeat_answered(REBALANCE_IN_PROGRESS, late - Duration::from_secs(1));
    assert!(matches!(m.poll(late), Some(Request::Join { .. })));
    assert!(!m.is_revoking());
}

/// An application that stops asking for records loses its partitions at max.poll.interval.ms:
/// a dynamic member leaves (so they move at once) and joins again when asked.
#[test]
fn a_poll_timeout_leaves_the_group_and_comes_back_when_asked() {
    let t0 = Instant::now();
    let mut m = stable(RebalanceProtocol::Eager, t0, vec![tp(0), tp(1)]);
    let (changes, request) = m.poll_timed_out();
    assert_eq!(changes, [Change::Lost(vec![tp(0), tp(1)])]);
    assert_eq!(
        request,
        Some(Request::Leave {
            member_id: "m-1".into()
        })
    );
    assert_eq!(m.state(), &State::PollTimedOut);
    assert_eq!(
        m.poll(t0 + Duration::from_secs(600)),
        None,
        "idle until asked"
    );
    assert!(m.tick(t0 + Duration::from_secs(600)).is_empty());
    m.resume_polling();
    let t = t0 + Duration::from_secs(600);
    assert_eq!(m.poll(t), Some(Request::FindCoordinator));
    m.coordinator_found(true, t);
    assert!(matches!(m.poll(t), Some(Request::Join { ref member_id, .. }) if member_id.is_empty()));
}

/// Heartbeat errors that are not about membership are missed heartbeats, retried (Java's
/// heartbeat thread), not the end of the member.
#[test]
fn transient_heartbeat_errors_are_retried() {
    let t0 = Instant::now();
    for code in [COORDINATOR_LOAD_IN_PROGRESS, UNKNOWN_SERVER_ERROR] {
        let mut m = stable(RebalanceProtocol::Eager, t0, vec![tp(0)]);
        let t = t0 + Duration::from_secs(3);
        m.poll(t);
        assert!(m.heartbeat_answered(code, t).is_empty(), "{code}");
        assert_eq!(m.state(), &State::Stable);
        assert!(matches!(
            m.poll(t + Duration::from_millis(100)),
            Some(Request::Heartbeat { .. })
        ));
        // Until the session runs out.
        assert_eq!(
            m.tick(t0 + Duration::from_secs(10)),
            [Change::Lost(vec![tp(0)])]
        );
    }
    // Authorization is fatal.
    let mut m = stable(RebalanceProtocol::Eager, t0, vec![tp(0)]);
    let t = t0 + Duration::from_secs(3);
    m.poll(t);
    m.heartbeat_answered(GROUP_AUTHORIZATION_FAILED, t);
    assert!(matches!(m.state(), State::Failed(_)));
}

#[test]
fn a_fenced_instance_id_is_fatal() {
    let t0 = Instant::now();
    let mut m = stable(RebalanceProtocol::Eager, t0, vec![tp(0)]);
    let t = t0 + Duration::from_secs(3);
    m.poll(t);
    assert_eq!(
        m.heartbeat_answered(FENCED_INSTANCE_ID, t),
        [Change::Lost(vec![tp(0)])]
    );
    assert_eq!(m.state(), &State::Failed(KafkaCode(FENCED_INSTANCE_ID)));
    assert_eq!(m.poll(t + Duration::from_secs(60)), None);
}

#[test]
fn a_refused_join_waits_before_trying_again() {
    let t0 = Instant::now();
    let mut m = Membership::new(config(RebalanceProtocol::Eager), t0);
    m.poll(t0);
    m.coordinator_found(true, t0);
    assert!(matches!(m.poll(t0), Some(Request::Join { .. })));
    m.joined(
        JoinResult {
            error: UNKNOWN_MEMBER_ID,
            ..JoinResult::default()
        },
        t0,
    );
    assert_eq!(m.poll(t0), None, "no retry at once");
    assert!(matches!(
        m.poll(t0 + Duration::from_millis(100)),
        Some(Request::Join { .. })
    ));
}

/// KIP-814: a leader told to skip the assignment syncs without members to assign, and gets
/// the assignment that stands.
#[test]
fn a_leader_told_to_skip_the_assignment_does_not_assign() {
    let t0 = Instant::now();
    let mut m = stable(RebalanceProtocol::Eager, t0, vec![tp(0)]);
    let t = t0 + Duration::from_secs(3);
    m.poll(t);
    m.heartbeat_answered(REBALANCE_IN_PROGRESS, t);
    m.revoke_done();
    assert!(matches!(m.poll(t), Some(Request::Join { .. })));
    m.joined(
        JoinResult {
            error: 0,
            member_id: "m-1".into(),
            generation: 7,
            leader: "m-1".into(),
            members: vec![Subscription {
                member_id: "m-1".into(),
                topics: vec!["t".into()],
                ..Subscription::default()
            }],
            skip_assignment: true,
        },
        t,
    );
    assert!(matches!(
        m.poll(t),
        Some(Request::Sync {
            members: None,
            generation: 7,
            ..
        })
    ));
    assert_eq!(m.synced(0, vec![tp(0)], t), [Change::Assigned(vec![tp(0)])]);
}
