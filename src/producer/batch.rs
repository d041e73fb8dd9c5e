//! A batch on its way to the broker, and its outcome, which the delivery futures of its
//! records share.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::error::Error;
use crate::record::RecordBatchBuilder;

/// What the broker said about a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchAck {
    /// Offset of the batch's first record (-1 if unknown: acks=0, or a duplicate on old brokers).
    pub base_offset: i64,
    /// The broker's append time if the topic uses LogAppendTime, else -1.
    pub log_append_time: i64,
}

/// The fate of one batch, shared by the delivery futures of its records.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    done: OnceLock<Result<BatchAck, Error>>,
    notify: Notify,
}

impl Outcome {
    pub(crate) fn complete(&self, result: Result<BatchAck, Error>) {
        if self.done.set(result).is_ok() {
            self.notify.notify_waiters();
        }
    }

    pub(crate) fn get(&self) -> Option<&Result<BatchAck, Error>> {
        self.done.get()
    }

    pub(crate) async fn wait(&self) -> &Result<BatchAck, Error> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(result) = self.done.get() {
                return result;
            }
            notified.await;
        }
    }
}

/// A closed batch on its way to the broker.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Creation order, for `flush`.
    pub id: u64,
    /// Index of its partition in the accumulator.
    pub slot: usize,
    pub topic: Arc<str>,
    pub partition: i32,
    /// Records, until the sender encodes them (once, at the first send).
    pub builder: Option<RecordBatchBuilder>,
    /// The encoded batch, once sent.
    pub data: Bytes,
    pub records: i32,
    /// Its size before compression (header and records).
    pub uncompressed: usize,
    /// `buffer.memory` bytes this batch holds.
    pub reserved: usize,
    pub created: Instant,
    pub outcome: Arc<Outcome>,
    /// Base sequence, once assigned (idempotence).
    pub sequence: Option<i32>,
    /// Producer id, epoch and base sequence the encoded batch carries.
    pub stamped: (i64, i16, i32),
    pub attempts: u32,
    pub not_before: Option<Instant>,
    pub last_error: Option<Error>,
}
