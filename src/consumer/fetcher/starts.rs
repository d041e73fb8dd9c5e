//! Where partitions start: offset lookups (ListOffsets) for the beginning, the end, a
//! timestamp or the reset policy.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Chunk, PartitionState, Tp, OFFSET_OUT_OF_RANGE};
use crate::cluster::{Client, OffsetSpec};
use crate::consumer::config::{ConsumerConfig, IsolationLevel, OffsetReset};
use crate::consumer::Offset;
use crate::error::{Action, Error, KafkaCode};

/// Looks up the offsets of partitions that start at the beginning, the end, a timestamp, or
/// (with no committed offset) the reset policy.
pub(super) async fn resolve_starts(
    client: &Client,
    config: &ConsumerConfig,
    parts: &mut HashMap<Tp, PartitionState>,
    chunks: &mpsc::Sender<Chunk>,
) {
    let mut wanted: HashMap<(Arc<str>, OffsetSpec), Vec<i32>> = HashMap::new();
    let now = tokio::time::Instant::now();
    for (tp, state) in parts.iter() {
        if state.offset.is_some() || state.retry_at.is_some_and(|t| t > now) {
            continue;
        }
        let spec = match state.start {
            Offset::At(_) => continue,
            Offset::Beginning => OffsetSpec::Earliest,
            Offset::End | Offset::FromEnd(_) => OffsetSpec::Latest,
            Offset::Timestamp(ts) => OffsetSpec::Timestamp(ts),
            Offset::Reset => match config.auto_offset_reset {
                OffsetReset::Earliest => OffsetSpec::Earliest,
                OffsetReset::Latest => OffsetSpec::Latest,
                OffsetReset::Error => continue,
            },
        };
        wanted.entry((tp.0.clone(), spec)).or_default().push(tp.1);
    }
    // Partitions told to fail rather than reset.
    let failing: Vec<Tp> = parts
        .iter()
        .filter(|(_, s)| {
            s.offset.is_none()
                && s.start == Offset::Reset
                && config.auto_offset_reset == OffsetReset::Error
        })
        .map(|(tp, _)| tp.clone())
        .collect();
    for tp in failing {
        parts.remove(&tp);
        let error = Error::kafka(
            KafkaCode(OFFSET_OUT_OF_RANGE),
            format!(
                "{}-{}: no offset to start from, and auto.offset.reset=error",
                tp.0, tp.1
            ),
            None,
        );
        let _ = chunks.send(Chunk::Failed(error)).await;
    }
    for ((topic, spec), partitions) in wanted {
        let committed = config.isolation_level == IsolationLevel::ReadCommitted;
        match client
            .list_offsets_isolated(&topic, &partitions, spec, committed)
            .await
        {
            Ok(listed) => {
                for o in listed {
                    if let Some(state) = parts.get_mut(&(topic.clone(), o.partition)) {
                        // A timestamp past the last record resolves to the end.
                        state.offset = Some(if o.offset < 0 { i64::MAX } else { o.offset });
                        if spec == OffsetSpec::Latest {
                            state.snap = Some(match state.start {
                                Offset::FromEnd(n) => n.max(0),
                                _ => 0,
                            });
                        }
                    }
                }
                // i64::MAX above is "the end": look it up.
                for p in &partitions {
                    if let Some(state) = parts.get_mut(&(topic.clone(), *p)) {
                        if state.offset == Some(i64::MAX) {
                            state.offset = None;
                            state.start = Offset::End;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::debug!(topic = %topic, error = %e, "offset lookup failed; retrying");
                for p in &partitions {
                    if let Some(state) = parts.get_mut(&(topic.clone(), *p)) {
                        state.failed(config, now);
                    }
                }
                if e.action() == Action::Fatal {
                    let _ = chunks.send(Chunk::Failed(e)).await;
                }
            }
        }
    }
}
