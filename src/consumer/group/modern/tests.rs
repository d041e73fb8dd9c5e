use super::*;
use crate::error::codes::{NOT_COORDINATOR, UNRELEASED_INSTANCE_ID};

fn tp(t: &str, p: i32) -> TopicPartition {
    (t.to_owned(), p)
}

fn member(instance: Option<&str>, now: Instant) -> ModernMember {
    let mut m = ModernMember::new(
        "m-1".into(),
        instance.map(str::to_owned),
        Duration::from_millis(100),
        Duration::from_secs(30),
        now,
    );
    assert_eq!(m.poll(now), Some(ModernRequest::FindCoordinator));
    m.coordinator_found(true, now);
    m
}

fn answer(epoch: i32, assignment: Option<&[TopicPartition]>) -> HeartbeatAnswer {
    HeartbeatAnswer {
        error: 0,
        member_id: None,
        epoch,
        interval: Duration::from_secs(1),
        assignment: assignment.map(|a| a.iter().cloned().collect()),
    }
}

fn heartbeat(m: &mut ModernMember, now: Instant) -> (i32, Vec<TopicPartition>) {
    match m.poll(now) {
        Some(ModernRequest::Heartbeat { epoch, owned, .. }) => (epoch, owned),
        other => panic!("expected a heartbeat, got {other:?}"),
    }
}

#[test]
fn joins_at_epoch_zero_takes_its_assignment_and_acknowledges_at_once() {
    let now = Instant::now();
    let mut m = member(None, now);
    assert_eq!(heartbeat(&mut m, now), (0, vec![]));
    let changes = m.heartbeat_answered(answer(3, Some(&[tp("a", 0), tp("a", 1)])), now);
    assert_eq!(
        changes,
        vec![Change::Assigned(vec![tp("a", 0), tp("a", 1)])]
    );
    // The acknowledgement goes out before the interval.
    assert_eq!(heartbeat(&mut m, now), (3, vec![tp("a", 0), tp("a", 1)]));
    assert!(m.heartbeat_answered(answer(3, None), now).is_empty());
    assert_eq!(m.poll(now), None, "nothing before the interval");
    assert!(m.poll(now + Duration::from_secs(1)).is_some());
}

#[test]
fn revokes_and_reports_the_partitions_owned_until_the_application_lets_go() {
    let now = Instant::now();
    let mut m = member(None, now);
    heartbeat(&mut m, now);
    m.heartbeat_answered(answer(1, Some(&[tp("a", 0), tp("a", 1)])), now);
    heartbeat(&mut m, now);
    m.heartbeat_answered(answer(1, None), now);
    // The coordinator takes a1 away (same epoch: the member must revoke first).
    let later = now + Duration::from_secs(1);
    heartbeat(&mut m, later);
    let changes = m.heartbeat_answered(answer(1, Some(&[tp("a", 0)])), later);
    assert_eq!(changes, vec![Change::Revoked(vec![tp("a", 1)])]);
    assert!(m.is_revoking());
    // Heartbeats meanwhile still report a1: the coordinator keeps it from others.
    let (_, owned) = heartbeat(&mut m, later + Duration::from_secs(1));
    assert_eq!(owned, vec![tp("a", 0), tp("a", 1)]);
    m.heartbeat_answered(answer(1, None), later + Duration::from_secs(1));
    // The application is done: the release is reported at once.
    assert!(m.revoke_done(later).is_empty());
    assert_eq!(heartbeat(&mut m, later), (1, vec![tp("a", 0)]));
    // The next epoch adds a partition another member released.
    let changes = m.heartbeat_answered(answer(2, Some(&[tp("a", 0), tp("b", 0)])), later);
    assert_eq!(changes, vec![Change::Assigned(vec![tp("b", 0)])]);
}

#[test]
fn an_assignment_arriving_during_a_revocation_is_reconciled_after_it() {
    let now = Instant::now();
    let mut m = member(None, now);
    heartbeat(&mut m, now);
    m.heartbeat_answered(answer(1, Some(&[tp("a", 0), tp("a", 1), tp("a", 2)])), now);
    heartbeat(&mut m, now);
    assert_eq!(
        m.heartbeat_answered(answer(1, Some(&[tp("a", 0), tp("a", 1)])), now),
        vec![Change::Revoked(vec![tp("a", 2)])]
    );
    heartbeat(&mut m, now + Duration::from_secs(1));
    // A newer target takes a1 too; nothing happens until the first revocation is done.
    assert!(m
        .heartbeat_answered(answer(1, Some(&[tp("a", 0)])), now)
        .is_empty());
    assert_eq!(m.revoke_done(now), vec![Change::Revoked(vec![tp("a", 1)])]);
    assert!(m.revoke_done(now).is_empty());
    assert_eq!(m.owned(), vec![tp("a", 0)]);
}

#[test]
fn fenced_members_lose_their_partitions_and_join_again_under_the_same_id() {
    for code in [UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH] {
        let now = Instant::now();
        let mut m = member(None, now);
        heartbeat(&mut m, now);
        m.heartbeat_answered(answer(4, Some(&[tp("a", 0)])), now);
        heartbeat(&mut m, now);
        let fenced = HeartbeatAnswer {
            error: code,
            ..HeartbeatAnswer::default()
        };
        assert_eq!(
            m.heartbeat_answered(fenced, now),
            vec![Change::Lost(vec![tp("a", 0)])]
        );
        match m.poll(now) {
            Some(ModernRequest::Heartbeat {
                member_id,
                epoch,
                owned,
            }) => {
                assert_eq!((member_id.as_str(), epoch), ("m-1", 0));
                assert!(owned.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_lost_coordinator_keeps_the_epoch_and_the_partitions() {
    let now = Instant::now();
    let mut m = member(None, now);
    heartbeat(&mut m, now);
    m.heartbeat_answered(answer(2, Some(&[tp("a", 0)])), now);
    heartbeat(&mut m, now);
    let moved = HeartbeatAnswer {
        error: NOT_COORDINATOR,
        ..HeartbeatAnswer::default()
    };
    assert!(m.heartbeat_answered(moved, now).is_empty());
    let later = now + Duration::from_secs(1);
    assert_eq!(m.poll(later), Some(ModernRequest::FindCoordinator));
    m.coordinator_found(true, later);
    assert_eq!(heartbeat(&mut m, later), (2, vec![tp("a", 0)]));
}

#[test]
fn leaving_uses_the_dynamic_or_the_static_epoch() {
    let now = Instant::now();
    for (instance, epoch) in [(None, LEAVE_EPOCH), (Some("i-1"), LEAVE_STATIC_EPOCH)] {
        let mut m = member(instance, now);
        heartbeat(&mut m, now);
        m.heartbeat_answered(answer(1, Some(&[tp("a", 0)])), now);
        let (changes, request) = m.leave();
        assert_eq!(changes, vec![Change::Revoked(vec![tp("a", 0)])]);
        assert_eq!(
            request,
            Some(ModernRequest::Leave {
                member_id: "m-1".into(),
                epoch
            })
        );
        assert_eq!(m.poll(now), None);
    }
}

#[test]
fn an_unreleased_instance_id_is_fatal() {
    let now = Instant::now();
    let mut m = member(Some("i-1"), now);
    heartbeat(&mut m, now);
    let refused = HeartbeatAnswer {
        error: UNRELEASED_INSTANCE_ID,
        ..HeartbeatAnswer::default()
    };
    m.heartbeat_answered(refused, now);
    assert_eq!(
        m.state(),
        &ModernState::Failed(KafkaCode(UNRELEASED_INSTANCE_ID))
    );
    assert_eq!(m.poll(now + Duration::from_secs(10)), None);
}

#[test]
fn a_poll_timeout_leaves_loses_and_joins_again_when_asked() {
    let now = Instant::now();
    let mut m = member(None, now);
    heartbeat(&mut m, now);
    m.heartbeat_answered(answer(1, Some(&[tp("a", 0)])), now);
    let (changes, request) = m.poll_timed_out();
    assert_eq!(changes, vec![Change::Lost(vec![tp("a", 0)])]);
    assert!(matches!(
        request,
        Some(ModernRequest::Leave { epoch: -1, .. })
    ));
    assert_eq!(m.poll(now), None);
    m.resume_polling();
    assert_eq!(m.poll(now), Some(ModernRequest::FindCoordinator));
    m.coordinator_found(true, now);
    assert_eq!(heartbeat(&mut m, now), (0, vec![]));
}
