//! The group task: sends what the membership state machine asks for (FindCoordinator,
//! JoinGroup, SyncGroup with the leader's assignment, Heartbeat, LeaveGroup), feeds the answers
//! back, and hands partition changes to the consumer. Heartbeats go on here whatever the
//! application is doing; a revocation waits until the consumer has committed and let go.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{GroupId, HeartbeatRequest};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, oneshot};

use super::assignor::{by_name, Assignor, RebalanceProtocol};
use super::membership::{Change, MemberConfig, Membership, Request, State};
use super::requests::{assign, join, send_leave, sync, Joining};
use crate::cluster::{Client, CoordinatorType, Topics};
use crate::error::codes::FENCED_INSTANCE_ID;
use crate::error::{Action, Error, KafkaCode};
use crate::net::Connection;

/// What the group task tells the consumer.
#[derive(Debug)]
pub(crate) enum GroupEvent {
    /// Partition changes; the sender is answered once the consumer has acted on them.
    Changes(Vec<Change>, oneshot::Sender<()>),
    /// The member cannot go on.
    Failed(Error),
    /// The leader's assignment for this member could not be read; it was taken as empty.
    UnreadableAssignment {
        /// What is wrong with it.
        reason: String,
    },
    /// As the leader, this member could not read another member's subscription; that member
    /// was assigned nothing.
    Unreadable {
        /// The member.
        member_id: String,
        /// What is wrong with its subscription.
        reason: String,
    },
}

/// Who this member is now, for offset commits.
#[derive(Debug, Clone, Default)]
pub(crate) struct Identity {
    pub member_id: String,
    /// The generation, or a KIP-848 member's epoch.
    pub generation: i32,
    /// A KIP-848 member (offset commits need OffsetCommit v9 or later).
    pub modern: bool,
}

/// The group settings the task needs.
#[derive(Debug, Clone)]
pub(crate) struct GroupSettings {
    pub group_id: String,
    pub group_instance_id: Option<String>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub assignors: Vec<String>,
    pub subscription: Subscribed,
    /// How often a pattern subscription looks for new or deleted topics.
    pub metadata_max_age: Duration,
    /// When the application last asked for records (`max.poll.interval.ms` is measured from it).
    pub polled: Arc<PollClock>,
    /// `client.rack`, for rack-aware assignors.
    pub client_rack: Option<String>,
    /// `group.remote.assignor`: the server-side assignor a KIP-848 member asks for.
    pub remote_assignor: Option<String>,
}

impl GroupSettings {
    /// The group id, as requests carry it.
    pub(super) fn group(&self) -> GroupId {
        GroupId(StrBytes::from_string(self.group_id.clone()))
    }

    /// `group.instance.id`, as requests carry it.
    pub(super) fn instance(&self) -> Option<StrBytes> {
        self.group_instance_id.clone().map(StrBytes::from_string)
    }
}

/// When the application last asked the consumer for records, shared with the group task. Time
/// spent waiting inside `next()` counts as asking (as in Java, where `poll` keeps the timer
/// fresh while it waits).
#[derive(Debug)]
pub(crate) struct PollClock {
    start: Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
    /// Calls to `next()` under way.
    inside: AtomicUsize,
}

impl PollClock {
    pub(crate) fn new() -> Arc<PollClock> {
        Arc::new(PollClock {
            start: Instant::now(),
            last: AtomicU64::new(0),
            inside: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    /// The application is asking for records until the guard is dropped (a cancelled `next()`
    /// included).
    pub(crate) fn asking(self: &Arc<Self>) -> Asking {
        self.touch();
        self.inside.fetch_add(1, Ordering::Relaxed);
        Asking(self.clone())
    }

    /// When it last asked; now if it is asking.
    pub(crate) fn last(&self) -> Instant {
        if self.inside.load(Ordering::Relaxed) > 0 {
            return Instant::now();
        }
        self.start + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }
}

/// A call to `next()` under way (see [`PollClock::asking`]).
pub(crate) struct Asking(Arc<PollClock>);

impl Drop for Asking {
    fn drop(&mut self) {
        self.0.touch();
        self.0.inside.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The group task's side of the event channel: changes go out, and the acknowledgement of a
/// revocation is kept until the application is done with the revoked partitions.
pub(super) struct Outbox {
    pub(super) events: mpsc::Sender<GroupEvent>,
    pub(super) revoke_ack: Option<oneshot::Receiver<()>>,
}

impl Outbox {
    /// Hands changes to the consumer. A revocation's acknowledgement is kept (the member joins
    /// only once the application has let go, and heartbeats meanwhile); an assignment's or a
    /// loss's is not waited for. False if the consumer is gone.
    pub(super) async fn deliver(&mut self, changes: Vec<Change>) -> bool {
        if changes.is_empty() {
            return true;
        }
        let revokes = changes.iter().any(|c| matches!(c, Change::Revoked(_)));
        let (ack, acked) = oneshot::channel();
        if self
            .events
            .send(GroupEvent::Changes(changes, ack))
            .await
            .is_err()
        {
            return false;
        }
        if revokes {
            self.revoke_ack = Some(acked);
        }
        true
    }

    /// Waits for the pending revocation to be acknowledged (forever if there is none).
    pub(super) async fn revoked(&mut self) {
        match &mut self.revoke_ack {
            Some(ack) => {
                let _ = ack.await;
                self.revoke_ack = None;
            }
            None => std::future::pending().await,
        }
    }
}

/// What the member subscribes to.
#[derive(Debug, Clone)]
pub(crate) enum Subscribed {
    /// These topics.
    Topics(Vec<String>),
    /// Every topic whose whole name matches (internal topics excluded).
    Pattern(regex::Regex),
}

/// The topics a subscription names now (a pattern is matched against the cluster's topics).
pub(super) async fn resolve(
    client: &Client,
    subscription: &Subscribed,
) -> Result<Vec<String>, Error> {
    match subscription {
        Subscribed::Topics(topics) => Ok(topics.clone()),
        Subscribed::Pattern(pattern) => {
            let metadata = client.refresh_metadata(Topics::All).await?;
            let mut topics: Vec<String> = metadata
                .topics
                .values()
                .filter(|t| !t.internal && t.error.is_none())
                .map(|t| t.name.clone())
                .filter(|name| pattern.is_match(name))
                .collect();
            topics.sort();
            Ok(topics)
        }
    }
}

/// Runs the member until it leaves (the `leave` channel) or fails.
pub(crate) async fn run(
    client: Client,
    settings: GroupSettings,
    identity: Arc<Mutex<Identity>>,
    events: mpsc::Sender<GroupEvent>,
    mut leave: oneshot::Receiver<oneshot::Sender<()>>,
) {
    let assignors: Vec<Box<dyn Assignor>> = settings
        .assignors
        .iter()
        .filter_map(|n| by_name(n))
        .collect();
    // All cooperative, or eager (a group mixing them rebalances eagerly).
    let protocol = if assignors
        .iter()
        .all(|a| a.protocol() == RebalanceProtocol::Cooperative)
    {
        RebalanceProtocol::Cooperative
    } else {
        RebalanceProtocol::Eager
    };
    let member = Membership::new(
        MemberConfig {
            group_instance_id: settings.group_instance_id.clone(),
            session_timeout: settings.session_timeout,
            heartbeat_interval: settings.heartbeat_interval,
            retry_backoff: client.config().retry_backoff,
            protocol,
            rebalance_timeout: settings.rebalance_timeout,
        },
        Instant::now(),
    );
    let outbox = Outbox {
        events: events.clone(),
        revoke_ack: None,
    };
    let mut task = Task {
        client,
        settings,
        assignors,
        identity,
        events,
        member,
        outbox,
        coordinator: None,
        chosen: String::new(),
        topics: Vec::new(),
        checked: Instant::now(),
    };
    loop {
        let now = Instant::now();
        let Task {
            client,
            settings,
            events,
            member,
            outbox,
            coordinator,
            topics,
            checked,
            ..
        } = &mut task;
        if matches!(settings.subscription, Subscribed::Pattern(_))
            && member.state() == &State::Stable
            && now.duration_since(*checked) >= settings.metadata_max_age
        {
            *checked = now;
            match resolve(client, &settings.subscription).await {
                Ok(current) if current != *topics => {
                    tracing::info!(group = %settings.group_id, ?current, "the subscribed topics changed; rejoining");
                    let changes = member.request_rejoin(now);
                    if !outbox.deliver(changes).await {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "pattern check failed"),
            }
        }
        // max.poll.interval.ms: an application that stops asking for records gives its
        // partitions up; it gets them back (or others) when it asks again.
        let polled = settings.polled.last();
        if member.state() == &State::PollTimedOut {
            if now.saturating_duration_since(polled) < settings.rebalance_timeout {
                member.resume_polling();
            }
        } else if now.saturating_duration_since(polled) >= settings.rebalance_timeout
            && !matches!(member.state(), State::Left | State::Failed(_))
        {
            let (changes, request) = member.poll_timed_out();
            outbox.revoke_ack = None;
            if let (Some(Request::Leave { member_id }), Some((_, conn))) = (request, &*coordinator)
            {
                if let Err(e) = send_leave(conn, settings, &member_id).await {
                    tracing::debug!(error = %e, "LeaveGroup after the poll timeout failed");
                }
            }
            if !outbox.deliver(changes).await {
                return;
            }
        }
        if outbox.revoke_ack.is_some() && !member.is_revoking() {
            // The member gave up waiting (max.poll.interval.ms) or was fenced meanwhile.
            outbox.revoke_ack = None;
        }
        let changes = member.tick(now);
        if !outbox.deliver(changes).await {
            return;
        }
        if let State::Failed(code) = member.state() {
            let _ = events
                .send(GroupEvent::Failed(failure(settings, *code)))
                .await;
            return;
        }
        let Some(request) = member.poll(now) else {
            let wake = member
                .next_deadline()
                .unwrap_or(now + Duration::from_millis(100))
                .min(now + Duration::from_millis(500));
            tokio::select! {
                () = tokio::time::sleep_until(wake.into()) => {}
                () = outbox.revoked() => member.revoke_done(),
                reply = &mut leave => return task.leave(reply.ok(), false).await,
            }
            continue;
        };
        // Leaving does not wait for a rebalance to finish (the coordinator may hold a JoinGroup
        // or a follower's SyncGroup for long, and a member that rejoins at once after a failed
        // sync sends nothing else): the request under way is dropped, and LeaveGroup goes on a
        // new connection (see `Task::leave`). Except the leader's SyncGroup: the assignment it was elected to make is handed out
        // first, so the followers waiting for it get it (some coordinators, tansu 0.6 among
        // them, keep a leader that leaves in the middle of a rebalance and never form again).
        let flow = if matches!(
            request,
            Request::Sync {
                members: Some(_),
                ..
            }
        ) {
            Ok(task.serve(request).await)
        } else {
            tokio::select! {
                biased;
                reply = &mut leave => Err(reply),
                flow = task.serve(request) => Ok(flow),
            }
        };
        match flow {
            Ok(Flow::Next) => {}
            Ok(Flow::Stop) => return,
            Err(reply) => return task.leave(reply.ok(), true).await,
        }
    }
}

/// What the group task keeps between requests.
struct Task {
    client: Client,
    settings: GroupSettings,
    assignors: Vec<Box<dyn Assignor>>,
    identity: Arc<Mutex<Identity>>,
    events: mpsc::Sender<GroupEvent>,
    member: Membership,
    outbox: Outbox,
    /// The coordinator's id and this member's own connection to it.
    coordinator: Option<(i32, Connection)>,
    /// The assignor the group chose.
    chosen: String,
    /// The topics joined with, and when a pattern was last checked against the cluster.
    topics: Vec<String>,
    checked: Instant,
}

/// After a request: go on, or stop (the consumer is gone or the member failed).
enum Flow {
    Next,
    Stop,
}

impl Task {
    /// Leaves the group: revokes (the consumer commits before it lets go), then LeaveGroup;
    /// answers `reply` when done. `interrupted`: a request was dropped on the member's
    /// connection, which the coordinator may still be holding (its answers come in order), so
    /// LeaveGroup goes on a new one.
    async fn leave(&mut self, reply: Option<oneshot::Sender<()>>, interrupted: bool) {
        let (changes, request) = self.member.leave();
        // The consumer commits before it lets go: LeaveGroup after that. A member that owned
        // nothing has nothing to wait for.
        if self.outbox.deliver(changes).await && self.outbox.revoke_ack.is_some() {
            let _ =
                tokio::time::timeout(self.settings.rebalance_timeout, self.outbox.revoked()).await;
        }
        if interrupted {
            if let Some((id, _)) = self.coordinator.take() {
                match self.client.dedicated(id).await {
                    Ok(conn) => self.coordinator = Some((id, conn)),
                    Err(e) => tracing::debug!(error = %e, "cannot reach the coordinator to leave"),
                }
            }
        }
        if let (Some(Request::Leave { member_id }), Some((_, conn))) = (request, &self.coordinator)
        {
            if let Err(e) = send_leave(conn, &self.settings, &member_id).await {
                tracing::debug!(error = %e, "LeaveGroup failed");
            }
        }
        if let Some(reply) = reply {
            let _ = reply.send(());
        }
    }

    /// Sends what the membership machine asked for and feeds the answer back.
    async fn serve(&mut self, request: Request) -> Flow {
        let Task {
            client,
            settings,
            assignors,
            identity,
            events,
            member,
            outbox,
            coordinator,
            chosen,
            topics,
            checked,
        } = self;
        match request {
            Request::FindCoordinator => {
                // The member asks only when the coordinator it had failed it: look again.
                client.forget_coordinators();
                match client
                    .dedicated_coordinator(CoordinatorType::Group, &settings.group_id)
                    .await
                {
                    Ok(found) => {
                        *coordinator = Some(found);
                        member.coordinator_found(true, Instant::now());
                    }
                    Err(e) => {
                        if stop_on(events, &e).await {
                            return Flow::Stop;
                        }
                        tracing::debug!(group = %settings.group_id, error = %e, "no coordinator yet");
                        member.coordinator_found(false, Instant::now());
                    }
                }
            }
            Request::Join {
                member_id,
                owned,
                generation,
            } => {
                let Some((_, conn)) = coordinator.clone() else {
                    member.request_failed(Instant::now());
                    return Flow::Next;
                };
                match resolve(client, &settings.subscription).await {
                    Ok(current) => *topics = current,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot resolve the subscription");
                        member.request_failed(Instant::now());
                        return Flow::Next;
                    }
                }
                *checked = Instant::now();
                let joining = Joining {
                    member_id: &member_id,
                    owned: &owned,
                    generation,
                };
                match join(&conn, settings, assignors, topics, joining).await {
                    Ok((result, protocol_name, unreadable)) => {
                        tracing::debug!(
                            group = %settings.group_id,
                            code = %KafkaCode(result.error),
                            generation = result.generation,
                            member_id = %result.member_id,
                            leader = %result.leader,
                            members = result.members.len(),
                            "joined"
                        );
                        *chosen = protocol_name;
                        for report in unreadable {
                            if events.send(report).await.is_err() {
                                return Flow::Stop;
                            }
                        }
                        let changes = member.joined(result, Instant::now());
                        if !outbox.deliver(changes).await {
                            return Flow::Stop;
                        }
                    }
                    Err(e) => {
                        if stop_on(events, &e).await {
                            return Flow::Stop;
                        }
                        tracing::debug!(error = %e, "JoinGroup failed");
                        member.request_failed(Instant::now());
                    }
                }
            }
            Request::Sync {
                member_id,
                generation,
                members,
            } => {
                let Some((_, conn)) = coordinator.clone() else {
                    member.request_failed(Instant::now());
                    return Flow::Next;
                };
                let assignments = match members {
                    Some(members) => match assign(client, chosen, &members).await {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "the leader could not assign");
                            member.request_failed(Instant::now());
                            return Flow::Next;
                        }
                    },
                    None => BTreeMap::new(),
                };
                match sync(
                    &conn,
                    events,
                    settings,
                    chosen,
                    &member_id,
                    generation,
                    assignments,
                )
                .await
                {
                    Ok((code, assignment)) => {
                        tracing::debug!(
                            group = %settings.group_id,
                            code = %KafkaCode(code),
                            generation,
                            ?assignment,
                            "synced"
                        );
                        let changes = member.synced(code, assignment, Instant::now());
                        *identity.lock().unwrap_or_else(|p| p.into_inner()) = Identity {
                            member_id: member.member_id().to_owned(),
                            generation: member.generation(),
                            modern: false,
                        };
                        if !outbox.deliver(changes).await {
                            return Flow::Stop;
                        }
                    }
                    Err(e) => {
                        if stop_on(events, &e).await {
                            return Flow::Stop;
                        }
                        tracing::debug!(error = %e, "SyncGroup failed");
                        member.request_failed(Instant::now());
                    }
                }
            }
            Request::Heartbeat {
                member_id,
                generation,
            } => {
                let Some((_, conn)) = coordinator.clone() else {
                    member.request_failed(Instant::now());
                    return Flow::Next;
                };
                let request = HeartbeatRequest::default()
                    .with_group_id(settings.group())
                    .with_generation_id(generation)
                    .with_member_id(StrBytes::from_string(member_id))
                    .with_group_instance_id(settings.instance());
                match conn.request(&request).await {
                    Ok(response) => {
                        if response.error_code != 0 {
                            tracing::debug!(
                                group = %settings.group_id,
                                code = %KafkaCode(response.error_code),
                                generation,
                                "heartbeat answered"
                            );
                        }
                        let changes =
                            member.heartbeat_answered(response.error_code, Instant::now());
                        if !outbox.deliver(changes).await {
                            return Flow::Stop;
                        }
                    }
                    Err(e) => {
                        if stop_on(events, &e).await {
                            return Flow::Stop;
                        }
                        member.request_failed(Instant::now());
                    }
                }
            }
            Request::Leave { .. } => {}
        }
        Flow::Next
    }
}

/// The error a member that cannot go on (`code`) reports to the consumer.
pub(super) fn failure(settings: &GroupSettings, code: KafkaCode) -> Error {
    if code.0 == FENCED_INSTANCE_ID {
        Error::FencedInstanceId {
            group_id: settings.group_id.clone(),
            group_instance_id: settings.group_instance_id.clone().unwrap_or_default(),
        }
    } else {
        Error::kafka(code, format!("member of group {}", settings.group_id), None)
    }
}

/// Whether `e` ends the member: retrying cannot fix it (the coordinator broke the protocol,
/// authorization was refused). The consumer hears of it. Time running out and lost
/// connections are the membership machine's to retry.
pub(super) async fn stop_on(events: &mpsc::Sender<GroupEvent>, e: &Error) -> bool {
    let broken = e.action() == Action::Fatal && !matches!(e, Error::Timeout { .. });
    if broken {
        tracing::warn!(error = %e, "the group member cannot go on");
        let _ = events.send(GroupEvent::Failed(e.clone())).await;
    }
    broken
}
