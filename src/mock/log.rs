//! One partition's log in the embedded cluster: batches as received, idempotent producers'
//! sequences, open transactions, and the markers that end them.

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

use crate::error::codes::{
    CORRUPT_MESSAGE, DUPLICATE_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH, INVALID_TXN_STATE,
    MESSAGE_TOO_LARGE, OUT_OF_ORDER_SEQUENCE_NUMBER,
};
use crate::record::{increment_sequence, RecordBatchBuilder, RecordBatches};

/// A stored batch.
#[derive(Debug, Clone)]
pub struct StoredBatch {
    /// Offset of its first record.
    pub base_offset: i64,
    /// The batch as received, with its base offset set.
    pub bytes: Bytes,
}

impl StoredBatch {
    /// The offset after its last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    fn last_offset(&self) -> i64 {
        // last_offset_delta sits at bytes 23..27 of a v2 batch.
        let delta = i32::from_be_bytes([
            self.bytes[23],
            self.bytes[24],
            self.bytes[25],
            self.bytes[26],
        ]);
        self.base_offset + i64::from(delta)
    }
}

/// Idempotence state of one producer on one partition.
#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    last_sequence: i32,
    /// (first sequence, last sequence, base offset) of the last five batches.
    recent: VecDeque<(i32, i32, i64)>,
}

/// An aborted transaction: its producer and the first offset of its data.
#[derive(Debug, Clone, Copy)]
pub(super) struct Aborted {
    pub producer_id: i64,
    pub first_offset: i64,
    /// Offset of the ABORT marker.
    pub last_offset: i64,
}

#[derive(Debug)]
pub(super) struct PartitionLog {
    pub leader: i32,
    pub leader_epoch: i32,
    /// The leader epoch cache: each epoch and the offset it started at, oldest first (Kafka's
    /// LeaderEpochFileCache).
    epochs: Vec<(i32, i64)>,
    pub batches: Vec<StoredBatch>,
    pub next_offset: i64,
    /// The log start offset: records below it were deleted (DeleteRecords).
    pub log_start: i64,
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: producer id → first offset written in it.
    ongoing: HashMap<i64, i64>,
    pub aborted: Vec<Aborted>,
}

/// What a fetch of one partition returns.
pub(super) struct Read {
    pub records: Bytes,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub aborted: Vec<Aborted>,
}

impl PartitionLog {
    pub fn new(leader: i32) -> Self {
        PartitionLog {
            leader,
            leader_epoch: 0,
            epochs: vec![(0, 0)],
            batches: Vec::new(),
            next_offset: 0,
            log_start: 0,
            producers: HashMap::new(),
            ongoing: HashMap::new(),
            aborted: Vec::new(),
        }
    }

    /// A new leader epoch starts at the log end (a leader moved, or was elected).
    pub fn bump_epoch(&mut self) {
        self.leader_epoch += 1;
        self.epochs.push((self.leader_epoch, self.next_offset));
    }

    /// The end offset of `epoch` as Kafka's LeaderEpochFileCache.endOffsetFor answers it: the
    /// largest epoch at most `epoch`, and where the next one starts (the log end for the
    /// current epoch); (-1, -1) for an epoch past every known one.
    pub fn end_offset_for(&self, epoch: i32) -> (i32, i64) {
        if epoch == self.leader_epoch {
            return (epoch, self.next_offset);
        }
        let Some(i) = self.epochs.iter().position(|(e, _)| *e > epoch) else {
            return (-1, -1);
        };
        let next_start = self.epochs[i].1;
        match i.checked_sub(1) {
            Some(prev) => (self.epochs[prev].0, next_start),
            None => (epoch, next_start),
        }
    }

    /// An unclean election: the new leader's log ends at `offset` (at a batch boundary, or
    /// before the batch holding it), so what was written after is gone, and a new epoch starts
    /// there. Returns the new log end.
    pub fn truncate_and_elect(&mut self, offset: i64) -> i64 {
        self.batches.retain(|b| b.next_offset() <= offset);
        self.next_offset = self
            .batches
            .last()
            .map_or(self.log_start, StoredBatch::next_offset);
        let end = self.next_offset;
        self.epochs.retain(|(_, start)| *start <= end);
        self.producers.clear();
        self.ongoing.clear();
        self.aborted.retain(|a| a.last_offset < end);
        self.bump_epoch();
        end
    }

    /// The last stable offset: below the first offset of any open transaction.
    pub fn last_stable_offset(&self) -> i64 {
        self.ongoing
            .values()
            .copied()
            .min()
            .unwrap_or(self.next_offset)
    }

    /// Checks and appends a produce request's records: (base offset, error code to answer)
    /// or the error code. `in_txn` says whether a transactional producer added this
    /// partition to its transaction.
    pub fn append(
        &mut self,
        records: Bytes,
        max_bytes: usize,
        in_txn: impl Fn(i64) -> bool,
    ) -> Result<(i64, i16), i16> {
        let mut batches = Vec::new();
        for batch in RecordBatches::new(records) {
            let batch = batch.map_err(|_| CORRUPT_MESSAGE)?;
            batch.verify_crc().map_err(|_| CORRUPT_MESSAGE)?;
            if batch.len() > max_bytes {
                return Err(MESSAGE_TOO_LARGE);
            }
            let h = batch.header();
            // A fenced epoch is refused before anything else (Kafka's producer state check).
            if self
                .producers
                .get(&h.producer_id)
                .is_some_and(|p| h.producer_epoch < p.epoch)
            {
                return Err(INVALID_PRODUCER_EPOCH);
            }
            if h.is_transactional() && !in_txn(h.producer_id) {
                return Err(INVALID_TXN_STATE);
            }
            batches.push(batch);
        }
        if batches.is_empty() {
            return Err(CORRUPT_MESSAGE);
        }
        let first_base = self.next_offset;
        for batch in batches {
            let h = batch.header();
            let count = h.records_count.max(0) as i64;
            if h.producer_id >= 0 {
                let entry = self
                    .producers
                    .entry(h.producer_id)
                    .or_insert(ProducerEntry {
                        epoch: h.producer_epoch,
                        last_sequence: -1,
                        recent: VecDeque::new(),
                    });
                if h.producer_epoch < entry.epoch {
                    return Err(INVALID_PRODUCER_EPOCH);
                }
                if h.producer_epoch > entry.epoch {
                    // A new epoch starts its sequences at 0 (KIP-360).
                    *entry = ProducerEntry {
                        epoch: h.producer_epoch,
                        last_sequence: -1,
                        recent: VecDeque::new(),
                    };
                }
                let last = h.last_sequence();
                if let Some((_, _, offset)) = entry
                    .recent
                    .iter()
                    .find(|(first, l, _)| *first == h.base_sequence && *l == last)
                {
                    return Ok((*offset, DUPLICATE_SEQUENCE_NUMBER));
                }
                if h.base_sequence != increment_sequence(entry.last_sequence, 1) {
                    return Err(OUT_OF_ORDER_SEQUENCE_NUMBER);
                }
                entry.last_sequence = last;
                entry
                    .recent
                    .push_back((h.base_sequence, last, self.next_offset));
                if entry.recent.len() > 5 {
                    entry.recent.pop_front();
                }
                if h.is_transactional() {
                    self.ongoing
                        .entry(h.producer_id)
                        .or_insert(self.next_offset);
                }
            }
            self.push(batch.as_bytes());
            self.next_offset += count;
        }
        Ok((first_base, 0))
    }

    fn push(&mut self, batch: &[u8]) {
        let mut bytes = BytesMut::from(batch);
        bytes[..8].copy_from_slice(&self.next_offset.to_be_bytes());
        // The broker stamps the partition leader epoch (outside the CRC, like the offset).
        bytes[12..16].copy_from_slice(&self.leader_epoch.to_be_bytes());
        self.batches.push(StoredBatch {
            base_offset: self.next_offset,
            bytes: bytes.freeze(),
        });
    }

    /// Ends a producer's transaction on this partition with a COMMIT or ABORT marker.
    pub fn end_transaction(&mut self, producer_id: i64, epoch: i16, commit: bool) {
        let first = self.ongoing.remove(&producer_id);
        let mut marker = RecordBatchBuilder::new(crate::record::Compression::None)
            .producer(producer_id, epoch, -1)
            .transactional(true)
            .control(true);
        // Key: version 0, type (0 abort, 1 commit). Value: version 0, coordinator epoch 0.
        let key = [0, 0, 0, u8::from(commit)];
        let value = [0u8; 6];
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        marker
            .append(now, Some(&key), Some(&value), &[])
            .expect("a marker fits");
        let bytes = marker.build().expect("a marker encodes");
        let at = self.next_offset;
        self.push(&bytes);
        self.next_offset += 1;
        // A marker written with a bumped epoch (a timed-out transaction) fences the old one.
        if let Some(entry) = self.producers.get_mut(&producer_id) {
            if epoch > entry.epoch {
                *entry = ProducerEntry {
                    epoch,
                    last_sequence: -1,
                    recent: VecDeque::new(),
                };
            }
        }
        if let (Some(first_offset), false) = (first, commit) {
            self.aborted.push(Aborted {
                producer_id,
                first_offset,
                last_offset: at,
            });
        }
    }

    /// Deletes the records below `offset` (-1: the high watermark), as Kafka's
    /// `Partition.deleteRecordsOnLeader` and `UnifiedLog.maybeIncrementLogStartOffset`: the log
    /// start offset moves there (never back), whole batches below it go, and a batch that
    /// straddles it stays (a fetch from the start returns it, as Kafka returns its segment).
    /// Returns the new log start offset (the low watermark); OFFSET_OUT_OF_RANGE for an
    /// offset below 0 or past the high watermark.
    pub fn delete_records(&mut self, offset: i64) -> Result<i64, i16> {
        const OFFSET_OUT_OF_RANGE: i16 = 1;
        let offset = if offset == -1 {
            self.next_offset
        } else {
            offset
        };
        if offset < 0 || offset > self.next_offset {
            return Err(OFFSET_OUT_OF_RANGE);
        }
        if offset > self.log_start {
            self.log_start = offset;
            self.batches.retain(|b| b.next_offset() > offset);
        }
        Ok(self.log_start)
    }

    /// Batches from `offset` on, up to `max_bytes` (at least one batch), below the last
    /// stable offset if `committed_only`. `Err` if `offset` is out of range.
    pub fn read(&self, offset: i64, max_bytes: usize, committed_only: bool) -> Result<Read, i16> {
        const OFFSET_OUT_OF_RANGE: i16 = 1;
        if offset < self.log_start || offset > self.next_offset {
            return Err(OFFSET_OUT_OF_RANGE);
        }
        let lso = self.last_stable_offset();
        let limit = if committed_only {
            lso
        } else {
            self.next_offset
        };
        let mut out = BytesMut::new();
        let mut first = None;
        let mut last = -1;
        for batch in &self.batches {
            if batch.last_offset() < offset {
                continue;
            }
            if batch.base_offset >= limit
                || (!out.is_empty() && out.len() + batch.bytes.len() > max_bytes)
            {
                break;
            }
            first.get_or_insert(batch.base_offset);
            last = batch.last_offset();
            out.extend_from_slice(&batch.bytes);
        }
        let aborted = match first {
            Some(first) if committed_only => self
                .aborted
                .iter()
                .filter(|a| a.last_offset >= first && a.first_offset <= last)
                .copied()
                .collect(),
            _ => Vec::new(),
        };
        Ok(Read {
            records: out.freeze(),
            high_watermark: self.next_offset,
            last_stable_offset: lso,
            aborted,
        })
    }

    /// The offset for a ListOffsets timestamp: -2 earliest, -1 latest (the last stable offset
    /// when `committed_only`), else the first batch with a timestamp at or after it.
    pub fn offset_for(&self, timestamp: i64, committed_only: bool) -> i64 {
        match timestamp {
            -2 => self.log_start,
            -1 if committed_only => self.last_stable_offset(),
            -1 => self.next_offset,
            ts => self
                .batches
                .iter()
                .find(|b| {
                    // max_timestamp sits at bytes 35..43.
                    let max = i64::from_be_bytes(b.bytes[35..43].try_into().expect("8 bytes"));
                    max >= ts
                })
                .map_or(-1, |b| b.base_offset),
        }
    }
}
