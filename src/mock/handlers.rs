//! The embedded cluster's request handlers.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::security::Session;
use super::{
    admin, configs, consumer_group, fetch, group, group_admin, lock, share, share_fetch, txn, State,
};
use crate::error::codes::{
    FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH, LEADER_NOT_AVAILABLE, NOT_COORDINATOR,
    NOT_LEADER_OR_FOLLOWER, REBOOTSTRAP_REQUIRED, UNKNOWN_TOPIC_ID, UNKNOWN_TOPIC_OR_PARTITION,
    UNSTABLE_OFFSET_COMMIT, UNSUPPORTED_VERSION,
};
use crate::wire::versions::supported;
use crate::wire::{decode_body, schema, topic_name, ApiKey, Direction};

/// The APIs the mock answers, and the highest version of each it has been written for (within
/// spate's own range).
const SERVED: &[(ApiKey, i16)] = &[
    (ApiKey::ApiVersions, 3),
    (ApiKey::Metadata, 13),
    (ApiKey::Produce, 12),
    (ApiKey::Fetch, 16),
    (ApiKey::ListOffsets, 7),
    (ApiKey::FindCoordinator, 4),
    (ApiKey::OffsetFetch, 7),
    (ApiKey::OffsetCommit, 9),
    (ApiKey::JoinGroup, 9),
    (ApiKey::SyncGroup, 5),
    (ApiKey::Heartbeat, 4),
    (ApiKey::LeaveGroup, 5),
    (ApiKey::InitProducerId, 5),
    (ApiKey::AddPartitionsToTxn, 3),
    (ApiKey::AddOffsetsToTxn, 4),
    (ApiKey::EndTxn, 5),
    (ApiKey::TxnOffsetCommit, 5),
    (ApiKey::OffsetForLeaderEpoch, 4),
    (ApiKey::ConsumerGroupHeartbeat, 1),
    (ApiKey::ShareGroupHeartbeat, 1),
    (ApiKey::ShareFetch, 1),
    (ApiKey::ShareAcknowledge, 1),
    (ApiKey::CreateTopics, 7),
    (ApiKey::DeleteRecords, 2),
    (ApiKey::ListGroups, 4),
    (ApiKey::DescribeGroups, 5),
    (ApiKey::DeleteGroups, 2),
    (ApiKey::CreatePartitions, 3),
    (ApiKey::SaslHandshake, 1),
    (ApiKey::SaslAuthenticate, 2),
    (ApiKey::DescribeConfigs, 4),
    (ApiKey::IncrementalAlterConfigs, 1),
    (ApiKey::OffsetDelete, 0),
];

/// How to answer.
pub(super) enum Reply {
    /// Write the response now.
    Now,
    /// Call `poll` (under the lock) until it has the response, then encode it at `version`:
    /// a long-poll fetch, a join, a follower's sync.
    Wait { poll: Poll, version: i16 },
    /// No response (Produce with acks=0).
    Nothing,
}

/// The response a waiting request ends with.
pub(super) enum Ready {
    Fetch(FetchResponse),
    Join(JoinGroupResponse),
    Sync(SyncGroupResponse),
    ShareFetch(ShareFetchResponse),
}

/// A request that waits: called under the lock until it returns the response.
pub(super) type Poll = Box<dyn FnMut(&mut State) -> Option<Ready> + Send>;

/// Encodes the response of a waiting request after the header `handle` wrote, and sets the
/// frame's size.
pub(super) fn finish(ready: Ready, version: i16, out: &mut BytesMut) -> Result<(), String> {
    match ready {
        Ready::Fetch(r) => r.encode(out, version),
        Ready::Join(r) => r.encode(out, version),
        Ready::Sync(r) => r.encode(out, version),
        Ready::ShareFetch(r) => r.encode(out, version),
    }
    .map_err(|e| format!("encode v{version}: {e:#}"))?;
    set_size(out, 0);
    Ok(())
}

fn set_size(out: &mut BytesMut, start: usize) {
    let len = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn served(api: ApiKey) -> Option<(i16, i16)> {
    let max = SERVED.iter().find(|(a, _)| *a == api)?.1;
    let ours = supported(api)?;
    Some((ours.min, ours.max.min(max)))
}

/// Handles one request frame (size prefix removed), writing the response frame to `out`.
/// `error` is an injected error code. A request the mock cannot read is an `Err` naming why;
/// the connection closes.
pub(super) fn handle(
    state: &Mutex<State>,
    broker: i32,
    api: ApiKey,
    mut frame: Bytes,
    error: Option<i16>,
    session: &mut Session,
    out: &mut BytesMut,
) -> Result<Reply, String> {
    let Some(&[_, _, v0, v1]) = frame.get(..4) else {
        return Err(format!("a request of {} bytes has no header", frame.len()));
    };
    let version = i16::from_be_bytes([v0, v1]);
    // Requests come from any client: the header and the body are walked against their layouts
    // before anything is decoded from them, as the client does with responses.
    let header_version = api.request_header_version(version);
    schema::request_header()
        .check(header_version, &frame)
        .map_err(|e| format!("request header: {e}"))?;
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| format!("request header: {e:#}"))?;
    let range = served(api).ok_or_else(|| format!("{api:?} is not served by the mock"))?;
    let in_range = (range.0..=range.1).contains(&version);
    if !in_range && api != ApiKey::ApiVersions {
        return Err(format!("{api:?} v{version} is not served by the mock"));
    }
    let start = out.len();
    out.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(header.correlation_id)
        .encode(out, api.response_header_version(version))
        .map_err(|e| format!("{e:#}"))?;
    let mut reply = Reply::Now;
    macro_rules! decode {
        ($t:ty) => {
            decode_body::<$t>(api, Direction::Request, version, frame.clone())
                .map_err(|e| e.to_string())?
        };
    }
    let encoded = match api {
        ApiKey::ApiVersions => {
            let (code, version) = if in_range {
                (error.unwrap_or(0), version)
            } else {
                // KIP-511: answer in v0 with what we do speak.
                (UNSUPPORTED_VERSION, 0)
            };
            let keys = SERVED
                .iter()
                .filter_map(|(api, _)| {
                    let (min, max) = served(*api)?;
                    Some(
                        api_versions_response::ApiVersion::default()
                            .with_api_key(*api as i16)
                            .with_min_version(min)
                            .with_max_version(max),
                    )
                })
                .collect();
            let mut response = ApiVersionsResponse::default()
                .with_error_code(code)
                .with_api_keys(keys);
            if version >= 3 {
                features(&lock(state), &mut response);
            }
            response.encode(out, version)
        }
        ApiKey::Metadata => {
            let request = decode!(MetadataRequest);
            // v13+: REBOOTSTRAP_REQUIRED is answered at the top level (KIP-1102).
            let rebootstrap = error == Some(REBOOTSTRAP_REQUIRED) && version >= 13;
            let response = if rebootstrap {
                MetadataResponse::default().with_error_code(REBOOTSTRAP_REQUIRED)
            } else {
                metadata(&mut lock(state), &request, error)
            };
            response.encode(out, version)
        }
        ApiKey::Produce => {
            let request = decode!(ProduceRequest);
            if request.acks == 0 {
                reply = Reply::Nothing;
            }
            produce(&mut lock(state), broker, request, version, error).encode(out, version)
        }
        ApiKey::Fetch => {
            let request = decode!(FetchRequest);
            let mut guard = lock(state);
            // An injected session error is answered as the broker answers one: top level.
            let session_fault = error
                .filter(|c| matches!(*c, FETCH_SESSION_ID_NOT_FOUND | INVALID_FETCH_SESSION_EPOCH));
            let opened = match session_fault {
                Some(code) => Err(code),
                None => fetch::open(&mut guard, broker, &request, version),
            };
            let plan = match opened {
                Ok(plan) => plan,
                Err(code) => {
                    fetch::session_error(code)
                        .encode(out, version)
                        .map_err(|e| format!("{e:#}"))?;
                    set_size(out, start);
                    return Ok(reply);
                }
            };
            let (_, empty) =
                fetch::read(&mut guard, broker, &request, version, &plan, error, false);
            if !empty || request.max_wait_ms <= 0 || error.is_some() {
                fetch::read(&mut guard, broker, &request, version, &plan, error, true)
                    .0
                    .encode(out, version)
            } else {
                // Long poll: answer as soon as data arrives, or empty at max_wait.
                let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms as u64);
                let poll: Poll = Box::new(move |state: &mut State| {
                    let (_, empty) =
                        fetch::read(state, broker, &request, version, &plan, None, false);
                    (!empty || Instant::now() >= deadline).then(|| {
                        Ready::Fetch(
                            fetch::read(state, broker, &request, version, &plan, None, true).0,
                        )
                    })
                });
                return Ok(Reply::Wait { poll, version });
            }
        }
        ApiKey::JoinGroup => {
            let request = decode!(JoinGroupRequest);
            let mut state = lock(state);
            let response = match error.or_else(|| not_coordinator(&state, broker)) {
                Some(code) => Ok(JoinGroupResponse::default()
                    .with_error_code(code)
                    .with_generation_id(-1)
                    .with_member_id(request.member_id.clone())),
                None => {
                    let client = header.client_id.as_ref().map_or("", |c| c.as_str());
                    group::join(&mut state, &request, version, client)
                }
            };
            match response {
                Ok(response) => response.encode(out, version),
                Err(poll) => return Ok(Reply::Wait { poll, version }),
            }
        }
        ApiKey::SyncGroup => {
            let request = decode!(SyncGroupRequest);
            let mut state = lock(state);
            let response = match error.or_else(|| not_coordinator(&state, broker)) {
                Some(code) => Ok(SyncGroupResponse::default().with_error_code(code)),
                None => group::sync(&mut state, &request),
            };
            match response {
                Ok(response) => response.encode(out, version),
                Err(poll) => return Ok(Reply::Wait { poll, version }),
            }
        }
        ApiKey::Heartbeat => {
            let request = decode!(HeartbeatRequest);
            let mut state = lock(state);
            let code = error
                .or_else(|| not_coordinator(&state, broker))
                .unwrap_or_else(|| group::heartbeat(&mut state, &request));
            HeartbeatResponse::default()
                .with_error_code(code)
                .encode(out, version)
        }
        ApiKey::LeaveGroup => {
            let request = decode!(LeaveGroupRequest);
            let mut state = lock(state);
            match error.or_else(|| not_coordinator(&state, broker)) {
                Some(code) => LeaveGroupResponse::default().with_error_code(code),
                None => group::leave(&mut state, &request, version),
            }
            .encode(out, version)
        }
        ApiKey::OffsetCommit => {
            let request = decode!(OffsetCommitRequest);
            let mut state = lock(state);
            let error = error.or_else(|| not_coordinator(&state, broker));
            group::offset_commit(&mut state, &request, version, error).encode(out, version)
        }
        ApiKey::ShareGroupHeartbeat => {
            let request = decode!(ShareGroupHeartbeatRequest);
            let mut state = lock(state);
            match error.or_else(|| not_coordinator(&state, broker)) {
                Some(code) => ShareGroupHeartbeatResponse::default().with_error_code(code),
                None => share::heartbeat(&mut state, &request),
            }
            .encode(out, version)
        }
        ApiKey::ShareFetch => {
            let request = decode!(ShareFetchRequest);
            match share_fetch::fetch(&mut lock(state), broker, request, error) {
                Ok(response) => response.encode(out, version),
                Err(poll) => return Ok(Reply::Wait { poll, version }),
            }
        }
        ApiKey::ShareAcknowledge => {
            let request = decode!(ShareAcknowledgeRequest);
            share_fetch::acknowledge_request(&mut lock(state), broker, &request, error)
                .encode(out, version)
        }
        ApiKey::ConsumerGroupHeartbeat => {
            let request = decode!(ConsumerGroupHeartbeatRequest);
            let mut state = lock(state);
            match error.or_else(|| not_coordinator(&state, broker)) {
                Some(code) => ConsumerGroupHeartbeatResponse::default().with_error_code(code),
                None => consumer_group::heartbeat(&mut state, &request),
            }
            .encode(out, version)
        }
        ApiKey::ListOffsets => {
            let request = decode!(ListOffsetsRequest);
            list_offsets(&lock(state), broker, &request, error).encode(out, version)
        }
        ApiKey::FindCoordinator => {
            let request = decode!(FindCoordinatorRequest);
            let state = lock(state);
            let (id, port) = state.brokers[state.coordinator as usize];
            let code = error.unwrap_or(0);
            let host = StrBytes::from_static_str("127.0.0.1");
            let coordinators = request
                .coordinator_keys
                .iter()
                .map(|key| {
                    Coordinator::default()
                        .with_key(key.clone())
                        .with_node_id(BrokerId(id))
                        .with_host(host.clone())
                        .with_port(i32::from(port))
                        .with_error_code(code)
                })
                .collect();
            // v4 answers per key; earlier versions answer for the one key at the top level.
            let response = if version >= 4 {
                FindCoordinatorResponse::default().with_coordinators(coordinators)
            } else {
                FindCoordinatorResponse::default()
                    .with_error_code(code)
                    .with_node_id(BrokerId(id))
                    .with_host(host)
                    .with_port(i32::from(port))
            };
            response.encode(out, version)
        }
        ApiKey::OffsetFetch => {
            let request = decode!(OffsetFetchRequest);
            let state = lock(state);
            let error = error.or_else(|| not_coordinator(&state, broker));
            offset_fetch(&state, &request, error).encode(out, version)
        }
        ApiKey::InitProducerId => {
            let request = decode!(InitProducerIdRequest);
            let (code, id, epoch) = match error {
                Some(code) => (code, -1, -1),
                None => txn::init_producer_id(&mut lock(state), &request),
            };
            InitProducerIdResponse::default()
                .with_error_code(code)
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch)
                .encode(out, version)
        }
        ApiKey::AddPartitionsToTxn => {
            let request = decode!(AddPartitionsToTxnRequest);
            txn::add_partitions(&mut lock(state), &request, error).encode(out, version)
        }
        ApiKey::AddOffsetsToTxn => {
            let request = decode!(AddOffsetsToTxnRequest);
            txn::add_offsets(&mut lock(state), &request, error).encode(out, version)
        }
        ApiKey::TxnOffsetCommit => {
            let request = decode!(TxnOffsetCommitRequest);
            txn::offset_commit(&mut lock(state), &request, version, error).encode(out, version)
        }
        ApiKey::OffsetForLeaderEpoch => {
            let request = decode!(OffsetForLeaderEpochRequest);
            fetch::offsets_for_leader_epoch(&lock(state), broker, &request, error)
                .encode(out, version)
        }
        ApiKey::EndTxn => {
            let request = decode!(EndTxnRequest);
            let (code, producer_id, epoch) = match error {
                Some(code) => (code, -1, -1),
                None => txn::end_txn(&mut lock(state), &request, version),
            };
            let mut response = EndTxnResponse::default().with_error_code(code);
            if version >= 5 {
                response.producer_id = ProducerId(producer_id);
                response.producer_epoch = epoch;
            }
            response.encode(out, version)
        }
        ApiKey::CreateTopics => {
            let request = decode!(CreateTopicsRequest);
            admin::create_topics(&mut lock(state), &request, error).encode(out, version)
        }
        ApiKey::ListGroups => {
            let request = decode!(ListGroupsRequest);
            group_admin::list_groups(&lock(state), broker, &request, version, error)
                .encode(out, version)
        }
        ApiKey::DescribeGroups => {
            let request = decode!(DescribeGroupsRequest);
            group_admin::describe_groups(&lock(state), broker, &request, error).encode(out, version)
        }
        ApiKey::DeleteGroups => {
            let request = decode!(DeleteGroupsRequest);
            group_admin::delete_groups(&mut lock(state), broker, &request, error)
                .encode(out, version)
        }
        ApiKey::CreatePartitions => {
            let request = decode!(CreatePartitionsRequest);
            admin::create_partitions(&mut lock(state), &request, error).encode(out, version)
        }
        ApiKey::DeleteRecords => {
            let request = decode!(DeleteRecordsRequest);
            admin::delete_records(&mut lock(state), broker, &request, error).encode(out, version)
        }
        ApiKey::OffsetDelete => {
            let request = decode!(OffsetDeleteRequest);
            group_admin::offset_delete(&mut lock(state), broker, &request, error)
                .encode(out, version)
        }
        ApiKey::DescribeConfigs => {
            let request = decode!(DescribeConfigsRequest);
            configs::describe(&lock(state), broker, &request, error).encode(out, version)
        }
        ApiKey::IncrementalAlterConfigs => {
            let request = decode!(IncrementalAlterConfigsRequest);
            configs::incremental_alter(&mut lock(state), &request, error).encode(out, version)
        }
        ApiKey::SaslHandshake => {
            let request = decode!(SaslHandshakeRequest);
            session.handshake(&request, version).encode(out, version)
        }
        ApiKey::SaslAuthenticate => {
            let request = decode!(SaslAuthenticateRequest);
            session.authenticate(&request).encode(out, version)
        }
        _ => return Err(format!("{api:?} is not served by the mock")),
    };
    encoded.map_err(|e| format!("encode {api:?} v{version}: {e:#}"))?;
    if matches!(reply, Reply::Nothing) {
        out.truncate(start);
        return Ok(reply);
    }
    set_size(out, start);
    Ok(reply)
}

/// NOT_COORDINATOR when a group request reaches a broker that is not the coordinator.
fn not_coordinator(state: &State, broker: i32) -> Option<i16> {
    (state.coordinator != broker).then_some(NOT_COORDINATOR)
}

fn metadata(state: &mut State, request: &MetadataRequest, error: Option<i16>) -> MetadataResponse {
    // Topics created by this request: Kafka answers them LEADER_NOT_AVAILABLE until their
    // creation is done (the client asks again).
    let mut created = Vec::new();
    if let (Some(partitions), Some(topics), None) = (state.auto_create, &request.topics, error) {
        if request.allow_auto_topic_creation {
            for t in topics {
                let Some(name) = &t.name else { continue };
                let name = name.0.as_str();
                if !state.topics.contains_key(name) && admin::name_error(name).is_none() {
                    state.create_topic(name, partitions);
                    created.push(name.to_owned());
                }
            }
        }
    }
    let state = &*state;
    let brokers = state
        .brokers
        .iter()
        .filter(|(id, _)| !state.down.contains(id))
        .map(|(id, port)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(*id))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(i32::from(*port))
        })
        .collect();
    // v12+ may name a topic by id alone (KIP-516): an unknown id is answered UNKNOWN_TOPIC_ID.
    let mut unknown_ids = Vec::new();
    let names: Vec<String> = match &request.topics {
        None => state.topics.keys().cloned().collect(),
        Some(topics) => topics
            .iter()
            .filter_map(|t| match &t.name {
                Some(n) => Some(n.0.to_string()),
                None => {
                    let name = state.topic_by_id(t.topic_id.as_u128()).map(str::to_owned);
                    if name.is_none() {
                        unknown_ids.push(t.topic_id);
                    }
                    name
                }
            })
            .collect(),
    };
    let unknown = unknown_ids.into_iter().map(|id| {
        MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_error_code(UNKNOWN_TOPIC_ID)
    });
    let topics = names
        .into_iter()
        .map(|topic| {
            let id = state.topic_ids.get(&topic).copied().unwrap_or(0);
            let response = MetadataResponseTopic::default()
                .with_name(Some(topic_name(&topic)))
                .with_topic_id(uuid::Uuid::from_u128(id));
            match (state.topics.get(&topic), error) {
                (_, Some(code)) => response.with_error_code(code),
                (Some(_), None) if created.contains(&topic) => {
                    response.with_error_code(LEADER_NOT_AVAILABLE)
                }
                (None, None) => response.with_error_code(UNKNOWN_TOPIC_OR_PARTITION),
                (Some(logs), None) => response.with_partitions(
                    logs.iter()
                        .enumerate()
                        .map(|(p, log)| {
                            MetadataResponsePartition::default()
                                .with_partition_index(p as i32)
                                .with_leader_id(BrokerId(log.leader))
                                .with_leader_epoch(log.leader_epoch)
                                .with_replica_nodes(vec![BrokerId(log.leader)])
                                .with_isr_nodes(vec![BrokerId(log.leader)])
                        })
                        .collect(),
                ),
            }
        })
        .chain(unknown)
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_static_str("spate-mock")))
        .with_controller_id(BrokerId(state.controller()))
        .with_topics(topics)
}

/// The features the brokers support and the cluster finalized (ApiVersions v3+, KIP-584):
/// `transaction.version` (KIP-890), listed as finalized only at a level above 0, as Kafka does.
fn features(state: &State, response: &mut ApiVersionsResponse) {
    let supported = |name: &'static str, max: i16| {
        api_versions_response::SupportedFeatureKey::default()
            .with_name(StrBytes::from_static_str(name))
            .with_min_version(0)
            .with_max_version(max)
    };
    let finalized = |name: &'static str, level: i16| {
        api_versions_response::FinalizedFeatureKey::default()
            .with_name(StrBytes::from_static_str(name))
            .with_min_version_level(level)
            .with_max_version_level(level)
    };
    // `group.version` 1 turns the KIP-848 protocol on, as in a cluster Kafka 4.x formatted.
    response.supported_features = vec![
        supported("transaction.version", 2),
        supported("group.version", 1),
    ];
    response.finalized_features_epoch = state.features_epoch;
    response.finalized_features = vec![finalized("group.version", 1)];
    if state.transaction_version > 0 {
        response
            .finalized_features
            .push(finalized("transaction.version", state.transaction_version));
    }
}

fn produce(
    state: &mut State,
    broker: i32,
    request: ProduceRequest,
    version: i16,
    error: Option<i16>,
) -> ProduceResponse {
    let txn_id = request.transactional_id.as_ref().map(|t| t.0.to_string());
    let max_bytes = state.max_message_bytes;
    let mut hinted: Vec<i32> = Vec::new();
    let responses = request
        .topic_data
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partition_data
                .into_iter()
                .map(|p| {
                    let answer = PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(0);
                    if let Some(code) = error {
                        return answer.with_error_code(code);
                    }
                    let leads = state
                        .topics
                        .get(topic.name.0.as_str())
                        .and_then(|l| l.get(p.index as usize))
                        .is_some_and(|log| log.leader == broker);
                    if let (Some(id), true) = (txn_id.as_deref(), version >= 12 && leads) {
                        let code = add_by_produce(state, id, &topic.name.0, &p);
                        if code != 0 {
                            return answer.with_error_code(code);
                        }
                    }
                    let txn = txn_id.as_deref().and_then(|id| state.transactions.get(id));
                    let added = |producer_id: i64| {
                        txn.is_some_and(|t| {
                            t.producer_id == producer_id
                                && t.partitions.contains(&(topic.name.0.to_string(), p.index))
                        })
                    };
                    let Some(log) = state
                        .topics
                        .get_mut(topic.name.0.as_str())
                        .and_then(|l| l.get_mut(p.index as usize))
                    else {
                        return answer.with_error_code(UNKNOWN_TOPIC_OR_PARTITION);
                    };
                    if log.leader != broker {
                        let answer = answer.with_error_code(NOT_LEADER_OR_FOLLOWER);
                        if version < 10 {
                            return answer;
                        }
                        // KIP-951: the leader, and its endpoint below.
                        hinted.push(log.leader);
                        return answer.with_current_leader(
                            produce_response::LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(log.leader))
                                .with_leader_epoch(log.leader_epoch),
                        );
                    }
                    match log.append(p.records.unwrap_or_default(), max_bytes, added) {
                        Ok((base_offset, code)) => {
                            answer.with_error_code(code).with_base_offset(base_offset)
                        }
                        Err(code) => answer.with_error_code(code),
                    }
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions)
        })
        .collect();
    // Kafka's handleProduceRequest: the endpoints of the leaders it named (KIP-951).
    let node_endpoints = state.endpoints(hinted, |id, port| {
        produce_response::NodeEndpoint::default()
            .with_node_id(BrokerId(id))
            .with_host(StrBytes::from_static_str("127.0.0.1"))
            .with_port(port)
    });
    ProduceResponse::default()
        .with_responses(responses)
        .with_node_endpoints(node_endpoints)
}

/// Produce v12+ of a transactional producer (KIP-890): in a v2 cluster the partition joins
/// the transaction with the batch; a cluster without `transaction.version` 2 refuses the
/// version (UNSUPPORTED_VERSION, as Kafka 4.x brokers answer it: twmb/franz-go#1017).
fn add_by_produce(
    state: &mut State,
    txn_id: &str,
    topic: &str,
    data: &produce_request::PartitionProduceData,
) -> i16 {
    if state.transaction_version < 2 {
        return UNSUPPORTED_VERSION;
    }
    let first = data
        .records
        .clone()
        .and_then(|records| crate::record::RecordBatches::new(records).next())
        .and_then(Result::ok);
    match first {
        Some(batch) if batch.header().is_transactional() => {
            let h = batch.header();
            txn::add_by_produce(
                state,
                txn_id,
                h.producer_id,
                h.producer_epoch,
                topic,
                data.index,
            )
        }
        // Not transactional data, or bytes the log refuses on its own.
        _ => 0,
    }
}

fn list_offsets(
    state: &State,
    broker: i32,
    request: &ListOffsetsRequest,
    error: Option<i16>,
) -> ListOffsetsResponse {
    let committed_only = request.isolation_level == 1;
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let answer = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    let log = state
                        .topics
                        .get(t.name.0.as_str())
                        .and_then(|l| l.get(p.partition_index as usize));
                    match (error, log) {
                        (Some(code), _) => answer.with_error_code(code),
                        (None, None) => answer.with_error_code(UNKNOWN_TOPIC_OR_PARTITION),
                        (None, Some(log)) if log.leader != broker => {
                            answer.with_error_code(NOT_LEADER_OR_FOLLOWER)
                        }
                        (None, Some(log)) => answer
                            .with_offset(log.offset_for(p.timestamp, committed_only))
                            .with_leader_epoch(log.leader_epoch),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

fn offset_fetch(
    state: &State,
    request: &OffsetFetchRequest,
    error: Option<i16>,
) -> OffsetFetchResponse {
    let group = request.group_id.0.to_string();
    // No topics: every offset the group has committed, as Kafka answers.
    let all: Vec<(TopicName, Vec<i32>)> = match &request.topics {
        Some(topics) => topics
            .iter()
            .map(|t| (t.name.clone(), t.partition_indexes.clone()))
            .collect(),
        None => {
            let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
            for (g, t, p) in state.offsets.keys() {
                if *g == group {
                    by_topic.entry(t).or_default().push(*p);
                }
            }
            by_topic
                .into_iter()
                .map(|(t, mut ps)| {
                    ps.sort_unstable();
                    (topic_name(t), ps)
                })
                .collect()
        }
    };
    let topics = all
        .iter()
        .map(|(name, partition_indexes)| {
            let partitions = partition_indexes
                .iter()
                .map(|p| {
                    let key = (group.clone(), name.0.to_string(), *p);
                    let unstable = request.require_stable
                        && txn::offset_pending(state, &group, name.0.as_str(), *p);
                    let code = match error {
                        Some(code) => code,
                        None if unstable => UNSTABLE_OFFSET_COMMIT,
                        None => 0,
                    };
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(*p)
                        .with_committed_offset(*state.offsets.get(&key).unwrap_or(&-1))
                        .with_committed_leader_epoch(*state.offset_epochs.get(&key).unwrap_or(&-1))
                        .with_error_code(code)
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}
