//! Where partitions start: offset lookups (ListOffsets) for the beginning, the end, a
//! timestamp or the reset policy. Lookups run beside the fetches, never in their way: one slow
//! lookup (retried for up to `default.api.timeout.ms`) holds up only its own partitions.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::stream::FuturesUnordered;

use super::{Chunk, PartitionState, Tp, OFFSET_OUT_OF_RANGE};
use crate::cluster::{Client, ListedOffset, OffsetSpec};
use crate::consumer::config::{ConsumerConfig, IsolationLevel, OffsetReset};
use crate::consumer::Offset;
use crate::error::{Action, Error, KafkaCode};

/// One topic's lookup: the partitions it covers (with their epochs when it started) and what
/// the brokers answered.
pub(super) struct Looked {
    topic: Arc<str>,
    spec: OffsetSpec,
    partitions: Vec<(i32, u64)>,
    result: Result<Vec<ListedOffset>, Error>,
}

pub(super) type Lookup = Pin<Box<dyn Future<Output = Looked> + Send>>;

/// Starts lookups for partitions that start at the beginning, the end, a timestamp, or (with no
/// committed offset) the reset policy, and have none under way. Returns the failures of
/// partitions told not to reset (`auto.offset.reset=error`), which stop.
pub(super) fn start_lookups(
    client: &Client,
    config: &ConsumerConfig,
    parts: &mut HashMap<Tp, PartitionState>,
    lookups: &mut FuturesUnordered<Lookup>,
) -> Vec<Chunk> {
    // Partitions (with their epochs) to look up, by topic and what to look for.
    type Wanted = HashMap<(Arc<str>, OffsetSpec), Vec<(i32, u64)>>;
    let mut wanted: Wanted = HashMap::new();
    let now = tokio::time::Instant::now();
    let mut chunks = Vec::new();
    let mut failing = Vec::new();
    for (tp, state) in parts.iter_mut() {
        if state.offset.is_some()
            || state.looking_up
            || state.halted
            || state.retry_at.is_some_and(|t| t > now)
        {
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
                OffsetReset::Error => {
                    failing.push((tp.clone(), state.epoch));
                    continue;
                }
            },
        };
        state.looking_up = true;
        wanted
            .entry((tp.0.clone(), spec))
            .or_default()
            .push((tp.1, state.epoch));
    }
    for (tp, epoch) in failing {
        // Halted until the application seeks (a seek gives the partition a new start).
        if let Some(state) = parts.get_mut(&tp) {
            state.halted = true;
        }
        let error = Error::kafka(
            KafkaCode(OFFSET_OUT_OF_RANGE),
            format!(
                "{}-{}: no offset to start from, and auto.offset.reset=error",
                tp.0, tp.1
            ),
            None,
        );
        chunks.push(Chunk::Failed(error, Some((tp, epoch))));
    }
    let committed = config.isolation_level == IsolationLevel::ReadCommitted;
    for ((topic, spec), partitions) in wanted {
        let client = client.clone();
        lookups.push(Box::pin(async move {
            let indexes: Vec<i32> = partitions.iter().map(|(p, _)| *p).collect();
            let result = client
                .list_offsets_isolated(&topic, &indexes, spec, committed)
                .await;
            Looked {
                topic,
                spec,
                partitions,
                result,
            }
        }));
    }
    chunks
}

/// Applies a finished lookup to the partitions still in the epoch it was made for.
pub(super) fn finish_lookup(
    config: &ConsumerConfig,
    parts: &mut HashMap<Tp, PartitionState>,
    looked: Looked,
) -> Vec<Chunk> {
    let Looked {
        topic,
        spec,
        partitions,
        result,
    } = looked;
    let now = tokio::time::Instant::now();
    // Partitions seeked or reassigned meanwhile wait for a lookup of their own.
    let current: Vec<i32> = partitions
        .iter()
        .filter_map(|(p, epoch)| {
            let state = parts.get_mut(&(topic.clone(), *p))?;
            (state.epoch == *epoch).then(|| {
                state.looking_up = false;
                *p
            })
        })
        .collect();
    match result {
        Ok(listed) => {
            for o in listed
                .into_iter()
                .filter(|o| current.contains(&o.partition))
            {
                let Some(state) = parts.get_mut(&(topic.clone(), o.partition)) else {
                    continue;
                };
                if o.offset < 0 {
                    // A timestamp past the last record resolves to the end: look that up.
                    state.start = Offset::End;
                    continue;
                }
                state.offset = Some(o.offset);
                if spec == OffsetSpec::Latest {
                    state.snap = Some(match state.start {
                        Offset::FromEnd(n) => n.max(0),
                        _ => 0,
                    });
                }
            }
            Vec::new()
        }
        Err(e) => {
            tracing::debug!(topic = %topic, error = %e, "offset lookup failed; retrying");
            for p in &current {
                if let Some(state) = parts.get_mut(&(topic.clone(), *p)) {
                    state.failed(config, now);
                }
            }
            if e.action() != Action::Fatal {
                return Vec::new();
            }
            // The application hears of every failure retrying cannot fix (it backs off).
            match current.first() {
                Some(p) => {
                    let tp = (topic.clone(), *p);
                    let epoch = parts.get(&tp).map_or(0, |s| s.epoch);
                    vec![Chunk::Failed(e, Some((tp, epoch)))]
                }
                None => Vec::new(),
            }
        }
    }
}
