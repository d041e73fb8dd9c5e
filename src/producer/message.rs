//! What `send` takes (a [`Record`]) and what it gives back (a [`Delivery`], or a
//! [`BatchDelivery`] for `send_batch`, resolving to where the broker wrote the record).

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;

use super::batch::{BatchAck, Outcome};
use crate::error::Error;
use crate::record::Header;

/// A record to send. Borrowed: `send` copies it into a batch and keeps nothing.
#[derive(Debug, Clone, Default)]
pub struct Record<'a> {
    /// The topic.
    pub topic: &'a str,
    /// An explicit partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    /// The key (null if `None`).
    pub key: Option<&'a [u8]>,
    /// The value (null if `None`).
    pub value: Option<&'a [u8]>,
    /// Headers.
    pub headers: Vec<Header<'a>>,
    /// CreateTime in milliseconds since the epoch; `None` means now.
    pub timestamp: Option<i64>,
}

impl<'a> Record<'a> {
    /// A record for `topic` with a null key and value.
    pub fn new(topic: &'a str) -> Self {
        Record {
            topic,
            ..Record::default()
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: &'a [u8]) -> Self {
        self.key = Some(key);
        self
    }

    /// Sets the value.
    pub fn value(mut self, value: &'a [u8]) -> Self {
        self.value = Some(value);
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: &'a str, value: Option<&'a [u8]>) -> Self {
        self.headers.push((key, value));
        self
    }

    /// Sends to this partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the timestamp (milliseconds since the epoch).
    pub fn timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }
}

/// Where an acknowledged record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The partition.
    pub partition: i32,
    /// The record's offset; -1 when the broker does not say (`acks=0`).
    pub offset: i64,
    /// The broker's append time, if the topic uses LogAppendTime.
    pub log_append_time: Option<i64>,
}

/// The acknowledgement of one record: `.await` it for its [`RecordMetadata`].
#[derive(Debug)]
pub struct Delivery {
    pub(super) outcome: Arc<Outcome>,
    pub(super) partition: i32,
    pub(super) offset_delta: i32,
}

impl Delivery {
    /// The partition the record went to.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The result, if the batch has been answered.
    pub fn try_result(&self) -> Option<Result<RecordMetadata, Error>> {
        self.outcome.get().map(|r| self.resolve(r))
    }

    /// Waits for the broker's answer.
    pub async fn wait(self) -> Result<RecordMetadata, Error> {
        let result = self.outcome.wait().await;
        self.resolve(result)
    }

    fn resolve(&self, result: &Result<BatchAck, Error>) -> Result<RecordMetadata, Error> {
        let ack = result.as_ref().map_err(Clone::clone)?;
        Ok(RecordMetadata {
            partition: self.partition,
            offset: if ack.base_offset < 0 {
                -1
            } else {
                ack.base_offset + i64::from(self.offset_delta)
            },
            log_append_time: (ack.log_append_time >= 0).then_some(ack.log_append_time),
        })
    }
}

impl IntoFuture for Delivery {
    type Output = Result<RecordMetadata, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}

/// The acknowledgement of a whole [`Producer::send_batch`](super::Producer::send_batch):
/// resolves when every batch the records went into has been answered.
#[derive(Debug, Default)]
pub struct BatchDelivery {
    pub(super) outcomes: Vec<Arc<Outcome>>,
    pub(super) records: usize,
}

impl BatchDelivery {
    /// How many records were handed in.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Waits for every batch; the first error wins.
    pub async fn wait(self) -> Result<(), Error> {
        let mut first = Ok(());
        for outcome in &self.outcomes {
            if let Err(e) = outcome.wait().await {
                if first.is_ok() {
                    first = Err(e.clone());
                }
            }
        }
        first
    }
}
