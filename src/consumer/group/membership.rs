//! A group member's state machine, without I/O: which request to send next, what each answer
//! means, and what the application's partitions do (assigned, revoked, lost). The driver that
//! sends the requests feeds answers and the time in; tests feed simulated time.
//!
//! ```text
//!  FindCoordinator ─▶ Join ─▶ Sync ─▶ Stable ──heartbeat every interval──┐
//!        ▲             ▲  MEMBER_ID_REQUIRED: join again with the id      │
//!        │             └──────── REBALANCE_IN_PROGRESS, a cooperative ◀───┤
//!        │                       revocation, a metadata change            │
//!  NOT_COORDINATOR,              ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,   │
//!  no answer ◀────────────────── session timeout: partitions lost ◀───────┘
//! ```
//!
//! Eager protocols revoke every partition before rejoining; cooperative ones keep what they
//! own, revoke only what the new assignment takes away, and rejoin once more after a
//! revocation so the partitions can move (KIP-429).
//!
//! # References
//! - Java client `AbstractCoordinator`, `ConsumerCoordinator`; KIP-62 (background heartbeats,
//!   rebalance timeout), KIP-345 (static membership), KIP-394 (MEMBER_ID_REQUIRED), KIP-429.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::assignor::{RebalanceProtocol, Subscription, TopicPartition};
use crate::error::codes::{
    FENCED_INSTANCE_ID, GROUP_AUTHORIZATION_FAILED, ILLEGAL_GENERATION, MEMBER_ID_REQUIRED,
    REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID,
};
use crate::error::{Action, KafkaCode};

/// What a group API's error code means for the member: the one classification
/// ([`KafkaCode::action`]), with the codes the Java coordinator handles by name.
enum Outcome {
    /// The coordinator moved or is not there: find it again.
    Coordinator,
    /// This member is unknown or of an older generation: start over with a new identity.
    Fenced,
    /// A rebalance is under way: join it.
    Rebalancing,
    /// Transient (the coordinator is loading, a timeout): try again after a backoff.
    Transient,
    /// Retrying cannot help (authorization, a fenced instance id, a protocol mismatch).
    Fatal,
}

fn outcome(code: i16) -> Outcome {
    match code {
        UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION => Outcome::Fenced,
        REBALANCE_IN_PROGRESS => Outcome::Rebalancing,
        FENCED_INSTANCE_ID => Outcome::Fatal,
        _ => match KafkaCode(code).action() {
            Action::FindCoordinator => Outcome::Coordinator,
            Action::Rejoin => Outcome::Fenced,
            Action::Fatal => Outcome::Fatal,
            Action::Retry
            | Action::RefreshMetadata
            | Action::Reconnect
            | Action::ResetFetchSession => Outcome::Transient,
        },
    }
}

/// Timing and identity of a member.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// Static membership id (`group.instance.id`).
    pub group_instance_id: Option<String>,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// Wait before retrying after an error.
    pub retry_backoff: Duration,
    /// Eager or cooperative.
    pub protocol: RebalanceProtocol,
    /// `max.poll.interval.ms`: the rebalance timeout, how long the application may take with
    /// revoked partitions, and how long it may go without asking for records.
    pub rebalance_timeout: Duration,
}

/// What to send next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Look up the group coordinator.
    FindCoordinator,
    /// JoinGroup as `member_id` ("" for a new dynamic member), naming the partitions owned.
    Join {
        /// The member id.
        member_id: String,
        /// Owned partitions (cooperative protocols), for the leader's assignor.
        owned: Vec<TopicPartition>,
        /// The generation those are from.
        generation: i32,
    },
    /// SyncGroup. The leader carries the members to assign (the driver runs the assignor).
    Sync {
        /// The member id.
        member_id: String,
        /// The generation.
        generation: i32,
        /// `Some` for the leader: every member's subscription.
        members: Option<Vec<Subscription>>,
    },
    /// Heartbeat.
    Heartbeat {
        /// The member id.
        member_id: String,
        /// The generation.
        generation: i32,
    },
    /// LeaveGroup.
    Leave {
        /// The member id.
        member_id: String,
    },
}

/// What happens to the application's partitions (the rebalance listener's calls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Start consuming these (fetch their committed offsets first).
    Assigned(Vec<TopicPartition>),
    /// Stop consuming these; commit their offsets first (the member still owns them).
    Revoked(Vec<TopicPartition>),
    /// These were taken away without notice (the member was fenced): do not commit.
    Lost(Vec<TopicPartition>),
}

/// Where the member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Needs the coordinator.
    FindingCoordinator,
    /// Should send JoinGroup.
    Unjoined,
    /// JoinGroup in flight.
    Joining,
    /// Should send (or is sending) SyncGroup.
    Syncing,
    /// Has an assignment and heartbeats.
    Stable,
    /// Left the group.
    Left,
    /// Left the group because the application stopped asking for records for longer than
    /// `max.poll.interval.ms`; joins again once it asks.
    PollTimedOut,
    /// Cannot go on (fenced static member, authorization).
    Failed(KafkaCode),
}

/// What a JoinGroup response said.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    /// Error code.
    pub error: i16,
    /// This member's id.
    pub member_id: String,
    /// The new generation.
    pub generation: i32,
    /// The leader's member id.
    pub leader: String,
    /// Members and their subscriptions (only the leader gets them).
    pub members: Vec<Subscription>,
    /// KIP-814: the leader must not assign (a static leader rejoined a stable group, whose
    /// assignment stands).
    pub skip_assignment: bool,
}

/// The state machine.
#[derive(Debug)]
pub struct Membership {
    config: MemberConfig,
    state: State,
    member_id: String,
    generation: i32,
    owned: BTreeSet<TopicPartition>,
    leader_members: Option<Vec<Subscription>>,
    /// A request is in flight: nothing else is sent until it is answered.
    in_flight: bool,
    /// Not before this (backoff after an error).
    wait_until: Option<Instant>,
    next_heartbeat: Instant,
    last_heartbeat_ok: Instant,
    /// The coordinator was lost while stable: once found again, go on heartbeating in the same
    /// generation rather than rejoin.
    stable_when_found: bool,
    /// Partitions were revoked and the application has not finished with them yet (until this
    /// deadline at most): the member heartbeats in its generation, and joins only after.
    revoking: Option<Instant>,
    /// Those partitions.
    revoking_partitions: Vec<TopicPartition>,
}

impl Membership {
    /// A member that has not joined yet.
    pub fn new(config: MemberConfig, now: Instant) -> Self {
        Membership {
            config,
            state: State::FindingCoordinator,
            member_id: String::new(),
            generation: -1,
            owned: BTreeSet::new(),
            leader_members: None,
            in_flight: false,
            wait_until: None,
            next_heartbeat: now,
            last_heartbeat_ok: now,
            stable_when_found: false,
            revoking: None,
            revoking_partitions: Vec::new(),
        }
    }

    /// The state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The member id ("" before the first join).
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The generation (-1 before the first join).
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The partitions owned now.
    pub fn owned(&self) -> Vec<TopicPartition> {
        self.owned.iter().cloned().collect()
    }

    /// Whether revoked partitions are still with the application.
    pub fn is_revoking(&self) -> bool {
        self.revoking.is_some()
    }

    /// The application is done with the partitions revoked last (its commits are in): the
    /// member may join the rebalance.
    pub fn revoke_done(&mut self) {
        self.revoking = None;
        self.revoking_partitions.clear();
    }

    fn start_revoking(&mut self, partitions: Vec<TopicPartition>, now: Instant) {
        self.revoking = Some(now + self.config.rebalance_timeout);
        self.revoking_partitions = partitions;
    }

    /// The next request to send at `now`, if any (one at a time).
    pub fn poll(&mut self, now: Instant) -> Option<Request> {
        if self.in_flight || self.wait_until.is_some_and(|t| t > now) {
            return None;
        }
        if let Some(deadline) = self.revoking {
            if now >= deadline {
                tracing::warn!(member_id = %self.member_id, "revoked partitions not released within max.poll.interval.ms; joining anyway");
                self.revoke_done();
            }
        }
        let request = match &self.state {
            State::FindingCoordinator => Request::FindCoordinator,
            // Revoked partitions are still with the application: stay in the group (a member
            // that stops heartbeating is evicted at the session timeout, however long the
            // rebalance may take), and join once it is done. As Java's heartbeat thread does
            // while onPartitionsRevoked runs.
            State::Unjoined if self.revoking.is_some() => {
                if now < self.next_heartbeat {
                    return None;
                }
                Request::Heartbeat {
                    member_id: self.member_id.clone(),
                    generation: self.generation,
                }
            }
            State::Unjoined => {
                self.state = State::Joining;
                Request::Join {
                    member_id: self.member_id.clone(),
                    owned: self.owned(),
                    generation: self.generation,
                }
            }
            State::Syncing => Request::Sync {
                member_id: self.member_id.clone(),
                generation: self.generation,
                members: self.leader_members.take(),
            },
            State::Stable if now >= self.next_heartbeat => Request::Heartbeat {
                member_id: self.member_id.clone(),
                generation: self.generation,
            },
            _ => return None,
        };
        self.in_flight = true;
        Some(request)
    }

    /// When `poll` may have something again (heartbeat due, backoff over).
    pub fn next_deadline(&self) -> Option<Instant> {
        if let Some(t) = self.wait_until {
            return Some(t);
        }
        if let Some(deadline) = self.revoking {
            return Some(
                self.next_heartbeat
                    .min(self.session_deadline())
                    .min(deadline),
            );
        }
        match self.state {
            State::Stable => Some(self.next_heartbeat.min(self.session_deadline())),
            _ if self.stable_when_found => Some(self.session_deadline()),
            _ => None,
        }
    }

    fn session_deadline(&self) -> Instant {
        self.last_heartbeat_ok + self.config.session_timeout
    }

    /// Checks the session at `now`: a member that has not heard from the coordinator for a
    /// whole session timeout has surely been evicted, and has lost its partitions.
    pub fn tick(&mut self, now: Instant) -> Vec<Change> {
        let holding = self.state == State::Stable || self.stable_when_found || self.is_revoking();
        if holding && now >= self.session_deadline() {
            self.stable_when_found = false;
            self.revoke_done();
            tracing::warn!(member_id = %self.member_id, "no heartbeat answered within the session timeout; rejoining");
            self.in_flight = false;
            return self.lose_and_rejoin(State::FindingCoordinator);
        }
        Vec::new()
    }

    /// The coordinator was found (or not).
    pub fn coordinator_found(&mut self, found: bool, now: Instant) {
        self.in_flight = false;
        if found {
            if self.state == State::FindingCoordinator {
                self.state = if std::mem::take(&mut self.stable_when_found) {
                    self.next_heartbeat = now;
                    State::Stable
                } else {
                    State::Unjoined
                };
            }
        } else {
            self.backoff(now);
        }
    }

    /// A request got no answer (connection lost, timeout): look for the coordinator again.
    pub fn request_failed(&mut self, now: Instant) {
        self.in_flight = false;
        self.after_coordinator_error(now);
    }

    fn after_coordinator_error(&mut self, now: Instant) {
        match self.state {
            // Keep the assignment: the coordinator may come back before the session ends.
            State::Stable => {
                self.state = State::FindingCoordinator;
                self.stable_when_found = true;
            }
            State::Left | State::Failed(_) => {}
            _ => self.state = State::FindingCoordinator,
        }
        self.backoff(now);
    }

    fn backoff(&mut self, now: Instant) {
        self.wait_until = Some(now + self.config.retry_backoff);
    }

    /// The JoinGroup answer.
    pub fn joined(&mut self, result: JoinResult, now: Instant) -> Vec<Change> {
        self.in_flight = false;
        self.wait_until = None;
        match result.error {
            0 => {
                self.member_id = result.member_id;
                self.generation = result.generation;
                let assigns = self.member_id == result.leader && !result.skip_assignment;
                self.leader_members = assigns.then_some(result.members);
                self.state = State::Syncing;
                Vec::new()
            }
            MEMBER_ID_REQUIRED => {
                // KIP-394: join again, with the id the coordinator gave us.
                self.member_id = result.member_id;
                self.state = State::Unjoined;
                Vec::new()
            }
            code => match outcome(code) {
                Outcome::Fenced => {
                    self.reset_identity();
                    // Not at once: a coordinator that keeps refusing must not be flooded.
                    self.backoff(now);
                    self.lose_and_rejoin(State::Unjoined)
                }
                Outcome::Rebalancing | Outcome::Transient => {
                    self.state = State::Unjoined;
                    self.backoff(now);
                    Vec::new()
                }
                Outcome::Coordinator => {
                    self.after_coordinator_error(now);
                    Vec::new()
                }
                Outcome::Fatal => self.fail(code),
            },
        }
    }

    /// The SyncGroup answer: this member's assignment.
    pub fn synced(
        &mut self,
        error: i16,
        assignment: Vec<TopicPartition>,
        now: Instant,
    ) -> Vec<Change> {
        self.in_flight = false;
        if error != 0 {
            return match outcome(error) {
                Outcome::Rebalancing => self.rejoin(now),
                Outcome::Fenced => {
                    self.reset_identity();
                    self.lose_and_rejoin(State::Unjoined)
                }
                Outcome::Transient => {
                    self.state = State::Unjoined;
                    self.backoff(now);
                    Vec::new()
                }
                Outcome::Coordinator => {
                    self.after_coordinator_error(now);
                    Vec::new()
                }
                Outcome::Fatal => self.fail(error),
            };
        }
        self.state = State::Stable;
        self.last_heartbeat_ok = now;
        self.next_heartbeat = now + self.config.heartbeat_interval;
        let new: BTreeSet<TopicPartition> = assignment.into_iter().collect();
        let mut changes = Vec::new();
        let revoked: Vec<TopicPartition> = self.owned.difference(&new).cloned().collect();
        let added: Vec<TopicPartition> = new.difference(&self.owned).cloned().collect();
        if !revoked.is_empty() {
            changes.push(Change::Revoked(revoked));
        }
        if !added.is_empty() {
            changes.push(Change::Assigned(added));
        }
        let revoked_any = matches!(changes.first(), Some(Change::Revoked(_)));
        self.owned = new;
        if revoked_any && self.config.protocol == RebalanceProtocol::Cooperative {
            // What we gave up goes to someone else in the next round, once the application
            // is done with it.
            self.state = State::Unjoined;
            if let Some(Change::Revoked(tps)) = changes.first() {
                self.start_revoking(tps.clone(), now);
            }
        }
        changes
    }

    /// The Heartbeat answer.
    pub fn heartbeat_answered(&mut self, error: i16, now: Instant) -> Vec<Change> {
        self.in_flight = false;
        let alive = |m: &mut Membership| {
            m.last_heartbeat_ok = now;
            m.next_heartbeat = now + m.config.heartbeat_interval;
        };
        match error {
            0 => {
                alive(self);
                Vec::new()
            }
            // Still in the group: a member finishing its revocation keeps heartbeating until
            // it joins (Java: "it is valid to continue heartbeating while the group is
            // rebalancing").
            REBALANCE_IN_PROGRESS if self.is_revoking() => {
                alive(self);
                Vec::new()
            }
            REBALANCE_IN_PROGRESS => {
                alive(self);
                self.rejoin(now)
            }
            FENCED_INSTANCE_ID | GROUP_AUTHORIZATION_FAILED => self.fail(error),
            code => match outcome(code) {
                Outcome::Fenced => {
                    self.revoke_done();
                    self.reset_identity();
                    self.lose_and_rejoin(State::Unjoined)
                }
                Outcome::Coordinator => {
                    self.after_coordinator_error(now);
                    Vec::new()
                }
                // Anything else (the coordinator loading, an unexpected error) is a missed
                // heartbeat, as in Java: try again soon; the session timeout bounds it.
                _ => {
                    tracing::debug!(code = %KafkaCode(code), "heartbeat failed; retrying");
                    self.next_heartbeat = now + self.config.retry_backoff;
                    Vec::new()
                }
            },
        }
    }

    /// The application has not asked for records for longer than `max.poll.interval.ms`: the
    /// member leaves the group so its partitions can move (a dynamic member says so with
    /// LeaveGroup; a static one just stops, and the session timeout frees its partitions), and
    /// joins again once the application asks. Its partitions are lost: another member may
    /// commit them meanwhile.
    pub fn poll_timed_out(&mut self) -> (Vec<Change>, Option<Request>) {
        if matches!(
            self.state,
            State::Left | State::Failed(_) | State::PollTimedOut
        ) {
            return (Vec::new(), None);
        }
        tracing::warn!(member_id = %self.member_id, "the application has not asked for records within max.poll.interval.ms; leaving the group");
        let request =
            (self.config.group_instance_id.is_none() && !self.member_id.is_empty()).then(|| {
                Request::Leave {
                    member_id: self.member_id.clone(),
                }
            });
        // Partitions revoked but not yet let go of are lost with the rest: the application
        // cannot commit them any more.
        let revoking = std::mem::take(&mut self.revoking_partitions);
        self.owned.extend(revoking);
        let changes = self.lose_and_rejoin(State::PollTimedOut);
        self.reset_identity();
        self.revoke_done();
        self.stable_when_found = false;
        self.in_flight = false;
        (changes, request)
    }

    /// The application asks for records again after a poll timeout: join again.
    pub fn resume_polling(&mut self) {
        if self.state == State::PollTimedOut {
            self.state = State::FindingCoordinator;
        }
    }

    /// The application asks to rejoin (subscription or topic metadata changed).
    pub fn request_rejoin(&mut self, now: Instant) -> Vec<Change> {
        match self.state {
            State::Stable => self.rejoin(now),
            _ => Vec::new(),
        }
    }

    /// The application leaves the group: everything is revoked (commit first), then LeaveGroup
    /// is sent. A static member does not send LeaveGroup: its partitions wait for it until the
    /// session timeout.
    pub fn leave(&mut self) -> (Vec<Change>, Option<Request>) {
        let owned = self.owned();
        self.owned.clear();
        let changes = if owned.is_empty() {
            Vec::new()
        } else {
            vec![Change::Revoked(owned)]
        };
        let request =
            (self.config.group_instance_id.is_none() && !self.member_id.is_empty()).then(|| {
                Request::Leave {
                    member_id: self.member_id.clone(),
                }
            });
        self.state = State::Left;
        self.in_flight = false;
        self.revoke_done();
        (changes, request)
    }

    fn rejoin(&mut self, now: Instant) -> Vec<Change> {
        self.state = State::Unjoined;
        match self.config.protocol {
            RebalanceProtocol::Eager => {
                let owned = self.owned();
                self.owned.clear();
                if owned.is_empty() {
                    Vec::new()
                } else {
                    // Join once the application is done with them (its commits use this
                    // generation, which the coordinator accepts until the join completes).
                    self.start_revoking(owned.clone(), now);
                    vec![Change::Revoked(owned)]
                }
            }
            RebalanceProtocol::Cooperative => Vec::new(),
        }
    }

    fn lose_and_rejoin(&mut self, next: State) -> Vec<Change> {
        self.state = next;
        let owned = self.owned();
        self.owned.clear();
        if owned.is_empty() {
            Vec::new()
        } else {
            vec![Change::Lost(owned)]
        }
    }

    /// A fenced generation or unknown member starts over with a new identity. A static member
    /// too (as Java's `resetStateAndGeneration`): the coordinator gives it a new member id and
    /// maps its instance id to it, so a coordinator that forgot it takes it back.
    fn reset_identity(&mut self) {
        self.generation = -1;
        self.member_id.clear();
    }

    fn fail(&mut self, code: i16) -> Vec<Change> {
        tracing::error!(code = %KafkaCode(code), member_id = %self.member_id, "the group member cannot go on");
        let changes = self.lose_and_rejoin(State::Failed(KafkaCode(code)));
        if code == FENCED_INSTANCE_ID {
            tracing::error!("another member took this group.instance.id");
        }
        changes
    }
}

#[cfg(test)]
mod tests;
