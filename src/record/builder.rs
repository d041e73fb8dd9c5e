//! Building record batches, laid out as Kafka's Java client writes them, with exact size
//! accounting.
//!
//! [`RecordBatchBuilder::size_in_bytes`] is the batch's exact encoded size when it is not
//! compressed, and a guaranteed upper bound when it is: if compression does not make the records
//! smaller, the batch is written uncompressed (attributes say so), so it can never grow past the
//! figure a producer checked against `max.request.size`.

use bytes::{BufMut, Bytes, BytesMut};

use super::compression::{self, Compression};
use super::{RecordError, BATCH_HEADER_LEN, BATCH_LOG_OVERHEAD, MAGIC_V2};
use crate::wire::primitives::{put_varint, put_varlong, varint_size, varlong_size};

/// Where a batch's CRC starts: after base offset, length, leader epoch and magic.
const CRC_OFFSET: usize = 8 + 4 + 4 + 1;

/// A record header: a UTF-8 key and a value that may be null.
pub type Header<'a> = (&'a str, Option<&'a [u8]>);

/// Appends records and writes one v2 record batch.
///
/// Defaults are those of a plain (non-idempotent) Java producer: base offset 0, partition
/// leader epoch -1, producer id -1, epoch -1, base sequence -1, CreateTime.
#[derive(Debug, Clone)]
pub struct RecordBatchBuilder {
    compression: Compression,
    base_offset: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    control: bool,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    count: i32,
    records: Vec<u8>,
    /// Where [`build_reusing`](Self::build_reusing) encodes the batch.
    output: Vec<u8>,
}

impl RecordBatchBuilder {
    /// A builder for a batch compressed with `compression`.
    pub fn new(compression: Compression) -> Self {
        RecordBatchBuilder {
            compression,
            base_offset: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            control: false,
            base_timestamp: None,
            max_timestamp: -1,
            count: 0,
            records: Vec::new(),
            output: Vec::new(),
        }
    }

    /// A builder whose record buffer starts with room for `bytes` of records.
    pub fn with_capacity(compression: Compression, bytes: usize) -> Self {
        let mut builder = RecordBatchBuilder::new(compression);
        builder.records.reserve(bytes);
        builder
    }

    /// A builder writing its records into `buffer` (emptied first): a producer hands back the
    /// buffers of batches it has encoded, so new batches reuse their memory.
    pub(crate) fn with_buffer(compression: Compression, mut buffer: Vec<u8>) -> Self {
        buffer.clear();
        let mut builder = RecordBatchBuilder::new(compression);
        builder.records = buffer;
        builder
    }

    /// A builder that encodes into `output` (emptied first) in
    /// [`build_reusing`](Self::build_reusing): a producer takes back the bytes of batches the
    /// broker has acknowledged, so new batches are not encoded into fresh memory (a page fault
    /// per 4 KiB).
    pub(crate) fn with_output(mut self, output: Vec<u8>) -> Self {
        self.output = output;
        self
    }

    /// [`build`](Self::build) into the buffer given to [`with_output`](Self::with_output) (a
    /// new one without), which the batch's bytes then own; kept if it fails.
    pub(crate) fn build_reusing(&mut self) -> Result<Bytes, RecordError> {
        let mut out = std::mem::take(&mut self.output);
        out.clear();
        match self.encode(&mut out) {
            Ok(_) => Ok(Bytes::from(out)),
            Err(e) => {
                self.output = out;
                Err(e)
            }
        }
    }

    /// The record buffer, for [`with_buffer`](Self::with_buffer).
    pub(crate) fn into_buffer(self) -> Vec<u8> {
        self.records
    }

    /// Sets the base offset (producers leave 0; the broker assigns offsets).
    pub fn base_offset(mut self, base_offset: i64) -> Self {
        self.base_offset = base_offset;
        self
    }

    /// Marks the batch idempotent: producer id, epoch and the sequence of its first record.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Marks the batch as part of a transaction.
    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    /// Marks the batch as a control batch (transaction markers; brokers write these).
    pub fn control(mut self, control: bool) -> Self {
        self.control = control;
        self
    }

    /// The codec requested for this batch.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Records appended so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no record has been appended.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of uncompressed record data so far.
    pub fn records_len(&self) -> usize {
        self.records.len()
    }

    /// The encoded size of the batch as it stands: exact if uncompressed, an upper bound if
    /// compressed.
    pub fn size_in_bytes(&self) -> usize {
        BATCH_HEADER_LEN + self.records.len()
    }

    /// How many bytes appending this record would add to [`size_in_bytes`](Self::size_in_bytes).
    pub fn record_size(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> usize {
        let body = self.body_size(timestamp, key, value, headers);
        varint_size(body as i32) + body
    }

    fn body_size(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> usize {
        let ts_delta = timestamp.wrapping_sub(self.base_timestamp.unwrap_or(timestamp));
        let opt =
            |b: Option<&[u8]>| b.map_or(varint_size(-1), |b| varint_size(b.len() as i32) + b.len());
        1 + varlong_size(ts_delta)
            + varint_size(self.count)
            + opt(key)
            + opt(value)
            + varint_size(headers.len() as i32)
            + headers
                .iter()
                .map(|(k, v)| varint_size(k.len() as i32) + k.len() + opt(*v))
                .sum::<usize>()
    }

    /// Appends a record if the batch stays within `max_size` bytes ([`size_in_bytes`] after the
    /// append). Returns whether it was appended. An empty builder always accepts one record, so a
    /// record larger than `max_size` still gets a batch of its own.
    ///
    /// [`size_in_bytes`]: Self::size_in_bytes
    pub fn try_append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
        max_size: usize,
    ) -> Result<bool, RecordError> {
        let body = self.body_size(timestamp, key, value, headers);
        if !self.is_empty()
            && self.size_in_bytes() + varint_size(body.min(i32::MAX as usize) as i32) + body
                > max_size
        {
            return Ok(false);
        }
        self.append_sized(body, timestamp, key, value, headers)?;
        Ok(true)
    }

    /// Appends a record. Returns its offset delta.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> Result<i32, RecordError> {
        let body = self.body_size(timestamp, key, value, headers);
        self.append_sized(body, timestamp, key, value, headers)
    }

    /// Appends a record whose body size (`body_size`) is already known.
    fn append_sized(
        &mut self,
        body: usize,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> Result<i32, RecordError> {
        const LIMIT: usize = i32::MAX as usize;
        let record = varint_size(body.min(LIMIT) as i32) + body;
        if body > LIMIT || self.size_in_bytes() + record > LIMIT {
            return Err(RecordError::TooLarge {
                what: "record batch",
                actual: self.size_in_bytes() + record,
                limit: LIMIT,
            });
        }
        if self.count == i32::MAX {
            return Err(RecordError::TooLarge {
                what: "record count",
                actual: LIMIT + 1,
                limit: LIMIT,
            });
        }
        let base = *self.base_timestamp.get_or_insert(timestamp);
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let offset_delta = self.count;
        let buf = &mut self.records;
        buf.reserve(record);
        put_varint(buf, body as i32);
        buf.put_i8(0); // attributes: unused
        put_varlong(buf, timestamp.wrapping_sub(base));
        put_varint(buf, offset_delta);
        put_bytes(buf, key);
        put_bytes(buf, value);
        put_varint(buf, headers.len() as i32);
        for (k, v) in headers {
            put_bytes(buf, Some(k.as_bytes()));
            put_bytes(buf, *v);
        }
        self.count += 1;
        Ok(offset_delta)
    }

    /// Writes the batch. The builder is left as it was, so a failed send can be rebuilt.
    pub fn build(&self) -> Result<Bytes, RecordError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(Bytes::from(out))
    }

    /// Appends the batch to `out`; returns its length.
    pub fn build_into(&self, out: &mut BytesMut) -> Result<usize, RecordError> {
        let mut encoded = Vec::new();
        let total = self.encode(&mut encoded)?;
        out.extend_from_slice(&encoded);
        Ok(total)
    }

    /// Appends the batch to `out`, compressing the records straight after the header (no
    /// intermediate buffer); returns its length.
    fn encode(&self, out: &mut Vec<u8>) -> Result<usize, RecordError> {
        if self.is_empty() {
            return Err(RecordError::EmptyBatch);
        }
        let start = out.len();
        let mut codec = self.compression;
        out.reserve(BATCH_HEADER_LEN + self.records.len() / 2);
        out.resize(start + BATCH_HEADER_LEN, 0);
        if codec != Compression::None {
            compression::compress(codec, &self.records, out)
                .map_err(|source| RecordError::Compression { at: 0, source })?;
            if out.len() - start - BATCH_HEADER_LEN >= self.records.len() {
                codec = Compression::None;
                out.truncate(start + BATCH_HEADER_LEN);
            }
        }
        if codec == Compression::None {
            out.extend_from_slice(&self.records);
        }
        let total = out.len() - start;
        let mut header = &mut out[start..start + BATCH_HEADER_LEN];
        header.put_i64(self.base_offset);
        header.put_i32((total - BATCH_LOG_OVERHEAD) as i32);
        header.put_i32(-1); // partition leader epoch: set by the broker
        header.put_i8(MAGIC_V2);
        header.put_u32(0); // the CRC, below
        let attributes = codec as i16
            | if self.transactional { 0x10 } else { 0 }
            | if self.control { 0x20 } else { 0 };
        header.put_i16(attributes);
        header.put_i32(self.count - 1);
        header.put_i64(self.base_timestamp.unwrap_or(-1));
        header.put_i64(self.max_timestamp);
        header.put_i64(self.producer_id);
        header.put_i16(self.producer_epoch);
        header.put_i32(self.base_sequence);
        header.put_i32(self.count);
        debug_assert!(header.is_empty());
        let crc_at = start + CRC_OFFSET;
        let crc = crc32c::crc32c(&out[crc_at + 4..]);
        out[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(total)
    }

    /// Empties the builder for reuse, keeping its settings and its buffer.
    pub fn clear(&mut self) {
        self.base_timestamp = None;
        self.max_timestamp = -1;
        self.count = 0;
        self.records.clear();
    }
}

/// Rewrites the producer id, epoch, base sequence and transactional flag of an encoded v2 batch
/// and recomputes its CRC, for a batch re-sent under a new producer epoch.
pub fn restamp_producer(
    batch: &mut [u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Result<(), RecordError> {
    if batch.len() < BATCH_HEADER_LEN {
        return Err(RecordError::InvalidBatchLength {
            at: 0,
            length: batch.len() as i32,
        });
    }
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

#[inline]
fn put_bytes(buf: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, b.len() as i32);
            buf.extend_from_slice(b);
        }
    }
}
