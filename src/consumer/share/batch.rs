//! What a share consumer hands out: acquired records, batch-native.

use std::sync::Arc;

use crate::record::{ColumnarBatch, RecordRef};

/// One acquired record with its delivery count.
#[derive(Debug, Clone, Copy)]
pub struct ShareRecord<'a> {
    record: RecordRef<'a>,
    delivery_count: i16,
}

impl<'a> ShareRecord<'a> {
    /// The offset.
    pub fn offset(&self) -> i64 {
        self.record.offset()
    }

    /// The timestamp (milliseconds since the epoch).
    pub fn timestamp(&self) -> i64 {
        self.record.timestamp()
    }

    /// The key.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.record.key()
    }

    /// The value.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.record.value()
    }

    /// How many times the record has been delivered (1 the first time).
    pub fn delivery_count(&self) -> i16 {
        self.delivery_count
    }

    /// The record itself (headers and all).
    pub fn record(&self) -> RecordRef<'a> {
        self.record
    }
}

/// Records acquired from one partition, as columns (zero-copy into the fetch response or
/// the buffer the batch was decompressed into). Only the records acquired for this consumer
/// are yielded.
#[derive(Debug)]
pub struct ShareBatch {
    pub(super) topic: Arc<str>,
    pub(super) partition: i32,
    pub(super) batch: ColumnarBatch,
    /// (first, last, delivery count), sorted.
    pub(super) acquired: Arc<[(i64, i64, i16)]>,
}

impl ShareBatch {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The whole record batch as columns (it may hold records acquired by others).
    pub fn batch(&self) -> &ColumnarBatch {
        &self.batch
    }

    fn delivery_count(&self, offset: i64) -> Option<i16> {
        let i = self.acquired.partition_point(|(_, last, _)| *last < offset);
        let (first, last, count) = *self.acquired.get(i)?;
        (first..=last).contains(&offset).then_some(count)
    }

    /// The records acquired for this consumer, in offset order.
    pub fn records(&self) -> impl Iterator<Item = ShareRecord<'_>> + '_ {
        self.batch.records().filter_map(move |record| {
            let delivery_count = self.delivery_count(record.offset())?;
            Some(ShareRecord {
                record,
                delivery_count,
            })
        })
    }

    /// How many records this consumer acquired from the batch.
    pub fn len(&self) -> usize {
        self.records().count()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn offsets(&self) -> Vec<i64> {
        self.records().map(|r| r.offset()).collect()
    }
}
