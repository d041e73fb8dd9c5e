//! snappy: arbitrary input never panics and never exceeds the cap; small inputs round-trip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use spate::record::compression::{compress, decompress, Compression};

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = decompress(Compression::Snappy, data, LIMIT) {
        assert!(out.len() <= LIMIT);
    }
    let mut packed = Vec::new();
    compress(Compression::Snappy, data, &mut packed).unwrap();
    assert_eq!(decompress(Compression::Snappy, &packed, data.len()).unwrap(), data);
});
