//! Group administration in the embedded cluster, as Apache Kafka's group coordinator answers
//! it (`GroupMetadataManager`: `listGroups`, `describeGroups`, `deleteGroups`):
//!
//! - **ListGroups**: the coordinator (one broker here) lists every group it knows: classic
//!   groups (type `classic`, their protocol type and state, `Empty` once every member left),
//!   KIP-848 groups (type `consumer`, protocol type `consumer`, state `Empty`, `Assigning`,
//!   `Reconciling` or `Stable`), and groups that only have committed offsets (a consumer
//!   without group management, an admin client: an empty classic group with protocol type
//!   ""), filtered by state (v4+) and type (v5+), case-insensitively as Kafka does. The other
//!   brokers list nothing.
//! - **DescribeGroups**: a classic group's state, protocol type and members (member id,
//!   instance id, client id, host); once stable also the protocol and each member's
//!   metadata and assignment. A group the coordinator does not know, or one that is not
//!   classic, is `Dead` with no error. The host is `/127.0.0.1`: the cluster listens on
//!   loopback only.
//! - **DeleteGroups**: an empty group (or one with only offsets) is deleted with its
//!   committed offsets; a group with members is NON_EMPTY_GROUP, an unknown one
//!   GROUP_ID_NOT_FOUND.
//!
//! - **OffsetDelete** (`OffsetMetadataManager.deleteOffsets`, `ClassicGroup
//!   .validateOffsetDelete`): an unknown group is GROUP_ID_NOT_FOUND; a classic group with
//!   members whose protocol type is not `consumer` is NON_EMPTY_GROUP; otherwise each asked
//!   partition of a topic the group subscribes to is GROUP_SUBSCRIBED_TO_TOPIC and the others'
//!   offsets are deleted (no error when there was none). The subscribed topics are those of
//!   the members' metadata for the chosen protocol; metadata that does not read counts as
//!   subscribed to everything, as Kafka's `isSubscribedToTopic` falls back to.
//!
//! Every group request at a broker that is not the coordinator is NOT_COORDINATOR.

use std::collections::BTreeSet;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::State;
use crate::error::codes::{
    GROUP_ID_NOT_FOUND, GROUP_SUBSCRIBED_TO_TOPIC, NON_EMPTY_GROUP, NOT_COORDINATOR,
};

/// A group as ListGroups shows it: id, protocol type, state, type.
struct Listed {
    id: String,
    protocol_type: String,
    state: &'static str,
    kind: &'static str,
}

fn listed(state: &State) -> Vec<Listed> {
    let mut out: Vec<Listed> = state
        .groups
        .iter()
        .map(|(id, g)| Listed {
            id: id.clone(),
            protocol_type: g.protocol_type().to_owned(),
            state: g.state_name(),
            kind: "classic",
        })
        .collect();
    for (id, g) in &state.consumer_groups {
        let info = g.info();
        let state = if g.is_empty() {
            "Empty"
        } else if info.group_epoch > info.assignment_epoch {
            "Assigning"
        } else if info.members.values().any(|m| !m.reconciled) {
            "Reconciling"
        } else {
            "Stable"
        };
        out.push(Listed {
            id: id.clone(),
            protocol_type: "consumer".into(),
            state,
            kind: "consumer",
        });
    }
    let known: BTreeSet<String> = out.iter().map(|l| l.id.clone()).collect();
    let offsets_only: BTreeSet<&String> = state
        .offsets
        .keys()
        .map(|(group, _, _)| group)
        .filter(|g| !known.contains(*g))
        .collect();
    for id in offsets_only {
        out.push(Listed {
            id: id.clone(),
            protocol_type: String::new(),
            state: "Empty",
            kind: "classic",
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

pub(super) fn list_groups(
    state: &State,
    broker: i32,
    request: &ListGroupsRequest,
    version: i16,
    error: Option<i16>,
) -> ListGroupsResponse {
    if let Some(code) = error {
        return ListGroupsResponse::default().with_error_code(code);
    }
    if state.coordinator != broker {
        return ListGroupsResponse::default();
    }
    let wanted = |filter: &[StrBytes], value: &str| {
        filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(value))
    };
    let groups = listed(state)
        .into_iter()
        .filter(|l| version < 4 || wanted(&request.states_filter, l.state))
        .filter(|l| version < 5 || wanted(&request.types_filter, l.kind))
        .map(|l| {
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(l.id)))
                .with_protocol_type(StrBytes::from_string(l.protocol_type))
                .with_group_state(StrBytes::from_static_str(l.state))
                .with_group_type(StrBytes::from_static_str(l.kind))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub(super) fn describe_groups(
    state: &State,
    broker: i32,
    request: &DescribeGroupsRequest,
    error: Option<i16>,
) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .iter()
        .map(|id| {
            let described = DescribedGroup::default().with_group_id(id.clone());
            if let Some(code) = error {
                return described.with_error_code(code);
            }
            if state.coordinator != broker {
                return described.with_error_code(NOT_COORDINATOR);
            }
            let name = id.0.as_str();
            let offsets_only = state.offsets.keys().any(|(g, _, _)| g == name);
            let Some(group) = state.groups.get(name) else {
                let dead = if offsets_only && !state.consumer_groups.contains_key(name) {
                    "Empty"
                } else {
                    "Dead"
                };
                return described.with_group_state(StrBytes::from_static_str(dead));
            };
            let (protocol, members) = group.describe();
            let members = members
                .into_iter()
                .map(|(member, instance, client, metadata, assignment)| {
                    DescribedGroupMember::default()
                        .with_member_id(StrBytes::from_string(member))
                        .with_group_instance_id(instance.map(StrBytes::from_string))
                        .with_client_id(StrBytes::from_string(client))
                        .with_client_host(StrBytes::from_static_str("/127.0.0.1"))
                        .with_member_metadata(metadata)
                        .with_member_assignment(assignment)
                })
                .collect();
            described
                .with_group_state(StrBytes::from_static_str(group.state_name()))
                .with_protocol_type(StrBytes::from_string(group.protocol_type().to_owned()))
                .with_protocol_data(StrBytes::from_string(protocol.unwrap_or_default()))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub(super) fn delete_groups(
    state: &mut State,
    broker: i32,
    request: &DeleteGroupsRequest,
    error: Option<i16>,
) -> DeleteGroupsResponse {
    let results = request
        .groups_names
        .iter()
        .map(|id| {
            let result = DeletableGroupResult::default().with_group_id(id.clone());
            let name = id.0.as_str();
            let code = match error {
                Some(code) => code,
                None if state.coordinator != broker => NOT_COORDINATOR,
                None => {
                    let classic = state.groups.get(name).map(|g| g.is_empty());
                    let modern = state.consumer_groups.get(name).map(|g| g.is_empty());
                    let has_offsets = state.offsets.keys().any(|(g, _, _)| g == name);
                    match (classic, modern) {
                        (Some(false), _) | (_, Some(false)) => NON_EMPTY_GROUP,
                        (None, None) if !has_offsets => GROUP_ID_NOT_FOUND,
                        _ => {
                            state.groups.remove(name);
                            state.consumer_groups.remove(name);
                            state.offsets.retain(|(g, _, _), _| g != name);
                            state.offset_epochs.retain(|(g, _, _), _| g != name);
                            0
                        }
                    }
                }
            };
            result.with_error_code(code)
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}

/// Which topics a group's offsets may not be deleted for: `None` for all of them.
enum Subscribed {
    Topics(BTreeSet<String>),
    Everything,
}

impl Subscribed {
    fn contains(&self, topic: &str) -> bool {
        match self {
            Subscribed::Topics(t) => t.contains(topic),
            Subscribed::Everything => true,
        }
    }
}

/// The topics of consumer-protocol subscriptions (Kafka's `computeSubscribedTopics`).
fn subscription_topics(metadata: &[bytes::Bytes]) -> Subscribed {
    use kafka_protocol::protocol::Decodable;
    let mut topics = BTreeSet::new();
    for meta in metadata {
        let Some(&[v0, v1]) = meta.get(..2) else {
            return Subscribed::Everything;
        };
        let version = i16::from_be_bytes([v0, v1]).clamp(0, 3);
        let mut body = meta.slice(2..);
        if crate::wire::schema::consumer_subscription()
            .check(version, &body)
            .is_err()
        {
            return Subscribed::Everything;
        }
        match ConsumerProtocolSubscription::decode(&mut body, version) {
            Ok(s) => topics.extend(s.topics.iter().map(|t| t.to_string())),
            Err(_) => return Subscribed::Everything,
        }
    }
    Subscribed::Topics(topics)
}

pub(super) fn offset_delete(
    state: &mut State,
    broker: i32,
    request: &OffsetDeleteRequest,
    error: Option<i16>,
) -> OffsetDeleteResponse {
    use kafka_protocol::messages::offset_delete_response::{
        OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
    };
    let group = request.group_id.0.as_str();
    let fail = |code| OffsetDeleteResponse::default().with_error_code(code);
    if let Some(code) = error {
        return fail(code);
    }
    if state.coordinator != broker {
        return fail(NOT_COORDINATOR);
    }
    let has_offsets = state.offsets.keys().any(|(g, _, _)| g == group);
    let subscribed = match (state.groups.get(group), state.consumer_groups.get(group)) {
        (Some(g), _) if !g.is_empty() => {
            if g.protocol_type() != "consumer" {
                return fail(NON_EMPTY_GROUP);
            }
            g.chosen_metadata()
                .map_or(Subscribed::Everything, |m| subscription_topics(&m))
        }
        (_, Some(g)) => Subscribed::Topics(g.subscribed_topics()),
        (Some(_), None) => Subscribed::Topics(BTreeSet::new()),
        (None, None) if has_offsets => Subscribed::Topics(BTreeSet::new()),
        (None, None) => return fail(GROUP_ID_NOT_FOUND),
    };
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let refused = subscribed.contains(name);
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index);
                    if refused {
                        return answer.with_error_code(GROUP_SUBSCRIBED_TO_TOPIC);
                    }
                    let key = (group.to_owned(), name.to_owned(), p.partition_index);
                    state.offsets.remove(&key);
                    state.offset_epochs.remove(&key);
                    answer
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
