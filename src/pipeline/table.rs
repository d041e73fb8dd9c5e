//! Stream-table joins: a [`Table`] holds the latest value of every key of a topic (compacted,
//! as a table's topic is), read whole by every member and kept up to date while the pipeline
//! runs, as Kafka Streams' GlobalKTable is; [`join`] enriches each record with the value its
//! key has in the table when the record is processed.
//!
//! - **Loading**: [`Table::load`] reads every partition from the beginning to the end it
//!   listed first (read_committed under `isolation.level=read_committed`), then follows the
//!   topic in a task of its own. A record with a value sets its key, a tombstone (no value)
//!   deletes it; a record without a key is not a table row and is skipped.
//! - **Memory**: the table lives in a [`MemoryStore`] with a bound; a table that outgrows it
//!   fails the load, or (while following) every later join, with the store's error: nothing
//!   is silently dropped.
//! - **Joining** ([`join`]): the record's join key (its key, or a field of its JSON value) is
//!   looked up; the table's value goes into the record's JSON object as field `as_field` (as
//!   it is if it is one JSON value, else as a JSON string). An inner join drops records whose
//!   key is not in the table; a left join keeps them with `null`. A record whose value is not
//!   a JSON object has nowhere to take the field: an inner join drops it, a left join passes it
//!   on unchanged.

use std::sync::{Arc, Mutex, RwLock};

use super::event_time::{json_string, KeySource};
use super::ops::{from_fn, BoxOperator};
use super::state::{KeyedStore, MemoryStore};
use crate::cluster::{Client, OffsetSpec, Topics};
use crate::consumer::{Consumer, ConsumerConfig, Event, IsolationLevel, Offset};
use crate::error::Error;
use crate::json::{is_json_value, json_field, json_object_end};

/// Which records a join keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JoinMode {
    /// Only records whose key is in the table.
    #[default]
    Inner,
    /// Every record; `null` where the key is not in the table.
    Left,
}

/// A topic read as a table: the latest value per key, kept up to date (see the module docs).
/// Cheap to clone; the task that follows the topic stops with the last clone.
#[derive(Clone, Debug)]
pub struct Table {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    topic: String,
    store: RwLock<MemoryStore>,
    /// Why the table stopped following its topic.
    failed: Mutex<Option<Error>>,
    follower: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = self
            .follower
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

impl Table {
    /// Reads `topic` to its end into a table of at most `limit` bytes of keys and values, then
    /// follows it. `config` says how to reach the cluster and read (its group is not used).
    pub async fn load(config: ConsumerConfig, topic: &str, limit: usize) -> Result<Table, Error> {
        let client = Client::connect(config.client.clone()).await?;
        let metadata = client.refresh_metadata(Topics::Only(&[topic])).await?;
        let partitions = match metadata.topics.get(topic) {
            Some(t) if t.error.is_none() => t.partitions.len() as i32,
            _ => {
                return Err(Error::UnknownInMetadata(format!(
                    "the table topic `{topic}` does not exist"
                )))
            }
        };
        let all: Vec<i32> = (0..partitions).collect();
        let committed = config.isolation_level == IsolationLevel::ReadCommitted;
        let mut ends = vec![0i64; partitions as usize];
        for listed in client
            .list_offsets_isolated(topic, &all, OffsetSpec::Latest, committed)
            .await?
        {
            if let Some(end) = ends.get_mut(listed.partition as usize) {
                *end = listed.offset;
            }
        }
        let mut reader = ConsumerConfig {
            group_id: None,
            ..config
        };
        reader.enable_auto_commit = false;
        let mut consumer = Consumer::with_client(client, reader);
        let start: Vec<(&str, i32, Offset)> =
            all.iter().map(|p| (topic, *p, Offset::Beginning)).collect();
        consumer.assign(&start)?;
        let table = Table {
            shared: Arc::new(Shared {
                topic: topic.to_owned(),
                store: RwLock::new(MemoryStore::new(limit)),
                failed: Mutex::new(None),
                follower: Mutex::new(None),
            }),
        };
        let mut read = vec![0i64; partitions as usize];
        let behind = |read: &[i64]| read.iter().zip(&ends).any(|(r, e)| r < e);
        let started = std::time::Instant::now();
        while behind(&read) {
            match consumer.next().await? {
                Event::Batch(batch) => {
                    table.apply(&batch)?;
                    if let Some(r) = read.get_mut(batch.partition() as usize) {
                        *r = batch.next_offset();
                    }
                }
                Event::EndOfPartition {
                    partition, offset, ..
                } => {
                    if let Some(r) = read.get_mut(partition as usize) {
                        *r = (*r).max(offset);
                    }
                }
                _ => {}
            }
        }
        tracing::info!(
            topic,
            keys = table.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "table loaded"
        );
        let follower = Arc::downgrade(&table.shared);
        let task = tokio::spawn(async move {
            loop {
                let event = consumer.next().await;
                let Some(shared) = follower.upgrade() else {
                    return;
                };
                let table = Table { shared };
                let applied = match event {
                    Ok(Event::Batch(batch)) => table.apply(&batch),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                };
                if let Err(e) = applied {
                    tracing::warn!(topic = %table.shared.topic, error = %e, "the table stopped following its topic");
                    *table
                        .shared
                        .failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return;
                }
            }
        });
        *table
            .shared
            .follower
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
        Ok(table)
    }

    fn apply(&self, batch: &crate::consumer::PartitionBatch) -> Result<(), Error> {
        let mut store = self.shared.store.write().unwrap_or_else(|p| p.into_inner());
        for record in batch.records() {
            let Some(key) = record.key() else { continue };
            store
                .restore(key, record.value())
                .map_err(|e| Error::InvalidState(format!("table `{}`: {e}", self.shared.topic)))?;
        }
        Ok(())
    }

    /// The value of `key` now.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let store = self.shared.store.read().unwrap_or_else(|p| p.into_inner());
        store.get(key).map(<[u8]>::to_vec)
    }

    /// How many keys the table holds.
    pub fn len(&self) -> usize {
        self.shared
            .store
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Whether the table holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Why the table stopped following its topic, if it did.
    pub fn failure(&self) -> Option<Error> {
        self.shared
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Joins each record with `table` on `key`, adding the table's value as field `as_field` of
/// the record's JSON value (see the module docs).
pub fn join(table: Table, key: KeySource, as_field: &str, mode: JoinMode) -> BoxOperator {
    let mut field = Vec::new();
    json_string(as_field, &mut field);
    let mut scratch = Vec::new();
    from_fn(move |mut batch| {
        if let Some(e) = table.failure() {
            return Err(e);
        }
        let store = table.shared.store.read().unwrap_or_else(|p| p.into_inner());
        // Which rows go on (by row): found, or kept by a left join.
        let mut keep = vec![false; batch.rows()];
        let values = batch.column_over_selected(0, |row, out| {
            let Some(value) = batch.value(row) else {
                keep[row] = mode == JoinMode::Left;
                out.push_null();
                return;
            };
            let Some(end) = json_object_end(value) else {
                keep[row] = mode == JoinMode::Left;
                out.push(value);
                return;
            };
            scratch.clear();
            let join_key = match &key {
                KeySource::RecordKey => batch.key(row),
                KeySource::JsonField(f) => json_field(value, f, &mut scratch),
            };
            let found = join_key.and_then(|k| store.get(k));
            keep[row] = found.is_some() || mode == JoinMode::Left;
            out.push_with(|out| {
                let head = &value[..end];
                out.extend_from_slice(head);
                let empty = head.iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
                if !empty {
                    out.push(b',');
                }
                out.extend_from_slice(&field);
                out.push(b':');
                match found {
                    Some(v) if is_json_value(v) => out.extend_from_slice(v.trim_ascii()),
                    Some(v) => json_string(&String::from_utf8_lossy(v), out),
                    None => out.extend_from_slice(b"null"),
                }
                out.extend_from_slice(&value[end..]);
            });
        });
        drop(store);
        batch.set_values(values.finish());
        batch.retain(|_, row| keep[row]);
        Ok((!batch.is_empty()).then_some(batch))
    })
}
