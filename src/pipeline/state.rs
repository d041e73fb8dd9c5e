//! Keyed state for stateful pipelines, without I/O: a store per input partition whose every
//! change is also kept for its changelog topic, and restored from it.
//!
//! - [`KeyedStore`] is the contract (get, put, delete, range by key, and the changes since the
//!   last time they were taken); [`MemoryStore`] keeps everything in memory up to a byte bound
//!   and refuses to grow past it ([`StoreError::Full`]: state is never dropped silently).
//! - The changelog of store `S` of application `A` is the compacted topic `A-S-changelog`
//!   ([`changelog_topic`]), one partition per input partition, keyed by the store key; a
//!   deletion is a tombstone (null value). [`KeyedStore::take_changes`] gives the last write per
//!   key since the previous call: what goes into the changelog with the output and the offsets
//!   (in the same transaction under exactly-once).
//! - On assignment a partition's store is rebuilt from its changelog ([`restore`]) before its
//!   input is processed; restoring logs nothing.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::record::ColumnarBatch;

/// Why a store refused a write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store would grow past its memory bound.
    #[error("the state store is full: {used} bytes used of {limit}, {wanted} more asked for")]
    Full {
        /// Bytes held now.
        used: usize,
        /// The bound.
        limit: usize,
        /// What the write would add.
        wanted: usize,
    },
    /// A changelog record that is not one this store wrote.
    #[error("a corrupt changelog record: {what}")]
    Corrupt {
        /// What was wrong.
        what: String,
    },
}

/// One change for the changelog: a key's new value, or `None` for a deletion (tombstone).
pub type Change = (Vec<u8>, Option<Vec<u8>>);

/// A keyed state store (one per input partition).
pub trait KeyedStore: Send {
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Option<&[u8]>;
    /// Sets `key` to `value` (logged).
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Removes `key` (logged as a tombstone).
    fn delete(&mut self, key: &[u8]);
    /// The entries with `from <= key < to`, in key order.
    fn range<'a>(
        &'a self,
        from: &[u8],
        to: &[u8],
    ) -> Box<dyn Iterator<Item = (&'a [u8], &'a [u8])> + 'a>;
    /// Entries held.
    fn len(&self) -> usize;
    /// Whether it holds nothing.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes held (keys and values).
    fn bytes(&self) -> usize;
    /// The last change of each key since the previous call, in key order.
    fn take_changes(&mut self) -> Vec<Change>;
    /// Applies one changelog record, logging nothing.
    fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError>;
}

impl<S: KeyedStore + ?Sized> KeyedStore for Box<S> {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        (**self).get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        (**self).put(key, value)
    }
    fn delete(&mut self, key: &[u8]) {
        (**self).delete(key)
    }
    fn range<'a>(
        &'a self,
        from: &[u8],
        to: &[u8],
    ) -> Box<dyn Iterator<Item = (&'a [u8], &'a [u8])> + 'a> {
        (**self).range(from, to)
    }
    fn len(&self) -> usize {
        (**self).len()
    }
    fn bytes(&self) -> usize {
        (**self).bytes()
    }
    fn take_changes(&mut self) -> Vec<Change> {
        (**self).take_changes()
    }
    fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        (**self).restore(key, value)
    }
}

/// Makes the store of one task (its input partition, and the memory bound asked for): how
/// another store plugs into a stateful pipeline.
#[derive(Clone)]
pub struct StoreFactory(
    pub std::sync::Arc<dyn Fn(i32, usize) -> Box<dyn KeyedStore> + Send + Sync>,
);

impl StoreFactory {
    /// A factory calling `make(partition, limit)`.
    pub fn new(make: impl Fn(i32, usize) -> Box<dyn KeyedStore> + Send + Sync + 'static) -> Self {
        StoreFactory(std::sync::Arc::new(make))
    }

    /// [`MemoryStore`]s (the default).
    pub fn memory() -> Self {
        StoreFactory::new(|_, limit| Box::new(MemoryStore::new(limit)))
    }

    /// The store of task `partition`.
    pub fn make(&self, partition: i32, limit: usize) -> Box<dyn KeyedStore> {
        (self.0)(partition, limit)
    }
}

impl std::fmt::Debug for StoreFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreFactory")
    }
}

/// The changelog topic of `store` in `application`.
pub fn changelog_topic(application: &str, store: &str) -> String {
    format!("{application}-{store}-changelog")
}

/// Rebuilds `store` from changelog records (in offset order); returns how many were applied.
pub fn restore(store: &mut dyn KeyedStore, batch: &ColumnarBatch) -> Result<usize, StoreError> {
    let mut applied = 0;
    for record in batch.records() {
        // A record without a key is not one of ours; skip it rather than guess.
        let Some(key) = record.key() else { continue };
        store.restore(key, record.value())?;
        applied += 1;
    }
    Ok(applied)
}

/// Everything in memory, bounded.
#[derive(Debug)]
pub struct MemoryStore {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
    limit: usize,
    changes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl MemoryStore {
    /// An empty store that holds at most `limit` bytes of keys and values.
    pub fn new(limit: usize) -> Self {
        MemoryStore {
            map: BTreeMap::new(),
            bytes: 0,
            limit,
            changes: BTreeMap::new(),
        }
    }

    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let old = self.map.get(key).map_or(0, |v| key.len() + v.len());
        let new = key.len() + value.len();
        let used = self.bytes - old;
        if used + new > self.limit {
            return Err(StoreError::Full {
                used: self.bytes,
                limit: self.limit,
                wanted: new.saturating_sub(old),
            });
        }
        self.bytes = used + new;
        self.map.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(v) = self.map.remove(key) {
            self.bytes -= key.len() + v.len();
        }
    }
}

impl KeyedStore for MemoryStore {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.set(key, value)?;
        self.changes.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) {
        self.remove(key);
        self.changes.insert(key.to_vec(), None);
    }

    fn range<'a>(
        &'a self,
        from: &[u8],
        to: &[u8],
    ) -> Box<dyn Iterator<Item = (&'a [u8], &'a [u8])> + 'a> {
        if from >= to {
            return Box::new(std::iter::empty());
        }
        let bounds = (Bound::Included(from.to_vec()), Bound::Excluded(to.to_vec()));
        Box::new(
            self.map
                .range::<Vec<u8>, _>(bounds)
                .map(|(k, v)| (k.as_slice(), v.as_slice())),
        )
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn bytes(&self) -> usize {
        self.bytes
    }

    fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes).into_iter().collect()
    }

    fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        match value {
            Some(v) => self.set(key, v),
            None => {
                self.remove(key);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Compression, RawBatch, RecordBatchBuilder};

    #[test]
    fn reads_what_it_wrote_and_logs_the_last_change_per_key() {
        let mut s = MemoryStore::new(1 << 20);
        s.put(b"a", b"1").unwrap();
        s.put(b"b", b"2").unwrap();
        s.put(b"a", b"3").unwrap();
        s.put(b"c", b"4").unwrap();
        s.delete(b"c");
        assert_eq!(s.get(b"a"), Some(&b"3"[..]));
        assert_eq!(s.get(b"c"), None);
        assert_eq!(s.len(), 2);
        assert_eq!(s.bytes(), 4);
        let range: Vec<_> = s.range(b"a", b"b\xff").collect();
        assert_eq!(range, vec![(&b"a"[..], &b"3"[..]), (&b"b"[..], &b"2"[..])]);
        assert_eq!(
            s.take_changes(),
            vec![
                (b"a".to_vec(), Some(b"3".to_vec())),
                (b"b".to_vec(), Some(b"2".to_vec())),
                (b"c".to_vec(), None),
            ]
        );
        assert!(s.take_changes().is_empty(), "taken once");
    }

    #[test]
    fn the_memory_bound_refuses_growth_not_replacement() {
        let mut s = MemoryStore::new(10);
        s.put(b"k1", b"12345678").unwrap();
        let full = s.put(b"k2", b"x").unwrap_err();
        assert_eq!(
            full,
            StoreError::Full {
                used: 10,
                limit: 10,
                wanted: 3
            }
        );
        // Replacing a value with one no larger fits.
        s.put(b"k1", b"1234").unwrap();
        s.put(b"k2", b"x").unwrap();
        assert_eq!(s.bytes(), 9);
    }

    #[test]
    fn restores_from_a_changelog_batch_logging_nothing() {
        let mut b = RecordBatchBuilder::new(Compression::Lz4);
        b.append(0, Some(b"a"), Some(b"1"), &[]).unwrap();
        b.append(1, Some(b"b"), Some(b"2"), &[]).unwrap();
        b.append(2, Some(b"a"), None, &[]).unwrap(); // tombstone
        b.append(3, None, Some(b"stray"), &[]).unwrap();
        let raw = RawBatch::new(b.build().unwrap()).unwrap();
        let batch = raw.decode().unwrap();
        let mut s = MemoryStore::new(1 << 20);
        assert_eq!(restore(&mut s, &batch), Ok(3));
        assert_eq!(s.get(b"a"), None);
        assert_eq!(s.get(b"b"), Some(&b"2"[..]));
        assert!(s.take_changes().is_empty());
        assert_eq!(
            changelog_topic("totals", "counts"),
            "totals-counts-changelog"
        );
    }
}
