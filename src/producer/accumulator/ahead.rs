//! Batches built ahead of their turn, and record buffers kept for reuse: the accumulator's side
//! of compressing on several threads (the sender's side is `sender::ahead`).

use bytes::Bytes;

use super::Accumulator;
use crate::record::RecordBatchBuilder;

/// The most buffer capacity kept for reuse.
const SPARE_BYTES: usize = 8 << 20;

impl Accumulator {
    /// Takes the builders of up to `n` closed batches waiting in their queues (oldest first in
    /// each partition), to be built ahead of their turn: `(slot, batch id, builder)`. The
    /// batches stay queued without a builder until [`put_built`](Self::put_built) gives them
    /// their bytes; only the sender drains, and it waits for them first.
    pub fn take_builders_ahead(&mut self, n: usize) -> Vec<(usize, u64, RecordBatchBuilder)> {
        let mut taken = Vec::new();
        for (slot, part) in self.parts.iter_mut().enumerate() {
            for batch in part.queue.iter_mut() {
                if taken.len() == n {
                    return taken;
                }
                if let Some(builder) = batch.builder.take() {
                    taken.push((slot, batch.id, builder));
                }
            }
        }
        taken
    }

    /// Gives a batch built ahead its bytes (stamped without producer id or sequence; the
    /// sender re-stamps them when it sends). A batch that is gone meanwhile (a transaction
    /// aborted) is let go.
    pub fn put_built(&mut self, slot: usize, id: u64, data: Bytes) {
        if let Some(batch) = self.parts[slot].queue.iter_mut().find(|b| b.id == id) {
            batch.data = data;
            batch.stamped = (-1, -1, -1);
            self.built_ahead += 1;
        }
    }

    /// Puts back a builder taken ahead whose batch could not be built (it fails when it is
    /// sent, as it would have).
    pub fn put_builder(&mut self, slot: usize, id: u64, builder: RecordBatchBuilder) {
        if let Some(batch) = self.parts[slot].queue.iter_mut().find(|b| b.id == id) {
            batch.builder = Some(builder);
        }
    }

    /// A builder for a new batch, on buffers kept from earlier ones if there are.
    pub(super) fn new_builder(&mut self, batch_size: usize) -> RecordBatchBuilder {
        let compression = self.limits.compression;
        let builder = match self.spare.pop() {
            Some(buffer) => {
                self.spare_bytes -= buffer.capacity();
                RecordBatchBuilder::with_buffer(compression, buffer)
            }
            None => RecordBatchBuilder::with_capacity(compression, batch_size.min(64 * 1024)),
        };
        match self.spare_out.pop() {
            Some(output) => {
                self.spare_bytes -= output.capacity();
                builder.with_output(output)
            }
            None => builder,
        }
    }

    /// Takes back the bytes of a batch that is done, if nothing else holds them (a request
    /// being written) and there is room to keep them.
    pub(super) fn recycle_output(&mut self, data: Bytes) {
        if let Ok(data) = data.try_into_mut() {
            let output = Vec::from(data);
            let capacity = output.capacity();
            if capacity > 0 && self.spare_bytes + capacity <= SPARE_BYTES {
                self.spare_bytes += capacity;
                self.spare_out.push(output);
            }
        }
    }

    /// [`recycle`](Self::recycle), if there is a buffer.
    pub fn recycle_opt(&mut self, buffer: Option<Vec<u8>>) {
        if let Some(buffer) = buffer {
            self.recycle(buffer);
        }
    }

    /// Takes back the record buffer of an encoded batch, if there is room to keep it.
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        if capacity > 0 && self.spare_bytes + capacity <= SPARE_BYTES {
            self.spare_bytes += capacity;
            self.spare.push(buffer);
        }
    }
}
