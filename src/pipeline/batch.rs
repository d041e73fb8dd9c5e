//! The batch operators work on: a consumed [`ColumnarBatch`] plus what operators changed.
//!
//! A [`Batch`] has *rows*. At first row `i` is the source's record `i`; an operator that makes
//! new rows ([`flat_map`](super::ops::flat_map)) records each one's *origin*, the source record
//! whose offset, timestamp and headers it inherits. Keys and values are the source's until an
//! operator replaces a whole column with a new [`Column`] (contiguous bytes and spans, the
//! layout kernels loop over). A filter only narrows the *selection*; nothing is copied until
//! the sink encodes the selected rows.

use std::sync::Arc;

use bytes::Bytes;

use crate::record::{ColumnarBatch, Span};

/// One column of byte strings: every entry a [`Span`] into one contiguous buffer.
#[derive(Debug, Clone, Default)]
pub struct Column {
    data: Bytes,
    spans: Vec<Span>,
}

impl Column {
    /// A column from its buffer and one span per row.
    pub fn new(data: Bytes, spans: Vec<Span>) -> Self {
        Column { data, spans }
    }

    /// The entry of `row` (`None`: null).
    #[inline]
    pub fn get(&self, row: usize) -> Option<&[u8]> {
        self.spans[row].range().map(|r| &self.data[r])
    }

    /// The buffer.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The spans, one per row.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }
}

/// Builds a [`Column`] entry by entry into one buffer.
#[derive(Debug, Default)]
pub struct ColumnBuilder {
    data: Vec<u8>,
    spans: Vec<Span>,
}

impl ColumnBuilder {
    /// A builder with room for `rows` entries of `bytes` bytes in all.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        ColumnBuilder {
            data: Vec::with_capacity(bytes),
            spans: Vec::with_capacity(rows),
        }
    }

    /// Appends a null entry.
    pub fn push_null(&mut self) {
        self.spans.push(Span::NULL);
    }

    /// Appends an entry.
    pub fn push(&mut self, bytes: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        self.spans.push(Span {
            start: start as u32,
            len: bytes.len() as u32,
        });
    }

    /// Appends an entry written by `write` into the buffer.
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.data.len();
        write(&mut self.data);
        self.spans.push(Span {
            start: start as u32,
            len: (self.data.len() - start) as u32,
        });
    }

    /// The buffer written so far (kernels transform it in place).
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// The column.
    pub fn finish(self) -> Column {
        Column {
            data: Bytes::from(self.data),
            spans: self.spans,
        }
    }
}

/// The selected rows of a [`Batch`].
#[derive(Debug, Clone)]
pub enum Selected<'a> {
    /// Every row.
    All(std::ops::Range<usize>),
    /// These rows.
    Some(std::slice::Iter<'a, u32>),
}

impl Iterator for Selected<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        match self {
            Selected::All(r) => r.next(),
            Selected::Some(s) => s.next().map(|&r| r as usize),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Selected::All(r) => r.size_hint(),
            Selected::Some(s) => s.size_hint(),
        }
    }
}

impl ExactSizeIterator for Selected<'_> {}

/// A batch of rows from one source partition, on its way through the operators.
#[derive(Debug, Clone)]
pub struct Batch {
    topic: Arc<str>,
    partition: i32,
    source: ColumnarBatch,
    /// Row → source record, once rows are not the source's records one to one.
    origin: Option<Vec<u32>>,
    keys: Option<Column>,
    values: Option<Column>,
    /// The rows that survive, in order; `None`: all.
    selection: Option<Vec<u32>>,
}

impl Batch {
    /// A batch whose rows are the records of `source`.
    pub fn new(topic: Arc<str>, partition: i32, source: ColumnarBatch) -> Self {
        Batch {
            topic,
            partition,
            source,
            origin: None,
            keys: None,
            values: None,
            selection: None,
        }
    }

    /// The source topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The source partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The consumed batch the rows come from.
    pub fn source(&self) -> &ColumnarBatch {
        &self.source
    }

    /// How many rows there are, selected or not.
    pub fn rows(&self) -> usize {
        match &self.origin {
            Some(o) => o.len(),
            None => self.source.len(),
        }
    }

    /// How many rows are selected.
    pub fn len(&self) -> usize {
        match &self.selection {
            Some(s) => s.len(),
            None => self.rows(),
        }
    }

    /// Whether no row is selected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The selected rows, in order.
    pub fn selected(&self) -> Selected<'_> {
        match &self.selection {
            Some(s) => Selected::Some(s.iter()),
            None => Selected::All(0..self.rows()),
        }
    }

    /// A column builder with one entry per row: `entry` writes each selected row's entry
    /// (`push`, `push_with` or `push_null`); rows not selected are null.
    pub fn column_over_selected(
        &self,
        bytes: usize,
        mut entry: impl FnMut(usize, &mut ColumnBuilder),
    ) -> ColumnBuilder {
        let rows = self.rows();
        let mut out = ColumnBuilder::with_capacity(rows, bytes);
        let mut next = 0;
        for row in self.selected() {
            while next < row {
                out.push_null();
                next += 1;
            }
            entry(row, &mut out);
            next = row + 1;
        }
        while next < rows {
            out.push_null();
            next += 1;
        }
        out
    }

    /// The source record row `row` comes from.
    #[inline]
    pub fn origin(&self, row: usize) -> usize {
        match &self.origin {
            Some(o) => o[row] as usize,
            None => row,
        }
    }

    /// The offset of the record row `row` comes from.
    pub fn offset(&self, row: usize) -> i64 {
        self.source.offset(self.origin(row))
    }

    /// The timestamp of the record row `row` comes from.
    pub fn timestamp(&self, row: usize) -> i64 {
        self.source.timestamp(self.origin(row))
    }

    /// The key of `row`.
    #[inline]
    pub fn key(&self, row: usize) -> Option<&[u8]> {
        match &self.keys {
            Some(c) => c.get(row),
            None => self.source.key(self.origin(row)),
        }
    }

    /// The value of `row`.
    #[inline]
    pub fn value(&self, row: usize) -> Option<&[u8]> {
        match &self.values {
            Some(c) => c.get(row),
            None => self.source.value(self.origin(row)),
        }
    }

    /// The headers of the record `row` comes from.
    pub fn headers(
        &self,
        row: usize,
    ) -> impl ExactSizeIterator<Item = (&[u8], Option<&[u8]>)> + Clone + '_ {
        self.source.headers(self.origin(row))
    }

    /// The buffer every key span points into: the source's, or the replaced key column's.
    pub fn key_data(&self) -> &Bytes {
        self.keys.as_ref().map_or(self.source.data(), Column::data)
    }

    /// The span of `row`'s key in [`Batch::key_data`].
    #[inline]
    pub fn key_span(&self, row: usize) -> Span {
        match &self.keys {
            Some(c) => c.spans[row],
            None => self.source.keys()[self.origin(row)],
        }
    }

    /// The buffer every value span points into: the source's, or the replaced value column's.
    pub fn value_data(&self) -> &Bytes {
        self.values
            .as_ref()
            .map_or(self.source.data(), Column::data)
    }

    /// The span of `row`'s value in [`Batch::value_data`].
    #[inline]
    pub fn value_span(&self, row: usize) -> Span {
        match &self.values {
            Some(c) => c.spans[row],
            None => self.source.values()[self.origin(row)],
        }
    }

    /// The values as (buffer, spans) when they are still the source's: kernels read them in
    /// place.
    pub fn source_values(&self) -> Option<(&Bytes, &[Span])> {
        (self.values.is_none() && self.origin.is_none())
            .then(|| (self.source.data(), self.source.values()))
    }

    /// Replaces the values: one entry per row.
    pub fn set_values(&mut self, values: Column) {
        assert_eq!(values.spans.len(), self.rows(), "one value per row");
        self.values = Some(values);
    }

    /// Replaces the keys: one entry per row.
    pub fn set_keys(&mut self, keys: Column) {
        assert_eq!(keys.spans.len(), self.rows(), "one key per row");
        self.keys = Some(keys);
    }

    /// Keeps only the selected rows for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&Batch, usize) -> bool) {
        let survivors: Vec<u32> = self
            .selected()
            .filter(|&row| keep(self, row))
            .map(|row| row as u32)
            .collect();
        if survivors.len() != self.rows() || self.selection.is_some() {
            self.selection = Some(survivors);
        }
    }

    /// Replaces the rows with new ones: `origin[i]` is the source record row `i` comes from;
    /// `keys` and `values` have one entry per new row. Every new row is selected.
    pub fn replace_rows(&mut self, origin: Vec<u32>, keys: Column, values: Column) {
        assert!(keys.spans.len() == origin.len() && values.spans.len() == origin.len());
        assert!(origin.iter().all(|&o| (o as usize) < self.source.len()));
        self.origin = Some(origin);
        self.keys = Some(keys);
        self.values = Some(values);
        self.selection = None;
    }

    /// The offset after the source batch: the position to commit once this batch's output is
    /// acknowledged.
    pub fn next_offset(&self) -> i64 {
        self.source.header().next_offset()
    }
}
