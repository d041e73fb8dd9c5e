//! Administration requests of the embedded cluster: CreateTopics, with Apache Kafka's checks
//! (KRaft's `ReplicationControlManager.createTopics`): a name used twice in one request is
//! INVALID_REQUEST, an illegal name INVALID_TOPIC_EXCEPTION, an existing topic
//! TOPIC_ALREADY_EXISTS, a partition count of 0 or below -1 INVALID_PARTITIONS, a replication
//! factor of 0, below -1 or above the broker count INVALID_REPLICATION_FACTOR; -1 takes the
//! default (`num.partitions=1`, `default.replication.factor=1`); `validate_only` creates
//! nothing. A request that would write more than 10,000 metadata records (a topic record, one
//! per partition and one per config, for the topics it creates) fails whole with
//! POLICY_VIOLATION, as the controller's bounded record batch does: so a lying partition
//! count costs nothing. Any broker answers (KRaft brokers forward to the controller). Topic
//! configs are checked as Kafka checks them (INVALID_CONFIG, see `configs`) and kept; the mock
//! has no compaction or retention, but DeleteRecords reads `cleanup.policy`.
//!
//! CreatePartitions, as KRaft's `ReplicationControlManager.createPartitions`: a topic named
//! twice is INVALID_REQUEST, an unknown one UNKNOWN_TOPIC_OR_PARTITION, a count not above the
//! current one INVALID_PARTITIONS, assignments of the wrong length INVALID_REPLICA_ASSIGNMENT;
//! `validate_only` changes nothing; more than 10,000 new partitions in one request fail with
//! POLICY_VIOLATION (the controller's bounded record batch), so a lying count costs nothing.
//! New partitions' leaders follow the creation rule (partition `p` on broker `p % brokers`).
//!
//! DeleteRecords, as Kafka's `ReplicaManager.deleteRecords`: each partition at its leader
//! (NOT_LEADER_OR_FOLLOWER elsewhere), UNKNOWN_TOPIC_OR_PARTITION for one that does not exist,
//! POLICY_VIOLATION for a topic whose `cleanup.policy` lacks `delete`, OFFSET_OUT_OF_RANGE
//! for an offset below 0 (other than -1, the high watermark) or past the high watermark;
//! otherwise the log start offset moves up to the offset and the answer is the new low
//! watermark.

use std::collections::HashSet;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::State;
use crate::error::codes::{
    INVALID_CONFIG, INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR, INVALID_REPLICA_ASSIGNMENT,
    INVALID_REQUEST, INVALID_TOPIC_EXCEPTION, NOT_LEADER_OR_FOLLOWER, POLICY_VIOLATION,
    TOPIC_ALREADY_EXISTS, UNKNOWN_TOPIC_OR_PARTITION,
};

/// Kafka's `QuorumController.MAX_RECORDS_PER_USER_OP`.
const MAX_RECORDS_PER_REQUEST: i64 = 10_000;

/// Kafka's `Topic.validate`: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub(super) fn name_error(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return Some("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > 249 {
        return Some(format!(
            "Topic name is illegal, it can't be longer than 249 characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Some(format!(
            "Topic name {name} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    None
}

pub(super) fn create_topics(
    state: &mut State,
    request: &CreateTopicsRequest,
    error: Option<i16>,
) -> CreateTopicsResponse {
    let brokers = state.brokers.len() as i32;
    let mut seen = HashSet::new();
    let duplicated: HashSet<&str> = request
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.0.as_str()))
        .map(|t| t.name.0.as_str())
        .collect();
    let mut results = Vec::with_capacity(request.topics.len());
    let mut records: i64 = 0;
    let mut checked = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.as_str();
        let partitions = if topic.assignments.is_empty() {
            topic.num_partitions
        } else {
            topic.assignments.len() as i32
        };
        let replication = topic.replication_factor;
        let refused: Option<(i16, String)> = if let Some(code) = error {
            Some((code, "injected".into()))
        } else if duplicated.contains(name) {
            Some((INVALID_REQUEST, "Duplicate topic name.".into()))
        } else if let Some(message) = name_error(name) {
            Some((INVALID_TOPIC_EXCEPTION, message))
        } else if state.topics.contains_key(name) {
            Some((
                TOPIC_ALREADY_EXISTS,
                format!("Topic '{name}' already exists."),
            ))
        } else if let Err(message) = super::configs::check_new_topic(
            topic
                .configs
                .iter()
                .map(|c| (c.name.as_str(), c.value.as_deref())),
        ) {
            Some((INVALID_CONFIG, message))
        } else if partitions == 0 || partitions < -1 {
            Some((
                INVALID_PARTITIONS,
                "Number of partitions was set to an invalid non-positive value.".into(),
            ))
        } else if replication == 0 || replication < -1 {
            Some((
                INVALID_REPLICATION_FACTOR,
                "Replication factor must be larger than 0, or -1 to use the default value.".into(),
            ))
        } else if i32::from(replication) > brokers {
            Some((
                INVALID_REPLICATION_FACTOR,
                format!(
                    "Unable to replicate the partition {replication} time(s): The target replication factor of {replication} cannot be reached because only {brokers} broker(s) are registered."
                ),
            ))
        } else {
            None
        };
        if refused.is_none() {
            let partitions = if partitions == -1 {
                1
            } else {
                i64::from(partitions)
            };
            records += 1 + partitions + topic.configs.len() as i64;
        }
        checked.push((topic, partitions, replication, refused));
    }
    let too_large = records > MAX_RECORDS_PER_REQUEST;
    for (topic, partitions, replication, refused) in checked {
        let name = topic.name.0.as_str();
        let refused = match refused {
            None if too_large => Some((
                POLICY_VIOLATION,
                "Unable to perform excessively large batch operation.".to_owned(),
            )),
            other => other,
        };
        let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
        match refused {
            Some((code, message)) => {
                result.error_code = code;
                result.error_message = Some(StrBytes::from_string(message));
                result.num_partitions = -1;
                result.replication_factor = -1;
            }
            None => {
                let partitions = if partitions == -1 { 1 } else { partitions };
                result.num_partitions = partitions;
                result.replication_factor = if replication == -1 { 1 } else { replication };
                if !request.validate_only {
                    state.create_topic(name, partitions);
                    result.topic_id = uuid::Uuid::from_u128(state.topic_ids[name]);
                    let configs = super::configs::check_new_topic(
                        topic
                            .configs
                            .iter()
                            .map(|c| (c.name.as_str(), c.value.as_deref())),
                    )
                    .unwrap_or_default();
                    state.topic_configs.insert(name.to_owned(), configs);
                }
            }
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub(super) fn delete_records(
    state: &mut State,
    broker: i32,
    request: &DeleteRecordsRequest,
    error: Option<i16>,
) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            // Kafka's LogConfig.delete: the policy lists `delete` (the default).
            let deletable = super::configs::topic_value(state, name, "cleanup.policy")
                .is_none_or(|p| p.split(',').any(|p| p.trim() == "delete"));
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    let log = state
                        .topics
                        .get_mut(name)
                        .and_then(|logs| logs.get_mut(p.partition_index.max(0) as usize))
                        .filter(|_| p.partition_index >= 0);
                    let code = match (error, log) {
                        (Some(code), _) => code,
                        (None, None) => UNKNOWN_TOPIC_OR_PARTITION,
                        (None, Some(log)) if log.leader != broker => NOT_LEADER_OR_FOLLOWER,
                        (None, Some(_)) if !deletable => POLICY_VIOLATION,
                        (None, Some(log)) => match log.delete_records(p.offset) {
                            Ok(low) => return answer.with_low_watermark(low),
                            Err(code) => code,
                        },
                    };
                    answer.with_error_code(code)
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

pub(super) fn create_partitions(
    state: &mut State,
    request: &CreatePartitionsRequest,
    error: Option<i16>,
) -> CreatePartitionsResponse {
    let mut seen = HashSet::new();
    let duplicated: HashSet<&str> = request
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.0.as_str()))
        .map(|t| t.name.0.as_str())
        .collect();
    let mut added: i64 = 0;
    let mut checked = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.as_str();
        let current = state.topics.get(name).map(|logs| logs.len() as i32);
        let wanted = topic.count;
        let refused: Option<(i16, String)> = match (error, current) {
            (Some(code), _) => Some((code, "injected".into())),
            _ if duplicated.contains(name) => {
                Some((INVALID_REQUEST, "Duplicate topic in request.".into()))
            }
            (None, None) => Some((
                UNKNOWN_TOPIC_OR_PARTITION,
                "This server does not host this topic-partition.".into(),
            )),
            (None, Some(n)) if wanted == n => Some((
                INVALID_PARTITIONS,
                format!("Topic already has {n} partition(s)."),
            )),
            (None, Some(n)) if wanted < n => Some((
                INVALID_PARTITIONS,
                format!(
                    "The topic {name} currently has {n} partition(s); {wanted} would not be an \
                     increase."
                ),
            )),
            (None, Some(n)) => match &topic.assignments {
                Some(a) if a.len() as i64 != i64::from(wanted - n) => Some((
                    INVALID_REPLICA_ASSIGNMENT,
                    format!(
                        "Attempted to add {} additional partition(s), but only {} assignment(s) \
                         were specified.",
                        wanted - n,
                        a.len()
                    ),
                )),
                _ => {
                    added += i64::from(wanted - n);
                    None
                }
            },
        };
        checked.push((topic, refused));
    }
    let too_large = added > MAX_RECORDS_PER_REQUEST;
    let results = checked
        .into_iter()
        .map(|(topic, refused)| {
            let refused = match refused {
                None if too_large => Some((
                    POLICY_VIOLATION,
                    "Unable to perform excessively large batch operation.".to_owned(),
                )),
                other => other,
            };
            let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
            match refused {
                Some((code, message)) => result
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message))),
                None => {
                    if !request.validate_only {
                        state.grow_topic(topic.name.0.as_str(), topic.count);
                    }
                    result
                }
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
