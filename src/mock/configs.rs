//! Topic configs in the embedded cluster: DescribeConfigs and IncrementalAlterConfigs, and the
//! configs given at CreateTopics, as Apache Kafka 4.x keeps them.
//!
//! Every topic has Kafka 4.x's topic configs (`LogConfig`), each at its default (source
//! DEFAULT_CONFIG) unless set for the topic (DYNAMIC_TOPIC_CONFIG); `max.message.bytes`
//! follows the cluster's [`set_max_message_bytes`](super::MockCluster::set_max_message_bytes)
//! (STATIC_BROKER_CONFIG when changed). What Kafka decides and this follows
//! (`ConfigAdminManager`, `ControllerConfigurationValidator`, `ConfigDef`):
//! - an unknown topic is UNKNOWN_TOPIC_OR_PARTITION; an unknown config name, a value that does
//!   not parse as the config's type or is out of its range, or APPEND/SUBTRACT on a config that
//!   is not a list, is INVALID_CONFIG naming it; a config named twice in one resource is
//!   INVALID_REQUEST; `validate_only` changes nothing;
//! - DELETE of a config not set does nothing; SUBTRACT of a value not in the list does nothing;
//! - DescribeConfigs with `configuration_keys` answers only those (names it does not know are
//!   left out); a broker resource answers a few broker configs (this cluster's);
//!   other resource types are INVALID_REQUEST.
//!
//! Configs change nothing else here (no retention or compaction runs) except `cleanup.policy`,
//! which DeleteRecords reads.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::State;
use crate::error::codes::{INVALID_CONFIG, INVALID_REQUEST, UNKNOWN_TOPIC_OR_PARTITION};
/// ConfigResource.Type: TOPIC and BROKER.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// DescribeConfigsResponse config sources.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

/// A config's type (DescribeConfigs v3+ `config_type`), with what Kafka's `ConfigDef` checks.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Boolean,
    /// One of these values.
    Choice(&'static [&'static str]),
    /// At least this.
    Int(i64),
    Long(i64),
    /// Between these.
    Double(f64, f64),
    /// Items from this set (any, if empty).
    List(&'static [&'static str]),
}

impl Kind {
    fn wire(self) -> i8 {
        match self {
            Kind::Boolean => 1,
            Kind::Choice(_) => 2,
            Kind::Int(_) => 3,
            Kind::Long(_) => 5,
            Kind::Double(..) => 6,
            Kind::List(_) => 7,
        }
    }

    /// Kafka's `ConfigDef.parseType` and validators: why `value` is not acceptable, if not.
    fn check(self, value: &str) -> Result<(), String> {
        let v = value.trim();
        match self {
            Kind::Boolean if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false") => {
                Ok(())
            }
            Kind::Boolean => Err("Expected value to be either true or false".into()),
            Kind::Choice(allowed) if allowed.contains(&v) => Ok(()),
            Kind::Choice(allowed) => Err(format!("String must be one of: {}", allowed.join(", "))),
            Kind::Int(min) => match v.parse::<i32>() {
                Ok(n) if i64::from(n) >= min => Ok(()),
                Ok(_) => Err(format!("Value must be at least {min}")),
                Err(_) => Err("Not a number of type INT".into()),
            },
            Kind::Long(min) => match v.parse::<i64>() {
                Ok(n) if n >= min => Ok(()),
                Ok(_) => Err(format!("Value must be at least {min}")),
                Err(_) => Err("Not a number of type LONG".into()),
            },
            Kind::Double(lo, hi) => match v.parse::<f64>() {
                Ok(d) if d < lo => Err(format!("Value must be at least {lo}")),
                Ok(d) if d > hi => Err(format!("Value must be no more than {hi}")),
                Ok(_) => Ok(()),
                Err(_) => Err("Not a number of type DOUBLE".into()),
            },
            Kind::List(allowed) => {
                let items: Vec<&str> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|i| !i.is_empty())
                    .collect();
                match items
                    .iter()
                    .find(|i| !allowed.is_empty() && !allowed.contains(i))
                {
                    Some(bad) => Err(format!(
                        "Invalid value {bad} for configuration: String must be one of: {}",
                        allowed.join(", ")
                    )),
                    None => Ok(()),
                }
            }
        }
    }
}

const MAX: &str = "9223372036854775807";

/// Kafka 4.x's topic configs and their defaults (`LogConfig`, `TopicConfig`).
const TOPIC_CONFIGS: &[(&str, Kind, &str)] = &[
    (
        "cleanup.policy",
        Kind::List(&["compact", "delete"]),
        "delete",
    ),
    ("compression.gzip.level", Kind::Int(-1), "-1"),
    ("compression.lz4.level", Kind::Int(1), "9"),
    (
        "compression.type",
        Kind::Choice(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        "producer",
    ),
    ("compression.zstd.level", Kind::Int(-131_072), "3"),
    ("delete.retention.ms", Kind::Long(0), "86400000"),
    ("file.delete.delay.ms", Kind::Long(0), "60000"),
    ("flush.messages", Kind::Long(1), MAX),
    ("flush.ms", Kind::Long(0), MAX),
    (
        "follower.replication.throttled.replicas",
        Kind::List(&[]),
        "",
    ),
    ("index.interval.bytes", Kind::Int(0), "4096"),
    ("leader.replication.throttled.replicas", Kind::List(&[]), ""),
    ("local.retention.bytes", Kind::Long(-2), "-2"),
    ("local.retention.ms", Kind::Long(-2), "-2"),
    ("max.compaction.lag.ms", Kind::Long(1), MAX),
    ("max.message.bytes", Kind::Int(0), "1048588"),
    ("message.timestamp.after.max.ms", Kind::Long(0), "3600000"),
    ("message.timestamp.before.max.ms", Kind::Long(0), MAX),
    (
        "message.timestamp.type",
        Kind::Choice(&["CreateTime", "LogAppendTime"]),
        "CreateTime",
    ),
    ("min.cleanable.dirty.ratio", Kind::Double(0.0, 1.0), "0.5"),
    ("min.compaction.lag.ms", Kind::Long(0), "0"),
    ("min.insync.replicas", Kind::Int(1), "1"),
    ("preallocate", Kind::Boolean, "false"),
    ("remote.log.copy.disable", Kind::Boolean, "false"),
    ("remote.log.delete.on.disable", Kind::Boolean, "false"),
    ("remote.storage.enable", Kind::Boolean, "false"),
    ("retention.bytes", Kind::Long(i64::MIN), "-1"),
    ("retention.ms", Kind::Long(-1), "604800000"),
    ("segment.bytes", Kind::Int(14), "1073741824"),
    ("segment.index.bytes", Kind::Int(4), "10485760"),
    ("segment.jitter.ms", Kind::Long(0), "0"),
    ("segment.ms", Kind::Long(1), "604800000"),
    ("unclean.leader.election.enable", Kind::Boolean, "false"),
];

fn topic_config(name: &str) -> Option<(Kind, &'static str)> {
    TOPIC_CONFIGS
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|(_, kind, default)| (*kind, *default))
}

/// Checks the configs given at CreateTopics: INVALID_CONFIG with Kafka's message for the first
/// bad one.
pub(super) fn check_new_topic<'a>(
    configs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (name, value) in configs {
        let (kind, _) =
            topic_config(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
        let Some(value) = value else {
            return Err(format!(
                "Null value not supported for topic configs: {name}"
            ));
        };
        kind.check(value)
            .map_err(|why| format!("Invalid value {value} for configuration {name}: {why}"))?;
        out.insert(name.to_owned(), value.trim().to_owned());
    }
    Ok(out)
}

/// A topic's config value: set, else the cluster's, else Kafka's default.
pub(super) fn topic_value(state: &State, topic: &str, name: &str) -> Option<String> {
    if let Some(v) = state.topic_configs.get(topic).and_then(|c| c.get(name)) {
        return Some(v.clone());
    }
    if name == "max.message.bytes" {
        return Some(state.max_message_bytes.to_string());
    }
    topic_config(name).map(|(_, d)| d.to_owned())
}

pub(super) fn describe(
    state: &State,
    broker: i32,
    request: &DescribeConfigsRequest,
    error: Option<i16>,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let wanted = |name: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            let name = resource.resource_name.as_str();
            let fail = |code: i16, message: String| {
                result
                    .clone()
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message)))
            };
            if let Some(code) = error {
                return fail(code, "injected".into());
            }
            let entries: Vec<(String, String, i8, i8, bool)> = match resource.resource_type {
                TOPIC => {
                    if !state.topics.contains_key(name) {
                        return fail(
                            UNKNOWN_TOPIC_OR_PARTITION,
                            format!("Topic {name} does not exist."),
                        );
                    }
                    let set = state.topic_configs.get(name);
                    TOPIC_CONFIGS
                        .iter()
                        .filter(|(n, ..)| wanted(n))
                        .map(|(n, kind, default)| {
                            let value = topic_value(state, name, n).unwrap_or_default();
                            let source = if set.is_some_and(|s| s.contains_key(*n)) {
                                DYNAMIC_TOPIC_CONFIG
                            } else if value != *default {
                                STATIC_BROKER_CONFIG
                            } else {
                                DEFAULT_CONFIG
                            };
                            (n.to_string(), value, source, kind.wire(), false)
                        })
                        .collect()
                }
                BROKER => {
                    if name.parse::<i32>().ok() != Some(broker) && !name.is_empty() {
                        return fail(
                            INVALID_REQUEST,
                            format!("Unexpected broker id, expected {broker} or empty string, but received {name}"),
                        );
                    }
                    broker_configs(state)
                        .into_iter()
                        .filter(|(n, ..)| wanted(n))
                        .map(|(n, v, kind)| (n.to_owned(), v, DEFAULT_CONFIG, kind.wire(), true))
                        .collect()
                }
                other => {
                    return fail(
                        INVALID_REQUEST,
                        format!("Unsupported resource type {other} in the embedded cluster"),
                    )
                }
            };
            let configs = entries
                .into_iter()
                .map(|(n, v, source, kind, read_only)| {
                    DescribeConfigsResourceResult::default()
                        .with_name(StrBytes::from_string(n))
                        .with_value(Some(StrBytes::from_string(v)))
                        .with_read_only(read_only)
                        .with_config_source(source)
                        .with_is_sensitive(false)
                        .with_config_type(kind)
                })
                .collect();
            result.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// The broker configs a broker resource answers: this cluster's few.
fn broker_configs(state: &State) -> Vec<(&'static str, String, Kind)> {
    vec![
        (
            "auto.create.topics.enable",
            state.auto_create.is_some().to_string(),
            Kind::Boolean,
        ),
        ("default.replication.factor", "1".into(), Kind::Int(1)),
        (
            "log.cleanup.policy",
            "delete".into(),
            Kind::List(&["compact", "delete"]),
        ),
        (
            "message.max.bytes",
            state.max_message_bytes.to_string(),
            Kind::Int(0),
        ),
        (
            "num.partitions",
            state.auto_create.unwrap_or(1).to_string(),
            Kind::Int(1),
        ),
    ]
}

pub(super) fn incremental_alter(
    state: &mut State,
    request: &IncrementalAlterConfigsRequest,
    error: Option<i16>,
) -> IncrementalAlterConfigsResponse {
    let responses = request
        .resources
        .iter()
        .map(|resource| {
            let answer = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let outcome = match error {
                Some(code) => Err((code, "injected".to_owned())),
                None => alter_one(state, resource, request.validate_only),
            };
            match outcome {
                Ok(()) => answer,
                Err((code, message)) => answer
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

fn alter_one(
    state: &mut State,
    resource: &incremental_alter_configs_request::AlterConfigsResource,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let name = resource.resource_name.as_str();
    match resource.resource_type {
        TOPIC => {}
        BROKER => {
            return Err((
                INVALID_REQUEST,
                "the embedded cluster has no dynamic broker configs".into(),
            ))
        }
        other => {
            return Err((
                INVALID_REQUEST,
                format!("Unsupported resource type {other} in the embedded cluster"),
            ))
        }
    }
    if !state.topics.contains_key(name) {
        return Err((
            UNKNOWN_TOPIC_OR_PARTITION,
            format!("Topic {name} does not exist."),
        ));
    }
    let mut seen = HashSet::new();
    if let Some(dup) = resource
        .configs
        .iter()
        .find(|c| !seen.insert(c.name.as_str()))
    {
        return Err((
            INVALID_REQUEST,
            format!("Error due to duplicate config keys: {}", dup.name.as_str()),
        ));
    }
    let mut next = state.topic_configs.get(name).cloned().unwrap_or_default();
    for op in &resource.configs {
        let key = op.name.as_str();
        let (kind, _) = topic_config(key)
            .ok_or_else(|| (INVALID_CONFIG, format!("Unknown topic config name: {key}")))?;
        let value = op.value.as_ref().map(|v| v.as_str());
        let invalid = |why: String| (INVALID_CONFIG, why);
        match op.config_operation {
            // SET
            0 => {
                let v = value
                    .ok_or_else(|| invalid(format!("Null value not supported for : {key}")))?;
                kind.check(v).map_err(|why| {
                    invalid(format!("Invalid value {v} for configuration {key}: {why}"))
                })?;
                next.insert(key.to_owned(), v.trim().to_owned());
            }
            // DELETE
            1 => {
                next.remove(key);
            }
            // APPEND, SUBTRACT
            2 | 3 => {
                let verb = if op.config_operation == 2 {
                    "append"
                } else {
                    "subtract"
                };
                if !matches!(kind, Kind::List(_)) {
                    return Err(invalid(format!(
                        "Config value {verb} is not allowed for config key: {key}"
                    )));
                }
                let v = value.unwrap_or_default();
                kind.check(v).map_err(|why| {
                    invalid(format!("Invalid value {v} for configuration {key}: {why}"))
                })?;
                let current = next
                    .get(key)
                    .cloned()
                    .or_else(|| topic_value(state, name, key))
                    .unwrap_or_default();
                let mut items: Vec<String> = current
                    .split(',')
                    .map(str::trim)
                    .filter(|i| !i.is_empty())
                    .map(str::to_owned)
                    .collect();
                for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    if op.config_operation == 2 {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_owned());
                        }
                    } else {
                        items.retain(|i| i != item);
                    }
                }
                next.insert(key.to_owned(), items.join(","));
            }
            other => {
                return Err((
                    INVALID_REQUEST,
                    format!("Unknown config operation {other} for {key}"),
                ))
            }
        }
    }
    if !validate_only {
        state.topic_configs.insert(name.to_owned(), next);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_as_kafka_types_them() {
        assert!(Kind::Long(-1).check("604800000").is_ok());
        assert!(Kind::Long(-1).check("-2").is_err());
        assert!(Kind::Long(-1).check("1h").is_err());
        assert!(Kind::Int(0).check("4294967296").is_err());
        assert!(Kind::Boolean.check("TRUE").is_ok());
        assert!(Kind::Boolean.check("yes").is_err());
        assert!(Kind::Double(0.0, 1.0).check("1.5").is_err());
        let policy = topic_config("cleanup.policy").unwrap().0;
        assert!(policy.check("compact, delete").is_ok());
        assert!(policy.check("compact,shred").is_err());
        assert!(check_new_topic([("retention.ms", Some("x"))]).is_err());
        assert!(check_new_topic([("no.such", Some("1"))]).is_err());
        assert_eq!(
            check_new_topic([("cleanup.policy", Some("compact"))]).unwrap()["cleanup.policy"],
            "compact"
        );
    }
}
