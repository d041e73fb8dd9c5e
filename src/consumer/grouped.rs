//! The consumer's group side: subscribing, rebalance changes, committed offsets.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::fetcher::{Command, Start, Tp};
use super::group::assignor::TopicPartition;
use super::group::driver::{GroupEvent, GroupSettings, Identity, PollClock, Subscribed};
use super::group::membership::Change;
use super::group::offsets::Committed;
use super::{group, Consumer, Event, Group, GroupProtocol, IsolationLevel, Offset, View};
use crate::error::codes::STALE_MEMBER_EPOCH;
use crate::error::Error;

impl Consumer {
    /// Joins `group.id` with this subscription; partitions come and go by rebalances, reported
    /// through [`next`](Consumer::next).
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<(), Error> {
        self.join(Subscribed::Topics(
            topics.iter().map(|t| (*t).to_owned()).collect(),
        ))
    }

    /// Joins `group.id` subscribed to every topic whose whole name matches `pattern` (a
    /// regular expression); topics created or deleted later are picked up within
    /// `metadata.max.age.ms`. Internal topics never match.
    pub fn subscribe_pattern(&mut self, pattern: &str) -> Result<(), Error> {
        let regex = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
            Error::Config(crate::config::ConfigError::InvalidValue {
                key: "subscription pattern".into(),
                value: pattern.to_owned(),
                reason: e.to_string(),
            })
        })?;
        self.join(Subscribed::Pattern(regex))
    }

    fn join(&mut self, subscription: Subscribed) -> Result<(), Error> {
        let group_id = self.config.group_id.clone().ok_or_else(|| {
            Error::Config(crate::config::ConfigError::Missing {
                key: "group.id".into(),
                context: "to subscribe".into(),
            })
        })?;
        if self.group.is_some() {
            return Err(Error::InvalidState(
                "already subscribed (one subscription per consumer)".into(),
            ));
        }
        self.rebalance_started = Some(std::time::Instant::now());
        self.assign(&[])?;
        let settings = GroupSettings {
            group_id,
            group_instance_id: self.config.group_instance_id.clone(),
            session_timeout: self.config.session_timeout,
            rebalance_timeout: self.config.rebalance_timeout,
            heartbeat_interval: self.config.heartbeat_interval,
            assignors: self.config.assignors.clone(),
            subscription,
            metadata_max_age: self.config.client.metadata_max_age,
            polled: PollClock::new(),
            client_rack: self.config.client_rack.clone(),
            remote_assignor: self.config.group_remote_assignor.clone(),
        };
        let polled = settings.polled.clone();
        let identity = Arc::new(Mutex::new(Identity {
            member_id: String::new(),
            generation: -1,
            modern: false,
        }));
        let (events_tx, events) = mpsc::channel(16);
        let (leave_tx, leave_rx) = oneshot::channel();
        let client = self.client.clone();
        let task = match self.config.group_protocol {
            GroupProtocol::Classic => tokio::spawn(group::driver::run(
                client,
                settings,
                identity.clone(),
                events_tx,
                leave_rx,
            )),
            GroupProtocol::Consumer => tokio::spawn(group::modern_driver::run(
                client,
                settings,
                identity.clone(),
                events_tx,
                leave_rx,
            )),
        };
        self.group = Some(Group {
            events,
            identity,
            leave: Some(leave_tx),
            task,
            last_commit: Instant::now(),
            polled,
        });
        Ok(())
    }

    /// The positions to commit: every partition with a known position.
    fn positions(&self, only: Option<&[TopicPartition]>) -> Vec<Committed> {
        let mut out: Vec<Committed> = self
            .views
            .iter()
            .filter_map(|((t, p), v)| Some(((t.to_string(), *p), v.position?, v.leader_epoch)))
            .filter(|(tp, _, _)| only.is_none_or(|o| o.contains(tp)))
            .collect();
        out.sort();
        out
    }

    /// Commits the positions of the partitions this consumer reads (needs `group.id`).
    pub async fn commit(&self) -> Result<(), Error> {
        self.commit_positions(self.positions(None)).await
    }

    /// Commits the positions without waiting: the handle resolves to the outcome, and the
    /// consumer goes on meanwhile. Commits are not ordered against later ones.
    pub fn commit_async(&self) -> JoinHandle<Result<(), Error>> {
        let client = self.client.clone();
        let group = self.config.group_id.clone();
        let instance = self.config.group_instance_id.clone();
        let identity = self.identity();
        let offsets = self.positions(None);
        tokio::spawn(async move {
            let group = group.ok_or_else(|| {
                Error::Config(crate::config::ConfigError::Missing {
                    key: "group.id".into(),
                    context: "to commit offsets".into(),
                })
            })?;
            group::offsets::commit(&client, &group, instance.as_deref(), &identity, &offsets).await
        })
    }

    /// Commits these offsets (topic, partition, next offset to read) for the group, checked
    /// against this member's generation: what a pipeline commits once its output is
    /// acknowledged, rather than the positions.
    pub async fn commit_offsets(&self, offsets: &[(String, i32, i64)]) -> Result<(), Error> {
        let offsets = offsets
            .iter()
            .map(|(t, p, o)| {
                // The leader epoch is known for the position handed out last.
                let view = self.views.get(&(Arc::from(t.as_str()), *p));
                let epoch = view
                    .filter(|v| v.position == Some(*o))
                    .map_or(-1, |v| v.leader_epoch);
                ((t.clone(), *p), *o, epoch)
            })
            .collect();
        self.commit_positions(offsets).await
    }

    /// This member's group, generation and member id, for committing offsets inside a
    /// producer's transaction (KIP-447). `None` without `group.id`.
    pub fn group_metadata(&self) -> Option<crate::cluster::GroupMetadata> {
        let group_id = self.config.group_id.as_deref()?;
        let identity = self.identity();
        Some(crate::cluster::GroupMetadata {
            group_id: group_id.to_owned(),
            generation_id: identity.generation,
            member_id: identity.member_id,
            group_instance_id: self.config.group_instance_id.clone(),
        })
    }

    fn identity(&self) -> Identity {
        match &self.group {
            Some(g) => g.identity.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            None => Identity {
                member_id: String::new(),
                generation: -1,
                modern: false,
            },
        }
    }

    async fn commit_positions(&self, offsets: Vec<Committed>) -> Result<(), Error> {
        let group_id = self.config.group_id.as_deref().ok_or_else(|| {
            Error::Config(crate::config::ConfigError::Missing {
                key: "group.id".into(),
                context: "to commit offsets".into(),
            })
        })?;
        let mut stale = 0;
        loop {
            let identity = self.identity();
            let result = group::offsets::commit(
                &self.client,
                group_id,
                self.config.group_instance_id.as_deref(),
                &identity,
                &offsets,
            )
            .await;
            // A KIP-848 member's epoch moved on between reading it and the commit: its next
            // heartbeat answer brings the new one (Java's CommitRequestManager retries too).
            let code = match &result {
                Err(Error::Kafka { code, .. }) => code.0,
                _ => 0,
            };
            if !(identity.modern && code == STALE_MEMBER_EPOCH && stale < 5) {
                return result;
            }
            stale += 1;
            tracing::debug!(group = %group_id, epoch = identity.generation, "stale member epoch; committing again with the next");
            tokio::time::sleep(
                self.config
                    .client
                    .retry_backoff
                    .max(Duration::from_millis(50)),
            )
            .await;
        }
    }

    /// The group's committed offsets for these partitions (`None`: nothing committed).
    pub async fn committed(
        &self,
        partitions: &[(&str, i32)],
    ) -> Result<Vec<(TopicPartition, Option<i64>)>, Error> {
        let group_id = self.config.group_id.as_deref().ok_or_else(|| {
            Error::Config(crate::config::ConfigError::Missing {
                key: "group.id".into(),
                context: "to read committed offsets".into(),
            })
        })?;
        let tps: Vec<TopicPartition> = partitions
            .iter()
            .map(|(t, p)| ((*t).to_owned(), *p))
            .collect();
        Ok(self
            .committed_with_epochs(group_id, &tps)
            .await?
            .into_iter()
            .map(|(tp, committed)| (tp, committed.map(|(offset, _)| offset)))
            .collect())
    }

    async fn committed_with_epochs(
        &self,
        group_id: &str,
        tps: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<(i64, i32)>)>, Error> {
        let stable = self.config.isolation_level == IsolationLevel::ReadCommitted;
        group::offsets::fetch(&self.client, group_id, tps, stable).await
    }

    /// Leaves the group cleanly: commits (with `enable.auto.commit`), revokes, sends
    /// LeaveGroup (not for a static member), closes the fetch sessions at the brokers, and
    /// stops.
    pub async fn close(mut self) -> Result<(), Error> {
        let mut result = Ok(());
        if self.group.is_some() && self.config.enable_auto_commit {
            result = self.commit().await;
        }
        self.finish_revoke();
        if let Some(group) = &mut self.group {
            if let Some(leave) = group.leave.take() {
                let (done_tx, mut done) = oneshot::channel();
                if leave.send(done_tx).is_ok() {
                    // The group task hands over the revocation, then leaves.
                    loop {
                        tokio::select! {
                            _ = &mut done => break,
                            event = group.events.recv() => match event {
                                Some(GroupEvent::Changes(_, ack)) => { let _ = ack.send(()); }
                                _ => break,
                            },
                        }
                    }
                }
            }
        }
        // The fetcher closes its fetch sessions at the brokers, then stops.
        let (closed_tx, closed) = oneshot::channel();
        if self.send(Command::Close(closed_tx)).is_ok() {
            let wait = self.config.client.request_timeout + std::time::Duration::from_secs(1);
            let _ = tokio::time::timeout(wait, closed).await;
        }
        result
    }

    /// Takes group news in; [`act_on_changes`](Self::act_on_changes) does the work.
    pub(super) fn on_group_event(&mut self, event: GroupEvent) -> Result<(), Error> {
        match event {
            GroupEvent::Failed(e) => Err(e),
            GroupEvent::Unreadable { member_id, reason } => {
                self.events
                    .push_back(Event::UnreadableMember { member_id, reason });
                Ok(())
            }
            GroupEvent::UnreadableAssignment { reason } => {
                self.events
                    .push_back(Event::UnreadableAssignment { reason });
                Ok(())
            }
            GroupEvent::Changes(changes, ack) => {
                self.changes.extend(changes);
                self.changes_ack.push(ack);
                Ok(())
            }
        }
    }

    /// Acts on group changes: commit before revoking, let go, look up the committed offsets of
    /// new partitions, and queue the events for the application. A change is removed only once
    /// done, so a cancelled call picks up where it stopped.
    pub(super) async fn act_on_changes(&mut self) -> Result<(), Error> {
        while let Some(change) = self.changes.front().cloned() {
            match change {
                Change::Revoked(tps) => {
                    self.rebalance_started
                        .get_or_insert_with(std::time::Instant::now);
                    // Lost later in the same news (the member left at max.poll.interval.ms
                    // before the application saw the revocation): report them lost only.
                    let lost_later: Vec<TopicPartition> = self
                        .changes
                        .iter()
                        .skip(1)
                        .filter_map(|c| match c {
                            Change::Lost(l) => Some(l.clone()),
                            _ => None,
                        })
                        .flatten()
                        .collect();
                    let tps: Vec<TopicPartition> = tps
                        .into_iter()
                        .filter(|tp| !lost_later.contains(tp))
                        .collect();
                    if tps.is_empty() {
                        self.changes.pop_front();
                        continue;
                    }
                    if self.config.enable_auto_commit {
                        let offsets = self.positions(Some(&tps));
                        if let Err(e) = self.commit_positions(offsets).await {
                            tracing::warn!(error = %e, "commit before revocation failed");
                        }
                    }
                    // No more records for them, but their positions stay until the
                    // application has seen the revocation and asks for more: a commit it
                    // makes meanwhile (in this generation) still covers them.
                    let list: Vec<Tp> = tps
                        .iter()
                        .map(|(t, p)| (Arc::from(t.as_str()), *p))
                        .collect();
                    self.current.retain(|p| !list.contains(&p.tp));
                    for tp in &list {
                        if let Some(view) = self.views.get_mut(tp) {
                            view.epoch = 0;
                        }
                    }
                    self.send(Command::Unassign(list.clone()))?;
                    self.revoking.extend(list);
                    self.events.push_back(Event::Revoked(tps));
                }
                Change::Lost(tps) => {
                    // Partitions whose revocation the application has already been handed
                    // are not reported again; nor can they still be committed.
                    let told: Vec<TopicPartition> = tps
                        .iter()
                        .filter(|(t, p)| self.revoking.contains(&(Arc::from(t.as_str()), *p)))
                        .filter(|tp| {
                            !self
                                .events
                                .iter()
                                .any(|e| matches!(e, Event::Revoked(r) if r.contains(tp)))
                        })
                        .cloned()
                        .collect();
                    for event in self.events.iter_mut() {
                        if let Event::Revoked(r) = event {
                            r.retain(|tp| !tps.contains(tp));
                        }
                    }
                    self.events
                        .retain(|e| !matches!(e, Event::Revoked(r) if r.is_empty()));
                    self.revoking
                        .retain(|(t, p)| !tps.contains(&(t.to_string(), *p)));
                    let list: Vec<(&str, i32)> =
                        tps.iter().map(|(t, p)| (t.as_str(), *p)).collect();
                    self.unassign(&list)?;
                    let lost: Vec<TopicPartition> =
                        tps.into_iter().filter(|tp| !told.contains(tp)).collect();
                    if !lost.is_empty() {
                        self.events.push_back(Event::Lost(lost));
                    }
                }
                Change::Assigned(tps) => {
                    let group_id = self.config.group_id.clone().unwrap_or_default();
                    let committed = self.committed_with_epochs(&group_id, &tps).await?;
                    let mut add = Vec::with_capacity(committed.len());
                    for ((topic, partition), committed) in committed {
                        let start = committed.map_or(Offset::Reset, |(o, _)| Offset::At(o));
                        let leader_epoch = committed.map_or(-1, |(_, e)| e);
                        let epoch = self.bump();
                        let tp: Tp = (Arc::from(topic.as_str()), partition);
                        self.views.insert(
                            tp.clone(),
                            View {
                                epoch,
                                position: committed.map(|(o, _)| o),
                                paused: false,
                                leader_epoch,
                            },
                        );
                        // The committed epoch lets the broker tell whether the log was
                        // truncated below the committed offset (KIP-320).
                        add.push(Start {
                            tp,
                            offset: start,
                            epoch,
                            leader_epoch,
                        });
                    }
                    self.send(Command::Add(add))?;
                    if let Some(group) = &self.config.group_id {
                        let took = self.rebalance_started.take().map(|t| t.elapsed());
                        crate::telemetry::rebalance(self.client.stats(), group, took);
                    }
                    self.events.push_back(Event::Assigned(tps));
                }
            }
            self.changes.pop_front();
        }
        if self.revoking.is_empty() {
            for ack in self.changes_ack.drain(..) {
                let _ = ack.send(());
            }
        } else {
            self.revoke_ack.append(&mut self.changes_ack);
        }
        Ok(())
    }

    /// Lets go of revoked partitions once the application has seen the revocation (it is not
    /// among the events still to return), and tells the group task it may join.
    pub(super) fn finish_revoke(&mut self) {
        if self.revoking.is_empty() && self.revoke_ack.is_empty() {
            return;
        }
        if self.events.iter().any(|e| matches!(e, Event::Revoked(_))) {
            return;
        }
        for tp in self.revoking.drain(..) {
            self.views.remove(&tp);
        }
        for ack in self.revoke_ack.drain(..) {
            let _ = ack.send(());
        }
    }

    /// Commits positions if `auto.commit.interval.ms` has passed.
    pub(super) async fn auto_commit(&mut self) {
        let due = self.group.as_ref().is_some_and(|g| {
            self.config.enable_auto_commit
                && g.last_commit.elapsed() >= self.config.auto_commit_interval
        });
        if due {
            if let Err(e) = self.commit().await {
                tracing::warn!(error = %e, "auto-commit failed");
            }
            if let Some(g) = &mut self.group {
                g.last_commit = Instant::now();
            }
        }
    }
}
