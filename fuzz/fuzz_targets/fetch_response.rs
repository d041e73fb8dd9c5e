//! Fetch responses v4..v16 (first byte picks the version), then every partition's records.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spate::record::{batches, ColumnarBatch, DecodeOptions};
use spate::wire::fetch::{FetchResponse, MAX_VERSION, MIN_VERSION};

fuzz_target!(|data: &[u8]| {
    let Some((&v, body)) = data.split_first() else { return };
    let version = MIN_VERSION + (v as i16) % (MAX_VERSION - MIN_VERSION + 1);
    let body = Bytes::copy_from_slice(body);
    let Ok(resp) = FetchResponse::decode(version, &body) else { return };
    let opts = DecodeOptions { max_decompressed: 1 << 20 };
    let mut out = ColumnarBatch::default();
    for t in &resp.topics {
        for p in &t.partitions {
            for raw in batches(p.records.clone()).flatten() {
                let _ = raw.decode_into(&mut out, &opts);
            }
        }
    }
});
