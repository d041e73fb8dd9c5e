//! Consumed batches as Apache Arrow [`RecordBatch`]es, without copying keys or values, and
//! Arrow record batches to the producer (feature `arrow`).
//!
//! A [`ColumnarBatch`] already holds its records as columns over one buffer. The conversion
//! hands that buffer to Arrow as the one data block of the `key` and `value` columns
//! ([`BinaryViewArray`]s): each view points into the consumed bytes (values of at most 12
//! bytes are inlined in their view, as Arrow's format says), so nothing is copied but the
//! 16-byte views. Header keys and values are views into the same block.
//!
//! | column      | Arrow type                                              | nullable |
//! |-------------|---------------------------------------------------------|----------|
//! | `offset`    | Int64                                                   | no       |
//! | `timestamp` | Timestamp(ms)                                           | no       |
//! | `key`       | BinaryView                                              | yes      |
//! | `value`     | BinaryView                                              | yes      |
//! | `headers`   | List of Struct { `key`: BinaryView, `value`: BinaryView (nullable) } | no |
//!
//! The other way, [`records`] reads an Arrow batch's `key` and `value` columns (Binary,
//! LargeBinary, BinaryView, Utf8, LargeUtf8 or Utf8View; either may be absent) and, when
//! present, `partition` (Int32), `timestamp` (Timestamp(ms) or Int64) and `headers` (as above,
//! any byte type) into producer records; [`send_record_batch`] sends them.
//!
//! ```
//! use spate::formats::arrow::from_columnar;
//! use spate::record::{batches, Compression, RecordBatchBuilder};
//!
//! let mut builder = RecordBatchBuilder::new(Compression::None);
//! builder.append(1_700_000_000_000, Some(b"k"), Some(b"a value longer than twelve bytes"), &[])?;
//! let batch = batches(builder.build()?).next().unwrap()?.decode()?;
//! let arrow = from_columnar(&batch)?;
//! assert_eq!(arrow.num_rows(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::{Arc, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{
    Array, ArrayRef, BinaryViewArray, Int64Array, ListArray, RecordBatch, StructArray,
    TimestampMillisecondArray,
};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;

use super::FormatError;
use crate::error::Error;
use crate::pipeline::ops::{from_fn, BoxOperator};
use crate::pipeline::{Batch, ColumnBuilder};
use crate::producer::{BatchDelivery, Producer, Record};
use crate::record::{ColumnarBatch, Header, Span};

/// The metadata key of a converted pipeline batch's source topic.
pub const TOPIC_METADATA: &str = "kafka.topic";
/// The metadata key of a converted pipeline batch's source partition.
pub const PARTITION_METADATA: &str = "kafka.partition";

fn header_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::BinaryView, false),
        Field::new("value", DataType::BinaryView, true),
    ])
}

fn headers_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(header_fields()),
        false,
    )))
}

/// The schema of a converted batch (see the [module docs](self)).
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("offset", DataType::Int64, false),
                Field::new(
                    "timestamp",
                    DataType::Timestamp(TimeUnit::Millisecond, None),
                    false,
                ),
                Field::new("key", DataType::BinaryView, true),
                Field::new("value", DataType::BinaryView, true),
                Field::new("headers", headers_type(), false),
            ]))
        })
        .clone()
}

fn arrow_error(e: impl std::fmt::Display) -> FormatError {
    FormatError::Arrow(e.to_string())
}

/// The Arrow view of the `span` of `data` in block 0: the length, then up to 12 bytes inline,
/// or the first 4 bytes, the block and the offset (Arrow's columnar format, "Variable-size
/// Binary View Layout"). A null is the zero view; a span outside `data` is `None`.
#[inline]
fn view(data: &[u8], span: Span) -> Option<u128> {
    if span.is_null() {
        return Some(0);
    }
    let (start, len) = (span.start as usize, span.len as usize);
    if len > 12 {
        let bytes = data.get(start..start + len)?;
        let prefix = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        return Some(
            u128::from(span.len) | u128::from(prefix) << 32 | u128::from(span.start) << 96,
        );
    }
    let mut inline = [0u8; 16];
    match data.get(start..start + 12) {
        // A fixed 12-byte load, then the bytes past the value cleared.
        Some(twelve) => {
            inline[4..].copy_from_slice(twelve);
            let keep = u128::MAX >> (96 - 8 * len);
            Some((u128::from_le_bytes(inline) & keep) | u128::from(span.len))
        }
        None => {
            inline[4..4 + len].copy_from_slice(data.get(start..start + len)?);
            Some(u128::from_le_bytes(inline) | u128::from(span.len))
        }
    }
}

/// Views over one block: `spans` index `data`, which becomes the array's one data buffer
/// (shared, not copied). Arrow checks every view against the block.
fn views(
    data: &Bytes,
    spans: impl ExactSizeIterator<Item = Span> + Clone,
) -> Result<BinaryViewArray, FormatError> {
    if data.len() >= u32::MAX as usize {
        return Err(FormatError::Arrow(format!(
            "a buffer of {} bytes is larger than an Arrow view can index",
            data.len()
        )));
    }
    let mut outside = false;
    let views: Vec<u128> = spans
        .clone()
        .map(|span| {
            view(data, span).unwrap_or_else(|| {
                outside = true;
                0
            })
        })
        .collect();
    if outside {
        return Err(FormatError::Arrow(
            "a span outside the batch's buffer".into(),
        ));
    }
    let nulls = spans
        .clone()
        .any(Span::is_null)
        .then(|| NullBuffer::from_iter(spans.map(|s| !s.is_null())));
    BinaryViewArray::try_new(
        ScalarBuffer::from(views),
        vec![Buffer::from(data.clone())],
        nulls,
    )
    .map_err(arrow_error)
}

/// The headers of `records` (source record indexes) of `source`, as a list column.
fn headers(source: &ColumnarBatch, records: &[usize]) -> Result<ListArray, FormatError> {
    let mut offsets = Vec::with_capacity(records.len() + 1);
    offsets.push(0i32);
    let mut keys = Vec::new();
    let mut values = Vec::new();
    for &i in records {
        for &(k, v) in source.header_spans(i) {
            keys.push(if k.is_null() {
                Span { start: 0, len: 0 }
            } else {
                k
            });
            values.push(v);
        }
        let n = i32::try_from(keys.len()).map_err(arrow_error)?;
        offsets.push(n);
    }
    let data = source.data();
    let entries = StructArray::try_new(
        header_fields(),
        vec![
            Arc::new(views(data, keys.into_iter())?) as ArrayRef,
            Arc::new(views(data, values.into_iter())?),
        ],
        None,
    )
    .map_err(arrow_error)?;
    let field = Arc::new(Field::new("item", DataType::Struct(header_fields()), false));
    ListArray::try_new(
        field,
        OffsetBuffer::new(offsets.into()),
        Arc::new(entries),
        None,
    )
    .map_err(arrow_error)
}

/// A consumed batch as an Arrow record batch: keys, values and headers are views into the
/// batch's own buffer (see the [module docs](self)).
pub fn from_columnar(batch: &ColumnarBatch) -> Result<RecordBatch, FormatError> {
    let n = batch.len();
    if n == 0 {
        return Ok(RecordBatch::new_empty(schema()));
    }
    let records: Vec<usize> = (0..n).collect();
    let offsets = Int64Array::from_iter_values((0..n).map(|i| batch.offset(i)));
    let timestamps =
        TimestampMillisecondArray::from_iter_values((0..n).map(|i| batch.timestamp(i)));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(offsets),
        Arc::new(timestamps),
        Arc::new(views(batch.data(), batch.keys().iter().copied())?),
        Arc::new(views(batch.data(), batch.values().iter().copied())?),
        Arc::new(headers(batch, &records)?),
    ];
    RecordBatch::try_new(schema(), columns).map_err(arrow_error)
}

/// A pipeline batch's selected rows as an Arrow record batch: keys and values are views into
/// the consumed buffer, or into the column an operator replaced them with; offset, timestamp
/// and headers are each row's source record's. The schema's metadata names the source topic
/// ([`TOPIC_METADATA`]) and partition ([`PARTITION_METADATA`]).
pub fn from_batch(batch: &Batch) -> Result<RecordBatch, FormatError> {
    let rows: Vec<usize> = batch.selected().collect();
    let origins: Vec<usize> = rows.iter().map(|&r| batch.origin(r)).collect();
    let source = batch.source();
    let offsets = Int64Array::from_iter_values(origins.iter().map(|&i| source.offset(i)));
    let timestamps =
        TimestampMillisecondArray::from_iter_values(origins.iter().map(|&i| source.timestamp(i)));
    let keys = views(batch.key_data(), rows.iter().map(|&r| batch.key_span(r)))?;
    let values = views(
        batch.value_data(),
        rows.iter().map(|&r| batch.value_span(r)),
    )?;
    let metadata = [
        (TOPIC_METADATA.to_string(), batch.topic().to_string()),
        (
            PARTITION_METADATA.to_string(),
            batch.partition().to_string(),
        ),
    ];
    let schema = Arc::new(
        Schema::clone(&schema()).with_metadata(
            metadata
                .into_iter()
                .collect::<std::collections::HashMap<String, String>>(),
        ),
    );
    let columns: Vec<ArrayRef> = vec![
        Arc::new(offsets),
        Arc::new(timestamps),
        Arc::new(keys),
        Arc::new(values),
        Arc::new(headers(source, &origins)?),
    ];
    RecordBatch::try_new(schema, columns).map_err(arrow_error)
}

/// A column of byte strings of any of Arrow's binary and string types.
#[derive(Clone, Copy)]
enum Bytesish<'a> {
    Binary(&'a arrow_array::BinaryArray),
    LargeBinary(&'a arrow_array::LargeBinaryArray),
    BinaryView(&'a BinaryViewArray),
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    Utf8View(&'a arrow_array::StringViewArray),
}

impl<'a> Bytesish<'a> {
    fn new(name: &str, array: &'a dyn Array) -> Result<Self, FormatError> {
        Ok(match array.data_type() {
            DataType::Binary => Bytesish::Binary(array.as_binary()),
            DataType::LargeBinary => Bytesish::LargeBinary(array.as_binary()),
            DataType::BinaryView => Bytesish::BinaryView(array.as_binary_view()),
            DataType::Utf8 => Bytesish::Utf8(array.as_string()),
            DataType::LargeUtf8 => Bytesish::LargeUtf8(array.as_string()),
            DataType::Utf8View => Bytesish::Utf8View(array.as_string_view()),
            other => {
                return Err(FormatError::Arrow(format!(
                    "column {name} is {other}; a binary or string column is needed"
                )))
            }
        })
    }

    fn get(self, i: usize) -> Option<&'a [u8]> {
        macro_rules! at {
            ($a:expr) => {
                ($a.is_valid(i)).then(|| $a.value(i).as_ref())
            };
        }
        match self {
            Bytesish::Binary(a) => at!(a),
            Bytesish::LargeBinary(a) => at!(a),
            Bytesish::BinaryView(a) => at!(a),
            Bytesish::Utf8(a) => at!(a),
            Bytesish::LargeUtf8(a) => at!(a),
            Bytesish::Utf8View(a) => at!(a),
        }
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<Option<Bytesish<'a>>, FormatError> {
    batch
        .column_by_name(name)
        .map(|c| Bytesish::new(name, c.as_ref()))
        .transpose()
}

/// The headers column read back: per row, its range of (key, value) entries.
struct HeaderColumn<'a> {
    offsets: &'a [i32],
    keys: Bytesish<'a>,
    values: Bytesish<'a>,
}

impl<'a> HeaderColumn<'a> {
    fn new(batch: &'a RecordBatch) -> Result<Option<Self>, FormatError> {
        let Some(array) = batch.column_by_name("headers") else {
            return Ok(None);
        };
        let list = array.as_list_opt::<i32>().ok_or_else(|| {
            FormatError::Arrow(format!(
                "column headers is {}; a list of (key, value) structs is needed",
                array.data_type()
            ))
        })?;
        let entries = list.values().as_struct_opt().ok_or_else(|| {
            FormatError::Arrow("column headers: its entries are not (key, value) structs".into())
        })?;
        let field = |name: &str| {
            entries
                .column_by_name(name)
                .ok_or_else(|| FormatError::Arrow(format!("column headers: no {name} field")))
        };
        Ok(Some(HeaderColumn {
            offsets: list.value_offsets(),
            keys: Bytesish::new("headers.key", field("key")?.as_ref())?,
            values: Bytesish::new("headers.value", field("value")?.as_ref())?,
        }))
    }

    fn row(&self, i: usize) -> Result<Vec<Header<'a>>, FormatError> {
        let (from, to) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        (from..to)
            .map(|e| {
                let key = std::str::from_utf8(self.keys.get(e).unwrap_or_default())
                    .map_err(|_| FormatError::Arrow("a header key is not UTF-8".into()))?;
                Ok((key, self.values.get(e)))
            })
            .collect()
    }
}

/// An Arrow record batch as producer records for `topic`, borrowing the batch's bytes (see
/// the [module docs](self) for the columns read).
pub fn records<'a>(batch: &'a RecordBatch, topic: &'a str) -> Result<Vec<Record<'a>>, FormatError> {
    let keys = column(batch, "key")?;
    let values = column(batch, "value")?;
    if keys.is_none() && values.is_none() {
        return Err(FormatError::Arrow(
            "the batch has neither a key nor a value column".into(),
        ));
    }
    let partitions = match batch.column_by_name("partition") {
        None => None,
        Some(c) => Some(c.as_primitive_opt::<Int32Type>().ok_or_else(|| {
            FormatError::Arrow(format!(
                "column partition is {}; Int32 is needed",
                c.data_type()
            ))
        })?),
    };
    let timestamps: Option<Box<dyn Fn(usize) -> Option<i64> + 'a>> =
        match batch.column_by_name("timestamp") {
            None => None,
            Some(c) => match c.data_type() {
                DataType::Timestamp(TimeUnit::Millisecond, _) => {
                    let a = c.as_primitive::<TimestampMillisecondType>();
                    Some(Box::new(move |i| a.is_valid(i).then(|| a.value(i))))
                }
                DataType::Int64 => {
                    let a = c.as_primitive::<Int64Type>();
                    Some(Box::new(move |i| a.is_valid(i).then(|| a.value(i))))
                }
                other => {
                    return Err(FormatError::Arrow(format!(
                        "column timestamp is {other}; Timestamp(ms) or Int64 is needed"
                    )))
                }
            },
        };
    let headers = HeaderColumn::new(batch)?;
    (0..batch.num_rows())
        .map(|i| {
            Ok(Record {
                topic,
                partition: partitions.and_then(|p| p.is_valid(i).then(|| p.value(i))),
                key: keys.and_then(|k| k.get(i)),
                value: values.and_then(|v| v.get(i)),
                headers: match &headers {
                    Some(h) => h.row(i)?,
                    None => Vec::new(),
                },
                timestamp: timestamps.as_ref().and_then(|t| t(i)),
            })
        })
        .collect()
}

/// Sends an Arrow record batch's rows to `topic` through [`Producer::send_batch`] (see
/// [`records`] for the columns read).
pub async fn send_record_batch(
    producer: &Producer,
    topic: &str,
    batch: &RecordBatch,
) -> Result<BatchDelivery, Error> {
    let records = records(batch, topic)?;
    producer.send_batch(topic, records).await
}

/// A pipeline operator that runs `f` over each batch as an Arrow record batch (see
/// [`from_batch`]), for example arrow's compute kernels.
///
/// What `f` returns must keep the `offset` column: each row it returns is taken to come from
/// the consumed record with that offset (its timestamp and headers), so `f` may filter,
/// reorder or repeat rows, and replace `key` and `value` with any binary or string column (a
/// missing one is null). Rows with an offset not in the batch are an error.
pub fn operator(
    mut f: impl FnMut(RecordBatch) -> Result<RecordBatch, FormatError> + Send + 'static,
) -> BoxOperator {
    from_fn(move |mut batch| {
        let out = f(from_batch(&batch)?)?;
        let offsets = out
            .column_by_name("offset")
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| {
                FormatError::Arrow("the operator's batch has no Int64 offset column".into())
            })?;
        let source = batch.source();
        let base = if source.is_empty() {
            0
        } else {
            source.header().base_offset
        };
        let origin = offsets
            .iter()
            .map(|offset| {
                let offset = offset.ok_or_else(|| {
                    FormatError::Arrow("the operator's batch has a null offset".into())
                })?;
                i32::try_from(offset - base)
                    .ok()
                    .and_then(|delta| source.offset_deltas().binary_search(&delta).ok())
                    .map(|i| i as u32)
                    .ok_or_else(|| {
                        FormatError::Arrow(format!(
                            "the operator returned offset {offset}, not in the batch"
                        ))
                    })
            })
            .collect::<Result<Vec<u32>, FormatError>>()?;
        let rebuild = |column: Option<Bytesish<'_>>| {
            let mut out = ColumnBuilder::with_capacity(origin.len(), 0);
            for i in 0..origin.len() {
                match column.and_then(|c| c.get(i)) {
                    Some(bytes) => out.push(bytes),
                    None => out.push_null(),
                }
            }
            out.finish()
        };
        let keys = rebuild(column(&out, "key")?);
        let values = rebuild(column(&out, "value")?);
        batch.replace_rows(origin, keys, values);
        Ok(Some(batch))
    })
}
