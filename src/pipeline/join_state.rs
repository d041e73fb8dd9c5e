//! The state of a windowed stream-stream join for one task (partition `p` of both inputs),
//! without I/O, kept in a [`KeyedStore`] so that every change goes to the changelog.
//!
//! Each side's records are buffered until no record of the other side can still join them;
//! each record that arrives is joined with the other side's buffered records of its key whose
//! event times are within the window (`|left - right| <= window`), so every pair is found
//! once, by whichever of its two records comes second.
//!
//! **Time.** Each side has a watermark: the largest event time it has seen minus the allowed
//! lateness. A record older than its own side's watermark is late: counted, not joined (so
//! what joins depends only on each side's own order, never on how the two sides interleave).
//! A buffered record of one side is dropped once the *other* side's watermark is past its
//! time plus the window: every record still to come from that side is too late for it. A
//! left (outer) join then emits an unmatched left (or either) record with `null` on the other
//! side, as Kafka Streams does since 3.1 (not at once, which would emit spurious nulls).
//! At the end of bounded input ([`JoinState::finish`]) both watermarks go to the end of time.
//!
//! **Store layout.** A buffered record is the entry
//! `side (0 left, 1 right) · u32 key length · key · event time · offset` (both as big-endian
//! order-preserving u64s), so a key's records of one side are one range in time order; its
//! value is `flags (bit 0: matched) · present (0/1) · the record's value`. Each side's
//! largest event time is kept under `0xff · side` (an i64). The offset makes entries unique
//! and makes a record read again (after an abort) overwrite itself.

use std::collections::BTreeSet;

use super::state::{Change, KeyedStore, StoreError};

/// Which unmatched records a join emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JoinType {
    /// Only pairs.
    #[default]
    Inner,
    /// Pairs, and each left record that joined nothing (with `null` on the right).
    Left,
    /// Pairs, and each record of either side that joined nothing.
    Outer,
}

/// One side of a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The first input.
    Left = 0,
    /// The second input.
    Right = 1,
}

/// A record as a join result holds it: its event time and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The join key.
    pub key: Vec<u8>,
    /// The left record (`None` for an unmatched right record).
    pub left: Option<(i64, Option<Vec<u8>>)>,
    /// The right record (`None` for an unmatched left record).
    pub right: Option<(i64, Option<Vec<u8>>)>,
}

const META: u8 = 0xff;
const MATCHED: u8 = 1;

/// One task's join state (see the module docs).
#[derive(Debug)]
pub struct JoinState<S: KeyedStore> {
    store: S,
    window: i64,
    lateness: i64,
    join: JoinType,
    /// Per side: the largest event time seen.
    max: [Option<i64>; 2],
    /// Per side: the buffered entries in time order, to drop them when they expire.
    expiry: [BTreeSet<(i64, Vec<u8>)>; 2],
    /// Per side: the largest event time moved since the changes were last taken (it is
    /// logged then, once).
    max_moved: [bool; 2],
    late: u64,
}

fn sortable(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

fn unsortable(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    (u64::from_be_bytes(a) ^ (1 << 63)) as i64
}

fn prefix(side: usize, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 4 + key.len() + 16);
    k.push(side as u8);
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// An entry's side, join key and event time; `None` if it is not an entry.
fn parse(entry: &[u8]) -> Option<(usize, &[u8], i64)> {
    let (&side, rest) = entry.split_first()?;
    if side > 1 || rest.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
    let rest = &rest[4..];
    if rest.len() != len + 16 {
        return None;
    }
    Some((side as usize, &rest[..len], unsortable(&rest[len..])))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt {
        what: format!("join state: {what}"),
    }
}

/// A buffered record's value: matched or not, and the record's value.
fn decode(value: &[u8]) -> Result<(bool, Option<Vec<u8>>), StoreError> {
    match value {
        [flags, 0] => Ok((flags & MATCHED != 0, None)),
        [flags, 1, v @ ..] => Ok((flags & MATCHED != 0, Some(v.to_vec()))),
        _ => Err(corrupt("a buffered record's value")),
    }
}

fn encode(matched: bool, value: Option<&[u8]>) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + value.map_or(0, <[u8]>::len));
    v.push(if matched { MATCHED } else { 0 });
    match value {
        Some(value) => {
            v.push(1);
            v.extend_from_slice(value);
        }
        None => v.push(0),
    }
    v
}

impl<S: KeyedStore> JoinState<S> {
    /// Empty state in `store`, joining records at most `window` ms apart, with `lateness` ms
    /// of allowed disorder per side.
    pub fn new(store: S, window: i64, lateness: i64, join: JoinType) -> Self {
        JoinState {
            store,
            window: window.max(0),
            lateness: lateness.max(0),
            join,
            max: [None, None],
            expiry: [BTreeSet::new(), BTreeSet::new()],
            max_moved: [false; 2],
            late: 0,
        }
    }

    /// Whether unmatched records of `side` are emitted (and their matches tracked).
    fn tracks(&self, side: usize) -> bool {
        match self.join {
            JoinType::Inner => false,
            JoinType::Left => side == 0,
            JoinType::Outer => true,
        }
    }

    fn watermark(&self, side: usize) -> i64 {
        self.max[side].map_or(i64::MIN, |m| m.saturating_sub(self.lateness))
    }

    /// Records dropped as late so far.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Records buffered (both sides).
    pub fn buffered(&self) -> usize {
        self.expiry[0].len() + self.expiry[1].len()
    }

    /// Bytes the store holds.
    pub fn bytes(&self) -> usize {
        self.store.bytes()
    }

    /// Joins one record (read at `offset` of its side's partition): its results go to `out`.
    /// Returns whether it was late (and so not joined).
    pub fn push(
        &mut self,
        side: Side,
        key: &[u8],
        time: i64,
        offset: i64,
        value: Option<&[u8]>,
        out: &mut Vec<Joined>,
    ) -> Result<bool, StoreError> {
        let (s, o) = (side as usize, 1 - side as usize);
        if time < self.watermark(s) {
            self.late += 1;
            return Ok(true);
        }
        let other = prefix(o, key);
        let (mut from, mut to) = (other.clone(), other);
        from.extend_from_slice(&sortable(time.saturating_sub(self.window)));
        to.extend_from_slice(&sortable(time.saturating_add(self.window)));
        to.extend_from_slice(&[0xff; 9]);
        let matches: Vec<(Vec<u8>, Vec<u8>)> = self
            .store
            .range(&from, &to)
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        let tracks_other = self.tracks(o);
        for (entry, stored) in &matches {
            let (_, _, their_time) = parse(entry).ok_or_else(|| corrupt("an entry's key"))?;
            let (matched, their_value) = decode(stored)?;
            let mine = Some((time, value.map(<[u8]>::to_vec)));
            let theirs = Some((their_time, their_value.clone()));
            let (left, right) = match side {
                Side::Left => (mine, theirs),
                Side::Right => (theirs, mine),
            };
            out.push(Joined {
                key: key.to_vec(),
                left,
                right,
            });
            if tracks_other && !matched {
                self.store
                    .put(entry, &encode(true, their_value.as_deref()))?;
            }
        }
        let mut entry = prefix(s, key);
        entry.extend_from_slice(&sortable(time));
        entry.extend_from_slice(&sortable(offset));
        self.store
            .put(&entry, &encode(!matches.is_empty(), value))?;
        self.expiry[s].insert((time, entry));
        if self.max[s].is_none_or(|m| time > m) {
            self.max[s] = Some(time);
            self.max_moved[s] = true;
        }
        // This side's watermark may have moved past the other side's records, and the other
        // side's may already be past this one.
        self.expire(o, self.watermark(s), out)?;
        self.expire(s, self.watermark(o), out)?;
        Ok(false)
    }

    /// Drops the records of `side` that no record still to come from the other side (whose
    /// watermark is `watermark`) can join; emits the unmatched ones if the join says so.
    fn expire(
        &mut self,
        side: usize,
        watermark: i64,
        out: &mut Vec<Joined>,
    ) -> Result<(), StoreError> {
        while let Some((time, _)) = self.expiry[side].first() {
            if time.saturating_add(self.window) >= watermark {
                break;
            }
            let (time, entry) = self.expiry[side].pop_first().expect("first");
            if self.tracks(side) {
                let stored = self
                    .store
                    .get(&entry)
                    .ok_or_else(|| corrupt("a buffered record missing"))?;
                let (matched, value) = decode(stored)?;
                if !matched {
                    let (_, key, _) = parse(&entry).ok_or_else(|| corrupt("an entry's key"))?;
                    let record = Some((time, value));
                    let (left, right) = if side == 0 {
                        (record, None)
                    } else {
                        (None, record)
                    };
                    out.push(Joined {
                        key: key.to_vec(),
                        left,
                        right,
                    });
                }
            }
            self.store.delete(&entry);
        }
        Ok(())
    }

    /// The end of bounded input: every buffered record expires (unmatched ones emitted as the
    /// join says).
    pub fn finish(&mut self, out: &mut Vec<Joined>) -> Result<(), StoreError> {
        self.expire(0, i64::MAX, out)?;
        self.expire(1, i64::MAX, out)
    }

    /// The changes since the last call, for the changelog.
    pub fn take_changes(&mut self) -> Result<Vec<Change>, StoreError> {
        for side in 0..2 {
            if let (true, Some(max)) = (self.max_moved[side], self.max[side]) {
                self.store.put(&[META, side as u8], &max.to_be_bytes())?;
                self.max_moved[side] = false;
            }
        }
        Ok(self.store.take_changes())
    }

    /// Applies one changelog record (logging nothing); call [`rebuilt`](Self::rebuilt) after
    /// the last.
    pub fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        match key {
            [META, 0 | 1] => match value {
                Some(v) if v.len() == 8 => {}
                None => {}
                _ => return Err(corrupt("a largest event time")),
            },
            _ if parse(key).is_none() => return Err(corrupt("an entry's key")),
            _ => {
                if let Some(v) = value {
                    decode(v)?;
                }
            }
        }
        self.store.restore(key, value)
    }

    /// Rebuilds the time index and the watermarks from the store, after a restore.
    pub fn rebuilt(mut self) -> Self {
        for side in 0..2 {
            self.expiry[side] = self
                .store
                .range(&[side as u8], &[side as u8 + 1])
                .filter_map(|(k, _)| parse(k).map(|(_, _, t)| (t, k.to_vec())))
                .collect();
            self.max[side] = self
                .store
                .get(&[META, side as u8])
                .map(|v| i64::from_be_bytes(v.try_into().expect("checked on restore")));
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::state::MemoryStore;

    fn state(window: i64, lateness: i64, join: JoinType) -> JoinState<MemoryStore> {
        JoinState::new(MemoryStore::new(1 << 20), window, lateness, join)
    }

    fn pair(key: &str, l: (i64, &str), r: (i64, &str)) -> Joined {
        Joined {
            key: key.into(),
            left: Some((l.0, Some(l.1.into()))),
            right: Some((r.0, Some(r.1.into()))),
        }
    }

    #[test]
    fn pairs_within_the_window_join_once_whichever_comes_first() {
        let mut j = state(10, 0, JoinType::Inner);
        let mut out = Vec::new();
        j.push(Side::Left, b"k", 100, 0, Some(b"l1"), &mut out)
            .unwrap();
        j.push(Side::Right, b"k", 105, 0, Some(b"r1"), &mut out)
            .unwrap();
        j.push(Side::Right, b"x", 105, 1, Some(b"rx"), &mut out)
            .unwrap();
        j.push(Side::Right, b"k", 111, 2, Some(b"r2"), &mut out)
            .unwrap();
        j.push(Side::Left, b"k", 110, 1, Some(b"l2"), &mut out)
            .unwrap();
        assert_eq!(
            out,
            vec![
                pair("k", (100, "l1"), (105, "r1")),
                pair("k", (110, "l2"), (105, "r1")),
                pair("k", (110, "l2"), (111, "r2")),
            ]
        );
    }

    #[test]
    fn late_records_are_judged_by_their_own_side_only() {
        let mut j = state(10, 5, JoinType::Inner);
        let mut out = Vec::new();
        j.push(Side::Left, b"k", 1000, 0, Some(b"a"), &mut out)
            .unwrap();
        // The right side has seen nothing: an old right record is not late.
        assert!(!j
            .push(Side::Right, b"k", 995, 0, Some(b"b"), &mut out)
            .unwrap());
        assert_eq!(out.len(), 1);
        // Left: 994 < 1000 - 5.
        assert!(j
            .push(Side::Left, b"k", 994, 1, Some(b"c"), &mut out)
            .unwrap());
        assert!(!j
            .push(Side::Left, b"k", 995, 2, Some(b"d"), &mut out)
            .unwrap());
        assert_eq!(j.late(), 1);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn records_expire_by_the_other_sides_watermark_and_left_joins_emit_the_unmatched() {
        let mut j = state(10, 0, JoinType::Left);
        let mut out = Vec::new();
        j.push(Side::Left, b"a", 100, 0, Some(b"1"), &mut out)
            .unwrap();
        j.push(Side::Left, b"b", 100, 1, None, &mut out).unwrap();
        j.push(Side::Right, b"a", 95, 0, Some(b"2"), &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(j.buffered(), 3);
        // The right watermark at 111 is past 100 + 10: the left records go, b unmatched.
        j.push(Side::Right, b"z", 111, 1, Some(b"3"), &mut out)
            .unwrap();
        assert_eq!(
            out[1],
            Joined {
                key: b"b".to_vec(),
                left: Some((100, None)),
                right: None
            }
        );
        assert_eq!(out.len(), 2, "a was matched");
        // Right records are never emitted alone by a left join; they expire by the left side.
        j.push(Side::Left, b"q", 200, 2, Some(b"4"), &mut out)
            .unwrap();
        assert_eq!(j.buffered(), 1, "only q is left");
        let mut rest = Vec::new();
        j.finish(&mut rest).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(j.buffered(), 0);
        let changes = j.take_changes().unwrap();
        assert_eq!(
            changes.len(),
            5 + 2,
            "five records gone, two largest event times"
        );
        assert_eq!(
            j.bytes(),
            8 + 8 + 4,
            "only the two largest event times remain"
        );
    }

    #[test]
    fn outer_joins_emit_both_sides_unmatched() {
        let mut j = state(0, 0, JoinType::Outer);
        let mut out = Vec::new();
        j.push(Side::Left, b"a", 1, 0, Some(b"l"), &mut out)
            .unwrap();
        j.push(Side::Right, b"b", 1, 0, Some(b"r"), &mut out)
            .unwrap();
        j.push(Side::Right, b"a", 1, 1, Some(b"r"), &mut out)
            .unwrap();
        j.finish(&mut out).unwrap();
        assert_eq!(out.len(), 2, "the pair, and b alone: {out:?}");
        assert_eq!(out[1].left, None);
        assert_eq!(out[1].key, b"b");
    }

    /// The changelog restores the state exactly: stopping after any record and going on from
    /// the restored state gives what one uninterrupted run gives.
    #[test]
    fn a_restored_state_goes_on_as_the_original_would() {
        let mut rng = fastrand::Rng::with_seed(7);
        type Input = (Side, Vec<u8>, i64, Option<Vec<u8>>);
        let input: Vec<Input> = (0..300)
            .map(|i| {
                let side = if rng.bool() { Side::Left } else { Side::Right };
                let key = vec![b'a' + rng.u8(0..5)];
                let value = rng.bool().then(|| i.to_string().into_bytes());
                (side, key, i * 3 + rng.i64(-20..20), value)
            })
            .collect();
        let run = |from: usize, mut j: JoinState<MemoryStore>, out: &mut Vec<Joined>| {
            for (i, (side, key, time, value)) in input.iter().enumerate().skip(from) {
                j.push(*side, key, *time, i as i64, value.as_deref(), out)
                    .unwrap();
            }
            j
        };
        for join in [JoinType::Inner, JoinType::Left, JoinType::Outer] {
            let mut whole = Vec::new();
            let mut j = run(0, state(15, 10, join), &mut whole);
            j.finish(&mut whole).unwrap();
            assert!(
                whole.len() > 50,
                "{join:?}: the input joins: {}",
                whole.len()
            );
            for stop in [1, 77, 150, 299] {
                let mut first = state(15, 10, join);
                let mut out = Vec::new();
                for (i, (side, key, time, value)) in input.iter().enumerate().take(stop) {
                    first
                        .push(*side, key, *time, i as i64, value.as_deref(), &mut out)
                        .unwrap();
                }
                let mut restored = state(15, 10, join);
                for (k, v) in first.take_changes().unwrap() {
                    restored.restore(&k, v.as_deref()).unwrap();
                }
                assert!(
                    restored.take_changes().unwrap().is_empty(),
                    "restoring logs nothing"
                );
                let mut j = run(stop, restored.rebuilt(), &mut out);
                j.finish(&mut out).unwrap();
                assert_eq!(out, whole, "{join:?}: stopped after {stop}");
            }
        }
    }

    #[test]
    fn the_memory_bound_and_corrupt_changelogs_are_errors() {
        let mut j = JoinState::new(MemoryStore::new(64), 10, 0, JoinType::Inner);
        let mut out = Vec::new();
        let big = vec![0u8; 100];
        assert!(matches!(
            j.push(Side::Left, b"k", 1, 0, Some(&big), &mut out),
            Err(StoreError::Full { .. })
        ));
        let mut j = state(10, 0, JoinType::Inner);
        assert!(j.restore(b"\x00\x00", Some(b"\x00\x00")).is_err());
        assert!(j.restore(&[META, 0], Some(b"short")).is_err());
        let mut entry = prefix(1, b"k");
        entry.extend_from_slice(&[0; 16]);
        assert!(j.restore(&entry, Some(b"\x00\x05")).is_err());
        assert!(j.restore(&entry, Some(b"\x01\x01v")).is_ok());
    }
}
