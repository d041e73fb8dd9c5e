//! The share consumer's requests: ShareFetch and ShareAcknowledge bodies, acknowledgement
//! ranges, topic ids.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::share_acknowledge_request::{
    AcknowledgePartition, AcknowledgeTopic, AcknowledgementBatch as AckBatch,
};
use kafka_protocol::messages::share_fetch_request::{
    AcknowledgementBatch, FetchPartition, FetchTopic, ForgottenTopic,
};
use kafka_protocol::messages::{GroupId, ShareFetchRequest};
use kafka_protocol::protocol::StrBytes;

use super::member::Tp;
use super::{AcknowledgeType, ShareConfig};
use crate::cluster::Client;
use crate::error::Error;
use crate::wire::ApiKey;

pub(super) fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

pub(super) fn records_error(tp: &Tp, e: crate::record::RecordError) -> Error {
    Error::Records {
        topic: tp.0.clone(),
        partition: tp.1,
        source: e,
    }
}

/// Topic ids both ways, from the metadata.
pub(super) struct TopicIds {
    pub(super) names: HashMap<uuid::Uuid, String>,
    pub(super) ids: HashMap<String, uuid::Uuid>,
}

pub(super) fn topic_ids(client: &Client) -> TopicIds {
    let mut names = HashMap::new();
    let mut ids = HashMap::new();
    for t in client.metadata().topics.values() {
        let id = uuid::Uuid::from_u128(t.id);
        names.insert(id, t.name.clone());
        ids.insert(t.name.clone(), id);
    }
    TopicIds { names, ids }
}

/// Acknowledgements as ranges of consecutive offsets, one type per offset.
pub(super) fn ranges(acks: &BTreeMap<i64, AcknowledgeType>) -> Vec<(i64, i64, Vec<i8>)> {
    let mut out: Vec<(i64, i64, Vec<i8>)> = Vec::new();
    for (offset, kind) in acks {
        match out.last_mut() {
            Some((_, last, types)) if *last + 1 == *offset => {
                *last = *offset;
                types.push(*kind as i8);
            }
            _ => out.push((*offset, *offset, vec![*kind as i8])),
        }
    }
    // One type for a whole range says the same in fewer bytes.
    for (_, _, types) in &mut out {
        if types.iter().all(|t| *t == types[0]) {
            types.truncate(1);
        }
    }
    out
}

pub(super) fn ack_topics(
    acks: &BTreeMap<Tp, BTreeMap<i64, AcknowledgeType>>,
    ids: &TopicIds,
) -> Vec<AcknowledgeTopic> {
    let mut by_topic: BTreeMap<uuid::Uuid, Vec<AcknowledgePartition>> = BTreeMap::new();
    for ((topic, p), offsets) in acks {
        let Some(id) = ids.ids.get(topic) else {
            continue;
        };
        let batches = ranges(offsets)
            .into_iter()
            .map(|(first, last, types)| {
                AckBatch::default()
                    .with_first_offset(first)
                    .with_last_offset(last)
                    .with_acknowledge_types(types)
            })
            .collect();
        by_topic.entry(*id).or_default().push(
            AcknowledgePartition::default()
                .with_partition_index(*p)
                .with_acknowledgement_batches(batches),
        );
    }
    by_topic
        .into_iter()
        .map(|(id, partitions)| {
            AcknowledgeTopic::default()
                .with_topic_id(id)
                .with_partitions(partitions)
        })
        .collect()
}

/// One ShareFetch: to whom, in which session epoch, for what.
pub(super) struct Ask<'a> {
    pub(super) broker: i32,
    pub(super) epoch: i32,
    pub(super) tps: &'a [Tp],
    pub(super) forgotten: &'a [Tp],
    pub(super) acks: &'a BTreeMap<Tp, BTreeMap<i64, AcknowledgeType>>,
}

pub(super) async fn share_fetch(
    client: &Client,
    config: &ShareConfig,
    member: &str,
    ask: Ask<'_>,
    ids: &TopicIds,
) -> Result<kafka_protocol::messages::ShareFetchResponse, Error> {
    let Ask {
        broker,
        epoch,
        tps,
        forgotten,
        acks,
    } = ask;
    let mut topics: BTreeMap<uuid::Uuid, Vec<FetchPartition>> = BTreeMap::new();
    for tp in tps {
        let Some(id) = ids.ids.get(&tp.0) else {
            continue;
        };
        let batches = acks
            .get(tp)
            .map(|a| {
                ranges(a)
                    .into_iter()
                    .map(|(first, last, types)| {
                        AcknowledgementBatch::default()
                            .with_first_offset(first)
                            .with_last_offset(last)
                            .with_acknowledge_types(types)
                    })
                    .collect()
            })
            .unwrap_or_default();
        topics.entry(*id).or_default().push(
            FetchPartition::default()
                .with_partition_index(tp.1)
                .with_acknowledgement_batches(batches),
        );
    }
    let mut forget: BTreeMap<uuid::Uuid, Vec<i32>> = BTreeMap::new();
    for (t, p) in forgotten {
        if let Some(id) = ids.ids.get(t) {
            forget.entry(*id).or_default().push(*p);
        }
    }
    let request = ShareFetchRequest::default()
        .with_group_id(Some(GroupId(StrBytes::from_string(
            config.group_id.clone(),
        ))))
        .with_member_id(Some(StrBytes::from_string(member.to_owned())))
        .with_share_session_epoch(epoch)
        .with_max_wait_ms(crate::cluster::millis_i32(config.fetch_max_wait))
        .with_min_bytes(1)
        .with_max_bytes(config.fetch_max_bytes)
        .with_max_records(config.max_poll_records)
        .with_batch_size(config.max_poll_records)
        .with_topics(
            topics
                .into_iter()
                .map(|(id, partitions)| {
                    FetchTopic::default()
                        .with_topic_id(id)
                        .with_partitions(partitions)
                })
                .collect(),
        )
        .with_forgotten_topics_data(
            forget
                .into_iter()
                .map(|(id, partitions)| {
                    ForgottenTopic::default()
                        .with_topic_id(id)
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let conn = client.broker(broker).await?;
    let version = conn.version(ApiKey::ShareFetch)?;
    let wait = config.fetch_max_wait + client.config().request_timeout;
    conn.request_within(&request, version, wait).await
}
