//! A lying broker on loopback: it answers like a broker (ApiVersions, Metadata naming itself,
//! the calls a producer or consumer makes before the one under test), and lies in the answer
//! to one API, in one of the ways a broken or hostile broker can.
//!
//! The lies are written from spate's own message layouts (`spate::wire::schema`): every field
//! before the lie is a minimal valid value, so the lie sits exactly where a decoder would read
//! a count or a length.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use spate::wire::schema::{schema, Direction, Field, MessageSchema, Ty};
use spate::wire::versions::supported_api_versions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One way of lying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// The first array announces 2^31 - 1 (or 2^32 - 2) entries, followed by three bytes. With
    /// no array, a string length or (flexible versions) the tagged-field count does.
    HugeCount,
    /// The first array's count is -2 (or null, in flexible versions, where it may not be).
    NegativeCount,
    /// The first string announces 30,000 bytes, followed by three.
    LongString,
    /// The first compact length or count is a varint that never ends (flexible versions).
    Unterminated,
    /// A frame size of 2 GB, then nothing.
    GiantFrame,
    /// A frame size of 90 MiB (under the limit), 1 KiB of it, then nothing.
    StallInFrame,
    /// A correct answer under another correlation id.
    WrongCorrelation,
    /// Half a correct frame, then the connection closes.
    TruncateAndClose,
}

impl Attack {
    /// The attacks on the message body (a correct frame whose content lies).
    pub const BODY: [Attack; 4] = [
        Attack::HugeCount,
        Attack::NegativeCount,
        Attack::LongString,
        Attack::Unterminated,
    ];
    /// The attacks on the frame and the connection.
    pub const FRAME: [Attack; 4] = [
        Attack::GiantFrame,
        Attack::StallInFrame,
        Attack::WrongCorrelation,
        Attack::TruncateAndClose,
    ];
}

/// The lie to tell, and for which API.
#[derive(Debug, Clone, Copy)]
pub struct Script {
    pub target: ApiKey,
    pub attack: Attack,
}

/// A lying broker; stops when dropped.
pub struct Liar {
    pub addr: String,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Liar {
    pub async fn start(script: Script) -> Liar {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let script = Arc::new(Mutex::new(script));
        let shared = script.clone();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, port, shared.clone()));
            }
        });
        Liar { addr, script, task }
    }

    /// The lie for the next requests.
    pub fn set(&self, script: Script) {
        *self.script.lock().unwrap() = script;
    }
}

async fn serve(mut socket: TcpStream, port: u16, script: Arc<Mutex<Script>>) {
    loop {
        let mut size = [0u8; 4];
        if socket.read_exact(&mut size).await.is_err() {
            return;
        }
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        if socket.read_exact(&mut body).await.is_err() {
            return;
        }
        let api = ApiKey::try_from(i16::from_be_bytes([body[0], body[1]])).unwrap();
        let version = i16::from_be_bytes([body[2], body[3]]);
        let correlation_id = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
        let mut request = Bytes::from(body);
        let _header =
            RequestHeader::decode(&mut request, api.request_header_version(version)).unwrap();
        let Script { target, attack } = *script.lock().unwrap();
        let frame = |correlation_id: i32, body: &[u8]| {
            let mut out = BytesMut::new();
            let mut header = BytesMut::new();
            ResponseHeader::default()
                .with_correlation_id(correlation_id)
                .encode(&mut header, api.response_header_version(version))
                .unwrap();
            out.put_i32((header.len() + body.len()) as i32);
            out.put_slice(&header);
            out.put_slice(body);
            out
        };
        if api != target {
            let body = honest(api, version, request, port);
            if socket
                .write_all(&frame(correlation_id, &body))
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        let honest_body = || honest(api, version, Bytes::new(), port);
        let result = match attack {
            Attack::HugeCount
            | Attack::NegativeCount
            | Attack::LongString
            | Attack::Unterminated => {
                let layout = schema(api, Direction::Response, version).unwrap();
                let body = lie(layout, version, attack)
                    .unwrap_or_else(|| panic!("{attack:?} does not apply to {api:?} v{version}"));
                socket.write_all(&frame(correlation_id, &body)).await
            }
            Attack::GiantFrame => {
                let r = socket.write_all(&i32::MAX.to_be_bytes()).await;
                hold(socket).await;
                return drop(r);
            }
            Attack::StallInFrame => {
                let mut out = BytesMut::new();
                out.put_i32(90 << 20);
                out.put_i32(correlation_id);
                out.put_slice(&[0; 1020]);
                let r = socket.write_all(&out).await;
                hold(socket).await;
                return drop(r);
            }
            Attack::WrongCorrelation => {
                socket
                    .write_all(&frame(correlation_id.wrapping_add(1000), &honest_body()))
                    .await
            }
            Attack::TruncateAndClose => {
                let whole = frame(correlation_id, &honest_body());
                let _ = socket.write_all(&whole[..whole.len() / 2]).await;
                return;
            }
        };
        if result.is_err() {
            return;
        }
    }
}

/// Keeps a connection open, saying nothing, until the peer closes it.
async fn hold(mut socket: TcpStream) {
    let mut sink = [0u8; 1024];
    while let Ok(n) = socket.read(&mut sink).await {
        if n == 0 {
            return;
        }
    }
}

/// Whether `attack` can be told in a message of this layout at this version.
pub fn applies(api: ApiKey, version: i16, attack: Attack) -> bool {
    match schema(api, Direction::Response, version) {
        Some(layout) => lie(layout, version, attack).is_some(),
        None => false,
    }
}

/// A response body that follows `layout` up to the field the attack targets, and lies there.
pub fn lie(layout: &MessageSchema, version: i16, attack: Attack) -> Option<Vec<u8>> {
    let flexible = layout.flexible.contains(version);
    let mut out = BytesMut::new();
    let mut w = Writer {
        version,
        flexible,
        attack,
    };
    if w.fields(layout.fields, &mut out) {
        return Some(out.to_vec());
    }
    // No field to lie in: lie in the top level's tagged-field count, if there is one.
    match (attack, flexible) {
        (Attack::HugeCount, true) => {
            // The fields were written (minimal) by the walk; only the final tagged count (a 0
            // byte) is replaced.
            out.truncate(out.len() - 1);
            out.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]);
            Some(out.to_vec())
        }
        (Attack::Unterminated, true) => {
            out.truncate(out.len() - 1);
            out.put_slice(&[0xff; 6]);
            Some(out.to_vec())
        }
        _ => None,
    }
}

struct Writer {
    version: i16,
    flexible: bool,
    attack: Attack,
}

impl Writer {
    /// Writes minimal fields; true once the lie has been told (and nothing after it).
    fn fields(&mut self, fields: &'static [Field], out: &mut BytesMut) -> bool {
        for field in fields {
            if field.tag.is_some() || !field.versions.contains(self.version) {
                continue;
            }
            if self.field(field, out) {
                return true;
            }
        }
        if self.flexible {
            out.put_u8(0); // no tagged fields
        }
        false
    }

    fn field(&mut self, field: &'static Field, out: &mut BytesMut) -> bool {
        let nullable = field.nullable.contains(self.version);
        match (&field.ty, self.attack) {
            (Ty::Array(_), Attack::HugeCount) => {
                if self.flexible {
                    out.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
                } else {
                    out.put_i32(i32::MAX);
                }
                out.put_slice(&[1, 2, 3]);
                true
            }
            (Ty::Array(_), Attack::NegativeCount) if !self.flexible => {
                out.put_i32(-2);
                true
            }
            (Ty::Array(_), Attack::NegativeCount) if !nullable => {
                out.put_u8(0); // null, where the layout allows none
                true
            }
            (Ty::String, Attack::LongString) => {
                if self.flexible {
                    out.put_slice(&[0xb1, 0xea, 0x01]); // 30001: 30,000 bytes
                } else {
                    out.put_i16(30_000);
                }
                out.put_slice(b"abc");
                true
            }
            (Ty::Array(_) | Ty::String | Ty::Bytes | Ty::Records, Attack::Unterminated)
                if self.flexible =>
            {
                out.put_slice(&[0xff; 6]);
                true
            }
            (Ty::Struct(fields), _) => {
                if nullable {
                    out.put_i8(1);
                }
                self.fields(fields, out)
            }
            (ty, _) => {
                minimal(ty, self.flexible, out);
                false
            }
        }
    }
}

/// The smallest valid value of a type: zero, empty.
fn minimal(ty: &Ty, flexible: bool, out: &mut BytesMut) {
    match ty {
        Ty::Bool | Ty::Int8 => out.put_u8(0),
        Ty::Int16 | Ty::Uint16 => out.put_i16(0),
        Ty::Int32 | Ty::Uint32 => out.put_i32(0),
        Ty::Int64 | Ty::Float64 => out.put_i64(0),
        Ty::Uuid => out.put_u128(0),
        Ty::String if !flexible => out.put_i16(0),
        Ty::Bytes | Ty::Records | Ty::Array(_) if !flexible => out.put_i32(0),
        Ty::String | Ty::Bytes | Ty::Records | Ty::Array(_) => out.put_u8(1),
        Ty::Struct(_) => unreachable!("structs are walked"),
    }
}

/// What an honest broker (this one, alone in its cluster as node 0) answers.
fn honest(api: ApiKey, version: i16, mut request: Bytes, port: u16) -> BytesMut {
    let mut out = BytesMut::new();
    let result = match api {
        ApiKey::ApiVersions => ApiVersionsResponse::default()
            .with_api_keys(supported_api_versions())
            .encode(&mut out, version),
        ApiKey::Metadata => {
            let requested = MetadataRequest::decode(&mut request, version)
                .ok()
                .and_then(|r| r.topics)
                .unwrap_or_default();
            let mut names: Vec<TopicName> = requested.into_iter().filter_map(|t| t.name).collect();
            if names.is_empty() {
                names.push(TopicName(StrBytes::from_static_str("t")));
            }
            MetadataResponse::default()
                .with_brokers(vec![MetadataResponseBroker::default()
                    .with_node_id(BrokerId(0))
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(port as i32)])
                .with_controller_id(BrokerId(0))
                .with_topics(
                    names
                        .into_iter()
                        .map(|name| {
                            MetadataResponseTopic::default()
                                .with_name(Some(name))
                                .with_partitions(vec![MetadataResponsePartition::default()
                                    .with_partition_index(0)
                                    .with_leader_id(BrokerId(0))
                                    .with_replica_nodes(vec![BrokerId(0)])
                                    .with_isr_nodes(vec![BrokerId(0)])])
                        })
                        .collect(),
                )
                .encode(&mut out, version)
        }
        ApiKey::FindCoordinator if version >= 4 => FindCoordinatorResponse::default()
            .with_coordinators(vec![Coordinator::default()
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(port as i32)])
            .encode(&mut out, version),
        ApiKey::FindCoordinator => FindCoordinatorResponse::default()
            .with_host(StrBytes::from_static_str("127.0.0.1"))
            .with_port(port as i32)
            .encode(&mut out, version),
        ApiKey::InitProducerId => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(1))
            .encode(&mut out, version),
        ApiKey::ListOffsets => {
            let request = ListOffsetsRequest::decode(&mut request, version).unwrap_or_default();
            ListOffsetsResponse::default()
                .with_topics(
                    request
                        .topics
                        .into_iter()
                        .map(|t| {
                            ListOffsetsTopicResponse::default()
                                .with_name(t.name)
                                .with_partitions(
                                    t.partitions
                                        .into_iter()
                                        .map(|p| {
                                            ListOffsetsPartitionResponse::default()
                                                .with_partition_index(p.partition_index)
                                                .with_offset(0)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                )
                .encode(&mut out, version)
        }
        ApiKey::Produce => ProduceResponse::default().encode(&mut out, version),
        ApiKey::Fetch => FetchResponse::default().encode(&mut out, version),
        ApiKey::CreateTopics => CreateTopicsResponse::default().encode(&mut out, version),
        ApiKey::DeleteTopics => DeleteTopicsResponse::default().encode(&mut out, version),
        ApiKey::OffsetFetch => OffsetFetchResponse::default().encode(&mut out, version),
        ApiKey::OffsetCommit => OffsetCommitResponse::default().encode(&mut out, version),
        ApiKey::JoinGroup => JoinGroupResponse::default().encode(&mut out, version),
        ApiKey::SyncGroup => SyncGroupResponse::default().encode(&mut out, version),
        ApiKey::Heartbeat => HeartbeatResponse::default().encode(&mut out, version),
        ApiKey::LeaveGroup => LeaveGroupResponse::default().encode(&mut out, version),
        ApiKey::DescribeGroups => DescribeGroupsResponse::default().encode(&mut out, version),
        ApiKey::ListGroups => ListGroupsResponse::default().encode(&mut out, version),
        ApiKey::SaslHandshake => SaslHandshakeResponse::default().encode(&mut out, version),
        ApiKey::SaslAuthenticate => SaslAuthenticateResponse::default().encode(&mut out, version),
        ApiKey::AddPartitionsToTxn => {
            AddPartitionsToTxnResponse::default().encode(&mut out, version)
        }
        ApiKey::AddOffsetsToTxn => AddOffsetsToTxnResponse::default().encode(&mut out, version),
        ApiKey::EndTxn => EndTxnResponse::default().encode(&mut out, version),
        ApiKey::TxnOffsetCommit => TxnOffsetCommitResponse::default().encode(&mut out, version),
        ApiKey::DescribeConfigs => DescribeConfigsResponse::default().encode(&mut out, version),
        ApiKey::IncrementalAlterConfigs => {
            IncrementalAlterConfigsResponse::default().encode(&mut out, version)
        }
        ApiKey::OffsetDelete => OffsetDeleteResponse::default().encode(&mut out, version),
        ApiKey::OffsetForLeaderEpoch => {
            OffsetForLeaderEpochResponse::default().encode(&mut out, version)
        }
        ApiKey::ConsumerGroupHeartbeat => {
            ConsumerGroupHeartbeatResponse::default().encode(&mut out, version)
        }
        ApiKey::ShareGroupHeartbeat => {
            ShareGroupHeartbeatResponse::default().encode(&mut out, version)
        }
        ApiKey::ShareFetch => ShareFetchResponse::default().encode(&mut out, version),
        ApiKey::ShareAcknowledge => ShareAcknowledgeResponse::default().encode(&mut out, version),
        ApiKey::DeleteRecords => DeleteRecordsResponse::default().encode(&mut out, version),
        ApiKey::DeleteGroups => DeleteGroupsResponse::default().encode(&mut out, version),
        ApiKey::CreatePartitions => CreatePartitionsResponse::default().encode(&mut out, version),
        other => panic!("the liar does not answer {other:?}"),
    };
    result.unwrap();
    out
}

/// Every (API, version) spate speaks.
pub fn every_api_version() -> Vec<(ApiKey, i16)> {
    let mut out = Vec::new();
    for ApiVersion {
        api_key,
        min_version,
        max_version,
        ..
    } in supported_api_versions()
    {
        let api = ApiKey::try_from(api_key).unwrap();
        for v in min_version..=max_version {
            out.push((api, v));
        }
    }
    out
}
