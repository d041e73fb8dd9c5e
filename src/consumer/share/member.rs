//! A share group member's heartbeat task (ShareGroupHeartbeat, KIP-932). Membership is
//! simpler than a consumer group's: the coordinator's assignment is taken at once (records,
//! not partitions, are what members hold, so nothing is revoked first), and a fenced member
//! joins again at epoch 0 under its own id.

use std::collections::BTreeSet;
use std::time::Duration;

use kafka_protocol::messages::{GroupId, ShareGroupHeartbeatRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{oneshot, watch};

use crate::cluster::{Client, CoordinatorType, Topics};
use crate::error::codes::{FENCED_MEMBER_EPOCH, GROUP_ID_NOT_FOUND, UNKNOWN_MEMBER_ID};
use crate::error::{Action, Error, KafkaCode};
use crate::net::Connection;
use crate::wire::ApiKey;

/// A topic partition by name.
pub(crate) type Tp = (String, i32);

/// What the task publishes: the partitions to fetch, or why it stopped.
#[derive(Debug, Clone)]
pub(crate) enum Membership {
    /// Not (or no longer) in the group.
    Joining,
    /// In the group with these partitions.
    Assigned(BTreeSet<Tp>),
    /// Cannot go on.
    Failed(Error),
}

pub(crate) struct Settings {
    pub member_id: String,
    pub group_id: String,
    pub topics: Vec<String>,
    pub rack: Option<String>,
}

/// Runs the member until `leave` fires (then it leaves the group and answers) or it fails.
pub(crate) async fn run(
    client: Client,
    settings: Settings,
    out: watch::Sender<Membership>,
    mut leave: oneshot::Receiver<oneshot::Sender<()>>,
) {
    let member_id = settings.member_id.clone();
    let backoff = client.config().retry_backoff.max(Duration::from_millis(10));
    let mut epoch = 0;
    let mut interval = Duration::from_secs(5);
    let mut coordinator: Option<Connection> = None;
    loop {
        let conn = match &coordinator {
            Some(c) => c.clone(),
            None => {
                client.forget_coordinators();
                match client
                    .coordinator(CoordinatorType::Group, &settings.group_id)
                    .await
                {
                    Ok(c) => {
                        coordinator = Some(c.clone());
                        c
                    }
                    Err(e)
                        if e.action() == Action::Fatal && !matches!(e, Error::Timeout { .. }) =>
                    {
                        let _ = out.send(Membership::Failed(e));
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "no share group coordinator yet");
                        if let Woke::Leave(reply) = wait(&mut leave, backoff).await {
                            if let Some(reply) = reply {
                                let _ = reply.send(());
                            }
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        let request = ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(settings.group_id.clone())))
            .with_member_id(StrBytes::from_string(member_id.clone()))
            .with_member_epoch(epoch)
            .with_rack_id(settings.rack.clone().map(StrBytes::from_string))
            .with_subscribed_topic_names(Some(
                settings
                    .topics
                    .iter()
                    .map(|t| TopicName(StrBytes::from_string(t.clone())))
                    .collect(),
            ));
        let version = match conn.version(ApiKey::ShareGroupHeartbeat) {
            Ok(v) => v,
            Err(_) => {
                let _ = out.send(Membership::Failed(Error::InvalidState(
                    "the group coordinator does not speak ShareGroupHeartbeat (KIP-932 share groups need Kafka 4.1 or later)".into(),
                )));
                return;
            }
        };
        let mut next = interval;
        match conn.request_at(&request, version).await {
            Ok(response) => match response.error_code {
                0 => {
                    epoch = response.member_epoch;
                    if response.heartbeat_interval_ms > 0 {
                        interval = Duration::from_millis(response.heartbeat_interval_ms as u64);
                        next = interval;
                    }
                    if let Some(assignment) = response.assignment {
                        let ids: Vec<(uuid::Uuid, Vec<i32>)> = assignment
                            .topic_partitions
                            .into_iter()
                            .map(|t| (t.topic_id, t.partitions))
                            .collect();
                        let named = name(&client, &settings.topics, &ids).await;
                        let _ = out.send(Membership::Assigned(named));
                    }
                }
                UNKNOWN_MEMBER_ID | FENCED_MEMBER_EPOCH | GROUP_ID_NOT_FOUND => {
                    tracing::info!(code = %KafkaCode(response.error_code), "share group member fenced; joining again");
                    epoch = 0;
                    let _ = out.send(Membership::Joining);
                    next = Duration::ZERO;
                }
                code => match KafkaCode(code).action() {
                    Action::FindCoordinator => {
                        coordinator = None;
                        next = backoff;
                    }
                    Action::Retry => next = backoff,
                    _ => {
                        let _ = out.send(Membership::Failed(Error::kafka(
                            KafkaCode(code),
                            format!("member of share group {}", settings.group_id),
                            response.error_message.map(|m| m.to_string()),
                        )));
                        return;
                    }
                },
            },
            Err(e) => {
                tracing::debug!(error = %e, "ShareGroupHeartbeat failed");
                coordinator = None;
                next = backoff;
            }
        }
        if let Woke::Leave(reply) = wait(&mut leave, next).await {
            if let (Some(conn), true) = (&coordinator, epoch > 0) {
                let request = ShareGroupHeartbeatRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(settings.group_id.clone())))
                    .with_member_id(StrBytes::from_string(member_id.clone()))
                    .with_member_epoch(-1);
                if let Err(e) = conn.request_at(&request, version).await {
                    tracing::debug!(error = %e, "leaving the share group failed");
                }
            }
            let _ = out.send(Membership::Joining);
            if let Some(reply) = reply {
                let _ = reply.send(());
            }
            return;
        }
    }
}

/// Why [`wait`] returned.
enum Woke {
    /// The time passed.
    Timer,
    /// The member is asked to leave; the reply goes to the asker once it has.
    Leave(Option<oneshot::Sender<()>>),
}

/// Sleeps for `d`, unless the member is asked to leave meanwhile.
async fn wait(leave: &mut oneshot::Receiver<oneshot::Sender<()>>, d: Duration) -> Woke {
    tokio::select! {
        () = tokio::time::sleep(d) => Woke::Timer,
        reply = &mut *leave => Woke::Leave(reply.ok()),
    }
}

/// Names the assignment's topic ids from the metadata (refreshed once for an unknown one);
/// partitions the metadata does not have are not believed.
async fn name(client: &Client, topics: &[String], ids: &[(uuid::Uuid, Vec<i32>)]) -> BTreeSet<Tp> {
    let lookup = |id: &uuid::Uuid| {
        client
            .metadata()
            .topics
            .values()
            .find(|t| t.id == id.as_u128())
            .map(|t| (t.name.clone(), t.partitions.len() as i32))
    };
    if ids
        .iter()
        .any(|(id, ps)| lookup(id).is_none_or(|(_, n)| ps.iter().any(|p| *p >= n)))
    {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(e) = client.refresh_metadata(Topics::Only(&names)).await {
            tracing::debug!(error = %e, "cannot refresh the metadata for the share assignment");
        }
    }
    let mut out = BTreeSet::new();
    for (id, partitions) in ids {
        let Some((name, count)) = lookup(id) else {
            tracing::warn!(topic_id = %id, "an assigned topic id is not in the metadata; leaving it out");
            continue;
        };
        out.extend(
            partitions
                .iter()
                .filter(|p| (0..count).contains(*p))
                .map(|p| (name.clone(), *p)),
        );
    }
    out
}
