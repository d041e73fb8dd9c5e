//! The embedded cluster's request handlers.

use std::sync::Mutex;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, InitProducerIdRequest, InitProducerIdResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, ProducerId, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::{append, lock, State};
use crate::wire::versions::{supported, supported_api_versions};
use crate::wire::ApiKey;

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const UNSUPPORTED_VERSION: i16 = 35;

/// The APIs the mock answers.
const SERVED: &[ApiKey] = &[
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::Produce,
    ApiKey::InitProducerId,
];

/// Handles one request frame (size prefix removed), writing the response frame to `out`.
/// Returns whether there is a response (Produce with acks=0 has none). `error` is an injected
/// error code. A request the mock cannot read is an `Err` naming why; the connection closes.
pub(super) fn handle(
    state: &Mutex<State>,
    broker: i32,
    api: ApiKey,
    mut frame: Bytes,
    error: Option<i16>,
    out: &mut BytesMut,
) -> Result<bool, String> {
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(|e| format!("request header: {e:#}"))?;
    let in_range = supported(api).is_some_and(|r| (r.min..=r.max).contains(&version));
    if !SERVED.contains(&api) || (!in_range && api != ApiKey::ApiVersions) {
        return Err(format!("{api:?} v{version} is not served by the mock"));
    }
    let start = out.len();
    out.put_i32(0);
    let response_header = ResponseHeader::default().with_correlation_id(header.correlation_id);
    response_header
        .encode(out, api.response_header_version(version))
        .map_err(|e| format!("{e:#}"))?;
    let encoded = match api {
        ApiKey::ApiVersions => {
            let (code, version) = if in_range {
                (error.unwrap_or(0), version)
            } else {
                // KIP-511: answer in v0 with what we do speak.
                (UNSUPPORTED_VERSION, 0)
            };
            let keys = supported_api_versions()
                .into_iter()
                .filter(|k| ApiKey::try_from(k.api_key).is_ok_and(|api| SERVED.contains(&api)))
                .collect();
            ApiVersionsResponse::default()
                .with_error_code(code)
                .with_api_keys(keys)
                .encode(out, version)
        }
        ApiKey::Metadata => {
            let request =
                MetadataRequest::decode(&mut frame, version).map_err(|e| format!("{e:#}"))?;
            metadata(&lock(state), &request, error).encode(out, version)
        }
        ApiKey::InitProducerId => {
            let _request =
                InitProducerIdRequest::decode(&mut frame, version).map_err(|e| format!("{e:#}"))?;
            let mut state = lock(state);
            let response = match error {
                Some(code) => InitProducerIdResponse::default()
                    .with_error_code(code)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
                None => {
                    // Every call gets a fresh id at epoch 0: a new id also restarts sequences.
                    state.next_producer_id += 1;
                    InitProducerIdResponse::default()
                        .with_producer_id(ProducerId(state.next_producer_id))
                        .with_producer_epoch(0)
                }
            };
            response.encode(out, version)
        }
        ApiKey::Produce => {
            let request =
                ProduceRequest::decode(&mut frame, version).map_err(|e| format!("{e:#}"))?;
            let acks = request.acks;
            let response = produce(&mut lock(state), broker, request, error);
            if acks == 0 {
                out.truncate(start);
                return Ok(false);
            }
            response.encode(out, version)
        }
        _ => unreachable!("checked against SERVED"),
    };
    encoded.map_err(|e| format!("encode {api:?} v{version}: {e:#}"))?;
    let len = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(true)
}

fn metadata(state: &State, request: &MetadataRequest, error: Option<i16>) -> MetadataResponse {
    let brokers = state
        .brokers
        .iter()
        .map(|(id, port)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(*id))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(i32::from(*port))
        })
        .collect();
    let names: Vec<String> = match &request.topics {
        None => state.topics.keys().cloned().collect(),
        Some(topics) => topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .collect(),
    };
    let topics = names
        .into_iter()
        .map(|name| {
            let topic = MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(name.clone()))));
            match (state.topics.get(&name), error) {
                (_, Some(code)) => topic.with_error_code(code),
                (None, None) => topic.with_error_code(UNKNOWN_TOPIC_OR_PARTITION),
                (Some(logs), None) => topic.with_partitions(
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
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_static_str("spate-mock")))
        .with_controller_id(BrokerId(state.brokers[0].0))
        .with_topics(topics)
}

fn produce(
    state: &mut State,
    broker: i32,
    request: ProduceRequest,
    error: Option<i16>,
) -> ProduceResponse {
    let responses = request
        .topic_data
        .into_iter()
        .map(|topic| {
            let max_bytes = state.max_message_bytes;
            let mut logs = state.topics.get_mut(topic.name.0.as_str());
            let partitions = topic
                .partition_data
                .into_iter()
                .map(|p| {
                    let answer = PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(0);
                    let Some(log) = logs
                        .as_deref_mut()
                        .and_then(|l| l.get_mut(p.index as usize))
                    else {
                        return answer.with_error_code(UNKNOWN_TOPIC_OR_PARTITION);
                    };
                    if let Some(code) = error {
                        return answer.with_error_code(code);
                    }
                    if log.leader != broker {
                        return answer.with_error_code(NOT_LEADER_OR_FOLLOWER);
                    }
                    match append(log, p.records.unwrap_or_default(), max_bytes) {
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
    ProduceResponse::default().with_responses(responses)
}
