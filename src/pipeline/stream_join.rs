//! Windowed stream-stream joins inside a pipeline
//! ([`Pipeline::join_streams`](super::Pipeline::join_streams)), as Kafka Streams'
//! `KStream#join(KStream, JoinWindows)`: each record of the left input meets every record of
//! the right input with the same join key whose event time is at most the window away.
//!
//! - **Co-partitioning**: both inputs must be partitioned by the join key (keyed by it with
//!   the same partitioner, as many partitions each): partition `p` of both is one task with
//!   one state, read by one member (the pipeline asks the group for the range assignor) and
//!   one lane. A record whose key sits in another partition of the other input meets nothing.
//! - **State**: each task's buffered records ([`super::join_state`] says which, and for how
//!   long) are kept in a [`KeyedStore`] (bounded, in memory unless
//!   [`StreamJoin::store_with`] plugs in another), logged to
//!   the compacted changelog `<application>-<store>-changelog` and restored from it, as a
//!   windowed aggregation's are; under exactly-once the changelog records go in the
//!   transaction with the output and the offsets.
//! - **Output**: one record per result, keyed by the join key, stamped with the later of the
//!   two event times, whose value is the JSON object
//!   `{"key": K, "left": L, "right": R, "left_time": MS, "right_time": MS}`: each side's value
//!   as it is if it is one JSON value, else as a JSON string; `null` (and a `null` time) for
//!   the side an unmatched record of a left or outer join lacks.

use std::collections::HashMap;
use std::sync::Arc;

use super::event_time::{json_string, EventTime, KeySource};
use super::join_state::{JoinState, JoinType, Joined, Side};
use super::run::Tp;
use super::state::{changelog_topic, KeyedStore, StoreError, StoreFactory};
use super::stateful::{LateRecord, OutputRecord, Restorer, Step};
use super::Batch;
use crate::cluster::Client;
use crate::consumer::ConsumerConfig;
use crate::error::Error;
use crate::json::is_json_value;

/// A windowed join of two co-partitioned inputs (see the module docs).
#[derive(Debug, Clone)]
pub struct StreamJoin {
    /// The application id: names the changelog (default: the group id).
    pub application: Option<String>,
    /// The store's name in the changelog topic's (default `join`).
    pub store: String,
    /// The left input.
    pub left: String,
    /// The right input.
    pub right: String,
    /// The join key, read the same way from both sides.
    pub key: KeySource,
    /// The event time, read the same way from both sides.
    pub time: EventTime,
    /// Records join when their event times are at most this many milliseconds apart.
    pub window: i64,
    /// Allowed disorder per side in milliseconds: a record older than its side's largest
    /// event time minus this is late (counted, not joined).
    pub lateness: i64,
    /// Inner, left or outer.
    pub join: JoinType,
    /// The most bytes one task's buffered records may take (keys and values; the time index
    /// takes about as much again). Input that would buffer more stops the pipeline with an
    /// error rather than exhausting memory. Default 256 MiB.
    pub max_state_bytes: usize,
    /// Where late records go (as they left the operators), in the same transaction as the
    /// output; `None`: only counted.
    pub late_to: Option<String>,
    /// Makes each task's store (default: a [`MemoryStore`](super::state::MemoryStore)
    /// bounded by `max_state_bytes`).
    pub stores: StoreFactory,
}

impl StreamJoin {
    /// An inner join of `left` and `right` on `key`, at `time`, within `window_ms`.
    pub fn new(left: &str, right: &str, key: KeySource, time: EventTime, window_ms: i64) -> Self {
        StreamJoin {
            application: None,
            store: "join".into(),
            left: left.into(),
            right: right.into(),
            key,
            time,
            window: window_ms.max(0),
            lateness: 0,
            join: JoinType::Inner,
            max_state_bytes: 256 << 20,
            late_to: None,
            stores: StoreFactory::memory(),
        }
    }

    /// Inner, left or outer.
    pub fn join_type(mut self, join: JoinType) -> Self {
        self.join = join;
        self
    }

    /// The allowed lateness (ms).
    pub fn lateness(mut self, ms: i64) -> Self {
        self.lateness = ms.max(0);
        self
    }

    /// Sends late records to `topic` instead of only counting them.
    pub fn late_to(mut self, topic: &str) -> Self {
        self.late_to = Some(topic.to_owned());
        self
    }

    /// The most bytes one task's buffered records may take.
    pub fn max_state_bytes(mut self, bytes: usize) -> Self {
        self.max_state_bytes = bytes;
        self
    }

    /// Keeps each task's buffered records in the store `stores` makes (given the task's
    /// partition and `max_state_bytes`) instead of in memory.
    pub fn store_with(mut self, stores: StoreFactory) -> Self {
        self.stores = stores;
        self
    }

    /// The changelog topic, for the application id or else `group`.
    pub fn changelog(&self, group: &str) -> String {
        changelog_topic(self.application.as_deref().unwrap_or(group), &self.store)
    }
}

/// What one lane holds: its tasks' join states.
pub(super) struct JoinLane {
    spec: Arc<StreamJoin>,
    changelog: Arc<str>,
    client: Client,
    restore_config: ConsumerConfig,
    tasks: HashMap<i32, JoinState<Box<dyn KeyedStore>>>,
}

impl JoinLane {
    pub(super) fn new(
        spec: Arc<StreamJoin>,
        changelog: Arc<str>,
        client: Client,
        restore_config: ConsumerConfig,
    ) -> Self {
        JoinLane {
            spec,
            changelog,
            client,
            restore_config,
            tasks: HashMap::new(),
        }
    }

    pub(super) fn changelog(&self) -> &Arc<str> {
        &self.changelog
    }

    pub(super) fn late_to(&self) -> Option<&str> {
        self.spec.late_to.as_deref()
    }

    pub(super) fn forget(&mut self, tps: Option<&[Tp]>) {
        match tps {
            None => self.tasks.clear(),
            Some(tps) => {
                for tp in tps {
                    self.tasks.remove(&tp.1);
                }
            }
        }
    }

    fn fresh(&self, partition: i32) -> JoinState<Box<dyn KeyedStore>> {
        JoinState::new(
            self.spec.stores.make(partition, self.spec.max_state_bytes),
            self.spec.window,
            self.spec.lateness,
            self.spec.join,
        )
    }

    /// Task `partition`'s state, restored from the changelog if this lane holds none.
    async fn task(
        &mut self,
        partition: i32,
    ) -> Result<(&mut JoinState<Box<dyn KeyedStore>>, u64), Error> {
        let mut restored = 0;
        if !self.tasks.contains_key(&partition) {
            let mut state = self.fresh(partition);
            let restorer = Restorer {
                client: &self.client,
                config: &self.restore_config,
                changelog: &self.changelog,
            };
            restored = restorer
                .read(partition, |key, value| state.restore(key, value))
                .await?;
            let state = state.rebuilt();
            tracing::info!(changelog = %self.changelog, partition, buffered = state.buffered(), "join state restored");
            self.tasks.insert(partition, state);
        }
        Ok((self.tasks.get_mut(&partition).expect("inserted"), restored))
    }

    /// Joins one batch of `tp`'s input (the chain's output for it).
    pub(super) async fn push(&mut self, tp: &Tp, batches: &[Batch]) -> Result<Step, Error> {
        let spec = self.spec.clone();
        let side = if *tp.0 == *spec.left {
            Side::Left
        } else {
            Side::Right
        };
        let keep_late = spec.late_to.is_some();
        let (state, restored) = self.task(tp.1).await?;
        let mut joined = Vec::new();
        let mut late_records = Vec::new();
        let (mut skipped, mut late) = (0, 0);
        let mut scratch = Vec::new();
        let mut failed = None;
        'batches: for batch in batches {
            for row in batch.selected() {
                let value = batch.value(row);
                let key = spec.key.of(batch.key(row), value, &mut scratch);
                let time = spec.time.of(value, batch.timestamp(row), &mut scratch);
                let (Some(key), Some(time)) = (key, time) else {
                    skipped += 1;
                    continue;
                };
                match state.push(side, &key, time, batch.offset(row), value, &mut joined) {
                    Ok(false) => {}
                    Ok(true) => {
                        late += 1;
                        if keep_late {
                            late_records.push(LateRecord::of(batch, row));
                        }
                    }
                    Err(e) => {
                        failed = Some(e);
                        break 'batches;
                    }
                }
            }
        }
        let changes = match failed {
            None => state.take_changes(),
            Some(e) => Err(e),
        };
        let changes = match changes {
            Ok(changes) => changes,
            Err(e) => {
                // This task's state is no longer trusted: it is restored if it comes back.
                self.tasks.remove(&tp.1);
                return Err(state_error(tp.1, e));
            }
        };
        Ok(Step {
            output: joined.iter().map(output_record).collect(),
            changes,
            restored,
            skipped,
            late,
            late_records,
        })
    }

    /// The end of bounded input: every buffered record of the tasks of `tps` expires
    /// (restoring first those this lane has not read since they were assigned).
    pub(super) async fn finish(&mut self, tps: &[Tp]) -> Result<(Vec<(i32, Step)>, u64), Error> {
        let mut restored = 0;
        for tp in tps {
            restored += self.task(tp.1).await?.1;
        }
        let mut out = Vec::new();
        for (&partition, state) in &mut self.tasks {
            let mut joined = Vec::new();
            let changes = state
                .finish(&mut joined)
                .and_then(|()| state.take_changes())
                .map_err(|e| state_error(partition, e))?;
            out.push((
                partition,
                Step {
                    output: joined.iter().map(output_record).collect(),
                    changes,
                    restored: 0,
                    skipped: 0,
                    late: 0,
                    late_records: Vec::new(),
                },
            ));
        }
        out.sort_by_key(|(p, _)| *p);
        Ok((out, restored))
    }
}

fn state_error(partition: i32, e: StoreError) -> Error {
    Error::InvalidState(format!(
        "the join state of partition {partition}: {e} (max_state_bytes bounds it)"
    ))
}

/// A join result as an output record (see the module docs).
pub(super) fn output_record(joined: &Joined) -> OutputRecord {
    let mut v = Vec::with_capacity(64);
    v.extend_from_slice(b"{\"key\":");
    json_string(&String::from_utf8_lossy(&joined.key), &mut v);
    let time = |side: &Option<(i64, Option<Vec<u8>>)>| side.as_ref().map(|s| s.0);
    for (name, side) in [("left", &joined.left), ("right", &joined.right)] {
        v.extend_from_slice(format!(",\"{name}\":").as_bytes());
        match side.as_ref().and_then(|s| s.1.as_deref()) {
            Some(value) if is_json_value(value) => v.extend_from_slice(value.trim_ascii()),
            Some(value) => json_string(&String::from_utf8_lossy(value), &mut v),
            None => v.extend_from_slice(b"null"),
        }
    }
    for (name, side) in [("left_time", &joined.left), ("right_time", &joined.right)] {
        match time(side) {
            Some(t) => v.extend_from_slice(format!(",\"{name}\":{t}").as_bytes()),
            None => v.extend_from_slice(format!(",\"{name}\":null").as_bytes()),
        }
    }
    v.push(b'}');
    let stamp = time(&joined.left)
        .into_iter()
        .chain(time(&joined.right))
        .max()
        .unwrap_or(0);
    (joined.key.clone(), v, stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_json_objects_with_both_sides() {
        let joined = Joined {
            key: b"u\"1".to_vec(),
            left: Some((5, Some(br#" {"a":1} "#.to_vec()))),
            right: Some((9, Some(b"plain text".to_vec()))),
        };
        let (key, value, ts) = output_record(&joined);
        assert_eq!(key, b"u\"1");
        assert_eq!(ts, 9);
        assert_eq!(
            String::from_utf8(value).unwrap(),
            r#"{"key":"u\"1","left":{"a":1},"right":"plain text","left_time":5,"right_time":9}"#
        );
        let alone = Joined {
            key: b"k".to_vec(),
            left: Some((7, None)),
            right: None,
        };
        let (_, value, ts) = output_record(&alone);
        assert_eq!(ts, 7);
        assert_eq!(
            String::from_utf8(value).unwrap(),
            r#"{"key":"k","left":null,"right":null,"left_time":7,"right_time":null}"#
        );
    }
}
