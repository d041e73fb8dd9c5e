//! Control records: the transaction markers (COMMIT, ABORT) written in control batches.
//!
//! # References
//! - Kafka protocol guide, "Control Batches": key `version: int16, type: int16` (0 abort,
//!   1 commit); value `version: int16, coordinator_epoch: int32`.
//! - KIP-98.

use super::columnar::ColumnarBatch;
use crate::wire::primitives::{PrimitiveError, Reader};

/// The kind of a control record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRecordType {
    /// A transaction was aborted.
    Abort,
    /// A transaction was committed.
    Commit,
    /// A type this version of spate does not know.
    Unknown(i16),
}

/// A decoded control record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlRecord {
    /// The key's version.
    pub version: i16,
    /// What it marks.
    pub kind: ControlRecordType,
    /// The transaction coordinator's epoch, if the value carries it.
    pub coordinator_epoch: Option<i32>,
}

impl ControlRecord {
    /// Parses a control record from its key and value.
    pub fn parse(key: &[u8], value: Option<&[u8]>) -> Result<Self, PrimitiveError> {
        let mut k = Reader::new(key);
        let version = k.i16()?;
        let kind = match k.i16()? {
            0 => ControlRecordType::Abort,
            1 => ControlRecordType::Commit,
            other => ControlRecordType::Unknown(other),
        };
        let coordinator_epoch = match value {
            Some(v) if v.len() >= 6 => {
                let mut r = Reader::new(v);
                r.i16()?;
                Some(r.i32()?)
            }
            _ => None,
        };
        Ok(ControlRecord {
            version,
            kind,
            coordinator_epoch,
        })
    }
}

impl ColumnarBatch {
    /// The control record, if this is a control batch (a control batch holds exactly one).
    pub fn control_record(&self) -> Option<Result<ControlRecord, PrimitiveError>> {
        if !self.header().is_control() || self.is_empty() {
            return None;
        }
        let key = self.key(0).unwrap_or_default();
        Some(ControlRecord::parse(key, self.value(0)))
    }
}
