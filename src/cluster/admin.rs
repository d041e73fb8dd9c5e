//! Admin operations: create and delete topics, list offsets, delete records, describe the
//! cluster and topics.
//!
//! Each call retries by itself (through [`Client::with_retry`]) on errors that a retry can fix:
//! a moved controller or leader, a lost connection, a broker still loading.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, ListOffsetsRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::{millis_i32, Client, ClusterMetadata, TopicMeta, Topics};
use crate::error::codes::NOT_CONTROLLER;
use crate::error::{Error, KafkaCode};
use crate::wire::topic_name;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Number of partitions (`-1`: the broker's default).
    pub partitions: i32,
    /// Replication factor (`-1`: the broker's default).
    pub replication_factor: i16,
    /// Topic configs (`cleanup.policy`, `retention.ms`, ...).
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with `partitions` partitions and `replication_factor` replicas of each.
    pub fn new(name: &str, partitions: i32, replication_factor: i16) -> Self {
        NewTopic {
            name: name.to_owned(),
            partitions,
            replication_factor,
            configs: Vec::new(),
        }
    }

    /// Adds a topic config.
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.configs.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// Which offset [`Client::list_offsets`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (high watermark).
    Latest,
    /// The first offset whose timestamp is at or after this one (milliseconds since the epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

/// One partition's answer to [`Client::list_offsets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// Partition.
    pub partition: i32,
    /// The offset (`-1` if no record has a timestamp at or after the one asked for).
    pub offset: i64,
    /// The record's timestamp, for a timestamp lookup (`-1` otherwise).
    pub timestamp: i64,
    /// The leader epoch of that offset, if the broker sent it.
    pub leader_epoch: Option<i32>,
}

pub(super) fn check(
    code: i16,
    context: impl FnOnce() -> String,
    message: Option<&StrBytes>,
) -> Result<(), Error> {
    KafkaCode::check(code).map_err(|c| Error::kafka(c, context(), message.map(|m| m.to_string())))
}

/// NOT_CONTROLLER for any topic means the whole request went to a broker that is no longer the
/// controller: fail the attempt, so that [`Client::with_retry`] refreshes metadata (which names
/// the new controller) and sends it again.
fn sent_to_old_controller(codes: impl IntoIterator<Item = i16>, what: &str) -> Result<(), Error> {
    if codes.into_iter().any(|c| c == NOT_CONTROLLER) {
        return Err(Error::kafka(KafkaCode(NOT_CONTROLLER), what, None));
    }
    Ok(())
}

impl Client {
    /// Creates topics (on the controller). Fails with the first topic's error, if any; the
    /// error's [`code`](Error::code) tells TOPIC_ALREADY_EXISTS apart.
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<(), Error> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(millis_i32(self.config().request_timeout))
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(topic_name(&t.name))
                            .with_num_partitions(t.partitions)
                            .with_replication_factor(t.replication_factor)
                            .with_configs(
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(StrBytes::from_string(k.clone()))
                                            .with_value(Some(StrBytes::from_string(v.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let response = self
            .with_retry("create topics", &[], || async {
                let response = self.controller().await?.request(&request).await?;
                sent_to_old_controller(
                    response.topics.iter().map(|t| t.error_code),
                    "create topics",
                )?;
                Ok(response)
            })
            .await?;
        for t in &response.topics {
            check(
                t.error_code,
                || format!("create topic {}", t.name.0),
                t.error_message.as_ref(),
            )?;
        }
        tracing::info!(topics = ?topics.iter().map(|t| &t.name).collect::<Vec<_>>(), "topics created");
        Ok(())
    }

    /// Grows each `(topic, partitions)` to that many partitions in total (on the controller),
    /// as Java's `Admin.createPartitions`. Fails with the first topic's error, if any:
    /// INVALID_PARTITIONS for a count that is not an increase.
    pub async fn create_partitions(&self, topics: &[(&str, i32)]) -> Result<(), Error> {
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(millis_i32(self.config().request_timeout))
            .with_topics(
                topics
                    .iter()
                    .map(|(name, count)| {
                        CreatePartitionsTopic::default()
                            .with_name(topic_name(name))
                            .with_count(*count)
                            .with_assignments(None)
                    })
                    .collect(),
            );
        let response = self
            .with_retry("create partitions", &[], || async {
                let response = self.controller().await?.request(&request).await?;
                sent_to_old_controller(
                    response.results.iter().map(|t| t.error_code),
                    "create partitions",
                )?;
                Ok(response)
            })
            .await?;
        for t in &response.results {
            check(
                t.error_code,
                || format!("create partitions of {}", t.name.0),
                t.error_message.as_ref(),
            )?;
        }
        // The next lookups see the new partitions.
        let names: Vec<&str> = topics.iter().map(|(n, _)| *n).collect();
        self.refresh_metadata(Topics::Only(&names)).await?;
        Ok(())
    }

    /// Deletes topics (on the controller). Fails with the first topic's error, if any.
    pub async fn delete_topics(&self, names: &[&str]) -> Result<(), Error> {
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(millis_i32(self.config().request_timeout))
            .with_topic_names(names.iter().map(|n| topic_name(n)).collect())
            .with_topics(
                names
                    .iter()
                    .map(|n| {
                        kafka_protocol::messages::delete_topics_request::DeleteTopicState::default()
                            .with_name(Some(topic_name(n)))
                    })
                    .collect(),
            );
        let response = self
            .with_retry("delete topics", &[], || async {
                let response = self.controller().await?.request(&request).await?;
                sent_to_old_controller(
                    response.responses.iter().map(|t| t.error_code),
                    "delete topics",
                )?;
                Ok(response)
            })
            .await?;
        for t in &response.responses {
            let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            check(
                t.error_code,
                || format!("delete topic {name}"),
                t.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Looks up an offset for each of `partitions` of `topic`, asking each partition's leader.
    pub async fn list_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<Vec<ListedOffset>, Error> {
        self.list_offsets_isolated(topic, partitions, spec, false)
            .await
    }

    /// [`list_offsets`](Client::list_offsets), with `read_committed`: the latest offset is then
    /// the last stable offset (below any open transaction).
    pub async fn list_offsets_isolated(
        &self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
        read_committed: bool,
    ) -> Result<Vec<ListedOffset>, Error> {
        let mut out = Vec::with_capacity(partitions.len());
        let by_leader = self.by_leader(topic, partitions, "list offsets").await?;
        for group in by_leader.values() {
            let first = group[0];
            let listed = self
                .with_retry("list offsets", &[topic], || async {
                    let request = ListOffsetsRequest::default()
                        .with_replica_id(BrokerId(-1))
                        .with_isolation_level(i8::from(read_committed))
                        .with_timeout_ms(millis_i32(self.config().request_timeout))
                        .with_topics(vec![ListOffsetsTopic::default()
                            .with_name(topic_name(topic))
                            .with_partitions(
                                group
                                    .iter()
                                    .map(|&p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(p)
                                            .with_timestamp(spec.wire())
                                    })
                                    .collect(),
                            )]);
                    // The leader may have moved since the grouping: ask the current one.
                    let response = self.leader(topic, first).await?.request(&request).await?;
                    let mut listed = Vec::new();
                    for t in &response.topics {
                        for p in &t.partitions {
                            check(
                                p.error_code,
                                || format!("list offsets {topic}-{}", p.partition_index),
                                None,
                            )?;
                            listed.push(ListedOffset {
                                partition: p.partition_index,
                                offset: p.offset,
                                timestamp: p.timestamp,
                                leader_epoch: (p.leader_epoch >= 0).then_some(p.leader_epoch),
                            });
                        }
                    }
                    Ok(listed)
                })
                .await?;
            out.extend(listed);
        }
        out.sort_by_key(|o| o.partition);
        Ok(out)
    }

    /// `partitions` of `topic` grouped by their leader: one request per leader, all that
    /// leader's partitions in it.
    async fn by_leader(
        &self,
        topic: &str,
        partitions: &[i32],
        what: &str,
    ) -> Result<BTreeMap<i32, Vec<i32>>, Error> {
        let metadata = self.topic_metadata(topic).await?;
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for &p in partitions {
            let leader = metadata
                .partitions
                .iter()
                .find(|m| m.partition == p)
                .map(|m| m.leader)
                .ok_or_else(|| {
                    Error::kafka(
                        KafkaCode(crate::error::codes::UNKNOWN_TOPIC_OR_PARTITION),
                        format!("{what} {topic}-{p}"),
                        None,
                    )
                })?;
            by_leader.entry(leader).or_default().push(p);
        }
        Ok(by_leader)
    }

    /// Deletes the records of `topic` below the given offsets (`(partition, offset)`; offset
    /// -1: the high watermark, everything), asking each partition's leader, as Java's
    /// `Admin.deleteRecords`: the log start offset moves there, and consumers can no longer
    /// read below it. Returns each partition's new low watermark (log start offset), in
    /// partition order. Refused with OFFSET_OUT_OF_RANGE past the high watermark, and
    /// POLICY_VIOLATION on a topic whose `cleanup.policy` lacks `delete`.
    pub async fn delete_records(
        &self,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<Vec<(i32, i64)>, Error> {
        let partitions: Vec<i32> = offsets.iter().map(|(p, _)| *p).collect();
        let by_leader = self.by_leader(topic, &partitions, "delete records").await?;
        let mut out = Vec::with_capacity(offsets.len());
        for group in by_leader.values() {
            let first = group[0];
            let deleted = self
                .with_retry("delete records", &[topic], || async {
                    let request = DeleteRecordsRequest::default()
                        .with_timeout_ms(millis_i32(self.config().request_timeout))
                        .with_topics(vec![DeleteRecordsTopic::default()
                            .with_name(topic_name(topic))
                            .with_partitions(
                                offsets
                                    .iter()
                                    .filter(|(p, _)| group.contains(p))
                                    .map(|&(p, offset)| {
                                        DeleteRecordsPartition::default()
                                            .with_partition_index(p)
                                            .with_offset(offset)
                                    })
                                    .collect(),
                            )]);
                    // The leader may have moved since the grouping: ask the current one.
                    let response = self.leader(topic, first).await?.request(&request).await?;
                    let mut deleted = Vec::new();
                    for t in &response.topics {
                        for p in &t.partitions {
                            check(
                                p.error_code,
                                || format!("delete records {topic}-{}", p.partition_index),
                                None,
                            )?;
                            deleted.push((p.partition_index, p.low_watermark));
                        }
                    }
                    Ok(deleted)
                })
                .await?;
            out.extend(deleted);
        }
        out.sort_unstable();
        Ok(out)
    }

    /// How many partitions `topic` has: from the cached metadata, else refreshed, retrying
    /// what may pass (a topic just created, a leader moving).
    pub async fn partition_count(&self, topic: &str) -> Result<i32, Error> {
        let count = |t: &TopicMeta| {
            (t.error.is_none() && !t.partitions.is_empty()).then_some(t.partitions.len() as i32)
        };
        let what = format!("metadata for topic {topic}");
        self.with_retry(&what, &[topic], || async {
            let metadata = self.metadata();
            let known = metadata.topics.get(topic);
            if let Some(n) = known.and_then(count) {
                return Ok(n);
            }
            let fatal = known
                .and_then(|t| t.error)
                .filter(|c| c.action() == crate::Action::Fatal);
            if let Some(code) = fatal {
                return Err(Error::kafka(code, what.clone(), None));
            }
            self.refresh_metadata(Topics::Only(&[topic])).await?;
            let metadata = self.metadata();
            match metadata.topics.get(topic) {
                Some(t) => count(t).ok_or_else(|| {
                    let code = t
                        .error
                        .unwrap_or(KafkaCode(crate::error::codes::UNKNOWN_TOPIC_OR_PARTITION));
                    Error::kafka(code, what.clone(), None)
                }),
                None => Err(Error::UnknownInMetadata(format!("topic {topic}"))),
            }
        })
        .await
    }

    /// One topic's metadata, fresh from the cluster; UNKNOWN_TOPIC_OR_PARTITION if it does not
    /// exist (retried until `default.api.timeout.ms`, since a new topic takes a moment to appear
    /// everywhere, unless the caller gives up first).
    pub async fn topic_metadata(&self, topic: &str) -> Result<TopicMeta, Error> {
        let cached = self.metadata();
        if let Some(t) = cached.topic(topic) {
            if !self.is_stale(&cached) && t.partitions.iter().all(|p| p.leader >= 0) {
                return Ok(t.clone());
            }
        }
        let names = [topic];
        let m = self.refresh_metadata(Topics::Only(&names)).await?;
        let t = m.topics.get(topic).ok_or_else(|| {
            Error::kafka(
                KafkaCode(crate::error::codes::UNKNOWN_TOPIC_OR_PARTITION),
                format!("metadata for {topic}"),
                None,
            )
        })?;
        if let Some(code) = t.error {
            return Err(Error::kafka(
                code,
                format!("metadata for topic {topic}"),
                None,
            ));
        }
        Ok(t.clone())
    }

    /// The cluster's brokers, controller and id, fresh from the cluster.
    pub async fn describe_cluster(&self) -> Result<std::sync::Arc<ClusterMetadata>, Error> {
        self.with_retry("describe cluster", &[], || {
            self.refresh_metadata(Topics::None)
        })
        .await
    }

    /// These topics' metadata, fresh from the cluster. A topic that does not exist is an error.
    pub async fn describe_topics(&self, names: &[&str]) -> Result<Vec<TopicMeta>, Error> {
        let m = self
            .with_retry("describe topics", &[], || {
                self.refresh_metadata(Topics::Only(names))
            })
            .await?;
        names
            .iter()
            .map(|n| match m.topics.get(*n) {
                Some(TopicMeta {
                    error: Some(code), ..
                }) => Err(Error::kafka(*code, format!("describe topic {n}"), None)),
                Some(t) => Ok(t.clone()),
                None => Err(Error::kafka(
                    KafkaCode(crate::error::codes::UNKNOWN_TOPIC_OR_PARTITION),
                    format!("describe topic {n}"),
                    None,
                )),
            })
            .collect()
    }

    /// Every topic in the cluster, fresh from the cluster.
    pub async fn list_topics(&self) -> Result<Vec<TopicMeta>, Error> {
        let m = self
            .with_retry("list topics", &[], || self.refresh_metadata(Topics::All))
            .await?;
        Ok(m.topics.values().cloned().collect())
    }
}
