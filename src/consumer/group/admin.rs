//! Consumer group administration, as Java's `Admin` and `kafka-consumer-groups.sh` do it:
//! list, describe and delete groups, read and reset a group's committed offsets, and its lag.
//!
//! - [`list_groups`] asks every broker (each lists the groups it coordinates).
//! - [`describe_group`] asks the group's coordinator (DescribeGroups); members' assignments
//!   are decoded from the consumer protocol when the group is stable.
//! - [`alter_offsets`] commits as an administrator (generation -1, no member), which Kafka
//!   accepts only while the group has no members (UNKNOWN_MEMBER_ID otherwise): stop the
//!   group's consumers first, as `kafka-consumer-groups.sh --reset-offsets` requires.
//! - [`delete_offsets`] removes committed offsets (OffsetDelete, KIP-496): refused
//!   (GROUP_SUBSCRIBED_TO_TOPIC) for a topic the group's members consume.
//! - [`describe_lag`] joins the committed offsets, the log end offsets (high watermarks) and
//!   the members' assignments: per partition, what `kafka-consumer-groups.sh --describe`
//!   prints.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetDeleteRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::assignor::TopicPartition;
use super::driver::Identity;
use super::offsets;
use super::protocol::decode_assignment;
use crate::cluster::{Client, CoordinatorType, OffsetSpec, Topics};
use crate::error::{Error, KafkaCode};

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// `consumer` for consumer groups, "" for groups with only committed offsets.
    pub protocol_type: String,
    /// Its state (`Stable`, `Empty`, …), where the broker says (ListGroups v4+).
    pub state: Option<String>,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// `Stable`, `Empty`, `PreparingRebalance`, `CompletingRebalance`, or `Dead` for a group
    /// the coordinator does not know.
    pub state: String,
    /// The protocol type (`consumer`).
    pub protocol_type: String,
    /// The assignor the group chose (stable groups only).
    pub protocol: String,
    /// The members.
    pub members: Vec<MemberDescription>,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Its member id.
    pub member_id: String,
    /// Its `group.instance.id`, for a static member.
    pub instance_id: Option<String>,
    /// Its `client.id`.
    pub client_id: String,
    /// Where it connects from, as the broker saw it.
    pub host: String,
    /// Its partitions (known once the group is stable).
    pub assignment: Vec<TopicPartition>,
}

/// One partition of a group's progress, as `kafka-consumer-groups.sh --describe` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The committed offset, if any.
    pub committed: Option<i64>,
    /// The log end offset (high watermark).
    pub log_end: i64,
    /// `log_end - committed`, if there is a commit.
    pub lag: Option<i64>,
    /// The member that owns it now, if any.
    pub member: Option<MemberDescription>,
}

fn group_error(code: i16, what: String) -> Result<(), Error> {
    KafkaCode::check(code).map_err(|code| Error::kafka(code, what, None))
}

/// Every group the cluster knows, in group id order.
pub async fn list_groups(client: &Client) -> Result<Vec<GroupListing>, Error> {
    let metadata = client.refresh_metadata(Topics::None).await?;
    let mut groups = BTreeMap::new();
    for broker in metadata.brokers.keys() {
        let listed = client
            .with_retry("list groups", &[], || async {
                let conn = client.broker(*broker).await?;
                let response = conn.request(&ListGroupsRequest::default()).await?;
                group_error(
                    response.error_code,
                    format!("list groups at broker {broker}"),
                )?;
                Ok(response.groups)
            })
            .await?;
        for g in listed {
            let state = Some(g.group_state.to_string()).filter(|s| !s.is_empty());
            groups.insert(
                g.group_id.0.to_string(),
                GroupListing {
                    group_id: g.group_id.0.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    state,
                },
            );
        }
    }
    Ok(groups.into_values().collect())
}

/// `group` as its coordinator describes it.
pub async fn describe_group(client: &Client, group: &str) -> Result<GroupDescription, Error> {
    let described = client
        .with_retry(&format!("describe group {group}"), &[], || async {
            let conn = client.coordinator(CoordinatorType::Group, group).await?;
            let request = DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(StrBytes::from_string(group.to_owned()))]);
            let response = conn.request(&request).await?;
            let described = response.groups.into_iter().next().ok_or_else(|| {
                Error::UnknownInMetadata(format!("describe group {group}: no answer for it"))
            })?;
            group_error(described.error_code, format!("describe group {group}"))?;
            Ok(described)
        })
        .await?;
    let consumer = described.protocol_type.as_str() == "consumer";
    let members = described
        .members
        .into_iter()
        .map(|m| {
            // A consumer group's assignment is the consumer protocol's; an empty one (not
            // yet stable) or another protocol's says nothing here.
            // A consumer group's assignment is the consumer protocol's; an empty one (not
            // yet stable) or another protocol's says nothing here. One a member wrote badly
            // is shown as nothing, with a warning: the rest of the group is still described.
            let assignment = if consumer && !m.member_assignment.is_empty() {
                decode_assignment(m.member_assignment).unwrap_or_else(|reason| {
                    tracing::warn!(group, member = %m.member_id.as_str(), %reason, "an unreadable assignment");
                    Vec::new()
                })
            } else {
                Vec::new()
            };
            MemberDescription {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.map(|i| i.to_string()),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assignment,
            }
        })
        .collect();
    Ok(GroupDescription {
        group_id: group.to_owned(),
        state: described.group_state.to_string(),
        protocol_type: described.protocol_type.to_string(),
        protocol: described.protocol_data.to_string(),
        members,
    })
}

/// Deletes `groups` (each with its committed offsets); each group's own outcome, in order.
/// A group with members is refused (NON_EMPTY_GROUP), an unknown one GROUP_ID_NOT_FOUND.
pub async fn delete_groups(client: &Client, groups: &[&str]) -> Vec<(String, Result<(), Error>)> {
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let result = client
            .with_retry(&format!("delete group {group}"), &[], || async {
                let conn = client.coordinator(CoordinatorType::Group, group).await?;
                let request = DeleteGroupsRequest::default()
                    .with_groups_names(vec![GroupId(StrBytes::from_string((*group).to_owned()))]);
                let response = conn.request(&request).await?;
                let code = response.results.first().map_or(0, |r| r.error_code);
                group_error(code, format!("delete group {group}"))
            })
            .await;
        out.push(((*group).to_owned(), result));
    }
    out
}

/// Every offset `group` has committed, by partition.
pub async fn committed_offsets(
    client: &Client,
    group: &str,
) -> Result<BTreeMap<TopicPartition, i64>, Error> {
    Ok(offsets::fetch_all(client, group)
        .await?
        .into_iter()
        .filter_map(|(tp, committed)| Some((tp, committed?.0)))
        .collect())
}

/// Commits `offsets` for `group` as an administrator (see the module docs: the group must
/// have no members).
pub async fn alter_offsets(
    client: &Client,
    group: &str,
    offsets: &[(TopicPartition, i64)],
) -> Result<(), Error> {
    let admin = Identity {
        member_id: String::new(),
        generation: -1,
        modern: false,
    };
    let committed: Vec<offsets::Committed> =
        offsets.iter().map(|(tp, o)| (tp.clone(), *o, -1)).collect();
    offsets::commit(client, group, None, &admin, &committed).await
}

/// Deletes `group`'s committed offsets for `partitions`, as Java's
/// `Admin.deleteConsumerGroupOffsets`: each partition's own outcome, in order
/// (GROUP_SUBSCRIBED_TO_TOPIC for a topic the group consumes; no error where there was no
/// offset). The group's own failure (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP) is the `Err`.
pub async fn delete_offsets(
    client: &Client,
    group: &str,
    partitions: &[TopicPartition],
) -> Result<Vec<(TopicPartition, Result<(), Error>)>, Error> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let request = OffsetDeleteRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_topics(
            by_topic
                .iter()
                .map(|(t, ps)| {
                    OffsetDeleteRequestTopic::default()
                        .with_name(crate::wire::topic_name(t))
                        .with_partitions(
                            ps.iter()
                                .map(|p| {
                                    OffsetDeleteRequestPartition::default().with_partition_index(*p)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let what = format!("delete offsets of group {group}");
    let response = client
        .with_retry(&what, &[], || async {
            let conn = client.coordinator(CoordinatorType::Group, group).await?;
            let response = conn.request(&request).await?;
            group_error(response.error_code, what.clone())?;
            Ok(response)
        })
        .await?;
    let mut answers = BTreeMap::new();
    for t in &response.topics {
        for p in &t.partitions {
            answers.insert((t.name.0.to_string(), p.partition_index), p.error_code);
        }
    }
    Ok(partitions
        .iter()
        .map(|tp| {
            let outcome = match answers.get(tp) {
                Some(code) => group_error(*code, format!("{what}: {}-{}", tp.0, tp.1)),
                None => Err(Error::UnknownInMetadata(format!(
                    "{what}: no answer for {}-{}",
                    tp.0, tp.1
                ))),
            };
            (tp.clone(), outcome)
        })
        .collect())
}

/// Per partition the group has committed or is assigned: committed offset, log end offset,
/// lag and owner; in topic and partition order.
pub async fn describe_lag(client: &Client, group: &str) -> Result<Vec<PartitionLag>, Error> {
    let description = describe_group(client, group).await?;
    let committed = committed_offsets(client, group).await?;
    let mut owner: BTreeMap<TopicPartition, &MemberDescription> = BTreeMap::new();
    for m in &description.members {
        for tp in &m.assignment {
            owner.insert(tp.clone(), m);
        }
    }
    let partitions: BTreeSet<TopicPartition> =
        committed.keys().chain(owner.keys()).cloned().collect();
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in &partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let mut ends = BTreeMap::new();
    for (topic, ps) in by_topic {
        for listed in client.list_offsets(topic, &ps, OffsetSpec::Latest).await? {
            ends.insert((topic.to_owned(), listed.partition), listed.offset);
        }
    }
    Ok(partitions
        .into_iter()
        .map(|tp| {
            let committed = committed.get(&tp).copied();
            let log_end = ends.get(&tp).copied().unwrap_or(-1);
            PartitionLag {
                lag: committed.map(|c| (log_end - c).max(0)),
                member: owner.get(&tp).map(|m| (*m).clone()),
                topic: tp.0,
                partition: tp.1,
                committed,
                log_end,
            }
        })
        .collect())
}
