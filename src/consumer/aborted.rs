//! Dropping aborted transactional records for read_committed, as the Java consumer does: the
//! broker lists, per partition, the producers whose transactions were aborted and the first
//! offset of each; a producer's batches are dropped from that offset until its ABORT marker.

use std::collections::HashSet;

use crate::record::{BatchHeader, ControlRecordType};

/// Aborted transactions of one partition's fetch, consumed in offset order.
#[derive(Debug, Default)]
pub(crate) struct AbortedFilter {
    /// (first offset, producer id), sorted by first offset.
    pending: Vec<(i64, i64)>,
    next: usize,
    active: HashSet<i64>,
}

impl AbortedFilter {
    pub fn new(aborted: impl IntoIterator<Item = (i64, i64)>) -> Self {
        let mut pending: Vec<(i64, i64)> = aborted
            .into_iter()
            .map(|(producer, first)| (first, producer))
            .collect();
        pending.sort_unstable();
        AbortedFilter {
            pending,
            next: 0,
            active: HashSet::new(),
        }
    }

    /// Whether the application should see this batch. Control batches never are; `control` is
    /// the marker's type when the batch is one.
    pub fn keep(&mut self, header: &BatchHeader, control: Option<ControlRecordType>) -> bool {
        while let Some((first, producer)) = self.pending.get(self.next) {
            if *first > header.last_offset() {
                break;
            }
            self.active.insert(*producer);
            self.next += 1;
        }
        if header.is_control() {
            if control == Some(ControlRecordType::Abort) {
                self.active.remove(&header.producer_id);
            }
            return false;
        }
        !(header.is_transactional() && self.active.contains(&header.producer_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Compression, RawBatch, RecordBatchBuilder};

    fn batch(base: i64, producer: i64, transactional: bool, control: bool) -> BatchHeader {
        let mut b = RecordBatchBuilder::new(Compression::None)
            .base_offset(base)
            .producer(producer, 0, 0)
            .transactional(transactional)
            .control(control);
        b.append(0, Some(&[0, 0, 0, 0]), Some(b"v"), &[]).unwrap();
        b.append(0, Some(&[0, 0, 0, 0]), Some(b"v"), &[]).unwrap();
        RawBatch::new(b.build().unwrap()).unwrap().header()
    }

    #[test]
    fn aborted_batches_are_dropped_until_their_marker() {
        // Producer 7 aborted a transaction starting at offset 2; producer 8 committed.
        let mut f = AbortedFilter::new([(7, 2)]);
        assert!(
            f.keep(&batch(0, 7, true, false), None),
            "before the aborted transaction"
        );
        assert!(!f.keep(&batch(2, 7, true, false), None), "aborted data");
        assert!(
            f.keep(&batch(4, 8, true, false), None),
            "another producer's data"
        );
        assert!(
            f.keep(&batch(6, -1, false, false), None),
            "non-transactional data"
        );
        assert!(!f.keep(&batch(8, 7, true, true), Some(ControlRecordType::Abort)));
        assert!(f.keep(&batch(10, 7, true, false), None), "after the marker");
        assert!(!f.keep(&batch(12, 8, true, true), Some(ControlRecordType::Commit)));
    }
}
