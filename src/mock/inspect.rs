//! What tests read from the embedded cluster: groups, committed offsets, logs, request counts
//! (and one way to damage a log).

use bytes::{Bytes, BytesMut};

use super::{GroupInfo, MockCluster, StoredBatch};
use crate::record::{RawBatch, RecordError};
use crate::wire::ApiKey;

impl MockCluster {
    /// A consumer group's generation, members and leader, if the group exists.
    pub fn group(&self, group: &str) -> Option<GroupInfo> {
        let mut state = self.state();
        let group = state.groups.get_mut(group)?;
        group.tick(std::time::Instant::now());
        Some(group.info())
    }

    /// The offset a group has committed for a partition.
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.state()
            .offsets
            .get(&(group.to_owned(), topic.to_owned(), partition))
            .copied()
    }

    /// How many requests of `api` the cluster has received.
    pub fn request_count(&self, api: ApiKey) -> u64 {
        self.state()
            .requests
            .get(&(api as i16))
            .copied()
            .unwrap_or(0)
    }

    /// A partition's log end offset (0 for an unknown partition).
    pub fn log_end(&self, topic: &str, partition: i32) -> i64 {
        self.state()
            .topics
            .get(topic)
            .and_then(|t| t.get(partition as usize))
            .map_or(0, |l| l.next_offset)
    }

    /// A partition's log start offset (records below it were deleted; 0 for an unknown
    /// partition).
    pub fn log_start(&self, topic: &str, partition: i32) -> i64 {
        self.state()
            .topics
            .get(topic)
            .and_then(|t| t.get(partition as usize))
            .map_or(0, |l| l.log_start)
    }

    /// The batches stored for a partition, in offset order.
    pub fn batches(&self, topic: &str, partition: i32) -> Vec<StoredBatch> {
        self.state()
            .topics
            .get(topic)
            .and_then(|t| t.get(partition as usize))
            .map(|l| l.batches.clone())
            .unwrap_or_default()
    }

    /// Flips a byte in the records of a partition's `index`-th stored batch, so its CRC no
    /// longer matches (a corrupt log, or a broker that lies).
    pub fn corrupt_batch(&self, topic: &str, partition: i32, index: usize) {
        let mut state = self.state();
        if let Some(batch) = state
            .topics
            .get_mut(topic)
            .and_then(|t| t.get_mut(partition as usize))
            .and_then(|l| l.batches.get_mut(index))
        {
            let mut bytes = BytesMut::from(&batch.bytes[..]);
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            batch.bytes = bytes.freeze();
        }
    }

    /// Every record of a partition as (offset, key, value), decoded from the stored batches.
    #[allow(clippy::type_complexity)]
    pub fn records(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<(i64, Option<Bytes>, Option<Bytes>)>, RecordError> {
        let mut out = Vec::new();
        for batch in self.batches(topic, partition) {
            let decoded = RawBatch::new(batch.bytes)?.decode()?;
            for i in 0..decoded.len() {
                out.push((
                    decoded.offset(i),
                    decoded.key_bytes(i),
                    decoded.value_bytes(i),
                ));
            }
        }
        Ok(out)
    }
}
