//! Record batches (magic v2): a zero-copy view, CRC-32C, columnar decoding, and a builder.
//!
//! The consumption path: a records section (a [`Bytes`] slice of a fetch response) is split into
//! [`RawBatch`]es by [`RecordBatches`] without copying; [`RawBatch::decode`] checks the CRC,
//! decompresses once into one buffer if needed, and yields a [`ColumnarBatch`]: arrays of offset
//! and timestamp deltas and of (start, len) spans of keys, values and headers, all pointing into
//! that one buffer. A per-record iterator sits on top for convenience.
//!
//! Nothing read off the wire is trusted: `record_count`, lengths and decompressed sizes are
//! checked against the bytes actually there, and every failure names the byte position.
//!
//! # References
//! - Kafka protocol guide, "Messages (aka Records)": Record Batch, Record, Record Header, Control
//!   Batches.
//! - KIP-98 (v2 format, idempotence, transactions), KIP-82 (headers).

mod batch;
mod builder;
mod columnar;
pub mod compression;
mod control;

use bytes::Bytes;

pub use batch::{increment_sequence, BatchHeader, PartialBatch, RawBatch, RecordBatches};
pub use builder::{restamp_producer, Header, RecordBatchBuilder};
pub use columnar::{ColumnarBatch, DecodeOptions, RecordRef, Span, DEFAULT_MAX_DECOMPRESSED};
pub use compression::{Compression, CompressionError};
pub use control::{ControlRecord, ControlRecordType};

use crate::wire::PrimitiveError;

/// Length of the v2 batch header, up to and including `records_count`.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before `batch_length`'s coverage starts (`base_offset` and `batch_length`).
pub const BATCH_LOG_OVERHEAD: usize = 12;
/// The only magic spate reads and writes.
pub const MAGIC_V2: i8 = 2;
/// The smallest record (length, attributes, timestamp and offset deltas, key and value lengths,
/// header count: one byte each).
pub const MIN_RECORD_LEN: usize = 7;

/// How a batch's timestamps were assigned (attributes bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker when appending; every record takes the batch's `max_timestamp`.
    LogAppendTime,
}

/// Errors from reading or writing record batches. Positions are byte offsets in the input the
/// batches were read from (a records section or a file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// `batch_length` is too small to hold a v2 header.
    #[error("batch at byte {at}: batch length {length} is smaller than a v2 batch header")]
    InvalidBatchLength {
        /// Position of the batch.
        at: usize,
        /// The declared length.
        length: i32,
    },
    /// The batch is not magic v2.
    #[error("batch at byte {at}: unsupported magic {magic} (spate reads v2 record batches only)")]
    UnsupportedMagic {
        /// Position of the batch.
        at: usize,
        /// The magic byte.
        magic: i8,
    },
    /// The stored CRC-32C does not match the data.
    #[error("batch at byte {at} (base offset {base_offset}): CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// Position of the batch.
        at: usize,
        /// The batch's base offset.
        base_offset: i64,
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the data.
        computed: u32,
    },
    /// The batch is shorter than its header says.
    #[error("batch at byte {at}: incomplete: {needed} bytes needed, {available} available")]
    Incomplete {
        /// Position of the batch.
        at: usize,
        /// Bytes the batch needs.
        needed: usize,
        /// Bytes there are.
        available: usize,
    },
    /// The batch's records could not be decompressed.
    #[error("batch at byte {at}: {source}")]
    Compression {
        /// Position of the batch.
        at: usize,
        /// What went wrong.
        source: CompressionError,
    },
    /// `records_count` is negative.
    #[error("batch at byte {at}: negative record count {count}")]
    NegativeRecordCount {
        /// Position of the batch.
        at: usize,
        /// The declared count.
        count: i32,
    },
    /// The records end before `records_count` records were read.
    #[error("batch at byte {at}: declares {declared} records, but its data holds only {found}")]
    MissingRecords {
        /// Position of the batch.
        at: usize,
        /// The declared count.
        declared: i32,
        /// Records found.
        found: usize,
    },
    /// Bytes are left after `records_count` records.
    #[error("batch at byte {at}: {trailing} byte(s) left after the declared {declared} records")]
    TrailingBytes {
        /// Position of the batch.
        at: usize,
        /// The declared count.
        declared: i32,
        /// Bytes left over.
        trailing: usize,
    },
    /// A record's fields do not fill exactly its declared length.
    #[error(
        "batch at byte {at}: record {index} declares {declared} bytes but its fields take {actual}"
    )]
    RecordLength {
        /// Position of the batch.
        at: usize,
        /// Index of the record in the batch.
        index: usize,
        /// The declared length.
        declared: usize,
        /// Bytes its fields took.
        actual: usize,
    },
    /// A record is malformed (truncated, bad varint, bad length).
    #[error("batch at byte {at}: record {index}: {source}{}", if *.decompressed { " (position within the decompressed records)" } else { "" })]
    Record {
        /// Position of the batch.
        at: usize,
        /// Index of the record in the batch.
        index: usize,
        /// Whether positions in `source` count within the decompressed records.
        decompressed: bool,
        /// What is wrong.
        source: PrimitiveError,
    },
    /// A record, header key or batch is too large for the format.
    #[error("{what} of {actual} bytes exceeds the format's limit of {limit}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size.
        actual: usize,
        /// The limit.
        limit: usize,
    },
    /// A batch must hold at least one record.
    #[error("a record batch needs at least one record")]
    EmptyBatch,
    /// An offset or timestamp computed from the batch's base and a delta does not fit in 64
    /// bits: the batch lies about one of them.
    #[error("batch at byte {at}: {what}: {base} + {delta} overflows")]
    Overflow {
        /// Position of the batch.
        at: usize,
        /// Which value ("last offset", "offset of record 3", "timestamp of record 3").
        what: String,
        /// The base (offset or timestamp).
        base: i64,
        /// The delta added to it.
        delta: i64,
    },
}

/// Splits `records` (a records section or a log segment) into batches. Shorthand for
/// [`RecordBatches::new`].
pub fn batches(records: Bytes) -> RecordBatches {
    RecordBatches::new(records)
}

#[cfg(test)]
mod tests;
