//! A member of a KIP-848 group (`group.protocol=consumer`), without I/O: when to heartbeat,
//! what each ConsumerGroupHeartbeat answer means, and how the application's partitions move
//! towards the assignment the coordinator computed.
//!
//! ```text
//!  FindCoordinator ─▶ Joining (epoch 0) ─▶ Stable ──heartbeat every interval──┐
//!        ▲                 ▲                 │ a new assignment:              │
//!        │                 │                 │ revoke what it no longer holds │
//!  NOT_COORDINATOR,        │                 │ (the application commits),     │
//!  no answer ◀─────────────┤                 │ then take what it adds, and    │
//!                          │                 └─ acknowledge at once ◀─────────┘
//!        UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH: partitions lost, join again at epoch 0
//! ```
//!
//! The coordinator never hands out a partition another member still owns, so an assignment
//! only ever adds partitions that are free; partitions it takes away are revoked first and
//! reported as still owned until the application has let go (its commits in). The member id
//! is the member's own (KIP-1082) and survives fencing.
//!
//! # References
//! - KIP-848; Java client `ConsumerMembershipManager`, `HeartbeatRequestManager`; Apache
//!   Kafka's `GroupMetadataManager.consumerGroupHeartbeat`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::assignor::TopicPartition;
use super::membership::Change;
use crate::error::codes::{
    COORDINATOR_LOAD_IN_PROGRESS, FENCED_MEMBER_EPOCH, GROUP_ID_NOT_FOUND, UNKNOWN_MEMBER_ID,
};
use crate::error::{Action, KafkaCode};

/// The epoch that leaves the group.
pub const LEAVE_EPOCH: i32 = -1;
/// The epoch a static member leaves with, keeping its partitions for its instance id.
pub const LEAVE_STATIC_EPOCH: i32 = -2;

/// Where the member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModernState {
    /// Needs the coordinator.
    FindingCoordinator,
    /// Sends its first heartbeat (epoch 0).
    Joining,
    /// In the group, heartbeating.
    Stable,
    /// Left the group.
    Left,
    /// Left because the application stopped asking for records (`max.poll.interval.ms`);
    /// joins again once it asks.
    PollTimedOut,
    /// Cannot go on.
    Failed(KafkaCode),
}

/// What to send next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModernRequest {
    /// Look up the group coordinator.
    FindCoordinator,
    /// ConsumerGroupHeartbeat as `member_id` at `epoch`, reporting the partitions owned.
    Heartbeat {
        /// The member id.
        member_id: String,
        /// The member epoch (0 to join).
        epoch: i32,
        /// The partitions the application holds (revoked ones until it let go).
        owned: Vec<TopicPartition>,
    },
    /// Leave: a heartbeat at [`LEAVE_EPOCH`] or [`LEAVE_STATIC_EPOCH`].
    Leave {
        /// The member id.
        member_id: String,
        /// The leave epoch.
        epoch: i32,
    },
}

/// A ConsumerGroupHeartbeat answer, with its assignment's topic ids already named.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatAnswer {
    /// The error code.
    pub error: i16,
    /// The member id the coordinator uses (it may give one to a member that sent none).
    pub member_id: Option<String>,
    /// The member epoch.
    pub epoch: i32,
    /// The heartbeat interval the coordinator asks for.
    pub interval: Duration,
    /// The partitions the member may own now, when the answer carries them.
    pub assignment: Option<BTreeSet<TopicPartition>>,
}

/// The state machine.
#[derive(Debug)]
pub struct ModernMember {
    instance_id: Option<String>,
    retry_backoff: Duration,
    rebalance_timeout: Duration,
    state: ModernState,
    member_id: String,
    epoch: i32,
    owned: BTreeSet<TopicPartition>,
    /// The latest assignment not yet reconciled.
    target: Option<BTreeSet<TopicPartition>>,
    /// Revoked partitions the application still holds, and until when it may.
    revoking: Option<(Vec<TopicPartition>, Instant)>,
    in_flight: bool,
    wait_until: Option<Instant>,
    next_heartbeat: Instant,
    interval: Duration,
    /// Heartbeat at once (joining, or acknowledging a reconciliation).
    send_now: bool,
}

impl ModernMember {
    /// A member that has not joined yet, under its own `member_id` (KIP-1082).
    pub fn new(
        member_id: String,
        instance_id: Option<String>,
        retry_backoff: Duration,
        rebalance_timeout: Duration,
        now: Instant,
    ) -> Self {
        ModernMember {
            instance_id,
            retry_backoff,
            rebalance_timeout,
            state: ModernState::FindingCoordinator,
            member_id,
            epoch: 0,
            owned: BTreeSet::new(),
            target: None,
            revoking: None,
            in_flight: false,
            wait_until: None,
            next_heartbeat: now,
            interval: Duration::from_secs(5),
            send_now: true,
        }
    }

    /// The state.
    pub fn state(&self) -> &ModernState {
        &self.state
    }

    /// The member id.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The member epoch (0 before the coordinator answered the join).
    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    /// The partitions owned now (revoked ones included until the application let go).
    pub fn owned(&self) -> Vec<TopicPartition> {
        self.owned.iter().cloned().collect()
    }

    /// Whether revoked partitions are still with the application.
    pub fn is_revoking(&self) -> bool {
        self.revoking.is_some()
    }

    /// The next request to send at `now`, if any (one at a time).
    pub fn poll(&mut self, now: Instant) -> Option<ModernRequest> {
        if self.in_flight || self.wait_until.is_some_and(|t| t > now) {
            return None;
        }
        self.wait_until = None;
        let request = match self.state {
            ModernState::FindingCoordinator => ModernRequest::FindCoordinator,
            ModernState::Joining | ModernState::Stable
                if self.send_now || now >= self.next_heartbeat =>
            {
                self.send_now = false;
                ModernRequest::Heartbeat {
                    member_id: self.member_id.clone(),
                    epoch: self.epoch,
                    owned: self.owned(),
                }
            }
            _ => return None,
        };
        self.in_flight = true;
        Some(request)
    }

    /// When `poll` may have something again.
    pub fn next_deadline(&self) -> Option<Instant> {
        if let Some(t) = self.wait_until {
            return Some(t);
        }
        let revoke = self.revoking.as_ref().map(|(_, d)| *d);
        let heartbeat = match self.state {
            ModernState::Joining | ModernState::Stable => Some(self.next_heartbeat),
            _ => None,
        };
        match (revoke, heartbeat) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Gives up waiting for revoked partitions the application kept past
    /// `max.poll.interval.ms` (the coordinator fences the member then anyway).
    pub fn tick(&mut self, now: Instant) -> Vec<Change> {
        match &self.revoking {
            Some((_, deadline)) if now >= *deadline => {
                tracing::warn!(member_id = %self.member_id, "revoked partitions not released within max.poll.interval.ms");
                self.revoke_done(now)
            }
            _ => Vec::new(),
        }
    }

    /// The coordinator was found (or not).
    pub fn coordinator_found(&mut self, found: bool, now: Instant) {
        self.in_flight = false;
        if !found {
            self.backoff(now);
        } else if self.state == ModernState::FindingCoordinator {
            self.state = if self.epoch == 0 {
                ModernState::Joining
            } else {
                ModernState::Stable
            };
            self.send_now = true;
        }
    }

    /// A request got no answer (connection lost, timeout): find the coordinator again; the
    /// member keeps its epoch and partitions (the coordinator fences it if its session ended).
    pub fn request_failed(&mut self, now: Instant) {
        self.in_flight = false;
        if matches!(self.state, ModernState::Joining | ModernState::Stable) {
            self.state = ModernState::FindingCoordinator;
        }
        self.backoff(now);
    }

    fn backoff(&mut self, now: Instant) {
        self.wait_until = Some(now + self.retry_backoff);
    }

    /// The ConsumerGroupHeartbeat answer.
    pub fn heartbeat_answered(&mut self, answer: HeartbeatAnswer, now: Instant) -> Vec<Change> {
        self.in_flight = false;
        if !matches!(self.state, ModernState::Joining | ModernState::Stable) {
            return Vec::new();
        }
        match answer.error {
            0 => {
                if let Some(id) = answer.member_id.filter(|id| !id.is_empty()) {
                    self.member_id = id;
                }
                self.epoch = answer.epoch;
                if !answer.interval.is_zero() {
                    self.interval = answer.interval;
                }
                self.next_heartbeat = now + self.interval;
                self.state = ModernState::Stable;
                if let Some(assignment) = answer.assignment {
                    self.target = Some(assignment);
                }
                self.reconcile(now)
            }
            UNKNOWN_MEMBER_ID | FENCED_MEMBER_EPOCH | GROUP_ID_NOT_FOUND => {
                tracing::info!(member_id = %self.member_id, code = %KafkaCode(answer.error), "fenced by the coordinator; joining again");
                self.fenced()
            }
            COORDINATOR_LOAD_IN_PROGRESS => {
                self.backoff(now);
                self.send_now = true;
                Vec::new()
            }
            code => match KafkaCode(code).action() {
                Action::FindCoordinator => {
                    self.request_failed(now);
                    Vec::new()
                }
                Action::Retry => {
                    self.backoff(now);
                    self.send_now = true;
                    Vec::new()
                }
                // UNRELEASED_INSTANCE_ID, FENCED_INSTANCE_ID, UNSUPPORTED_ASSIGNOR,
                // INVALID_REGULAR_EXPRESSION, authorization, an invalid request: as Java's
                // HeartbeatRequestManager, retrying cannot help.
                _ => self.fail(code),
            },
        }
    }

    /// Moves towards the latest assignment: revokes first (and waits for the application);
    /// then adopts it, reporting what it adds, and acknowledges at once.
    fn reconcile(&mut self, now: Instant) -> Vec<Change> {
        if self.revoking.is_some() {
            return Vec::new();
        }
        let Some(target) = self.target.clone() else {
            return Vec::new();
        };
        let revoked: Vec<TopicPartition> = self.owned.difference(&target).cloned().collect();
        if !revoked.is_empty() {
            self.revoking = Some((revoked.clone(), now + self.rebalance_timeout));
            return vec![Change::Revoked(revoked)];
        }
        let added: Vec<TopicPartition> = target.difference(&self.owned).cloned().collect();
        self.target = None;
        if added.is_empty() {
            return Vec::new();
        }
        self.owned = target;
        self.send_now = true;
        vec![Change::Assigned(added)]
    }

    /// The application has let go of the revoked partitions (its commits are in): they are
    /// no longer reported as owned, and reconciliation goes on.
    pub fn revoke_done(&mut self, now: Instant) -> Vec<Change> {
        let Some((revoked, _)) = self.revoking.take() else {
            return Vec::new();
        };
        for tp in &revoked {
            self.owned.remove(tp);
        }
        // Tell the coordinator at once: it hands the partitions on only once they are free.
        self.send_now = true;
        self.reconcile(now)
    }

    fn fenced(&mut self) -> Vec<Change> {
        self.epoch = 0;
        self.target = None;
        self.revoking = None;
        self.state = ModernState::Joining;
        self.send_now = true;
        self.lose_all()
    }

    fn lose_all(&mut self) -> Vec<Change> {
        let lost = self.owned();
        self.owned.clear();
        if lost.is_empty() {
            Vec::new()
        } else {
            vec![Change::Lost(lost)]
        }
    }

    fn leave_epoch(&self) -> i32 {
        if self.instance_id.is_some() {
            LEAVE_STATIC_EPOCH
        } else {
            LEAVE_EPOCH
        }
    }

    fn fail(&mut self, code: i16) -> Vec<Change> {
        tracing::error!(code = %KafkaCode(code), member_id = %self.member_id, "the group member cannot go on");
        self.state = ModernState::Failed(KafkaCode(code));
        self.revoking = None;
        self.lose_all()
    }

    /// The application leaves: everything is revoked (commit first), then the leave
    /// heartbeat is sent (epoch -2 for a static member, whose partitions wait for it).
    pub fn leave(&mut self) -> (Vec<Change>, Option<ModernRequest>) {
        let owned = self.owned();
        self.owned.clear();
        self.revoking = None;
        let changes = if owned.is_empty() {
            Vec::new()
        } else {
            vec![Change::Revoked(owned)]
        };
        let joined = self.epoch > 0 && !matches!(self.state, ModernState::Failed(_));
        let request = joined.then(|| ModernRequest::Leave {
            member_id: self.member_id.clone(),
            epoch: self.leave_epoch(),
        });
        self.state = ModernState::Left;
        self.in_flight = false;
        (changes, request)
    }

    /// The application has not asked for records within `max.poll.interval.ms`: the member
    /// leaves so its partitions can move (they are lost: others may commit them meanwhile),
    /// and joins again once the application asks.
    pub fn poll_timed_out(&mut self) -> (Vec<Change>, Option<ModernRequest>) {
        if matches!(
            self.state,
            ModernState::Left | ModernState::Failed(_) | ModernState::PollTimedOut
        ) {
            return (Vec::new(), None);
        }
        tracing::warn!(member_id = %self.member_id, "the application has not asked for records within max.poll.interval.ms; leaving the group");
        let request = (self.epoch > 0).then(|| ModernRequest::Leave {
            member_id: self.member_id.clone(),
            epoch: self.leave_epoch(),
        });
        self.revoking = None;
        self.target = None;
        self.epoch = 0;
        self.in_flight = false;
        self.state = ModernState::PollTimedOut;
        (self.lose_all(), request)
    }

    /// The application asks for records again after a poll timeout: join again.
    pub fn resume_polling(&mut self) {
        if self.state == ModernState::PollTimedOut {
            self.state = ModernState::FindingCoordinator;
            self.send_now = true;
        }
    }
}

#[cfg(test)]
mod tests;
