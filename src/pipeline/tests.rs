//! Operators over real decoded batches.

use std::sync::Arc;

use super::ops::{self, Chain};
use super::Batch;
use crate::record::{Compression, RawBatch, RecordBatchBuilder};

/// A decoded batch of (key, value) records at offsets 100.., timestamps 1000 + i, and one
/// header on every record.
fn batch(records: &[(Option<&str>, Option<&str>)]) -> Batch {
    let mut b = RecordBatchBuilder::new(Compression::None).base_offset(100);
    for (i, (k, v)) in records.iter().enumerate() {
        b.append(
            1000 + i as i64,
            k.map(str::as_bytes),
            v.map(str::as_bytes),
            &[("h", Some(b"x"))],
        )
        .unwrap();
    }
    let decoded = RawBatch::new(b.build().unwrap()).unwrap().decode().unwrap();
    Batch::new(Arc::from("in"), 3, decoded)
}

fn run(chain: &mut Chain, input: Batch) -> Vec<Batch> {
    let mut out = Vec::new();
    chain.run(input, &mut out).unwrap();
    out
}

fn values(b: &Batch) -> Vec<Option<String>> {
    b.selected()
        .map(|r| b.value(r).map(|v| String::from_utf8(v.to_vec()).unwrap()))
        .collect()
}

#[test]
fn uppercase_changes_values_only_and_keeps_offsets_timestamps_headers() {
    let mut chain = Chain::new().then(ops::uppercase());
    let out = run(
        &mut chain,
        batch(&[
            (Some("k"), Some("hello")),
            (None, None),
            (Some("k2"), Some("Ünïcode ß mix")),
        ]),
    );
    let b = &out[0];
    assert_eq!(
        values(b),
        [Some("HELLO".into()), None, Some("ÜNïCODE ß MIX".into())]
    );
    assert_eq!(b.key(0), Some(&b"k"[..]), "keys untouched");
    assert_eq!(b.offset(2), 102);
    assert_eq!(b.timestamp(1), 1001);
    assert_eq!(
        b.headers(2).collect::<Vec<_>>(),
        [(&b"h"[..], Some(&b"x"[..]))]
    );
    assert_eq!(b.next_offset(), 103);
}

#[test]
fn a_batch_with_nothing_to_uppercase_passes_through_uncopied() {
    let mut chain = Chain::new().then(ops::uppercase());
    let input = batch(&[
        (Some("K"), Some("ALREADY UPPER")),
        (Some("K"), Some("123 !")),
    ]);
    let source = input.source().data().as_ptr();
    let out = run(&mut chain, input);
    let v = out[0].value(0).unwrap();
    let data = out[0].source().data();
    assert!(
        out[0].source_values().is_some(),
        "values are still the source's"
    );
    assert!(std::ptr::eq(data.as_ptr(), source));
    assert!(
        data.as_ptr_range().contains(&v.as_ptr()),
        "the value is read in place"
    );
}

#[test]
fn filters_select_without_copying_and_compose_with_maps() {
    let mut chain = Chain::new()
        .then(ops::filter_contains(b"keep"))
        .then(ops::uppercase())
        .then(ops::filter(|_, v| v.is_some_and(|v| v.len() > 6)));
    let out = run(
        &mut chain,
        batch(&[
            (None, Some("keep me")),
            (None, Some("drop")),
            (None, None),
            (None, Some("keep")),
            (None, Some("also keep this")),
        ]),
    );
    let b = &out[0];
    assert_eq!(
        values(b),
        [Some("KEEP ME".into()), Some("ALSO KEEP THIS".into())]
    );
    assert_eq!(
        b.selected().map(|r| b.offset(r)).collect::<Vec<_>>(),
        [100, 104]
    );
    assert_eq!(b.rows(), 5, "rows stay; only the selection narrows");
}

#[test]
fn json_fields_become_values_or_keys() {
    let mut chain = Chain::new()
        .then(ops::key_from_json("user"))
        .then(ops::json_field("amount"));
    let out = run(
        &mut chain,
        batch(&[
            (None, Some(r#"{"user":"ann","amount":12.5}"#)),
            (None, Some(r#"{"amount": 3}"#)),
            (None, Some("not json")),
        ]),
    );
    let b = &out[0];
    assert_eq!(values(b), [Some("12.5".into()), Some("3".into()), None]);
    assert_eq!(b.key(0), Some(&b"ann"[..]));
    assert_eq!(b.key(1), None);
}

#[test]
fn flat_map_rows_inherit_their_source_record() {
    let mut chain = Chain::new()
        .then(ops::filter_contains(b" "))
        .then(ops::flat_map(|_, v, emit| {
            for word in v.unwrap_or_default().split(|b| *b == b' ') {
                emit.emit(Some(word), Some(b"1"));
            }
        }))
        .then(ops::uppercase());
    let out = run(
        &mut chain,
        batch(&[
            (None, Some("a b")),
            (None, Some("skip")),
            (None, Some("c d e")),
        ]),
    );
    let b = &out[0];
    let rows: Vec<(Vec<u8>, i64, i64)> = b
        .selected()
        .map(|r| (b.key(r).unwrap().to_vec(), b.offset(r), b.timestamp(r)))
        .collect();
    assert_eq!(
        rows,
        [
            (b"a".to_vec(), 100, 1000),
            (b"b".to_vec(), 100, 1000),
            (b"c".to_vec(), 102, 1002),
            (b"d".to_vec(), 102, 1002),
            (b"e".to_vec(), 102, 1002),
        ]
    );
    assert_eq!(b.headers(4).len(), 1, "headers of the source record");
}

#[test]
fn map_keys_and_values_write_contiguous_columns() {
    let mut chain = Chain::new()
        .then(ops::map_values(|v, out| match v {
            Some(v) => {
                out.extend(v.iter().rev());
                true
            }
            None => false,
        }))
        .then(ops::map_keys(|_, out| {
            out.extend_from_slice(b"same");
            true
        }));
    let out = run(
        &mut chain,
        batch(&[(None, Some("abc")), (None, Some("xy"))]),
    );
    let b = &out[0];
    assert_eq!(values(b), [Some("cba".into()), Some("yx".into())]);
    let first = b.value(0).unwrap().as_ptr();
    let second = b.value(1).unwrap().as_ptr();
    assert_eq!(distance(first, second), 3, "one buffer, back to back");
    assert_eq!(b.key(1), Some(&b"same"[..]));
}

fn distance(a: *const u8, b: *const u8) -> usize {
    b as usize - a as usize
}

#[test]
fn each_member_has_its_own_transactional_id() {
    use super::run::member_transactional_id as id;
    // A static member's id is stable: its restart fences its own zombie.
    assert_eq!(id(None, "g", Some("host-1")), "spate-pipe-g-host-1");
    assert_eq!(id(Some("orders"), "g", Some("host-1")), "orders-host-1");
    // Dynamic members get a random suffix: two members never fence each other.
    let (a, b) = (id(None, "g", None), id(None, "g", None));
    assert!(a.starts_with("spate-pipe-g-") && b.starts_with("spate-pipe-g-"));
    assert_ne!(a, b);
    assert_eq!(a.len(), "spate-pipe-g-".len() + 16);
}
