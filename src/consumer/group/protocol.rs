//! The "consumer" protocol's member metadata: a subscription (topics and owned partitions) in
//! JoinGroup, an assignment in SyncGroup. Each is a version (i16) followed by the message at
//! that version, as Java's `ConsumerProtocol` writes them; a newer version than spate knows is
//! read as the newest it knows (later versions only add fields at the end).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::assignor::{Subscription, TopicPartition};
use crate::wire::{by_topic, schema};

/// The subscription version spate writes: v1 added owned partitions (cooperative
/// rebalancing, Kafka 2.4+), v2 the generation they are from (so an assignor can tell a
/// stale claim from a current one), v3 the member's rack (KIP-881).
const SUBSCRIPTION_VERSION: i16 = 3;
const ASSIGNMENT_VERSION: i16 = 1;
const NEWEST: i16 = 3;

fn group<T>(tps: &[TopicPartition], make: impl Fn(String, Vec<i32>) -> T) -> Vec<T> {
    by_topic(tps.iter().map(|(t, p)| (t.as_str(), *p)))
        .into_iter()
        .map(|(t, ps)| make(t.to_owned(), ps))
        .collect()
}

/// JoinGroup metadata for a member subscribed to `topics` that owns `owned` since
/// `generation`, in `rack` (if configured).
pub fn encode_subscription(
    topics: &[String],
    owned: &[TopicPartition],
    generation: i32,
    rack: Option<&str>,
) -> Bytes {
    let message = ConsumerProtocolSubscription::default()
        .with_generation_id(generation)
        .with_rack_id(rack.map(|r| StrBytes::from_string(r.to_owned())))
        .with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.clone()))
                .collect(),
        )
        .with_owned_partitions(group(owned, |t, ps| {
            OwnedTopic::default()
                .with_topic(TopicName(StrBytes::from_string(t)))
                .with_partitions(ps)
        }));
    let mut buf = BytesMut::new();
    buf.put_i16(SUBSCRIPTION_VERSION);
    message
        .encode(&mut buf, SUBSCRIPTION_VERSION)
        .expect("a subscription always encodes");
    buf.freeze()
}

/// A member's JoinGroup metadata, as the leader reads it.
pub fn decode_subscription(
    member_id: &str,
    group_instance_id: Option<String>,
    mut metadata: Bytes,
) -> Result<Subscription, String> {
    if metadata.len() < 2 {
        return Err(format!(
            "member {member_id}: subscription of {} bytes",
            metadata.len()
        ));
    }
    let version = i16::from_be_bytes([metadata[0], metadata[1]]);
    let _ = metadata.split_to(2);
    // Another member wrote these bytes: walk them against the layout before decoding (the
    // decoder sizes allocations from the counts in them).
    let read_as = version.clamp(0, NEWEST);
    schema::consumer_subscription()
        .check(read_as, &metadata)
        .map_err(|e| format!("member {member_id}: subscription v{version}: {e}"))?;
    let message = ConsumerProtocolSubscription::decode(&mut metadata, read_as)
        .map_err(|e| format!("member {member_id}: subscription v{version}: {e:#}"))?;
    Ok(Subscription {
        member_id: member_id.to_owned(),
        group_instance_id,
        topics: message.topics.iter().map(|t| t.to_string()).collect(),
        owned: message
            .owned_partitions
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.topic.0.to_string(), *p))
            })
            .collect(),
        generation: if version >= 2 {
            message.generation_id
        } else {
            -1
        },
    })
}

/// SyncGroup assignment bytes for one member.
pub fn encode_assignment(tps: &[TopicPartition]) -> Bytes {
    let message =
        ConsumerProtocolAssignment::default().with_assigned_partitions(group(tps, |t, ps| {
            AssignedTopic::default()
                .with_topic(TopicName(StrBytes::from_string(t)))
                .with_partitions(ps)
        }));
    let mut buf = BytesMut::new();
    buf.put_i16(ASSIGNMENT_VERSION);
    message
        .encode(&mut buf, ASSIGNMENT_VERSION)
        .expect("an assignment always encodes");
    buf.freeze()
}

/// This member's assignment from a SyncGroup answer (empty bytes: nothing assigned).
pub fn decode_assignment(mut bytes: Bytes) -> Result<Vec<TopicPartition>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if bytes.len() < 2 {
        return Err(format!("assignment of {} bytes", bytes.len()));
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    let _ = bytes.split_to(2);
    let read_as = version.clamp(0, NEWEST);
    schema::consumer_assignment()
        .check(read_as, &bytes)
        .map_err(|e| format!("assignment v{version}: {e}"))?;
    let message = ConsumerProtocolAssignment::decode(&mut bytes, read_as)
        .map_err(|e| format!("assignment v{version}: {e:#}"))?;
    Ok(message
        .assigned_partitions
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.topic.0.to_string(), *p))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_and_assignments_round_trip() {
        let owned = vec![
            ("a".to_owned(), 1),
            ("b".to_owned(), 0),
            ("a".to_owned(), 3),
        ];
        let bytes = encode_subscription(&["a".into(), "b".into()], &owned, 7, Some("r1"));
        assert_eq!(&bytes[..2], &[0, 3], "version 3");
        let s = decode_subscription("m", Some("i".into()), bytes).unwrap();
        assert_eq!(s.topics, ["a", "b"]);
        let mut got = s.owned.clone();
        got.sort();
        let mut want = owned.clone();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(s.group_instance_id.as_deref(), Some("i"));
        assert_eq!(
            s.generation, 7,
            "v2+ carries the owned partitions' generation"
        );
        let bytes = encode_assignment(&owned);
        let mut got = decode_assignment(bytes).unwrap();
        got.sort();
        assert_eq!(got, want);
        assert_eq!(decode_assignment(Bytes::new()).unwrap(), []);
        assert!(decode_assignment(Bytes::from_static(&[0])).is_err());
        assert!(decode_subscription("m", None, Bytes::from_static(&[0, 0, 0xff])).is_err());
    }

    #[test]
    fn lying_counts_are_refused_before_decoding() {
        // v1 subscription: 2^31 - 1 topics announced in a few bytes.
        let err = decode_subscription(
            "evil",
            None,
            Bytes::from_static(&[0, 1, 0x7f, 0xff, 0xff, 0xff, 0, 1, b'a']),
        )
        .unwrap_err();
        assert!(
            err.contains("member evil") && err.contains("topics: 2147483647 entries"),
            "{err}"
        );
        // Owned partitions with a huge INT32 array of partitions.
        let err = decode_subscription(
            "evil",
            None,
            Bytes::from_static(&[
                0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 1, b't', 0x10, 0, 0, 0,
            ]),
        )
        .unwrap_err();
        assert!(err.contains("owned_partitions[0].partitions"), "{err}");
        let err =
            decode_assignment(Bytes::from_static(&[0, 1, 0x7f, 0xff, 0xff, 0xff])).unwrap_err();
        assert!(err.contains("assigned_partitions"), "{err}");
    }

    /// Java's v0 subscription for topics ["foo", "bar"] and no user data, as
    /// `ConsumerProtocol.serializeSubscription` writes it.
    #[test]
    fn reads_a_java_v0_subscription() {
        let bytes = Bytes::from_static(&[
            0, 0, // version 0
            0, 0, 0, 2, // 2 topics
            0, 3, b'f', b'o', b'o', 0, 3, b'b', b'a', b'r', //
            0xff, 0xff, 0xff, 0xff, // null user data
        ]);
        let s = decode_subscription("m", None, bytes).unwrap();
        assert_eq!(s.topics, ["foo", "bar"]);
        assert!(s.owned.is_empty());
    }
}
