//! Committed offsets: OffsetCommit and OffsetFetch at the group coordinator.

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic,
};
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetFetchRequest};
use kafka_protocol::protocol::StrBytes;

use super::assignor::TopicPartition;
use super::driver::Identity;
use crate::cluster::{Client, CoordinatorType};
use crate::error::{Error, KafkaCode};
use crate::wire::{by_topic, topic_name, ApiKey};

/// An offset to commit or that was committed: the next offset to read, and the leader epoch
/// of the record before it (KIP-320; -1 if unknown), which lets the next owner detect that
/// the log was truncated below it.
pub(crate) type Committed = (TopicPartition, i64, i32);

/// Commits `offsets` for `group` as `identity`.
pub(crate) async fn commit(
    client: &Client,
    group: &str,
    instance: Option<&str>,
    identity: &Identity,
    offsets: &[Committed],
) -> Result<(), Error> {
    if offsets.is_empty() {
        return Ok(());
    }
    let topics: Vec<OffsetCommitRequestTopic> =
        by_topic(offsets.iter().map(|((topic, partition), offset, epoch)| {
            let p = OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(*epoch);
            (topic.as_str(), p)
        }))
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetCommitRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(partitions)
        })
        .collect();
    client
        .with_retry(&format!("commit offsets of group {group}"), &[], || async {
            let conn = client.coordinator(CoordinatorType::Group, group).await?;
            // v9 is v8 for KIP-848 members, which Kafka requires to use it.
            let version =
                conn.version(ApiKey::OffsetCommit)?
                    .min(if identity.modern { 9 } else { 8 });
            let request = OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
                .with_generation_id_or_member_epoch(identity.generation)
                .with_member_id(StrBytes::from_string(identity.member_id.clone()))
                .with_group_instance_id(if version >= 7 {
                    instance.map(|i| StrBytes::from_string(i.to_owned()))
                } else {
                    None
                })
                .with_retention_time_ms(-1)
                .with_topics(topics.clone());
            let response = conn.request_at(&request, version).await?;
            for t in &response.topics {
                for p in &t.partitions {
                    KafkaCode::check(p.error_code).map_err(|code| {
                        Error::kafka(
                            code,
                            format!(
                                "commit the offset of {}-{} for group {group}",
                                t.name.0.as_str(),
                                p.partition_index
                            ),
                            None,
                        )
                    })?;
                }
            }
            Ok(())
        })
        .await
}

/// The committed offset of each partition, with its leader epoch (`None` if the group has
/// none). `require_stable` (read_committed consumers) makes the coordinator wait for pending
/// transactional commits.
pub(crate) async fn fetch(
    client: &Client,
    group: &str,
    partitions: &[TopicPartition],
    require_stable: bool,
) -> Result<Vec<(TopicPartition, Option<(i64, i32)>)>, Error> {
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let topics: Vec<OffsetFetchRequestTopic> =
        by_topic(partitions.iter().map(|(t, p)| (t.as_str(), *p)))
            .into_iter()
            .map(|(topic, indexes)| {
                OffsetFetchRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partition_indexes(indexes)
            })
            .collect();
    fetch_topics(client, group, Some(topics), require_stable).await
}

/// Every offset `group` has committed (OffsetFetch without topics), as [`fetch`] gives them.
/// At v8+ (the batched form, as Java's admin client asks) where the coordinator speaks it: a
/// broker may answer v7's "every topic" with a null list, which v7 does not allow.
pub(crate) async fn fetch_all(
    client: &Client,
    group: &str,
) -> Result<Vec<(TopicPartition, Option<(i64, i32)>)>, Error> {
    let conn = client.coordinator(CoordinatorType::Group, group).await?;
    if conn.version(ApiKey::OffsetFetch)? < 8 {
        return fetch_topics(client, group, None, false).await;
    }
    let what = format!("fetch committed offsets of group {group}");
    client
        .with_retry(&what, &[], || async {
            let conn = client.coordinator(CoordinatorType::Group, group).await?;
            let request =
                OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
                    .with_topics(None)]);
            let response = conn.request_at(&request, 8).await?;
            let mut out = Vec::new();
            for g in &response.groups {
                KafkaCode::check(g.error_code)
                    .map_err(|code| Error::kafka(code, what.clone(), None))?;
                for t in &g.topics {
                    for p in &t.partitions {
                        out.push(committed_entry(
                            group,
                            t.name.0.as_str(),
                            p.partition_index,
                            p.error_code,
                            (p.committed_offset, p.committed_leader_epoch),
                        )?);
                    }
                }
            }
            Ok(out)
        })
        .await
}

async fn fetch_topics(
    client: &Client,
    group: &str,
    topics: Option<Vec<OffsetFetchRequestTopic>>,
    require_stable: bool,
) -> Result<Vec<(TopicPartition, Option<(i64, i32)>)>, Error> {
    client
        .with_retry(
            &format!("fetch committed offsets of group {group}"),
            &[],
            || async {
                let conn = client.coordinator(CoordinatorType::Group, group).await?;
                // v8+ batches groups; v7 asks for one group with topic names.
                let version = conn.version(ApiKey::OffsetFetch)?.min(7);
                let request = OffsetFetchRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
                    .with_topics(topics.clone())
                    .with_require_stable(require_stable && version >= 7);
                let response = conn.request_at(&request, version).await?;
                KafkaCode::check(response.error_code).map_err(|code| {
                    Error::kafka(
                        code,
                        format!("fetch committed offsets of group {group}"),
                        None,
                    )
                })?;
                let mut out = Vec::new();
                for t in &response.topics {
                    for p in &t.partitions {
                        out.push(committed_entry(
                            group,
                            t.name.0.as_str(),
                            p.partition_index,
                            p.error_code,
                            (p.committed_offset, p.committed_leader_epoch),
                        )?);
                    }
                }
                Ok(out)
            },
        )
        .await
}

/// One partition of an OffsetFetch answer: its committed offset and leader epoch (`None`:
/// nothing committed), or its error.
fn committed_entry(
    group: &str,
    topic: &str,
    partition: i32,
    code: i16,
    (offset, epoch): (i64, i32),
) -> Result<(TopicPartition, Option<(i64, i32)>), Error> {
    KafkaCode::check(code).map_err(|code| {
        Error::kafka(
            code,
            format!("committed offset of {topic}-{partition} for group {group}"),
            None,
        )
    })?;
    Ok((
        (topic.to_owned(), partition),
        (offset >= 0).then_some((offset, epoch)),
    ))
}
