//! A zero-copy view of one record batch, and an iterator that splits a records section into
//! batches.

use bytes::Bytes;

use super::compression::Compression;
use super::{RecordError, TimestampType, BATCH_HEADER_LEN, BATCH_LOG_OVERHEAD, MAGIC_V2};

/// Offsets of the v2 header fields.
mod at {
    pub const BASE_OFFSET: usize = 0;
    pub const BATCH_LENGTH: usize = 8;
    pub const PARTITION_LEADER_EPOCH: usize = 12;
    pub const MAGIC: usize = 16;
    pub const CRC: usize = 17;
    pub const ATTRIBUTES: usize = 21;
    pub const LAST_OFFSET_DELTA: usize = 23;
    pub const BASE_TIMESTAMP: usize = 27;
    pub const MAX_TIMESTAMP: usize = 35;
    pub const PRODUCER_ID: usize = 43;
    pub const PRODUCER_EPOCH: usize = 51;
    pub const BASE_SEQUENCE: usize = 53;
    pub const RECORDS_COUNT: usize = 57;
}

/// The fields of a v2 batch header, copied out of a [`RawBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the `batch_length` field.
    pub batch_length: i32,
    /// Leader epoch stamped by the broker (-1 from producers).
    pub partition_leader_epoch: i32,
    /// Stored CRC-32C.
    pub crc: u32,
    /// Raw attributes.
    pub attributes: i16,
    /// Offset delta of the last record.
    pub last_offset_delta: i32,
    /// Timestamp of the first record (`baseTimestamp`).
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Producer id, -1 if not idempotent.
    pub producer_id: i64,
    /// Producer epoch, -1 if not idempotent.
    pub producer_epoch: i16,
    /// Sequence of the first record, -1 if not idempotent.
    pub base_sequence: i32,
    /// Declared number of records (not trusted).
    pub records_count: i32,
}

impl BatchHeader {
    /// The codec id in the attributes (bits 0–2); may be invalid.
    pub fn compression_id(&self) -> u8 {
        (self.attributes & 0x07) as u8
    }

    /// How the timestamps were assigned (bit 3).
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & 0x08 != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Part of a transaction (bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// A control batch: transaction markers (bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Offset to fetch from after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Sequence of the last record (wrapping past `i32::MAX` to 0 as Kafka's do), -1 if not
    /// idempotent.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        increment_sequence(self.base_sequence, self.last_offset_delta.max(0))
    }
}

/// `sequence + increment` as producer sequences count: past `i32::MAX` they start again at 0
/// (Kafka's `DefaultRecordBatch.incrementSequence`; a broker accepts 0 after `i32::MAX`).
/// Total over every input: a lying batch's negative sequence cannot make it overflow.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    // Kafka: `sequence > MAX - increment ? increment - (MAX - sequence) - 1 : sequence +
    // increment`, which for non-negative inputs is the sum modulo 2^31.
    (i64::from(sequence) + i64::from(increment)).rem_euclid(1 << 31) as i32
}

/// One whole v2 record batch: a view into the buffer it arrived in (no copy).
///
/// Built by [`RecordBatches`] or [`RawBatch::new`]; the header fields are read in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBatch {
    bytes: Bytes,
    /// Position of the batch in the input it came from, for error messages.
    at: usize,
}

macro_rules! field {
    ($name:ident, $t:ty, $off:expr, $doc:literal) => {
        #[doc = $doc]
        #[inline]
        pub fn $name(&self) -> $t {
            const N: usize = std::mem::size_of::<$t>();
            let mut a = [0u8; N];
            a.copy_from_slice(&self.bytes[$off..$off + N]);
            <$t>::from_be_bytes(a)
        }
    };
}

impl RawBatch {
    /// Wraps `bytes`, which must hold exactly one v2 batch (checked: length and magic).
    pub fn new(bytes: Bytes) -> Result<Self, RecordError> {
        Self::at(bytes, 0)
    }

    /// Like [`RawBatch::new`], for a batch found at position `at` of some larger input.
    pub fn at(bytes: Bytes, at: usize) -> Result<Self, RecordError> {
        if bytes.len() < BATCH_HEADER_LEN {
            return Err(RecordError::Incomplete {
                at,
                needed: BATCH_HEADER_LEN,
                available: bytes.len(),
            });
        }
        let b = RawBatch { bytes, at };
        let length = b.batch_length();
        if (length as i64) < (BATCH_HEADER_LEN - BATCH_LOG_OVERHEAD) as i64 {
            return Err(RecordError::InvalidBatchLength { at, length });
        }
        let needed = BATCH_LOG_OVERHEAD + length as usize;
        if b.bytes.len() != needed {
            return Err(RecordError::Incomplete {
                at,
                needed,
                available: b.bytes.len(),
            });
        }
        if b.magic() != MAGIC_V2 {
            return Err(RecordError::UnsupportedMagic {
                at,
                magic: b.magic(),
            });
        }
        // The offset after the batch must be representable: everything downstream (fetch
        // positions, record offsets) is computed from it.
        let delta = b.last_offset_delta() as i64 + 1;
        if b.base_offset().checked_add(delta).is_none() {
            return Err(RecordError::Overflow {
                at,
                what: "offset after the batch".into(),
                base: b.base_offset(),
                delta,
            });
        }
        Ok(b)
    }

    /// The batch's bytes, header included.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Position of the batch in the input it was read from.
    pub fn position(&self) -> usize {
        self.at
    }

    /// Encoded size of the whole batch.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true: a batch always has a header. (Here for clippy's `len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    field!(
        base_offset,
        i64,
        at::BASE_OFFSET,
        "Offset of the first record."
    );
    field!(
        batch_length,
        i32,
        at::BATCH_LENGTH,
        "Bytes after the `batch_length` field."
    );
    field!(
        partition_leader_epoch,
        i32,
        at::PARTITION_LEADER_EPOCH,
        "Leader epoch stamped by the broker."
    );
    field!(magic, i8, at::MAGIC, "Magic byte (2).");
    field!(crc, u32, at::CRC, "Stored CRC-32C.");
    field!(attributes, i16, at::ATTRIBUTES, "Raw attributes.");
    field!(
        last_offset_delta,
        i32,
        at::LAST_OFFSET_DELTA,
        "Offset delta of the last record."
    );
    field!(
        base_timestamp,
        i64,
        at::BASE_TIMESTAMP,
        "Timestamp of the first record."
    );
    field!(
        max_timestamp,
        i64,
        at::MAX_TIMESTAMP,
        "Largest timestamp in the batch."
    );
    field!(
        producer_id,
        i64,
        at::PRODUCER_ID,
        "Producer id, -1 if not idempotent."
    );
    field!(
        producer_epoch,
        i16,
        at::PRODUCER_EPOCH,
        "Producer epoch, -1 if not idempotent."
    );
    field!(
        base_sequence,
        i32,
        at::BASE_SEQUENCE,
        "Sequence of the first record, -1 if not idempotent."
    );
    field!(
        records_count,
        i32,
        at::RECORDS_COUNT,
        "Declared number of records (not trusted)."
    );

    /// All header fields, copied out.
    pub fn header(&self) -> BatchHeader {
        BatchHeader {
            base_offset: self.base_offset(),
            batch_length: self.batch_length(),
            partition_leader_epoch: self.partition_leader_epoch(),
            crc: self.crc(),
            attributes: self.attributes(),
            last_offset_delta: self.last_offset_delta(),
            base_timestamp: self.base_timestamp(),
            max_timestamp: self.max_timestamp(),
            producer_id: self.producer_id(),
            producer_epoch: self.producer_epoch(),
            base_sequence: self.base_sequence(),
            records_count: self.records_count(),
        }
    }

    /// The batch's codec.
    pub fn compression(&self) -> Result<Compression, RecordError> {
        Compression::from_id((self.attributes() & 0x07) as u8).map_err(|source| {
            RecordError::Compression {
                at: self.at,
                source,
            }
        })
    }

    /// The CRC-32C of the data the stored CRC covers (`attributes` to the end).
    pub fn compute_crc(&self) -> u32 {
        crc32c::crc32c(&self.bytes[at::ATTRIBUTES..])
    }

    /// Checks the stored CRC-32C against the data.
    pub fn verify_crc(&self) -> Result<(), RecordError> {
        let (stored, computed) = (self.crc(), self.compute_crc());
        if stored != computed {
            return Err(RecordError::CrcMismatch {
                at: self.at,
                base_offset: self.base_offset(),
                stored,
                computed,
            });
        }
        Ok(())
    }

    /// The records section as stored (compressed if the batch is).
    pub fn records_data(&self) -> Bytes {
        self.bytes.slice(BATCH_HEADER_LEN..)
    }
}

/// A batch cut off at the end of the input. In a fetch response this is normal (the broker
/// stops at the byte limit); in a log segment it means the file was truncated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialBatch {
    /// Position where the partial batch starts.
    pub at: usize,
    /// Bytes the whole batch needs, if the header got far enough to say.
    pub needed: Option<usize>,
    /// Bytes present.
    pub available: usize,
}

/// Splits a records section into [`RawBatch`]es without copying.
///
/// Iteration stops at the first framing error (after yielding it) or at a partial trailing
/// batch, which is reported by [`RecordBatches::partial`] rather than as an error.
#[derive(Debug, Clone)]
pub struct RecordBatches {
    data: Bytes,
    pos: usize,
    base: usize,
    partial: Option<PartialBatch>,
    done: bool,
}

impl RecordBatches {
    /// Batches in `data`, positions counted from 0.
    pub fn new(data: Bytes) -> Self {
        Self::with_base(data, 0)
    }

    /// Batches in `data`, positions counted from `base` (where `data` sits in a larger input).
    pub fn with_base(data: Bytes, base: usize) -> Self {
        RecordBatches {
            data,
            pos: 0,
            base,
            partial: None,
            done: false,
        }
    }

    /// The partial batch at the end of the input, once iteration has reached it.
    pub fn partial(&self) -> Option<PartialBatch> {
        self.partial
    }

    /// Position (within the input, base included) of the next unread byte.
    pub fn position(&self) -> usize {
        self.base + self.pos
    }
}

impl Iterator for RecordBatches {
    type Item = Result<RawBatch, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = &self.data[self.pos..];
        let at = self.base + self.pos;
        if rest.len() < BATCH_LOG_OVERHEAD {
            self.done = true;
            if !rest.is_empty() {
                self.partial = Some(PartialBatch {
                    at,
                    needed: None,
                    available: rest.len(),
                });
            }
            return None;
        }
        let length = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if (length as i64) < (BATCH_HEADER_LEN - BATCH_LOG_OVERHEAD) as i64 {
            // Legacy (v0/v1) message sets can be this short; say which it is if we can.
            self.done = true;
            if let Some(&magic) = rest.get(at::MAGIC) {
                if length >= 0 && magic as i8 != MAGIC_V2 {
                    return Some(Err(RecordError::UnsupportedMagic {
                        at,
                        magic: magic as i8,
                    }));
                }
            }
            return Some(Err(RecordError::InvalidBatchLength { at, length }));
        }
        let total = BATCH_LOG_OVERHEAD + length as usize;
        if rest.len() < total {
            self.done = true;
            self.partial = Some(PartialBatch {
                at,
                needed: Some(total),
                available: rest.len(),
            });
            return None;
        }
        let bytes = self.data.slice(self.pos..self.pos + total);
        self.pos += total;
        let batch = RawBatch::at(bytes, at);
        if batch.is_err() {
            self.done = true;
        }
        Some(batch)
    }
}
