//! The classic group protocol's requests, as the group task sends them: JoinGroup (with this
//! member's subscription), the leader's assignment, SyncGroup and LeaveGroup.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::mpsc;

use super::assignor::{by_name, Assignor, TopicPartition};
use super::driver::{GroupEvent, GroupSettings};
use super::membership::JoinResult;
use super::protocol;
use crate::cluster::{millis_i32, Client, Topics};
use crate::error::{Error, KafkaCode};
use crate::net::Connection;
use crate::wire::ApiKey;

/// Who joins: the member id, and the partitions it owns from which generation.
pub(super) struct Joining<'a> {
    pub(super) member_id: &'a str,
    pub(super) owned: &'a [TopicPartition],
    pub(super) generation: i32,
}

pub(super) async fn join(
    conn: &Connection,
    settings: &GroupSettings,
    assignors: &[Box<dyn Assignor>],
    topics: &[String],
    joining: Joining<'_>,
) -> Result<(JoinResult, String, Vec<GroupEvent>), Error> {
    let Joining {
        member_id,
        owned,
        generation,
    } = joining;
    let metadata =
        protocol::encode_subscription(topics, owned, generation, settings.client_rack.as_deref());
    let request = JoinGroupRequest::default()
        .with_group_id(settings.group())
        .with_session_timeout_ms(millis_i32(settings.session_timeout))
        .with_rebalance_timeout_ms(millis_i32(settings.rebalance_timeout))
        .with_member_id(StrBytes::from_string(member_id.to_owned()))
        .with_group_instance_id(settings.instance())
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(
            assignors
                .iter()
                .map(|a| {
                    JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from_static_str(a.name()))
                        .with_metadata(metadata.clone())
                })
                .collect(),
        );
    // The coordinator holds JoinGroup until every member has rejoined (up to the rebalance
    // timeout).
    let version = conn.version(ApiKey::JoinGroup)?;
    let timeout = settings.rebalance_timeout + Duration::from_secs(5);
    let response = conn.request_within(&request, version, timeout).await?;
    let mut members = Vec::with_capacity(response.members.len());
    let mut unreadable = Vec::new();
    if response.error_code == 0 {
        for m in &response.members {
            let group_instance_id = m.group_instance_id.as_ref().map(|s| s.to_string());
            match protocol::decode_subscription(
                &m.member_id,
                group_instance_id.clone(),
                m.metadata.clone(),
            ) {
                Ok(subscription) => members.push(subscription),
                Err(reason) => {
                    // One member's bytes must not stop the group: it subscribes to nothing,
                    // so it is assigned nothing, and the others are assigned as usual.
                    tracing::warn!(
                        group = %settings.group_id,
                        member = %m.member_id,
                        %reason,
                        "cannot read a member's subscription; assigning it nothing"
                    );
                    members.push(super::assignor::Subscription {
                        member_id: m.member_id.to_string(),
                        group_instance_id,
                        topics: Vec::new(),
                        owned: Vec::new(),
                        generation: -1,
                    });
                    unreadable.push(GroupEvent::Unreadable {
                        member_id: m.member_id.to_string(),
                        reason,
                    });
                }
            }
        }
    }
    Ok((
        JoinResult {
            error: response.error_code,
            member_id: response.member_id.to_string(),
            generation: response.generation_id,
            leader: response.leader.to_string(),
            members,
            skip_assignment: response.skip_assignment,
        },
        response
            .protocol_name
            .map(|p| p.to_string())
            .unwrap_or_default(),
        unreadable,
    ))
}

/// The leader's job: every member's partitions, by the chosen assignor.
pub(super) async fn assign(
    client: &Client,
    chosen: &str,
    members: &[super::assignor::Subscription],
) -> Result<BTreeMap<String, Vec<TopicPartition>>, Error> {
    let assignor = by_name(chosen).ok_or_else(|| {
        Error::kafka(
            KafkaCode(crate::error::codes::UNKNOWN_SERVER_ERROR),
            format!("the group chose assignor `{chosen}`, which spate does not have"),
            None,
        )
    })?;
    let mut topics: Vec<String> = members.iter().flat_map(|m| m.topics.clone()).collect();
    topics.sort();
    topics.dedup();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let metadata = client.refresh_metadata(Topics::Only(&names)).await?;
    let partitions: BTreeMap<String, i32> = topics
        .iter()
        .filter_map(|t| {
            let meta = metadata.topics.get(t)?;
            (meta.error.is_none()).then(|| (t.clone(), meta.partitions.len() as i32))
        })
        .collect();
    Ok(assignor.assign(&partitions, members))
}

pub(super) async fn sync(
    conn: &Connection,
    events: &mpsc::Sender<GroupEvent>,
    settings: &GroupSettings,
    chosen: &str,
    member_id: &str,
    generation: i32,
    assignments: BTreeMap<String, Vec<TopicPartition>>,
) -> Result<(i16, Vec<TopicPartition>), Error> {
    let request = SyncGroupRequest::default()
        .with_group_id(settings.group())
        .with_generation_id(generation)
        .with_member_id(StrBytes::from_string(member_id.to_owned()))
        .with_group_instance_id(settings.instance())
        .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
        .with_protocol_name(Some(StrBytes::from_string(chosen.to_owned())))
        .with_assignments(
            assignments
                .into_iter()
                .map(|(member, tps)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(StrBytes::from_string(member))
                        .with_assignment(protocol::encode_assignment(&tps))
                })
                .collect(),
        );
    let version = conn.version(ApiKey::SyncGroup)?;
    let timeout = settings.rebalance_timeout + Duration::from_secs(5);
    let response = conn.request_within(&request, version, timeout).await?;
    if response.error_code != 0 {
        return Ok((response.error_code, Vec::new()));
    }
    let assignment = match protocol::decode_assignment(response.assignment) {
        Ok(assignment) => assignment,
        Err(reason) => {
            // The leader (another member) wrote bad bytes: nothing is assigned to this member
            // until the next rebalance, and it goes on heartbeating.
            tracing::warn!(group = %settings.group_id, %reason, "cannot read this member's assignment; taking nothing");
            let _ = events
                .send(GroupEvent::UnreadableAssignment { reason })
                .await;
            Vec::new()
        }
    };
    Ok((0, assignment))
}

pub(super) async fn send_leave(
    conn: &Connection,
    settings: &GroupSettings,
    member_id: &str,
) -> Result<(), Error> {
    let version = conn.version(ApiKey::LeaveGroup)?;
    let mut request = LeaveGroupRequest::default().with_group_id(settings.group());
    if version >= 3 {
        request.members = vec![MemberIdentity::default()
            .with_member_id(StrBytes::from_string(member_id.to_owned()))
            .with_group_instance_id(settings.instance())];
    } else {
        request.member_id = StrBytes::from_string(member_id.to_owned());
    }
    let response = conn.request_at(&request, version).await?;
    KafkaCode::check(response.error_code)
        .map_err(|code| Error::kafka(code, format!("leave group {}", settings.group_id), None))
}
