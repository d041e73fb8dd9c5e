//! A zero-copy decoder for Fetch responses (v4 to v16).
//!
//! A fetch response arrives as one [`Bytes`]; each partition's `records` is a slice of it, so
//! the record batches are never copied between the socket and the batch decoder. Every count
//! read off the wire is checked against the bytes left (times the smallest size an element can
//! take) before anything is allocated from it, so a lying broker gets an error, not an
//! out-of-memory.
//!
//! # References
//! - Kafka protocol guide, "Fetch API (Key: 1)", FetchResponse v4..v16.
//! - KIP-227 (fetch sessions: `error_code`, `session_id`, v7), KIP-392 (preferred read replica,
//!   v11), KIP-482 (flexible versions, v12), KIP-516 (topic ids, v13), KIP-951 (node endpoints,
//!   v16).

use bytes::Bytes;

use super::header::ResponseHeader;
use super::primitives::{PrimitiveError, Reader};
use super::{ApiKey, ProtocolError};

/// Lowest Fetch version this decoder reads.
pub const MIN_VERSION: i16 = 4;
/// Highest Fetch version this decoder reads.
pub const MAX_VERSION: i16 = 16;

/// A decoded Fetch response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchResponse {
    /// Throttle time imposed by the broker, in milliseconds.
    pub throttle_time_ms: i32,
    /// Top-level error (fetch sessions, v7+); 0 if none.
    pub error_code: i16,
    /// Fetch session id (v7+); 0 if none.
    pub session_id: i32,
    /// Per-topic results.
    pub topics: Vec<FetchTopic>,
    /// The endpoints of the leaders named in `current_leader` (v16+ tagged field 0, KIP-951).
    pub node_endpoints: Vec<NodeEndpoint>,
}

/// A broker's endpoint, as a Fetch answer names it (KIP-951).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEndpoint {
    /// Node id.
    pub node_id: i32,
    /// Host.
    pub host: String,
    /// Port.
    pub port: i32,
    /// Rack, if any.
    pub rack: Option<String>,
}

/// One topic of a Fetch response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchTopic {
    /// The topic name (v4..v12); empty from v13, where topics are named by id.
    pub name: String,
    /// The topic id (v13+); all zeros before.
    pub topic_id: [u8; 16],
    /// Per-partition results.
    pub partitions: Vec<FetchPartition>,
}

/// One partition of a Fetch response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchPartition {
    /// Partition index.
    pub partition_index: i32,
    /// Error code, 0 if none.
    pub error_code: i16,
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset.
    pub last_stable_offset: i64,
    /// Log start offset (v5+), -1 before.
    pub log_start_offset: i64,
    /// Aborted transactions overlapping the returned records (read_committed), if any.
    pub aborted_transactions: Option<Vec<AbortedTransaction>>,
    /// Preferred read replica (v11+), -1 if none.
    pub preferred_read_replica: i32,
    /// Where this log and the fetcher's part (KIP-320, v12+ tagged field 0): the largest
    /// epoch both have, and where it ends here. Present when truncation is detected.
    pub diverging_epoch: Option<EpochEndOffset>,
    /// The current leader, when the broker says it moved (v12+ tagged field 1).
    pub current_leader: Option<LeaderAndEpoch>,
    /// The records section: a slice of the response frame (no copy); empty if null.
    pub records: Bytes,
}

/// An aborted transaction: the producer and the first offset of its aborted data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTransaction {
    /// The producer id.
    pub producer_id: i64,
    /// The first offset of the aborted transaction.
    pub first_offset: i64,
}

/// A leader epoch and the offset where it ends (KIP-320).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEndOffset {
    /// The leader epoch.
    pub epoch: i32,
    /// The offset after its last record.
    pub end_offset: i64,
}

/// A leader id and epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderAndEpoch {
    /// Broker id of the leader.
    pub leader_id: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
}

impl FetchResponse {
    /// Decodes a whole response frame (response header included) for Fetch `version`.
    pub fn decode_frame(
        version: i16,
        frame: &Bytes,
    ) -> Result<(ResponseHeader, Self), ProtocolError> {
        let hv = super::header::response_header_version(ApiKey::Fetch, version);
        let (header, len) =
            ResponseHeader::decode(frame, hv).map_err(|source| ProtocolError::Malformed {
                api: ApiKey::Fetch,
                version,
                source,
            })?;
        Ok((header, Self::decode(version, &frame.slice(len..))?))
    }

    /// Decodes a Fetch response body for `version`. `body` must hold the body exactly.
    pub fn decode(version: i16, body: &Bytes) -> Result<Self, ProtocolError> {
        if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
            return Err(ProtocolError::UnsupportedVersion {
                api: ApiKey::Fetch,
                ours: super::ApiVersionRange {
                    min: MIN_VERSION,
                    max: MAX_VERSION,
                },
                theirs: super::ApiVersionRangeDisplay(Some(super::ApiVersionRange {
                    min: version,
                    max: version,
                })),
            });
        }
        let malformed = |source| ProtocolError::Malformed {
            api: ApiKey::Fetch,
            version,
            source,
        };
        let mut r = Reader::new(body);
        let resp = decode_body(&mut r, version, body).map_err(malformed)?;
        if r.remaining() != 0 {
            return Err(ProtocolError::TrailingBytes {
                api: ApiKey::Fetch,
                version,
                extra: r.remaining(),
            });
        }
        Ok(resp)
    }
}

fn decode_body(
    r: &mut Reader<'_>,
    version: i16,
    body: &Bytes,
) -> Result<FetchResponse, PrimitiveError> {
    let flexible = version >= 12;
    let throttle_time_ms = r.i32()?;
    let (error_code, session_id) = if version >= 7 {
        (r.i16()?, r.i32()?)
    } else {
        (0, 0)
    };
    let topic_min = if version >= 13 {
        16 + 2
    } else if flexible {
        3
    } else {
        6
    };
    let n_topics = r.array_len_min(flexible, topic_min)?.unwrap_or(0);
    let mut topics = Vec::with_capacity(n_topics);
    for _ in 0..n_topics {
        topics.push(decode_topic(r, version, body)?);
    }
    let mut node_endpoints = Vec::new();
    if flexible {
        let count = r.unsigned_varint()?;
        for _ in 0..count {
            let tag = r.unsigned_varint()?;
            let size = r.unsigned_varint()? as usize;
            let field = r.take(size)?;
            if tag == 0 && version >= 16 {
                let mut f = Reader::with_base(field, r.absolute_position() - size);
                node_endpoints = decode_node_endpoints(&mut f)?;
            }
        }
    }
    Ok(FetchResponse {
        throttle_time_ms,
        error_code,
        session_id,
        topics,
        node_endpoints,
    })
}

fn decode_node_endpoints(r: &mut Reader<'_>) -> Result<Vec<NodeEndpoint>, PrimitiveError> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    // Smallest endpoint: id, empty host, port, null rack, no tags.
    let n = r.array_len_min(true, 4 + 1 + 4 + 1 + 1)?.unwrap_or(0);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let node_id = r.i32()?;
        let host = r.string(true)?.map(text).unwrap_or_default();
        let port = r.i32()?;
        let rack = r.string(true)?.map(text);
        r.skip_tagged_fields()?;
        out.push(NodeEndpoint {
            node_id,
            host,
            port,
            rack,
        });
    }
    Ok(out)
}

fn decode_topic(
    r: &mut Reader<'_>,
    version: i16,
    body: &Bytes,
) -> Result<FetchTopic, PrimitiveError> {
    let flexible = version >= 12;
    let mut topic = FetchTopic::default();
    if version >= 13 {
        topic.topic_id.copy_from_slice(r.take(16)?);
    } else {
        let at = r.absolute_position();
        let name = r.string(flexible)?.unwrap_or_default();
        topic.name = std::str::from_utf8(name)
            .map_err(|_| PrimitiveError::InvalidLength {
                at,
                length: name.len() as i64,
            })?
            .to_owned();
    }
    // Smallest partition: the fixed fields plus one byte per length and tagged section.
    let part_min = 4
        + 2
        + 8
        + 8
        + if version >= 5 { 8 } else { 0 }
        + if version >= 11 { 4 } else { 0 }
        + if flexible { 3 } else { 8 };
    let n_parts = r.array_len_min(flexible, part_min)?.unwrap_or(0);
    topic.partitions = Vec::with_capacity(n_parts);
    for _ in 0..n_parts {
        topic.partitions.push(decode_partition(r, version, body)?);
    }
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(topic)
}

fn decode_partition(
    r: &mut Reader<'_>,
    version: i16,
    body: &Bytes,
) -> Result<FetchPartition, PrimitiveError> {
    let flexible = version >= 12;
    let mut p = FetchPartition {
        partition_index: r.i32()?,
        error_code: r.i16()?,
        high_watermark: r.i64()?,
        last_stable_offset: r.i64()?,
        log_start_offset: if version >= 5 { r.i64()? } else { -1 },
        ..Default::default()
    };
    let txn_min = 16 + usize::from(flexible);
    p.aborted_transactions = match r.array_len_min(flexible, txn_min)? {
        None => None,
        Some(n) => {
            let mut txns = Vec::with_capacity(n);
            for _ in 0..n {
                txns.push(AbortedTransaction {
                    producer_id: r.i64()?,
                    first_offset: r.i64()?,
                });
                if flexible {
                    r.skip_tagged_fields()?;
                }
            }
            Some(txns)
        }
    };
    p.preferred_read_replica = if version >= 11 { r.i32()? } else { -1 };
    if let Some(range) = r.bytes_range(flexible)? {
        // `range` is relative to the reader, which starts at the start of `body`.
        p.records = body.slice(range);
    }
    if flexible {
        let count = r.unsigned_varint()?;
        for _ in 0..count {
            let tag = r.unsigned_varint()?;
            let size = r.unsigned_varint()? as usize;
            let field = r.take(size)?;
            let mut f = Reader::with_base(field, r.absolute_position() - size);
            match tag {
                0 => {
                    let diverging = EpochEndOffset {
                        epoch: f.i32()?,
                        end_offset: f.i64()?,
                    };
                    p.diverging_epoch = (diverging.epoch >= 0).then_some(diverging);
                }
                1 => {
                    p.current_leader = Some(LeaderAndEpoch {
                        leader_id: f.i32()?,
                        leader_epoch: f.i32()?,
                    });
                }
                _ => {}
            }
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::fetch_response as kp;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use proptest::prelude::*;

    /// (partition, high watermark, aborted (pid, first offset), records, current leader).
    type PartSpec = (
        i32,
        i64,
        Option<Vec<(i64, i64)>>,
        Option<Vec<u8>>,
        Option<(i32, i32)>,
    );
    type TopicSpec = (String, [u8; 16], Vec<PartSpec>);

    fn kp_response(version: i16, topics: &[TopicSpec]) -> kp::FetchResponse {
        let endpoints = if version >= 16 {
            vec![kp::NodeEndpoint::default()
                .with_node_id(4.into())
                .with_host(StrBytes::from_static_str("h4"))
                .with_port(9094)
                .with_rack(Some(StrBytes::from_static_str("r1")))]
        } else {
            Vec::new()
        };
        kp::FetchResponse::default()
            .with_node_endpoints(endpoints)
            .with_throttle_time_ms(9)
            .with_error_code(if version >= 7 { 3 } else { 0 })
            .with_session_id(if version >= 7 { 77 } else { 0 })
            .with_responses(
                topics
                    .iter()
                    .map(|(name, id, parts)| {
                        let mut t = kp::FetchableTopicResponse::default().with_partitions(
                            parts
                                .iter()
                                .map(|(idx, hw, aborted, records, leader)| {
                                    let mut p = kp::PartitionData::default()
                                        .with_partition_index(*idx)
                                        .with_high_watermark(*hw)
                                        .with_last_stable_offset(hw - 1)
                                        .with_aborted_transactions(aborted.as_ref().map(|a| {
                                            a.iter()
                                                .map(|&(pid, first)| {
                                                    kp::AbortedTransaction::default()
                                                        .with_producer_id(pid.into())
                                                        .with_first_offset(first)
                                                })
                                                .collect()
                                        }))
                                        .with_records(records.clone().map(Bytes::from));
                                    if version >= 5 {
                                        p = p.with_log_start_offset(3);
                                    }
                                    if version >= 11 {
                                        p = p.with_preferred_read_replica(2.into());
                                    }
                                    if let (Some((l, e)), true) = (leader, version >= 12) {
                                        p = p.with_current_leader(
                                            kp::LeaderIdAndEpoch::default()
                                                .with_leader_id((*l).into())
                                                .with_leader_epoch(*e),
                                        );
                                    }
                                    p
                                })
                                .collect(),
                        );
                        if version >= 13 {
                            t = t.with_topic_id(uuid::Uuid::from_bytes(*id));
                        } else {
                            t = t.with_topic(StrBytes::from_string(name.clone()).into());
                        }
                        t
                    })
                    .collect(),
            )
    }

    proptest! {
        #[test]
        fn decodes_what_the_schema_encoder_writes(
            version in MIN_VERSION..=MAX_VERSION,
            topics in proptest::collection::vec(
                ("[a-z]{1,12}", any::<[u8; 16]>(), proptest::collection::vec(
                    (0i32..100, 0i64..1_000_000,
                     proptest::option::of(proptest::collection::vec((any::<i64>(), any::<i64>()), 0..3)),
                     proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
                     proptest::option::of((0i32..5, 0i32..50))),
                    0..4)),
                0..4),
        ) {
            let resp = kp_response(version, &topics);
            let mut buf = BytesMut::new();
            resp.encode(&mut buf, version).unwrap();
            let body = buf.freeze();
            let ours = FetchResponse::decode(version, &body).unwrap();
            prop_assert_eq!(ours.throttle_time_ms, 9);
            prop_assert_eq!(ours.session_id, if version >= 7 { 77 } else { 0 });
            prop_assert_eq!(ours.topics.len(), topics.len());
            let want_endpoints = if version >= 16 {
                vec![NodeEndpoint { node_id: 4, host: "h4".into(), port: 9094, rack: Some("r1".into()) }]
            } else {
                Vec::new()
            };
            prop_assert_eq!(&ours.node_endpoints, &want_endpoints);
            for (t, (name, id, parts)) in ours.topics.iter().zip(&topics) {
                if version >= 13 { prop_assert_eq!(&t.topic_id, id); } else { prop_assert_eq!(&t.name, name); }
                prop_assert_eq!(t.partitions.len(), parts.len());
                for (p, (idx, hw, aborted, records, leader)) in t.partitions.iter().zip(parts) {
                    prop_assert_eq!(p.partition_index, *idx);
                    prop_assert_eq!(p.high_watermark, *hw);
                    prop_assert_eq!(p.last_stable_offset, hw - 1);
                    prop_assert_eq!(p.log_start_offset, if version >= 5 { 3 } else { -1 });
                    prop_assert_eq!(p.preferred_read_replica, if version >= 11 { 2 } else { -1 });
                    let want: Option<Vec<AbortedTransaction>> = aborted.as_ref().map(|a| a.iter()
                        .map(|&(producer_id, first_offset)| AbortedTransaction { producer_id, first_offset }).collect());
                    prop_assert_eq!(&p.aborted_transactions, &want);
                    prop_assert_eq!(&p.records[..], records.as_deref().unwrap_or_default());
                    let want_leader = leader.filter(|_| version >= 12)
                        .map(|(leader_id, leader_epoch)| LeaderAndEpoch { leader_id, leader_epoch });
                    prop_assert_eq!(p.current_leader, want_leader);
                }
            }
            // Every truncation is an error, never a panic.
            for cut in 0..body.len() {
                prop_assert!(FetchResponse::decode(version, &body.slice(..cut)).is_err());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(version in MIN_VERSION..=MAX_VERSION, data: Vec<u8>) {
            let _ = FetchResponse::decode(version, &Bytes::from(data));
        }
    }

    #[test]
    fn records_are_a_slice_of_the_frame() {
        let resp = kp_response(
            4,
            &[(
                "t".into(),
                [0; 16],
                vec![(0, 10, None, Some(vec![1, 2, 3]), None)],
            )],
        );
        let mut buf = BytesMut::new();
        resp.encode(&mut buf, 4).unwrap();
        let body = buf.freeze();
        let ours = FetchResponse::decode(4, &body).unwrap();
        let records = &ours.topics[0].partitions[0].records;
        let (lo, hi) = (body.as_ptr() as usize, body.as_ptr() as usize + body.len());
        assert!(
            (lo..hi).contains(&(records.as_ptr() as usize)),
            "records must point into the frame"
        );
    }

    #[test]
    fn the_diverging_epoch_is_read() {
        let resp =
            kp::FetchResponse::default().with_responses(vec![kp::FetchableTopicResponse::default(
            )
            .with_topic(crate::wire::topic_name("t"))
            .with_partitions(vec![
                kp::PartitionData::default()
                    .with_partition_index(3)
                    .with_diverging_epoch(
                        kp::EpochEndOffset::default()
                            .with_epoch(4)
                            .with_end_offset(120),
                    ),
                kp::PartitionData::default().with_partition_index(4),
            ])]);
        let mut buf = BytesMut::new();
        resp.encode(&mut buf, 12).unwrap();
        let ours = FetchResponse::decode(12, &buf.freeze()).unwrap();
        let parts = &ours.topics[0].partitions;
        assert_eq!(
            parts[0].diverging_epoch,
            Some(EpochEndOffset {
                epoch: 4,
                end_offset: 120
            })
        );
        assert_eq!(parts[1].diverging_epoch, None, "-1 is none");
    }

    #[test]
    fn huge_counts_are_rejected_without_allocating() {
        // v4: throttle, then a topic count of i32::MAX with nothing behind it.
        let mut body = vec![0, 0, 0, 0];
        body.extend_from_slice(&i32::MAX.to_be_bytes());
        let err = FetchResponse::decode(4, &Bytes::from(body)).unwrap_err();
        assert!(
            matches!(
                err,
                ProtocolError::Malformed {
                    source: PrimitiveError::Truncated { .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn unsupported_version_is_an_error() {
        assert!(matches!(
            FetchResponse::decode(3, &Bytes::new()),
            Err(ProtocolError::UnsupportedVersion { .. })
        ));
    }
}
