//! The group task of a KIP-848 member: sends what [`ModernMember`] asks for (FindCoordinator,
//! ConsumerGroupHeartbeat, the leave heartbeat), names the assignment's topic ids from the
//! metadata, and hands partition changes to the consumer through the same events as the
//! classic protocol. A revocation waits until the consumer has committed and let go; heartbeats
//! go on meanwhile.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, oneshot};

use super::assignor::TopicPartition;
use super::driver::{
    failure, resolve, stop_on, GroupEvent, GroupSettings, Identity, Outbox, Subscribed,
};
use super::modern::{HeartbeatAnswer, ModernMember, ModernRequest, ModernState};
use crate::cluster::{millis_i32, Client, CoordinatorType, Topics};
use crate::error::{Error, KafkaCode};
use crate::net::Connection;
use crate::wire::ApiKey;

/// Topic ids and names, both ways, as the metadata last told them.
#[derive(Default)]
struct TopicIds {
    names: HashMap<uuid::Uuid, String>,
    ids: HashMap<String, uuid::Uuid>,
}

impl TopicIds {
    fn learn(&mut self, client: &Client) {
        for t in client.metadata().topics.values() {
            if t.id != 0 {
                let id = uuid::Uuid::from_u128(t.id);
                self.names.insert(id, t.name.clone());
                self.ids.insert(t.name.clone(), id);
            }
        }
    }

    /// Names every partition of an assignment, refreshing the metadata once if a topic id or
    /// a partition is new. What is still unknown after that is left out (the next assignment
    /// brings it again), as is what a lying coordinator invents.
    async fn name(
        &mut self,
        client: &Client,
        subscription: &Subscribed,
        assignment: &[(uuid::Uuid, Vec<i32>)],
    ) -> BTreeSet<TopicPartition> {
        let known = |id: &uuid::Uuid, partitions: &[i32]| {
            let Some(name) = self.names.get(id) else {
                return false;
            };
            let count = client
                .metadata()
                .topic(name)
                .map_or(0, |t| t.partitions.len());
            partitions.iter().all(|p| (*p as usize) < count)
        };
        if assignment.iter().any(|(id, ps)| !known(id, ps)) {
            let refreshed = match subscription {
                Subscribed::Topics(topics) => {
                    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                    client.refresh_metadata(Topics::Only(&names)).await
                }
                Subscribed::Pattern(_) => client.refresh_metadata(Topics::All).await,
            };
            if let Err(e) = refreshed {
                tracing::debug!(error = %e, "cannot refresh the metadata for the assignment's topic ids");
            }
            self.learn(client);
        }
        let metadata = client.metadata();
        let mut out = BTreeSet::new();
        for (id, partitions) in assignment {
            let Some(name) = self.names.get(id) else {
                tracing::warn!(topic_id = %id, "an assigned topic id is not in the metadata; leaving it out");
                continue;
            };
            // A coordinator that names a partition the topic does not have is not believed.
            let count = metadata
                .topic(name)
                .map_or(0, |t| t.partitions.len() as i32);
            for p in partitions {
                if (0..count).contains(p) {
                    out.insert((name.clone(), *p));
                } else {
                    tracing::warn!(topic = %name, partition = p, "the assignment names a partition the topic does not have; leaving it out");
                }
            }
        }
        out
    }

    /// The owned partitions by topic id, for the heartbeat.
    fn owned(&self, owned: &[TopicPartition]) -> Vec<TopicPartitions> {
        let mut by_topic: HashMap<uuid::Uuid, Vec<i32>> = HashMap::new();
        for (topic, p) in owned {
            if let Some(id) = self.ids.get(topic) {
                by_topic.entry(*id).or_default().push(*p);
            }
        }
        let mut out: Vec<TopicPartitions> = by_topic
            .into_iter()
            .map(|(id, partitions)| {
                TopicPartitions::default()
                    .with_topic_id(id)
                    .with_partitions(partitions)
            })
            .collect();
        out.sort_by_key(|t| t.topic_id);
        out
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
    let member_id = uuid::Uuid::from_u128(fastrand::u128(..)).to_string();
    let mut member = ModernMember::new(
        member_id,
        settings.group_instance_id.clone(),
        client.config().retry_backoff,
        settings.rebalance_timeout,
        Instant::now(),
    );
    let mut outbox = Outbox {
        events: events.clone(),
        revoke_ack: None,
    };
    let mut coordinator: Option<Connection> = None;
    let mut topics = TopicIds::default();
    topics.learn(&client);
    let publish = |member: &ModernMember| {
        *identity.lock().unwrap_or_else(|p| p.into_inner()) = Identity {
            member_id: member.member_id().to_owned(),
            generation: member.epoch(),
            modern: true,
        };
    };
    loop {
        let now = Instant::now();
        // max.poll.interval.ms, as the classic driver measures it.
        let polled = settings.polled.last();
        if member.state() == &ModernState::PollTimedOut {
            if now.saturating_duration_since(polled) < settings.rebalance_timeout {
                member.resume_polling();
            }
        } else if now.saturating_duration_since(polled) >= settings.rebalance_timeout
            && !matches!(member.state(), ModernState::Left | ModernState::Failed(_))
        {
            let (changes, request) = member.poll_timed_out();
            outbox.revoke_ack = None;
            publish(&member);
            if let (Some(request), Some(conn)) = (request, &coordinator) {
                if let Err(e) = send(conn, &client, &settings, &topics, request).await {
                    tracing::debug!(error = %e, "the leave heartbeat after the poll timeout failed");
                }
            }
            if !outbox.deliver(changes).await {
                return;
            }
        }
        if outbox.revoke_ack.is_some() && !member.is_revoking() {
            outbox.revoke_ack = None;
        }
        let changes = member.tick(now);
        if !outbox.deliver(changes).await {
            return;
        }
        if let ModernState::Failed(code) = member.state() {
            let _ = events
                .send(GroupEvent::Failed(failure(&settings, *code)))
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
                () = outbox.revoked() => {
                    let changes = member.revoke_done(Instant::now());
                    if !outbox.deliver(changes).await {
                        return;
                    }
                }
                reply = &mut leave => {
                    let (changes, request) = member.leave();
                    if outbox.deliver(changes).await {
                        // The consumer commits before it lets go: leave after that.
                        let _ = tokio::time::timeout(settings.rebalance_timeout, outbox.revoked()).await;
                    }
                    if let (Some(request), Some(conn)) = (request, &coordinator) {
                        if let Err(e) = send(conn, &client, &settings, &topics, request).await {
                            tracing::debug!(error = %e, "the leave heartbeat failed");
                        }
                    }
                    if let Ok(reply) = reply {
                        let _ = reply.send(());
                    }
                    return;
                }
            }
            continue;
        };
        match request {
            ModernRequest::FindCoordinator => {
                client.forget_coordinators();
                match client
                    .coordinator(CoordinatorType::Group, &settings.group_id)
                    .await
                {
                    Ok(conn) => {
                        coordinator = Some(conn);
                        member.coordinator_found(true, Instant::now());
                    }
                    Err(e) => {
                        if stop_on(&events, &e).await {
                            return;
                        }
                        tracing::debug!(group = %settings.group_id, error = %e, "no coordinator yet");
                        member.coordinator_found(false, Instant::now());
                    }
                }
            }
            request @ ModernRequest::Heartbeat { .. } => {
                let Some(conn) = coordinator.clone() else {
                    member.request_failed(Instant::now());
                    continue;
                };
                match send(&conn, &client, &settings, &topics, request).await {
                    Ok((error, response)) => {
                        let assignment = match response.assignment {
                            Some(a) if error == 0 => {
                                let ids: Vec<(uuid::Uuid, Vec<i32>)> = a
                                    .topic_partitions
                                    .into_iter()
                                    .map(|t| (t.topic_id, t.partitions))
                                    .collect();
                                Some(topics.name(&client, &settings.subscription, &ids).await)
                            }
                            _ => None,
                        };
                        let answer = HeartbeatAnswer {
                            error,
                            member_id: response.member_id.map(|s| s.to_string()),
                            epoch: response.member_epoch,
                            interval: Duration::from_millis(
                                response.heartbeat_interval_ms.max(0) as u64
                            ),
                            assignment,
                        };
                        if error != 0 {
                            tracing::debug!(code = %KafkaCode(error), message = ?response.error_message, "ConsumerGroupHeartbeat refused");
                        }
                        let changes = member.heartbeat_answered(answer, Instant::now());
                        publish(&member);
                        if !outbox.deliver(changes).await {
                            return;
                        }
                    }
                    Err(e) => {
                        if stop_on(&events, &e).await {
                            return;
                        }
                        tracing::debug!(error = %e, "ConsumerGroupHeartbeat failed");
                        member.request_failed(Instant::now());
                    }
                }
            }
            ModernRequest::Leave { .. } => {}
        }
    }
}

/// Sends a heartbeat (a full one: every field, as on joining) or a leave heartbeat.
async fn send(
    conn: &Connection,
    client: &Client,
    settings: &GroupSettings,
    topics: &TopicIds,
    request: ModernRequest,
) -> Result<
    (
        i16,
        kafka_protocol::messages::ConsumerGroupHeartbeatResponse,
    ),
    Error,
> {
    let version = conn.version(ApiKey::ConsumerGroupHeartbeat).map_err(|_| {
        Error::Config(crate::config::ConfigError::InvalidValue {
            key: "group.protocol".into(),
            value: "consumer".into(),
            reason: "the group coordinator does not speak ConsumerGroupHeartbeat (KIP-848); use group.protocol=classic".into(),
        })
    })?;
    let group = GroupId(StrBytes::from_string(settings.group_id.clone()));
    let instance = settings
        .group_instance_id
        .clone()
        .map(StrBytes::from_string);
    let mut body = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(group)
        .with_instance_id(instance);
    match request {
        ModernRequest::Leave { member_id, epoch } => {
            body = body
                .with_member_id(StrBytes::from_string(member_id))
                .with_member_epoch(epoch)
                .with_rebalance_timeout_ms(-1);
        }
        ModernRequest::Heartbeat {
            member_id,
            epoch,
            owned,
        } => {
            body = body
                .with_member_id(StrBytes::from_string(member_id))
                .with_member_epoch(epoch)
                .with_rack_id(settings.client_rack.clone().map(StrBytes::from_string))
                .with_rebalance_timeout_ms(millis_i32(settings.rebalance_timeout))
                .with_server_assignor(settings.remote_assignor.clone().map(StrBytes::from_string))
                .with_topic_partitions(Some(topics.owned(&owned)));
            match &settings.subscription {
                // v1: the coordinator resolves the pattern (and follows topics created later).
                Subscribed::Pattern(regex) if version >= 1 => {
                    body.subscribed_topic_regex =
                        Some(StrBytes::from_string(regex.as_str().into()));
                }
                // v0 (or a list of names): the names, a pattern resolved here.
                subscription => {
                    let client_side = resolve(client, subscription).await?;
                    body.subscribed_topic_names = Some(
                        client_side
                            .into_iter()
                            .map(|t| TopicName(StrBytes::from_string(t)))
                            .collect(),
                    );
                }
            }
        }
        ModernRequest::FindCoordinator => {
            return Err(Error::InvalidState(
                "FindCoordinator is not a heartbeat".into(),
            ))
        }
    }
    let response = conn.request_at(&body, version).await?;
    Ok((response.error_code, response))
}
