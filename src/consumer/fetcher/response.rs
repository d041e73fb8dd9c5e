//! What a fetch answer does: positions move on, records go to decoding, errors are reported
//! or retried.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Chunk, PartitionState, Tp, OFFSET_OUT_OF_RANGE};

use crate::cluster::{Client, LeaderHint, Topics};
use crate::consumer::aborted::AbortedFilter;
use crate::consumer::config::{ConsumerConfig, IsolationLevel, OffsetReset};
use crate::consumer::decode::{records_error, Buffer, Pending};
use crate::consumer::Offset;
use crate::error::codes::{
    FENCED_LEADER_EPOCH, NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION,
};
use crate::error::{Action, Error, KafkaCode};
use crate::record::{DecodeOptions, RecordBatches};
use crate::wire::fetch::FetchResponse;

/// Moves positions on and starts decoding what a fetch returned.
#[allow(clippy::too_many_arguments)]
pub(super) fn handle_response(
    client: &Client,
    config: &ConsumerConfig,
    parts: &mut HashMap<Tp, PartitionState>,
    (epochs, incremental): (Vec<(Tp, u64, i64)>, bool),
    result: Result<FetchResponse, Error>,
    buffer: &Arc<Buffer>,
    options: &DecodeOptions,
) -> Vec<Chunk> {
    // The broker's fetch is over, whatever epoch each partition is in now.
    for (tp, _, _) in &epochs {
        if let Some(state) = parts.get_mut(tp) {
            state.in_flight = false;
        }
    }
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            let now = tokio::time::Instant::now();
            for (tp, _, _) in &epochs {
                if let Some(state) = parts.get_mut(tp) {
                    state.in_flight = false;
                    state.failed(config, now);
                }
            }
            if matches!(e.action(), Action::RefreshMetadata | Action::Reconnect) {
                tracing::debug!(error = %e, "fetch failed");
                refresh_later(
                    client,
                    epochs.iter().map(|(tp, _, _)| tp.0.to_string()).collect(),
                );
                return Vec::new();
            }
            // Retrying cannot fix it (a response that breaks the protocol, an unsupported
            // version): the application hears of every such failure, and the partitions back
            // off further each time instead of asking ten times a second.
            tracing::warn!(error = %e, "fetch failed");
            return vec![Chunk::Failed(e, None)];
        }
    };
    crate::telemetry::throttled(client.stats(), response.throttle_time_ms);
    let mut chunks = Vec::new();
    let mut refresh = Vec::new();
    let mut answered: Vec<Tp> = Vec::new();
    for topic in response.topics {
        for p in topic.partitions {
            let tp: Tp = (Arc::from(topic.name.as_str()), p.partition_index);
            answered.push(tp.clone());
            let Some(&(_, epoch, fetched_at)) = epochs.iter().find(|(t, _, _)| *t == tp) else {
                continue;
            };
            let Some(state) = parts.get_mut(&tp) else {
                continue; // unassigned meanwhile
            };
            if state.epoch != epoch {
                continue; // seeked meanwhile: these records are from before
            }
            if p.error_code != 0 {
                let code = KafkaCode(p.error_code);
                if p.error_code == OFFSET_OUT_OF_RANGE {
                    // Per auto.offset.reset (`none` hands the application the error).
                    tracing::warn!(topic = %tp.0, partition = tp.1, offset = fetched_at, policy = ?config.auto_offset_reset, "offset out of range; resetting by the policy");
                    state.offset = None;
                    state.start = Offset::Reset;
                    continue;
                }
                // KIP-951: the broker named the new leader; go there at once, with no backoff
                // and no metadata round trip.
                if let (NOT_LEADER_OR_FOLLOWER | FENCED_LEADER_EPOCH, Some(leader)) =
                    (p.error_code, p.current_leader)
                {
                    let hint = LeaderHint {
                        topic: tp.0.to_string(),
                        partition: tp.1,
                        leader: leader.leader_id,
                        leader_epoch: leader.leader_epoch,
                    };
                    let outcome = client.apply_leader_hints(&[hint], &[]);
                    if outcome.moved(&tp.0, tp.1) {
                        tracing::debug!(topic = %tp.0, partition = tp.1, leader = leader.leader_id, "fetch: leader moved (hint)");
                        continue;
                    }
                    if outcome.covers(&tp.0, tp.1) {
                        // Already there: back off, with no metadata refresh.
                        state.failed(config, tokio::time::Instant::now());
                        continue;
                    }
                }
                state.failed(config, tokio::time::Instant::now());
                let action = code.action();
                if action == Action::RefreshMetadata {
                    refresh.push(tp.0.to_string());
                }
                // Retrying cannot fix it (authorization, a topic that is gone): the
                // application hears of it, for this partition, each time it comes back.
                let gone = action == Action::RefreshMetadata
                    && state.failures > 2
                    && client
                        .metadata()
                        .topics
                        .get(&*tp.0)
                        .is_none_or(|t| t.error == Some(KafkaCode(UNKNOWN_TOPIC_OR_PARTITION)));
                if action == Action::Fatal || gone {
                    tracing::warn!(topic = %tp.0, partition = tp.1, error = %code, "fetch error");
                    let error = Error::kafka(code, format!("fetch {}-{}", tp.0, tp.1), None);
                    chunks.push(Chunk::Failed(error, Some((tp, epoch))));
                } else {
                    tracing::debug!(topic = %tp.0, partition = tp.1, error = %code, "fetch error; retrying");
                }
                continue;
            }
            let end = match config.isolation_level {
                IsolationLevel::ReadCommitted if p.last_stable_offset >= 0 => p.last_stable_offset,
                _ => p.high_watermark,
            };
            state.end = Some(end);
            if let Some(diverging) = p.diverging_epoch {
                // KIP-320: the log was truncated below our position (an unclean election):
                // the records from `end_offset` on are not the ones we read. Never skipped
                // silently: under `none` the application is told and the partition halts
                // until it seeks; otherwise reading resumes where the logs part, with a
                // warning, as Java does.
                let divergent = diverging.end_offset.min(fetched_at);
                if config.auto_offset_reset == OffsetReset::Error {
                    tracing::warn!(topic = %tp.0, partition = tp.1, offset = fetched_at, divergent, "log truncation detected");
                    state.halted = true;
                    let error = Error::LogTruncation {
                        topic: tp.0.to_string(),
                        partition: tp.1,
                        offset: fetched_at,
                        divergent_offset: divergent,
                        divergent_epoch: diverging.epoch,
                    };
                    chunks.push(Chunk::Failed(error, Some((tp, epoch))));
                } else {
                    tracing::warn!(topic = %tp.0, partition = tp.1, offset = fetched_at, divergent, "log truncation detected; reading on from the first offset that diverged");
                    state.offset = Some(divergent);
                    state.last_fetched_epoch = diverging.epoch;
                    state.at_end = false;
                    chunks.push(Chunk::Truncated(tp, epoch, divergent));
                }
                continue;
            }
            if let Some(before_end) = state.snap.take() {
                let log_start = p.log_start_offset.max(0);
                let target = end.saturating_sub(before_end).max(log_start);
                if target != fetched_at {
                    // Fetch again from where the end says to start; drop these records.
                    state.offset = Some(target);
                    continue;
                }
            }
            if p.records.is_empty() {
                crate::telemetry::fetched(client.stats(), &tp.0, tp.1, 0, end - fetched_at);
                state.failures = 0;
                if fetched_at >= end && !state.at_end {
                    state.at_end = true;
                    chunks.push(Chunk::End(tp, epoch, fetched_at));
                }
                continue;
            }
            // Where the next fetch starts: after the last complete batch.
            let mut next = fetched_at;
            let mut raw = Vec::new();
            let mut corrupt = None;
            let mut batches = RecordBatches::new(p.records.clone());
            for batch in batches.by_ref() {
                match batch {
                    Ok(b) => {
                        next = next.max(b.header().next_offset());
                        raw.push(b);
                    }
                    Err(e) => {
                        // A corrupt batch: the good ones before it are delivered, then the
                        // application hears of it; the position stays on it, and it is
                        // fetched again only after a backoff, longer each time.
                        corrupt = Some(Chunk::Failed(
                            records_error(&tp, e),
                            Some((tp.clone(), epoch)),
                        ));
                        state.failed(config, tokio::time::Instant::now());
                        break;
                    }
                }
            }
            if raw.is_empty() {
                if let Some(failed) = corrupt {
                    chunks.push(failed);
                    continue;
                }
                if batches.partial().is_some() && state.max_bytes < config.fetch_max_bytes {
                    // A batch larger than we asked for: ask for more next time.
                    state.max_bytes = state
                        .max_bytes
                        .saturating_mul(2)
                        .min(config.fetch_max_bytes);
                }
                continue;
            }
            state.offset = Some(next);
            if let Some(last) = raw.last() {
                let leader_epoch = last.header().partition_leader_epoch;
                if leader_epoch >= 0 {
                    state.last_fetched_epoch = leader_epoch;
                }
            }
            let aborted = p
                .aborted_transactions
                .unwrap_or_default()
                .into_iter()
                .map(|a| (a.producer_id, a.first_offset));
            let filter = (config.isolation_level == IsolationLevel::ReadCommitted)
                .then(|| AbortedFilter::new(aborted));
            let reached_end = next >= end;
            state.at_end = reached_end;
            let raw_bytes = p.records.len();
            crate::telemetry::fetched(client.stats(), &tp.0, tp.1, raw_bytes, end - next);
            let mut pending = Pending::new(
                tp.clone(),
                epoch,
                p.high_watermark,
                fetched_at,
                raw,
                filter,
                buffer.take(raw_bytes),
            );
            let (buffer, options) = (buffer.clone(), *options);
            chunks.push(Chunk::Decoding(tokio::spawn(async move {
                pending.decode_while_room(&buffer, &options);
                pending
            })));
            if let Some(failed) = corrupt {
                chunks.push(failed);
            } else {
                state.failures = 0;
                if reached_end {
                    chunks.push(Chunk::End(tp, epoch, next));
                }
            }
        }
    }
    if incremental {
        // An incremental answer leaves out partitions with no records whose end did not move:
        // for them, the end they last reported still holds.
        for (tp, epoch, fetched_at) in &epochs {
            if answered.contains(tp) {
                continue;
            }
            let Some(state) = parts.get_mut(tp).filter(|s| s.epoch == *epoch) else {
                continue;
            };
            let Some(end) = state.end else {
                continue;
            };
            if let Some(before_end) = state.snap.take() {
                let target = end.saturating_sub(before_end).max(0);
                if target != *fetched_at {
                    state.offset = Some(target);
                    continue;
                }
            }
            state.failures = 0;
            if *fetched_at >= end && !state.at_end {
                state.at_end = true;
                chunks.push(Chunk::End(tp.clone(), *epoch, *fetched_at));
            }
        }
    }
    if !refresh.is_empty() {
        refresh_later(client, refresh);
    }
    chunks
}

pub(super) fn refresh_later(client: &Client, mut topics: Vec<String>) {
    topics.sort();
    topics.dedup();
    let client = client.clone();
    tokio::spawn(async move {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(e) = client.refresh_metadata(Topics::Only(&names)).await {
            tracing::debug!(error = %e, "metadata refresh after a fetch error failed");
        }
    });
}
