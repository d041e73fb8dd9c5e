//! Record batches: split, CRC, decompress (every codec), columnar decode, rows, headers, control
//! markers. The CRC of the first batch is fixed up so the fuzzer gets past it into the decoders;
//! the CRC check itself is exercised by the unmodified second pass.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spate::record::{batches, ColumnarBatch, DecodeOptions};

fn walk(data: Bytes) {
    let opts = DecodeOptions { max_decompressed: 1 << 20 };
    let mut out = ColumnarBatch::default();
    for raw in batches(data) {
        let Ok(raw) = raw else { return };
        if raw.decode_into(&mut out, &opts).is_ok() {
            for r in out.records() {
                let _ = (r.offset(), r.timestamp(), r.key(), r.value());
                for (k, v) in r.headers() {
                    let _ = (k.len(), v.map(<[u8]>::len));
                }
            }
            let _ = out.control_record();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    walk(Bytes::copy_from_slice(data));
    let mut fixed = data.to_vec();
    if fixed.len() >= 61 {
        let len = i32::from_be_bytes(fixed[8..12].try_into().unwrap());
        let end = usize::try_from(len).map_or(fixed.len(), |l| (12 + l).min(fixed.len()));
        if end > 21 {
            let crc = crc32c_of(&fixed[21..end]);
            fixed[17..21].copy_from_slice(&crc.to_be_bytes());
        }
    }
    walk(Bytes::from(fixed));
});

fn crc32c_of(data: &[u8]) -> u32 {
    // Bitwise CRC-32C (Castagnoli, reflected 0x82F63B78): independent of the crate under test.
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82F6_3B78 & (!(crc & 1)).wrapping_add(1));
        }
    }
    !crc
}
