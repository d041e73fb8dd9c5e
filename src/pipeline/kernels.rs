//! Batch kernels: tight loops over contiguous bytes that the compiler vectorises, in safe Rust.
//!
//! Each works on a whole column: the selected values are copied once into one contiguous
//! buffer (the output column), then transformed in one pass. Measured in `benches/kernels.rs`.

use memchr::memmem;

use super::batch::{Batch, Column};

pub use crate::json::{is_json_value, json_field, json_object_end};

/// Upper-cases ASCII letters in place; other bytes (UTF-8 sequences included) are unchanged.
/// Branch-free, so it vectorises.
#[inline]
pub fn ascii_uppercase(bytes: &mut [u8]) {
    for b in bytes {
        let lower = b.wrapping_sub(b'a') < 26;
        *b ^= (lower as u8) << 5;
    }
}

/// Whether `bytes` holds an ASCII lowercase letter. Scans 32 bytes at a time without early
/// exit inside a block, so the inner loop vectorises.
#[inline]
pub fn has_ascii_lowercase(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        let mut any = 0u8;
        for &b in block {
            any |= (b.wrapping_sub(b'a') < 26) as u8;
        }
        if any != 0 {
            return true;
        }
    }
    blocks.remainder().iter().any(|b| b.wrapping_sub(b'a') < 26)
}

/// Copies the selected rows' values into one buffer (unselected rows and nulls become null),
/// then runs `transform` over that buffer in one pass. `None` when `unchanged` says no
/// selected value would change: the batch keeps its values, uncopied. (The scan stops at the
/// first value that would change, so it costs little when most do.)
pub fn map_values_in_place(
    batch: &Batch,
    unchanged: impl Fn(&[u8]) -> bool,
    transform: impl Fn(&mut [u8]),
) -> Option<Column> {
    if batch
        .selected()
        .all(|row| batch.value(row).is_none_or(&unchanged))
    {
        return None;
    }
    let bytes = batch
        .selected()
        .map(|row| batch.value(row).map_or(0, <[u8]>::len))
        .sum();
    let mut out = batch.column_over_selected(bytes, |row, out| match batch.value(row) {
        Some(v) => out.push(v),
        None => out.push_null(),
    });
    transform(out.data_mut());
    Some(out.finish())
}

/// The selected rows whose value contains `needle` (a null value does not).
pub fn retain_containing(batch: &mut Batch, needle: &memmem::Finder<'_>) {
    batch.retain(|b, row| b.value(row).is_some_and(|v| needle.find(v).is_some()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uppercase_changes_ascii_letters_only() {
        let mut all: Vec<u8> = (0..=255u8).collect();
        ascii_uppercase(&mut all);
        for (i, b) in all.iter().enumerate() {
            assert_eq!(*b, (i as u8).to_ascii_uppercase(), "byte {i}");
        }
        let mut text = "héllo wörld, zebra!".as_bytes().to_vec();
        ascii_uppercase(&mut text);
        assert_eq!(std::str::from_utf8(&text).unwrap(), "HéLLO WöRLD, ZEBRA!");
    }

    #[test]
    fn lowercase_detection_matches_a_plain_scan() {
        for len in [0, 1, 31, 32, 33, 64, 100] {
            let upper = vec![b'A'; len];
            assert!(!has_ascii_lowercase(&upper));
            for at in 0..len {
                let mut v = upper.clone();
                v[at] = b'q';
                assert!(has_ascii_lowercase(&v), "len {len} at {at}");
            }
        }
    }
}
