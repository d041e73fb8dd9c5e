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
//! configs are accepted and not kept: the mock has no compaction or retention.

use std::collections::HashSet;

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::State;
use crate::error::codes::{
    INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR, INVALID_REQUEST, INVALID_TOPIC_EXCEPTION,
    POLICY_VIOLATION, TOPIC_ALREADY_EXISTS,
};

/// Kafka's `QuorumController.MAX_RECORDS_PER_USER_OP`.
const MAX_RECORDS_PER_REQUEST: i64 = 10_000;

/// Kafka's `Topic.validate`: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn name_error(name: &str) -> Option<String> {
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
                }
            }
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}
