//! The columnar form of a decoded batch.

use bytes::Bytes;

use super::batch::{BatchHeader, RawBatch};
use super::compression::{self, Compression};
use super::{RecordError, TimestampType, BATCH_HEADER_LEN, MIN_RECORD_LEN};
use crate::wire::primitives::{PrimitiveError, Reader};

/// The default cap on one batch's decompressed records: 64 MiB.
pub const DEFAULT_MAX_DECOMPRESSED: usize = 64 << 20;

/// How to decode a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// The most bytes a compressed batch may decompress to. Larger is an error.
    pub max_decompressed: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_decompressed: DEFAULT_MAX_DECOMPRESSED,
        }
    }
}

/// A (start, len) range in a batch's data buffer; `len == u32::MAX` marks null.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Start within [`ColumnarBatch::data`].
    pub start: u32,
    /// Length, or [`Span::NULL_LEN`] for null.
    pub len: u32,
}

impl Span {
    /// The `len` that marks null.
    pub const NULL_LEN: u32 = u32::MAX;
    /// A null span.
    pub const NULL: Span = Span {
        start: 0,
        len: Span::NULL_LEN,
    };

    /// Whether this is null.
    #[inline]
    pub fn is_null(self) -> bool {
        self.len == Self::NULL_LEN
    }

    /// The byte range, or `None` for null.
    #[inline]
    pub fn range(self) -> Option<std::ops::Range<usize>> {
        (!self.is_null()).then(|| self.start as usize..self.start as usize + self.len as usize)
    }
}

/// A decoded batch in columnar form: one entry per record in each column, every key, value and
/// header a [`Span`] into [`ColumnarBatch::data`], the one buffer holding the batch's records
/// (a slice of the fetch response if the batch was not compressed; the one decompressed buffer if
/// it was).
///
/// Reuse one `ColumnarBatch` across batches with [`RawBatch::decode_into`] to decode without
/// allocating.
#[derive(Debug, Clone, Default)]
pub struct ColumnarBatch {
    header: Option<BatchHeader>,
    data: Bytes,
    offset_deltas: Vec<i32>,
    timestamp_deltas: Vec<i64>,
    keys: Vec<Span>,
    values: Vec<Span>,
    /// `header_starts[i]..header_starts[i + 1]` indexes `headers` for record `i`.
    header_starts: Vec<u32>,
    headers: Vec<(Span, Span)>,
}

impl ColumnarBatch {
    /// The batch header.
    ///
    /// # Panics
    /// If this batch was never decoded into (a `Default` value).
    pub fn header(&self) -> &BatchHeader {
        self.header
            .as_ref()
            .expect("ColumnarBatch used before decode")
    }

    /// Number of records.
    #[inline]
    pub fn len(&self) -> usize {
        self.offset_deltas.len()
    }

    /// Drops the records with an offset below `offset` (a fetch from the middle of a
    /// compressed batch returns the whole batch). Returns how many were dropped.
    pub fn skip_before(&mut self, offset: i64) -> usize {
        let Some(base) = self.header.as_ref().map(|h| h.base_offset) else {
            return 0;
        };
        let n = self
            .offset_deltas
            .iter()
            .take_while(|d| base + i64::from(**d) < offset)
            .count();
        if n > 0 {
            self.offset_deltas.drain(..n);
            self.timestamp_deltas.drain(..n);
            self.keys.drain(..n);
            self.values.drain(..n);
            // Entry i + 1 ends record i's headers: keep the start of the first kept record.
            self.header_starts.drain(..n);
        }
        n
    }

    /// Bytes this batch holds: its record buffer and its columns.
    pub fn memory_size(&self) -> usize {
        self.data.len()
            + self.offset_deltas.len() * (4 + 8 + 2 * std::mem::size_of::<Span>() + 4)
            + self.headers.len() * 2 * std::mem::size_of::<Span>()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.offset_deltas.is_empty()
    }

    /// The buffer every span points into.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Offset deltas, one per record.
    pub fn offset_deltas(&self) -> &[i32] {
        &self.offset_deltas
    }

    /// Timestamp deltas, one per record.
    pub fn timestamp_deltas(&self) -> &[i64] {
        &self.timestamp_deltas
    }

    /// Key spans, one per record.
    pub fn keys(&self) -> &[Span] {
        &self.keys
    }

    /// Value spans, one per record.
    pub fn values(&self) -> &[Span] {
        &self.values
    }

    /// Offset of record `i`.
    #[inline]
    pub fn offset(&self, i: usize) -> i64 {
        self.header().base_offset + self.offset_deltas[i] as i64
    }

    /// Timestamp of record `i` (the batch's `max_timestamp` under LogAppendTime).
    #[inline]
    pub fn timestamp(&self, i: usize) -> i64 {
        let h = self.header();
        match h.timestamp_type() {
            TimestampType::LogAppendTime => h.max_timestamp,
            TimestampType::CreateTime => h.base_timestamp + self.timestamp_deltas[i],
        }
    }

    #[inline]
    fn slice(&self, s: Span) -> Option<&[u8]> {
        s.range().map(|r| &self.data[r])
    }

    /// Key of record `i`, `None` if null.
    #[inline]
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        self.slice(self.keys[i])
    }

    /// Value of record `i`, `None` if null.
    #[inline]
    pub fn value(&self, i: usize) -> Option<&[u8]> {
        self.slice(self.values[i])
    }

    /// Value of record `i` as a [`Bytes`] sharing the batch's buffer (no copy).
    pub fn value_bytes(&self, i: usize) -> Option<Bytes> {
        self.values[i].range().map(|r| self.data.slice(r))
    }

    /// Key of record `i` as a [`Bytes`] sharing the batch's buffer (no copy).
    pub fn key_bytes(&self, i: usize) -> Option<Bytes> {
        self.keys[i].range().map(|r| self.data.slice(r))
    }

    /// Header spans (key, value) of record `i`.
    pub fn header_spans(&self, i: usize) -> &[(Span, Span)] {
        &self.headers[self.header_starts[i] as usize..self.header_starts[i + 1] as usize]
    }

    /// Headers of record `i` as (key, value) pairs.
    pub fn headers(
        &self,
        i: usize,
    ) -> impl ExactSizeIterator<Item = (&[u8], Option<&[u8]>)> + Clone + '_ {
        self.header_spans(i)
            .iter()
            .map(|&(k, v)| (self.slice(k).unwrap_or_default(), self.slice(v)))
    }

    /// Record `i` as a row.
    pub fn record(&self, i: usize) -> RecordRef<'_> {
        RecordRef {
            batch: self,
            index: i,
        }
    }

    /// The records as rows, in order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = RecordRef<'_>> + '_ {
        (0..self.len()).map(move |i| self.record(i))
    }

    fn clear(&mut self) {
        self.header = None;
        self.data = Bytes::new();
        self.offset_deltas.clear();
        self.timestamp_deltas.clear();
        self.keys.clear();
        self.values.clear();
        self.header_starts.clear();
        self.headers.clear();
    }
}

/// One record of a [`ColumnarBatch`], borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    batch: &'a ColumnarBatch,
    index: usize,
}

impl<'a> RecordRef<'a> {
    /// Its index in the batch.
    pub fn index(&self) -> usize {
        self.index
    }
    /// Its offset.
    pub fn offset(&self) -> i64 {
        self.batch.offset(self.index)
    }
    /// Its timestamp.
    pub fn timestamp(&self) -> i64 {
        self.batch.timestamp(self.index)
    }
    /// Its key, `None` if null.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.batch.key(self.index)
    }
    /// Its value, `None` if null.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.batch.value(self.index)
    }
    /// Its headers.
    pub fn headers(
        &self,
    ) -> impl ExactSizeIterator<Item = (&'a [u8], Option<&'a [u8]>)> + Clone + 'a {
        self.batch.headers(self.index)
    }
}

impl RawBatch {
    /// Checks the CRC, decompresses if needed, and decodes the records into columns.
    pub fn decode(&self) -> Result<ColumnarBatch, RecordError> {
        let mut out = ColumnarBatch::default();
        self.decode_into(&mut out, &DecodeOptions::default())?;
        Ok(out)
    }

    /// Like [`RawBatch::decode`], into a reused `out` and with explicit options. On error `out`
    /// is left empty.
    pub fn decode_into(
        &self,
        out: &mut ColumnarBatch,
        opts: &DecodeOptions,
    ) -> Result<(), RecordError> {
        out.clear();
        let r = self.decode_into_inner(out, opts);
        if r.is_err() {
            out.clear();
        }
        r
    }

    fn decode_into_inner(
        &self,
        out: &mut ColumnarBatch,
        opts: &DecodeOptions,
    ) -> Result<(), RecordError> {
        let at = self.position();
        self.verify_crc()?;
        let header = self.header();
        let codec = self.compression()?;
        let (data, base, decompressed) = match codec {
            Compression::None => (self.records_data(), at + BATCH_HEADER_LEN, false),
            codec => {
                // Decompressed data is addressed with u32 spans.
                let limit = opts.max_decompressed.min(u32::MAX as usize - 1);
                let raw = &self.as_bytes()[BATCH_HEADER_LEN..];
                let buf = compression::decompress(codec, raw, limit)
                    .map_err(|source| RecordError::Compression { at, source })?;
                (Bytes::from(buf), 0, true)
            }
        };
        if data.len() >= u32::MAX as usize {
            return Err(RecordError::TooLarge {
                what: "records section",
                actual: data.len(),
                limit: u32::MAX as usize - 1,
            });
        }
        let declared = header.records_count;
        if declared < 0 {
            return Err(RecordError::NegativeRecordCount {
                at,
                count: declared,
            });
        }
        // Never size from the declared count alone: each record takes at least 7 bytes.
        let cap = (declared as usize).min(data.len() / MIN_RECORD_LEN);
        out.offset_deltas.reserve(cap);
        out.timestamp_deltas.reserve(cap);
        out.keys.reserve(cap);
        out.values.reserve(cap);
        out.header_starts.reserve(cap + 1);
        out.header_starts.push(0);

        let mut r = Reader::with_base(&data, base);
        for index in 0..declared as usize {
            if r.remaining() == 0 {
                return Err(RecordError::MissingRecords {
                    at,
                    declared,
                    found: index,
                });
            }
            decode_record(&mut r, out, &header).map_err(|e| match e {
                RecordFault::Primitive(source) => RecordError::Record {
                    at,
                    index,
                    decompressed,
                    source,
                },
                RecordFault::Length { declared, actual } => RecordError::RecordLength {
                    at,
                    index,
                    declared,
                    actual,
                },
                RecordFault::Overflow { what, base, delta } => RecordError::Overflow {
                    at,
                    what: format!("{what} of record {index}"),
                    base,
                    delta,
                },
            })?;
        }
        if r.remaining() != 0 {
            return Err(RecordError::TrailingBytes {
                at,
                declared,
                trailing: r.remaining(),
            });
        }
        out.header = Some(header);
        out.data = data;
        Ok(())
    }
}

enum RecordFault {
    Primitive(PrimitiveError),
    Length {
        declared: usize,
        actual: usize,
    },
    Overflow {
        what: &'static str,
        base: i64,
        delta: i64,
    },
}

impl From<PrimitiveError> for RecordFault {
    fn from(e: PrimitiveError) -> Self {
        RecordFault::Primitive(e)
    }
}

#[inline]
fn span(r: &mut Reader<'_>) -> Result<Span, PrimitiveError> {
    match r.varint_len()? {
        None => Ok(Span::NULL),
        Some(n) => {
            let start = r.position() as u32;
            r.skip(n)?;
            Ok(Span {
                start,
                len: n as u32,
            })
        }
    }
}

#[inline]
fn decode_record(
    r: &mut Reader<'_>,
    out: &mut ColumnarBatch,
    header: &BatchHeader,
) -> Result<(), RecordFault> {
    let len_at = r.absolute_position();
    let declared = match r.varint_len()? {
        Some(n) => n,
        None => {
            return Err(PrimitiveError::InvalidLength {
                at: len_at,
                length: -1,
            }
            .into());
        }
    };
    let start = r.position();
    let _attributes = r.i8()?;
    let timestamp_delta = r.varlong()?;
    let offset_delta = r.varint()?;
    // Offsets and timestamps are read as base + delta: both sums must fit.
    if header
        .base_offset
        .checked_add(offset_delta as i64)
        .is_none()
    {
        return Err(RecordFault::Overflow {
            what: "offset",
            base: header.base_offset,
            delta: offset_delta as i64,
        });
    }
    if header.base_timestamp.checked_add(timestamp_delta).is_none() {
        return Err(RecordFault::Overflow {
            what: "timestamp",
            base: header.base_timestamp,
            delta: timestamp_delta,
        });
    }
    let key = span(r)?;
    let value = span(r)?;
    let count_at = r.absolute_position();
    let n_headers = r.varint()?;
    if n_headers < 0 {
        return Err(PrimitiveError::InvalidLength {
            at: count_at,
            length: n_headers as i64,
        }
        .into());
    }
    for _ in 0..n_headers {
        let key_at = r.absolute_position();
        let hkey = span(r)?;
        if hkey.is_null() {
            return Err(PrimitiveError::InvalidLength {
                at: key_at,
                length: -1,
            }
            .into());
        }
        let hval = span(r)?;
        out.headers.push((hkey, hval));
    }
    let actual = r.position() - start;
    if actual != declared {
        return Err(RecordFault::Length { declared, actual });
    }
    out.offset_deltas.push(offset_delta);
    out.timestamp_deltas.push(timestamp_delta);
    out.keys.push(key);
    out.values.push(value);
    out.header_starts.push(out.headers.len() as u32);
    Ok(())
}
