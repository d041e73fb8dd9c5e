//! Turning one partition's share of a fetch into batches for the application, and the buffer
//! bound those batches count against.
//!
//! Decoding runs on the runtime's worker threads, one task per partition per fetch, so busy
//! partitions decode in parallel. A task decodes while the buffer has room and leaves the rest
//! raw; the consumer decodes that rest itself when the application gets to it. Nothing ever
//! waits for room (which could wait on batches only the waiter would hand out): the bound comes
//! from the fetcher, which does not fetch while the buffer is full, and from tasks stopping at
//! the limit. What is held is at most `fetch.buffer.bytes` plus one batch per decoding task.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use super::aborted::AbortedFilter;
use super::fetcher::Tp;
use crate::error::Error;
use crate::record::{ColumnarBatch, DecodeOptions, RawBatch, RecordError};

/// Decoded bytes held by the application or waiting for it.
#[derive(Debug)]
pub(crate) struct Buffer {
    used: AtomicUsize,
    limit: usize,
    /// Signalled when room frees up.
    pub freed: Notify,
}

impl Buffer {
    pub fn new(limit: usize) -> Arc<Buffer> {
        Arc::new(Buffer {
            used: AtomicUsize::new(0),
            limit,
            freed: Notify::new(),
        })
    }

    pub fn has_room(&self) -> bool {
        self.used.load(Ordering::Acquire) < self.limit
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub fn take(self: &Arc<Self>, bytes: usize) -> Room {
        self.used.fetch_add(bytes, Ordering::AcqRel);
        Room {
            buffer: self.clone(),
            bytes,
        }
    }
}

/// A batch's share of the buffer, given back when the batch is dropped.
#[derive(Debug)]
pub(crate) struct Room {
    buffer: Arc<Buffer>,
    bytes: usize,
}

impl Drop for Room {
    fn drop(&mut self) {
        let before = self.buffer.used.fetch_sub(self.bytes, Ordering::AcqRel);
        if before >= self.buffer.limit && before - self.bytes < self.buffer.limit {
            self.buffer.freed.notify_one();
        }
    }
}

/// One partition's share of one fetch: decoded batches ready to hand out, and raw ones still to
/// decode, in offset order.
pub(crate) struct Pending {
    pub tp: Tp,
    pub epoch: u64,
    pub high_watermark: i64,
    pub decoded: VecDeque<(ColumnarBatch, Room)>,
    raw: VecDeque<RawBatch>,
    /// The fetch offset: records below it were asked for by nobody (a fetch from the middle
    /// of a batch).
    pub from: i64,
    filter: Option<AbortedFilter>,
    /// The fetched bytes behind `raw`, counted until this is done with: the fetcher stops
    /// while compressed data waits, not only decoded data.
    _raw_room: Room,
    /// A batch failed to decode: handed out after the batches before it.
    failed: Option<Error>,
}

impl Pending {
    pub fn new(
        tp: Tp,
        epoch: u64,
        high_watermark: i64,
        from: i64,
        raw: Vec<RawBatch>,
        filter: Option<AbortedFilter>,
        raw_room: Room,
    ) -> Pending {
        Pending {
            tp,
            epoch,
            high_watermark,
            decoded: VecDeque::new(),
            raw: raw.into(),
            from,
            filter,
            _raw_room: raw_room,
            failed: None,
        }
    }

    /// Whether nothing is left.
    pub fn is_done(&self) -> bool {
        self.decoded.is_empty() && self.raw.is_empty() && self.failed.is_none()
    }

    /// Decodes raw batches while the buffer has room (the background part). A failure is kept
    /// for after the batches before it.
    pub fn decode_while_room(&mut self, buffer: &Arc<Buffer>, options: &DecodeOptions) {
        while buffer.has_room() && self.failed.is_none() {
            match self.decode_one(buffer, options) {
                Ok(Some(batch)) => self.decoded.push_back(batch),
                Ok(None) => break,
                Err(e) => self.failed = Some(e),
            }
        }
    }

    /// The next batch for the application: a decoded one, or the next raw one decoded now;
    /// then the failure, if decoding failed.
    pub fn next(
        &mut self,
        buffer: &Arc<Buffer>,
        options: &DecodeOptions,
    ) -> Result<Option<(ColumnarBatch, Room)>, Error> {
        if let Some(batch) = self.decoded.pop_front() {
            return Ok(Some(batch));
        }
        if let Some(e) = self.failed.take() {
            self.raw.clear();
            return Err(e);
        }
        self.decode_one(buffer, options)
    }

    /// Decodes raw batches until one has records for the application.
    fn decode_one(
        &mut self,
        buffer: &Arc<Buffer>,
        options: &DecodeOptions,
    ) -> Result<Option<(ColumnarBatch, Room)>, Error> {
        while let Some(raw) = self.raw.pop_front() {
            let header = raw.header();
            if header.next_offset() <= self.from {
                continue;
            }
            let mut batch = ColumnarBatch::default();
            let control = if header.is_control() {
                raw.decode_into(&mut batch, options)
                    .map_err(|e| records_error(&self.tp, e))?;
                batch.control_record().and_then(|c| c.ok()).map(|c| c.kind)
            } else {
                None
            };
            let keep = match &mut self.filter {
                Some(f) => f.keep(&header, control),
                None => !header.is_control(),
            };
            if !keep {
                continue;
            }
            raw.decode_into(&mut batch, options)
                .map_err(|e| records_error(&self.tp, e))?;
            batch.skip_before(self.from);
            if batch.is_empty() {
                continue;
            }
            let room = buffer.take(batch.memory_size());
            return Ok(Some((batch, room)));
        }
        Ok(None)
    }
}

pub(crate) fn records_error(tp: &Tp, e: RecordError) -> Error {
    tracing::warn!(topic = %tp.0, partition = tp.1, error = %e, "bad record batch");
    Error::Records {
        topic: tp.0.to_string(),
        partition: tp.1,
        source: e,
    }
}
