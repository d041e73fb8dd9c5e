//! The metadata cache: brokers, topics, partitions, leaders and leader epochs.

use std::collections::BTreeMap;
use std::time::Instant;

use kafka_protocol::messages::MetadataResponse;

use crate::error::KafkaCode;

/// One broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMeta {
    /// Node id.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if the broker has one.
    pub rack: Option<String>,
}

impl BrokerMeta {
    /// `host:port`.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A partition's leader as a broker named it in a Produce or Fetch answer (KIP-951), with
/// NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH: the client can go to it without asking for
/// metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderHint {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The new leader's node id.
    pub leader: i32,
    /// Its leader epoch.
    pub leader_epoch: i32,
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMeta {
    /// Partition index.
    pub partition: i32,
    /// Leader's node id (`-1` while there is none).
    pub leader: i32,
    /// Leader epoch (`-1` if the broker does not send it).
    pub leader_epoch: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
    /// Offline replica node ids.
    pub offline: Vec<i32>,
    /// The partition's error, if the broker reported one (e.g. LEADER_NOT_AVAILABLE).
    pub error: Option<KafkaCode>,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    /// Name.
    pub name: String,
    /// Topic id (KIP-516), zero if the broker does not send one.
    pub id: u128,
    /// Whether it is an internal topic (`__consumer_offsets`).
    pub internal: bool,
    /// Partitions, sorted by index.
    pub partitions: Vec<PartitionMeta>,
    /// The topic's error, if the broker reported one (e.g. UNKNOWN_TOPIC_OR_PARTITION).
    pub error: Option<KafkaCode>,
}

/// What the client knows about the cluster, as of one or more Metadata responses.
#[derive(Debug, Clone)]
pub struct ClusterMetadata {
    /// Cluster id, if the broker sends one.
    pub cluster_id: Option<String>,
    /// The controller's node id, if known.
    pub controller: Option<i32>,
    /// Brokers by node id.
    pub brokers: BTreeMap<i32, BrokerMeta>,
    /// Topics by name. Only topics asked about are here (all of them after a full refresh).
    pub topics: BTreeMap<String, TopicMeta>,
    /// When this picture was taken.
    pub fetched_at: Instant,
}

impl Default for ClusterMetadata {
    fn default() -> Self {
        ClusterMetadata {
            cluster_id: None,
            controller: None,
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
            fetched_at: Instant::now(),
        }
    }
}

impl ClusterMetadata {
    /// The picture a Metadata response gives.
    pub fn from_response(response: &MetadataResponse) -> Self {
        let brokers = response
            .brokers
            .iter()
            .map(|b| {
                let meta = BrokerMeta {
                    id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                };
                (meta.id, meta)
            })
            .collect();
        let topics = response
            .topics
            .iter()
            .filter_map(|t| {
                let name = t.name.as_ref()?.0.to_string();
                let mut partitions: Vec<PartitionMeta> = t
                    .partitions
                    .iter()
                    .map(|p| PartitionMeta {
                        partition: p.partition_index,
                        leader: p.leader_id.0,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                        isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                        offline: p.offline_replicas.iter().map(|b| b.0).collect(),
                        error: KafkaCode::check(p.error_code).err(),
                    })
                    .collect();
                partitions.sort_by_key(|p| p.partition);
                let meta = TopicMeta {
                    name: name.clone(),
                    id: t.topic_id.as_u128(),
                    internal: t.is_internal,
                    partitions,
                    error: KafkaCode::check(t.error_code).err(),
                };
                Some((name, meta))
            })
            .collect();
        ClusterMetadata {
            cluster_id: response.cluster_id.as_ref().map(|c| c.to_string()),
            controller: (response.controller_id.0 >= 0).then_some(response.controller_id.0),
            brokers,
            topics,
            fetched_at: Instant::now(),
        }
    }

    /// Folds a newer response in. Brokers and controller come from the newer one. When the
    /// newer one covered every topic (`full`), topics it does not list are gone; otherwise the
    /// topics it lists replace the old entries and the rest are kept.
    ///
    /// A partition whose leader epoch in the newer response is older than the one known is
    /// kept as it was (KIP-320): a broker that has not caught up with an election must not
    /// take the client back to the old leader.
    pub fn merge(&self, newer: ClusterMetadata, full: bool) -> ClusterMetadata {
        let mut merged = newer;
        for (name, topic) in merged.topics.iter_mut() {
            let Some(old) = self.topics.get(name) else {
                continue;
            };
            for p in topic.partitions.iter_mut() {
                let known = old.partitions.iter().find(|o| o.partition == p.partition);
                if let Some(known) = known {
                    if p.leader_epoch >= 0 && known.leader_epoch > p.leader_epoch {
                        tracing::debug!(topic = %name, partition = p.partition, known = known.leader_epoch, got = p.leader_epoch, "stale partition metadata ignored");
                        *p = known.clone();
                    }
                }
            }
        }
        if !full {
            for (name, topic) in &self.topics {
                merged
                    .topics
                    .entry(name.clone())
                    .or_insert_with(|| topic.clone());
            }
        }
        merged
    }

    /// The picture with `hints` applied (KIP-951), as the Java client's
    /// `Metadata.updatePartitionLeadership` applies them: a hint moves a partition's leader only
    /// when its epoch is newer than the one known and its leader is a known broker or one of
    /// `endpoints` (which join the brokers). Returns the new picture and the partitions that
    /// moved, or `None` if no hint applied.
    pub fn with_leader_hints(
        &self,
        hints: &[LeaderHint],
        endpoints: &[BrokerMeta],
    ) -> Option<(ClusterMetadata, Vec<(String, i32)>)> {
        let mut next = self.clone();
        let mut moved = Vec::new();
        for hint in hints {
            let known_broker = next.brokers.contains_key(&hint.leader)
                || endpoints.iter().any(|b| b.id == hint.leader);
            if hint.leader < 0 || hint.leader_epoch < 0 || !known_broker {
                continue;
            }
            let Some(p) = next.topics.get_mut(&hint.topic).and_then(|t| {
                t.partitions
                    .iter_mut()
                    .find(|p| p.partition == hint.partition)
            }) else {
                continue;
            };
            if hint.leader_epoch <= p.leader_epoch {
                continue;
            }
            p.leader = hint.leader;
            p.leader_epoch = hint.leader_epoch;
            p.error = None;
            if let Some(b) = endpoints.iter().find(|b| b.id == hint.leader) {
                next.brokers.insert(b.id, b.clone());
            }
            moved.push((hint.topic.clone(), hint.partition));
        }
        (!moved.is_empty()).then_some((next, moved))
    }

    /// A topic, if known and without a topic-level error.
    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name).filter(|t| t.error.is_none())
    }

    /// A partition's leader epoch, if known (-1 if the broker does not send it).
    pub fn leader_epoch(&self, topic: &str, partition: i32) -> Option<i32> {
        self.topic(topic)?
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .map(|p| p.leader_epoch)
    }

    /// The leader of a partition, if known and up.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<&BrokerMeta> {
        let p = self
            .topic(topic)?
            .partitions
            .iter()
            .find(|p| p.partition == partition)?;
        self.brokers.get(&p.leader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn response(topics: &[(&str, i32)], leader: i32) -> MetadataResponse {
        MetadataResponse::default()
            .with_controller_id(BrokerId(1))
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("h"))
                .with_port(9092)])
            .with_topics(
                topics
                    .iter()
                    .map(|(name, n)| {
                        MetadataResponseTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
                            .with_partitions(
                                (0..*n)
                                    .rev()
                                    .map(|i| {
                                        MetadataResponsePartition::default()
                                            .with_partition_index(i)
                                            .with_leader_id(BrokerId(leader))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
    }

    #[test]
    fn leaders_and_merge() {
        let m = ClusterMetadata::from_response(&response(&[("a", 2), ("b", 1)], 1));
        assert_eq!(m.controller, Some(1));
        assert_eq!(m.leader("a", 1).unwrap().address(), "h:9092");
        assert_eq!(m.topic("a").unwrap().partitions[0].partition, 0);
        assert!(m.leader("a", 5).is_none());
        // A partial refresh of "a" keeps "b"; a full one drops it.
        let partial = ClusterMetadata::from_response(&response(&[("a", 3)], 1));
        let merged = m.merge(partial.clone(), false);
        assert_eq!(merged.topic("a").unwrap().partitions.len(), 3);
        assert!(merged.topic("b").is_some());
        assert!(m.merge(partial, true).topic("b").is_none());
        // No leader broker known.
        let orphan = ClusterMetadata::from_response(&response(&[("c", 1)], 7));
        assert!(orphan.leader("c", 0).is_none());
    }

    /// KIP-320: an answer with an older leader epoch than the one known does not win.
    #[test]
    fn stale_leader_epochs_are_ignored() {
        let with_epoch = |leader: i32, epoch: i32| {
            let mut r = response(&[("a", 1)], leader);
            r.topics[0].partitions[0].leader_epoch = epoch;
            r.brokers.push(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(2))
                    .with_host(StrBytes::from_static_str("h2"))
                    .with_port(9092),
            );
            ClusterMetadata::from_response(&r)
        };
        let known = with_epoch(2, 5);
        let stale = known.merge(with_epoch(1, 4), false);
        assert_eq!(
            stale.leader("a", 0).unwrap().id,
            2,
            "the newer election stands"
        );
        assert_eq!(stale.leader_epoch("a", 0), Some(5));
        let fresh = known.merge(with_epoch(1, 6), false);
        assert_eq!(fresh.leader("a", 0).unwrap().id, 1);
        assert_eq!(fresh.leader_epoch("a", 0), Some(6));
    }

    /// KIP-951, as Java's `Metadata.updatePartitionLeadership`: a hint moves a partition only
    /// with a newer leader epoch and a leader the client can reach (a known broker, or one whose
    /// endpoint came with the hint, which then joins the brokers).
    #[test]
    fn leader_hints_move_partitions_only_forward_and_to_known_brokers() {
        let mut r = response(&[("a", 2)], 1);
        r.topics[0]
            .partitions
            .iter_mut()
            .for_each(|p| p.leader_epoch = 3);
        let m = ClusterMetadata::from_response(&r);
        let hint = |partition, leader, leader_epoch| LeaderHint {
            topic: "a".into(),
            partition,
            leader,
            leader_epoch,
        };
        let far = BrokerMeta {
            id: 9,
            host: "far".into(),
            port: 9093,
            rack: None,
        };
        // Same or older epoch, unknown broker, unknown partition or topic: nothing moves.
        for h in [hint(0, 1, 3), hint(0, 1, 2), hint(0, 9, 4), hint(7, 1, 4)] {
            assert!(
                m.with_leader_hints(std::slice::from_ref(&h), &[]).is_none(),
                "{h:?}"
            );
        }
        let (moved, which) = m
            .with_leader_hints(&[hint(0, 9, 4), hint(1, 1, 3)], std::slice::from_ref(&far))
            .expect("the first hint applies");
        assert_eq!(which, vec![("a".to_string(), 0)]);
        assert_eq!(moved.leader("a", 0), Some(&far));
        assert_eq!(moved.leader_epoch("a", 0), Some(4));
        assert_eq!(moved.leader_epoch("a", 1), Some(3));
        // A Metadata answer from a broker that has not heard of the election does not undo it.
        let merged = moved.merge(ClusterMetadata::from_response(&r), false);
        assert_eq!(merged.leader_epoch("a", 0), Some(4));
    }
}
