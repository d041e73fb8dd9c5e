//! Event-time windows over batches, without I/O: tumbling, hopping and session windows per
//! key, with count, sum, min and max, emitted once the watermark closes them (or at the end of
//! bounded input, as Flink does).
//!
//! The rules, decided per record in input order so the results do not depend on how records
//! are split into batches:
//! - The **watermark** of a partition is the largest event time it has seen minus the allowed
//!   lateness (Kafka Streams' stream time less the grace period). Each input partition keeps its
//!   own: records of one key always come from one partition, so its windows depend on nothing
//!   else (an idle partition holds nobody back).
//! - A record goes to every window that contains its event time (`[start, end)`; one for
//!   tumbling, `size / advance` for hopping) whose end is still above the watermark as it was
//!   before the record. A record none of whose windows is open is **late**: counted and
//!   dropped.
//! - **Sessions**: a record joins (and merges) the key's open sessions it is within `gap` of
//!   (`start - gap < t < last + gap`); a session covers `[start, last + gap)`. A record whose
//!   merged session would end at or below the watermark is late.
//! - After each batch every window or session whose end is at or below the watermark is
//!   emitted, final, and forgotten. [`WindowedAggregator::finish`] emits what is still open.
//!
//! Tumbling and hopping windows aggregate a batch first (grouped by key and window, in a small
//! map), then merge the partial results into the state: one state update per key and window
//! per batch, not per record.

use std::collections::{BTreeMap, BTreeSet, HashMap};

#[path = "window_aggregate.rs"]
mod aggregate;
use aggregate::Acc;
pub use aggregate::{Aggregate, UserAggregate, MAX_WIDTH};

/// The kind of window, sizes in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// Fixed windows of `size`, back to back: `[k·size, (k+1)·size)`.
    Tumbling {
        /// Window length.
        size: i64,
    },
    /// Windows of `size` starting every `advance` (overlapping when `advance < size`).
    Hopping {
        /// Window length.
        size: i64,
        /// Distance between window starts.
        advance: i64,
    },
    /// Per key, records closer than `gap` to each other.
    Session {
        /// The inactivity gap that ends a session.
        gap: i64,
    },
}

impl WindowSpec {
    /// Checks the sizes.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            WindowSpec::Tumbling { size } if size > 0 => Ok(()),
            WindowSpec::Hopping { size, advance } if size > 0 && advance > 0 && advance <= size => {
                Ok(())
            }
            WindowSpec::Session { gap } if gap > 0 => Ok(()),
            _ => Err(format!(
                "{self:?}: sizes must be positive, and advance at most size"
            )),
        }
    }
}

/// A window's final result.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult {
    /// The grouping key.
    pub key: Vec<u8>,
    /// Window start (epoch milliseconds, inclusive).
    pub start: i64,
    /// Window end (epoch milliseconds, exclusive).
    pub end: i64,
    /// The aggregate.
    pub value: f64,
}

/// A key's windows in one batch: the first inline (most keys have one window per batch), the
/// others in a vector allocated only if needed; looked up newest first.
struct Slots {
    first: (i64, Acc),
    empty: bool,
    more: Vec<(i64, Acc)>,
}

impl Slots {
    fn add(&mut self, start: i64, v: &Acc, agg: &Aggregate) {
        if self.empty {
            self.first = (start, *v);
            self.empty = false;
            return;
        }
        let found = self
            .more
            .iter_mut()
            .rev()
            .chain(std::iter::once(&mut self.first))
            .find(|(s, _)| *s == start);
        match found {
            Some((_, acc)) => agg.merge(acc, v),
            None => self.more.push((start, *v)),
        }
    }

    /// Merges into a key's open windows (new ones also into `ends`).
    fn merge_into(
        &self,
        per_key: &mut BTreeMap<i64, Acc>,
        ends: &mut BTreeSet<(i64, Vec<u8>, i64)>,
        key: &[u8],
        size: i64,
        agg: &Aggregate,
    ) {
        for &(start, v) in self.iter() {
            match per_key.get_mut(&start) {
                Some(acc) => agg.merge(acc, &v),
                None => {
                    per_key.insert(start, v);
                    ends.insert((start.saturating_add(size), key.to_vec(), start));
                }
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &(i64, Acc)> {
        (!self.empty)
            .then_some(&self.first)
            .into_iter()
            .chain(&self.more)
    }
}

#[derive(Debug, Clone, Copy)]
struct Session {
    start: i64,
    last: i64,
    value: Acc,
}

/// One input partition's windows.
#[derive(Debug)]
pub struct WindowedAggregator {
    spec: WindowSpec,
    aggregate: Aggregate,
    lateness: i64,
    max_time: Option<i64>,
    /// Tumbling and hopping: per key, window start → value (found by `&[u8]`, so merging into
    /// an existing window allocates nothing).
    windows: HashMap<Vec<u8>, BTreeMap<i64, Acc>>,
    /// The open windows by end, for closing: (end, key, start), one entry per window.
    ends: BTreeSet<(i64, Vec<u8>, i64)>,
    /// Sessions: per key, open sessions ordered by start.
    sessions: HashMap<Vec<u8>, Vec<Session>>,
    late: u64,
    /// Keys changed since the changes were last taken ([`Self::logged`] turns it on).
    dirty: Option<std::collections::HashSet<Vec<u8>>>,
    /// Emit every change ([`Self::updates`]): the windows a batch touched.
    updates: Option<Vec<(Vec<u8>, i64)>>,
    /// The positions, in the last [`push`](Self::push), of the records dropped as late
    /// ([`Self::keep_late`] turns it on).
    late_rows: Option<Vec<usize>>,
}

impl WindowedAggregator {
    /// Windows of `spec` computing `aggregate`, with `lateness` (ms) of allowed disorder.
    pub fn new(spec: WindowSpec, aggregate: Aggregate, lateness: i64) -> Self {
        WindowedAggregator {
            spec,
            aggregate,
            lateness: lateness.max(0),
            max_time: None,
            windows: HashMap::new(),
            ends: BTreeSet::new(),
            sessions: HashMap::new(),
            late: 0,
            dirty: None,
            updates: None,
            late_rows: None,
        }
    }

    /// Remembers which records of each [`push`](Self::push) were dropped as late
    /// ([`late_rows`](Self::late_rows)), for a side output.
    pub fn keep_late(mut self) -> Self {
        self.late_rows = Some(Vec::new());
        self
    }

    /// The positions, in the records of the last [`push`](Self::push), of those dropped as
    /// late (empty unless [`keep_late`](Self::keep_late)).
    pub fn late_rows(&self) -> &[usize] {
        self.late_rows.as_deref().unwrap_or_default()
    }

    fn dropped(&mut self, index: usize) {
        self.late += 1;
        if let Some(rows) = &mut self.late_rows {
            rows.push(index);
        }
    }

    /// The watermark: windows ending at or below it are closed (`i64::MIN` before any record).
    pub fn watermark(&self) -> i64 {
        self.max_time
            .map_or(i64::MIN, |t| t.saturating_sub(self.lateness))
    }

    /// Records dropped as late so far.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Windows (or sessions) open now.
    pub fn open(&self) -> usize {
        self.ends.len() + self.sessions.values().map(Vec::len).sum::<usize>()
    }

    fn observe(&mut self, time: i64) {
        self.max_time = Some(self.max_time.map_or(time, |m| m.max(time)));
    }

    /// Emits every change instead of final results: [`push`](Self::push) returns the new
    /// value of each window the batch changed (the last one a window gets is its final
    /// value), and closed windows are only forgotten. Tumbling and hopping windows only: a
    /// session that merges would need its earlier updates retracted.
    pub fn updates(mut self) -> Result<Self, String> {
        if matches!(self.spec, WindowSpec::Session { .. }) {
            return Err(
                "sessions emit final results only (a merge would retract earlier updates)".into(),
            );
        }
        self.updates = Some(Vec::new());
        Ok(self)
    }

    /// Takes one batch of `(key, event time, value)` (the value is ignored by count) and
    /// returns the windows it closed (with [`updates`](Self::updates): the windows it changed).
    pub fn push<'a>(
        &mut self,
        records: impl IntoIterator<Item = (&'a [u8], i64, f64)>,
    ) -> Vec<WindowResult> {
        if let Some(rows) = &mut self.late_rows {
            rows.clear();
        }
        match self.spec {
            WindowSpec::Session { gap } => {
                for (index, (key, time, value)) in records.into_iter().enumerate() {
                    self.session_record(index, key, time, value, gap);
                }
            }
            WindowSpec::Tumbling { size } => self.fixed(records, size, size),
            WindowSpec::Hopping { size, advance } => self.fixed(records, size, advance),
        }
        let Some(touched) = self.updates.take() else {
            return self.close(false);
        };
        let size = match self.spec {
            WindowSpec::Tumbling { size } | WindowSpec::Hopping { size, .. } => size,
            WindowSpec::Session { .. } => 0,
        };
        let out = touched
            .iter()
            .filter_map(|(key, start)| {
                let acc = self.windows.get(key)?.get(start)?;
                Some(WindowResult {
                    key: key.clone(),
                    start: *start,
                    end: start.saturating_add(size),
                    value: self.aggregate.result(acc),
                })
            })
            .collect();
        self.updates = Some(Vec::new());
        self.close(false);
        out
    }

    /// Every window still open, as at the end of bounded input (with
    /// [`updates`](Self::updates): nothing, every value was emitted when it changed).
    pub fn finish(&mut self) -> Vec<WindowResult> {
        let closed = self.close(true);
        if self.updates.is_some() {
            return Vec::new();
        }
        closed
    }

    fn fixed<'a>(
        &mut self,
        records: impl IntoIterator<Item = (&'a [u8], i64, f64)>,
        size: i64,
        advance: i64,
    ) {
        // The batch's partial aggregates first: per key (hashed once per record), its
        // windows' starts and accumulators, few per batch, the latest last.
        let records = records.into_iter();
        let mut partial: HashMap<&'a [u8], Slots> =
            HashMap::with_capacity(records.size_hint().0.min(1 << 16));
        let agg = self.aggregate.clone();
        for (index, (key, time, value)) in records.enumerate() {
            let watermark = self.watermark();
            // The starts k·advance with start <= time < start + size; the latest ends last,
            // so if its window is closed, all are.
            let last_start = time.div_euclid(advance) * advance;
            if last_start.saturating_add(size) <= watermark {
                self.dropped(index);
            } else {
                let v = agg.init(value);
                let slots = partial.entry(key).or_insert_with(|| Slots {
                    first: (last_start, Acc::default()),
                    empty: true,
                    more: Vec::new(),
                });
                let mut start = last_start;
                while start > time.saturating_sub(size) && start.saturating_add(size) > watermark {
                    slots.add(start, &v, &agg);
                    match start.checked_sub(advance) {
                        Some(s) => start = s,
                        None => break,
                    }
                }
            }
            self.observe(time);
        }
        for (key, slots) in partial {
            self.touch(key);
            if let Some(updates) = &mut self.updates {
                updates.extend(slots.iter().map(|(start, _)| (key.to_vec(), *start)));
            }
            match self.windows.get_mut(key) {
                Some(per_key) => slots.merge_into(per_key, &mut self.ends, key, size, &agg),
                None => {
                    let mut per_key = BTreeMap::new();
                    slots.merge_into(&mut per_key, &mut self.ends, key, size, &agg);
                    self.windows.insert(key.to_vec(), per_key);
                }
            }
        }
    }

    fn session_record(&mut self, index: usize, key: &[u8], time: i64, value: f64, gap: i64) {
        let watermark = self.watermark();
        let agg = &self.aggregate;
        // Found by `&[u8]`: a key with open sessions allocates nothing.
        let late = match self.sessions.get_mut(key) {
            Some(open) => add_to_sessions(open, agg, time, value, gap, watermark),
            None => {
                let mut open = Vec::new();
                let late = add_to_sessions(&mut open, agg, time, value, gap, watermark);
                if !late {
                    self.sessions.insert(key.to_vec(), open);
                }
                late
            }
        };
        if late {
            self.dropped(index);
        } else {
            self.touch(key);
        }
        self.observe(time);
    }

    fn close(&mut self, all: bool) -> Vec<WindowResult> {
        let watermark = if all { i64::MAX } else { self.watermark() };
        let mut out = Vec::new();
        while let Some((end, _, _)) = self.ends.first() {
            if *end > watermark && !all {
                break;
            }
            let Some((end, key, start)) = self.ends.pop_first() else {
                break;
            };
            let Some(per_key) = self.windows.get_mut(&key) else {
                continue;
            };
            let Some(acc) = per_key.remove(&start) else {
                continue;
            };
            let value = self.aggregate.result(&acc);
            if per_key.is_empty() {
                self.windows.remove(&key);
            }
            self.touch(&key);
            out.push(WindowResult {
                key,
                start,
                end,
                value,
            });
        }
        if let WindowSpec::Session { gap } = self.spec {
            let dirty = &mut self.dirty;
            let agg = &self.aggregate;
            self.sessions.retain(|key, open| {
                let before = open.len();
                open.retain(|s| {
                    let end = s.last.saturating_add(gap);
                    if all || end <= watermark {
                        out.push(WindowResult {
                            key: key.clone(),
                            start: s.start,
                            end,
                            value: agg.result(&s.value),
                        });
                        false
                    } else {
                        true
                    }
                });
                if open.len() != before {
                    if let Some(dirty) = dirty.as_mut() {
                        dirty.insert(key.clone());
                    }
                }
                !open.is_empty()
            });
        }
        out
    }
}

/// Adds a record to a key's open sessions (merging those it joins); `true` if it is late.
fn add_to_sessions(
    open: &mut Vec<Session>,
    agg: &Aggregate,
    time: i64,
    value: f64,
    gap: i64,
    watermark: i64,
) -> bool {
    // Sessions the watermark already closed (emitted at the end of this batch) take nothing
    // more.
    let joins = |s: &Session| {
        let end = s.last.saturating_add(gap);
        end > watermark && time > s.start.saturating_sub(gap) && time < end
    };
    let mut merged = Session {
        start: time,
        last: time,
        value: agg.init(value),
    };
    for s in open.iter().filter(|s| joins(s)) {
        merged.start = merged.start.min(s.start);
        merged.last = merged.last.max(s.last);
        agg.merge(&mut merged.value, &s.value);
    }
    if merged.last.saturating_add(gap) <= watermark {
        return true;
    }
    open.retain(|s| !joins(s));
    let at = open.partition_point(|s| s.start < merged.start);
    open.insert(at, merged);
    false
}

#[path = "window_log.rs"]
mod log;

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        spec: WindowSpec,
        agg: Aggregate,
        lateness: i64,
        batches: &[&[(&str, i64, f64)]],
    ) -> (Vec<(String, i64, i64, f64)>, u64) {
        let mut w = WindowedAggregator::new(spec, agg, lateness);
        let mut out = Vec::new();
        for batch in batches {
            out.extend(w.push(batch.iter().map(|(k, t, v)| (k.as_bytes(), *t, *v))));
        }
        out.extend(w.finish());
        let mut out: Vec<_> = out
            .into_iter()
            .map(|r| (String::from_utf8(r.key).unwrap(), r.start, r.end, r.value))
            .collect();
        out.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (out, w.late())
    }

    #[test]
    fn tumbling_counts_with_disorder_and_a_late_record() {
        let input: &[(&str, i64, f64)] = &[
            ("a", 1_000, 1.0),
            ("a", 12_000, 1.0),
            ("a", 9_000, 1.0), // out of order, within the lateness
            ("b", 25_000, 1.0),
            ("a", 2_000, 1.0), // late: [0, 10 s) closed once the watermark reached 15 s
        ];
        let (out, late) = run(
            WindowSpec::Tumbling { size: 10_000 },
            Aggregate::Count,
            10_000,
            &[input],
        );
        assert_eq!(
            out,
            vec![
                ("a".into(), 0, 10_000, 2.0),
                ("a".into(), 10_000, 20_000, 1.0),
                ("b".into(), 20_000, 30_000, 1.0),
            ]
        );
        assert_eq!(late, 1);
    }

    /// The late records' positions in each push, for a side output: windows and sessions.
    #[test]
    fn keeps_the_positions_of_late_records_per_push() {
        let mut w =
            WindowedAggregator::new(WindowSpec::Tumbling { size: 10_000 }, Aggregate::Count, 0)
                .keep_late();
        let first: &[(&str, i64, f64)] =
            &[("a", 15_000, 1.0), ("a", 3_000, 1.0), ("b", 16_000, 1.0)];
        w.push(first.iter().map(|(k, t, v)| (k.as_bytes(), *t, *v)));
        assert_eq!(w.late_rows(), &[1]);
        let second: &[(&str, i64, f64)] = &[("a", 9_999, 1.0), ("a", 10_000, 1.0), ("c", 1, 1.0)];
        w.push(second.iter().map(|(k, t, v)| (k.as_bytes(), *t, *v)));
        assert_eq!(
            w.late_rows(),
            &[0, 2],
            "positions count from each push's first record"
        );
        assert_eq!(w.late(), 3);

        let mut s =
            WindowedAggregator::new(WindowSpec::Session { gap: 1_000 }, Aggregate::Count, 0)
                .keep_late();
        let records: &[(&str, i64, f64)] =
            &[("a", 10_000, 1.0), ("a", 8_000, 1.0), ("a", 9_500, 1.0)];
        s.push(records.iter().map(|(k, t, v)| (k.as_bytes(), *t, *v)));
        // 8 s: its session would end at 9 s, below the watermark (10 s); 9.5 s joins 10 s's.
        assert_eq!(s.late_rows(), &[1]);
        let plain = WindowedAggregator::new(WindowSpec::Tumbling { size: 10 }, Aggregate::Count, 0);
        assert!(plain.late_rows().is_empty());
    }

    /// `n` records over three keys, event times out of order.
    fn disordered(n: usize) -> Vec<(&'static str, i64, f64)> {
        (0..n)
            .map(|i| {
                (
                    ["x", "y", "z"][i % 3],
                    ((i * 7919) % 1000) as i64 * 10 + i as i64 * 5,
                    (i % 5) as f64,
                )
            })
            .collect()
    }

    /// In updates mode each window's last update is its final result, and every final
    /// window was updated.
    #[test]
    fn the_last_update_of_each_window_is_its_final_value() {
        let input = disordered(300);
        for spec in [
            WindowSpec::Tumbling { size: 300 },
            WindowSpec::Hopping {
                size: 300,
                advance: 100,
            },
        ] {
            let finals = run(spec, Aggregate::Sum, 500, &[&input]).0;
            let mut w = WindowedAggregator::new(spec, Aggregate::Sum, 500)
                .updates()
                .expect("fixed windows");
            let mut last: BTreeMap<(String, i64, i64), f64> = BTreeMap::new();
            let mut emitted = 0;
            for chunk in input.chunks(11) {
                for r in w.push(chunk.iter().map(|(k, t, v)| (k.as_bytes(), *t, *v))) {
                    emitted += 1;
                    last.insert((String::from_utf8(r.key).unwrap(), r.start, r.end), r.value);
                }
            }
            assert!(w.finish().is_empty(), "nothing left to emit");
            let last: Vec<(String, i64, i64, f64)> = last
                .into_iter()
                .map(|((k, s, e), v)| (k, s, e, v))
                .collect();
            assert_eq!(last, finals, "{spec:?}");
            assert!(emitted > finals.len(), "updates, not only finals");
        }
        assert!(
            WindowedAggregator::new(WindowSpec::Session { gap: 5 }, Aggregate::Count, 0)
                .updates()
                .is_err()
        );
    }

    #[test]
    fn results_do_not_depend_on_batch_boundaries() {
        let input = disordered(200);
        for spec in [
            WindowSpec::Tumbling { size: 300 },
            WindowSpec::Hopping {
                size: 300,
                advance: 100,
            },
            WindowSpec::Session { gap: 40 },
        ] {
            for agg in [
                Aggregate::Count,
                Aggregate::Sum,
                Aggregate::Min,
                Aggregate::Max,
                Aggregate::Avg,
                Aggregate::user(SumOfSquares),
            ] {
                let whole = run(spec, agg.clone(), 500, &[&input]);
                let pieces: Vec<&[(&str, i64, f64)]> = input.chunks(7).collect();
                assert_eq!(
                    run(spec, agg.clone(), 500, &pieces),
                    whole,
                    "{spec:?} {agg:?}"
                );
            }
        }
    }

    /// A user aggregate of width 1.
    struct SumOfSquares;

    impl UserAggregate for SumOfSquares {
        fn name(&self) -> &str {
            "sum-of-squares"
        }
        fn init(&self, value: f64, acc: &mut [f64]) {
            acc[0] = value * value;
        }
        fn merge(&self, acc: &mut [f64], other: &[f64]) {
            acc[0] += other[0];
        }
        fn result(&self, acc: &[f64]) -> f64 {
            acc[0]
        }
    }

    /// Averages are sums over counts, window for window and session for session; a user
    /// aggregate gets each window's own records.
    #[test]
    fn averages_and_user_aggregates_per_window() {
        let input = disordered(300);
        for spec in [
            WindowSpec::Hopping {
                size: 300,
                advance: 100,
            },
            WindowSpec::Session { gap: 40 },
        ] {
            let sums = run(spec, Aggregate::Sum, 500, &[&input]).0;
            let counts = run(spec, Aggregate::Count, 500, &[&input]).0;
            let avgs = run(spec, Aggregate::Avg, 500, &[&input]).0;
            assert_eq!(avgs.len(), sums.len());
            for ((a, s), c) in avgs.iter().zip(&sums).zip(&counts) {
                assert_eq!((&a.0, a.1, a.2), (&s.0, s.1, s.2));
                assert_eq!(a.3, s.3 / c.3, "{spec:?} {a:?}");
            }
        }
        let (out, _) = run(
            WindowSpec::Tumbling { size: 10 },
            Aggregate::user(SumOfSquares),
            0,
            &[&[("k", 1, 2.0), ("k", 5, 3.0), ("k", 12, 4.0)]],
        );
        assert_eq!(
            out,
            vec![("k".into(), 0, 10, 13.0), ("k".into(), 10, 20, 16.0)]
        );
    }

    #[test]
    fn hopping_windows_hold_a_record_in_each_window_that_covers_it() {
        let (out, _) = run(
            WindowSpec::Hopping {
                size: 30,
                advance: 10,
            },
            Aggregate::Sum,
            0,
            &[&[("k", 25, 2.0)]],
        );
        assert_eq!(
            out,
            vec![
                ("k".into(), 0, 30, 2.0),
                ("k".into(), 10, 40, 2.0),
                ("k".into(), 20, 50, 2.0)
            ]
        );
    }

    #[test]
    fn sessions_merge_when_a_record_bridges_them() {
        let input: &[(&str, i64, f64)] = &[("k", 0, 1.0), ("k", 100, 2.0), ("k", 50, 3.0)];
        let (out, late) = run(
            WindowSpec::Session { gap: 60 },
            Aggregate::Sum,
            1_000,
            &[input],
        );
        assert_eq!(out, vec![("k".into(), 0, 160, 6.0)]);
        assert_eq!(late, 0);
        // Without the bridge they stay apart.
        let (out, _) = run(
            WindowSpec::Session { gap: 60 },
            Aggregate::Max,
            1_000,
            &[&input[..2]],
        );
        assert_eq!(
            out,
            vec![("k".into(), 0, 60, 1.0), ("k".into(), 100, 160, 2.0)]
        );
    }

    #[test]
    fn closed_windows_are_emitted_as_the_watermark_passes() {
        let mut w = WindowedAggregator::new(WindowSpec::Tumbling { size: 10 }, Aggregate::Count, 0);
        assert!(w.push([(&b"k"[..], 5, 0.0)]).is_empty());
        let closed = w.push([(&b"k"[..], 10, 0.0)]);
        assert_eq!(closed.len(), 1, "[0, 10) closed at watermark 10");
        assert_eq!(w.open(), 1);
    }
}
