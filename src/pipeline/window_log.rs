//! A [`WindowedAggregator`]'s state as changelog records, and back.
//!
//! One record per grouping key holds all of that key's open windows (or sessions), so a batch
//! logs one record per key it touched, and a key whose windows all closed logs a tombstone.
//! One more record holds the partition's progress (the largest event time seen, and the late
//! count), so a restored aggregator has the same watermark. Keys start with a tag byte:
//! - `w` + grouping key → `(start: i64, acc: [f64; width])`, big-endian, per open window;
//! - `s` + grouping key → `(start: i64, last: i64, acc: [f64; width])` per open session;
//!
//! where `width` is the aggregate's accumulator width (1 for count, sum, min and max: one
//! number per window).
//! - `m` → `(max event time: i64, late: u64)`, or empty before any record.

use super::{Acc, Session, WindowSpec, WindowedAggregator};
use crate::pipeline::state::{Change, StoreError};

const WINDOWS: u8 = b'w';
const SESSIONS: u8 = b's';
const META: u8 = b'm';

fn corrupt(what: &str, key: &[u8]) -> StoreError {
    StoreError::Corrupt {
        what: format!("{what} (changelog key {})", String::from_utf8_lossy(key)),
    }
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn f64_at(b: &[u8], at: usize) -> f64 {
    f64::from_bits(i64_at(b, at) as u64)
}

fn put_acc(v: &mut Vec<u8>, acc: &Acc, width: usize) {
    for x in &acc.0[..width] {
        v.extend_from_slice(&x.to_bits().to_be_bytes());
    }
}

fn acc_at(b: &[u8], at: usize, width: usize) -> Acc {
    let mut acc = Acc::default();
    for (i, x) in acc.0[..width].iter_mut().enumerate() {
        *x = f64_at(b, at + 8 * i);
    }
    acc
}

impl WindowedAggregator {
    /// Keeps, from now on, which keys changed, for [`take_changes`](Self::take_changes).
    pub fn logged(mut self) -> Self {
        self.dirty = Some(Default::default());
        self
    }

    pub(super) fn touch(&mut self, key: &[u8]) {
        if let Some(dirty) = &mut self.dirty {
            if !dirty.contains(key) {
                dirty.insert(key.to_vec());
            }
        }
    }

    /// The changelog records for what changed since the previous call (in key order, the
    /// progress record last); nothing unless the aggregator is [`logged`](Self::logged).
    pub fn take_changes(&mut self) -> Vec<Change> {
        let Some(dirty) = self.dirty.as_mut() else {
            return Vec::new();
        };
        let mut keys: Vec<Vec<u8>> = dirty.drain().collect();
        keys.sort_unstable();
        let mut out = Vec::with_capacity(keys.len() + 1);
        let session = matches!(self.spec, WindowSpec::Session { .. });
        let width = self.aggregate.width();
        for key in keys {
            let mut k = Vec::with_capacity(key.len() + 1);
            k.push(if session { SESSIONS } else { WINDOWS });
            k.extend_from_slice(&key);
            let value = if session {
                self.sessions
                    .get(&key)
                    .filter(|s| !s.is_empty())
                    .map(|open| {
                        let mut v = Vec::with_capacity(open.len() * (16 + 8 * width));
                        for s in open {
                            v.extend_from_slice(&s.start.to_be_bytes());
                            v.extend_from_slice(&s.last.to_be_bytes());
                            put_acc(&mut v, &s.value, width);
                        }
                        v
                    })
            } else {
                self.windows.get(&key).filter(|w| !w.is_empty()).map(|w| {
                    let mut v = Vec::with_capacity(w.len() * (8 + 8 * width));
                    for (start, acc) in w {
                        v.extend_from_slice(&start.to_be_bytes());
                        put_acc(&mut v, acc, width);
                    }
                    v
                })
            };
            out.push((k, value));
        }
        let mut meta = Vec::with_capacity(16);
        if let Some(t) = self.max_time {
            meta.extend_from_slice(&t.to_be_bytes());
            meta.extend_from_slice(&self.late.to_be_bytes());
        }
        out.push((vec![META], Some(meta)));
        out
    }

    /// Applies one changelog record (in offset order; logs nothing). A record that is not one
    /// of this aggregator's (another kind of window, a wrong length) is an error, never
    /// guessed at.
    pub fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        let Some((&tag, group)) = key.split_first() else {
            return Err(corrupt("an empty key", key));
        };
        let session = matches!(self.spec, WindowSpec::Session { .. });
        let width = self.aggregate.width();
        match tag {
            META => {
                match value {
                    Some([]) | None => self.max_time = None,
                    Some(v) if v.len() == 16 => {
                        self.max_time = Some(i64_at(v, 0));
                        self.late = i64_at(v, 8) as u64;
                    }
                    Some(_) => return Err(corrupt("a progress record of the wrong length", key)),
                }
                Ok(())
            }
            WINDOWS if !session => {
                let size = match self.spec {
                    WindowSpec::Tumbling { size } | WindowSpec::Hopping { size, .. } => size,
                    WindowSpec::Session { .. } => unreachable!("checked above"),
                };
                if let Some(old) = self.windows.remove(group) {
                    for start in old.keys() {
                        self.ends
                            .remove(&(start.saturating_add(size), group.to_vec(), *start));
                    }
                }
                let Some(v) = value else { return Ok(()) };
                let each = 8 + 8 * width;
                if v.is_empty() || v.len() % each != 0 {
                    return Err(corrupt("windows of the wrong length", key));
                }
                let mut windows = std::collections::BTreeMap::new();
                for at in (0..v.len()).step_by(each) {
                    let start = i64_at(v, at);
                    windows.insert(start, acc_at(v, at + 8, width));
                    self.ends
                        .insert((start.saturating_add(size), group.to_vec(), start));
                }
                self.windows.insert(group.to_vec(), windows);
                Ok(())
            }
            SESSIONS if session => {
                let Some(v) = value else {
                    self.sessions.remove(group);
                    return Ok(());
                };
                let each = 16 + 8 * width;
                if v.is_empty() || v.len() % each != 0 {
                    return Err(corrupt("sessions of the wrong length", key));
                }
                let mut open: Vec<Session> = (0..v.len())
                    .step_by(each)
                    .map(|at| Session {
                        start: i64_at(v, at),
                        last: i64_at(v, at + 8),
                        value: acc_at(v, at + 16, width),
                    })
                    .collect();
                open.sort_by_key(|s| s.start);
                self.sessions.insert(group.to_vec(), open);
                Ok(())
            }
            _ => Err(corrupt("a record of another kind of window", key)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Aggregate, WindowResult};
    use super::*;

    /// A user aggregate of the widest accumulator: count, sum, sum of squares.
    struct Variance;

    impl super::super::UserAggregate for Variance {
        fn name(&self) -> &str {
            "variance"
        }
        fn width(&self) -> usize {
            3
        }
        fn init(&self, value: f64, acc: &mut [f64]) {
            acc.copy_from_slice(&[1.0, value, value * value]);
        }
        fn merge(&self, acc: &mut [f64], other: &[f64]) {
            for (a, b) in acc.iter_mut().zip(other) {
                *a += b;
            }
        }
        fn result(&self, acc: &[f64]) -> f64 {
            let mean = acc[1] / acc[0];
            acc[2] / acc[0] - mean * mean
        }
    }

    fn batches() -> Vec<Vec<(String, i64, f64)>> {
        // Out of order within and across batches, several keys, a late record.
        let mut out = Vec::new();
        let mut t = 0i64;
        for b in 0..40 {
            let mut batch = Vec::new();
            for i in 0..25 {
                t += 37;
                let jitter = ((b * 25 + i) * 7919 % 400) as i64;
                let key = format!("k{}", (b * 3 + i) % 5);
                batch.push((key, t - jitter, f64::from(i)));
            }
            out.push(batch);
        }
        out[20].push(("k1".into(), 0, 1.0));
        out
    }

    fn push(w: &mut WindowedAggregator, batch: &[(String, i64, f64)]) -> Vec<WindowResult> {
        w.push(batch.iter().map(|(k, t, v)| (k.as_bytes(), *t, *v)))
    }

    /// Restoring at any batch boundary from the changes logged so far, then going on, gives
    /// exactly what one uninterrupted aggregator gives.
    #[test]
    fn restored_aggregators_go_on_exactly_as_the_original() {
        let specs = [
            WindowSpec::Tumbling { size: 500 },
            WindowSpec::Hopping {
                size: 600,
                advance: 200,
            },
            WindowSpec::Session { gap: 90 },
        ];
        let input = batches();
        let aggregates = [Aggregate::Sum, Aggregate::Avg, Aggregate::user(Variance)];
        for (spec, agg) in specs
            .iter()
            .flat_map(|s| aggregates.iter().map(move |a| (*s, a.clone())))
        {
            let make = || WindowedAggregator::new(spec, agg.clone(), 150).logged();
            let mut whole = make();
            let mut expected: Vec<WindowResult> =
                input.iter().flat_map(|b| push(&mut whole, b)).collect();
            expected.extend(whole.finish());
            for cut in [1, 7, 20, 33] {
                let mut first = make();
                let mut log: Vec<Change> = Vec::new();
                let mut got = Vec::new();
                for b in &input[..cut] {
                    got.extend(push(&mut first, b));
                    log.extend(first.take_changes());
                }
                let mut second = make();
                for (k, v) in &log {
                    second.restore(k, v.as_deref()).expect("restore");
                }
                assert_eq!(second.watermark(), first.watermark(), "{spec:?} at {cut}");
                assert_eq!(second.late(), first.late());
                assert_eq!(second.open(), first.open(), "{spec:?} at {cut}");
                for b in &input[cut..] {
                    got.extend(push(&mut second, b));
                }
                got.extend(second.finish());
                // Sessions close in hash order: compare as sets.
                let order = |r: &WindowResult| (r.key.clone(), r.start, r.end);
                got.sort_by_key(order);
                let mut want = expected.clone();
                want.sort_by_key(order);
                assert!(
                    got == want,
                    "{spec:?} {agg:?} cut at batch {cut}: results differ"
                );
            }
        }
    }

    #[test]
    fn closed_keys_are_tombstoned_and_foreign_records_refused() {
        let mut w = WindowedAggregator::new(WindowSpec::Tumbling { size: 10 }, Aggregate::Count, 0)
            .logged();
        w.push([(&b"a"[..], 1, 0.0)]);
        let changes = w.take_changes();
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes[0].1.is_some());
        let closed = w.push([(&b"b"[..], 25, 0.0)]);
        assert_eq!(closed.len(), 1);
        let changes = w.take_changes();
        assert!(
            changes.contains(&(b"wa".to_vec(), None)),
            "a's closed window is a tombstone: {changes:?}"
        );
        let mut fresh =
            WindowedAggregator::new(WindowSpec::Tumbling { size: 10 }, Aggregate::Count, 0);
        assert!(
            fresh.restore(b"sa", Some(&[0; 24])).is_err(),
            "a session record"
        );
        assert!(
            fresh.restore(b"wa", Some(&[0; 15])).is_err(),
            "a short record"
        );
        assert!(fresh.restore(b"", None).is_err(), "no tag");
        assert!(
            fresh.restore(b"m", Some(&[1; 3])).is_err(),
            "short progress"
        );
    }
}
